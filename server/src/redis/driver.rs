//! Pub/sub for the cross-node bus on a reconnecting connection.
//!
//! A plain multiplexed connection never reconnects: after a Redis restart every broadcast
//! fails and subscriptions are gone for good (seen in the Redis-restart fault drill with
//! socketioxide-redis's driver, which this replaced). This driver publishes through a
//! [`Conn`], which reconnects with back-off and follows a Sentinel failover, and subscribes
//! again to every channel after a lost link; on a Cluster it uses sharded pub/sub. Every
//! call is bounded by `REDIS_TIMEOUT_MS`: while Redis refuses connections the connection
//! waits for a reconnect, and an unbounded call held a SIGTERM drain for the whole grace
//! period.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::{ErrorKind, PushInfo, PushKind, RedisError, RedisResult};
use tokio::sync::mpsc;

use super::{Conn, ConnectError, PushSender};
use crate::config::RedisConfig;

/// A channel and a message published on it.
pub type ChanItem = (String, Vec<u8>);

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Pub/sub for the cross-node bus that survives Redis restarts and failovers.
#[derive(Clone)]
pub struct ManagedDriver(Arc<Shared>);

struct Shared {
    handlers: Handlers,
    conn: Conn,
    timeout: Duration,
}

impl ManagedDriver {
    /// Opens the pub/sub connection (RESP3, so subscriptions share the command link); fails
    /// like [`Conn::open`] when Redis cannot be reached at start-up.
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        let handlers = Handlers::default();
        let route = handlers.clone();
        // Closed when the connection (which owns the push sender) is dropped.
        let (lost, lost_rx) = mpsc::unbounded_channel();
        let push: PushSender = Arc::new(move |push: PushInfo| {
            if push.kind == PushKind::Disconnection {
                let _ = lost.send(());
            }
            dispatch(&route, push);
            Ok::<(), std::convert::Infallible>(())
        });
        let conn = Conn::open(config, Some(push)).await?;
        let driver = Self(Arc::new(Shared { handlers, conn, timeout: Duration::from_millis(config.redis_timeout_ms) }));
        let pause = Duration::from_millis(config.redis_reconnect_max_ms);
        tokio::spawn(resubscribe(Arc::downgrade(&driver.0), lost_rx, pause));
        Ok(driver)
    }
}

impl Shared {
    async fn bounded<T>(&self, call: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
        tokio::time::timeout(self.timeout, call).await.unwrap_or_else(|_| {
            Err(RedisError::from((ErrorKind::Io, "no answer from Redis within", format!("{:?}", self.timeout))))
        })
    }

    /// Subscribes again to every channel; true when all succeeded.
    async fn subscribe_all(&self) -> bool {
        let channels: Vec<String> = self.handlers.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let calls = channels.iter().map(|channel| {
            let mut conn = self.conn.clone();
            async move { self.bounded(conn.subscribe(channel)).await }
        });
        futures::future::join_all(calls).await.iter().all(Result::is_ok)
    }
}

/// After the connection lost a link, subscribes to every channel again, retrying until it
/// works. The connections re-subscribe by themselves after most losses, but a restarted
/// Cluster node came back without its sharded subscriptions (seen in the Cluster restart
/// drill), and a missing subscription silently stops broadcasts to this node; subscribing
/// to a channel twice on one connection changes nothing.
async fn resubscribe(driver: Weak<Shared>, mut lost: mpsc::UnboundedReceiver<()>, pause: Duration) {
    while lost.recv().await.is_some() {
        loop {
            tokio::time::sleep(pause).await;
            // Losses reported meanwhile are covered by this attempt.
            while lost.try_recv().is_ok() {}
            let Some(driver) = driver.upgrade() else { return };
            if driver.subscribe_all().await {
                break;
            }
        }
    }
}

/// Hands a pushed pub/sub message to the stream subscribed to its channel. Never blocks the
/// connection: a full stream drops the message (counted nowhere else: the warning says it).
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
        tracing::warn!("bus stream full or closed; dropping a pub/sub message");
    }
}

impl ManagedDriver {
    /// Publishes `val` on `chan`.
    pub async fn publish(&self, chan: String, val: Vec<u8>) -> RedisResult<()> {
        self.0.bounded(self.0.conn.clone().publish(&chan, &val)).await
    }

    /// Subscribes to `chan`; messages arrive on the receiver, up to `size` waiting.
    pub async fn subscribe(&self, chan: String, size: usize) -> RedisResult<mpsc::Receiver<ChanItem>> {
        let (tx, rx) = mpsc::channel(size);
        // Register before subscribing so no message that arrives right after is lost.
        self.0.handlers.write().unwrap_or_else(|p| p.into_inner()).insert(chan.clone(), tx);
        self.0.bounded(self.0.conn.clone().subscribe(&chan)).await?;
        Ok(rx)
    }
}
