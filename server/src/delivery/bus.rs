//! The cross-node bus: emits and room joins published on one Redis pub/sub channel, applied
//! by every other node to its own sockets; with connection state recovery on, appended to one
//! Redis stream instead, which every node (the sender too) applies in order ([`super::stream`]
//! says why and how). The whole wire format is here:
//!
//! - the channel: `<REDIS_KEY_PREFIX>-sio`, one for the cluster; or the stream
//!   `<REDIS_KEY_PREFIX>-sio-stream`, whose entries carry the message in their `m` field;
//! - a message: an optional trace frame, then a JSON envelope. The frame carries the
//!   publisher's `traceparent` (the magic `\0syt`, one length byte, the header value), so a
//!   broadcast from one pod and its receipt on another are one trace. The envelope is
//!   `{"node": <sender>, "op": "emit" | "join" | "disconnect" | "admin", ...}` ([`Op`]);
//!   an `admin` message's body is the Admin UI's own (`admin::Message`, documented there).
//!
//! A broadcast is encoded once where it starts and travels as the finished Engine.IO packet,
//! so the receiving nodes only write it out. On pub/sub each node skips its own messages (it
//! delivered them before publishing); on the stream it skips its own joins and disconnects
//! (applied before publishing) but delivers its own emits from the stream, in the stream's
//! order. Every node of a cluster must run the same format, with recovery on or off alike.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use switchyard_sio::{Io, Offset, To};
use tokio::sync::mpsc;

use super::rooms::Conn;
use super::stream::{Entry, Stream, StreamConfig};
use crate::metrics::Metrics;
use crate::protocol::static_ns;
use crate::redis::{ChanItem, Conn as RedisConn, ManagedDriver, Redis};
use crate::telemetry::{current_traceparent, set_remote_parent};

/// What a node asks the others to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// Write `packet` (an encoded event) to the sockets of `room` in `ns`, except those in
    /// `except`.
    Emit {
        /// Namespace.
        ns: String,
        /// Room.
        room: String,
        /// Room whose sockets are skipped.
        except: Option<String>,
        /// The socket that caused it, skipped too (set on the stream, where the sender's
        /// own node delivers it from the stream as well).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
        /// The Engine.IO packet text.
        packet: String,
    },
    /// Make every socket of room `members` in `ns` join `room`.
    Join {
        /// Namespace.
        ns: String,
        /// Room whose sockets join.
        members: String,
        /// Room they join.
        room: String,
    },
    /// Take every socket of `room`, in every namespace, out of its namespace (the client
    /// gets a disconnect packet and does not reconnect).
    Disconnect {
        /// Room whose sockets leave (a `user:U` room).
        room: String,
    },
    /// A message between the nodes' Admin UI sides (stats, socket listings, actions).
    Admin {
        /// Its body, which only the `admin` module reads.
        message: serde_json::Value,
    },
}

/// A message on the bus: the node it came from and what to do.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: u64,
    #[serde(flatten)]
    op: Op,
}

/// Marks the first bytes of a bus message that carries a trace context.
const FRAME_MAGIC: &[u8; 4] = b"\0syt";

/// This node's end of the bus.
pub struct Bus {
    transport: Transport,
    metrics: Metrics,
    node: u64,
}

enum Transport {
    PubSub { driver: ManagedDriver, channel: String },
    Stream(Stream),
}

/// The messages to apply, as [`Bus::connect`] or [`Bus::connect_stream`] subscribed to them,
/// for [`Bus::receive`].
pub enum Inbox {
    /// Pub/sub messages, with their channel.
    PubSub(mpsc::Receiver<ChanItem>),
    /// Stream entries, in the stream's order, each once, and the stream's key.
    Stream(mpsc::Receiver<Entry>, String),
}

/// One message from the bus: where it came from, its offset on the stream, its bytes.
pub struct Incoming {
    source: String,
    offset: Option<Offset>,
    message: Vec<u8>,
}

impl Inbox {
    /// The next message; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Incoming> {
        match self {
            Self::PubSub(rx) => rx.recv().await.map(|(source, message)| Incoming { source, offset: None, message }),
            Self::Stream(rx, key) => {
                rx.recv().await.map(|e| Incoming { source: key.clone(), offset: Some(e.offset), message: e.message })
            }
        }
    }
}

/// A message to apply: what to do and, from the stream, its offset.
pub struct Received {
    /// What to do.
    pub op: Op,
    /// Its offset, from the stream.
    pub offset: Option<Offset>,
    /// It came from this node.
    pub own: bool,
}

impl Bus {
    /// The bus on the stream `<prefix>-sio-stream` (see [`super::stream`]): appended through
    /// `redis`, read through `reader` (a connection of its own), kept for `window` and at most
    /// `max_len` entries. Also gives where this node starts reading (every namespace has
    /// delivered everything up to it, for recovery).
    pub async fn connect_stream(
        redis: Redis,
        reader: RedisConn,
        metrics: Metrics,
        config: StreamConfig,
    ) -> redis::RedisResult<(Self, Inbox, Offset)> {
        let node = rand::random();
        let key = config.key.clone();
        let (stream, entries, start) = Stream::start(redis, reader, node, config).await?;
        Ok((Self { transport: Transport::Stream(stream), metrics, node }, Inbox::Stream(entries, key), start))
    }

    /// True on the stream: emits are delivered from it, this node's too.
    pub fn is_stream(&self) -> bool {
        matches!(self.transport, Transport::Stream(_))
    }

    /// Subscribes to `<prefix>-sio`; up to `buffer` messages wait in the returned inbox until
    /// they are applied. Publishes are timed into `metrics` as Redis commands.
    pub async fn connect(
        driver: ManagedDriver,
        metrics: Metrics,
        prefix: &str,
        buffer: usize,
    ) -> redis::RedisResult<(Self, Inbox)> {
        let channel = format!("{prefix}-sio");
        let inbox = driver.subscribe(channel.clone(), buffer).await?;
        Ok((
            Self { transport: Transport::PubSub { driver, channel }, metrics, node: rand::random() },
            Inbox::PubSub(inbox),
        ))
    }

    /// Publishes `op` to the other nodes with the current trace context. On pub/sub a failure
    /// is logged: those nodes miss this emit, as they would a message lost with a Redis
    /// outage. On the stream it is queued and appended when Redis answers (within the window).
    pub async fn publish(&self, op: Op) {
        let Ok(body) = serde_json::to_vec(&Envelope { node: self.node, op }) else { return };
        let (driver, channel) = match &self.transport {
            Transport::Stream(stream) => return stream.publish(frame(current_traceparent(), body)),
            Transport::PubSub { driver, channel } => (driver, channel),
        };
        let started = Instant::now();
        let result = driver.publish(channel.clone(), frame(current_traceparent(), body)).await;
        self.metrics.redis_command(started.elapsed(), result.is_ok());
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not publish to the other nodes");
        }
    }

    /// Decodes one message from the inbox: `None` for this node's own messages on pub/sub
    /// and its own joins and disconnects on the stream, and for messages not understood. A
    /// message this node applies, if it has a trace context, gets a consumer span continuing
    /// the publisher's trace; a skipped one gets none, so the publisher's pod does not show
    /// as a receiver of its own broadcast on pub/sub.
    pub fn receive(&self, Incoming { source: channel, offset, message }: Incoming) -> Option<Received> {
        let (traceparent, body) = unframe(message);
        let received = match serde_json::from_slice::<Envelope>(&body) {
            Ok(Envelope { node, op: op @ Op::Emit { .. } }) if node == self.node && self.is_stream() => {
                Received { op, offset, own: true }
            }
            Ok(envelope) if envelope.node == self.node => return None,
            Ok(envelope) => Received { op: envelope.op, offset, own: false },
            Err(e) => {
                tracing::warn!(error = %e, "bus message not understood; ignored");
                return None;
            }
        };
        if traceparent.is_some() {
            let span = tracing::info_span!(
                "adapter.receive",
                otel.name = "socket.io adapter receive",
                otel.kind = "consumer",
                messaging.system = "redis",
                messaging.destination.name = %channel,
                messaging.message.body.size = body.len(),
            );
            set_remote_parent(&span, traceparent.as_deref());
            span.in_scope(|| tracing::trace!("bus message to apply"));
        }
        Some(received)
    }

    /// Applies one message to this node's sockets; the sockets this node's own emits
    /// skipped are counted (as they are when they are delivered at once, on pub/sub). An
    /// `admin` message goes to `admin`.
    pub fn apply(&self, io: &Io<Conn>, received: Received, admin: &(dyn Fn(serde_json::Value) + Send + Sync)) {
        let Received { op, offset, own } = received;
        match op {
            Op::Emit { ns, room, except, origin, packet } => {
                let Some(namespace) = io.of(&ns) else { return };
                let skip = origin.and_then(|o| o.parse().ok());
                let to = To { room: &room, except: except.as_deref(), skip };
                let delivery = match offset {
                    Some(offset) => namespace.broadcast_at(to, packet, offset),
                    None => namespace.broadcast_encoded(to, packet),
                };
                if own {
                    self.metrics.skipped(static_ns(&ns), delivery.full, delivery.closed);
                }
            }
            Op::Join { ns, members, room } => {
                if let Some(ns) = io.of(&ns) {
                    ns.join_members(&members, &room);
                }
            }
            Op::Disconnect { room } => {
                disconnect_local(io, &room);
            }
            Op::Admin { message } => admin(message),
        }
    }
}

/// The operation in a bus message's bytes (trace frame and node left out), if understood.
pub fn decode(message: &[u8]) -> Option<Op> {
    let (_, body) = unframe(message.to_vec());
    serde_json::from_slice::<Envelope>(&body).ok().map(|e| e.op)
}

/// Takes the sockets of `room` on this node out of every namespace; returns how many left.
pub fn disconnect_local(io: &Io<Conn>, room: &str) -> usize {
    io.namespaces().map(|ns| ns.disconnect_room(room)).sum()
}

/// Prefixes `payload` with `traceparent`, when there is one.
fn frame(traceparent: Option<String>, payload: Vec<u8>) -> Vec<u8> {
    let Some(tp) = traceparent.filter(|tp| tp.len() <= usize::from(u8::MAX)) else { return payload };
    let mut framed = Vec::with_capacity(FRAME_MAGIC.len() + 1 + tp.len() + payload.len());
    framed.extend_from_slice(FRAME_MAGIC);
    framed.push(tp.len() as u8);
    framed.extend_from_slice(tp.as_bytes());
    framed.extend_from_slice(&payload);
    framed
}

/// Splits a framed message into its `traceparent` and the bus's own bytes.
fn unframe(mut message: Vec<u8>) -> (Option<String>, Vec<u8>) {
    let Some(rest) = message.strip_prefix(FRAME_MAGIC.as_slice()) else { return (None, message) };
    let Some((&len, rest)) = rest.split_first() else { return (None, message) };
    let len = usize::from(len);
    if rest.len() < len {
        return (None, message);
    }
    let traceparent = std::str::from_utf8(&rest[..len]).ok().map(str::to_owned);
    let start = FRAME_MAGIC.len() + 1 + len;
    (traceparent, message.split_off(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let op = Op::Emit {
            ns: "/chat".into(),
            room: "room:r".into(),
            except: None,
            origin: None,
            packet: "42/chat,[\"x\"]".into(),
        };
        let body = serde_json::to_vec(&Envelope { node: 7, op: op.clone() }).unwrap();
        let back: Envelope = serde_json::from_slice(&body).unwrap();
        assert_eq!((back.node, back.op), (7, op));
        let join = Op::Join { ns: "/chat".into(), members: "user:u".into(), room: "room:r".into() };
        let text = serde_json::to_string(&Envelope { node: 1, op: join }).unwrap();
        assert_eq!(text, r#"{"node":1,"op":"join","ns":"/chat","members":"user:u","room":"room:r"}"#);
        let gone = serde_json::to_string(&Envelope { node: 2, op: Op::Disconnect { room: "user:u".into() } }).unwrap();
        assert_eq!(gone, r#"{"node":2,"op":"disconnect","room":"user:u"}"#);
        let admin =
            serde_json::to_string(&Envelope { node: 3, op: Op::Admin { message: serde_json::json!({ "a": 1 }) } });
        assert_eq!(admin.unwrap(), r#"{"node":3,"op":"admin","message":{"a":1}}"#);
    }

    #[test]
    fn frames_round_trip_and_plain_messages_pass_through() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
        let (got, body) = unframe(frame(Some(tp.clone()), vec![0x93, 1, 2]));
        assert_eq!(got.as_deref(), Some(tp.as_str()));
        assert_eq!(body, vec![0x93, 1, 2]);
        assert_eq!(unframe(vec![0x93, 1, 2]), (None, vec![0x93, 1, 2]));
        assert_eq!(frame(None, vec![7]), vec![7]);
        // A truncated frame is passed on untouched rather than misread.
        assert_eq!(unframe(b"\0syt\x09abc".to_vec()).0, None);
    }
}
