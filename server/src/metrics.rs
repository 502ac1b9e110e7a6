//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! The names and labels are a contract: the Grafana dashboard, the alert rules in
//! `monitoring/prometheus/rules.yaml` and the operator's HPA (on `socket_active_connections`)
//! query exactly these. Every series carries `environment` (from `ENVIRONMENT`); label values
//! come from small fixed sets (namespaces, event names, error codes, disconnect reasons,
//! channels, job states), never from user or room ids.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `socket_active_connections` | gauge | `namespace` |
//! | `socket_connections_total` | counter | `namespace` |
//! | `socket_disconnects_total` | counter | `namespace`, `reason` |
//! | `socket_messages_total` | counter | `namespace`, `event`, `direction` (`inbound`/`outbound`) |
//! | `socket_message_duration_seconds` | histogram | `namespace`, `event` |
//! | `socket_message_size_bytes` | histogram | `namespace`, `event` |
//! | `socket_active_rooms` | gauge | |
//! | `socket_active_users` | gauge | |
//! | `socket_errors_total` | counter | `namespace`, `type` |
//! | `switchyard_deliveries_skipped_total` | counter | `namespace`, `reason` (`queue_full`/`closed`) |
//! | `socket_auth_events_total` | counter | `status` (`success`/`failed`/`expired`) |
//! | `socket_server_uptime_seconds` | gauge | |
//! | `switchyard_server_ready` | gauge | |
//! | `switchyard_queue_jobs` | gauge | `state` (`queued`/`active`/`delayed`/`dead`) |
//! | `switchyard_queue_job_retries_total` | counter | `channel` |
//! | `switchyard_queue_dead_letters_total` | counter | `channel` |
//! | `switchyard_notification_receipts_total` | counter | `channel`, `outcome` (`delivered`/`undeliverable`/`expired`) |
//! | `switchyard_channel_ready` | gauge | `channel` (configured channels with a session: `sms`) |
//! | `switchyard_redis_command_errors_total` | counter | |
//! | `switchyard_redis_command_duration_seconds` | histogram | |
//! | `switchyard_scheduling_lag_seconds` | histogram | |
//! | `switchyard_server_api_requests_total` | counter | `route` (`emit_user`, …), `code` (`ok` or an error code) |
//!
//! # Recording from other modules
//!
//! [`Metrics`] is a cheap-to-clone handle, reached through `AppState::metrics()`:
//!
//! - sockets: [`Metrics::connected`] / [`Metrics::disconnected`] (done by `socket::authenticate`
//!   and the namespaces' disconnect handler), inbound and outbound events, errors and sockets
//!   an emit skipped (done by `socket::handle` and the instrumented emitter),
//!   [`Metrics::auth_succeeded`] / [`Metrics::auth_failed`] (`gate::identify`, for the handshake and the HTTP API).
//! - the notification queue: [`Metrics::set_queue_jobs`] with the current count per
//!   [`JobState`] (call it whenever the counts change or on a timer), [`Metrics::job_retried`]
//!   and [`Metrics::job_dead_lettered`] with the channel name.
//! - the sms channel: [`Metrics::receipt`] for each final delivery receipt and
//!   [`Metrics::set_channel_ready`] for its session (done by `notifications`).
//! - Redis: [`Metrics::redis_command`] with the elapsed time and whether the command
//!   succeeded, for every command or pub/sub publish.
//! - the runtime: [`Metrics::scheduling_lag`], from the load-shedding probe (`chat::overload`).
//! - the server API for backends: [`Metrics::server_api`] once per call (`http::server_api`).
//!
//! Channels are `&'static str` on purpose: pass the channel's fixed name (`browser`,
//! `webhook`, `email`, `sms`), never something built from input.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use switchyard_sio::DisconnectReason;

use crate::auth::AuthFailure;
use crate::error::ErrorCode;
use crate::protocol::NAMESPACES;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The contract's metric names as Prometheus sees them after a scrape (counters with
/// `_total`, histograms by their `_bucket` series): what the dashboard, the alert rules and
/// the operator may query. The one list: the operator's dashboard test reads it too, and a
/// test here checks it against what [`Metrics::encode`] exports.
pub const CONTRACT: [&str; 22] = [
    "socket_active_connections",
    "socket_connections_total",
    "socket_disconnects_total",
    "socket_messages_total",
    "socket_message_duration_seconds_bucket",
    "socket_message_size_bytes_bucket",
    "socket_active_rooms",
    "socket_active_users",
    "socket_errors_total",
    "socket_auth_events_total",
    "socket_server_uptime_seconds",
    "switchyard_server_ready",
    "switchyard_deliveries_skipped_total",
    "switchyard_queue_jobs",
    "switchyard_queue_job_retries_total",
    "switchyard_queue_dead_letters_total",
    "switchyard_notification_receipts_total",
    "switchyard_channel_ready",
    "switchyard_redis_command_errors_total",
    "switchyard_redis_command_duration_seconds_bucket",
    "switchyard_scheduling_lag_seconds_bucket",
    "switchyard_server_api_requests_total",
];

/// Channels of the notification queue, pre-created at 0 like the namespaces' connection
/// series, so the autoscaler and the dashboard see a value before the first client arrives.
const CHANNELS: [&str; 4] = ["browser", "webhook", "email", "sms"];
/// Routes of the server API (`http::server_api`), whose `ok` series start at 0.
pub const SERVER_API_ROUTES: [&str; 6] =
    ["emit_user", "emit_room", "emit_all", "disconnect_user", "user", "room_members"];
/// Why an emit skipped a socket, in the order of [`Metrics::skipped`]'s arguments.
const SKIP_REASONS: [&str; 2] = ["queue_full", "closed"];
/// Final SMS receipt outcomes, pre-created at 0 so a rate over them has data from the start.
const RECEIPT_OUTCOMES: [&str; 3] = ["delivered", "undeliverable", "expired"];

/// Seconds; from a fast in-memory event to a slow Redis round trip.
const DURATION_BUCKETS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Seconds; a healthy Redis answers in well under a millisecond on the same network.
const REDIS_BUCKETS: [f64; 11] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];
/// Seconds; an idle runtime wakes its timers within a millisecond, and load shedding starts
/// at 50 ms by default.
const LAG_BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Where a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by a client.
    Inbound,
    /// Emitted by this server.
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// States of notification jobs, the `state` label of `switchyard_queue_jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Being delivered.
    Active,
    /// Waiting for a retry (backoff) or a rate-limit slot.
    Delayed,
    /// Gave up; in the dead-letter list.
    Dead,
}

impl JobState {
    /// Every state, in label order.
    pub const ALL: [JobState; 4] = [JobState::Queued, JobState::Active, JobState::Delayed, JobState::Dead];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Active => "active",
            JobState::Delayed => "delayed",
            JobState::Dead => "dead",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NsLabels {
    namespace: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DisconnectLabels {
    namespace: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    namespace: &'static str,
    event: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    namespace: &'static str,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    namespace: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkipLabels {
    namespace: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    route: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    channel: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Counts local rooms and users at scrape time (see [`local_rooms_and_users`]).
type SocketCensus = Box<dyn Fn() -> (usize, usize) + Send + Sync>;

/// The server's metrics; cheap to clone. One per server instance (tests run several in one
/// process), never global.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    started: Instant,
    census: OnceLock<SocketCensus>,
    active_connections: Family<NsLabels, Gauge>,
    connections: Family<NsLabels, Counter>,
    disconnects: Family<DisconnectLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    duration: HistogramFamily<EventLabels>,
    size: HistogramFamily<EventLabels>,
    active_rooms: Gauge,
    active_users: Gauge,
    errors: Family<ErrorLabels, Counter>,
    skipped: Family<SkipLabels, Counter>,
    auth: Family<StatusLabels, Counter>,
    uptime: Gauge<f64, AtomicU64>,
    ready: Gauge,
    queue_jobs: Family<StateLabels, Gauge>,
    retries: Family<ChannelLabels, Counter>,
    dead_letters: Family<ChannelLabels, Counter>,
    receipts: Family<OutcomeLabels, Counter>,
    channel_ready: Family<ChannelLabels, Gauge>,
    redis_errors: Counter,
    redis_duration: Histogram,
    scheduling_lag: Histogram,
    server_api: Family<ApiLabels, Counter>,
}

impl Metrics {
    /// Registers every family, labelled with `environment`.
    pub fn new(environment: &str) -> Self {
        let labels = [(Cow::Borrowed("environment"), Cow::Owned(environment.to_owned()))];
        let mut r = Registry::with_labels(labels.into_iter());
        let inner = Inner {
            registry: Registry::default(),
            started: Instant::now(),
            census: OnceLock::new(),
            active_connections: Family::default(),
            connections: Family::default(),
            disconnects: Family::default(),
            messages: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            size: Family::new_with_constructor(|| Histogram::new(exponential_buckets(64.0, 4.0, 8))),
            active_rooms: Gauge::default(),
            active_users: Gauge::default(),
            errors: Family::default(),
            skipped: Family::default(),
            auth: Family::default(),
            uptime: Gauge::default(),
            ready: Gauge::default(),
            queue_jobs: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
            receipts: Family::default(),
            channel_ready: Family::default(),
            redis_errors: Counter::default(),
            redis_duration: Histogram::new(REDIS_BUCKETS),
            scheduling_lag: Histogram::new(LAG_BUCKETS),
            server_api: Family::default(),
        };
        // Counters are registered without `_total`: the OpenMetrics encoder appends it.
        r.register("socket_active_connections", "Sockets connected to this process", inner.active_connections.clone());
        r.register("socket_connections", "Namespace connections accepted", inner.connections.clone());
        r.register("socket_disconnects", "Namespace disconnections by reason", inner.disconnects.clone());
        r.register("socket_messages", "Socket.IO events received and emitted", inner.messages.clone());
        r.register(
            "socket_message_duration_seconds",
            "Time from receiving an event to sending its ack",
            inner.duration.clone(),
        );
        r.register("socket_message_size_bytes", "Size of received event payloads as JSON", inner.size.clone());
        r.register("socket_active_rooms", "Chat rooms with a socket on this process", inner.active_rooms.clone());
        r.register("socket_active_users", "Users with a socket on this process", inner.active_users.clone());
        r.register("socket_errors", "Events answered with an error, by error code", inner.errors.clone());
        r.register(
            "switchyard_deliveries_skipped",
            "Sockets of this process an emit did not reach, by reason (queue_full, closed)",
            inner.skipped.clone(),
        );
        r.register("socket_auth_events", "Token verifications by outcome", inner.auth.clone());
        r.register("socket_server_uptime_seconds", "Seconds since this process started", inner.uptime.clone());
        r.register("switchyard_server_ready", "1 when /ready answers 200, else 0", inner.ready.clone());
        r.register("switchyard_queue_jobs", "Notification jobs by state", inner.queue_jobs.clone());
        r.register("switchyard_queue_job_retries", "Notification deliveries scheduled again", inner.retries.clone());
        r.register("switchyard_queue_dead_letters", "Notification jobs given up", inner.dead_letters.clone());
        r.register(
            "switchyard_notification_receipts",
            "Final delivery receipts by channel and outcome",
            inner.receipts.clone(),
        );
        r.register(
            "switchyard_channel_ready",
            "1 while the channel's session can send, else 0",
            inner.channel_ready.clone(),
        );
        r.register("switchyard_redis_command_errors", "Redis commands that failed", inner.redis_errors.clone());
        r.register(
            "switchyard_redis_command_duration_seconds",
            "Redis command round-trip time",
            inner.redis_duration.clone(),
        );
        r.register(
            "switchyard_scheduling_lag_seconds",
            "How late the runtime ran a task whose timer was due, sampled every 10 ms: the load-shedding signal",
            inner.scheduling_lag.clone(),
        );
        r.register("switchyard_server_api_requests", "Server API calls by route and outcome", inner.server_api.clone());
        // Series with a known, small label set start at 0 so rates and alerts have data.
        for namespace in NAMESPACES {
            let _ = inner.active_connections.get_or_create(&NsLabels { namespace });
            let _ = inner.connections.get_or_create(&NsLabels { namespace });
            // Server-side error codes, so the error-rate alert has a 0 to divide.
            for code in [ErrorCode::Internal, ErrorCode::Unavailable] {
                let _ = inner.errors.get_or_create(&ErrorLabels { namespace, r#type: code.as_str() });
            }
            for reason in SKIP_REASONS {
                let _ = inner.skipped.get_or_create(&SkipLabels { namespace, reason });
            }
        }
        for status in ["success", "failed", "expired"] {
            let _ = inner.auth.get_or_create(&StatusLabels { status });
        }
        for state in JobState::ALL {
            let _ = inner.queue_jobs.get_or_create(&StateLabels { state: state.as_str() });
        }
        for route in SERVER_API_ROUTES {
            let _ = inner.server_api.get_or_create(&ApiLabels { route, code: "ok" });
        }
        for channel in CHANNELS {
            let _ = inner.retries.get_or_create(&ChannelLabels { channel });
            let _ = inner.dead_letters.get_or_create(&ChannelLabels { channel });
        }
        for outcome in RECEIPT_OUTCOMES {
            let _ = inner.receipts.get_or_create(&OutcomeLabels { channel: "sms", outcome });
        }
        Self(Arc::new(Inner { registry: r, ..inner }))
    }

    /// Counts `rooms` and `users` at each scrape with `census` (set once, after the
    /// Socket.IO server exists; see `delivery::local_rooms_and_users`).
    pub fn set_census(&self, census: impl Fn() -> (usize, usize) + Send + Sync + 'static) {
        let _ = self.0.census.set(Box::new(census));
    }

    /// A socket joined `namespace` (after authentication).
    pub fn connected(&self, namespace: &'static str) {
        let labels = NsLabels { namespace };
        self.0.active_connections.get_or_create(&labels).inc();
        self.0.connections.get_or_create(&labels).inc();
    }

    /// A socket counted by [`Metrics::connected`] is gone (once per socket).
    pub fn gone(&self, namespace: &'static str) {
        self.0.active_connections.get_or_create(&NsLabels { namespace }).dec();
    }

    /// A socket of `namespace` disconnected for `reason` (the gauge moves in [`Metrics::gone`]).
    pub fn disconnected(&self, namespace: &'static str, reason: DisconnectReason) {
        let reason = reason.as_str();
        self.0.disconnects.get_or_create(&DisconnectLabels { namespace, reason }).inc();
    }

    /// A client event arrived; `bytes` is the size of its payload as JSON.
    pub fn inbound(&self, namespace: &'static str, event: &'static str, bytes: usize) {
        let direction = Direction::Inbound.as_str();
        self.0.messages.get_or_create(&MessageLabels { namespace, event, direction }).inc();
        self.0.size.get_or_create(&EventLabels { namespace, event }).observe(bytes as f64);
    }

    /// This process emitted `event` (once per emit, whatever the number of recipients).
    pub fn outbound(&self, namespace: &'static str, event: &'static str) {
        let direction = Direction::Outbound.as_str();
        self.0.messages.get_or_create(&MessageLabels { namespace, event, direction }).inc();
    }

    /// A client event was answered after `elapsed`, with `error` when it failed.
    pub fn handled(&self, namespace: &'static str, event: &'static str, elapsed: Duration, error: Option<ErrorCode>) {
        self.0.duration.get_or_create(&EventLabels { namespace, event }).observe(elapsed.as_secs_f64());
        if let Some(code) = error {
            self.error(namespace, code.as_str());
        }
    }

    /// An emit in `namespace` skipped these local sockets: `queue_full` over their unsent-bytes
    /// limit, `closed` closing.
    pub fn skipped(&self, namespace: &'static str, queue_full: usize, closed: usize) {
        for (reason, count) in SKIP_REASONS.into_iter().zip([queue_full, closed]) {
            if count > 0 {
                self.0.skipped.get_or_create(&SkipLabels { namespace, reason }).inc_by(count as u64);
            }
        }
    }

    /// Counts an error of `kind` (an [`ErrorCode::as_str`], or a `connect_error` message).
    pub fn error(&self, namespace: &'static str, kind: &'static str) {
        self.0.errors.get_or_create(&ErrorLabels { namespace, r#type: kind }).inc();
    }

    /// A token verified.
    pub fn auth_succeeded(&self) {
        self.0.auth.get_or_create(&StatusLabels { status: "success" }).inc();
    }

    /// A token was refused (`expired` for an expired one, `failed` otherwise).
    pub fn auth_failed(&self, failure: &AuthFailure) {
        self.0.auth.get_or_create(&StatusLabels { status: failure.metric_status() }).inc();
    }

    /// Sets the number of notification jobs in `state` (the queue's own count, not a delta).
    pub fn set_queue_jobs(&self, state: JobState, count: i64) {
        self.0.queue_jobs.get_or_create(&StateLabels { state: state.as_str() }).set(count);
    }

    /// A delivery on `channel` failed and was scheduled again.
    pub fn job_retried(&self, channel: &'static str) {
        self.0.retries.get_or_create(&ChannelLabels { channel }).inc();
    }

    /// A job on `channel` was moved to the dead-letter list.
    pub fn job_dead_lettered(&self, channel: &'static str) {
        self.0.dead_letters.get_or_create(&ChannelLabels { channel }).inc();
    }

    /// A final delivery receipt on `channel` said `outcome`.
    pub fn receipt(&self, channel: &'static str, outcome: &'static str) {
        self.0.receipts.get_or_create(&OutcomeLabels { channel, outcome }).inc();
    }

    /// Whether `channel`'s session can send now.
    pub fn set_channel_ready(&self, channel: &'static str, ready: bool) {
        self.0.channel_ready.get_or_create(&ChannelLabels { channel }).set(i64::from(ready));
    }

    /// One Redis command (or publish) took `elapsed` and succeeded when `ok`.
    pub fn redis_command(&self, elapsed: Duration, ok: bool) {
        self.0.redis_duration.observe(elapsed.as_secs_f64());
        if !ok {
            self.0.redis_errors.inc();
        }
    }

    /// A timer-woken probe ran `lag` after it was due (see `overload`).
    pub fn scheduling_lag(&self, lag: Duration) {
        self.0.scheduling_lag.observe(lag.as_secs_f64());
    }

    /// A server API call to `route` ended, with `error` when it failed.
    pub fn server_api(&self, route: &'static str, error: Option<ErrorCode>) {
        let code = error.map_or("ok", ErrorCode::as_str);
        self.0.server_api.get_or_create(&ApiLabels { route, code }).inc();
    }

    /// Refreshes the scrape-time gauges and returns the exposition text.
    pub fn encode(&self, ready: bool) -> String {
        let inner = &self.0;
        inner.uptime.set(inner.started.elapsed().as_secs_f64());
        inner.ready.set(i64::from(ready));
        if let Some(census) = inner.census.get() {
            let (rooms, users) = census();
            inner.active_rooms.set(rooms as i64);
            inner.active_users.set(users as i64);
        }
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &inner.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_names_every_exported_family() {
        // Labelled families without a series print nothing, so record one of each.
        let m = Metrics::new("e");
        m.inbound("/chat", "sendMessage", 1);
        m.handled("/chat", "sendMessage", Duration::from_millis(1), None);
        m.disconnected("/chat", DisconnectReason::TransportClose);
        m.set_channel_ready("sms", true);
        let text = m.encode(true);
        let exported: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| match l.split_once(' ') {
                Some((name, "counter")) => format!("{name}_total"),
                Some((name, "histogram")) => format!("{name}_bucket"),
                Some((name, _)) => name.to_owned(),
                None => l.to_owned(),
            })
            .collect();
        assert_eq!(exported, CONTRACT.iter().map(|n| (*n).to_owned()).collect());
    }

    #[test]
    fn exposition_has_every_contract_series_with_the_environment_label() {
        let m = Metrics::new("test-env");
        m.connected("/chat");
        m.inbound("/chat", "sendMessage", 120);
        m.outbound("/chat", "newMessage");
        m.handled("/chat", "sendMessage", Duration::from_millis(3), Some(ErrorCode::RateLimited));
        m.disconnected("/chat", DisconnectReason::TransportClose);
        m.gone("/chat");
        m.redis_command(Duration::from_micros(300), false);
        m.skipped("/chat", 1, 0);
        m.set_channel_ready("sms", false);
        m.server_api("emit_user", Some(ErrorCode::NotFound));
        let text = m.encode(true);
        for name in CONTRACT {
            let line = text.lines().find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")));
            let line = line.unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
            assert!(line.contains("environment=\"test-env\""), "{line}");
        }
        assert!(text.contains(r#"socket_messages_total{environment="test-env",namespace="/chat",event="sendMessage",direction="inbound"} 1"#), "{text}");
        assert!(
            text.contains(r#"socket_errors_total{environment="test-env",namespace="/chat",type="rate_limited"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"socket_disconnects_total{environment="test-env",namespace="/chat",reason="transport_close"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"socket_active_connections{environment="test-env",namespace="/chat"} 0"#), "{text}");
        assert!(text.contains(r#"switchyard_server_ready{environment="test-env"} 1"#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn queue_and_auth_series_exist_before_anything_happens() {
        let text = Metrics::new("e").encode(false);
        for state in ["queued", "active", "delayed", "dead"] {
            assert!(text.contains(&format!(r#"switchyard_queue_jobs{{environment="e",state="{state}"}} 0"#)), "{text}");
        }
        for status in ["success", "failed", "expired"] {
            assert!(text.contains(&format!(r#"socket_auth_events_total{{environment="e",status="{status}"}} 0"#)));
        }
        assert!(text.contains(r#"switchyard_queue_dead_letters_total{environment="e",channel="webhook"} 0"#));
        assert!(text.contains(
            r#"switchyard_notification_receipts_total{environment="e",channel="sms",outcome="undeliverable"} 0"#
        ));
        // Only a configured channel with a session has a readiness series.
        assert!(!text.contains("switchyard_channel_ready{"), "{text}");
        assert!(text.contains(r#"socket_active_connections{environment="e",namespace="/notifications"} 0"#));
        assert!(text.contains(r#"socket_errors_total{environment="e",namespace="/chat",type="internal"} 0"#));
    }
}
