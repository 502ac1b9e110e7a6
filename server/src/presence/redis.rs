//! The presence tracker shared by every node through Redis.

use async_trait::async_trait;

use super::{PresenceStatus, PresenceTracker};
use crate::error::StoreResult;
use crate::protocol::now_rfc3339;

/// Sockets and heartbeats in Redis, shared by every node. Keys (under the key prefix):
///
/// | key | type | holds |
/// |---|---|---|
/// | `sy:{presence}:user:<u>` | hash | socket → node id, for `u`'s connected sockets |
/// | `sy:{presence}:seen` | hash | user → when their last socket left (RFC 3339) |
/// | `sy:{presence}:nodes` | set | node ids that may hold sockets |
/// | `sy:{presence}:node:<n>` | string, TTL [`HEARTBEAT_TTL`] | node `n` is alive |
/// | `sy:{presence}:node:<n>:users` | set | users who connected through node `n` |
///
/// A node that dies without goodbye stops refreshing its heartbeat; the next sweep by any node
/// after the TTL removes its sockets and announces the users left with none. A dead node's
/// users are therefore offline within `HEARTBEAT_TTL + MAINTAIN_INTERVAL` (20 s).
///
/// The sweep reads and updates any user's keys in one script, so every presence key shares
/// the `{presence}` hash tag: on a Cluster, presence lives in one slot (one shard).
pub struct RedisPresence {
    redis: crate::redis::Redis,
    node: String,
    connect: redis::Script,
    disconnect: redis::Script,
    sweep: redis::Script,
}

/// How long a node counts as alive after its last heartbeat.
pub const HEARTBEAT_TTL: std::time::Duration = std::time::Duration::from_secs(15);

const CONNECT: &str = r"
local before = redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return before == 0 and 1 or 0
";

const DISCONNECT: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 or redis.call('HLEN', KEYS[1]) > 0 then return false end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return ARGV[3]
";

const SWEEP: &str = r"
local gone = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local base = ARGV[1] .. ':node:' .. node
  if redis.call('EXISTS', base) == 0 then
    for _, user in ipairs(redis.call('SMEMBERS', base .. ':users')) do
      local key = ARGV[1] .. ':user:' .. user
      local had = redis.call('HLEN', key)
      local sockets = redis.call('HGETALL', key)
      for i = 1, #sockets, 2 do
        if sockets[i + 1] == node then redis.call('HDEL', key, sockets[i]) end
      end
      if had > 0 and redis.call('HLEN', key) == 0 then
        redis.call('HSET', KEYS[2], user, ARGV[2])
        table.insert(gone, user)
      end
    end
    redis.call('DEL', base .. ':users')
    redis.call('SREM', KEYS[1], node)
  end
end
return gone
";

impl RedisPresence {
    /// A tracker for this process (a fresh node id) on `redis`.
    pub fn new(redis: crate::redis::Redis) -> Self {
        Self {
            redis,
            node: format!("{:016x}", rand::random::<u64>()),
            connect: redis::Script::new(CONNECT),
            disconnect: redis::Script::new(DISCONNECT),
            sweep: redis::Script::new(SWEEP),
        }
    }

    /// A presence key: `sy:{presence}:<parts>`.
    fn key(&self, parts: &[&str]) -> String {
        self.redis.key(&[&["{presence}"], parts].concat())
    }

    fn user_key(&self, user: &str) -> String {
        self.key(&["user", user])
    }
}

#[async_trait]
impl PresenceTracker for RedisPresence {
    async fn connect(&self, user: &str, socket: &str) -> StoreResult<bool> {
        let mut call = self.connect.prepare_invoke();
        call.key(self.user_key(user)).key(self.key(&["node", &self.node, "users"]));
        call.arg(socket).arg(&self.node).arg(user);
        let mut conn = self.redis.conn();
        let came_online: i64 = self.redis.run(call.invoke_async(&mut conn)).await?;
        Ok(came_online == 1)
    }

    async fn disconnect(&self, user: &str, socket: &str) -> StoreResult<Option<String>> {
        let mut call = self.disconnect.prepare_invoke();
        call.key(self.user_key(user)).key(self.key(&["seen"]));
        call.arg(socket).arg(user).arg(now_rfc3339());
        let mut conn = self.redis.conn();
        self.redis.run(call.invoke_async(&mut conn)).await
    }

    async fn status(&self, users: &[String]) -> StoreResult<Vec<PresenceStatus>> {
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("HLEN").arg(self.user_key(user)).cmd("HGET").arg(self.key(&["seen"])).arg(user);
        }
        let mut conn = self.redis.conn();
        let answers: Vec<(u64, Option<String>)> = self.redis.run(pipe.query_async(&mut conn)).await?;
        Ok(users
            .iter()
            .zip(answers)
            .map(|(user, (sockets, seen))| PresenceStatus {
                user_id: user.clone(),
                online: sockets > 0,
                last_seen: if sockets > 0 { None } else { seen },
            })
            .collect())
    }

    async fn sockets(&self, user: &str) -> StoreResult<Vec<(String, Option<String>)>> {
        let mut conn = self.redis.conn();
        let cmd = redis::cmd("HGETALL").arg(self.user_key(user)).to_owned();
        let sockets: std::collections::HashMap<String, String> = self.redis.run(cmd.query_async(&mut conn)).await?;
        Ok(sockets.into_iter().map(|(socket, node)| (socket, Some(node))).collect())
    }

    async fn maintain(&self) -> StoreResult<Vec<PresenceStatus>> {
        let mut conn = self.redis.conn();
        let nodes = self.key(&["nodes"]);
        let heartbeat = redis::pipe()
            .cmd("SET")
            .arg(self.key(&["node", &self.node]))
            .arg(1)
            .arg("PX")
            .arg(HEARTBEAT_TTL.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(&nodes)
            .arg(&self.node)
            .ignore()
            .to_owned();
        self.redis.run(heartbeat.query_async::<()>(&mut conn)).await?;
        let now = now_rfc3339();
        let mut call = self.sweep.prepare_invoke();
        call.key(&nodes).key(self.key(&["seen"])).arg(self.key(&[])).arg(&now);
        let gone: Vec<String> = self.redis.run(call.invoke_async(&mut conn)).await?;
        Ok(gone
            .into_iter()
            .map(|user_id| PresenceStatus { user_id, online: false, last_seen: Some(now.clone()) })
            .collect())
    }
}
