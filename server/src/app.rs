//! Wiring: application state, the axum router with the Engine.IO routes, and the serve loop
//! with its SIGTERM drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use switchyard_sio::Io;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::Verifier;
use crate::bus::Bus;
use crate::chat::Chat;
use crate::config::Config;
use crate::emitter::{Emitter, Instrumented, IoHandle};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::notifications::Notifications;
use crate::notifications::queue::{JobQueue, MemoryQueue, RedisQueue};
use crate::notifications::redis_store::RedisNotificationStore;
use crate::notifications::store::{MemoryNotificationStore, NotificationStore};
use crate::overload::Overload;
use crate::presence::{LocalPresence, Presence, PresenceTracker, RedisPresence};
use crate::ratelimit::{EventClass, LocalRateLimiter, RateLimiter, RedisRateLimiter, Verdict};
use crate::redis::{ManagedDriver, Redis, redact};
use crate::store::{ChatStore, MemoryStore, RedisStore};
use crate::telemetry::TracedDriver;
use crate::{http, ns};

/// Shared application state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    verifier: Verifier,
    chat: Chat,
    notifications: Notifications,
    presence: Presence,
    limiter: Arc<dyn RateLimiter>,
    io: Arc<dyn Emitter>,
    metrics: Metrics,
    draining: AtomicBool,
    /// Last readiness probe of the store (Redis), refreshed every [`PROBE_INTERVAL`].
    store_ok: AtomicBool,
    started: Instant,
}

/// An event refused by the rate limiter: the error to answer with, and the verdict, which
/// socket handlers turn into `rateLimitWarning` / `rateLimitBlocked`.
#[derive(Debug)]
pub struct Refused {
    /// The `rate_limited` error.
    pub error: ApiError,
    /// Why.
    pub verdict: Verdict,
}

impl AppState {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The token verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.0.verifier
    }

    /// The chat service.
    pub fn chat(&self) -> &Chat {
        &self.0.chat
    }

    /// The notification pipeline and the per-user notification lists.
    pub fn notifications(&self) -> &Notifications {
        &self.0.notifications
    }

    /// Presence tracking.
    pub fn presence(&self) -> &Presence {
        &self.0.presence
    }

    /// True once SIGTERM started the drain.
    pub fn draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    /// True while the store (Redis) answered the last probe.
    pub fn store_ok(&self) -> bool {
        self.0.store_ok.load(Ordering::Relaxed)
    }

    /// True when this process can serve: not draining and its store reachable.
    pub fn ready(&self) -> bool {
        !self.draining() && self.store_ok()
    }

    /// Counts one event against `user`'s budget for `class`.
    pub async fn admit(&self, user: &str, class: EventClass) -> Result<(), Box<Refused>> {
        let verdict = match self.0.limiter.check(user, class).await {
            Ok(v) => v,
            // Failing open: a limiter outage must not take chat down with it; the store
            // calls that follow fail on their own if the outage is shared.
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; allowing event");
                Verdict::Allow
            }
        };
        match verdict.error() {
            None => Ok(()),
            Some(error) => Err(Box::new(Refused { error, verdict })),
        }
    }

    /// The drain: readiness turns 503 and new connections are refused; after
    /// `SHUTDOWN_DELAY_SECONDS` every socket is closed at the transport level, which
    /// `socket.io-client` answers by reconnecting (to another pod behind a load balancer).
    async fn drain(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
        let delay = Duration::from_secs(self.0.config.shutdown_delay_seconds);
        tracing::info!(?delay, "draining: refusing new connections, then closing sockets");
        // Queue workers stop taking jobs at once and finish or hand back the ones in
        // flight, while sockets get the delay.
        let sockets = async {
            tokio::time::sleep(delay).await;
            self.0.io.close().await;
        };
        tokio::join!(self.0.notifications.shutdown(), sockets);
    }
}

/// Builds the state and the router for `config`: in-memory and alone without `REDIS_URL`,
/// shared through Redis with it.
pub async fn build(config: Config) -> anyhow::Result<(Router, AppState)> {
    let verifier = Verifier::from_config(&config.auth)?;
    if verifier.is_dev() {
        tracing::warn!(
            "DEVELOPMENT MODE: no JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL set; using a random per-process secret \
             and serving POST /dev/token. Do not expose this server."
        );
    }
    let history = config.limits.history_limit as usize;
    let metrics = Metrics::new(&config.environment);
    if config.redis.redis_url.is_none() {
        tracing::warn!("no REDIS_URL: running as a single node with in-memory state; nothing survives a restart");
        let limiter = Arc::new(LocalRateLimiter::new(&config.rate_limit));
        spawn_housekeeping(limiter.clone());
        let backend = Backend {
            store: Arc::new(MemoryStore::new(history)),
            limiter,
            notification_store: Arc::new(MemoryNotificationStore::new(
                config.notifications.notifications_per_user as usize,
            )),
            queue: Arc::new(MemoryQueue::new(config.queue.queue_dead_letter_limit as usize)),
            presence: Arc::new(LocalPresence::default()),
        };
        return build_with(config, verifier, backend, metrics, None).await;
    }
    tracing::info!(
        redis = %redact(config.redis.redis_url.as_deref().unwrap_or_default()),
        timeout_ms = config.redis.redis_startup_timeout_ms,
        "connecting to Redis"
    );
    // At once, so start-up waits for an unreachable Redis one REDIS_STARTUP_TIMEOUT_MS, not two.
    let (redis, driver) =
        tokio::try_join!(Redis::connect(&config.redis, metrics.clone()), ManagedDriver::connect(&config.redis))?;
    let bus = Bus::connect(
        TracedDriver::new(driver, metrics.clone()),
        &config.redis.redis_key_prefix,
        config.redis.redis_stream_buffer as usize,
    )
    .await
    .map_err(|e| anyhow::anyhow!("could not subscribe to the cross-node bus: {e}"))?;
    let backend = Backend {
        store: Arc::new(RedisStore::new(redis.clone(), history)),
        notification_store: Arc::new(RedisNotificationStore::new(
            redis.clone(),
            config.notifications.notifications_per_user,
        )),
        queue: Arc::new(RedisQueue::new(redis.clone(), &config.queue)),
        presence: Arc::new(RedisPresence::new(redis.clone())),
        limiter: Arc::new(RedisRateLimiter::new(redis, &config.rate_limit)),
    };
    tracing::info!("REDIS_URL set: state, limits and broadcasts are shared through Redis");
    build_with(config, verifier, backend, metrics, Some(bus)).await
}

/// The state implementations chosen by the configuration.
struct Backend {
    store: Arc<dyn ChatStore>,
    limiter: Arc<dyn RateLimiter>,
    notification_store: Arc<dyn NotificationStore>,
    queue: Arc<dyn JobQueue>,
    presence: Arc<dyn PresenceTracker>,
}

async fn build_with(
    config: Config,
    verifier: Verifier,
    backend: Backend,
    metrics: Metrics,
    bus: Option<(Bus, tokio::sync::mpsc::Receiver<crate::redis::ChanItem>)>,
) -> anyhow::Result<(Router, AppState)> {
    let (bus, messages) = bus.unzip();
    let io_handle = Arc::new(IoHandle::new(bus));
    // Domain code emits through the instrumented emitter: a span and a count per emit.
    let emitter: Arc<dyn Emitter> = Arc::new(Instrumented::new(io_handle.clone(), metrics.clone()));
    let chat = Chat::new(
        backend.store,
        emitter.clone(),
        config.limits.max_message_length as usize,
        Duration::from_millis(config.socket.typing_timeout_ms),
        Overload::spawn(config.limits.overload_max_lag(), metrics.clone()),
    );
    let notifications =
        Notifications::start(&config, backend.notification_store, backend.queue, emitter.clone(), metrics.clone())?;
    let presence = Presence::new(backend.presence, emitter.clone());
    let state = AppState(Arc::new(Inner {
        verifier,
        chat,
        notifications,
        presence,
        limiter: backend.limiter,
        io: io_handle.clone(),
        metrics,
        draining: AtomicBool::new(false),
        store_ok: AtomicBool::new(true),
        started: Instant::now(),
        config,
    }));
    let config = state.config();
    let engine = switchyard_sio::Config {
        ping_interval: Duration::from_millis(config.socket.ping_interval_ms),
        ping_timeout: Duration::from_millis(config.socket.ping_timeout_ms),
        max_payload: config.limits.engine_max_payload() as usize,
        max_buffered: config.limits.send_buffer_bytes() as usize,
        // What the connect handlers read: the bearer token and the trace context.
        keep_headers: vec![header::AUTHORIZATION, TRACEPARENT.clone(), TRACESTATE.clone()],
    };
    let io = ns::namespaces(&state).into_iter().fold(Io::builder(engine), |io, ns| io.ns(ns)).build();
    let census = io.clone();
    state.metrics().set_census(move || crate::metrics::local_rooms_and_users(&census));
    io_handle.set(io.clone());
    if let Some(messages) = messages {
        io_handle.listen(messages);
    }
    spawn_store_probe(&state);
    spawn_presence_upkeep(&state);

    // Engine.IO requests stay out of the HTTP request spans: every long-poll would be one.
    let engine = Router::new()
        .route("/socket.io/", axum::routing::any(Io::handle))
        .route("/socket.io", axum::routing::any(Io::handle))
        .with_state(io);
    let router = http::routes(&state)
        .layer(middleware::from_fn(crate::telemetry::trace_http))
        .with_state(state.clone())
        .merge(engine)
        .layer(middleware::from_fn_with_state(state.clone(), refuse_new_sessions))
        .layer(cors(&config.cors_origins));
    Ok((router, state))
}

/// The W3C trace-context headers.
static TRACEPARENT: header::HeaderName = header::HeaderName::from_static("traceparent");
static TRACESTATE: header::HeaderName = header::HeaderName::from_static("tracestate");

/// How often readiness probes the store. Probing in the background keeps `/ready` and the
/// handshake check free of Redis round trips.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `task` every `every` for as long as the server's state lives. The loop holds only a
/// weak reference, so it never keeps a stopped server alive.
fn spawn_periodic<F, Fut>(state: &AppState, every: Duration, task: F)
where
    F: Fn(Arc<Inner>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let weak = Arc::downgrade(&state.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            task(inner).await;
        }
    });
}

/// Heartbeats and the sweep of dead nodes' sockets (a no-op for in-process presence).
fn spawn_presence_upkeep(state: &AppState) {
    spawn_periodic(state, crate::presence::MAINTAIN_INTERVAL, |inner| async move { inner.presence.maintain().await });
}

fn spawn_store_probe(state: &AppState) {
    spawn_periodic(state, PROBE_INTERVAL, |inner| async move {
        let ok = inner.chat.store().ready().await;
        if inner.store_ok.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::info!("store reachable again; ready");
            } else {
                tracing::warn!("store unreachable; not ready, refusing new sessions");
            }
        }
    });
}

fn spawn_housekeeping(limiter: Arc<LocalRateLimiter>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            limiter.housekeeping();
        }
    });
}

/// CORS for `CORS_ORIGINS`, on every route: Engine.IO long-polling, the HTTP API and the
/// probes; preflights are answered here without reaching them.
///
/// An explicit list allows credentials: behind a load balancer with cookie affinity, browser
/// clients on another origin (`withCredentials: true`) must send the affinity cookie with every
/// long-polling request, or their polls land on nodes that do not know the session. `*` allows
/// any origin without credentials: a wildcard with credentials is invalid CORS, which
/// tower-http turns into a panic on the first request.
fn cors(origins: &[String]) -> CorsLayer {
    let layer = if origins.iter().any(|o| o == "*") {
        CorsLayer::new().allow_origin(AllowOrigin::any())
    } else {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok())))
            .allow_credentials(true)
    };
    layer
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            "traceparent".parse().expect("static header name"),
        ])
        .expose_headers([header::RETRY_AFTER])
}

/// While draining or while the store is unreachable, new Engine.IO sessions (requests
/// without `sid`) get 503: `socket.io-client` retries with back-off, reaching another node
/// or this one once it recovers. Existing sessions keep working until they are closed.
async fn refuse_new_sessions(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let new_session =
        request.uri().path().starts_with("/socket.io") && !request.uri().query().unwrap_or_default().contains("sid=");
    if new_session && !state.ready() {
        let why = if state.draining() { "server is shutting down" } else { "storage is temporarily unavailable" };
        return ApiError::new(ErrorCode::Unavailable, why).into_response();
    }
    next.run(request).await
}

/// Serves until `shutdown` completes, then drains within `SHUTDOWN_GRACE_SECONDS`.
pub async fn serve(
    listener: TcpListener,
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // With port 0 the OS picks; report the real one (in /health, for instance).
    config.port = listener.local_addr()?.port();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let (router, state) = build(config).await?;
    tracing::info!(addr = %listener.local_addr()?, "switchyard-server listening");
    let started_drain = Arc::new(tokio::sync::Notify::new());
    let graceful = {
        let (state, started_drain) = (state.clone(), started_drain.clone());
        async move {
            shutdown.await;
            started_drain.notify_one();
            state.drain().await;
        }
    };
    // No Nagle: a small frame written while an earlier one is unacknowledged waits for the
    // peer's delayed ACK (up to 40 ms on Linux). One handshake at a time went from 33/s to
    // 778/s with Redis and from 241/s to 1,167/s in memory (bench/README.md).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not disable Nagle on a connection");
        }
    });
    // Served as a Router, axum rebuilds the route table for every accepted connection (a
    // clone of every route and layer, on the single accept task). Resolved once here, a
    // connection costs an Arc clone: server CPU per connect 394 -> about 250 µs
    // (bench/README.md).
    let service = router.with_state(()).into_make_service();
    let server = axum::serve(listener, service).with_graceful_shutdown(graceful).into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        _ = started_drain.notified() => match tokio::time::timeout(grace, &mut server).await {
            Ok(result) => result?,
            Err(_) => tracing::warn!(?grace, "grace period over; exiting with connections still open"),
        },
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
