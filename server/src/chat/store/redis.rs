//! [`ChatStore`] on Redis, shared by every node. Keys (under `REDIS_KEY_PREFIX`, `sy` by default):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sy:room:{<id>}` | string | the room as JSON |
//! | `sy:user:{<u>}:rooms` | set | ids of `u`'s rooms |
//! | `sy:room:{<id>}:seq` | string | last message sequence number (INCR) |
//! | `sy:room:{<id>}:msgs` | sorted set | messages as JSON, scored by sequence number; capped at `HISTORY_LIMIT` |
//! | `sy:room:{<id>}:cmid` | hash | `sender\nclientMessageId` → sequence number, for retained messages only |
//! | `sy:room:{<id>}:read` | hash | user → last read sequence number |
//!
//! The braces are literal hash tags: a room's keys share one Cluster slot, so every write
//! that must be atomic across nodes can be one Lua script over them, and two nodes can never
//! hand out the same message id or store one `clientMessageId` twice.

use async_trait::async_trait;
use redis::Script;

use super::{ChatStore, Cursor, Message, NewMessage, Page, ReadState, Room, RoomSummary, message_id};
use crate::error::{StoreError, StoreResult};
use crate::redis::{Redis, tag};

/// Appends a message, idempotent on (sender, clientMessageId); trims history to the cap.
const APPEND: &str = r"
local field = nil
if ARGV[5] ~= '' then
  field = ARGV[2] .. '\n' .. ARGV[5]
  local seq = redis.call('HGET', KEYS[3], field)
  if seq then
    local found = redis.call('ZRANGE', KEYS[2], seq, seq, 'BYSCORE')
    if found[1] then return {0, found[1]} end
  end
end
local seq = redis.call('INCR', KEYS[1])
local msg = {id = string.format('%012d', seq), roomId = ARGV[1], senderId = ARGV[2], content = ARGV[3], createdAt = ARGV[4]}
if field then
  msg.clientMessageId = ARGV[5]
  redis.call('HSET', KEYS[3], field, seq)
end
local json = cjson.encode(msg)
redis.call('ZADD', KEYS[2], seq, json)
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    local m = cjson.decode(old)
    if m.clientMessageId then redis.call('HDEL', KEYS[3], m.senderId .. '\n' .. m.clientMessageId) end
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
end
return {1, json}
";

/// Counts messages by others after `user`'s read position (shared by the scripts below).
const UNREAD_FN: &str = r"
local function unread(msgs, read, user)
  local n = 0
  local from = redis.call('HGET', read, user) or '0'
  for _, m in ipairs(redis.call('ZRANGE', msgs, '(' .. from, '+inf', 'BYSCORE')) do
    if cjson.decode(m).senderId ~= user then n = n + 1 end
  end
  return n
end
";

/// Moves the read position forward (never back); -1 when the message was never sent.
const MARK_READ: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq = tonumber(ARGV[2])
if seq < 1 or seq > last then return {-1, 0} end
local cur = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if seq > cur then
  redis.call('HSET', KEYS[3], ARGV[1], seq)
  cur = seq
end
return {cur, unread(KEYS[2], KEYS[3], ARGV[1])}
";

/// A room, its newest message and `user`'s unread count, in one round trip.
const SUMMARY: &str = r"
local room = redis.call('GET', KEYS[1])
if not room then return {false, false, 0} end
local last = redis.call('ZRANGE', KEYS[2], 0, 0, 'REV')
return {room, last[1] or false, unread(KEYS[2], KEYS[3], ARGV[1])}
";

/// Chat state in Redis.
pub struct RedisStore {
    redis: Redis,
    history_limit: usize,
    append: Script,
    mark_read: Script,
    summary: Script,
}

impl RedisStore {
    /// A store on `redis` keeping at most `history_limit` messages per room.
    pub fn new(redis: Redis, history_limit: usize) -> Self {
        Self {
            redis,
            history_limit: history_limit.max(1),
            append: Script::new(APPEND),
            mark_read: Script::new(&format!("{UNREAD_FN}{MARK_READ}")),
            summary: Script::new(&format!("{UNREAD_FN}{SUMMARY}")),
        }
    }

    fn room_key(&self, id: &str, part: Option<&str>) -> String {
        let id = tag(id);
        match part {
            Some(part) => self.redis.key(&["room", &id, part]),
            None => self.redis.key(&["room", &id]),
        }
    }

    fn rooms_key(&self, user: &str) -> String {
        self.redis.key(&["user", &tag(user), "rooms"])
    }

    async fn summary(&self, id: &str, user: &str) -> StoreResult<Option<RoomSummary>> {
        let mut conn = self.redis.conn();
        let mut call = self.summary.prepare_invoke();
        call.key(self.room_key(id, None))
            .key(self.room_key(id, Some("msgs")))
            .key(self.room_key(id, Some("read")))
            .arg(user);
        let (room, last, unread_count): (Option<String>, Option<String>, u64) =
            self.redis.run(call.invoke_async(&mut conn)).await?;
        let Some(room) = room else { return Ok(None) };
        let last_message = last.map(|m| decode::<Message>(&m)).transpose()?;
        Ok(Some(RoomSummary { room: decode(&room)?, unread_count, last_message }))
    }
}

fn decode<T: serde::de::DeserializeOwned>(json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|e| StoreError::Internal(format!("undecodable record in Redis: {e}")))
}

#[async_trait]
impl ChatStore for RedisStore {
    async fn create_room(&self, room: Room) -> StoreResult<(Room, bool)> {
        let json = serde_json::to_string(&room).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut conn = self.redis.conn();
        let set = redis::cmd("SET").arg(self.room_key(&room.id, None)).arg(&json).arg("NX").arg("GET").to_owned();
        let existing: Option<String> = self.redis.run(set.query_async(&mut conn)).await?;
        let (room, created) = match existing {
            Some(stored) => (decode::<Room>(&stored)?, false),
            None => (room, true),
        };
        // The participants' indexes live in their own slots, so they cannot join the write
        // above in one script on a Cluster. Indexing on every call, not only on creation,
        // repairs an index that a failure between the two left behind.
        let index = room.participant_ids.iter().map(|user| {
            let mut conn = self.redis.conn();
            let add = redis::cmd("SADD").arg(self.rooms_key(user)).arg(&room.id).to_owned();
            async move { self.redis.run(add.query_async::<i64>(&mut conn)).await }
        });
        futures::future::try_join_all(index).await?;
        Ok((room, created))
    }

    async fn room(&self, id: &str) -> StoreResult<Option<Room>> {
        let mut conn = self.redis.conn();
        let json: Option<String> =
            self.redis.run(redis::cmd("GET").arg(self.room_key(id, None)).query_async(&mut conn)).await?;
        json.map(|j| decode(&j)).transpose()
    }

    async fn room_ids_of(&self, user: &str) -> StoreResult<Vec<String>> {
        let mut conn = self.redis.conn();
        self.redis.run(redis::cmd("SMEMBERS").arg(self.rooms_key(user)).query_async(&mut conn)).await
    }

    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<RoomSummary>> {
        let ids = self.room_ids_of(user).await?;
        // One script call per room; the multiplexed connection pipelines them.
        let summaries = futures::future::try_join_all(ids.iter().map(|id| self.summary(id, user))).await?;
        let mut rooms: Vec<RoomSummary> = summaries.into_iter().flatten().collect();
        rooms.sort_by(|a, b| super::activity(b).cmp(super::activity(a)));
        Ok(rooms)
    }

    async fn append(&self, new: NewMessage) -> StoreResult<(Message, bool)> {
        let id = &new.room_id;
        let mut call = self.append.prepare_invoke();
        call.key(self.room_key(id, Some("seq")))
            .key(self.room_key(id, Some("msgs")))
            .key(self.room_key(id, Some("cmid")))
            .arg(id)
            .arg(&new.sender_id)
            .arg(&new.content)
            .arg(crate::protocol::now_rfc3339())
            .arg(new.client_message_id.as_deref().unwrap_or(""))
            .arg(self.history_limit);
        let mut conn = self.redis.conn();
        let (created, json): (i64, String) = self.redis.run(call.invoke_async(&mut conn)).await?;
        Ok((decode(&json)?, created == 1))
    }

    async fn messages(&self, room_id: &str, cursor: Cursor) -> StoreResult<Page> {
        let key = self.room_key(room_id, Some("msgs"));
        let fetch = cursor.limit + 1;
        let upper = cursor.before.map_or("+inf".to_owned(), |b| format!("({b}"));
        let lower = cursor.after.map_or("-inf".to_owned(), |a| format!("({a}"));
        let mut cmd = redis::cmd("ZRANGE");
        if cursor.after.is_some() {
            // Forward from the cursor: what a reconnecting client missed, oldest first.
            cmd.arg(&key).arg(&lower).arg(&upper).arg("BYSCORE");
        } else {
            cmd.arg(&key).arg(&upper).arg(&lower).arg("BYSCORE").arg("REV");
        }
        cmd.arg("LIMIT").arg(0).arg(fetch);
        let mut conn = self.redis.conn();
        let raw: Vec<String> = self.redis.run(cmd.query_async(&mut conn)).await?;
        let has_more = raw.len() > cursor.limit;
        let mut messages = raw.iter().take(cursor.limit).map(|m| decode(m)).collect::<StoreResult<Vec<Message>>>()?;
        if cursor.after.is_none() {
            messages.reverse();
        }
        Ok(Page { messages, has_more })
    }

    async fn mark_read(&self, room_id: &str, user: &str, seq: u64) -> StoreResult<Option<ReadState>> {
        let mut call = self.mark_read.prepare_invoke();
        call.key(self.room_key(room_id, Some("seq")))
            .key(self.room_key(room_id, Some("msgs")))
            .key(self.room_key(room_id, Some("read")))
            .arg(user)
            .arg(seq);
        let mut conn = self.redis.conn();
        let (last, unread_count): (i64, u64) = self.redis.run(call.invoke_async(&mut conn)).await?;
        Ok((last > 0).then(|| ReadState { last_read_message_id: message_id(last as u64), unread_count }))
    }

    async fn ready(&self) -> bool {
        self.redis.ping().await
    }
}
