//! The in-process presence tracker.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{PresenceStatus, PresenceTracker};
use crate::error::StoreResult;
use crate::protocol::now_rfc3339;

/// The in-process [`PresenceTracker`]: exact for one node. It keeps one entry per user
/// seen since start (for `lastSeen`).
#[derive(Default)]
pub struct MemoryPresence {
    // A std Mutex: short critical sections, never held across an await.
    users: Mutex<HashMap<String, Entry>>,
}

#[derive(Default)]
struct Entry {
    sockets: HashSet<String>,
    last_seen: Option<String>,
}

impl MemoryPresence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl PresenceTracker for MemoryPresence {
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

    async fn sockets(&self, user: &str) -> StoreResult<Vec<(String, Option<String>)>> {
        let users = self.lock();
        let sockets = users.get(user).map(|e| e.sockets.iter().map(|s| (s.clone(), None)).collect());
        Ok(sockets.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn online_while_any_socket_is_connected() {
        let p = MemoryPresence::default();
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
        assert!(p.sockets("u").await.unwrap().is_empty());
        p.connect("u", "/chat#3").await.unwrap();
        assert_eq!(p.sockets("u").await.unwrap(), [("/chat#3".to_owned(), None)]);
    }
}
