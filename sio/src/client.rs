//! The client side of the wire, for test clients and load generators that speak Engine.IO
//! and Socket.IO by hand (behind the `client` feature): decoding what a server sends,
//! encoding what a client sends, and joining a namespace over a WebSocket. One module, so
//! the crate's own tests and `loadgen/` read the protocol the same way.

use std::fmt::Write as _;

use futures::{Sink, SinkExt, Stream, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::packet::SEPARATOR;

/// Engine.IO pong, the answer to the server's ping `2`.
pub const PONG: &str = "3";

/// A packet a server sends, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerPacket {
    /// `0{…}`: the session opened, with its parameters (`sid`, `pingInterval`…).
    Open(Value),
    /// `1`: the server closed the session.
    Close,
    /// `2`: a ping; answer with [`PONG`].
    Ping,
    /// `3…`: the answer to a client ping (`probe` for the upgrade probe).
    Pong(String),
    /// `6`: nothing.
    Noop,
    /// `40<ns>,{"sid":…}`: the namespace was joined, as this Socket.IO id.
    Connect {
        /// The namespace.
        ns: String,
        /// The socket's id.
        sid: String,
    },
    /// `41<ns>`: the server removed the socket from the namespace.
    Disconnect {
        /// The namespace.
        ns: String,
    },
    /// `42`/`45n-`: an event, its arguments, and how many binary attachments follow it.
    Event {
        /// The namespace.
        ns: String,
        /// The event's name.
        name: String,
        /// Its arguments (binary ones as placeholders).
        args: Vec<Value>,
        /// The acknowledgement id, when the server wants one.
        ack: Option<u64>,
        /// The binary messages that follow.
        attachments: usize,
    },
    /// `43`/`46n-`: an acknowledgement and its arguments.
    Ack {
        /// The namespace.
        ns: String,
        /// Which request it answers.
        id: u64,
        /// Its arguments (binary ones as placeholders).
        args: Vec<Value>,
        /// The binary messages that follow.
        attachments: usize,
    },
    /// `44<ns>,{"message":…}`: the join was refused.
    ConnectError {
        /// The namespace.
        ns: String,
        /// Why.
        message: String,
    },
}

impl ServerPacket {
    /// Decodes one Engine.IO text packet (one message of a WebSocket, or one packet of a
    /// long-polling body: see [`packets`]). `None` for what no server sends.
    pub fn decode(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_at_checked(1)?;
        Some(match kind {
            "0" => Self::Open(serde_json::from_str(rest).ok()?),
            "1" => Self::Close,
            "2" => Self::Ping,
            "3" => Self::Pong(rest.to_owned()),
            "6" => Self::Noop,
            "4" => return decode_socket_io(rest),
            _ => return None,
        })
    }
}

/// The packets of a long-polling body.
pub fn packets(body: &str) -> impl Iterator<Item = &str> {
    body.split(SEPARATOR)
}

fn decode_socket_io(text: &str) -> Option<ServerPacket> {
    let (kind, mut rest) = text.split_at_checked(1)?;
    let mut attachments = 0;
    if matches!(kind, "5" | "6") {
        let (count, after) = rest.split_once('-')?;
        attachments = count.parse().ok()?;
        rest = after;
    }
    let mut ns = "/";
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        ns = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = if digits > 0 { Some(rest[..digits].parse().ok()?) } else { None };
    let data = &rest[digits..];
    let ns = ns.to_owned();
    Some(match kind {
        "0" => {
            let body: Value = serde_json::from_str(data).ok()?;
            ServerPacket::Connect { ns, sid: body.get("sid")?.as_str()?.to_owned() }
        }
        "1" => ServerPacket::Disconnect { ns },
        "2" | "5" => {
            let Value::Array(mut args) = serde_json::from_str(data).ok()? else { return None };
            if args.is_empty() {
                return None;
            }
            let Value::String(name) = args.remove(0) else { return None };
            ServerPacket::Event { ns, name, args, ack: id, attachments }
        }
        "3" | "6" => {
            let Value::Array(args) = serde_json::from_str(data).ok()? else { return None };
            ServerPacket::Ack { ns, id: id?, args, attachments }
        }
        "4" => {
            let body: Value = serde_json::from_str(data).ok()?;
            ServerPacket::ConnectError { ns, message: body.get("message")?.as_str()?.to_owned() }
        }
        _ => return None,
    })
}

/// The prefix of namespace `ns` after a packet's type (nothing for `/`).
fn ns_prefix(out: &mut String, ns: &str) {
    if ns != "/" {
        out.push_str(ns);
        out.push(',');
    }
}

/// `40<ns>,<auth>`: joins namespace `ns`.
pub fn connect(ns: &str, auth: Option<&Value>) -> String {
    let mut out = String::from("40");
    ns_prefix(&mut out, ns);
    if let Some(auth) = auth {
        out.push_str(&auth.to_string());
    }
    out
}

/// `42<ns>,<ack>["name",args…]`: an event, asking for an acknowledgement when `ack` is set.
pub fn event(ns: &str, ack: Option<u64>, name: &str, args: &[Value]) -> String {
    let mut out = String::from("42");
    ns_prefix(&mut out, ns);
    if let Some(id) = ack {
        let _ = write!(out, "{id}");
    }
    let mut array = Vec::with_capacity(args.len() + 1);
    array.push(Value::from(name));
    array.extend_from_slice(args);
    out.push_str(&Value::Array(array).to_string());
    out
}

/// Why [`join`] did not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// The connection ended first.
    #[error("the connection closed before the join was answered")]
    Closed,
    /// The server refused the join.
    #[error("join refused: {0}")]
    Refused(String),
}

/// Joins namespace `ns` with `auth` on a WebSocket whose open packet was read, answering
/// the pings that come first; the Socket.IO id it joined as.
pub async fn join<W>(ws: &mut W, ns: &str, auth: Option<&Value>) -> Result<String, JoinError>
where
    W: Sink<Message, Error = tungstenite::Error> + Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    ws.send(Message::text(connect(ns, auth))).await?;
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message? else { continue };
        match ServerPacket::decode(text.as_str()) {
            Some(ServerPacket::Ping) => ws.send(Message::text(PONG)).await?,
            Some(ServerPacket::Connect { ns: joined, sid }) if joined == ns => return Ok(sid),
            Some(ServerPacket::ConnectError { ns: refused, message }) if refused == ns => {
                return Err(JoinError::Refused(message));
            }
            _ => {}
        }
    }
    Err(JoinError::Closed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decodes_what_servers_send() {
        let cases = [
            ("2", ServerPacket::Ping),
            ("3probe", ServerPacket::Pong("probe".into())),
            ("6", ServerPacket::Noop),
            ("1", ServerPacket::Close),
            (r#"0{"sid":"a"}"#, ServerPacket::Open(json!({ "sid": "a" }))),
            (r#"40/chat,{"sid":"s"}"#, ServerPacket::Connect { ns: "/chat".into(), sid: "s".into() }),
            (r#"40{"sid":"s"}"#, ServerPacket::Connect { ns: "/".into(), sid: "s".into() }),
            (r#"44/chat,{"message":"no"}"#, ServerPacket::ConnectError { ns: "/chat".into(), message: "no".into() }),
            (
                r#"42/chat,["m",1,{"a":2}]"#,
                ServerPacket::Event {
                    ns: "/chat".into(),
                    name: "m".into(),
                    args: vec![json!(1), json!({ "a": 2 })],
                    ack: None,
                    attachments: 0,
                },
            ),
            (
                r#"451-["m",{"_placeholder":true,"num":0}]"#,
                ServerPacket::Event {
                    ns: "/".into(),
                    name: "m".into(),
                    args: vec![json!({ "_placeholder": true, "num": 0 })],
                    ack: None,
                    attachments: 1,
                },
            ),
            (
                r#"43/chat,12[{"ok":true}]"#,
                ServerPacket::Ack { ns: "/chat".into(), id: 12, args: vec![json!({ "ok": true })], attachments: 0 },
            ),
            ("437[]", ServerPacket::Ack { ns: "/".into(), id: 7, args: vec![], attachments: 0 }),
        ];
        for (text, packet) in cases {
            assert_eq!(ServerPacket::decode(text), Some(packet), "{text}");
        }
        for junk in ["", "9", "4", "42[1]", "43[1]", "42/chat,{}"] {
            assert_eq!(ServerPacket::decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn encodes_what_clients_send() {
        assert_eq!(connect("/chat", Some(&json!({ "token": "t" }))), r#"40/chat,{"token":"t"}"#);
        assert_eq!(connect("/", None), "40");
        assert_eq!(event("/chat", Some(3), "m", &[json!(1), json!("2")]), r#"42/chat,3["m",1,"2"]"#);
        assert_eq!(event("/", None, "m", &[]), r#"42["m"]"#);
    }
}
