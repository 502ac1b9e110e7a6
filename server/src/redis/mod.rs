//! The Redis connection shared by the stores, the rate limiter and the adapter: a
//! reconnecting connection manager, key naming, and the timeout that turns a slow or
//! unreachable Redis into a fast `unavailable` instead of a hung event.

mod driver;

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use driver::ManagedDriver;

use crate::config::RedisConfig;
use crate::metrics::Metrics;
use crate::store::{StoreError, StoreResult};

/// A handle on Redis; cheap to clone (the connection is multiplexed).
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    timeout: Duration,
    prefix: String,
    metrics: Metrics,
}

/// The client for `url`, forcing RESP3: the adapter's pub/sub rides on RESP3 push messages.
pub fn client(url: &str) -> redis::RedisResult<redis::Client> {
    let url = if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    };
    redis::Client::open(url)
}

/// Reconnect policy shared by every connection: exponential back-off capped by the config,
/// retried forever, each command bounded by the command timeout.
pub fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    let timeout = Duration::from_millis(config.redis_timeout_ms);
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(config.redis_reconnect_max_ms))
        .set_number_of_retries(usize::MAX)
}

impl Redis {
    /// Connects to `REDIS_URL`; fails when Redis cannot be reached at start-up. Every call
    /// through [`Redis::run`] is timed into `metrics`.
    pub async fn connect(config: &RedisConfig, metrics: Metrics) -> redis::RedisResult<Self> {
        let url = config.redis_url.as_deref().unwrap_or_default();
        let conn = ConnectionManager::new_with_config(client(url)?, manager_config(config)).await?;
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
    pub fn conn(&self) -> ConnectionManager {
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
