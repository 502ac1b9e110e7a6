//! Notifications: per-user lists with unread counts (the `/notifications` namespace and its
//! HTTP fallback), and the pipeline behind them (the seed's Bull integration): an event from
//! a backend is matched by [`rules`], each matching rule makes one job per channel on the
//! [`queue`], and the [`worker`] delivers them on the [`channels`].
//!
//! # Layout
//! - [`store`] — per-user lists behind a trait; `memory` and `redis`.
//! - [`protocol`] — the payloads of its events and routes.
//! - [`rules`] — the rules file and its templates.
//! - [`queue`] — the job queue behind a trait; `memory` and `redis` (apalis).
//! - [`worker`] — one attempt of a job under the rate limit and retry policy.
//! - [`channels`] — browser, webhook, email.
//! - [`service_keys`] — the backend credential.
//!
//! Its routes are in `http::notifications`, its events in `socket::notifications`.

pub mod channels;
pub mod protocol;
pub mod queue;
pub mod rules;
pub mod service_keys;
pub mod store;
pub mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{Config, ConfigError};
use crate::delivery::{Emitter, Target, user_room};
use crate::error::{ApiError, ApiResult, ErrorCode, StoreResult};
use crate::metrics::{JobState, Metrics};
use crate::protocol::{NOTIFICATIONS as NS, check_id, epoch_ms, json_size, now_rfc3339};
use channels::sms::DeliveryStore;
use channels::{Channel, Email, Sms, Webhook};
use queue::{DeadLetter, EmailMessage, Job, JobQueue, SmsMessage, Workers};
use rules::{Rules, check_name, configured};
use service_keys::ServiceKeys;
use store::{Notification, NotificationStore};
use worker::Deliverer;

pub use protocol::{Accepted, Event, GetNotifications, JobRef, MarkNotificationsRead};

/// How often the queue gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// Most dead letters in one listing.
pub const MAX_DEAD_LETTER_PAGE: usize = 1000;

/// Checks the notification settings and loads the rules once, so that a bad rules file
/// stops start-up with exit code 64 like any other setting.
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    for key in config.notifications.service_api_keys.iter().filter(|k| !k.is_empty()) {
        if key.len() < 16 {
            return Err(ConfigError {
                setting: "SERVICE_API_KEYS",
                reason: "each key must be at least 16 characters".into(),
            });
        }
    }
    if configured(&config.webhook.webhook_secret).is_some_and(|s| s.len() < 16) {
        return Err(ConfigError { setting: "WEBHOOK_SECRET", reason: "must be at least 16 bytes".into() });
    }
    if let Some(url) = configured(&config.webhook.webhook_url)
        && !reqwest::Url::parse(&url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    {
        return Err(ConfigError { setting: "WEBHOOK_URL", reason: "must be an http(s) URL".into() });
    }
    channels::email_sender(&config.smtp).map_err(|reason| ConfigError { setting: "SMTP_FROM", reason })?;
    channels::sms::check(&config.smpp).map_err(|(setting, reason)| ConfigError { setting, reason })?;
    if config.queue.queue_backoff_max_ms < config.queue.queue_backoff_base_ms {
        return Err(ConfigError {
            setting: "QUEUE_BACKOFF_MAX_MS",
            reason: "must not be shorter than QUEUE_BACKOFF_BASE_MS".into(),
        });
    }
    Rules::load(config).map(drop)
}

/// Per-user notification lists and their socket events; what the browser channel delivers
/// into and what the `/notifications` events and routes read.
pub struct Inbox {
    store: Arc<dyn NotificationStore>,
    emitter: Arc<dyn Emitter>,
}

impl Inbox {
    /// An inbox over `store`, announcing through `emitter`.
    pub fn new(store: Arc<dyn NotificationStore>, emitter: Arc<dyn Emitter>) -> Self {
        Self { store, emitter }
    }

    /// `getNotifications`: `{ notifications (newest first), unreadCount }`.
    pub async fn list(&self, user: &str, payload: GetNotifications) -> ApiResult<Value> {
        let query = payload.query()?;
        let (notifications, unread) = self.store.list(user, &query).await?;
        Ok(json!({ "notifications": notifications, "unreadCount": unread }))
    }

    /// `markNotificationsRead`: `{ unreadCount }`, also sent as `unreadCount` to every
    /// socket of the user.
    pub async fn mark_read(&self, user: &str, payload: MarkNotificationsRead) -> ApiResult<Value> {
        let marking = payload.marking()?;
        let unread = self.store.mark_read(user, &marking).await?;
        self.announce_count(user, unread).await;
        Ok(json!({ "unreadCount": unread }))
    }

    /// The unread count (sent on connect).
    pub async fn unread(&self, user: &str) -> ApiResult<u64> {
        Ok(self.store.unread(user).await?)
    }

    /// The browser channel: stores `notification` once, then emits `newNotification` and
    /// `unreadCount` to `user:U`. A redelivery stores and emits nothing; returns whether it
    /// was new.
    pub async fn deliver(&self, user: &str, notification: Notification) -> StoreResult<bool> {
        let data =
            serde_json::to_value(&notification).map_err(|e| crate::error::StoreError::Internal(e.to_string()))?;
        let inserted = self.store.insert(user, notification).await?;
        if inserted.created {
            let room = user_room(user);
            self.emitter.emit(Target::room(NS, &room), "newNotification", &data).await;
            self.announce_count(user, inserted.unread).await;
        }
        Ok(inserted.created)
    }

    async fn announce_count(&self, user: &str, count: u64) {
        let room = user_room(user);
        self.emitter.emit(Target::room(NS, &room), "unreadCount", &json!({ "count": count })).await;
    }
}

/// The notification pipeline: rules, queue, workers, and the inbox they deliver into.
pub struct Notifications {
    inbox: Arc<Inbox>,
    rules: Rules,
    queue: Arc<dyn JobQueue>,
    sms: Option<Arc<Sms>>,
    keys: ServiceKeys,
    max_data_bytes: u64,
    workers: Mutex<Option<Workers>>,
    gauges: tokio::task::JoinHandle<()>,
}

impl Notifications {
    /// Loads the rules, builds the channels and starts the workers.
    pub fn start(
        config: &Config,
        store: Arc<dyn NotificationStore>,
        queue: Arc<dyn JobQueue>,
        deliveries: Arc<dyn DeliveryStore>,
        emitter: Arc<dyn Emitter>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let rules = Rules::load(config)?;
        let inbox = Arc::new(Inbox::new(store, emitter));
        let webhook = Webhook::new(&config.webhook)?;
        let email = Email::new(&config.smtp)?;
        let on_outcome = receipt_outcome(queue.clone(), metrics.clone());
        let sms = Sms::start(&config.smpp, deliveries, on_outcome)?.map(Arc::new);
        let deliverer =
            Arc::new(Deliverer::new(inbox.clone(), webhook, email, sms.clone(), &config.queue, metrics.clone()));
        let workers = queue.start(deliverer.clone(), &config.queue);
        let gauges = tokio::spawn(update_gauges(queue.clone(), deliverer, sms.clone(), metrics));
        let keys = ServiceKeys::new(&config.notifications.service_api_keys);
        if keys.is_empty() {
            tracing::warn!("no SERVICE_API_KEYS: POST /api/events and the dead-letter routes answer 403");
        }
        tracing::info!(rules = rules.len(), "notification rules loaded");
        Ok(Self {
            inbox,
            rules,
            queue,
            sms,
            keys,
            max_data_bytes: config.notifications.max_event_data_bytes,
            workers: Mutex::new(Some(workers)),
            gauges,
        })
    }

    /// The per-user lists.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The SMS channel, when configured.
    pub fn sms(&self) -> Option<&Sms> {
        self.sms.as_deref()
    }

    /// The backend credential.
    pub fn keys(&self) -> &ServiceKeys {
        &self.keys
    }

    /// True when at least one rule matches events of type `kind`.
    pub fn has_rules(&self, kind: &str) -> bool {
        self.rules.matching(kind).next().is_some()
    }

    /// `POST /api/events`: validates the event, renders every matching rule (any error
    /// rejects the whole event, so nothing is queued), then queues one job per rule and
    /// channel.
    pub async fn submit(&self, event: Event) -> ApiResult<Accepted> {
        check_name(&event.kind).map_err(|e| ApiError::invalid(format!("type: {e}")))?;
        check_id("userId", &event.user_id)?;
        if let Some(id) = &event.event_id {
            check_name(id).map_err(|e| ApiError::invalid(format!("eventId: {e}")))?;
        }
        match &event.data {
            None | Some(Value::Object(_)) => {}
            Some(_) => return Err(ApiError::invalid("data: must be an object")),
        }
        if let Some(data) = &event.data
            && json_size(data) > self.max_data_bytes
        {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("data: larger than {} bytes", self.max_data_bytes),
            ));
        }
        let rules: Vec<_> = self.rules.matching(&event.kind).collect();
        if rules.is_empty() {
            return Err(ApiError::invalid(format!("type: no rule for event type {:?}", event.kind)));
        }
        let event_id = event.event_id.unwrap_or_else(new_event_id);
        let context = json!({
            "userId": event.user_id,
            "type": event.kind,
            "eventId": event_id,
            "data": event.data.clone().unwrap_or_else(|| json!({})),
        });
        let created_at = now_rfc3339();
        let traceparent = crate::telemetry::current_traceparent();
        let mut jobs = Vec::new();
        for rule in rules {
            let rendered = rule.render(&context).map_err(ApiError::invalid)?;
            let notification = Notification {
                id: format!("{event_id}.{}", rule.name),
                kind: rule.kind.clone(),
                title: rendered.title,
                body: rendered.body,
                data: event.data.clone(),
                created_at: created_at.clone(),
                read: false,
            };
            for &channel in &rule.channels {
                jobs.push(Job {
                    id: format!("{}.{}", notification.id, channel.as_str()),
                    event_id: event_id.clone(),
                    event_type: event.kind.clone(),
                    rule: rule.name.clone(),
                    channel,
                    user_id: event.user_id.clone(),
                    notification: notification.clone(),
                    webhook_url: (channel == Channel::Webhook).then(|| rule.webhook_url.clone()).flatten(),
                    email: match (&rendered.email, channel) {
                        (Some((to, subject)), Channel::Email) => {
                            Some(EmailMessage { to: to.clone(), subject: subject.clone() })
                        }
                        _ => None,
                    },
                    sms: match (&rendered.sms, channel) {
                        (Some((to, text)), Channel::Sms) => Some(SmsMessage { to: to.clone(), text: text.clone() }),
                        _ => None,
                    },
                    attempts: 0,
                    redrives: 0,
                    traceparent: traceparent.clone(),
                });
            }
        }
        self.queue.enqueue(&jobs).await?;
        tracing::info!(event = %event_id, kind = %event.kind, jobs = jobs.len(), "event accepted");
        let jobs = jobs.into_iter().map(|j| JobRef { id: j.id, rule: j.rule, channel: j.channel }).collect();
        Ok(Accepted { event_id, jobs })
    }

    /// Dead letters, newest first.
    pub async fn dead_letters(&self, limit: usize) -> ApiResult<Vec<DeadLetter>> {
        Ok(self.queue.dead_letters(limit.min(MAX_DEAD_LETTER_PAGE)).await?)
    }

    /// Re-drives dead letter `id` with a fresh attempt count.
    pub async fn redrive(&self, id: &str) -> ApiResult<Job> {
        check_id("id", id)?;
        self.queue.redrive(id).await?.ok_or_else(|| ApiError::not_found("no dead letter with this id"))
    }

    /// Stops the workers: no new jobs are taken; those in flight finish or go back to the
    /// queue. Later calls do nothing.
    pub async fn shutdown(&self) {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.gauges.abort();
        if let Some(workers) = workers {
            workers.shutdown().await;
            tracing::info!("notification workers stopped");
        }
    }
}

/// What a final SMS receipt does: counted by outcome, and a job whose receipt says it will
/// not arrive becomes a dead letter (permanent), so it shows and can be re-driven.
fn receipt_outcome(queue: Arc<dyn JobQueue>, metrics: Metrics) -> channels::sms::OnOutcome {
    use channels::sms::DeliveryState;
    Box::new(move |status| {
        metrics.receipt("sms", status.state.as_str());
        if !matches!(status.state, DeliveryState::Undeliverable | DeliveryState::Expired) {
            return;
        }
        let Ok(mut job) = serde_json::from_value::<Job>(status.context.clone()) else { return };
        job.attempts += 1;
        let codes: Vec<_> = status.parts.iter().filter_map(|p| p.receipt_error.as_deref()).collect();
        let error = match codes.as_slice() {
            [] => format!("the SMSC's delivery receipt says {}", status.state.as_str()),
            codes => format!("the SMSC's delivery receipt says {} (err:{})", status.state.as_str(), codes.join(",")),
        };
        let dead = DeadLetter {
            id: job.id.clone(),
            error,
            permanent: true,
            attempts: job.attempts,
            failed_at: now_rfc3339(),
            job,
        };
        let (queue, metrics) = (queue.clone(), metrics.clone());
        tokio::spawn(async move {
            match queue.add_dead_letter(dead).await {
                Ok(()) => metrics.job_dead_lettered("sms"),
                Err(e) => tracing::error!(error = %e, "cannot store the dead letter of an undelivered SMS"),
            }
        });
    })
}

/// Refreshes `switchyard_queue_jobs` and `switchyard_channel_ready` every [`GAUGE_INTERVAL`].
async fn update_gauges(queue: Arc<dyn JobQueue>, deliverer: Arc<Deliverer>, sms: Option<Arc<Sms>>, metrics: Metrics) {
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    loop {
        tick.tick().await;
        if let Some(sms) = &sms {
            metrics.set_channel_ready("sms", sms.readiness().ready);
        }
        metrics.set_queue_jobs(JobState::Active, deliverer.active());
        match queue.counts().await {
            Ok(counts) => {
                metrics.set_queue_jobs(JobState::Queued, counts.queued as i64);
                metrics.set_queue_jobs(JobState::Delayed, counts.delayed as i64);
                metrics.set_queue_jobs(JobState::Dead, counts.dead as i64);
            }
            Err(e) => tracing::debug!(error = %e, "queue counts unavailable"),
        }
    }
}

/// `evt_` + milliseconds since the epoch + randomness, in hex: unique and sorting by time.
fn new_event_id() -> String {
    format!("evt_{:012x}{:016x}", epoch_ms(), rand::random::<u64>())
}
