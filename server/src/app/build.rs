//! Choosing the backends (in memory, or shared through Redis) and wiring the features, the
//! delivery and the state together, with the background loops they need.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use switchyard_sio::{Io, Offset};

use crate::admin::Admin;
use crate::auth::Verifier;
use crate::chat::Chat;
use crate::chat::overload::Overload;
use crate::chat::store::{ChatStore, MemoryStore, RedisStore};
use crate::config::Config;
use crate::delivery::sessions::RedisSessions;
use crate::delivery::stream::StreamConfig;
use crate::delivery::{Bus, Emitter, Instrumented, IoHandle, bus};
use crate::metrics::Metrics;
use crate::notifications::Notifications;
use crate::notifications::channels::sms::{DeliveryStore, MemoryDeliveries, RedisDeliveries};
use crate::notifications::queue::{JobQueue, MemoryQueue, RedisQueue};
use crate::notifications::store::{MemoryNotificationStore, NotificationStore, RedisNotificationStore};
use crate::presence::{MemoryPresence, Presence, PresenceTracker, RedisPresence};
use crate::ratelimit::{MemoryRateLimiter, RateLimiter, RedisRateLimiter};
use crate::redis::{ManagedDriver, Redis, redact};
use crate::state::{AppState, Handles};

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
        let limiter = Arc::new(MemoryRateLimiter::new(&config.rate_limit));
        spawn_housekeeping(limiter.clone());
        let backend = Backend {
            store: Arc::new(MemoryStore::new(history)),
            limiter,
            notification_store: Arc::new(MemoryNotificationStore::new(
                config.notifications.notifications_per_user as usize,
            )),
            queue: Arc::new(MemoryQueue::new(config.queue.queue_dead_letter_limit as usize)),
            deliveries: Arc::new(MemoryDeliveries::default()),
            presence: Arc::new(MemoryPresence::default()),
        };
        return build_with(config, verifier, backend, metrics, None).await;
    }
    tracing::info!(
        redis = %redact(config.redis.redis_url.as_deref().unwrap_or_default()),
        timeout_ms = config.redis.redis_startup_timeout_ms,
        "connecting to Redis"
    );
    let (redis, bus) = match config.socket.recovery() {
        None => {
            // At once, so start-up waits for an unreachable Redis one REDIS_STARTUP_TIMEOUT_MS, not two.
            let (redis, driver) = tokio::try_join!(
                Redis::connect(&config.redis, metrics.clone()),
                ManagedDriver::connect(&config.redis)
            )?;
            let (bus, inbox) = Bus::connect(
                driver,
                metrics.clone(),
                &config.redis.redis_key_prefix,
                config.redis.redis_stream_buffer as usize,
            )
            .await
            .map_err(|e| anyhow::anyhow!("could not subscribe to the cross-node bus: {e}"))?;
            (redis, Shared { bus, inbox, recovery: None })
        }
        Some(recovery) => {
            // The bus's reader holds a connection of its own (`XREAD BLOCK`).
            let (redis, reader) = tokio::try_join!(
                Redis::connect(&config.redis, metrics.clone()),
                crate::redis::Conn::open(&config.redis, None)
            )?;
            let stream = StreamConfig {
                key: format!("{}-sio-stream", config.redis.redis_key_prefix),
                max_len: recovery.max_packets,
                window: recovery.max_disconnection,
                buffer: config.redis.redis_stream_buffer as usize,
                pause: Duration::from_millis(config.redis.redis_reconnect_max_ms),
                block: Duration::from_millis((config.redis.redis_timeout_ms / 2).max(1)),
            };
            let sessions = RedisSessions::start(redis.clone(), stream.key.clone(), stream.max_len, stream.window);
            let (bus, inbox, start) = Bus::connect_stream(redis.clone(), reader, metrics.clone(), stream)
                .await
                .map_err(|e| anyhow::anyhow!("could not read the cross-node bus stream: {e}"))?;
            tracing::info!("RECOVERY_WINDOW_MS set with REDIS_URL: the cross-node bus is a Redis stream");
            (redis, Shared { bus, inbox, recovery: Some((sessions, start)) })
        }
    };
    let backend = Backend {
        store: Arc::new(RedisStore::new(redis.clone(), history)),
        notification_store: Arc::new(RedisNotificationStore::new(
            redis.clone(),
            config.notifications.notifications_per_user,
        )),
        queue: Arc::new(RedisQueue::new(redis.clone(), &config.queue)),
        deliveries: Arc::new(RedisDeliveries::new(redis.clone())),
        presence: Arc::new(RedisPresence::new(redis.clone())),
        limiter: Arc::new(RedisRateLimiter::new(redis, &config.rate_limit)),
    };
    tracing::info!("REDIS_URL set: state, limits and broadcasts are shared through Redis");
    build_with(config, verifier, backend, metrics, Some(bus)).await
}

/// What the nodes share through Redis besides the backends: the bus and, with recovery on,
/// the recovery sessions and where this node's bus reader starts.
struct Shared {
    bus: Bus,
    inbox: bus::Inbox,
    recovery: Option<(Arc<RedisSessions>, Offset)>,
}

/// The state implementations chosen by the configuration.
struct Backend {
    store: Arc<dyn ChatStore>,
    limiter: Arc<dyn RateLimiter>,
    notification_store: Arc<dyn NotificationStore>,
    queue: Arc<dyn JobQueue>,
    deliveries: Arc<dyn DeliveryStore>,
    presence: Arc<dyn PresenceTracker>,
}

async fn build_with(
    config: Config,
    verifier: Verifier,
    backend: Backend,
    metrics: Metrics,
    shared: Option<Shared>,
) -> anyhow::Result<(Router, AppState)> {
    let (bus, inbox, recovery) = match shared {
        Some(Shared { bus, inbox, recovery }) => (Some(bus), Some(inbox), recovery),
        None => (None, None, None),
    };
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
    let notifications = Notifications::start(
        &config,
        backend.notification_store,
        backend.queue,
        backend.deliveries,
        emitter.clone(),
        metrics.clone(),
    )?;
    let presence = Presence::new(backend.presence, emitter.clone());
    let admin = config.admin_ui.enabled().then(|| Admin::new(&config.admin_ui, config.port, io_handle.clone()));
    let state = AppState::new(Handles {
        verifier,
        chat,
        notifications,
        presence,
        limiter: backend.limiter,
        io: io_handle.clone(),
        metrics,
        admin,
        config,
    });
    state.presence().listen(Arc::new(super::lifecycle::Lifecycle(state.downgrade())));
    let config = state.config();
    let engine = switchyard_sio::Config {
        ping_interval: Duration::from_millis(config.socket.ping_interval_ms),
        ping_timeout: Duration::from_millis(config.socket.ping_timeout_ms),
        max_payload: config.limits.engine_max_payload() as usize,
        max_buffered: config.limits.send_buffer_bytes() as usize,
        // What the connect handlers read: the bearer token and the trace context; and for
        // the Admin UI, the client's address behind a proxy.
        keep_headers: [
            axum::http::header::AUTHORIZATION,
            crate::telemetry::TRACEPARENT.clone(),
            crate::telemetry::TRACESTATE.clone(),
        ]
        .into_iter()
        .chain(state.admin().map(|_| axum::http::HeaderName::from_static("x-forwarded-for")))
        .collect(),
        recovery: config.socket.recovery(),
    };
    let mut builder = Io::builder(engine);
    if let Some(admin) = state.admin() {
        let admin = admin.clone();
        builder = builder.on_upgrade(move |socket| admin.upgraded(socket));
    }
    if let Some((sessions, _)) = &recovery {
        builder = builder.session_store(sessions.clone());
    }
    let io = crate::socket::namespaces(&state).into_iter().fold(builder, |io, ns| io.ns(ns)).build();
    if let Some((_, start)) = recovery {
        for ns in io.namespaces() {
            ns.delivered_up_to(start);
        }
    }
    let census = io.clone();
    state.metrics().set_census(move || crate::delivery::local_rooms_and_users(&census));
    io_handle.set(io.clone());
    if let Some(inbox) = inbox {
        let admin = state.admin().map(Arc::downgrade);
        io_handle.listen(
            inbox,
            Box::new(move |message| {
                if let Some(admin) = admin.as_ref().and_then(std::sync::Weak::upgrade) {
                    admin.receive(message);
                }
            }),
        );
    }
    if state.admin().is_some() {
        tracing::info!(
            path = %config.admin_ui.admin_ui_path,
            readonly = config.admin_ui.admin_ui_readonly,
            "Admin UI on: namespace /admin"
        );
        spawn_periodic(&state, crate::admin::STATS_INTERVAL, |state| async move {
            if let Some(admin) = state.admin() {
                admin.tick().await;
            }
        });
    }
    spawn_store_probe(&state);
    spawn_presence_upkeep(&state);
    let router = super::router::router(&state, io);
    Ok((router, state))
}

/// How often readiness probes the store. Probing in the background keeps `/ready` and the
/// handshake check free of Redis round trips.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `task` every `every` for as long as the server's state lives. The loop holds only a
/// weak reference, so it never keeps a stopped server alive.
fn spawn_periodic<F, Fut>(state: &AppState, every: Duration, task: F)
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let weak = state.downgrade();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            task(state).await;
        }
    });
}

/// Heartbeats and the sweep of dead nodes' sockets (a no-op for in-process presence).
fn spawn_presence_upkeep(state: &AppState) {
    spawn_periodic(state, crate::presence::MAINTAIN_INTERVAL, |state| async move { state.presence().maintain().await });
}

fn spawn_store_probe(state: &AppState) {
    spawn_periodic(state, PROBE_INTERVAL, |state| async move {
        let ok = state.chat().store().ready().await;
        if state.set_store_ok(ok) != ok {
            if ok {
                tracing::info!("store reachable again; ready");
            } else {
                tracing::warn!("store unreachable; not ready, refusing new sessions");
            }
        }
    });
}

fn spawn_housekeeping(limiter: Arc<MemoryRateLimiter>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            limiter.housekeeping();
        }
    });
}
