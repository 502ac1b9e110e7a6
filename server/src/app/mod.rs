//! The top floor, the only module that sees everything: [`build`] chooses the backends and
//! wires the features, `lifecycle` turns presence changes into notification events,
//! `router` assembles the routes and the Engine.IO endpoint, and this
//! module loads the configuration and serves until SIGTERM, then drains.

mod build;
mod lifecycle;
mod router;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use build::build;

use crate::config::Config;
use crate::state::AppState;

impl Config {
    /// Parses flags and environment, then validates; the error is one line naming the
    /// setting. Here rather than in `config` because some checks belong to a feature (the
    /// notification rules file, the SMTP sender), and configuration sits below the features.
    pub fn load() -> Result<Self, String> {
        Self::load_from(std::env::args_os())
    }

    /// [`Config::load`] over explicit arguments (the environment still applies).
    pub fn load_from<I, T>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = Self::parse_settings(args)?;
        crate::notifications::check_config(&config).map_err(|e| format!("error: {e}"))?;
        Ok(config)
    }
}

/// The drain: readiness turns 503 and new connections are refused; after
/// `SHUTDOWN_DELAY_SECONDS` every socket is closed at the transport level, which
/// `socket.io-client` answers by reconnecting (to another pod behind a load balancer).
async fn drain(state: &AppState) {
    state.start_draining();
    let delay = Duration::from_secs(state.config().shutdown_delay_seconds);
    tracing::info!(?delay, "draining: refusing new connections, then closing sockets");
    // Queue workers stop taking jobs at once and finish or hand back the ones in
    // flight, while sockets get the delay.
    let sockets = async {
        tokio::time::sleep(delay).await;
        state.io().close().await;
    };
    tokio::join!(state.notifications().shutdown(), sockets);
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
            drain(&state).await;
        }
    };
    // The transport's accept loop: axum's plus a request-head read timeout, so a client
    // cannot hold connections by trickling request heads. It turns Nagle off on each
    // connection (a small frame written while an earlier one is unacknowledged waits for the
    // peer's delayed ACK: one handshake at a time went from 33/s to 778/s with Redis,
    // bench/README.md). The router is resolved once here, so a connection costs an Arc
    // clone, not a rebuilt route table (server CPU per connect 394 -> about 250 µs).
    let server = switchyard_sio::serve(listener, router.with_state(()), switchyard_sio::HEAD_TIMEOUT, graceful);
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
