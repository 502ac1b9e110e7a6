//! Presence: a user is online while at least one of their sockets (either namespace) is
//! connected. Connections are counted by a [`PresenceTracker`]; changes go out as `presence`
//! events to the Socket.IO room `presence:U`, which sockets join with `subscribePresence`,
//! so with Redis the cross-node bus carries them to subscribers on every node.
//!
//! The in-process tracker sees one node only. A shared tracker (Redis) must also converge
//! when a node dies without saying goodbye; the design it follows is in
//! `docs/notifications.md`: every node refreshes a heartbeat key, records each socket under
//! its node id, and any node drops the sockets of nodes whose heartbeat expired, so presence
//! is right again within the heartbeat TTL plus one sweep interval.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::emitter::{Emitter, Target};
use crate::error::{ApiError, ApiResult};
use crate::protocol::check_id;
use crate::store::{StoreResult, now_rfc3339};

/// Most user ids in one `subscribePresence` / `unsubscribePresence`.
pub const MAX_PRESENCE_IDS: usize = 100;
/// Most users one socket may watch at once.
pub const MAX_SUBSCRIPTIONS: usize = 1000;

/// The room of the sockets watching `user`.
pub fn presence_room(user: &str) -> String {
    format!("presence:{user}")
}

/// One user's presence, as `subscribePresence` answers it and `presence` announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceStatus {
    /// The user.
    pub user_id: String,
    /// At least one socket connected.
    pub online: bool,
    /// When the last socket disconnected (RFC 3339); absent while online and for users not
    /// seen since the tracker started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// Counts connected sockets per user.
#[async_trait]
pub trait PresenceTracker: Send + Sync + 'static {
    /// Records socket `socket` of `user`; true when the user came online with it.
    async fn connect(&self, user: &str, socket: &str) -> StoreResult<bool>;

    /// Forgets socket `socket` of `user`; `Some(last_seen)` when the user went offline.
    async fn disconnect(&self, user: &str, socket: &str) -> StoreResult<Option<String>>;

    /// The presence of each of `users`, in order.
    async fn status(&self, users: &[String]) -> StoreResult<Vec<PresenceStatus>>;

    /// Periodic upkeep (every [`MAINTAIN_INTERVAL`]): for a shared tracker, refresh this node's
    /// heartbeat and drop the sockets of nodes whose heartbeat expired. Returns the users who
    /// went offline with them, to be announced. One process sees all its sockets, so the
    /// in-process tracker has nothing to do.
    async fn maintain(&self) -> StoreResult<Vec<PresenceStatus>> {
        Ok(Vec::new())
    }
}

/// How often [`PresenceTracker::maintain`] runs.
pub const MAINTAIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The in-process [`PresenceTracker`]: exact for one node. It keeps one entry per user
/// seen since start (for `lastSeen`).
#[derive(Default)]
pub struct LocalPresence {
    // A std Mutex: short critical sections, never held across an await.
    users: Mutex<HashMap<String, Entry>>,
}

#[derive(Default)]
struct Entry {
    sockets: HashSet<String>,
    last_seen: Option<String>,
}

impl LocalPresence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl PresenceTracker for LocalPresence {
    async fn connect(&self, user: &str, socket: &str) -> StoreResult<bool> {
        let mut users = self.lock();
        let entry = users.entry(user.to_owned()).or_default();
        let was_offline = entry.sockets.is_empty();
        entry.sockets.insert(socket.to_owned());
        Ok(was_offline)
    }

    async fn disconnect(&self, user: &str, socket: &str) -> StoreResult<Option<String>> {
        let mut users = self.lock();
        let Some(entry) = users.get_mut(user) else { return Ok(None) };
        if !entry.sockets.remove(socket) || !entry.sockets.is_empty() {
            return Ok(None);
        }
        let now = now_rfc3339();
        entry.last_seen = Some(now.clone());
        Ok(Some(now))
    }

    async fn status(&self, users: &[String]) -> StoreResult<Vec<PresenceStatus>> {
        let map = self.lock();
        Ok(users
            .iter()
            .map(|u| match map.get(u) {
                Some(e) if !e.sockets.is_empty() => {
                    PresenceStatus { user_id: u.clone(), online: true, last_seen: None }
                }
                Some(e) => PresenceStatus { user_id: u.clone(), online: false, last_seen: e.last_seen.clone() },
                None => PresenceStatus { user_id: u.clone(), online: false, last_seen: None },
            })
            .collect())
    }
}

/// `subscribePresence` / `unsubscribePresence`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceUsers {
    /// Users to (un)watch.
    pub user_ids: Vec<String>,
}

impl PresenceUsers {
    /// Validates and de-duplicates the ids, keeping their order.
    pub fn normalise(self) -> ApiResult<Vec<String>> {
        if self.user_ids.is_empty() || self.user_ids.len() > MAX_PRESENCE_IDS {
            return Err(ApiError::invalid(format!("userIds: must hold 1 to {MAX_PRESENCE_IDS} ids")));
        }
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        for id in self.user_ids {
            check_id("userIds", &id)?;
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// Presence tracking and announcements. One per process.
pub struct Presence {
    tracker: Arc<dyn PresenceTracker>,
    emitter: Arc<dyn Emitter>,
}

impl Presence {
    /// Presence over `tracker`, announcing through `emitter`.
    pub fn new(tracker: Arc<dyn PresenceTracker>, emitter: Arc<dyn Emitter>) -> Self {
        Self { tracker, emitter }
    }

    /// A socket of `user` connected (`socket` is unique per namespace and socket).
    pub async fn connected(&self, user: &str, socket: &str) {
        match self.tracker.connect(user, socket).await {
            Ok(true) => {
                self.announce(&PresenceStatus { user_id: user.to_owned(), online: true, last_seen: None }).await
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence not recorded"),
        }
    }

    /// A socket of `user` disconnected.
    pub async fn disconnected(&self, user: &str, socket: &str) {
        match self.tracker.disconnect(user, socket).await {
            Ok(Some(last_seen)) => {
                let status = PresenceStatus { user_id: user.to_owned(), online: false, last_seen: Some(last_seen) };
                self.announce(&status).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "presence not recorded"),
        }
    }

    /// The presence of `users`.
    pub async fn status(&self, users: &[String]) -> ApiResult<Vec<PresenceStatus>> {
        Ok(self.tracker.status(users).await?)
    }

    /// Runs the tracker's upkeep and announces users whose node died.
    pub async fn maintain(&self) {
        match self.tracker.maintain().await {
            Ok(gone) => {
                for status in &gone {
                    self.announce(status).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence upkeep failed"),
        }
    }

    async fn announce(&self, status: &PresenceStatus) {
        let data: Value = serde_json::to_value(status).unwrap_or_default();
        let room = presence_room(&status.user_id);
        self.emitter.emit(Target::room(crate::notifications::NS, &room), "presence", &data).await;
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn online_while_any_socket_is_connected() {
        let p = LocalPresence::default();
        assert!(p.connect("u", "/chat#1").await.unwrap());
        assert!(!p.connect("u", "/notifications#2").await.unwrap());
        assert_eq!(p.disconnect("u", "/chat#1").await.unwrap(), None);
        assert_eq!(p.disconnect("u", "/chat#1").await.unwrap(), None, "a repeated disconnect changes nothing");
        let status = p.status(&["u".into(), "never".into()]).await.unwrap();
        assert!(status[0].online);
        assert_eq!(status[1], PresenceStatus { user_id: "never".into(), online: false, last_seen: None });
        let last_seen = p.disconnect("u", "/notifications#2").await.unwrap().expect("went offline");
        let status = p.status(&["u".into()]).await.unwrap();
        assert_eq!(status[0], PresenceStatus { user_id: "u".into(), online: false, last_seen: Some(last_seen) });
    }

    #[test]
    fn ids_are_checked_and_deduplicated() {
        let ids = PresenceUsers { user_ids: vec!["a".into(), "b".into(), "a".into()] }.normalise().unwrap();
        assert_eq!(ids, ["a", "b"]);
        assert!(PresenceUsers { user_ids: vec![] }.normalise().is_err());
        assert!(PresenceUsers { user_ids: vec![String::new()] }.normalise().is_err());
    }
}
