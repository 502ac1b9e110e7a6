//! The work both queue backends share: wait for the channel's rate limit, attempt the
//! delivery, and turn the outcome into a [`Disposition`] under the retry policy.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tracing::{Instrument, field};

use super::Inbox;
use super::channels::{Channel, Email, Outcome, Sms, Webhook};
use super::queue::{DeadLetter, Disposition, Job, RetryPolicy};
use crate::config::{Budget, QueueConfig};
use crate::metrics::Metrics;
use crate::protocol::now_rfc3339;

/// Delivers jobs on every channel. One per process, shared by the workers.
pub struct Deliverer {
    inbox: Arc<Inbox>,
    webhook: Option<Webhook>,
    email: Option<Email>,
    sms: Option<Arc<Sms>>,
    /// Per-channel budgets, indexed by [`Channel::index`]; per process.
    limits: Vec<DefaultDirectRateLimiter>,
    policy: RetryPolicy,
    metrics: Metrics,
    /// Attempts running now in this process.
    active: AtomicI64,
    /// Jobs in [`Deliverer::process`] per channel, rate-limit wait included.
    busy: [AtomicI64; Channel::ALL.len()],
}

impl Deliverer {
    /// A deliverer over the given channels.
    pub fn new(
        inbox: Arc<Inbox>,
        webhook: Option<Webhook>,
        email: Option<Email>,
        sms: Option<Arc<Sms>>,
        config: &QueueConfig,
        metrics: Metrics,
    ) -> Self {
        let budgets = [
            config.queue_rate_limit_browser,
            config.queue_rate_limit_webhook,
            config.queue_rate_limit_email,
            config.queue_rate_limit_sms,
        ];
        let limits = budgets.iter().map(|b| DefaultDirectRateLimiter::direct(quota(*b))).collect();
        let policy = RetryPolicy::from_config(config);
        let busy = std::array::from_fn(|_| AtomicI64::new(0));
        Self { inbox, webhook, email, sms, limits, policy, metrics, active: AtomicI64::new(0), busy }
    }

    /// True while a job of `channel` is being processed in this process.
    pub fn busy(&self, channel: Channel) -> bool {
        self.busy[channel.index()].load(Ordering::Relaxed) > 0
    }

    /// Attempts running now in this process (after their rate-limit wait).
    pub fn active(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }

    /// One attempt of `job`, after waiting for its channel's rate limit.
    pub async fn process(&self, mut job: Job) -> Disposition {
        let _busy = Running::start(&self.busy[job.channel.index()]);
        self.limits[job.channel.index()].until_ready().await;
        let channel = job.channel.as_str();
        let span = tracing::info_span!(
            "notification.deliver",
            otel.name = %format!("deliver {channel}"),
            otel.kind = "consumer",
            notification.channel = channel,
            notification.job = %job.id,
            notification.attempt = job.attempts + 1,
            error.type = field::Empty,
        );
        crate::telemetry::set_remote_parent(&span, job.traceparent.as_deref());
        let outcome = {
            let _running = Running::start(&self.active);
            self.attempt(&job).instrument(span.clone()).await
        };
        match &outcome {
            Outcome::Delivered => {}
            Outcome::Retry(_) | Outcome::Throttled { .. } => {
                span.record("error.type", "retry");
            }
            Outcome::Permanent(_) => {
                span.record("error.type", "permanent");
            }
        }
        if let Outcome::Throttled { error, after } = outcome {
            // The receiver is busy, the job is fine: not one of its attempts.
            tracing::warn!(job = %job.id, ?after, %error, "delivery throttled; retrying");
            self.metrics.job_retried(channel);
            return Disposition::Retry { job, after };
        }
        job.attempts += 1;
        let (error, permanent) = match outcome {
            Outcome::Delivered => {
                tracing::debug!(job = %job.id, attempts = job.attempts, "notification delivered");
                return Disposition::Done;
            }
            Outcome::Retry(error) if job.attempts < self.policy.max_attempts => {
                let after = self.policy.delay(job.attempts);
                tracing::warn!(job = %job.id, attempts = job.attempts, ?after, %error, "delivery failed; retrying");
                self.metrics.job_retried(channel);
                return Disposition::Retry { job, after };
            }
            Outcome::Retry(error) => (error, false),
            Outcome::Permanent(error) => (error, true),
            Outcome::Throttled { .. } => unreachable!("handled above"),
        };
        tracing::error!(job = %job.id, attempts = job.attempts, permanent, %error, "delivery failed; dead letter");
        self.metrics.job_dead_lettered(channel);
        Disposition::Dead(DeadLetter {
            id: job.id.clone(),
            error,
            permanent,
            attempts: job.attempts,
            failed_at: now_rfc3339(),
            job,
        })
    }

    async fn attempt(&self, job: &Job) -> Outcome {
        match job.channel {
            Channel::Browser => match self.inbox.deliver(&job.user_id, job.notification.clone()).await {
                Ok(_) => Outcome::Delivered,
                Err(e) => Outcome::Retry(e.to_string()),
            },
            Channel::Webhook => match &self.webhook {
                Some(webhook) => webhook.deliver(job).await,
                None => Outcome::Permanent("the webhook channel is not configured".into()),
            },
            Channel::Email => match &self.email {
                Some(email) => email.deliver(job).await,
                None => Outcome::Permanent("the email channel is not configured".into()),
            },
            Channel::Sms => match (&self.sms, &job.sms) {
                (Some(sms), Some(message)) => {
                    // The job comes back with its receipt, to become a dead letter if it says
                    // the message will not arrive.
                    let context = serde_json::to_value(job).unwrap_or_default();
                    sms.deliver(&job.id, &message.to, &message.text, context).await
                }
                (None, _) => Outcome::Permanent("the sms channel is not configured".into()),
                (_, None) => Outcome::Permanent("job has no sms recipient".into()),
            },
        }
    }
}

/// Counts an attempt as running until dropped (also when the attempt is cancelled).
struct Running<'a>(&'a AtomicI64);

impl<'a> Running<'a> {
    fn start(count: &'a AtomicI64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `count` at once, then one more every `window / count`.
fn quota(b: Budget) -> Quota {
    let burst = NonZeroU32::new(b.count).unwrap_or(NonZeroU32::MIN);
    let period = (b.window / b.count).max(Duration::from_nanos(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst)
}
