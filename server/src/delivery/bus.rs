//! The cross-node bus: emits and room joins published on one Redis pub/sub channel, applied
//! by every other node to its own sockets. The whole wire format is here:
//!
//! - the channel: `<REDIS_KEY_PREFIX>-sio`, one for the cluster;
//! - a message: an optional trace frame, then a JSON envelope. The frame carries the
//!   publisher's `traceparent` (the magic `\0syt`, one length byte, the header value), so a
//!   broadcast from one pod and its receipt on another are one trace. The envelope is
//!   `{"node": <sender>, "op": "emit" | "join" | "disconnect" | "admin", ...}` ([`Op`]);
//!   an `admin` message's body is the Admin UI's own (`admin::Message`, documented there).
//!
//! A broadcast is encoded once where it starts and travels as the finished Engine.IO packet,
//! so the receiving nodes only write it out. Each node skips its own messages (it delivered
//! them before publishing). Every node of a cluster must run the same format.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use switchyard_sio::{Io, To};

use super::rooms::Conn;
use crate::metrics::Metrics;
use crate::redis::{ChanItem, ManagedDriver};
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
    driver: ManagedDriver,
    metrics: Metrics,
    channel: String,
    node: u64,
}

/// The other nodes' messages, as [`Bus::connect`] subscribed to them, for [`Bus::receive`].
pub type Inbox = tokio::sync::mpsc::Receiver<ChanItem>;

impl Bus {
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
        Ok((Self { driver, metrics, channel, node: rand::random() }, inbox))
    }

    /// Publishes `op` to the other nodes with the current trace context. A failure is
    /// logged: those nodes miss this emit, as they would a message lost with a Redis outage.
    pub async fn publish(&self, op: Op) {
        let Ok(body) = serde_json::to_vec(&Envelope { node: self.node, op }) else { return };
        let started = Instant::now();
        let result = self.driver.publish(self.channel.clone(), frame(current_traceparent(), body)).await;
        self.metrics.redis_command(started.elapsed(), result.is_ok());
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not publish to the other nodes");
        }
    }

    /// Decodes one message from the inbox: `None` for this node's own messages and for
    /// messages not understood. A message with a trace context gets a consumer span
    /// continuing the publisher's trace.
    pub fn receive(&self, (channel, message): ChanItem) -> Option<Op> {
        let (traceparent, body) = unframe(message);
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
            span.in_scope(|| tracing::trace!("bus message from another node"));
        }
        match serde_json::from_slice::<Envelope>(&body) {
            Ok(envelope) if envelope.node == self.node => None,
            Ok(envelope) => Some(envelope.op),
            Err(e) => {
                tracing::warn!(error = %e, "bus message not understood; ignored");
                None
            }
        }
    }
}

/// Applies one message to this node's sockets; an `admin` one goes to `admin`.
pub fn apply(io: &Io<Conn>, op: Op, admin: &(dyn Fn(serde_json::Value) + Send + Sync)) {
    match op {
        Op::Emit { ns, room, except, packet } => {
            if let Some(ns) = io.of(&ns) {
                ns.broadcast_encoded(To { room: &room, except: except.as_deref(), skip: None }, packet);
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
        let op = Op::Emit { ns: "/chat".into(), room: "room:r".into(), except: None, packet: "42/chat,[\"x\"]".into() };
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
