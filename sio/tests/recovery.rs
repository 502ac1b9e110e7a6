//! Connection state recovery on the wire, as the official client's `connectionStateRecovery`
//! speaks it: a real server on a loopback port, raw WebSocket clients that join with a
//! `pid` and an offset the way socket.io-client v4.6+ does after its connection dropped, and
//! the exact packets they get back.
//!
//! Waits are bounded by generous timeouts and never asserted on; the one sleep outlasts the
//! recovery window, which is what that test is about.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchyard_sio::{Config, DisconnectReason, Io, NamespaceBuilder, Recovery, Socket, To};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

struct Server {
    addr: SocketAddr,
    io: Io<String>,
    /// Sockets that joined, then left (with why).
    joined: mpsc::UnboundedReceiver<Arc<Socket<String>>>,
    left: mpsc::UnboundedReceiver<DisconnectReason>,
}

/// `/chat`: the auth's `token` is the user (its state and its recovery owner); it joins the
/// rooms the auth lists.
async fn start(recovery: Option<Recovery>) -> Server {
    let (joined_tx, joined) = mpsc::unbounded_channel();
    let (left_tx, left) = mpsc::unbounded_channel();
    let chat = NamespaceBuilder::new("/chat", move |socket: Arc<Socket<String>>, auth: Option<Value>| {
        let joined = joined_tx.clone();
        async move {
            let auth = auth.unwrap_or_default();
            let user = auth.get("token").and_then(Value::as_str).ok_or("missing token")?;
            let _ = socket.set_state(user.to_owned());
            if let Some(rooms) = auth.get("rooms").and_then(Value::as_array) {
                socket.join(rooms.iter().filter_map(Value::as_str));
            }
            let _ = joined.send(socket);
            Ok(())
        }
    })
    .recovery_owner(String::clone)
    .on_disconnect(move |_, reason| {
        let left = left_tx.clone();
        async move {
            let _ = left.send(reason);
        }
    });
    let config = Config {
        ping_interval: Duration::from_secs(300),
        ping_timeout: Duration::from_secs(300),
        recovery,
        ..Config::default()
    };
    let io = Io::builder(config).ns(chat).build();
    let app = axum::Router::new().route("/socket.io/", axum::routing::any(Io::handle)).with_state(io.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, io, joined, left }
}

impl Server {
    fn broadcast(&self, room: &str, data: &Value) {
        self.io.of("/chat").unwrap().broadcast(To { room, except: None, skip: None }, "m", data).unwrap();
    }

    async fn left(&mut self) -> DisconnectReason {
        within("a disconnect", self.left.recv()).await.unwrap()
    }

    async fn joined(&mut self) -> Arc<Socket<String>> {
        within("a join", self.joined.recv()).await.unwrap()
    }
}

struct Ws(tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>);

impl Ws {
    /// A new session joined to `/chat` with `auth`, and the join answer (`{sid, pid}`).
    async fn join(addr: SocketAddr, auth: Value) -> (Self, Value) {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (stream, _) = within("a handshake", tokio_tungstenite::connect_async(url)).await.unwrap();
        let mut ws = Self(stream);
        assert!(ws.text().await.starts_with('0'));
        within("a send", ws.0.send(Message::text(format!("40/chat,{auth}")))).await.unwrap();
        let answer = ws.text().await;
        let body = answer.strip_prefix("40/chat,").unwrap_or_else(|| panic!("not a join answer: {answer}"));
        (ws, serde_json::from_str(body).unwrap())
    }

    async fn text(&mut self) -> String {
        match within("a message", self.0.next()).await.expect("the connection is open").unwrap() {
            Message::Text(text) => text.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The arguments of the next event, which must be `m`.
    async fn event(&mut self) -> Vec<Value> {
        let text = self.text().await;
        let body = text.strip_prefix("42/chat,").unwrap_or_else(|| panic!("not an event: {text}"));
        let mut args: Vec<Value> = serde_json::from_str(body).unwrap();
        assert_eq!(args.remove(0), "m");
        args
    }
}

fn rooms(socket: &Socket<String>) -> Vec<String> {
    let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    rooms.sort();
    rooms
}

/// Joins as alice in room `r`, receives one broadcast, drops the connection without leaving;
/// the `pid` and last offset it would send back.
async fn drop_after_one(server: &mut Server) -> (String, String) {
    let (mut ws, answer) = Ws::join(server.addr, json!({ "token": "alice", "rooms": ["r"] })).await;
    let pid = answer["pid"].as_str().expect("a pid in the join answer").to_owned();
    server.joined().await;
    server.broadcast("r", &json!("first"));
    let args = ws.event().await;
    assert_eq!(args[0], "first");
    let offset = args[1].as_str().expect("an offset as the last argument").to_owned();
    // No close frame, no Socket.IO disconnect: the connection just ends.
    drop(ws);
    assert_eq!(server.left().await, DisconnectReason::TransportClose);
    (pid, offset)
}

#[tokio::test]
async fn a_dropped_socket_gets_its_rooms_and_every_missed_broadcast_once_in_order() {
    let mut server = start(Some(Recovery::default())).await;
    let (pid, offset) = drop_after_one(&mut server).await;
    for i in 0..100 {
        server.broadcast("r", &json!(i));
        // Not to alice's rooms: not replayed.
        server.broadcast("elsewhere", &json!("no"));
    }
    let (mut ws, answer) = Ws::join(server.addr, json!({ "token": "alice", "pid": pid, "offset": offset })).await;
    assert_eq!(answer["pid"], pid, "the same pid: the client sees recovered === true");
    let socket = server.joined().await;
    assert_eq!(rooms(&socket), ["r"]);
    let mut last = offset;
    for i in 0..100 {
        let args = ws.event().await;
        assert_eq!(args[0], i);
        last = args[1].as_str().unwrap().to_owned();
    }
    // Then live broadcasts, once: nothing replayed twice came between.
    server.broadcast("r", &json!("live"));
    let args = ws.event().await;
    assert_eq!(args[0], "live");
    assert_ne!(args[1], last);
    // The session was used: the same claim again recovers nothing.
    let (_ws, again) = Ws::join(server.addr, json!({ "token": "alice", "pid": pid, "offset": last })).await;
    assert_ne!(again["pid"], pid);
}

#[tokio::test]
async fn past_the_window_nothing_is_recovered() {
    let window = Duration::from_millis(300);
    let mut server = start(Some(Recovery { max_disconnection: window, ..Recovery::default() })).await;
    let (pid, offset) = drop_after_one(&mut server).await;
    server.broadcast("r", &json!("missed"));
    tokio::time::sleep(window * 2).await;
    let (mut ws, answer) = Ws::join(server.addr, json!({ "token": "alice", "pid": pid, "offset": offset })).await;
    assert_ne!(answer["pid"], pid, "a new pid: recovered === false");
    assert!(answer["pid"].is_string());
    let socket = server.joined().await;
    assert!(rooms(&socket).is_empty());
    socket.join(["r"]);
    server.broadcast("r", &json!("live"));
    assert_eq!(ws.event().await[0], "live", "nothing replayed before it");
}

#[tokio::test]
async fn another_users_or_a_forged_pid_recovers_nothing_and_spends_nothing() {
    let mut server = start(Some(Recovery::default())).await;
    let (pid, offset) = drop_after_one(&mut server).await;
    server.broadcast("r", &json!("secret"));
    for claim in [
        json!({ "token": "bob", "pid": pid, "offset": offset }),
        json!({ "token": "alice", "pid": "AAAAAAAAAAAAAAAAAAAAAA", "offset": offset }),
        json!({ "token": "alice", "pid": "not a pid", "offset": offset }),
        json!({ "token": "alice", "pid": pid, "offset": "999999" }),
    ] {
        let (mut ws, answer) = Ws::join(server.addr, claim.clone()).await;
        assert_ne!(answer["pid"], pid, "{claim}");
        let socket = server.joined().await;
        assert!(rooms(&socket).is_empty(), "{claim}");
        socket.join(["probe"]);
        server.broadcast("probe", &json!("live"));
        assert_eq!(ws.event().await[0], "live", "nothing replayed to {claim}");
        socket.leave(["probe"]);
    }
    // Alice herself still recovers.
    let (mut ws, answer) = Ws::join(server.addr, json!({ "token": "alice", "pid": pid, "offset": offset })).await;
    assert_eq!(answer["pid"], pid);
    assert_eq!(ws.event().await[0], "secret");
}

#[tokio::test]
async fn a_client_that_left_its_namespace_is_not_kept() {
    let mut server = start(Some(Recovery::default())).await;
    let (mut ws, answer) = Ws::join(server.addr, json!({ "token": "alice", "rooms": ["r"] })).await;
    let pid = answer["pid"].as_str().unwrap().to_owned();
    server.joined().await;
    server.broadcast("r", &json!("first"));
    let offset = ws.event().await[1].clone();
    within("a send", ws.0.send(Message::text("41/chat"))).await.unwrap();
    assert_eq!(server.left().await, DisconnectReason::ClientNamespaceDisconnect);
    let (_ws, again) = Ws::join(server.addr, json!({ "token": "alice", "pid": pid, "offset": offset })).await;
    assert_ne!(again["pid"], pid);
}

#[tokio::test]
async fn with_recovery_off_the_wire_is_unchanged() {
    let mut server = start(None).await;
    let (mut ws, answer) = Ws::join(server.addr, json!({ "token": "alice", "rooms": ["r"] })).await;
    assert!(answer.get("pid").is_none(), "{answer}");
    server.joined().await;
    server.broadcast("r", &json!("plain"));
    assert_eq!(ws.event().await, [json!("plain")]);
}
