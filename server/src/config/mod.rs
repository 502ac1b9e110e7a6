//! Start-up configuration: every setting comes from a flag or its environment variable,
//! is parsed once in `main`, and is validated before anything binds a port.

mod admin_ui;
pub mod redis_url;
mod smpp;

pub use admin_ui::AdminUiConfig;
pub use smpp::{BindMode, SmppConfig};

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Exit code for a configuration error (`EX_CONFIG` is 78, but 64 = `EX_USAGE` is what
/// operators and the contract expect for "you started me wrong").
pub const EXIT_CONFIG: i32 = 64;

/// The whole server configuration. `--help` prints one line per setting with its variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "switchyard-server",
    version,
    about = "Socket.IO-compatible realtime server: chat, notifications, presence"
)]
pub struct Config {
    /// Port for Socket.IO, the HTTP API, /health, /ready and /metrics.
    #[arg(long = "port", env = "WEBSOCKET_PORT", default_value_t = 3001)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Allowed browser origins, comma-separated. An explicit list is answered with
    /// credentials allowed, so browser clients on those origins (`withCredentials: true`) send
    /// a load balancer's affinity cookie with long-polling requests; `*` allows any origin
    /// without credentials (the CORS standard forbids credentials with a wildcard).
    #[arg(long, env = "CORS_ORIGINS", default_value = "*", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Deployment environment; the `environment` label on every metric.
    #[arg(long, env = "ENVIRONMENT", default_value = "development")]
    pub environment: String,

    /// Token verification.
    #[command(flatten)]
    pub auth: AuthConfig,

    /// Payload and history limits.
    #[command(flatten)]
    pub limits: LimitsConfig,

    /// Transport timings.
    #[command(flatten)]
    pub socket: SocketConfig,

    /// Rate-limit budgets.
    #[command(flatten)]
    pub rate_limit: RateLimitConfig,

    /// Redis for scale-out.
    #[command(flatten)]
    pub redis: RedisConfig,

    /// Notifications: event rules and the service credential.
    #[command(flatten)]
    pub notifications: NotificationsConfig,

    /// The notification job queue.
    #[command(flatten)]
    pub queue: QueueConfig,

    /// The webhook channel.
    #[command(flatten)]
    pub webhook: WebhookConfig,

    /// The email channel.
    #[command(flatten)]
    pub smtp: SmtpConfig,

    /// The SMS channel (SMPP).
    #[command(flatten)]
    pub smpp: SmppConfig,

    /// The Socket.IO Admin UI.
    #[command(flatten)]
    pub admin_ui: AdminUiConfig,

    /// Seconds a SIGTERM drain may take before the process exits.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_grace_seconds: u64,

    /// Seconds between SIGTERM and closing sockets, while `/ready` is 503 and new handshakes
    /// are refused, so load balancers stop sending traffic first (an in-process preStop sleep).
    #[arg(long, env = "SHUTDOWN_DELAY_SECONDS", default_value_t = 0)]
    pub shutdown_delay_seconds: u64,

    /// Logging.
    #[command(flatten)]
    pub log: LogConfig,

    /// Distributed tracing.
    #[command(flatten)]
    pub tracing: TracingConfig,
}

/// JWT verification. With none of `JWT_SECRET`, `JWT_PUBLIC_KEY`, `JWT_JWKS_URL` set the
/// server runs in development mode (random secret, `POST /dev/token`).
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// HS256 shared secret (at least 32 bytes).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// RS256/ES256 public key: PEM text, or the path of a PEM file.
    #[arg(long, env = "JWT_PUBLIC_KEY", hide_env_values = true)]
    pub jwt_public_key: Option<String>,

    /// JWKS URL; keys are cached and refetched when a token names an unknown `kid`.
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Least seconds between two JWKS fetches caused by unknown `kid`s (protects the provider).
    #[arg(long, env = "JWT_JWKS_MIN_REFRESH_SECONDS", default_value_t = 10)]
    pub jwt_jwks_min_refresh_seconds: u64,

    /// Required `iss` claim, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Require the `exp` claim.
    #[arg(long, env = "JWT_REQUIRE_EXP", default_value_t = true, action = clap::ArgAction::Set)]
    pub jwt_require_exp: bool,

    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECONDS", default_value_t = 5)]
    pub jwt_leeway_seconds: u64,
}

/// Size limits on what clients send.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsConfig {
    /// Longest message `content`, in characters after trimming.
    #[arg(long, env = "MAX_MESSAGE_LENGTH", default_value_t = 4000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_message_length: u32,

    /// Largest event payload in bytes; larger ones get `payload_too_large`. Engine.IO closes
    /// a connection only for frames over 16 times this (at least 1 MiB).
    #[arg(long, env = "MAX_PAYLOAD_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(256..=16_777_216))]
    pub max_payload_bytes: u64,

    /// Messages kept per room; older ones are dropped from history.
    #[arg(long, env = "HISTORY_LIMIT", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=10_000_000))]
    pub history_limit: u64,

    /// Scheduling lag in milliseconds past which `sendMessage` is refused with `unavailable`
    /// (load shedding past saturation); 0 never refuses.
    #[arg(long, env = "OVERLOAD_MAX_LAG_MS", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub overload_max_lag_ms: u64,
}

impl LimitsConfig {
    /// The Engine.IO frame limit derived from `max_payload_bytes`.
    pub fn engine_max_payload(&self) -> u64 {
        (self.max_payload_bytes * 16).max(1 << 20)
    }

    /// Unsent bytes a connection may hold before broadcasts skip it: room for a burst of
    /// events at the largest size, while a client that stopped reading costs little.
    pub fn send_buffer_bytes(&self) -> u64 {
        (self.max_payload_bytes * 4).max(256 << 10)
    }

    /// The load-shedding limit, `None` when turned off.
    pub fn overload_max_lag(&self) -> Option<Duration> {
        (self.overload_max_lag_ms > 0).then(|| Duration::from_millis(self.overload_max_lag_ms))
    }
}

/// Socket.IO transport timings.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketConfig {
    /// Engine.IO ping interval in milliseconds.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub ping_interval_ms: u64,

    /// Engine.IO ping timeout in milliseconds.
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub ping_timeout_ms: u64,

    /// Milliseconds after which an unrefreshed `isTyping: true` is ended by the server.
    #[arg(long, env = "TYPING_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub typing_timeout_ms: u64,

    /// Connection state recovery window in milliseconds: how long a dropped socket's rooms
    /// and the broadcasts it misses are kept for the official client's reconnect; 0 (the
    /// default) turns recovery off.
    #[arg(long, env = "RECOVERY_WINDOW_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub recovery_window_ms: u64,

    /// Broadcasts kept per namespace for recovery, whatever their age.
    #[arg(long, env = "RECOVERY_MAX_PACKETS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub recovery_max_packets: u64,
}

impl SocketConfig {
    /// Connection state recovery's settings, `None` when turned off.
    pub fn recovery(&self) -> Option<switchyard_sio::Recovery> {
        (self.recovery_window_ms > 0).then(|| switchyard_sio::Recovery {
            max_disconnection: Duration::from_millis(self.recovery_window_ms),
            max_packets: self.recovery_max_packets as usize,
        })
    }
}

/// A budget: `count` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Events allowed per window.
    pub count: u32,
    /// Window length.
    pub window: Duration,
}

impl FromStr for Budget {
    type Err = String;

    /// Parses `30/10s`, `100/1m` or `5/500ms`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("expected <count>/<window> such as 30/10s, got {s:?}");
        let (count, window) = s.trim().split_once('/').ok_or_else(err)?;
        let count: u32 = count.trim().parse().map_err(|_| err())?;
        let window = window.trim();
        let (digits, unit) = window.split_at(window.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?);
        let n: u64 = digits.parse().map_err(|_| err())?;
        let window = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(err()),
        };
        if count == 0 || window.is_zero() {
            return Err(format!("count and window must be positive, got {s:?}"));
        }
        Ok(Budget { count, window })
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}ms", self.count, self.window.as_millis())
    }
}

/// Per-user budgets by event class, and the warning-then-block ladder.
#[derive(Debug, Clone, clap::Args)]
pub struct RateLimitConfig {
    /// `sendMessage` budget per user.
    #[arg(long = "rate-limit-message", env = "RATE_LIMIT_MESSAGE", default_value = "30/10s")]
    pub message: Budget,

    /// `typing` budget per user.
    #[arg(long = "rate-limit-typing", env = "RATE_LIMIT_TYPING", default_value = "20/10s")]
    pub typing: Budget,

    /// `markMessagesRead` / `markNotificationsRead` budget per user.
    #[arg(long = "rate-limit-read", env = "RATE_LIMIT_READ", default_value = "60/10s")]
    pub read: Budget,

    /// `getOrCreateRoom` budget per user.
    #[arg(long = "rate-limit-room", env = "RATE_LIMIT_ROOM", default_value = "20/60s")]
    pub room: Budget,

    /// Budget for reads (`getMessages`, `getRooms`, `getNotifications`, presence) per user.
    #[arg(long = "rate-limit-query", env = "RATE_LIMIT_QUERY", default_value = "120/10s")]
    pub query: Budget,

    /// Server API budget per service key (`/api/server/...`, reads and writes alike).
    #[arg(long = "rate-limit-server", env = "RATE_LIMIT_SERVER", default_value = "1000/10s")]
    pub server: Budget,

    /// Over-budget events answered with a warning before the user is blocked.
    #[arg(long = "rate-limit-warnings", env = "RATE_LIMIT_WARNINGS", default_value_t = 3)]
    pub warnings: u32,

    /// How long a block lasts, in seconds.
    #[arg(long = "rate-limit-block-seconds", env = "RATE_LIMIT_BLOCK_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub block_seconds: u64,
}

/// Redis: with `REDIS_URL` set, state, rate limits, presence and broadcasts are shared by
/// every process using the same Redis; without it the process runs alone on memory.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis 7+ URL: `redis://[:password@]host:6379[/db]` (`rediss://` for TLS),
    /// `redis+sentinel://[:password@]host:26379,host:26379/<master>[/db]` for a master found
    /// through Sentinel, or `redis+cluster://[:password@]host:6379,host:6379` for a Cluster.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Milliseconds a Redis command may take before the event fails with `unavailable`.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub redis_timeout_ms: u64,

    /// Milliseconds start-up waits for its connections to Redis before the process exits with
    /// an error naming the target. Only start-up gives up: a running server keeps reconnecting
    /// for as long as Redis is away.
    #[arg(long, env = "REDIS_STARTUP_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub redis_startup_timeout_ms: u64,

    /// Longest wait between reconnect attempts, in milliseconds (back-off doubles up to it).
    #[arg(long, env = "REDIS_RECONNECT_MAX_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub redis_reconnect_max_ms: u64,

    /// Prefix of every key and channel, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "sy")]
    pub redis_key_prefix: String,

    /// Cross-node bus messages (emits and room joins) from other nodes queued for this one
    /// before further ones are dropped. A burst (95,000 connects over five nodes announce
    /// 95,000 presence changes) overflowed 1,024, socketioxide-redis's default before the
    /// server had its own bus; each queued message is one broadcast's encoded packet.
    #[arg(long, env = "REDIS_STREAM_BUFFER", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1_024..=4_194_304))]
    pub redis_stream_buffer: u32,
}

/// Notifications: which events make which notifications, and who may send events.
#[derive(Debug, Clone, clap::Args)]
pub struct NotificationsConfig {
    /// Event rules file (YAML); the built-in rules (a welcome notification on
    /// `user.registered`) apply when unset.
    #[arg(long, env = "RULES_FILE")]
    pub rules_file: Option<PathBuf>,

    /// Keys that backends present as `Authorization: Bearer <key>` on `POST /api/events` and
    /// the dead-letter routes, comma-separated, each at least 16 characters.
    #[arg(long, env = "SERVICE_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub service_api_keys: Vec<String>,

    /// Largest `data` object of an event, in bytes of JSON.
    #[arg(long, env = "MAX_EVENT_DATA_BYTES", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    pub max_event_data_bytes: u64,

    /// Notifications kept per user; older ones are dropped.
    #[arg(long, env = "NOTIFICATIONS_PER_USER", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=100_000))]
    pub notifications_per_user: u64,
}

/// The notification job queue: in-process without `REDIS_URL`, durable in Redis with it.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueConfig {
    /// Attempts per job (the first delivery included) before it becomes a dead letter.
    #[arg(long, env = "QUEUE_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub queue_max_attempts: u32,

    /// Delay before the first retry, in milliseconds; each further retry doubles it (with jitter).
    #[arg(long, env = "QUEUE_BACKOFF_BASE_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub queue_backoff_base_ms: u64,

    /// Longest delay between two attempts, in milliseconds.
    #[arg(long, env = "QUEUE_BACKOFF_MAX_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub queue_backoff_max_ms: u64,

    /// Jobs delivered at the same time, per channel and process.
    #[arg(long, env = "QUEUE_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub queue_concurrency: u32,

    /// Deliveries per process on the `browser` channel (`<count>/<window>`).
    #[arg(long, env = "QUEUE_RATE_LIMIT_BROWSER", default_value = "500/1s")]
    pub queue_rate_limit_browser: Budget,

    /// Deliveries per process on the `webhook` channel.
    #[arg(long, env = "QUEUE_RATE_LIMIT_WEBHOOK", default_value = "50/1s")]
    pub queue_rate_limit_webhook: Budget,

    /// Deliveries per process on the `email` channel.
    #[arg(long, env = "QUEUE_RATE_LIMIT_EMAIL", default_value = "10/1s")]
    pub queue_rate_limit_email: Budget,

    /// Deliveries per process on the `sms` channel (each counts once, whatever its parts).
    #[arg(long, env = "QUEUE_RATE_LIMIT_SMS", default_value = "10/1s")]
    pub queue_rate_limit_sms: Budget,

    /// Dead letters kept; the oldest are dropped beyond this.
    #[arg(long, env = "QUEUE_DEAD_LETTER_LIMIT", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub queue_dead_letter_limit: u64,

    /// With Redis: how often an idle worker looks for due jobs, in milliseconds.
    #[arg(long, env = "QUEUE_POLL_INTERVAL_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub queue_poll_interval_ms: u64,

    /// With Redis: worker heartbeat in milliseconds; the jobs of a worker silent for three
    /// heartbeats (a killed process) go back to the queue. At least a second: apalis-redis
    /// keeps heartbeats in whole seconds, and under one it takes live workers for dead ones.
    #[arg(long, env = "QUEUE_HEARTBEAT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1_000..=600_000))]
    pub queue_heartbeat_ms: u64,
}

/// The webhook channel: where rules without their own URL post, and the signing key.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// URL for rules on the `webhook` channel that name none.
    #[arg(long, env = "WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Key of the `X-Switchyard-Signature` HMAC-SHA256 (at least 16 bytes); required when a
    /// rule uses the `webhook` channel.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Milliseconds a webhook call may take; a timeout is retried.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=300_000))]
    pub webhook_timeout_ms: u64,
}

/// How the email channel talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmtpTls {
    /// Plain text (a local relay only).
    None,
    /// Plain connection upgraded with STARTTLS; refuses servers that cannot.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// The email channel: an SMTP server and the sender address.
#[derive(Debug, Clone, clap::Args)]
pub struct SmtpConfig {
    /// SMTP server host; rules on the `email` channel need it.
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,

    /// SMTP server port.
    #[arg(long, env = "SMTP_PORT", default_value_t = 587)]
    pub smtp_port: u16,

    /// Transport security: `none`, `starttls` or `tls`.
    #[arg(long, env = "SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,

    /// SMTP user name; with a password, the channel authenticates.
    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,

    /// SMTP password.
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,

    /// Sender (`From`) address, `Name <addr>` or `addr`.
    #[arg(long, env = "SMTP_FROM", default_value = "Switchyard <notifications@localhost>")]
    pub smtp_from: String,

    /// Milliseconds an SMTP exchange may take; a timeout is retried.
    #[arg(long, env = "SMTP_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=300_000))]
    pub smtp_timeout_ms: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Logging.
#[derive(Debug, Clone, clap::Args)]
pub struct LogConfig {
    /// Log filter, `tracing` syntax (`info`, `switchyard_server=debug,info`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Directory for daily-rotated log files (kept 14 days); stdout only when unset.
    #[arg(long, env = "LOG_DIR")]
    pub log_dir: Option<PathBuf>,
}

/// OTLP transport for spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP over gRPC (collector port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (collector port 4318, path `/v1/traces`).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// Distributed tracing with OpenTelemetry. Trace and span ids are in every log line either
/// way; spans leave the process only when an endpoint is set.
#[derive(Debug, Clone, clap::Args)]
pub struct TracingConfig {
    /// OTLP collector to export spans to, e.g. `http://otel-collector:4317`; no export when unset.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: `grpc` or `http/protobuf`.
    #[arg(long = "otlp-protocol", env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum, default_value_t = OtlpProtocol::Grpc)]
    pub otlp_protocol: OtlpProtocol,

    /// `service.name` of exported spans.
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME", default_value = "switchyard-server")]
    pub service_name: String,

    /// Fraction of new traces sampled, 0 to 1; a sampled parent (`traceparent`) is always followed.
    #[arg(long = "otel-sample-ratio", env = "OTEL_TRACES_SAMPLER_ARG", default_value_t = 1.0)]
    pub sample_ratio: f64,
}

/// A setting that parsed but does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {setting}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Parses flags and environment, then validates the settings this module knows; the
    /// error is one line naming the setting. [`Config::load`] (in `app`) adds the checks
    /// that ask a feature (the notification rules file, the SMTP sender).
    pub fn parse_settings<I, T>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = match Self::try_parse_from(args) {
            Ok(config) => config,
            Err(e)
                if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) =>
            {
                e.exit()
            }
            Err(e) => return Err(one_line(&e)),
        };
        let mut config = config;
        // Kubernetes and compose files often set a variable to "" to mean "not set".
        for value in [
            &mut config.auth.jwt_secret,
            &mut config.auth.jwt_public_key,
            &mut config.auth.jwt_jwks_url,
            &mut config.auth.jwt_issuer,
            &mut config.auth.jwt_audience,
            &mut config.tracing.otlp_endpoint,
            &mut config.admin_ui.admin_ui_username,
            &mut config.admin_ui.admin_ui_password_hash,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        // A hash from a mounted Secret often ends with a newline.
        if let Some(hash) = &mut config.admin_ui.admin_ui_password_hash {
            *hash = hash.trim().to_owned();
        }
        config.validate().map_err(|e| format!("error: {e}"))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        let sources = [a.jwt_secret.is_some(), a.jwt_public_key.is_some(), a.jwt_jwks_url.is_some()];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(ConfigError {
                setting: "JWT_SECRET/JWT_PUBLIC_KEY/JWT_JWKS_URL",
                reason: "set exactly one way to verify tokens".into(),
            });
        }
        if let Some(secret) = &a.jwt_secret
            && secret.len() < 32
        {
            return Err(ConfigError { setting: "JWT_SECRET", reason: "must be at least 32 bytes".into() });
        }
        if let Some(url) = &a.jwt_jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError { setting: "JWT_JWKS_URL", reason: "must be an http(s) URL".into() });
        }
        if self.cors_origins.iter().any(|o| o != "*" && !(o.starts_with("http://") || o.starts_with("https://"))) {
            return Err(ConfigError {
                setting: "CORS_ORIGINS",
                reason: "each origin must be * or start with http:// or https://".into(),
            });
        }
        if let Some(url) = &self.redis.redis_url {
            redis_url::Target::parse(url).map_err(|reason| ConfigError { setting: "REDIS_URL", reason })?;
        }
        let prefix = &self.redis.redis_key_prefix;
        if prefix.is_empty()
            || prefix.len() > 32
            || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError { setting: "REDIS_KEY_PREFIX", reason: "1 to 32 letters, digits, - or _".into() });
        }
        if self.shutdown_delay_seconds >= self.shutdown_grace_seconds {
            return Err(ConfigError {
                setting: "SHUTDOWN_DELAY_SECONDS",
                reason: "must be shorter than SHUTDOWN_GRACE_SECONDS".into(),
            });
        }
        if self.environment.is_empty() || self.environment.len() > 64 {
            return Err(ConfigError { setting: "ENVIRONMENT", reason: "must be 1 to 64 characters".into() });
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError {
                setting: "OTEL_EXPORTER_OTLP_ENDPOINT",
                reason: "must be an http(s) URL".into(),
            });
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            return Err(ConfigError { setting: "OTEL_TRACES_SAMPLER_ARG", reason: "must be between 0 and 1".into() });
        }
        if self.tracing.service_name.trim().is_empty() {
            return Err(ConfigError { setting: "OTEL_SERVICE_NAME", reason: "must not be empty".into() });
        }
        self.admin_ui.validate()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.log_level).is_err() {
            return Err(ConfigError {
                setting: "LOG_LEVEL",
                reason: format!("not a log filter: {:?}", self.log.log_level),
            });
        }
        Ok(())
    }

    /// True when no JWT setting is given: development mode.
    pub fn dev_mode(&self) -> bool {
        let a = &self.auth;
        a.jwt_secret.is_none() && a.jwt_public_key.is_none() && a.jwt_jwks_url.is_none()
    }
}

/// clap's message spans several lines and names the flag; ours is one line naming the
/// environment variable too, since that is how containers set these.
fn one_line(e: &clap::Error) -> String {
    use clap::CommandFactory;
    let first = e.render().to_string().lines().next().unwrap_or("error: invalid configuration").to_owned();
    let Some(clap::error::ContextValue::String(arg)) = e.get(clap::error::ContextKind::InvalidArg) else {
        return first;
    };
    let long = arg.split_whitespace().next().unwrap_or_default().trim_start_matches("--");
    let command = Config::command();
    let env = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned());
    match env {
        Some(env) => first.replace(&format!("'{arg}'"), &format!("{env} (--{long})")),
        None => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_reject_garbage() {
        assert_eq!("30/10s".parse::<Budget>().unwrap(), Budget { count: 30, window: Duration::from_secs(10) });
        assert_eq!("5/500ms".parse::<Budget>().unwrap().window, Duration::from_millis(500));
        assert_eq!("100/2m".parse::<Budget>().unwrap().window, Duration::from_secs(120));
        for bad in ["", "30", "x/10s", "30/10", "30/10d", "0/10s", "3/0s"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn invalid_settings_name_the_variable() {
        let err = Config::load_from(["s", "--port", "70000"]).unwrap_err();
        assert!(err.contains("WEBSOCKET_PORT"), "{err}");
        let err = Config::load_from(["s", "--jwt-secret", "short"]).unwrap_err();
        assert_eq!(err, "error: invalid value for JWT_SECRET: must be at least 32 bytes");
        let err = Config::load_from(["s", "--rate-limit-message", "lots"]).unwrap_err();
        assert!(err.contains("RATE_LIMIT_MESSAGE"), "{err}");
        for (flag, value, env) in [
            ("--redis-stream-buffer", "10", "REDIS_STREAM_BUFFER"),
            ("--redis-startup-timeout-ms", "50", "REDIS_STARTUP_TIMEOUT_MS"),
            ("--overload-max-lag-ms", "soon", "OVERLOAD_MAX_LAG_MS"),
            ("--overload-max-lag-ms", "60001", "OVERLOAD_MAX_LAG_MS"),
            ("--recovery-window-ms", "3600001", "RECOVERY_WINDOW_MS"),
            ("--recovery-window-ms", "2m", "RECOVERY_WINDOW_MS"),
            ("--recovery-max-packets", "0", "RECOVERY_MAX_PACKETS"),
        ] {
            let err = Config::load_from(["s", flag, value]).unwrap_err();
            assert!(err.contains(env), "{flag} {value}: {err}");
        }
        let limits = |ms: &str| Config::load_from(["s", "--overload-max-lag-ms", ms]).unwrap().limits;
        assert_eq!(limits("0").overload_max_lag(), None, "0 turns load shedding off");
        assert_eq!(limits("75").overload_max_lag(), Some(Duration::from_millis(75)));
        let socket = |ms: &str| Config::load_from(["s", "--recovery-window-ms", ms]).unwrap().socket;
        assert_eq!(socket("0").recovery(), None, "0 turns recovery off");
        let on = socket("120000").recovery().unwrap();
        assert_eq!((on.max_disconnection, on.max_packets), (Duration::from_secs(120), 10_000));
    }

    /// `changeit` at cost 4.
    const HASH: &str = "$2a$04$oym0iiYp3Twzqv/qxOnWOu3QndxG2rznJh.0/QxWu00AoD07bcdoa";

    #[test]
    fn the_admin_ui_is_off_without_credentials_and_checked_with_them() {
        let admin = |args: &[&str]| Config::load_from(["s"].iter().chain(args)).map(|c| c.admin_ui);
        assert!(!admin(&[]).unwrap().enabled());
        // Empty values count as unset, and a Secret's trailing newline is dropped.
        assert!(!admin(&["--admin-ui-username", "", "--admin-ui-password-hash", " "]).unwrap().enabled());
        let on = admin(&["--admin-ui-username", "ops", "--admin-ui-password-hash", &format!("{HASH}\n")]).unwrap();
        assert!(on.enabled());
        assert_eq!(on.admin_ui_password_hash.as_deref(), Some(HASH));
        assert_eq!((on.base_path(), on.admin_ui_readonly), ("/admin", false));
        for (args, message) in [
            (vec!["--admin-ui-username", "ops"], "ADMIN_UI_PASSWORD_HASH: required with ADMIN_UI_USERNAME"),
            (vec!["--admin-ui-password-hash", HASH], "ADMIN_UI_USERNAME: required with ADMIN_UI_PASSWORD_HASH"),
            (
                vec!["--admin-ui-username", "ops", "--admin-ui-password-hash", "changeit"],
                "ADMIN_UI_PASSWORD_HASH: not a bcrypt hash (such as $2b$10$ followed by 53 characters)",
            ),
            (
                vec!["--admin-ui-username", "a\tb", "--admin-ui-password-hash", HASH],
                "ADMIN_UI_USERNAME: 1 to 64 characters, no control characters",
            ),
            (
                vec!["--admin-ui-path", "admin"],
                "ADMIN_UI_PATH: a path such as /admin/: letters, digits, - _ . ~ and /, not the root",
            ),
            (
                vec!["--admin-ui-path", "/"],
                "ADMIN_UI_PATH: a path such as /admin/: letters, digits, - _ . ~ and /, not the root",
            ),
            (
                vec!["--admin-ui-path", "/a/../b/"],
                "ADMIN_UI_PATH: a path such as /admin/: letters, digits, - _ . ~ and /, not the root",
            ),
            (
                vec!["--admin-ui-path", "/api/admin/"],
                "ADMIN_UI_PATH: must not be under a route the server has (/socket.io, /api, /app, /health, /ready, /metrics, /dev, /favicon.ico)",
            ),
        ] {
            assert_eq!(admin(&args).unwrap_err(), format!("error: invalid value for {message}"), "{args:?}");
        }
        let err = admin(&["--admin-ui-readonly", "maybe"]).unwrap_err();
        assert!(err.contains("ADMIN_UI_READONLY"), "{err}");
        let custom = admin(&["--admin-ui-path", "/ops/socket-admin"]).unwrap();
        assert_eq!(custom.base_path(), "/ops/socket-admin");
    }
}
