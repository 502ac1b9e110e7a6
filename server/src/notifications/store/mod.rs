//! Per-user notification lists behind a trait. The in-memory store is the embedded default;
//! the Redis store shares the lists across nodes and restarts. Both are idempotent on the
//! notification id, which is what makes the browser channel deliver a job at most once.

mod memory;
mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreResult;

/// A notification as clients see it (`newNotification`, `getNotifications`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// `<eventId>.<rule>`: one notification per event and rule.
    pub id: String,
    /// Notification type (the rule's `type`, by default the event type).
    #[serde(rename = "type")]
    pub kind: String,
    /// Rendered title.
    pub title: String,
    /// Rendered body.
    pub body: String,
    /// The event's `data`, when it had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// RFC 3339 UTC, when the event was accepted.
    pub created_at: String,
    /// Marked read by the user.
    pub read: bool,
}

#[cfg(test)]
impl Notification {
    /// An unread notification `id` with fixed text, for the unit tests.
    pub fn sample(id: &str) -> Self {
        Self {
            id: id.into(),
            kind: "t".into(),
            title: "T".into(),
            body: "B".into(),
            data: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            read: false,
        }
    }
}

/// Which notifications `markNotificationsRead` marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marking {
    /// These ids (unknown ones are ignored: they may have been dropped already).
    Ids(Vec<String>),
    /// Every notification of the user.
    All,
}

/// A page request: newest first.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Page size.
    pub limit: usize,
    /// Only notifications older than this id.
    pub before: Option<String>,
    /// Only unread ones.
    pub unread_only: bool,
}

/// What [`NotificationStore::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// False when a notification with this id was stored before (a redelivery).
    pub created: bool,
    /// The user's unread count afterwards.
    pub unread: u64,
}

/// Notification persistence. `insert` must be idempotent on the notification id.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Stores `notification` for `user` unless its id was stored before, dropping the
    /// oldest beyond the per-user cap.
    async fn insert(&self, user: &str, notification: Notification) -> StoreResult<Inserted>;

    /// A page, newest first, and the unread count.
    async fn list(&self, user: &str, query: &ListQuery) -> StoreResult<(Vec<Notification>, u64)>;

    /// Marks notifications read; returns the unread count afterwards.
    async fn mark_read(&self, user: &str, marking: &Marking) -> StoreResult<u64>;

    /// The unread count.
    async fn unread(&self, user: &str) -> StoreResult<u64>;
}

pub use memory::MemoryNotificationStore;
pub use redis::RedisNotificationStore;
