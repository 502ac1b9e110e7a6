//! The smallest Socket.IO v5 client that can drive a server hard: WebSocket transport only,
//! one namespace, text packets, acks by id. Also speaks raw WebSocket for the floor server.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
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
}

/// Write half of a connection.
pub type Tx = SplitSink<WebSocketStream<TcpStream>, Frame>;
/// Read half of a connection.
pub type Rx = SplitStream<WebSocketStream<TcpStream>>;

/// Opens a WebSocket from `source` (a loopback address, to spread ports) to `server`, and
/// for Socket.IO joins `/chat` with `token`.
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
    };
    // tungstenite's default 128 KiB read buffer is zeroed as it is used: across 19,000
    // connections, page faults and memset made the generator, not the server, the limit of
    // the connect rate. Frames here are a few hundred bytes.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
    let (mut tx, mut rx) = ws.split();
    if proto == Proto::Raw {
        return Ok((tx, rx));
    }
    let open = next_text(&mut rx).await?;
    if !open.starts_with('0') {
        bail!("expected an Engine.IO open packet, got {open}");
    }
    tx.send(Frame::text(format!("40/chat,{}", json!({ "token": token })))).await?;
    loop {
        let packet = next_text(&mut rx).await?;
        // The server pings as soon as the session opens, before it answers the CONNECT; a
        // ping swallowed here would end the connection at the ping timeout.
        if packet == "2" {
            tx.send(Frame::text(PONG)).await?;
        }
        if packet.starts_with("40/chat,") {
            return Ok((tx, rx));
        }
        if packet.starts_with("44/chat,") {
            bail!("connect refused: {packet}");
        }
    }
}

fn bind_port_at_connect(socket: &TcpSocket) -> nix::Result<()> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)
}

async fn next_text(rx: &mut Rx) -> anyhow::Result<String> {
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
pub const PONG: &str = "3";

/// Decodes a text frame.
pub fn decode(proto: Proto, text: &str) -> Packet {
    if proto == Proto::Raw {
        return Packet::Event(String::new(), Value::String(text.to_owned()));
    }
    if text == "2" {
        return Packet::Ping;
    }
    if let Some(rest) = text.strip_prefix("42/chat,") {
        if let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(rest)
            && !args.is_empty()
        {
            let data = args.get(1).cloned().unwrap_or(Value::Null);
            if let Value::String(name) = args.swap_remove(0) {
                return Packet::Event(name, data);
            }
        }
    } else if let Some(rest) = text.strip_prefix("43/chat,") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let (Ok(id), Ok(Value::Array(mut args))) =
            (rest[..digits].parse(), serde_json::from_str::<Value>(&rest[digits..]))
            && !args.is_empty()
        {
            return Packet::Ack(id, args.swap_remove(0));
        }
    }
    Packet::Other
}

/// Encodes an event with an ack id.
pub fn event(id: u64, name: &str, data: &Value) -> String {
    format!("42/chat,{id}{}", json!([name, data]))
}

/// The send timestamp (µs) at the start of a delivered message's content, found without
/// parsing the JSON: in a fan-out run the generator reads every delivery, and its own parsing
/// must not be what limits the run.
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
    };
    let digits = content.bytes().take_while(u8::is_ascii_digit).count();
    content[..digits].parse().ok()
}
