//! One connection type over the three kinds of Redis deployment, so every store, the job
//! queue and the cross-node bus's pub/sub driver run the same code whatever `REDIS_URL`
//! names:
//!
//! - **standalone**: the `redis` crate's `ConnectionManager`, which reconnects with back-off;
//! - **Sentinel**: a `ConnectionManager` on the current master, replaced when the sentinels
//!   name another one. `ConnectionManager` is tied to one address and would keep reconnecting
//!   to a dead or demoted master, and `SentinelClient` hands out plain connections that never
//!   reconnect, so [`MasterLink`] joins the two;
//! - **Cluster**: the crate's async `ClusterConnection`, which routes by slot, follows
//!   `MOVED`, reconnects to nodes and re-subscribes on its own. Pub/sub uses sharded
//!   channels there, so a broadcast goes to the one shard owning its channel.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value};

use crate::config::RedisConfig;
use crate::config::redis_url::{Target, redact};

/// Receives the pub/sub messages of a connection.
pub type PushSender = Arc<dyn AsyncPushSender>;

/// How often a Sentinel link asks the sentinels who the master is, besides asking at once
/// when a command fails. A failed-over master that is still up keeps taking commands (and
/// a publish on a replica succeeds), so an error alone would not always reveal a failover.
const SENTINEL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A multiplexed connection to whatever `REDIS_URL` names; cheap to clone.
#[derive(Clone)]
pub enum Conn {
    /// One Redis.
    Standalone(ConnectionManager),
    /// The master that the sentinels name, followed across failovers.
    Sentinel(Arc<MasterLink>),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

/// Why start-up could not connect to Redis. The message names Redis and `REDIS_URL` without
/// its credentials, so it can be printed and logged as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The client gave up with an error (the sentinels named no master, say).
    #[error("cannot connect to Redis at {target}: {cause}")]
    Failed {
        /// `REDIS_URL` without credentials.
        target: String,
        /// What the client reported.
        cause: RedisError,
    },
    /// No connection within `REDIS_STARTUP_TIMEOUT_MS`. The client retries refused
    /// connections and failed handshakes alike, so the cause is not known.
    #[error(
        "cannot connect to Redis at {target} within {bound:?} (REDIS_STARTUP_TIMEOUT_MS); check that it runs and \
         that REDIS_URL's host, port, password and TLS are right"
    )]
    TimedOut {
        /// `REDIS_URL` without credentials.
        target: String,
        /// The time waited.
        bound: Duration,
    },
}

impl Conn {
    /// Connects to the deployment of `config` (which has a validated `REDIS_URL`); with
    /// `push`, the connection also carries subscriptions and re-subscribes after reconnects.
    ///
    /// Gives up after `REDIS_STARTUP_TIMEOUT_MS`: the connection retries without end so that
    /// a running server rides out a Redis outage, which at start-up would mean waiting
    /// forever, silently, for a Redis that is not there.
    pub async fn open(config: &RedisConfig, push: Option<PushSender>) -> Result<Self, ConnectError> {
        let url = config.redis_url.as_deref().unwrap_or_default();
        let bound = Duration::from_millis(config.redis_startup_timeout_ms);
        match tokio::time::timeout(bound, Self::connect(url, config, push)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(cause)) => Err(ConnectError::Failed { target: redact(url), cause }),
            Err(_) => Err(ConnectError::TimedOut { target: redact(url), bound }),
        }
    }

    async fn connect(url: &str, config: &RedisConfig, push: Option<PushSender>) -> RedisResult<Self> {
        let target = Target::parse(url)
            .map_err(|e| redis::RedisError::from((ErrorKind::InvalidClientConfig, "REDIS_URL", e)))?;
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let mut manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(config.redis_reconnect_max_ms))
            .set_number_of_retries(usize::MAX);
        if let Some(push) = push.clone() {
            manager = manager.set_push_sender(push).set_automatic_resubscription();
        }
        match target {
            Target::Standalone(url) => {
                Ok(Self::Standalone(ConnectionManager::new_with_config(resp3_client(&url)?, manager).await?))
            }
            Target::Sentinel { sentinels, master, node } => {
                let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(node);
                let sentinel = SentinelClient::build(sentinels, master, Some(node), SentinelServerType::Master)?;
                Ok(Self::Sentinel(MasterLink::open(sentinel, manager, timeout).await?))
            }
            Target::Cluster { nodes } => {
                let client = ClusterClientBuilder::new(nodes)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .max_retry_wait(config.redis_reconnect_max_ms)
                    .build()?;
                let mut cluster = ClusterConfig::new();
                if let Some(push) = push {
                    cluster = cluster.set_push_sender(push);
                }
                Ok(Self::Cluster(client.get_async_connection_with_config(cluster).await?))
            }
        }
    }

    /// Publishes `payload` on `channel` to every subscriber of the deployment.
    pub async fn publish(&mut self, channel: &str, payload: &[u8]) -> RedisResult<()> {
        let command = if matches!(self, Self::Cluster(_)) { "SPUBLISH" } else { "PUBLISH" };
        redis::cmd(command).arg(channel).arg(payload).query_async(self).await
    }

    /// Subscribes to `channel`; messages go to the push sender given to [`Conn::open`].
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Standalone(conn) => conn.subscribe(channel).await,
            Self::Sentinel(link) => link.subscribe(channel).await,
            Self::Cluster(conn) => conn.ssubscribe(channel).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
            Self::Sentinel(link) => Box::pin(async move {
                let result = link.current().req_packed_command(cmd).await;
                link.check(&result);
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Sentinel(link) => Box::pin(async move {
                let result = link.current().req_packed_commands(cmd, offset, count).await;
                link.check(&result);
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
            Self::Sentinel(link) => link.current().get_db(),
        }
    }
}

/// The client for a standalone `url`, forcing RESP3: the bus's pub/sub rides on RESP3
/// push messages.
fn resp3_client(url: &str) -> RedisResult<redis::Client> {
    if url.contains("protocol=") {
        return redis::Client::open(url);
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    redis::Client::open(format!("{url}{separator}protocol=resp3"))
}

/// A reconnecting connection to the master that the sentinels currently name.
pub struct MasterLink {
    /// Also serialises switches with subscribes, so no subscription misses a switch.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    manager: ConnectionManagerConfig,
    current: RwLock<Master>,
    /// Channels to subscribe again on a new master.
    channels: Mutex<BTreeSet<String>>,
    /// A check is running; failures meanwhile need no second one.
    checking: AtomicBool,
    /// Bound on one check, so a hung sentinel never holds subscribes for long.
    timeout: Duration,
}

struct Master {
    addr: String,
    conn: ConnectionManager,
}

impl MasterLink {
    /// Asks the sentinels for the master, connects, and keeps checking in the background
    /// for as long as the link is used.
    async fn open(
        mut sentinel: SentinelClient,
        manager: ConnectionManagerConfig,
        timeout: Duration,
    ) -> RedisResult<Arc<Self>> {
        let client = sentinel.async_get_client().await?;
        let addr = client.get_connection_info().addr().to_string();
        let conn = ConnectionManager::new_with_config(client, manager.clone()).await?;
        let link = Arc::new(Self {
            sentinel: tokio::sync::Mutex::new(sentinel),
            manager,
            current: RwLock::new(Master { addr, conn }),
            channels: Mutex::default(),
            checking: AtomicBool::new(false),
            timeout,
        });
        tokio::spawn(watch(Arc::downgrade(&link)));
        Ok(link)
    }

    fn current(&self) -> ConnectionManager {
        self.current.read().unwrap_or_else(|p| p.into_inner()).conn.clone()
    }

    /// After a command: a dropped link, a refused connection or a `READONLY` answer may mean
    /// the master moved, so ask the sentinels now rather than at the next periodic check.
    fn check<T>(self: &Arc<Self>, result: &RedisResult<T>) {
        let Err(e) = result else { return };
        let moved = e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly);
        if moved && !self.checking.swap(true, Ordering::AcqRel) {
            let link = self.clone();
            tokio::spawn(async move {
                link.follow().await;
                link.checking.store(false, Ordering::Release);
            });
        }
    }

    /// Switches to the master the sentinels name, if it is not the current one.
    async fn follow(&self) {
        if tokio::time::timeout(self.timeout, self.switch()).await.is_err() {
            tracing::debug!("the sentinels or the new master did not answer in time");
        }
    }

    async fn switch(&self) {
        let mut sentinel = self.sentinel.lock().await;
        let client = match sentinel.async_get_client().await {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(error = %e, "no master from the sentinels");
                return;
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        if self.current.read().unwrap_or_else(|p| p.into_inner()).addr == addr {
            return;
        }
        let mut conn = match ConnectionManager::new_with_config(client, self.manager.clone()).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, %addr, "cannot connect to the new Redis master yet");
                return;
            }
        };
        let channels: Vec<String> = self.channels.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        for channel in &channels {
            if let Err(e) = conn.subscribe(channel).await {
                tracing::warn!(error = %e, %addr, "cannot subscribe on the new Redis master yet");
                return;
            }
        }
        tracing::info!(%addr, "Redis master changed; following it");
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Master { addr, conn };
    }

    async fn subscribe(&self, channel: &str) -> RedisResult<()> {
        let _switching = self.sentinel.lock().await;
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).insert(channel.to_owned());
        self.current().subscribe(channel).await
    }
}

/// The periodic check of a link; ends when the link is dropped.
async fn watch(link: Weak<MasterLink>) {
    let mut tick = tokio::time::interval(SENTINEL_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let Some(link) = link.upgrade() else { return };
        link.follow().await;
    }
}
