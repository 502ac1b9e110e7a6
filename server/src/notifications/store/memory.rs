//! The in-memory notification lists.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Inserted, ListQuery, Marking, Notification, NotificationStore};
use crate::error::StoreResult;

/// In-memory [`NotificationStore`].
pub struct MemoryNotificationStore {
    per_user: usize,
    // A std Mutex: critical sections are short and never span an await.
    users: Mutex<HashMap<String, Inbox>>,
}

#[derive(Default)]
struct Inbox {
    /// Oldest first.
    items: VecDeque<Notification>,
    unread: u64,
}

impl MemoryNotificationStore {
    /// An empty store keeping at most `per_user` notifications per user.
    pub fn new(per_user: usize) -> Self {
        Self { per_user: per_user.max(1), users: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Inbox>> {
        // Every mutation is one step, so data behind a poisoned lock is still consistent.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl NotificationStore for MemoryNotificationStore {
    async fn insert(&self, user: &str, notification: Notification) -> StoreResult<Inserted> {
        let mut users = self.lock();
        let inbox = users.entry(user.to_owned()).or_default();
        // Redeliveries happen within minutes of the first delivery, long before an id could
        // be pushed out by the cap, so the kept items are enough to recognise them.
        if inbox.items.iter().rev().any(|n| n.id == notification.id) {
            return Ok(Inserted { created: false, unread: inbox.unread });
        }
        if !notification.read {
            inbox.unread += 1;
        }
        inbox.items.push_back(notification);
        while inbox.items.len() > self.per_user {
            if let Some(dropped) = inbox.items.pop_front()
                && !dropped.read
            {
                inbox.unread -= 1;
            }
        }
        Ok(Inserted { created: true, unread: inbox.unread })
    }

    async fn list(&self, user: &str, query: &ListQuery) -> StoreResult<(Vec<Notification>, u64)> {
        let users = self.lock();
        let Some(inbox) = users.get(user) else { return Ok((Vec::new(), 0)) };
        let newest_first = inbox.items.iter().rev();
        let page: Vec<Notification> = match &query.before {
            Some(before) => newest_first.skip_while(|n| &n.id != before).skip(1).collect::<Vec<_>>().into_iter(),
            None => newest_first.collect::<Vec<_>>().into_iter(),
        }
        .filter(|n| !query.unread_only || !n.read)
        .take(query.limit)
        .cloned()
        .collect();
        Ok((page, inbox.unread))
    }

    async fn mark_read(&self, user: &str, marking: &Marking) -> StoreResult<u64> {
        let mut users = self.lock();
        let Some(inbox) = users.get_mut(user) else { return Ok(0) };
        for n in inbox.items.iter_mut().filter(|n| !n.read) {
            let hit = match marking {
                Marking::All => true,
                Marking::Ids(ids) => ids.contains(&n.id),
            };
            if hit {
                n.read = true;
                inbox.unread -= 1;
            }
        }
        Ok(inbox.unread)
    }

    async fn unread(&self, user: &str) -> StoreResult<u64> {
        Ok(self.lock().get(user).map_or(0, |i| i.unread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: &str) -> Notification {
        Notification::sample(id)
    }

    fn ids(list: &[Notification]) -> Vec<&str> {
        list.iter().map(|n| n.id.as_str()).collect()
    }

    #[tokio::test]
    async fn insert_is_idempotent_and_capped() {
        let store = MemoryNotificationStore::new(3);
        assert_eq!(store.insert("u", n("a")).await.unwrap(), Inserted { created: true, unread: 1 });
        assert_eq!(store.insert("u", n("a")).await.unwrap(), Inserted { created: false, unread: 1 });
        for id in ["b", "c", "d"] {
            store.insert("u", n(id)).await.unwrap();
        }
        let (list, unread) = store.list("u", &ListQuery { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(ids(&list), ["d", "c", "b"]);
        assert_eq!(unread, 3, "the dropped unread notification no longer counts");
    }

    #[tokio::test]
    async fn pages_go_backwards_and_filter_unread() {
        let store = MemoryNotificationStore::new(10);
        for id in ["a", "b", "c", "d"] {
            store.insert("u", n(id)).await.unwrap();
        }
        assert_eq!(store.mark_read("u", &Marking::Ids(vec!["c".into(), "zz".into()])).await.unwrap(), 3);
        let q = ListQuery { limit: 2, before: Some("d".into()), unread_only: false };
        assert_eq!(ids(&store.list("u", &q).await.unwrap().0), ["c", "b"]);
        let q = ListQuery { limit: 10, before: None, unread_only: true };
        assert_eq!(ids(&store.list("u", &q).await.unwrap().0), ["d", "b", "a"]);
        assert_eq!(store.mark_read("u", &Marking::All).await.unwrap(), 0);
        assert_eq!(store.unread("u").await.unwrap(), 0);
        assert_eq!(store.unread("nobody").await.unwrap(), 0);
    }
}
