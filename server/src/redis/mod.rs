//! The Redis connection shared by the stores, the rate limiter, the job queue and the
//! cross-node bus: a reconnecting connection to one Redis, a Sentinel-managed master or a Cluster,
//! key naming, and the timeout that turns a slow or unreachable Redis into a fast
//! `unavailable` instead of a hung event.

mod conn;
mod driver;

use std::future::Future;
use std::time::Duration;

pub use crate::config::redis_url::redact;
pub use conn::{Conn, ConnectError, MasterLink, PushSender};
pub use driver::{ChanItem, ManagedDriver};

use crate::config::RedisConfig;
use crate::error::{StoreError, StoreResult};
use crate::metrics::Metrics;

/// A handle on Redis; cheap to clone (the connection is multiplexed).
#[derive(Clone)]
pub struct Redis {
    conn: Conn,
    timeout: Duration,
    prefix: String,
    metrics: Metrics,
}

/// `id` as a hash tag: keys whose first `{...}` holds the same text share a Cluster hash
/// slot, which a Lua script or pipeline over several keys needs (`sy:room:{42}:msgs` and
/// `sy:room:{42}:seq` live together). Harmless on a single Redis.
pub fn tag(id: &str) -> String {
    format!("{{{id}}}")
}

impl Redis {
    /// Connects to `REDIS_URL` (one Redis, Sentinel or Cluster); fails when Redis cannot be
    /// reached within `REDIS_STARTUP_TIMEOUT_MS` at start-up. Every call through
    /// [`Redis::run`] is timed into `metrics`.
    pub async fn connect(config: &RedisConfig, metrics: Metrics) -> Result<Self, ConnectError> {
        let conn = Conn::open(config, None).await?;
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        Ok(Self { conn, timeout, prefix: config.redis_key_prefix.clone(), metrics })
    }

    /// A key under the configured prefix: `key(&["room", id])` → `sy:room:<id>`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// A connection for one call (clones share the multiplexed link).
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Runs a Redis call with the command timeout; every failure is `unavailable`, since
    /// our scripts and commands only fail when Redis itself is unwell.
    pub async fn run<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> StoreResult<T> {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.timeout))),
        };
        self.metrics.redis_command(started.elapsed(), result.is_ok());
        result
    }

    /// True when Redis answers a PING in time.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        self.run(redis::cmd("PING").query_async::<String>(&mut conn)).await.is_ok()
    }
}
