//! Delivery to Socket.IO rooms, behind a trait so domain code neither depends on whether the
//! server runs alone or across nodes nor on being called from a socket or an HTTP request.
//!
//! - [`rooms`]: the per-socket state ([`Conn`]) and the room names features deliver to.
//! - this module: the [`Emitter`] trait, the server's [`IoHandle`] and the [`Instrumented`]
//!   wrapper (a span and a count per emit).
//! - [`bus`]: the cross-node bus and its whole wire format; [`stream`]: the bus on a Redis
//!   stream, when connection state recovery is on with Redis.
//! - [`sessions`]: recovery sessions in Redis (the transport's session store).

pub mod bus;
pub mod rooms;
pub mod sessions;
pub mod stream;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde_json::Value;
use switchyard_sio::{Io, Sid, To};

pub use bus::Bus;
use bus::Op;
pub use rooms::{Conn, EVERYONE, Socket, chat_room, is_presence_room, local_rooms_and_users, presence_room, user_room};

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
/// bus delivers to them without reporting back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// The event would have taken their unsent bytes over the limit (`MAX_PAYLOAD_BYTES` × 4,
    /// at least 256 KiB): the client reads slower than it is written to, or the server is
    /// past saturation.
    pub queue_full: usize,
    /// They were closing.
    pub closed: usize,
}

/// Emits events and moves sockets between rooms, on every node.
#[async_trait]
pub trait Emitter: Send + Sync + 'static {
    /// Emits `event` with `data` to `target`; says which local sockets it skipped.
    async fn emit(&self, target: Target<'_>, event: &'static str, data: &Value) -> Skipped;

    /// [`Emitter::emit`] for an event a backend named (the server API): not one of the
    /// contract's names, so metrics count it as `custom`.
    async fn emit_custom(&self, target: Target<'_>, event: &str, data: &Value) -> Skipped;

    /// Takes every socket of `room` (a `user:U` room), on every node and in every
    /// namespace, out of its namespace; returns how many were on this node.
    async fn disconnect(&self, room: &str) -> usize;

    /// Makes every socket in `members` (a `user:U` room) of `ns` join `room`.
    async fn join(&self, ns: &'static str, members: &str, room: &str);

    /// Closes every local connection at the transport level (clients reconnect).
    async fn close(&self);
}

/// The server's Socket.IO handle, set once after it is built (handlers need the application
/// state at build time, and the state needs the handle to emit), and with Redis the bus that
/// carries emits and joins to the other nodes.
pub struct IoHandle {
    io: OnceLock<Io<Conn>>,
    bus: Option<Bus>,
}

impl IoHandle {
    /// A handle that emits on this node, and through `bus` on the others.
    pub fn new(bus: Option<Bus>) -> Self {
        Self { io: OnceLock::new(), bus }
    }

    /// Stores the server; later calls are ignored.
    pub fn set(&self, io: Io<Conn>) {
        let _ = self.io.set(io);
    }

    /// The server, once set.
    pub fn get(&self) -> Option<&Io<Conn>> {
        self.io.get()
    }

    /// Applies what the other nodes publish on the bus (`inbox`, from [`Bus::connect`]) for
    /// as long as this handle lives: one task reads the subscription's channel, decodes and
    /// writes to the local sockets; the Admin UI's messages go to `admin`.
    pub fn listen(self: &Arc<Self>, mut inbox: bus::Inbox, admin: Box<dyn Fn(Value) + Send + Sync>) {
        let handle = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                let Some(handle) = handle.upgrade() else { return };
                let Some(bus) = &handle.bus else { return };
                if let (Some(received), Some(io)) = (bus.receive(message), handle.get()) {
                    bus.apply(io, received, &*admin);
                }
            }
        });
    }

    /// Writes `packet` (encoded for `ns`) to the sockets of `room` on every node. For the
    /// Admin UI's events, which are not the contract's and are not counted as its messages.
    pub async fn broadcast_packet(&self, ns: &str, room: &str, packet: String) {
        let Some(namespace) = self.get().and_then(|io| io.of(ns)) else { return };
        let to = To { room, except: None, skip: None };
        // On the stream this node delivers it as it reads it back, like its other emits.
        if !self.bus.as_ref().is_some_and(|bus| bus.is_stream()) {
            namespace.broadcast_encoded(to, packet.clone());
        }
        if let Some(bus) = &self.bus {
            bus.publish(Op::Emit { ns: ns.into(), room: room.into(), except: None, origin: None, packet }).await;
        }
    }

    /// Sends an Admin UI message to the other nodes (nothing without Redis: there are none).
    pub async fn publish_admin(&self, message: Value) {
        if let Some(bus) = &self.bus {
            bus.publish(Op::Admin { message }).await;
        }
    }

    /// True when other nodes may exist (a bus connects this one to them).
    pub fn has_bus(&self) -> bool {
        self.bus.is_some()
    }
}

impl IoHandle {
    async fn send(&self, target: Target<'_>, event: &str, data: &Value) -> Skipped {
        let Some(ns) = self.get().and_then(|io| io.of(target.ns)) else { return Skipped::default() };
        let packet = match ns.encode(event, data) {
            Ok(packet) => packet,
            Err(e) => {
                tracing::warn!(event, ns = target.ns, error = %e, "emit not encodable");
                return Skipped::default();
            }
        };
        let to = To { room: target.room, except: target.except, skip: target.origin };
        let delivery = match &self.bus {
            // On the stream this node delivers its own emits as it reads them, in the
            // stream's order; the sockets they skip are counted then.
            Some(bus) if bus.is_stream() => {
                let origin = target.origin.map(|sid| sid.to_string());
                let (ns, room, except) = (target.ns.into(), target.room.into(), target.except.map(Into::into));
                bus.publish(Op::Emit { ns, room, except, origin, packet }).await;
                return Skipped::default();
            }
            Some(bus) => {
                let delivery = ns.broadcast_encoded(to, packet.clone());
                bus.publish(Op::Emit {
                    ns: target.ns.into(),
                    room: target.room.into(),
                    except: target.except.map(Into::into),
                    origin: None,
                    packet,
                })
                .await;
                delivery
            }
            None => ns.broadcast_encoded(to, packet),
        };
        Skipped { queue_full: delivery.full, closed: delivery.closed }
    }
}

#[async_trait]
impl Emitter for IoHandle {
    async fn emit(&self, target: Target<'_>, event: &'static str, data: &Value) -> Skipped {
        self.send(target, event, data).await
    }

    async fn emit_custom(&self, target: Target<'_>, event: &str, data: &Value) -> Skipped {
        self.send(target, event, data).await
    }

    async fn disconnect(&self, room: &str) -> usize {
        let Some(io) = self.get() else { return 0 };
        let left = bus::disconnect_local(io, room);
        if let Some(bus) = &self.bus {
            bus.publish(Op::Disconnect { room: room.into() }).await;
        }
        left
    }

    async fn join(&self, ns: &'static str, members: &str, room: &str) {
        let Some(namespace) = self.get().and_then(|io| io.of(ns)) else { return };
        namespace.join_members(members, room);
        if let Some(bus) = &self.bus {
            bus.publish(Op::Join { ns: ns.into(), members: members.into(), room: room.into() }).await;
        }
    }

    async fn close(&self) {
        if let Some(io) = self.get() {
            io.close().await;
        }
    }
}

/// The `event` label of emits a backend named ([`Emitter::emit_custom`]): label values come
/// from fixed sets, never from input.
pub const CUSTOM_EVENT: &str = "custom";

/// An [`Emitter`] that gives every emit and remote join a producer span (its trace context
/// travels with the bus message to the other nodes), counts emits as outbound messages
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

impl<E> Instrumented<E> {
    /// Runs `emit` of `event` in a producer span named `name`, counting it as an outbound
    /// `label` event and counting the sockets it skipped.
    async fn counted(
        &self,
        target: Target<'_>,
        label: &'static str,
        name: &str,
        event: &str,
        emit: impl std::future::Future<Output = Skipped>,
    ) -> Skipped {
        use tracing::Instrument;
        self.metrics.outbound(target.ns, label);
        let span = tracing::info_span!(
            "socket.emit",
            otel.name = %name,
            otel.kind = "producer",
            socketio.namespace = target.ns,
            socketio.event = event,
        );
        let skipped = emit.instrument(span).await;
        self.metrics.skipped(target.ns, skipped.queue_full, skipped.closed);
        skipped
    }
}

#[async_trait]
impl<E: Emitter> Emitter for Instrumented<E> {
    async fn emit(&self, target: Target<'_>, event: &'static str, data: &Value) -> Skipped {
        self.counted(target, event, &format!("emit {event}"), event, self.inner.emit(target, event, data)).await
    }

    async fn emit_custom(&self, target: Target<'_>, event: &str, data: &Value) -> Skipped {
        self.counted(target, CUSTOM_EVENT, "emit custom", event, self.inner.emit_custom(target, event, data)).await
    }

    async fn disconnect(&self, room: &str) -> usize {
        use tracing::Instrument;
        let span = tracing::info_span!("socket.disconnect", otel.kind = "producer");
        self.inner.disconnect(room).instrument(span).await
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
