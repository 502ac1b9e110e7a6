//! The smallest Socket.IO v5 client that can drive a server hard: WebSocket transport only,
//! one namespace, text packets, acks by id; its packets are read and written by
//! `switchyard_sio::client`, as the transport's own tests read them. Also speaks raw WebSocket
//! for the floor server, and Centrifugo's JSON client protocol (v2) for that peer.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchyard_sio::client::{self as sio, ServerPacket};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Read buffer per connection: room for dozens of delivered frames per read.
const READ_BUFFER: usize = 16 * 1024;

/// Which wire protocol a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// Socket.IO over WebSocket (Switchyard, Node socket.io).
    Socketio,
    /// Plain WebSocket frames (the physical floor).
    Raw,
    /// Centrifugo's JSON client protocol v2 over WebSocket: commands and replies by id.
    Centrifugo,
}

/// Write half of a connection.
pub type Tx = SplitSink<WebSocketStream<TcpStream>, Frame>;
/// Read half of a connection.
pub type Rx = SplitStream<WebSocketStream<TcpStream>>;

/// Opens a WebSocket from `source` (a loopback address, to spread ports) to `server`, and
/// for Socket.IO joins `/chat` with `token`. The floor joins `room` by its URL; Centrifugo
/// connects with `token` and subscribes to `room` unless it is empty.
pub async fn connect(
    proto: Proto,
    server: SocketAddr,
    source: IpAddr,
    token: &str,
    room: &str,
) -> anyhow::Result<(Tx, Rx)> {
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // The source port is picked at connect time, by the whole 4-tuple. Bound to port 0, the
    // kernel searches for a port no earlier socket of that address holds, TIME_WAIT ones from
    // the previous run included: right after a 19,000-connection run that search cost the
    // generator 16 s of system time instead of 3, and the connect rate halved.
    bind_port_at_connect(&socket)?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await.with_context(|| format!("connect {server} from {source}"))?;
    stream.set_nodelay(true)?;
    let url = match proto {
        Proto::Socketio => format!("ws://{server}/socket.io/?EIO=4&transport=websocket"),
        Proto::Raw => format!("ws://{server}/floor?room={room}"),
        Proto::Centrifugo => format!("ws://{server}/connection/websocket"),
    };
    // tungstenite's default 128 KiB read buffer is zeroed as it is used: across 19,000
    // connections, page faults and memset made the generator, not the server, the limit of
    // the connect rate. Frames here are a few hundred bytes.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    if proto == Proto::Socketio {
        let open = next_text(&mut ws).await?;
        if !matches!(ServerPacket::decode(&open), Some(ServerPacket::Open(_))) {
            bail!("expected an Engine.IO open packet, got {open}");
        }
        // Answers the pings that come first: one swallowed here would end the connection
        // at the ping timeout.
        sio::join(&mut ws, NS, Some(&json!({ "token": token }))).await?;
    }
    let (mut tx, mut rx) = ws.split();
    if proto == Proto::Centrifugo {
        centrifugo_connect(&mut tx, &mut rx, token, room).await?;
    }
    Ok((tx, rx))
}

fn bind_port_at_connect(socket: &TcpSocket) -> nix::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
}

/// Sends the connect command and the subscribe command in one frame (the server runs a
/// connection's commands in order, so one round trip does both) and waits for both replies.
async fn centrifugo_connect(tx: &mut Tx, rx: &mut Rx, token: &str, room: &str) -> anyhow::Result<()> {
    let mut commands = json!({ "id": 1, "connect": { "token": token } }).to_string();
    let last = if room.is_empty() {
        1
    } else {
        commands += &format!("\n{}", json!({ "id": 2, "subscribe": { "channel": room } }));
        2
    };
    tx.send(Frame::text(commands)).await?;
    loop {
        let frame = next_text(rx).await?;
        for message in messages(Proto::Centrifugo, &frame) {
            match decode(Proto::Centrifugo, message) {
                Packet::Ping => tx.send(Frame::text(pong(Proto::Centrifugo))).await?,
                Packet::Ack(_, v) if v["ok"] != json!(true) => bail!("connect refused: {message}"),
                Packet::Ack(id, _) if id == last => return Ok(()),
                _ => {}
            }
        }
    }
}

async fn next_text<R>(rx: &mut R) -> anyhow::Result<String>
where
    R: futures::Stream<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(frame) = rx.next().await {
        if let Frame::Text(t) = frame? {
            return Ok(t.to_string());
        }
    }
    bail!("connection closed")
}

/// A decoded incoming packet.
pub enum Packet {
    /// Engine.IO ping: answer with [`PONG`].
    Ping,
    /// An event and its first argument.
    Event(String, Value),
    /// An ack and its first argument.
    Ack(u64, Value),
    /// Anything else (raw frames give their text as `Event("", text)`).
    Other,
}

/// Engine.IO pong.
pub const PONG: &str = sio::PONG;

/// The namespace the Socket.IO targets serve.
const NS: &str = "/chat";

/// The answer to a server ping: Centrifugo's is an empty command, as its ping is an empty reply.
pub fn pong(proto: Proto) -> &'static str {
    if proto == Proto::Centrifugo { "{}" } else { PONG }
}

/// Whether a frame, or one message of it, holds a server ping; found by comparison alone, as
/// it is checked on every frame.
pub fn is_ping(proto: Proto, text: &str) -> bool {
    match proto {
        Proto::Socketio => text == "2",
        Proto::Centrifugo => messages(proto, text).any(|message| message == "{}"),
        Proto::Raw => false,
    }
}

/// The messages in a text frame: Centrifugo writes several replies and pushes into one frame,
/// a line each; the other protocols carry one message per frame.
pub fn messages(proto: Proto, text: &str) -> impl Iterator<Item = &str> {
    // NUL never occurs in a text frame of the others, so splitting on it keeps them whole.
    let separator = if proto == Proto::Centrifugo { '\n' } else { '\0' };
    text.split(separator).filter(|message| !message.is_empty())
}

/// Decodes one message (see [`messages`]).
pub fn decode(proto: Proto, text: &str) -> Packet {
    if proto == Proto::Raw {
        return Packet::Event(String::new(), Value::String(text.to_owned()));
    }
    if is_ping(proto, text) {
        return Packet::Ping;
    }
    if proto == Proto::Centrifugo {
        return decode_centrifugo(text);
    }
    match ServerPacket::decode(text) {
        Some(ServerPacket::Event { ns, name, args, .. }) if ns == NS => {
            Packet::Event(name, args.into_iter().next().unwrap_or(Value::Null))
        }
        Some(ServerPacket::Ack { ns, id, args, .. }) if ns == NS && !args.is_empty() => {
            Packet::Ack(id, args.into_iter().next().unwrap_or(Value::Null))
        }
        _ => Packet::Other,
    }
}

/// A Centrifugo reply, as `Ack(id, { ok, data })` like the Socket.IO servers' acks, so callers
/// check one field; a publication push, as `Event(channel, data)`.
fn decode_centrifugo(text: &str) -> Packet {
    let Ok(mut reply) = serde_json::from_str::<Value>(text) else { return Packet::Other };
    if let Some(id) = reply.get("id").and_then(Value::as_u64) {
        return Packet::Ack(id, json!({ "ok": reply.get("error").is_none(), "data": reply }));
    }
    let push = &mut reply["push"];
    match (push["channel"].as_str().map(str::to_owned), push["pub"]["data"].take()) {
        (Some(channel), data) if !data.is_null() => Packet::Event(channel, data),
        _ => Packet::Other,
    }
}

/// Whether a failed ack is the server shedding load (`unavailable`): an answer to retry
/// later, not an error, and a refused message owes no deliveries.
pub fn is_refusal(ack: &Value) -> bool {
    ack["error"]["code"] == "unavailable"
}

/// Encodes an event with an ack id.
pub fn event(id: u64, name: &str, data: &Value) -> String {
    sio::event(NS, Some(id), name, std::slice::from_ref(data))
}

/// Encodes a Centrifugo publish of `data` (sent as a JSON string) into `channel`.
pub fn publish(id: u64, channel: &str, data: &str) -> String {
    json!({ "id": id, "publish": { "channel": channel, "data": data } }).to_string()
}

/// The send timestamp (µs) at the start of a delivered message's content (one message of a
/// frame, see [`messages`]), found without parsing the JSON: in a fan-out run the generator
/// reads every delivery, and its own parsing must not be what limits the run.
pub fn sent_at(proto: Proto, text: &str) -> Option<u64> {
    let content = match proto {
        Proto::Raw => text,
        Proto::Socketio => {
            if !text.starts_with("42/chat,[\"newMessage\"") {
                return None;
            }
            let at = text.find("\"content\":\"")? + "\"content\":\"".len();
            &text[at..]
        }
        // A publication push is `{"push":{"channel":…,"pub":{"data":…`, data first.
        Proto::Centrifugo => {
            if !text.starts_with("{\"push\":") {
                return None;
            }
            let at = text.find("\"pub\":{\"data\":\"")? + "\"pub\":{\"data\":\"".len();
            &text[at..]
        }
    };
    let digits = content.bytes().take_while(u8::is_ascii_digit).count();
    content[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centrifugo_frame_of_several_messages() {
        let frame = "{\"push\":{\"channel\":\"r0\",\"pub\":{\"data\":\"1700|xx\",\"info\":{}}}}\n{}\n{\"id\":7,\"error\":{\"code\":103}}";
        let lines: Vec<&str> = messages(Proto::Centrifugo, frame).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(sent_at(Proto::Centrifugo, lines[0]), Some(1700));
        assert!(is_ping(Proto::Centrifugo, frame) && is_ping(Proto::Centrifugo, lines[1]));
        assert!(matches!(decode(Proto::Centrifugo, lines[0]), Packet::Event(c, d) if c == "r0" && d == "1700|xx"));
        assert!(matches!(decode(Proto::Centrifugo, lines[2]), Packet::Ack(7, v) if v["ok"] == json!(false)));
        // Other protocols keep a frame whole.
        assert_eq!(messages(Proto::Socketio, "2").collect::<Vec<_>>(), ["2"]);
    }
}
