//! A socketioxide-redis [`Driver`] on a reconnecting connection.
//!
//! Written for a measured reason: the crate's own `RedisDriver` holds a plain multiplexed
//! connection that never reconnects, so after a Redis restart every broadcast fails and
//! subscriptions are gone for good (seen in the Redis-restart fault drill). This driver
//! publishes through a [`Conn`], which reconnects with back-off, follows a Sentinel
//! failover, and re-subscribes to every channel on its own; on a Cluster it uses sharded
//! pub/sub. Every call is bounded by `REDIS_TIMEOUT_MS`: while Redis refuses connections
//! the connection waits for a reconnect, and an unbounded unsubscribe held a SIGTERM drain
//! (the adapter unsubscribes when the server closes) for the whole grace period.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::{ErrorKind, PushInfo, PushKind, RedisError, RedisResult};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

use super::{Conn, PushSender};
use crate::config::RedisConfig;

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Pub/sub driver for the Socket.IO adapter that survives Redis restarts and failovers.
#[derive(Clone)]
pub struct ManagedDriver {
    handlers: Handlers,
    conn: Conn,
    timeout: Duration,
}

impl ManagedDriver {
    /// Opens the pub/sub connection (RESP3, so subscriptions share the command link).
    pub async fn connect(config: &RedisConfig) -> redis::RedisResult<Self> {
        let handlers = Handlers::default();
        let route = handlers.clone();
        let push: PushSender = Arc::new(move |push: PushInfo| {
            dispatch(&route, push);
            Ok::<(), std::convert::Infallible>(())
        });
        let conn = Conn::open(config, Some(push)).await?;
        Ok(Self { handlers, conn, timeout: Duration::from_millis(config.redis_timeout_ms) })
    }

    async fn bounded<T>(&self, call: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
        tokio::time::timeout(self.timeout, call).await.unwrap_or_else(|_| {
            Err(RedisError::from((ErrorKind::Io, "no answer from Redis within", format!("{:?}", self.timeout))))
        })
    }
}

/// Hands a pushed pub/sub message to the stream subscribed to its channel. Never blocks the
/// connection: a full stream drops the message (the adapter's requests time out instead).
fn dispatch(handlers: &Handlers, push: PushInfo) {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else { return };
    let (Ok(channel), Ok(payload)) =
        (redis::from_redis_value::<String>(channel), redis::from_redis_value::<Vec<u8>>(payload))
    else {
        return;
    };
    let handlers = handlers.read().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = handlers.get(&channel)
        && tx.try_send((channel, payload)).is_err()
    {
        tracing::warn!("adapter stream full or closed; dropping a pub/sub message");
    }
}

impl Driver for ManagedDriver {
    type Error = redis::RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        self.bounded(self.conn.clone().publish(&chan, &val)).await
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size);
        // Register before subscribing so no message that arrives right after is lost.
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).insert(chan.clone(), tx);
        self.bounded(self.conn.clone().subscribe(&chan)).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers.write().unwrap_or_else(|p| p.into_inner()).remove(&chan);
        self.bounded(self.conn.clone().unsubscribe(&chan)).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        self.bounded(self.conn.clone().subscribers(chan)).await
    }
}
