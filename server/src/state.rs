//! The application state the socket and HTTP layers hand to every request: handles on the
//! features and the process's few flags. Built by `app`, which alone sees every backend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::admin::Admin;
use crate::auth::Verifier;
use crate::chat::Chat;
use crate::config::Config;
use crate::delivery::Emitter;
use crate::metrics::Metrics;
use crate::notifications::Notifications;
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;

/// Shared application state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What the state holds, as `app` builds it.
pub struct Handles {
    /// The configuration.
    pub config: Config,
    /// The token verifier.
    pub verifier: Verifier,
    /// The chat service.
    pub chat: Chat,
    /// The notification pipeline and the per-user notification lists.
    pub notifications: Notifications,
    /// Presence tracking.
    pub presence: Presence,
    /// Per-user budgets.
    pub limiter: Arc<dyn RateLimiter>,
    /// Delivery to this node's sockets (and, with Redis, the other nodes').
    pub io: Arc<dyn Emitter>,
    /// The Prometheus metrics.
    pub metrics: Metrics,
    /// The Admin UI's side, when it is on.
    pub admin: Option<Arc<Admin>>,
}

struct Inner {
    handles: Handles,
    draining: AtomicBool,
    /// Last readiness probe of the store (Redis), refreshed by `app`.
    store_ok: AtomicBool,
    started: Instant,
}

/// A reference to the state that does not keep it alive (for background loops).
pub struct WeakState(Weak<Inner>);

impl WeakState {
    /// The state, while the server lives.
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}

impl AppState {
    /// The state over `handles`: ready, not draining, started now.
    pub fn new(handles: Handles) -> Self {
        Self(Arc::new(Inner {
            handles,
            draining: AtomicBool::new(false),
            store_ok: AtomicBool::new(true),
            started: Instant::now(),
        }))
    }

    /// A reference that does not keep the state alive.
    pub fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.0))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.handles.config
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.handles.metrics
    }

    /// The token verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.0.handles.verifier
    }

    /// The chat service.
    pub fn chat(&self) -> &Chat {
        &self.0.handles.chat
    }

    /// The notification pipeline and the per-user notification lists.
    pub fn notifications(&self) -> &Notifications {
        &self.0.handles.notifications
    }

    /// Submits the lifecycle event `kind` of `user_id` (`user.online`, `socket.connected`, …)
    /// in the background, when a rule takes that type; without one nothing is built or
    /// queued, so connections pay nothing for hooks nobody asked for. Off the connect and
    /// disconnect paths: queueing waits on the queue's backend.
    pub fn submit_lifecycle(&self, kind: &'static str, user_id: &str, data: impl FnOnce() -> serde_json::Value) {
        if !self.notifications().has_rules(kind) {
            return;
        }
        let event = crate::notifications::Event {
            kind: kind.to_owned(),
            user_id: user_id.to_owned(),
            data: Some(data()),
            event_id: None,
        };
        let app = self.clone();
        tokio::spawn(async move {
            if let Err(e) = app.notifications().submit(event).await {
                tracing::warn!(error = %e, kind, "lifecycle event not queued");
            }
        });
    }

    /// Presence tracking.
    pub fn presence(&self) -> &Presence {
        &self.0.handles.presence
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &dyn RateLimiter {
        self.0.handles.limiter.as_ref()
    }

    /// Delivery to the sockets.
    pub fn io(&self) -> &dyn Emitter {
        self.0.handles.io.as_ref()
    }

    /// The Admin UI's side, when it is on.
    pub fn admin(&self) -> Option<&Arc<Admin>> {
        self.0.handles.admin.as_ref()
    }

    /// True once SIGTERM started the drain.
    pub fn draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// Marks the drain as started: readiness turns 503 and new sessions are refused.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }

    /// True while the store (Redis) answered the last probe.
    pub fn store_ok(&self) -> bool {
        self.0.store_ok.load(Ordering::Relaxed)
    }

    /// Records the last probe of the store; returns the previous result.
    pub fn set_store_ok(&self, ok: bool) -> bool {
        self.0.store_ok.swap(ok, Ordering::Relaxed)
    }

    /// True when this process can serve: not draining and its store reachable.
    pub fn ready(&self) -> bool {
        !self.draining() && self.store_ok()
    }
}
