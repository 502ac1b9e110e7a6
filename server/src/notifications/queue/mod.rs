//! The notification job queue behind a trait: an in-process queue (embedded default) and a
//! durable one in Redis (apalis). Both run the same [`Deliverer`](super::worker::Deliverer)
//! and apply its [`Disposition`]: done, retry later with backoff, or dead letter.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use memory::MemoryQueue;
pub use redis::RedisQueue;

use super::channels::Channel;
use super::store::Notification;
use super::worker::Deliverer;
use crate::config::QueueConfig;
use crate::error::StoreResult;

/// One delivery of one notification on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// `<notificationId>.<channel>`: the same event, rule and channel always make the same
    /// id, so a resubmitted event does not queue twice.
    pub id: String,
    /// The event that caused it.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The rule that matched.
    pub rule: String,
    /// Where it goes.
    pub channel: Channel,
    /// Whose notification it is.
    pub user_id: String,
    /// The rendered notification.
    pub notification: Notification,
    /// Target of the webhook channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Recipient and subject of the email channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailMessage>,
    /// Recipient and text of the sms channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsMessage>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Times re-driven from the dead letters (keeps the retry keys of each round apart).
    #[serde(default)]
    pub redrives: u32,
    /// The trace context of the request that queued it, so every attempt (on any node)
    /// joins the event's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Recipient and subject of an email job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailMessage {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
}

/// Recipient and text of an SMS job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsMessage {
    /// The number as the rule rendered it (checked for E.164 when delivered).
    pub to: String,
    /// The text.
    pub text: String,
}

/// A job that will not be attempted again until someone re-drives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The job id (also the id to re-drive).
    pub id: String,
    /// The last error.
    pub error: String,
    /// True when the channel refused it for good; false when attempts ran out.
    pub permanent: bool,
    /// Attempts made.
    pub attempts: u32,
    /// RFC 3339 UTC.
    pub failed_at: String,
    /// The job as it was last attempted.
    pub job: Job,
}

/// What happens to a job after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Delivered.
    Done,
    /// Attempt again after `after`; `job.attempts` already counts the failed attempt.
    Retry {
        /// The job to run again.
        job: Job,
        /// Backoff delay.
        after: Duration,
    },
    /// Failed for good.
    Dead(DeadLetter),
}

/// Exponential backoff with equal jitter and a bounded number of attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per job, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// Cap on any delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// The policy of the configuration.
    pub fn from_config(config: &QueueConfig) -> Self {
        Self {
            max_attempts: config.queue_max_attempts,
            base: Duration::from_millis(config.queue_backoff_base_ms),
            max: Duration::from_millis(config.queue_backoff_max_ms),
        }
    }

    /// Delay after `failed` failed attempts: `base·2^(failed-1)` capped at `max`, then a
    /// random point in its upper half. Half-jitter keeps gaps growing from one retry to the
    /// next (each range starts where the previous one ends) while spreading a burst of
    /// failures over time.
    pub fn delay(&self, failed: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << failed.saturating_sub(1).min(31)).min(self.max);
        let half = exp / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// Job counts for the `switchyard_queue_jobs` gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Due now, waiting for a worker.
    pub queued: u64,
    /// Due later (a retry's backoff).
    pub delayed: u64,
    /// Dead letters.
    pub dead: u64,
}

/// Queue storage. Consumption is started with [`JobQueue::start`].
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Queues `jobs` for immediate delivery, all or none; a job whose id was queued before
    /// (a resubmitted event) is skipped.
    async fn enqueue(&self, jobs: &[Job]) -> StoreResult<()>;

    /// Dead letters, newest first.
    async fn dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetter>>;

    /// Moves dead letter `id` back to the queue with a fresh attempt count; `None` when no
    /// such dead letter exists.
    async fn redrive(&self, id: &str) -> StoreResult<Option<Job>>;

    /// Adds a dead letter for a job the queue had finished (an SMS whose receipt says it
    /// never arrived), so it can be listed and re-driven.
    async fn add_dead_letter(&self, dead: DeadLetter) -> StoreResult<()>;

    /// Current counts. With Redis they are queue-wide, so every node reports the same.
    async fn counts(&self) -> StoreResult<Counts>;

    /// Starts the workers, which deliver through `deliverer` until [`Workers::shutdown`].
    fn start(&self, deliverer: std::sync::Arc<Deliverer>, config: &QueueConfig) -> Workers;
}

/// Running workers.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    fn new(stop: watch::Sender<bool>, tasks: Vec<JoinHandle<()>>) -> Self {
        Self { stop, tasks }
    }

    /// Stops taking jobs and waits until the jobs in flight are finished or handed back.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy { max_attempts: 5, base: Duration::from_millis(100), max: Duration::from_millis(1000) };
        for _ in 0..200 {
            let d: Vec<Duration> = (1..=6).map(|n| p.delay(n)).collect();
            assert!((50..=100).contains(&(d[0].as_millis() as u64)), "{d:?}");
            assert!((100..=200).contains(&(d[1].as_millis() as u64)), "{d:?}");
            assert!(d.windows(2).take(3).all(|w| w[0] <= w[1]), "{d:?}");
            assert!(d[5] <= Duration::from_millis(1000) && d[5] >= Duration::from_millis(500), "{d:?}");
        }
        assert!(p.delay(1000) <= Duration::from_millis(1000), "huge attempt counts do not overflow");
    }
}
