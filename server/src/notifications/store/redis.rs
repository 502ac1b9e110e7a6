//! Notification lists in Redis, shared by every node and kept across restarts. Per user: a
//! sorted set of ids by arrival, a hash of their JSON, and the set of unread ids; each
//! change is one Lua script, so counts never drift from the lists. Delivered ids are also
//! remembered on their own for a week, which keeps a late redelivery from coming back after
//! the per-user cap dropped the notification. Every key of a user carries the user id as a
//! hash tag (`sy:ntf:{<u>}:…`), so the scripts' keys share one Cluster slot.

use async_trait::async_trait;

use super::{Inserted, ListQuery, Marking, Notification, NotificationStore};
use crate::error::{StoreError, StoreResult};
use crate::redis::{Redis, tag};

/// How long a delivered notification id is remembered.
const SEEN_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// KEYS: order, items, unread, seq, seen. ARGV: id, json, cap, seen TTL.
const INSERT: &str = r"
if not redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[4]) then
  return {0, redis.call('SCARD', KEYS[3])}
end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[1], seq, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('SREM', KEYS[3], unpack(old))
end
return {1, redis.call('SCARD', KEYS[3])}
";

/// KEYS: order, items, unread. ARGV: before id or '', limit, unread only ('1'/'0').
/// Returns {json1, read1, json2, read2, ...} newest first, then the unread count.
const LIST: &str = r"
local max = '+inf'
if ARGV[1] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not score then return {{}, redis.call('SCARD', KEYS[3])} end
  max = '(' .. score
end
local limit = tonumber(ARGV[2])
local out = {}
for _, id in ipairs(redis.call('ZREVRANGEBYSCORE', KEYS[1], max, '-inf')) do
  local unread = redis.call('SISMEMBER', KEYS[3], id)
  if ARGV[3] == '0' or unread == 1 then
    out[#out + 1] = redis.call('HGET', KEYS[2], id)
    out[#out + 1] = 1 - unread
    if #out >= 2 * limit then break end
  end
end
return {out, redis.call('SCARD', KEYS[3])}
";

/// Redis [`NotificationStore`].
pub struct RedisNotificationStore {
    redis: Redis,
    per_user: u64,
}

impl RedisNotificationStore {
    /// A store on `redis` keeping at most `per_user` notifications per user.
    pub fn new(redis: Redis, per_user: u64) -> Self {
        Self { redis, per_user: per_user.max(1) }
    }

    fn keys(&self, user: &str) -> [String; 4] {
        let user = tag(user);
        let k = |part: &str| self.redis.key(&["ntf", &user, part]);
        [k("order"), k("items"), k("unread"), k("seq")]
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

#[async_trait]
impl NotificationStore for RedisNotificationStore {
    async fn insert(&self, user: &str, notification: Notification) -> StoreResult<Inserted> {
        let [order, items, unread, seq] = self.keys(user);
        let seen = self.redis.key(&["ntf", &tag(user), "seen", &notification.id]);
        // The stored `read` is ignored on the way out: the unread set is the one source of truth.
        let json = serde_json::to_string(&notification).map_err(internal)?;
        let script = redis::Script::new(INSERT);
        let mut call = script.prepare_invoke();
        call.key(order).key(items).key(unread).key(seq).key(seen);
        call.arg(&notification.id).arg(json).arg(self.per_user).arg(SEEN_TTL_SECONDS);
        let mut conn = self.redis.conn();
        let (created, unread): (i64, u64) = self.redis.run(call.invoke_async(&mut conn)).await?;
        Ok(Inserted { created: created == 1, unread })
    }

    async fn list(&self, user: &str, query: &ListQuery) -> StoreResult<(Vec<Notification>, u64)> {
        let [order, items, unread, _] = self.keys(user);
        let script = redis::Script::new(LIST);
        let mut call = script.prepare_invoke();
        call.key(order).key(items).key(unread);
        call.arg(query.before.as_deref().unwrap_or("")).arg(query.limit).arg(if query.unread_only { "1" } else { "0" });
        let mut conn = self.redis.conn();
        let (flat, count): (Vec<redis::Value>, u64) = self.redis.run(call.invoke_async(&mut conn)).await?;
        let mut page = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            let [json, read] = pair else { return Err(internal("odd list reply")) };
            let json: String = redis::from_redis_value_ref(json).map_err(internal)?;
            let read: i64 = redis::from_redis_value_ref(read).map_err(internal)?;
            let mut notification: Notification = serde_json::from_str(&json).map_err(internal)?;
            notification.read = read == 1;
            page.push(notification);
        }
        Ok((page, count))
    }

    async fn mark_read(&self, user: &str, marking: &Marking) -> StoreResult<u64> {
        let [_, _, unread, _] = self.keys(user);
        let mut pipe = redis::pipe();
        pipe.atomic();
        match marking {
            Marking::All => pipe.del(&unread).ignore(),
            Marking::Ids(ids) => pipe.srem(&unread, ids).ignore(),
        };
        pipe.scard(&unread);
        let mut conn = self.redis.conn();
        let (count,): (u64,) = self.redis.run(pipe.query_async(&mut conn)).await?;
        Ok(count)
    }

    async fn unread(&self, user: &str) -> StoreResult<u64> {
        let [_, _, unread, _] = self.keys(user);
        let mut conn = self.redis.conn();
        self.redis.run(redis::cmd("SCARD").arg(unread).query_async(&mut conn)).await
    }
}
