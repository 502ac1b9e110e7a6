//! The wire protocol end to end: a real server on a loopback port, driven by raw clients
//! (tokio-tungstenite for WebSocket, reqwest for long-polling, and hand-written frames on a
//! plain TCP stream where tungstenite would refuse to misbehave), asserting the exact bytes
//! a Socket.IO v5 / Engine.IO v4 client sees and what the handlers are given.
//!
//! Waits are bounded by generous timeouts and never asserted on: the machine may be busy.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchyard_sio::client::{self, ServerPacket};
use switchyard_sio::{
    CONNECT_TIMEOUT, Config, DataError, Delivery, DisconnectReason, EngineMessage, Io, NamespaceBuilder, Payload,
    SendError, Sid, Socket, To,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

/// How long anything the server should do "now" may take on a busy machine.
const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Pings far apart: only the heartbeat tests want to see them.
fn config() -> Config {
    Config { ping_interval: Duration::from_secs(300), ping_timeout: Duration::from_secs(300), ..Config::default() }
}

/// What the test namespace's handlers saw, in the order they saw it.
enum Seen {
    Connected(Arc<Socket<()>>),
    Event(Sid, Result<Value, DataError>),
    Disconnected(Sid, DisconnectReason),
}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected(socket) => write!(f, "Connected({})", socket.id),
            Self::Event(id, data) => write!(f, "Event({id}, {data:?})"),
            Self::Disconnected(id, reason) => write!(f, "Disconnected({id}, {reason:?})"),
        }
    }
}

struct Server {
    addr: SocketAddr,
    io: Io<()>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

/// What the `echo` handler acknowledges: its argument, or the error it got instead.
fn answer(data: &Result<Value, DataError>) -> Value {
    match data {
        Ok(value) => value.clone(),
        Err(e) => json!({ "error": format!("{e:?}") }),
    }
}

async fn start(config: Config) -> Server {
    start_with(config, Duration::ZERO).await
}

/// A server with namespace `/chat`: joining needs `{"token":"good"}` and joins room `all`
/// and the auth's `rooms`; event `echo` acknowledges its argument; `disconnect_delay` makes
/// the disconnect handler slow, to see who waits for it.
async fn start_with(config: Config, disconnect_delay: Duration) -> Server {
    start_full(config, disconnect_delay, CONNECT_TIMEOUT).await
}

/// [`start_with`], and a connect timeout.
async fn start_full(config: Config, disconnect_delay: Duration, connect_timeout: Duration) -> Server {
    let (tx, seen) = mpsc::unbounded_channel();
    let (on_connect, on_event, on_disconnect) = (tx.clone(), tx.clone(), tx);
    let chat = NamespaceBuilder::new("/chat", move |socket: Arc<Socket<()>>, auth: Option<Value>| {
        let tx = on_connect.clone();
        async move {
            let auth = auth.unwrap_or_default();
            let token = auth.get("token").and_then(Value::as_str).ok_or("missing token")?;
            if token != "good" {
                return Err(format!("bad token {token}"));
            }
            socket.join(["all"]);
            if let Some(rooms) = auth.get("rooms").and_then(Value::as_array) {
                socket.join(rooms.iter().filter_map(Value::as_str));
            }
            let _ = tx.send(Seen::Connected(socket));
            Ok(())
        }
    })
    .on("echo", move |socket, data, ack| {
        let tx = on_event.clone();
        async move {
            let reply = answer(&data);
            let _ = tx.send(Seen::Event(socket.id, data));
            let _ = ack.send(&reply);
        }
    })
    // Every argument and attachment back, as an event and as the ack.
    .on_payload("all", |socket, data, ack| async move {
        let payload = data.expect("parsed arguments");
        socket.emit_payload("all-back", &payload).unwrap();
        ack.send_payload(&payload).unwrap();
    })
    .on_disconnect(move |socket, reason| {
        let tx = on_disconnect.clone();
        async move {
            tokio::time::sleep(disconnect_delay).await;
            let _ = tx.send(Seen::Disconnected(socket.id, reason));
        }
    });
    let io = Io::builder(config).connect_timeout(connect_timeout).ns(chat).build();
    let app = axum::Router::new().route("/socket.io/", axum::routing::any(Io::handle)).with_state(io.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, io, seen }
}

impl Server {
    async fn seen(&mut self) -> Seen {
        within("a handler", self.seen.recv()).await.expect("the handlers live as long as the server")
    }

    async fn connected(&mut self) -> Arc<Socket<()>> {
        match self.seen().await {
            Seen::Connected(socket) => socket,
            other => panic!("expected a connect, saw {other:?}"),
        }
    }

    async fn event(&mut self) -> (Sid, Result<Value, DataError>) {
        match self.seen().await {
            Seen::Event(id, data) => (id, data),
            other => panic!("expected an event, saw {other:?}"),
        }
    }

    async fn disconnected(&mut self) -> (Sid, DisconnectReason) {
        match self.seen().await {
            Seen::Disconnected(id, reason) => (id, reason),
            other => panic!("expected a disconnect, saw {other:?}"),
        }
    }

    /// Nothing more reached a handler (so far: call it after a round trip that would have
    /// come after it).
    fn quiet(&mut self) {
        if let Ok(seen) = self.seen.try_recv() {
            panic!("a handler saw {seen:?}");
        }
    }

    fn chat(&self) -> &Namespace {
        self.io.of("/chat").expect("the test namespace")
    }

    fn rooms(&self) -> Vec<(String, usize)> {
        let mut rooms: Vec<_> = self.chat().rooms().into_iter().map(|(room, n)| (room.to_string(), n)).collect();
        rooms.sort();
        rooms
    }
}

type Namespace = switchyard_sio::Namespace<()>;

fn rooms(list: &[(&str, usize)]) -> Vec<(String, usize)> {
    list.iter().map(|&(room, n)| (room.to_owned(), n)).collect()
}

fn socket_rooms(socket: &Socket<()>) -> Vec<String> {
    let mut rooms: Vec<_> = socket.rooms().iter().map(|r| r.to_string()).collect();
    rooms.sort();
    rooms
}

/// The Socket.IO sid in a `40/chat,{"sid":…}` packet.
fn joined_sid(packet: &str) -> String {
    match ServerPacket::decode(packet) {
        Some(ServerPacket::Connect { ns, sid }) if ns == "/chat" => sid,
        _ => panic!("not a /chat connect: {packet}"),
    }
}

/// The event name of a `42/chat,["name",…]` packet.
fn event_name(packet: &str) -> String {
    match ServerPacket::decode(packet) {
        Some(ServerPacket::Event { ns, name, .. }) if ns == "/chat" => name,
        _ => panic!("not a /chat event: {packet}"),
    }
}

fn ws_url(addr: SocketAddr, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={sid}"),
        None => format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"),
    }
}

/// A WebSocket client speaking Engine.IO through tungstenite.
struct Ws(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>);

impl Ws {
    /// A new session over WebSocket, and its open packet.
    async fn open(addr: SocketAddr) -> (Self, Value) {
        Self::open_request(ws_url(addr, None).into_client_request().unwrap()).await
    }

    async fn open_request(request: tungstenite::handshake::client::Request) -> (Self, Value) {
        let (stream, _) = within("a WebSocket handshake", tokio_tungstenite::connect_async(request)).await.unwrap();
        let mut ws = Self(stream);
        let open = ws.text().await;
        let open = serde_json::from_str(open.strip_prefix('0').unwrap_or_else(|| panic!("not an open packet: {open}")))
            .unwrap();
        (ws, open)
    }

    /// An upgrade probe of long-polling session `sid`: its WebSocket, after `2probe` was
    /// answered with `3probe`.
    async fn probe(addr: SocketAddr, sid: &str) -> Self {
        let (stream, _) =
            within("the upgrade handshake", tokio_tungstenite::connect_async(ws_url(addr, Some(sid)))).await.unwrap();
        let mut ws = Self(stream);
        ws.send("2probe").await;
        assert_eq!(ws.text().await, "3probe");
        ws
    }

    /// A new session joined to `/chat` with `auth`, and its Socket.IO sid. Pings that come
    /// first are answered.
    async fn join(addr: SocketAddr, auth: Value) -> (Self, String) {
        let (mut ws, _) = Self::open(addr).await;
        let sid = ws.join_chat(auth).await;
        (ws, sid)
    }

    async fn join_chat(&mut self, auth: Value) -> String {
        within("a join", client::join(&mut self.0, "/chat", Some(&auth))).await.unwrap()
    }

    async fn send(&mut self, text: &str) {
        within("a send", self.0.send(Message::text(text))).await.unwrap();
    }

    async fn message(&mut self) -> Message {
        within("a message", self.0.next()).await.expect("the connection is open").unwrap()
    }

    async fn text(&mut self) -> String {
        match self.message().await {
            Message::Text(text) => text.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// Reads to the end of the connection; the close frame if the server sent one.
    async fn end(&mut self) -> Option<CloseFrame> {
        let mut close = None;
        loop {
            match within("the connection's end", self.0.next()).await {
                Some(Ok(Message::Close(frame))) => close = frame,
                Some(Ok(other)) => panic!("expected the end, got {other:?}"),
                Some(Err(_)) | None => return close,
            }
        }
    }
}

/// A long-polling client.
#[derive(Clone)]
struct Polling {
    http: reqwest::Client,
    url: String,
}

fn http() -> reqwest::Client {
    // A proxy from the environment must not see loopback requests.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

impl Polling {
    /// A new session over long-polling, and its open packet.
    async fn open(addr: SocketAddr) -> (Self, Value) {
        let http = http();
        let response =
            within("a handshake", http.get(format!("http://{addr}/socket.io/?EIO=4&transport=polling")).send())
                .await
                .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/plain; charset=UTF-8");
        let open = response.text().await.unwrap();
        let open: Value =
            serde_json::from_str(open.strip_prefix('0').unwrap_or_else(|| panic!("not an open packet: {open}")))
                .unwrap();
        let url = format!("http://{addr}/socket.io/?EIO=4&transport=polling&sid={}", open["sid"].as_str().unwrap());
        (Self { http, url }, open)
    }

    /// A new session joined to `/chat`, and its Socket.IO sid. Pings that come first are
    /// answered.
    async fn join(addr: SocketAddr) -> (Self, String) {
        let (polling, _) = Self::open(addr).await;
        polling.post(&client::connect("/chat", Some(&json!({ "token": "good" })))).await;
        loop {
            let mut joined = None;
            for packet in client::packets(&polling.get().await) {
                match ServerPacket::decode(packet) {
                    Some(ServerPacket::Ping) => polling.post(client::PONG).await,
                    _ => joined = Some(joined_sid(packet)),
                }
            }
            if let Some(sid) = joined {
                return (polling, sid);
            }
        }
    }

    async fn get_raw(&self) -> (u16, String) {
        let response = within("a long-poll", self.http.get(&self.url).send()).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn get(&self) -> String {
        let (status, body) = self.get_raw().await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn post_raw(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = within("a POST", self.http.post(&self.url).body(body).send()).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn post(&self, body: &str) {
        assert_eq!(self.post_raw(body.to_owned()).await, (200, "ok".to_owned()));
    }
}

/// An Engine.IO error body.
fn engine_error(code: u8, message: &str) -> (u16, Value) {
    (400, json!({ "code": code, "message": message }))
}

async fn get_json(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = within("a request", http.get(url).send()).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A client frame, masked unless told otherwise (RFC 6455 requires clients to mask).
fn frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn text_frame(text: &str) -> Vec<u8> {
    frame(true, TEXT, text.as_bytes(), true)
}

/// A close frame's payload: its code.
fn close_code(code: u16) -> (bool, u8, Vec<u8>) {
    (true, CLOSE, code.to_be_bytes().to_vec())
}

/// A WebSocket client writing bytes by hand on a TCP stream, for what tungstenite will not
/// send (unmasked frames, forged lengths, broken fragmentation).
struct Raw {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Raw {
    /// Does the HTTP upgrade by hand, writing `then` in the same write as the request, and
    /// reads the open packet.
    async fn open(addr: SocketAddr, then: &[u8]) -> Self {
        let stream = within("a TCP connect", TcpStream::connect(addr)).await.unwrap();
        Self::handshake(stream, addr, then).await
    }

    /// [`Raw::open`] on a stream connected already.
    async fn handshake(mut stream: TcpStream, addr: SocketAddr, then: &[u8]) -> Self {
        let mut request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        request.extend_from_slice(then);
        stream.write_all(&request).await.unwrap();
        let mut read = Vec::new();
        let end = loop {
            if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0; 1024];
            let n = within("the handshake response", stream.read(&mut chunk)).await.unwrap();
            assert!(n > 0, "the server closed during the handshake");
            read.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(read.drain(..end).collect()).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101 "), "{head}");
        // The RFC 6455 example key's answer.
        assert!(head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"), "{head}");
        let mut raw = Self { stream, read };
        let open = raw.text().await;
        assert!(open.starts_with("0{"), "{open}");
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        within("a write", self.stream.write_all(bytes)).await.unwrap();
    }

    /// The next server frame (fin, opcode, payload), or `None` at the connection's end.
    async fn frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        loop {
            if let [b0, b1, ..] = self.read[..] {
                assert_eq!(b1 & 0x80, 0, "server frames are never masked");
                // The payload's length and where the payload starts, once the header is here.
                let header = match b1 & 0x7F {
                    126 => self.read.get(2..4).map(|b| (usize::from(u16::from_be_bytes([b[0], b[1]])), 4)),
                    127 => self.read.get(2..10).map(|b| (u64::from_be_bytes(b.try_into().unwrap()) as usize, 10)),
                    n => Some((usize::from(n), 2)),
                };
                if let Some((len, at)) = header
                    && self.read.len() >= at + len
                {
                    let payload = self.read[at..at + len].to_vec();
                    self.read.drain(..at + len);
                    return Some((b0 & 0x80 != 0, b0 & 0x0F, payload));
                }
            }
            let mut chunk = [0; 4096];
            match within("a frame", self.stream.read(&mut chunk)).await {
                Ok(0) | Err(_) => {
                    assert!(self.read.is_empty(), "the connection ended inside a frame");
                    return None;
                }
                Ok(n) => self.read.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn text(&mut self) -> String {
        match self.frame().await {
            Some((true, TEXT, payload)) => String::from_utf8(payload).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_open_packet_and_namespace_connect() {
    let mut server = start(Config {
        ping_interval: Duration::from_millis(25_000),
        ping_timeout: Duration::from_millis(20_000),
        max_payload: 12_345,
        ..Config::default()
    })
    .await;
    let mut request = ws_url(server.addr, None).into_client_request().unwrap();
    request.headers_mut().insert("authorization", "Bearer abc".parse().unwrap());
    request.headers_mut().insert("x-not-kept", "1".parse().unwrap());
    let (mut ws, open) = Ws::open_request(request).await;
    let sid = open["sid"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 22);
    assert!(sid.parse::<Sid>().is_ok(), "{sid}");
    assert_eq!(
        open,
        json!({ "sid": sid, "upgrades": [], "pingInterval": 25_000, "pingTimeout": 20_000, "maxPayload": 12_345 })
    );
    assert_eq!(server.io.sessions(), 1);

    ws.send(r#"40/chat,{"token":"good","rooms":["r1"]}"#).await;
    let reply = ws.text().await;
    let socket = server.connected().await;
    assert_eq!(reply, format!(r#"40/chat,{{"sid":"{}"}}"#, socket.id));
    // The Socket.IO id is not the session's.
    assert_ne!(socket.id.to_string(), sid);
    assert_eq!(socket.ns(), "/chat");
    assert!(socket.connected());
    assert_eq!(socket_rooms(&socket), ["all", "r1"]);
    assert_eq!(socket.headers().len(), 1);
    assert_eq!(socket.headers()["authorization"], "Bearer abc");

    // A second join of the same namespace is ignored: the next packet is the ack.
    ws.send(r#"40/chat,{"token":"good"}"#).await;
    ws.send(r#"42/chat,1["echo","once"]"#).await;
    assert_eq!(ws.text().await, r#"43/chat,1["once"]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!("once"))));
    server.quiet();
    assert_eq!(server.rooms(), rooms(&[("all", 1), ("r1", 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connect_refused_and_unknown_namespaces() {
    let mut server = start(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;

    ws.send(r#"40/chat,{"token":"nope"}"#).await;
    assert_eq!(ws.text().await, r#"44/chat,{"message":"bad token nope"}"#);
    // No auth at all reaches the handler as `None`.
    ws.send("40/chat,").await;
    assert_eq!(ws.text().await, r#"44/chat,{"message":"missing token"}"#);
    ws.send(r#"40/x,{"token":"good"}"#).await;
    assert_eq!(ws.text().await, r#"44/x,{"message":"Invalid namespace"}"#);
    ws.send("40").await;
    assert_eq!(ws.text().await, r#"44{"message":"Invalid namespace"}"#);
    server.quiet();
    assert!(server.rooms().is_empty());

    // A refused join leaves nothing behind: the same session can join afterwards.
    ws.send(r#"40/chat,{"token":"good"}"#).await;
    let sid = joined_sid(&ws.text().await);
    assert_eq!(server.connected().await.id.to_string(), sid);
    assert_eq!(server.rooms(), rooms(&[("all", 1)]));
    assert_eq!(server.io.sessions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_and_without_acks() {
    let mut server = start(config()).await;
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let socket = server.connected().await;

    ws.send(r#"42/chat,5["echo",{"a":[1,"b"],"c":null}]"#).await;
    assert_eq!(ws.text().await, r#"43/chat,5[{"a":[1,"b"],"c":null}]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!({ "a": [1, "b"], "c": null }))));

    // Without an ack id the handler runs and nothing is answered; an event without a
    // handler, or for a namespace the client did not join, is dropped. The next packet the
    // client gets is the ack of the event after them.
    ws.send(r#"42/chat,["echo",2]"#).await;
    ws.send(r#"42/chat,6["nobody",1]"#).await;
    ws.send(r#"42["echo",1]"#).await;
    ws.send(r#"42/other,8["echo",1]"#).await;
    ws.send(r#"42/chat,7["echo",3,{"more":[]},"x"]"#).await;
    assert_eq!(ws.text().await, "43/chat,7[3]");
    let mut data = vec![server.event().await, server.event().await];
    data.sort_by_key(|(_, data)| data.clone().unwrap().as_i64());
    assert_eq!(data, [(socket.id, Ok(json!(2))), (socket.id, Ok(json!(3)))]);
    server.quiet();

    // The largest ack id there is, and an event with whitespace around it.
    ws.send(r#"42/chat,18446744073709551615 [ "echo" , "big" ] "#).await;
    assert_eq!(ws.text().await, r#"43/chat,18446744073709551615["big"]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!("big"))));

    assert_eq!(socket.emit("hello", &json!({ "x": 1 })), Ok(()));
    assert_eq!(ws.text().await, r#"42/chat,["hello",{"x":1}]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_the_server_does_not_act_on_are_ignored() {
    let mut server = start(config()).await;
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let socket = server.connected().await;
    // Well formed, and meaningless here: acks the server never asked for, a client's
    // connect_error, leaving a namespace never joined, joining one twice, an upgrade
    // without a probe, noops and unsolicited pongs.
    let ignored = ["43/chat,1[]", "44/chat,{}", "41/nope,", r#"40/chat,{"token":"good"}"#, "5", "6", "3"];
    for packet in ignored {
        ws.send(packet).await;
    }
    ws.send(r#"42/chat,9["echo","still here"]"#).await;
    assert_eq!(ws.text().await, r#"43/chat,9["still here"]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!("still here"))));
    server.quiet();
    assert!(socket.connected());
    assert_eq!(server.io.sessions(), 1);
}

/// Packets that do not parse end the session at once, as Node's server does; each is sent
/// on a session of its own, which must end with the handler told of a transport error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_close_the_session() {
    let mut server = start(config()).await;
    let junk = [
        "",
        "9",
        "x",
        "4",
        "48",
        "4x",
        "4abc",
        "42{}",
        r#"42abc["echo",1]"#,
        r#"42/chat,1["#,
        r#"42/chat,2[1,2]"#,
        r#"42/chat,3{"a":1}"#,
        r#"42/chat,4"echo""#,
        r#"42/chat,5["echo""#,
        r#"42/chat,6["echo",{"a":}]"#,
        r#"42/chat,7["echo",1,}]"#,
        r#"42/chat,8["echo",1]x"#,
        r#"42/chat,99999999999999999999999["echo",1]"#,
        r#"45/chat,["echo",1]"#,
        r#"45x-/chat,["echo",1]"#,
        r#"451-/chat,[1]"#,
        "40/chat,{not json",
        "40/chat,[1]",
    ];
    for packet in junk {
        let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
        let id = server.connected().await.id;
        ws.send(packet).await;
        ws.end().await;
        assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportError), "{packet}");
    }
    // An attachment no binary event announced, and text while attachments are due.
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let id = server.connected().await.id;
    within("a send", ws.0.send(Message::binary(vec![1, 2, 3]))).await.unwrap();
    ws.end().await;
    assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportError));
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let id = server.connected().await.id;
    ws.send(r#"451-/chat,["echo",{"_placeholder":true,"num":0}]"#).await;
    ws.send(r#"42/chat,["echo",1]"#).await;
    ws.end().await;
    assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportError));
    // Before any namespace: the session ends all the same.
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send("4abc").await;
    ws.end().await;
    server.quiet();
    assert_eq!(server.io.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_arguments_reach_the_handler_as_errors() {
    let mut server = start(config()).await;
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let socket = server.connected().await;
    // Far deeper than serde_json's recursion limit (128).
    let deep = format!(r#"42/chat,4["echo",{}1{}]"#, "[".repeat(1000), "]".repeat(1000));
    let cases = [(r#"42/chat,1["echo"]"#.to_owned(), 1, DataError::Missing), (deep, 4, DataError::Malformed)];
    for (packet, id, error) in cases {
        ws.send(&packet).await;
        assert_eq!(ws.text().await, format!(r#"43/chat,{id}[{{"error":"{error:?}"}}]"#), "{packet:.60}");
        assert_eq!(server.event().await, (socket.id, Err(error)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_events_reach_the_handler_as_binary() {
    let mut server = start(config()).await;
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let socket = server.connected().await;

    ws.send(r#"451-/chat,7["echo",{"_placeholder":true,"num":0}]"#).await;
    within("a send", ws.0.send(Message::binary(vec![0, 1, 2, 255]))).await.unwrap();
    assert_eq!(ws.text().await, r#"43/chat,7[{"error":"Binary"}]"#);
    assert_eq!(server.event().await, (socket.id, Err(DataError::Binary)));

    // With two attachments the event waits for the second.
    ws.send(r#"452-/chat,8["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#).await;
    within("a send", ws.0.send(Message::binary(vec![1]))).await.unwrap();
    within("a send", ws.0.send(Message::binary(vec![2]))).await.unwrap();
    assert_eq!(ws.text().await, r#"43/chat,8[{"error":"Binary"}]"#);
    assert_eq!(server.event().await, (socket.id, Err(DataError::Binary)));

    // No attachments at all: the arguments are plain JSON.
    ws.send(r#"450-/chat,10["echo",{}]"#).await;
    assert_eq!(ws.text().await, r#"43/chat,10[{}]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!({}))));
}

/// The names of the events a client gets up to and including `end`.
async fn events_until_end(ws: &mut Ws) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        let name = event_name(&ws.text().await);
        let end = name == "end";
        names.push(name);
        if end {
            return names;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_broadcasts_reach_exactly_their_members() {
    let mut server = start(config()).await;
    let mut clients = Vec::new();
    let mut sockets = Vec::new();
    for rooms in [json!(["red"]), json!(["red", "blue"]), json!(["blue"]), json!([])] {
        let (ws, sid) = Ws::join(server.addr, json!({ "token": "good", "rooms": rooms })).await;
        let socket = server.connected().await;
        assert_eq!(socket.id.to_string(), sid);
        clients.push(ws);
        sockets.push(socket);
    }
    let [a, b, c, d] = [&sockets[0], &sockets[1], &sockets[2], &sockets[3]];
    assert_eq!(server.rooms(), rooms(&[("all", 4), ("blue", 2), ("red", 2)]));

    let chat = server.chat();
    let sent = |sent| Delivery { sent, full: 0, closed: 0 };
    let to = |room| To { room, except: None, skip: None };
    assert_eq!(chat.broadcast(to("red"), "b1", &1), Ok(sent(2)));
    assert_eq!(chat.broadcast(To { except: Some("blue"), ..to("all") }, "b2", &1), Ok(sent(2)));
    assert_eq!(chat.broadcast(To { except: Some("blue"), skip: Some(a.id), ..to("all") }, "b3", &1), Ok(sent(1)));
    assert_eq!(chat.broadcast(To { except: Some("nothing"), skip: Some(c.id), ..to("blue") }, "b4", &1), Ok(sent(1)));
    assert_eq!(chat.broadcast(to("nothing"), "never", &1), Ok(Delivery::default()));

    chat.join_members("red", "green");
    assert_eq!(server.rooms(), rooms(&[("all", 4), ("blue", 2), ("green", 2), ("red", 2)]));
    assert_eq!(socket_rooms(b), ["all", "blue", "green", "red"]);
    assert_eq!(chat.broadcast(to("green"), "b5", &1), Ok(sent(2)));

    b.leave(["red", "never-joined"]);
    assert_eq!(server.rooms(), rooms(&[("all", 4), ("blue", 2), ("green", 2), ("red", 1)]));
    assert_eq!(socket_rooms(b), ["all", "blue", "green"]);
    // The last member leaving removes the room.
    a.leave(["red"]);
    assert_eq!(server.rooms(), rooms(&[("all", 4), ("blue", 2), ("green", 2)]));
    assert_eq!(chat.broadcast(to("red"), "never", &1), Ok(Delivery::default()));
    // Joining twice changes nothing.
    d.join(["blue", "blue"]);
    d.join(["blue"]);
    assert_eq!(server.rooms(), rooms(&[("all", 4), ("blue", 3), ("green", 2)]));
    assert_eq!(chat.broadcast(To { skip: Some(b.id), ..to("blue") }, "b6", &json!({ "n": 6 })), Ok(sent(2)));
    assert_eq!(chat.broadcast(to("all"), "end", &1), Ok(sent(4)));

    let expected = [
        vec!["b1", "b2", "b5", "end"],
        vec!["b1", "b4", "b5", "end"],
        vec!["b6", "end"],
        vec!["b2", "b3", "b6", "end"],
    ];
    for (ws, expected) in clients.iter_mut().zip(expected) {
        assert_eq!(events_until_end(ws).await, expected);
    }
    // And one socket's own emit, byte for byte.
    d.emit("last", &json!({ "n": 7 })).unwrap();
    assert_eq!(clients[3].text().await, r#"42/chat,["last",{"n":7}]"#);
    server.quiet();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_namespace_runs_the_disconnect_handler() {
    let mut server = start(config()).await;
    let (mut stays, _) = Ws::join(server.addr, json!({ "token": "good", "rooms": ["red"] })).await;
    server.connected().await;
    let (mut leaves, _) = Ws::join(server.addr, json!({ "token": "good", "rooms": ["red"] })).await;
    let leaving = server.connected().await;
    assert_eq!(server.rooms(), rooms(&[("all", 2), ("red", 2)]));

    leaves.send("41/chat,").await;
    assert_eq!(server.disconnected().await, (leaving.id, DisconnectReason::ClientNamespaceDisconnect));
    assert!(!leaving.connected());
    assert!(leaving.rooms().is_empty());
    assert_eq!(server.rooms(), rooms(&[("all", 1), ("red", 1)]));
    let chat = server.chat();
    assert_eq!(
        chat.broadcast(To { room: "red", except: None, skip: None }, "end", &1),
        Ok(Delivery { sent: 1, full: 0, closed: 0 })
    );
    assert_eq!(stays.text().await, r#"42/chat,["end",1]"#);
    // The socket that left is not written to.
    assert_eq!(leaving.emit("stale", &1), Err(SendError::Closed));

    // The session lives on: its events for /chat are dropped until it joins again, as a
    // new socket.
    assert_eq!(server.io.sessions(), 2);
    leaves.send(r#"42/chat,1["echo",1]"#).await;
    leaves.send(r#"40/chat,{"token":"good"}"#).await;
    let again = joined_sid(&leaves.text().await);
    assert_ne!(again, leaving.id.to_string());
    assert_eq!(server.connected().await.id.to_string(), again);
    leaves.send(r#"42/chat,2["echo",2]"#).await;
    assert_eq!(leaves.text().await, "43/chat,2[2]");
    assert_eq!(server.event().await.1, Ok(json!(2)));
    assert_eq!(server.rooms(), rooms(&[("all", 2), ("red", 1)]));
    server.quiet();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_disconnects_the_sockets_of_a_room() {
    let mut server = start(config()).await;
    let (mut stays, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let staying = server.connected().await;
    let mut leaving = Vec::new();
    for _ in 0..2 {
        let (ws, _) = Ws::join(server.addr, json!({ "token": "good", "rooms": ["red"] })).await;
        leaving.push((ws, server.connected().await));
    }
    assert_eq!(server.chat().sockets("red").len(), 2);
    assert!(server.chat().sockets("nothing").is_empty());

    assert_eq!(server.chat().disconnect_room("red"), 2);
    let mut gone = vec![server.disconnected().await, server.disconnected().await];
    gone.sort_by_key(|(id, _)| id.to_string());
    let mut expected: Vec<_> =
        leaving.iter().map(|(_, s)| (s.id, DisconnectReason::ServerNamespaceDisconnect)).collect();
    expected.sort_by_key(|(id, _)| id.to_string());
    assert_eq!(gone, expected);
    for (ws, socket) in &mut leaving {
        assert_eq!(ws.text().await, "41/chat,");
        assert!(!socket.connected());
    }
    assert_eq!(server.rooms(), rooms(&[("all", 1)]));
    // Nothing left to disconnect; the other socket is untouched and the sessions live on.
    assert_eq!(server.chat().disconnect_room("red"), 0);
    assert!(staying.connected());
    assert_eq!(server.io.sessions(), 3);
    staying.emit("still", &1).unwrap();
    assert_eq!(stays.text().await, r#"42/chat,["still",1]"#);
    server.quiet();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_handshake_posts_and_gets() {
    let mut server = start(Config { max_payload: 5_000, ..config() }).await;
    let (polling, open) = Polling::open(server.addr).await;
    let sid = open["sid"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 22);
    assert_eq!(
        open,
        json!({ "sid": sid, "upgrades": ["websocket"], "pingInterval": 300_000, "pingTimeout": 300_000, "maxPayload": 5_000 })
    );
    assert_eq!(server.io.sessions(), 1);

    polling.post(r#"40/chat,{"token":"good"}"#).await;
    let joined = joined_sid(&polling.get().await);
    let socket = server.connected().await;
    assert_eq!(joined, socket.id.to_string());

    // Packets queued while no GET waits leave together.
    socket.emit("a", &1).unwrap();
    socket.emit("b", &json!({ "x": "\u{1e}" })).unwrap();
    socket.emit("c", &3).unwrap();
    assert_eq!(polling.get().await, "42/chat,[\"a\",1]\x1e42/chat,[\"b\",{\"x\":\"\\u001e\"}]\x1e42/chat,[\"c\",3]");

    // Several packets in one POST, each handled.
    polling.post("42/chat,1[\"echo\",1]\x1e42/chat,2[\"echo\",2]\x1e42/chat,[\"echo\",3]\x1e6").await;
    let mut acks = Vec::new();
    while acks.len() < 2 {
        acks.extend(polling.get().await.split('\x1e').map(str::to_owned));
    }
    acks.sort();
    assert_eq!(acks, ["43/chat,1[1]", "43/chat,2[2]"]);
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(server.event().await);
    }
    events.sort_by_key(|(_, data)| data.clone().unwrap().as_i64());
    assert_eq!(events, [(socket.id, Ok(json!(1))), (socket.id, Ok(json!(2))), (socket.id, Ok(json!(3)))]);

    // A body up to maxPayload is read (an event nobody handles); one byte more is refused,
    // and the session lives on.
    let padded = |len: usize| format!(r#"42/chat,["unhandled","{}"]"#, "x".repeat(len - 24));
    assert_eq!(padded(5_000).len(), 5_000);
    assert_eq!(polling.post_raw(padded(5_000)).await, (200, "ok".to_owned()));
    let (status, body) = polling.post_raw(padded(5_001)).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (413, json!({ "code": 3, "message": "Payload too large" }))
    );
    socket.emit("after", &1).unwrap();
    assert_eq!(polling.get().await, r#"42/chat,["after",1]"#);

    // The client closes.
    polling.post("1").await;
    assert_eq!(server.disconnected().await, (socket.id, DisconnectReason::TransportClose));
    assert_eq!(server.io.sessions(), 0);
    let (status, body) = polling.get_raw().await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(1, "Session ID unknown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_waits_until_a_packet_comes() {
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let socket = server.connected().await;

    let waiting = tokio::spawn({
        let polling = polling.clone();
        async move { polling.get().await }
    });
    // Nothing to send: the GET has no reason to end.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    socket.emit("late", &1).unwrap();
    assert_eq!(within("the long-poll", waiting).await.unwrap(), r#"42/chat,["late",1]"#);

    // An ack released from the client's own POST.
    let waiting = tokio::spawn({
        let polling = polling.clone();
        async move { polling.get().await }
    });
    polling.post(r#"42/chat,3["echo","x"]"#).await;
    assert_eq!(within("the long-poll", waiting).await.unwrap(), r#"43/chat,3["x"]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!("x"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_concurrent_get_closes_the_session() {
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let socket = server.connected().await;

    let get = || {
        let polling = polling.clone();
        tokio::spawn(async move { polling.get_raw().await })
    };
    let (first, second) = (get(), get());
    let mut results = [within("a GET", first).await.unwrap(), within("a GET", second).await.unwrap()];
    // Whichever arrived second is refused, and the one that waited gets a close packet.
    results.sort();
    assert_eq!(results[0], (200, "1".to_owned()));
    assert_eq!((results[1].0, serde_json::from_str(&results[1].1).unwrap()), engine_error(3, "Bad request"));

    assert_eq!(server.disconnected().await, (socket.id, DisconnectReason::MultipleHttpPolling));
    assert_eq!(server.io.sessions(), 0);
    let (status, body) = polling.get_raw().await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(1, "Session ID unknown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_errors_have_their_codes() {
    let server = start(config()).await;
    let http = http();
    let base = format!("http://{}/socket.io/", server.addr);
    let unknown = Sid::random();
    let cases = [
        (format!("{base}?EIO=4&transport=polling&sid={unknown}"), engine_error(1, "Session ID unknown")),
        (format!("{base}?EIO=4&transport=polling&sid=short"), engine_error(1, "Session ID unknown")),
        (format!("{base}?EIO=3&transport=polling"), engine_error(5, "Unsupported protocol version")),
        (format!("{base}?transport=polling"), engine_error(5, "Unsupported protocol version")),
        (format!("{base}?EIO=4&transport=flash"), engine_error(0, "Transport unknown")),
        (format!("{base}?EIO=4"), engine_error(0, "Transport unknown")),
        // A WebSocket request without the upgrade headers.
        (format!("{base}?EIO=4&transport=websocket"), engine_error(3, "Bad request")),
    ];
    for (url, expected) in cases {
        assert_eq!(get_json(&http, &url).await, expected, "{url}");
    }
    let post = within("a POST", http.post(format!("{base}?EIO=4&transport=polling")).body("40").send()).await.unwrap();
    assert_eq!((post.status().as_u16(), post.json().await.unwrap()), engine_error(3, "Bad request"));
    let put = within("a PUT", http.put(format!("{base}?EIO=4&transport=polling&sid={unknown}")).send()).await.unwrap();
    assert_eq!((put.status().as_u16(), put.json().await.unwrap()), engine_error(3, "Bad request"));

    // Upgrading a session that does not exist is refused; a second WebSocket for one that
    // has one is accepted and closed at once (as Node does), leaving the first alone.
    match within(
        "a WebSocket handshake",
        tokio_tungstenite::connect_async(ws_url(server.addr, Some(&unknown.to_string()))),
    )
    .await
    {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    let (mut first, open) = Ws::open(server.addr).await;
    let (stream, _) =
        within("a WebSocket handshake", tokio_tungstenite::connect_async(ws_url(server.addr, open["sid"].as_str())))
            .await
            .unwrap();
    assert_eq!(Ws(stream).end().await, None);
    first.send("2").await;
    assert_eq!(first.text().await, "3");
    assert_eq!(server.io.sessions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_binary_attachments_are_base64() {
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let socket = server.connected().await;

    polling.post("451-/chat,3[\"echo\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID").await;
    assert_eq!(polling.get().await, r#"43/chat,3[{"error":"Binary"}]"#);
    assert_eq!(server.event().await, (socket.id, Err(DataError::Binary)));

    // Attachments may come in later POSTs.
    polling
        .post("452-/chat,4[\"echo\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAA==")
        .await;
    polling.post("bAQ==").await;
    assert_eq!(polling.get().await, r#"43/chat,4[{"error":"Binary"}]"#);
    assert_eq!(server.event().await, (socket.id, Err(DataError::Binary)));

    // Bad base64 is a malformed packet: the session ends.
    polling.post("451-/chat,5[\"echo\",{\"_placeholder\":true,\"num\":0}]").await;
    let (status, body) = polling.post_raw("b@@@").await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(3, "Bad request"));
    assert_eq!(server.disconnected().await, (socket.id, DisconnectReason::TransportError));
    let (status, body) = polling.get_raw().await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(1, "Session ID unknown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_long_polling_to_websocket() {
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let socket = server.connected().await;
    let sid = polling.url.rsplit_once("sid=").unwrap().1.to_owned();

    let waiting = tokio::spawn({
        let polling = polling.clone();
        async move { polling.get().await }
    });
    let mut ws = Ws::probe(server.addr, &sid).await;
    // The client pauses polling: its waiting GET is released with a noop.
    assert_eq!(within("the long-poll", waiting).await.unwrap(), "6");

    // Until the upgrade completes, packets wait for polling; then they go over the WebSocket.
    socket.emit("queued", &1).unwrap();
    socket.emit("queued", &2).unwrap();
    ws.send("5").await;
    assert_eq!(ws.text().await, r#"42/chat,["queued",1]"#);
    assert_eq!(ws.text().await, r#"42/chat,["queued",2]"#);

    ws.send(r#"42/chat,4["echo","ws"]"#).await;
    assert_eq!(ws.text().await, r#"43/chat,4["ws"]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!("ws"))));
    socket.emit("direct", &3).unwrap();
    assert_eq!(ws.text().await, r#"42/chat,["direct",3]"#);
    assert_eq!(
        server.chat().broadcast(To { room: "all", except: None, skip: None }, "all", &4),
        Ok(Delivery { sent: 1, full: 0, closed: 0 })
    );
    assert_eq!(ws.text().await, r#"42/chat,["all",4]"#);
    assert_eq!(server.io.sessions(), 1);

    within("a close", ws.0.close(None)).await.unwrap();
    assert_eq!(server.disconnected().await, (socket.id, DisconnectReason::TransportClose));
    assert_eq!(server.io.sessions(), 0);
}

#[tokio::test]
async fn a_probe_closed_by_the_client_leaves_the_session_polling() {
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let socket = server.connected().await;
    let sid = polling.url.rsplit_once("sid=").unwrap().1.to_owned();
    let mut ws = Ws::probe(server.addr, &sid).await;
    // The client gives up on the upgrade: its close is answered and the probe ends, but the
    // session goes on over long-polling.
    // (A close without a code is answered without one.)
    within("a close", ws.0.close(None)).await.unwrap();
    assert_eq!(ws.end().await, None);
    polling.post(r#"42/chat,9["echo","still polling"]"#).await;
    assert_eq!(polling.get().await, r#"43/chat,9["still polling"]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!("still polling"))));
    socket.emit("direct", &1).unwrap();
    assert_eq!(polling.get().await, r#"42/chat,["direct",1]"#);
    server.quiet();
    assert_eq!(server.io.sessions(), 1);
}

fn heartbeat_config() -> Config {
    // Pings come fast; a pong has long to arrive, so a busy machine still answers in time.
    Config {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(2_000),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_heartbeat() {
    let mut server = start(heartbeat_config()).await;
    let (mut ws, open) = Ws::open(server.addr).await;
    assert_eq!((&open["pingInterval"], &open["pingTimeout"]), (&json!(200), &json!(2_000)));
    ws.join_chat(json!({ "token": "good" })).await;
    let id = server.connected().await.id;

    // Answered pings keep the session well past pingInterval + pingTimeout.
    let started = tokio::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(5_000) || pings < 3 {
        assert_eq!(ws.text().await, "2");
        ws.send("3").await;
        pings += 1;
    }
    server.quiet();
    assert_eq!(server.io.sessions(), 1);
    ws.send(r#"42/chat,1["echo","alive"]"#).await;
    loop {
        match ws.text().await.as_str() {
            "2" => ws.send("3").await,
            ack => break assert_eq!(ack, r#"43/chat,1["alive"]"#),
        }
    }
    assert_eq!(server.event().await, (id, Ok(json!("alive"))));

    // An unanswered ping closes the session.
    loop {
        if ws.text().await == "2" {
            break;
        }
    }
    assert_eq!(server.disconnected().await, (id, DisconnectReason::HeartbeatTimeout));
    assert_eq!(server.io.sessions(), 0);
    assert_eq!(ws.end().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_heartbeat() {
    let mut server = start(heartbeat_config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let id = server.connected().await.id;

    for _ in 0..3 {
        assert_eq!(polling.get().await, "2");
        polling.post("3").await;
    }
    assert_eq!(polling.get().await, "2");
    // Unanswered: the waiting GET gets a close packet.
    assert_eq!(polling.get().await, "1");
    assert_eq!(server.disconnected().await, (id, DisconnectReason::HeartbeatTimeout));
    assert_eq!(server.io.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_messages_are_reassembled() {
    let mut server = start(config()).await;
    // The join goes in the same write as the handshake.
    let mut raw = Raw::open(server.addr, &text_frame(r#"40/chat,{"token":"good"}"#)).await;
    let sid = joined_sid(&raw.text().await);
    let socket = server.connected().await;
    assert_eq!(socket.id.to_string(), sid);

    let mut message = frame(false, TEXT, br#"42/chat,1["echo","#, true);
    // A control frame may come between the fragments.
    message.extend(frame(true, PING, b"hi", true));
    message.extend(frame(false, CONTINUATION, br#"{"x":"#, true));
    message.extend(frame(false, CONTINUATION, b"", true));
    message.extend(frame(true, CONTINUATION, b"1}]", true));
    raw.send(&message).await;
    assert_eq!(raw.frame().await, Some((true, PONG, b"hi".to_vec())));
    assert_eq!(raw.text().await, r#"43/chat,1[{"x":1}]"#);
    assert_eq!(server.event().await, (socket.id, Ok(json!({ "x": 1 }))));

    // One byte at a time.
    for byte in text_frame(r#"42/chat,2["echo",2]"#) {
        raw.send(&[byte]).await;
    }
    assert_eq!(raw.text().await, "43/chat,2[2]");
    assert_eq!(server.event().await, (socket.id, Ok(json!(2))));

    // A fragmented binary attachment.
    let mut message = text_frame(r#"451-/chat,3["echo",{"_placeholder":true,"num":0}]"#);
    message.extend(frame(false, BINARY, &[1, 2], true));
    message.extend(frame(true, CONTINUATION, &[3], true));
    raw.send(&message).await;
    assert_eq!(raw.text().await, r#"43/chat,3[{"error":"Binary"}]"#);
    assert_eq!(server.event().await, (socket.id, Err(DataError::Binary)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pings_get_pongs() {
    let server = start(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    within("a send", ws.0.send(Message::Ping(b"are you there".to_vec().into()))).await.unwrap();
    assert_eq!(ws.message().await, Message::Pong(b"are you there".to_vec().into()));
    within("a send", ws.0.send(Message::Ping(Vec::new().into()))).await.unwrap();
    assert_eq!(ws.message().await, Message::Pong(Vec::new().into()));
    // An Engine.IO ping from the client (not a probe) is answered in kind.
    ws.send("2").await;
    assert_eq!(ws.text().await, "3");
}

/// Sends `bytes` after joining and expects a close frame with `code`, the end of the
/// connection and the disconnect handler.
async fn refused(max_payload: usize, bytes: &[u8], code: u16) {
    let mut server = start(Config { max_payload, ..config() }).await;
    let mut raw = Raw::open(server.addr, &text_frame(r#"40/chat,{"token":"good"}"#)).await;
    joined_sid(&raw.text().await);
    let id = server.connected().await.id;
    raw.send(bytes).await;
    assert_eq!(raw.frame().await, Some(close_code(code)), "{bytes:?}");
    assert_eq!(raw.frame().await, None);
    assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportError));
    assert_eq!(server.io.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_with_1002() {
    let mut reserved = text_frame("42/chat,[\"echo\",1]");
    reserved[0] |= 0x40;
    let mut text_inside_message = frame(false, TEXT, b"42", true);
    text_inside_message.extend(text_frame("/chat,[\"echo\",1]"));
    let cases = [
        frame(true, TEXT, br#"42/chat,["echo",1]"#, false),
        reserved,
        frame(true, 0x3, b"x", true),
        frame(true, CONTINUATION, b"x", true),
        text_inside_message,
        frame(false, PING, b"x", true),
        frame(true, PING, &[0; 126], true),
    ];
    for bytes in cases {
        refused(1_000_000, &bytes, 1002).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_max_payload_close_with_1009() {
    // A frame header announcing 2,000 bytes is enough; its payload never comes.
    let header = frame(true, TEXT, &[0; 2_000], true)[..8].to_vec();
    refused(1_000, &header, 1009).await;
    // Fragments under the limit adding up to more.
    let mut fragments = frame(false, TEXT, &[b'4'; 600], true);
    fragments.extend(frame(true, CONTINUATION, &[b'2'; 600], true));
    refused(1_000, &fragments, 1009).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_frame_is_answered_and_disconnects() {
    let mut server = start(config()).await;
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let id = server.connected().await.id;
    let bye = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
    within("a close", ws.0.close(Some(bye))).await.unwrap();
    // The server echoes the code.
    match ws.message().await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportClose));
    assert_eq!(server.io.sessions(), 0);

    // A connection that just drops is a transport close too.
    let (ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let id = server.connected().await.id;
    drop(ws);
    assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportClose));
    assert_eq!(server.io.sessions(), 0);

    // So is an Engine.IO close packet; the server then drops the connection.
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let id = server.connected().await.id;
    ws.send("1").await;
    assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportClose));
    assert_eq!(server.io.sessions(), 0);
    assert_eq!(ws.end().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_server_waits_for_every_disconnect_handler() {
    // Slow disconnect handlers, and enough sessions that some of their own tasks wake while
    // `close` is still closing the others: `close` must wait for every handler all the same.
    let mut server = start_with(config(), Duration::from_millis(200)).await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..60 {
        let (ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
        clients.push(ws);
        ids.push(server.connected().await.id);
    }
    // A session in no namespace, and one on long-polling.
    let (mut idle, _) = Ws::open(server.addr).await;
    let (polling, _) = Polling::join(server.addr).await;
    ids.push(server.connected().await.id);
    assert_eq!(server.io.sessions(), 62);

    within("the server's close", server.io.close()).await;
    let mut gone = Vec::new();
    while let Ok(seen) = server.seen.try_recv() {
        match seen {
            Seen::Disconnected(id, reason) => gone.push((id, reason)),
            other => panic!("expected a disconnect, saw {other:?}"),
        }
    }
    let mut expected: Vec<_> = ids.iter().map(|&id| (id, DisconnectReason::ServerShutdown)).collect();
    expected.sort_by_key(|&(id, _)| id);
    gone.sort_by_key(|&(id, _)| id);
    assert_eq!(gone.len(), expected.len(), "close returned before every disconnect handler was done");
    assert_eq!(gone, expected);
    assert_eq!(server.io.sessions(), 0);

    for ws in clients.iter_mut().chain([&mut idle]) {
        let close = ws.end().await.expect("a close frame");
        assert_eq!(close.code, CloseCode::Away);
    }
    let (status, body) = polling.get_raw().await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(1, "Session ID unknown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_fills_its_buffer_and_nobody_else_notices() {
    const MAX_BUFFERED: usize = 64 * 1024;
    let mut server = start(Config { max_buffered: MAX_BUFFERED, ..config() }).await;
    let (slow_ws, _) = Ws::join(server.addr, json!({ "token": "good", "rooms": ["crowd"] })).await;
    let slow = server.connected().await;
    let (mut fast_ws, _) = Ws::join(server.addr, json!({ "token": "good", "rooms": ["crowd"] })).await;
    server.connected().await;

    // The slow client reads nothing: the kernel's buffers fill, then the server's. A full
    // buffer may only mean the flushers have not run yet, so it counts as stuck once it
    // stayed full for a while.
    let pad = "x".repeat(1024);
    let mut sent = 0;
    let mut full = 0;
    while full < 100 {
        match slow.emit("seq", &json!({ "n": sent, "pad": pad })) {
            Ok(()) => (sent, full) = (sent + 1, 0),
            Err(SendError::Full) => {
                full += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("emit failed: {e}"),
        }
        assert!(sent < 200_000, "200 MB written and the buffer never filled");
    }
    // The kernel took bytes before the server's buffer filled.
    assert!(sent * pad.len() > MAX_BUFFERED, "only {sent} packets before the buffer was full");
    // Whatever room is left in its buffer is less than a packet, and much less than half
    // the buffer (the kernel may still take a little meanwhile).
    let half = json!({ "pad": "y".repeat(MAX_BUFFERED / 2) });
    assert_eq!(slow.emit("dropped", &half), Err(SendError::Full));

    // A broadcast skips it and counts it; the others get theirs.
    let chat = server.chat();
    assert_eq!(
        chat.broadcast(To { room: "crowd", except: None, skip: None }, "crowd", &half),
        Ok(Delivery { sent: 1, full: 1, closed: 0 })
    );
    assert_eq!(fast_ws.text().await, format!(r#"42/chat,["crowd",{half}]"#));
    let (mut fresh, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    let fresh_id = server.connected().await.id;
    fresh.send(r#"42/chat,1["echo","fine"]"#).await;
    assert_eq!(fresh.text().await, r#"43/chat,1["fine"]"#);
    assert_eq!(server.event().await, (fresh_id, Ok(json!("fine"))));
    assert_eq!(server.io.sessions(), 3);

    // Once it reads, it gets every packet that was accepted, in order, and nothing that was
    // refused; then its buffer empties and it can be written to again.
    let reader = tokio::spawn(async move {
        let mut slow_ws = slow_ws;
        let mut next = 0;
        loop {
            let text = slow_ws.text().await;
            let body: Value = serde_json::from_str(text.strip_prefix("42/chat,").unwrap()).unwrap();
            match body[0].as_str().unwrap() {
                "seq" => {
                    assert_eq!(body[1]["n"], json!(next));
                    next += 1;
                }
                "after" => return next,
                other => panic!("unexpected event {other}"),
            }
        }
    });
    within("room in the slow client's buffer", async {
        loop {
            match slow.emit("after", &half) {
                Ok(()) => break,
                Err(SendError::Full) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => panic!("emit failed: {e}"),
            }
        }
    })
    .await;
    assert_eq!(within("the slow reader", reader).await.unwrap(), sent);
}

#[tokio::test]
async fn a_long_polling_client_that_stops_polling_fills_its_outbox() {
    const MAX_BUFFERED: usize = 16 * 1024;
    let mut server = start(Config { max_buffered: MAX_BUFFERED, ..config() }).await;
    let (polling, _) = Polling::join(server.addr).await;
    let socket = server.connected().await;
    // Nobody polls: packets wait in the outbox until it holds the limit.
    let pad = "x".repeat(1000);
    let mut sent = 0;
    while socket.emit("seq", &json!({ "n": sent, "pad": pad })).is_ok() {
        sent += 1;
        assert!(sent < 1000, "the outbox never filled");
    }
    assert_eq!(socket.emit("seq", &json!({ "n": sent, "pad": pad })), Err(SendError::Full));
    assert!((MAX_BUFFERED / 1100..=MAX_BUFFERED / 1000).contains(&sent), "{sent} packets before full");
    let chat = server.chat();
    assert_eq!(
        chat.broadcast(To { room: "all", except: None, skip: None }, "more", &pad),
        Ok(Delivery { sent: 0, full: 1, closed: 0 })
    );
    // One poll takes everything accepted, in order, and makes room again.
    let body = polling.get().await;
    let packets: Vec<&str> = body.split('\x1e').collect();
    assert_eq!(packets.len(), sent);
    for (n, packet) in packets.iter().enumerate() {
        assert!(packet.starts_with(&format!(r#"42/chat,["seq",{{"n":{n},"#)), "{packet}");
    }
    assert_eq!(socket.emit("after", &1), Ok(()));
    assert_eq!(polling.get().await, r#"42/chat,["after",1]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_keep_their_order_across_the_upgrade() {
    const COUNT: u64 = 20_000;
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let socket = server.connected().await;
    let sid = polling.url.rsplit_once("sid=").unwrap().1.to_owned();
    let mut ws = Ws::probe(server.addr, &sid).await;

    // Packets are emitted while the upgrade completes: those that waited for polling and
    // those written to the WebSocket directly must arrive in the order they were emitted.
    let emitter = std::thread::spawn(move || {
        for n in 0..COUNT {
            socket.emit("n", &n).unwrap();
        }
    });
    ws.send("5").await;
    let mut next = 0;
    while next < COUNT {
        let text = ws.text().await;
        assert_eq!(text, format!(r#"42/chat,["n",{next}]"#));
        next += 1;
    }
    emitter.join().unwrap();
}

/// A client that sends `request` over and over and reads nothing: the replies it asks for
/// (`reply` bytes each) must stay within the server's limit of unsent bytes, and the server
/// must close the connection when they reach it (with the disconnect handler told why).
async fn a_client_that_never_reads_is_closed(request: &[u8]) {
    const MAX_BUFFERED: usize = 64 * 1024;
    let mut server = start(Config { max_buffered: MAX_BUFFERED, ..config() }).await;
    // A small receive buffer (it also turns the kernel's autotuning off), so the replies
    // pile up in the server rather than in this client's kernel.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = within("a TCP connect", socket.connect(server.addr)).await.unwrap();
    let mut raw = Raw::handshake(stream, server.addr, &text_frame(r#"40/chat,{"token":"good"}"#)).await;
    assert!(raw.text().await.starts_with("40/chat,"));
    let id = server.connected().await.id;

    let batch = request.repeat(64 * 1024 / request.len() + 1);
    let mut written = 0;
    let mut peak = 0;
    loop {
        // The close frame that ends it may come on top of a full buffer.
        peak = peak.max(server.io.unsent_bytes());
        assert!(peak <= MAX_BUFFERED + 4, "{peak} bytes unsent: over the limit of {MAX_BUFFERED}");
        match tokio::time::timeout(WAIT, raw.stream.write_all(&batch)).await {
            Ok(Ok(())) => written += batch.len(),
            Ok(Err(_)) => break,
            Err(_) => panic!(
                "the server stopped reading without closing, after {written} bytes ({} unsent, {} sessions)",
                server.io.unsent_bytes(),
                server.io.sessions()
            ),
        }
        assert!(written < 64 << 20, "64 MB sent and the connection is still open ({peak} bytes unsent at most)");
    }
    loop {
        match server.seen().await {
            Seen::Event(..) => {}
            Seen::Disconnected(who, reason) => {
                assert_eq!((who, reason), (id, DisconnectReason::TransportError));
                break;
            }
            other => panic!("expected the disconnect, saw {other:?}"),
        }
    }
    within("the session's end", async {
        while server.io.sessions() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ping_flood_without_reading_is_closed() {
    a_client_that_never_reads_is_closed(&frame(true, PING, &[b'p'; 125], true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_io_ping_flood_without_reading_is_closed() {
    a_client_that_never_reads_is_closed(&text_frame(&format!("2{}", "p".repeat(500)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_flood_without_reading_is_closed() {
    a_client_that_never_reads_is_closed(&text_frame(&format!(r#"42/chat,1["echo","{}"]"#, "a".repeat(500)))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_in_one_write_are_handled_in_order() {
    const COUNT: usize = 1000;
    let mut server = start(config()).await;
    let mut raw = Raw::open(server.addr, &text_frame(r#"40/chat,{"token":"good"}"#)).await;
    assert!(raw.text().await.starts_with("40/chat,"));
    let id = server.connected().await.id;
    let burst: Vec<u8> = (0..COUNT).flat_map(|n| text_frame(&format!(r#"42/chat,{n}["echo",{n}]"#))).collect();
    raw.send(&burst).await;
    for n in 0..COUNT {
        assert_eq!(server.event().await, (id, Ok(json!(n))));
    }
    for n in 0..COUNT {
        assert_eq!(raw.text().await, format!(r#"43/chat,{n}[{n}]"#));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_polling_client_that_pings_and_never_polls_is_closed() {
    const MAX_BUFFERED: usize = 16 * 1024;
    let server = start(Config { max_buffered: MAX_BUFFERED, ..config() }).await;
    let (polling, _) = Polling::open(server.addr).await;
    let body = vec![format!("2{}", "p".repeat(100)); 100].join("\x1e");
    let mut posts = 0;
    loop {
        assert!(server.io.unsent_bytes() <= MAX_BUFFERED, "{} bytes unsent", server.io.unsent_bytes());
        match polling.post_raw(body.clone()).await {
            (200, ok) => assert_eq!(ok, "ok"),
            refused => {
                assert_eq!(refused, (400, json!({ "code": 1, "message": "Session ID unknown" }).to_string()));
                break;
            }
        }
        posts += 1;
        assert!(posts < 100, "{posts} POSTs of pings and the session lives on");
    }
    assert_eq!(server.io.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_joins_no_namespace_in_time_is_closed() {
    // Long enough for a join to make it on a busy machine, short for the test.
    let mut server = start_full(config(), Duration::ZERO, Duration::from_millis(500)).await;
    // Over WebSocket and over long-polling, nothing joined: both end.
    let (mut ws, _) = Ws::open(server.addr).await;
    let (polling, _) = Polling::open(server.addr).await;
    assert_eq!(ws.end().await, None);
    // A GET waiting at the time is told the session closed; a later one finds it gone.
    let (status, body) = polling.get_raw().await;
    assert!(
        (status, body.as_str()) == (200, "1")
            || (status, body.as_str()) == (400, r#"{"code":1,"message":"Session ID unknown"}"#),
        "{status} {body}"
    );
    within("the sessions' end", async {
        while server.io.sessions() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // One that joined in time stays, long after the timeout.
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    server.connected().await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    ws.send("2").await;
    assert_eq!(ws.text().await, "3");
    assert_eq!(server.io.sessions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_must_arrive_in_time() {
    let io = Io::<()>::builder(config()).build();
    let app = axum::Router::new().route("/socket.io/", axum::routing::any(Io::handle)).with_state(io);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchyard_sio::serve(listener, app, Duration::from_millis(200), std::future::pending()));
    // A whole head is served.
    let (status, _) = get_json(&http(), &format!("http://{addr}/socket.io/?EIO=4")).await;
    assert_eq!(status, 400);
    // Half a head, then nothing: the connection is closed without an answer.
    let mut stream = within("a TCP connect", TcpStream::connect(addr)).await.unwrap();
    stream.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    let read = within("the connection's end", stream.read_to_end(&mut rest)).await;
    assert!(read.is_err() || !String::from_utf8_lossy(&rest).contains(" 200 "), "{}", String::from_utf8_lossy(&rest));
}

/// Node's heartbeat ends a session exactly `pingInterval + pingTimeout` after its last
/// pong: a request after that finds it gone, however late the server's own ticker runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_pong_is_late_is_gone_at_its_deadline() {
    let server = start(Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    let (polling, _) = Polling::open(server.addr).await;
    // The session began before this instant; its ping is due 300 ms after it began.
    let opened = std::time::Instant::now();
    assert_eq!(polling.get().await, "2");
    // Unanswered, the ping's deadline is 500 ms after the session began: ask after that.
    tokio::time::sleep(Duration::from_millis(520).saturating_sub(opened.elapsed())).await;
    let (status, body) = polling.get_raw().await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(1, "Session ID unknown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_answers_the_waiting_get_with_a_noop() {
    let mut server = start(config()).await;
    // Nothing shows when the server has the GET: if the close overtook it (the GET then
    // finds no session), try again with more time between them.
    for attempt in 0..6 {
        let (polling, _) = Polling::join(server.addr).await;
        let id = server.connected().await.id;
        let waiting = tokio::spawn({
            let polling = polling.clone();
            async move { polling.get_raw().await }
        });
        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        polling.post("1").await;
        let answer = within("the GET", waiting).await.unwrap();
        assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportClose));
        if answer.0 == 400 {
            continue;
        }
        assert_eq!(answer, (200, "6".to_owned()));
        let (status, body) = polling.get_raw().await;
        assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(1, "Session ID unknown"));
        return;
    }
    panic!("the GET never got to wait before the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_requests_after_the_upgrade_are_refused() {
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    server.connected().await;
    let sid = polling.url.rsplit_once("sid=").unwrap().1.to_owned();
    let mut ws = Ws::probe(server.addr, &sid).await;
    ws.send("5").await;
    // The upgrade is complete once a packet comes back over the WebSocket.
    ws.send("2").await;
    assert_eq!(ws.text().await, "3");
    let (status, body) = polling.get_raw().await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(3, "Bad request"));
    let (status, body) = polling.post_raw("6").await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(3, "Bad request"));
    // The WebSocket carries on.
    ws.send(r#"42/chat,1["echo","ws"]"#).await;
    assert_eq!(ws.text().await, r#"43/chat,1["ws"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_does_not_parse_ends_the_session_with_400() {
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let id = server.connected().await.id;
    let (status, body) = polling.post_raw("abc").await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(3, "Bad request"));
    assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportError));
    let (status, body) = polling.get_raw().await;
    assert_eq!((status, serde_json::from_str(&body).unwrap()), engine_error(1, "Session ID unknown"));
    // Bytes that are not UTF-8 too.
    let (polling, _) = Polling::open(server.addr).await;
    let (status, _) = polling.post_raw(vec![0x34, 0xff]).await;
    assert_eq!(status, 400);
    assert_eq!(polling.get_raw().await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_closes_with_1007() {
    refused(1_000_000, &frame(true, TEXT, &[0x34, 0x32, 0xff, 0xfe], true), 1007).await;
    // Split inside a character, then broken.
    let mut fragments = frame(false, TEXT, &[0x34, 0xce], true);
    fragments.extend(frame(true, CONTINUATION, &[0xff], true));
    refused(1_000_000, &fragments, 1007).await;
    // A close reason.
    refused(1_000_000, &frame(true, CLOSE, &[0x03, 0xe8, 0xff], true), 1007).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_close_frames_close_with_1002() {
    let mut bodies = vec![vec![0x03]];
    bodies.extend([0u16, 999, 1004, 1005, 1006, 1016, 2999, 5000].map(|code| code.to_be_bytes().to_vec()));
    for body in bodies {
        refused(1_000_000, &frame(true, CLOSE, &body, true), 1002).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_are_echoed_and_an_empty_close_gets_an_empty_one() {
    let mut server = start(config()).await;
    for code in [Some(1000u16), Some(1001), Some(1011), Some(3000), Some(4999), None] {
        let mut raw = Raw::open(server.addr, &text_frame(r#"40/chat,{"token":"good"}"#)).await;
        joined_sid(&raw.text().await);
        let id = server.connected().await.id;
        let body = code.map(|code| [&code.to_be_bytes()[..], "bye".as_bytes()].concat()).unwrap_or_default();
        raw.send(&frame(true, CLOSE, &body, true)).await;
        let echo = code.map(|code| code.to_be_bytes().to_vec()).unwrap_or_default();
        assert_eq!(raw.frame().await, Some((true, CLOSE, echo)), "{code:?}");
        assert_eq!(raw.frame().await, None);
        assert_eq!(server.disconnected().await, (id, DisconnectReason::TransportClose));
    }
}

/// The status line and headers (lower case) the server answers a raw handshake with.
async fn handshake_answer(addr: SocketAddr, request_line: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = within("a TCP connect", TcpStream::connect(addr)).await.unwrap();
    let mut request = format!("{request_line}\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut read = Vec::new();
    loop {
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            return String::from_utf8_lossy(&read[..at]).to_ascii_lowercase();
        }
        let mut chunk = [0; 1024];
        let n = within("the handshake answer", stream.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&read));
        read.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes_follow_rfc_6455() {
    let server = start(config()).await;
    let line = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1";
    let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let (upgrade, connection, version) =
        (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"));
    type Header<'a> = (&'a str, &'a str);
    let cases: Vec<(&str, Vec<Header>, &str)> = vec![
        (line, vec![upgrade, connection, key, version], "http/1.1 101 "),
        (line, vec![upgrade, ("Connection", "keep-alive, Upgrade"), key, version], "http/1.1 101 "),
        (line, vec![upgrade, key, version], "http/1.1 400 "),
        (line, vec![upgrade, ("Connection", "keep-alive"), key, version], "http/1.1 400 "),
        (line, vec![upgrade, connection, ("Sec-WebSocket-Key", "MTIzNDU2Nzg5MDEyMzQ1"), version], "http/1.1 400 "),
        (line, vec![upgrade, connection, ("Sec-WebSocket-Key", "not a key at all!!!!!!=="), version], "http/1.1 400 "),
        (line, vec![upgrade, connection, version], "http/1.1 400 "),
        (line, vec![upgrade, connection, key], "http/1.1 426 "),
        (line, vec![upgrade, connection, key, ("Sec-WebSocket-Version", "8")], "http/1.1 426 "),
        ("GET /socket.io/?EIO=4&transport=websocket HTTP/1.0", vec![upgrade, connection, key, version], " 400 "),
    ];
    for (request_line, headers, status) in cases {
        let head = handshake_answer(server.addr, request_line, &headers).await;
        assert!(head.starts_with(status) || (status.starts_with(' ') && head.contains(status)), "{headers:?}: {head}");
        if status.contains("426") {
            assert!(head.contains("\r\nsec-websocket-version: 13"), "{head}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_argument_and_attachment_goes_both_ways_over_websocket() {
    let mut server = start(config()).await;
    let (mut ws, _) = Ws::join(server.addr, json!({ "token": "good" })).await;
    server.connected().await;
    ws.send(r#"42/chat,1["all",1,"2",{"3":[true]},null]"#).await;
    assert_eq!(ws.text().await, r#"42/chat,["all-back",1,"2",{"3":[true]},null]"#);
    assert_eq!(ws.text().await, r#"43/chat,1[1,"2",{"3":[true]},null]"#);
    ws.send(r#"42/chat,2["all"]"#).await;
    assert_eq!(ws.text().await, r#"42/chat,["all-back"]"#);
    assert_eq!(ws.text().await, r#"43/chat,2[]"#);

    let placeholders = r#"{"_placeholder":true,"num":0},"x",{"_placeholder":true,"num":1}"#;
    ws.send(&format!(r#"452-/chat,3["all",{placeholders}]"#)).await;
    within("a send", ws.0.send(Message::binary(vec![1, 2, 3]))).await.unwrap();
    within("a send", ws.0.send(Message::binary(vec![]))).await.unwrap();
    assert_eq!(ws.text().await, format!(r#"452-/chat,["all-back",{placeholders}]"#));
    assert_eq!(ws.message().await, Message::binary(vec![1, 2, 3]));
    assert_eq!(ws.message().await, Message::binary(vec![]));
    assert_eq!(ws.text().await, format!(r#"462-/chat,3[{placeholders}]"#));
    assert_eq!(ws.message().await, Message::binary(vec![1, 2, 3]));
    assert_eq!(ws.message().await, Message::binary(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_argument_and_attachment_goes_both_ways_over_long_polling() {
    let mut server = start(config()).await;
    let (polling, _) = Polling::join(server.addr).await;
    let socket = server.connected().await;
    polling
        .post("452-/chat,3[\"all\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAQID\x1eb")
        .await;
    let mut packets = Vec::new();
    while packets.len() < 6 {
        packets.extend(polling.get().await.split('\x1e').map(str::to_owned));
    }
    let placeholders = r#"{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}"#;
    assert_eq!(
        packets,
        [
            format!(r#"452-/chat,["all-back",{placeholders}]"#),
            "bAQID".to_owned(),
            "b".to_owned(),
            format!(r#"462-/chat,3[{placeholders}]"#),
            "bAQID".to_owned(),
            "b".to_owned(),
        ]
    );
    // A binary emit of the server's own, then upgraded: attachments that waited for
    // polling go as binary frames.
    let mut payload = Payload::new(vec![json!("label")]);
    let placeholder = payload.attach(vec![9, 8]);
    payload.args.push(placeholder);
    socket.emit_payload("file", &payload).unwrap();
    let sid = polling.url.rsplit_once("sid=").unwrap().1.to_owned();
    let mut ws = Ws::probe(server.addr, &sid).await;
    ws.send("5").await;
    assert_eq!(ws.text().await, r#"451-/chat,["file","label",{"_placeholder":true,"num":0}]"#);
    assert_eq!(ws.message().await, Message::binary(vec![9, 8]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_io_hook_gets_every_message() {
    let io = Io::<()>::builder(config())
        .connect_timeout(Duration::from_millis(50))
        .on_engine_message(|engine, message| {
            let _ = match message {
                EngineMessage::Text(text) => engine.send_text(text),
                EngineMessage::Binary(bytes) => engine.send_binary(bytes),
            };
        })
        .build();
    let app = axum::Router::new().route("/engine.io/", axum::routing::any(Io::handle)).with_state(io);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let url = format!("ws://{addr}/engine.io/?EIO=4&transport=websocket");
    let (stream, _) = within("a WebSocket handshake", tokio_tungstenite::connect_async(url)).await.unwrap();
    let mut ws = Ws(stream);
    assert!(ws.text().await.starts_with("0{"));
    // Not Socket.IO: no namespace is needed, and the connect timeout does not apply.
    ws.send("4hello").await;
    assert_eq!(ws.text().await, "4hello");
    tokio::time::sleep(Duration::from_millis(200)).await;
    within("a send", ws.0.send(Message::binary(vec![0, 255]))).await.unwrap();
    assert_eq!(ws.message().await, Message::binary(vec![0, 255]));
    ws.send("4€").await;
    assert_eq!(ws.text().await, "4€");

    let http = http();
    let open = within("a handshake", http.get(format!("http://{addr}/engine.io/?EIO=4&transport=polling")).send())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: Value = serde_json::from_str(&open[1..]).unwrap();
    let polling = Polling {
        http,
        url: format!("http://{addr}/engine.io/?EIO=4&transport=polling&sid={}", open["sid"].as_str().unwrap()),
    };
    polling.post("4hi\x1ebAQID").await;
    let mut packets = Vec::new();
    while packets.len() < 2 {
        packets.extend(polling.get().await.split('\x1e').map(str::to_owned));
    }
    assert_eq!(packets, ["4hi", "bAQID"]);
}

/// What an admin view reads and hears: every socket of the node with its client (session)
/// id, peer address and transport; room changes as they happen (leaving the namespace
/// leaves every room); the upgrade to WebSocket; and a server-side disconnect of one socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_view_lists_sockets_and_hears_rooms_and_upgrades() {
    let (tx, mut heard) = mpsc::unbounded_channel::<String>();
    let (on_room, on_upgrade, on_disconnect) = (tx.clone(), tx.clone(), tx);
    let chat = NamespaceBuilder::new("/chat", |socket: Arc<Socket<()>>, _auth: Option<Value>| async move {
        socket.join(["all"]);
        Ok(())
    })
    .on_room(move |socket, room, change| {
        let _ = on_room.send(format!("{change:?} {room} {}", socket.id));
    })
    .on_disconnect(move |socket, reason| {
        let tx = on_disconnect.clone();
        async move {
            let _ = tx.send(format!("gone {} {reason:?}", socket.id));
        }
    });
    let io = Io::<()>::builder(config())
        .on_upgrade(move |socket| {
            let _ = on_upgrade.send(format!("upgraded {} {}", socket.id, socket.transport()));
        })
        .ns(chat)
        .build();
    let app = axum::Router::new().route("/socket.io/", axum::routing::any(Io::handle)).with_state(io.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchyard_sio::serve(listener, app, Duration::from_secs(10), std::future::pending()));
    let mut next = async || within("a hook", heard.recv()).await.unwrap();

    let (polling, sid) = Polling::join(addr).await;
    let session = polling.url.rsplit_once("sid=").unwrap().1.to_owned();
    assert_eq!(next().await, format!("Join all {sid}"));
    let sockets = io.sockets();
    assert_eq!(sockets.len(), 1);
    let socket = sockets[0].clone();
    assert_eq!(socket.id.to_string(), sid);
    assert_eq!(socket.client_id().to_string(), session);
    assert_eq!(socket.peer().map(|p| p.ip().to_string()).as_deref(), Some("127.0.0.1"));
    assert_eq!(socket.transport(), "polling");
    assert_eq!(socket.client_sockets().len(), 1);

    let waiting = tokio::spawn({
        let polling = polling.clone();
        async move { polling.get().await }
    });
    let mut ws = Ws::probe(addr, &session).await;
    assert_eq!(within("the long-poll", waiting).await.unwrap(), "6");
    ws.send("5").await;
    assert_eq!(next().await, format!("upgraded {sid} websocket"));
    assert_eq!(socket.transport(), "websocket");

    socket.join(["red"]);
    socket.leave(["red", "never-joined"]);
    assert_eq!(next().await, format!("Join red {sid}"));
    assert_eq!(next().await, format!("Leave red {sid}"));

    assert!(socket.disconnect());
    assert_eq!(ws.text().await, "41/chat,");
    assert_eq!(next().await, format!("Leave all {sid}"));
    assert_eq!(next().await, format!("gone {sid} ServerNamespaceDisconnect"));
    assert!(!socket.disconnect(), "a socket leaves once");
    assert!(io.sockets().is_empty());
    assert_eq!(io.sessions(), 1, "the session stays for the client to close");
}
