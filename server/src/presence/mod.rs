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

mod memory;
mod redis;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::delivery::{Emitter, Target, presence_room};
use crate::error::{ApiError, ApiResult, StoreResult};
use crate::protocol::{NOTIFICATIONS, check_id};

/// Most user ids in one `subscribePresence` / `unsubscribePresence`.
pub const MAX_PRESENCE_IDS: usize = 100;
/// Most users one socket may watch at once.
pub const MAX_SUBSCRIPTIONS: usize = 1000;

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

    /// `user`'s connected sockets (the keys given to [`PresenceTracker::connect`]) and, for a
    /// shared tracker, the node each is on.
    async fn sockets(&self, user: &str) -> StoreResult<Vec<(String, Option<String>)>>;

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

pub use memory::MemoryPresence;
pub use redis::{HEARTBEAT_TTL, RedisPresence};

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

/// Told of every change of a user's presence across the fleet: their first socket on any
/// node connected, or their last one left (or its node died). Once per change, on the node
/// whose tracker call saw it.
#[async_trait]
pub trait PresenceListener: Send + Sync + 'static {
    /// `status` is the user's presence after the change.
    async fn changed(&self, status: &PresenceStatus);
}

/// Presence tracking and announcements. One per process.
pub struct Presence {
    tracker: Arc<dyn PresenceTracker>,
    emitter: Arc<dyn Emitter>,
    listener: OnceLock<Arc<dyn PresenceListener>>,
}

impl Presence {
    /// Presence over `tracker`, announcing through `emitter`.
    pub fn new(tracker: Arc<dyn PresenceTracker>, emitter: Arc<dyn Emitter>) -> Self {
        Self { tracker, emitter, listener: OnceLock::new() }
    }

    /// Tells `listener` of every change from now on (set once, after the application state
    /// it needs exists; later calls are ignored).
    pub fn listen(&self, listener: Arc<dyn PresenceListener>) {
        let _ = self.listener.set(listener);
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

    /// `user`'s connected sockets, on every node the tracker sees, sorted by id.
    pub async fn sockets(&self, user: &str) -> ApiResult<Vec<(String, Option<String>)>> {
        let mut sockets = self.tracker.sockets(user).await?;
        sockets.sort();
        Ok(sockets)
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
        self.emitter.emit(Target::room(NOTIFICATIONS, &room), "presence", &data).await;
        if let Some(listener) = self.listener.get() {
            listener.changed(status).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_deduplicated() {
        let ids = PresenceUsers { user_ids: vec!["a".into(), "b".into(), "a".into()] }.normalise().unwrap();
        assert_eq!(ids, ["a", "b"]);
        assert!(PresenceUsers { user_ids: vec![] }.normalise().is_err());
        assert!(PresenceUsers { user_ids: vec![String::new()] }.normalise().is_err());
    }
}
