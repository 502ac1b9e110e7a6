//! Payloads of the notification events and routes, and their validation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::channels::Channel;
use super::store::{ListQuery, Marking};
use crate::error::{ApiError, ApiResult};
use crate::protocol::check_id;

/// Default and largest `getNotifications` page.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;
/// Most ids in one `markNotificationsRead`.
const MAX_MARK_IDS: usize = 100;

/// `getNotifications` and `GET /api/notifications`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetNotifications {
    /// 1..=100, default 50.
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only notifications older than this id.
    #[serde(default)]
    pub before: Option<String>,
    /// Only unread ones.
    #[serde(default)]
    pub unread_only: Option<bool>,
}

impl GetNotifications {
    pub(super) fn query(self) -> ApiResult<ListQuery> {
        if let Some(before) = &self.before {
            check_id("before", before)?;
        }
        let limit = match self.limit {
            None => DEFAULT_PAGE,
            Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
            Some(_) => return Err(ApiError::invalid(format!("limit: must be 1 to {MAX_PAGE}"))),
        };
        Ok(ListQuery { limit, before: self.before, unread_only: self.unread_only.unwrap_or(false) })
    }
}

/// `markNotificationsRead` and `PATCH /api/notifications/read`: `{ ids }` or `{ all: true }`.
#[derive(Debug, Deserialize)]
pub struct MarkNotificationsRead {
    /// Ids to mark.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Mark everything.
    #[serde(default)]
    pub all: Option<bool>,
}

impl MarkNotificationsRead {
    pub(super) fn marking(self) -> ApiResult<Marking> {
        match (self.ids, self.all) {
            (Some(_), Some(true)) => Err(ApiError::invalid("give either ids or all: true, not both")),
            (None, Some(true)) => Ok(Marking::All),
            (Some(ids), _) => {
                if ids.is_empty() || ids.len() > MAX_MARK_IDS {
                    return Err(ApiError::invalid(format!("ids: must hold 1 to {MAX_MARK_IDS} ids")));
                }
                for id in &ids {
                    check_id("ids", id)?;
                }
                Ok(Marking::Ids(ids))
            }
            (None, _) => Err(ApiError::invalid("give ids: [..] or all: true")),
        }
    }
}

/// `POST /api/events` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// Event type, matched against the rules.
    #[serde(rename = "type")]
    pub kind: String,
    /// The user the notifications are for.
    pub user_id: String,
    /// Free-form object the templates read.
    #[serde(default)]
    pub data: Option<Value>,
    /// The sender's idempotency key: resubmitting an event with the same id queues nothing
    /// new. Generated when absent.
    #[serde(default)]
    pub event_id: Option<String>,
}

/// A job as `POST /api/events` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRef {
    /// Job id.
    pub id: String,
    /// Rule that made it.
    pub rule: String,
    /// Channel.
    pub channel: Channel,
}

/// The `202` answer of `POST /api/events`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The event id (generated unless given).
    pub event_id: String,
    /// The queued jobs.
    pub jobs: Vec<JobRef>,
}
