//! Delivery channels. Each turns a job into an [`Outcome`]; the queue decides from it
//! whether to retry, and the browser channel's idempotency lives in the notification store.

mod email;
pub mod sms;
mod webhook;

use serde::{Deserialize, Serialize};

pub use email::{Email, sender as email_sender};
pub use sms::Sms;
pub use webhook::{Webhook, signature};

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Stored in the user's list and emitted as `newNotification` to `user:U`.
    Browser,
    /// POSTed as signed JSON to a URL.
    Webhook,
    /// Sent over SMTP.
    Email,
    /// Sent over SMPP.
    Sms,
}

impl Channel {
    /// Every channel, in index order.
    pub const ALL: [Channel; 4] = [Channel::Browser, Channel::Webhook, Channel::Email, Channel::Sms];

    /// The wire name (`browser`, ...), also used in job ids and queue names.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Browser => "browser",
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    /// Position in [`Channel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; never attempted again.
    Delivered,
    /// Failed in a way that may pass (timeouts, 5xx, 408/429, SMTP 4xx, storage outages).
    Retry(String),
    /// Failed in a way that will not pass (other 4xx, SMTP 5xx): a dead letter at once.
    Permanent(String),
    /// The receiver asked to slow down (SMPP throttling): attempted again after `after`,
    /// without using one of the job's attempts.
    Throttled {
        /// The receiver's answer.
        error: String,
        /// When to try again.
        after: std::time::Duration,
    },
}
