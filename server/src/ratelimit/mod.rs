//! Per-user rate limits by event class, with the contract's ladder: over budget → rejected
//! with a warning; still going after `RATE_LIMIT_WARNINGS` warnings → blocked for
//! `RATE_LIMIT_BLOCK_SECONDS`, during which every event is rejected. The same trait has an
//! in-process backend (`memory`) and one shared by every node through Redis (`redis`).

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

use crate::config::{Budget, RateLimitConfig};
use crate::error::StoreError;
use crate::error::{ApiError, ErrorCode};
use crate::protocol::epoch_ms;

/// Event classes with separate budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventClass {
    /// `sendMessage`.
    Message,
    /// `typing`.
    Typing,
    /// `markMessagesRead`, `markNotificationsRead`.
    Read,
    /// `getOrCreateRoom`.
    Room,
    /// Everything that only reads.
    Query,
    /// A backend's calls to the server API (`/api/server/...`), per service key: one
    /// backend acts for many users, so a user's budgets would throttle it.
    Server,
}

impl EventClass {
    const ALL: [EventClass; 6] = [
        EventClass::Message,
        EventClass::Typing,
        EventClass::Read,
        EventClass::Room,
        EventClass::Query,
        EventClass::Server,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Stable name (Redis keys, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            EventClass::Message => "message",
            EventClass::Typing => "typing",
            EventClass::Read => "read",
            EventClass::Room => "room",
            EventClass::Query => "query",
            EventClass::Server => "server",
        }
    }
}

/// What the limiter decided about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget.
    Allow,
    /// Over budget: rejected, with `remaining` more warnings before a block.
    Warn {
        /// When the budget has room again.
        retry_after: Duration,
        /// Over-budget events left before the user is blocked.
        remaining: u32,
    },
    /// Blocked until `until_ms` (Unix epoch milliseconds). `started` is true for the event
    /// that caused the block, so the client is told once.
    Blocked {
        /// Block end, Unix epoch milliseconds.
        until_ms: u64,
        /// This event started the block.
        started: bool,
    },
}

impl Verdict {
    /// The error a rejected event answers with; `None` when allowed.
    pub fn error(&self) -> Option<ApiError> {
        let (message, retry_after) = match *self {
            Verdict::Allow => return None,
            Verdict::Warn { retry_after, .. } => ("rate limit exceeded; slow down".to_owned(), retry_after),
            Verdict::Blocked { until_ms, .. } => {
                let left = Duration::from_millis(until_ms.saturating_sub(epoch_ms()));
                ("blocked for exceeding the rate limit".to_owned(), left)
            }
        };
        Some(ApiError { code: ErrorCode::RateLimited, message, retry_after: Some(retry_after) })
    }
}

/// Decides whether a user's event fits their budget. Implementations must count all of a
/// user's sockets together (and, for shared ones, all nodes).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one event of `class` by `user` and returns the verdict.
    async fn check(&self, user: &str, class: EventClass) -> Result<Verdict, StoreError>;
}

/// The configured budget of a class.
pub fn budget(config: &RateLimitConfig, class: EventClass) -> Budget {
    match class {
        EventClass::Message => config.message,
        EventClass::Typing => config.typing,
        EventClass::Read => config.read,
        EventClass::Room => config.room,
        EventClass::Query => config.query,
        EventClass::Server => config.server,
    }
}

pub use memory::MemoryRateLimiter;
pub use redis::RedisRateLimiter;
