//! Delivery to Socket.IO rooms, behind a trait so domain code neither depends on the
//! adapter type (local or Redis) nor on being called from a socket or an HTTP request.

use std::sync::OnceLock;

use async_trait::async_trait;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;
use socketioxide_core::adapter::errors::{BroadcastError, SocketError};

/// Room every socket of user `u` joins.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// Room every socket of a participant of chat room `r` joins.
pub fn chat_room(room: &str) -> String {
    format!("room:{room}")
}

/// Who receives an emit.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Namespace (`/chat`, `/notifications`).
    pub ns: &'static str,
    /// Socket.IO room to deliver to.
    pub room: &'a str,
    /// A room whose sockets are skipped (a typist's own `user:U`).
    pub except: Option<&'a str>,
    /// The socket that caused the emit, skipped too (it gets an ack instead).
    pub origin: Option<Sid>,
}

impl<'a> Target<'a> {
    /// Everyone in `room` of `ns`.
    pub fn room(ns: &'static str, room: &'a str) -> Self {
        Self { ns, room, except: None, origin: None }
    }
}

/// Sockets of this node an emit did not reach. Sockets on other nodes are not counted: the
/// adapter delivers to them without reporting back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Their send queue (socketioxide's 128 packets) was full: the client reads slower than
    /// it is written to, or the server is past saturation.
    pub queue_full: usize,
    /// They were closing.
    pub closed: usize,
}

/// Emits events and moves sockets between rooms, on every node.
#[async_trait]
pub trait Emitter: Send + Sync + 'static {
    /// Emits `event` with `data` to `target`; says which local sockets it skipped.
    async fn emit(&self, target: Target<'_>, event: &'static str, data: &Value) -> Skipped;

    /// Makes every socket in `members` (a `user:U` room) of `ns` join `room`.
    async fn join(&self, ns: &'static str, members: &str, room: &str);

    /// Closes every local connection at the transport level (clients reconnect).
    async fn close(&self);
}

/// The server's [`SocketIo`] handle, set once after the layer is built: handlers need the
/// application state at build time, and the state needs the handle to emit.
pub struct IoHandle<A: Adapter>(OnceLock<SocketIo<A>>);

impl<A: Adapter> Default for IoHandle<A> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl<A: Adapter> IoHandle<A> {
    /// Stores the handle; later calls are ignored.
    pub fn set(&self, io: SocketIo<A>) {
        let _ = self.0.set(io);
    }

    /// The handle, once set.
    pub fn get(&self) -> Option<&SocketIo<A>> {
        self.0.get()
    }
}

#[async_trait]
impl<A: Adapter> Emitter for IoHandle<A> {
    async fn emit(&self, target: Target<'_>, event: &'static str, data: &Value) -> Skipped {
        let Some(ops) = self.get().and_then(|io| io.of(target.ns)) else { return Skipped::default() };
        // Starting from the origin socket makes socketioxide skip it, as socket.io does.
        let ops = match target.origin.and_then(|sid| ops.get_socket(sid)) {
            Some(socket) => socket.to(target.room.to_owned()),
            None => ops.to(target.room.to_owned()),
        };
        let ops = match target.except {
            Some(except) => ops.except(except.to_owned()),
            None => ops,
        };
        match ops.emit(event, data).await {
            Ok(()) => Skipped::default(),
            // One entry per socket: past saturation that is every receiver of every message,
            // so they are counted, never formatted (a log line per broadcast listing a
            // thousand sockets took about a tenth of the server's CPU at 4x overload).
            Err(BroadcastError::Socket(errors)) => {
                let queue_full = errors.iter().filter(|e| matches!(e, SocketError::InternalChannelFull)).count();
                Skipped { queue_full, closed: errors.len() - queue_full }
            }
            Err(e) => {
                tracing::warn!(event, ns = target.ns, error = %e, "broadcast failed");
                Skipped::default()
            }
        }
    }

    async fn join(&self, ns: &'static str, members: &str, room: &str) {
        let Some(ops) = self.get().and_then(|io| io.of(ns)) else { return };
        if let Err(e) = ops.to(members.to_owned()).join(room.to_owned()).await {
            tracing::warn!(ns, error = %e, "remote join failed");
        }
    }

    async fn close(&self) {
        if let Some(io) = self.get() {
            io.close().await;
        }
    }
}

/// An [`Emitter`] that gives every emit and remote join a producer span (its trace context
/// travels with the adapter message to the other nodes), counts emits as outbound messages
/// and counts the sockets they skipped.
pub struct Instrumented<E> {
    inner: std::sync::Arc<E>,
    metrics: crate::metrics::Metrics,
}

impl<E> Instrumented<E> {
    /// Wraps `inner`.
    pub fn new(inner: std::sync::Arc<E>, metrics: crate::metrics::Metrics) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl<E: Emitter> Emitter for Instrumented<E> {
    async fn emit(&self, target: Target<'_>, event: &'static str, data: &Value) -> Skipped {
        use tracing::Instrument;
        self.metrics.outbound(target.ns, event);
        let span = tracing::info_span!(
            "socket.emit",
            otel.name = %format!("emit {event}"),
            otel.kind = "producer",
            socketio.namespace = target.ns,
            socketio.event = event,
        );
        let skipped = self.inner.emit(target, event, data).instrument(span).await;
        self.metrics.skipped(target.ns, &skipped);
        skipped
    }

    async fn join(&self, ns: &'static str, members: &str, room: &str) {
        use tracing::Instrument;
        let span = tracing::info_span!("socket.join", otel.kind = "producer", socketio.namespace = ns);
        self.inner.join(ns, members, room).instrument(span).await;
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
