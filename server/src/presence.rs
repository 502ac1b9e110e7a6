//! Presence: a user is online while at least one of their sockets (either namespace) is
//! connected. Connections are counted by a [`PresenceTracker`]; changes go out as `presence`
//! events to the Socket.IO room `presence:U`, which sockets join with `subscribePresence`,
//! so the adapter carries them to subscribers on every node.
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
}

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

    async fn announce(&self, status: &PresenceStatus) {
        let data: Value = serde_json::to_value(status).unwrap_or_default();
        let room = presence_room(&status.user_id);
        self.emitter.emit(Target::room(crate::notifications::NS, &room), "presence", &data).await;
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
