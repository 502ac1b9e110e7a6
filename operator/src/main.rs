//! `switchyard-operator`: runs the RealtimeCluster controller with leader election and serves
//! `/metrics`, `/health` (the process runs) and `/ready` (no watch is stalled).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use clap::{ArgAction, Parser};
use switchyard_operator::controller::{self, Context};
use switchyard_operator::leader::{Leadership, LeaseSettings};
use switchyard_operator::metrics::Metrics;
use switchyard_operator::telemetry;
use switchyard_operator::watches::WatchHealth;
use tokio::sync::watch;
use tracing::{error, info};

/// Command-line flags; each can also come from the environment.
#[derive(Parser, Debug)]
#[command(version, about = "Kubernetes operator for Switchyard RealtimeClusters")]
struct Args {
    /// Address of the /metrics and /health endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Compete for a Lease and reconcile only while holding it.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "switchyard-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own namespace in a pod).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the Lease; the pod name in a pod.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds the Lease stays valid without renewal (takeover time after a crash).
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration: u64,
    /// Seconds before expiry at which the leader renews.
    #[arg(long, env = "LEASE_GRACE_SECONDS", default_value_t = 5)]
    lease_grace: u64,
    /// Reconcile only the RealtimeClusters of this namespace (a namespace-scoped install whose
    /// RBAC is a Role there); every namespace when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// RealtimeClusters reconciled in parallel.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = telemetry::init(args.log_format == "json")?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(Metrics::default());
    let watches = Arc::new(WatchHealth::new(metrics.clone()));
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .with_state(Probes { metrics: metrics.clone(), watches: watches.clone() });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "metrics server failed");
        }
    });
    info!(%identity, addr = %args.metrics_addr, "switchyard-operator starting");

    // One shutdown signal, observable by both the lease wait and the controller.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        sigterm::wait().await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), watches, identity.clone()));
    if !args.leader_election {
        metrics.leader.set(1);
        controller::run(ctx, args.concurrency, args.watch_namespace.clone(), stopped()).await?;
        return Ok(());
    }

    let settings = LeaseSettings {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity,
        duration_seconds: args.lease_duration,
        grace_seconds: args.lease_grace,
    };
    let mut leadership = Leadership::start(client, &settings).await?;
    info!(lease = %settings.name, namespace = %settings.namespace, "waiting for the leader lease");
    tokio::select! {
        acquired = leadership.acquired() => acquired?,
        _ = stopped() => {
            leadership.release().await;
            return Ok(());
        }
    }
    metrics.leader.set(1);

    let lost = leadership.lost();
    let stop = stopped();
    let shutdown = async move {
        tokio::select! {
            _ = lost => {},
            _ = stop => {},
        }
    };
    controller::run(ctx, args.concurrency, args.watch_namespace.clone(), shutdown).await?;
    metrics.leader.set(0);
    if leadership.is_leader() {
        leadership.release().await;
        Ok(())
    } else {
        // Another replica may already be reconciling: exit so a fresh process queues up again.
        anyhow::bail!("lost the leader lease")
    }
}

/// What the HTTP endpoints read.
#[derive(Clone)]
struct Probes {
    metrics: Arc<Metrics>,
    watches: Arc<WatchHealth>,
}

async fn serve_metrics(State(probes): State<Probes>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    // Brings switchyard_operator_watch_stalled up to date for watches that recovered quietly.
    probes.watches.stalled();
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        probes.metrics.encode(),
    )
}

/// 200 `ok`, or 503 naming each stalled watch: the operator cannot see changes to that kind.
async fn ready(State(probes): State<Probes>) -> (axum::http::StatusCode, String) {
    let stalled = probes.watches.stalled();
    if stalled.is_empty() {
        return (axum::http::StatusCode::OK, "ok\n".into());
    }
    let lines: String =
        stalled.iter().map(|s| format!("watch of {} failing for {} s: {}\n", s.kind, s.for_seconds, s.error)).collect();
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, lines)
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "switchyard-operator".into());
    format!("{host}-{}", std::process::id())
}
