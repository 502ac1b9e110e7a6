//! The cross-node bus: emits and room joins published on one Redis pub/sub channel, applied
//! by every other node to its own sockets.
//!
//! A broadcast is encoded once where it starts and travels as the finished Engine.IO packet,
//! so the receiving nodes only write it out. Each node skips its own messages (it delivered
//! them before publishing).

use std::sync::Weak;

use serde::{Deserialize, Serialize};
use switchyard_sio::To;

use crate::emitter::IoHandle;
use crate::telemetry::TracedDriver;

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
}

/// A message on the bus: the node it came from and what to do.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: u64,
    #[serde(flatten)]
    op: Op,
}

/// This node's end of the bus.
pub struct Bus {
    driver: TracedDriver,
    channel: String,
    node: u64,
}

impl Bus {
    /// Subscribes to `<prefix>-sio`; messages from other nodes are applied once
    /// [`Bus::spawn_receiver`] runs. Up to `buffer` messages wait to be applied.
    pub async fn connect(
        driver: TracedDriver,
        prefix: &str,
        buffer: usize,
    ) -> redis::RedisResult<(Self, tokio::sync::mpsc::Receiver<crate::redis::ChanItem>)> {
        let channel = format!("{prefix}-sio");
        let messages = driver.subscribe(channel.clone(), buffer).await?;
        Ok((Self { driver, channel, node: rand::random() }, messages))
    }

    /// Publishes `op` to the other nodes. A failure is logged: those nodes miss this emit,
    /// as they would a message lost with a Redis outage.
    pub async fn publish(&self, op: Op) {
        let Ok(body) = serde_json::to_vec(&Envelope { node: self.node, op }) else { return };
        if let Err(e) = self.driver.publish(self.channel.clone(), body).await {
            tracing::warn!(error = %e, "could not publish to the other nodes");
        }
    }

    /// Applies the other nodes' messages to this node's sockets for as long as `io` lives.
    pub fn spawn_receiver(
        &self,
        mut messages: tokio::sync::mpsc::Receiver<crate::redis::ChanItem>,
        io: Weak<IoHandle>,
    ) {
        let node = self.node;
        tokio::spawn(async move {
            while let Some((_, body)) = messages.recv().await {
                let Some(io) = io.upgrade() else { return };
                match serde_json::from_slice::<Envelope>(&body) {
                    Ok(envelope) if envelope.node == node => {}
                    Ok(envelope) => apply(&io, envelope.op),
                    Err(e) => tracing::warn!(error = %e, "bus message not understood; ignored"),
                }
            }
        });
    }
}

/// Applies one message to this node's sockets.
fn apply(io: &IoHandle, op: Op) {
    let Some(io) = io.get() else { return };
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
    }
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
    }
}
