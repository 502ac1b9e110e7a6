//! Test fixture: a server on port 0 in this process, tokens, and a small raw Socket.IO v5
//! client over WebSocket on the transport's shared test client. Raw on purpose: tests must be able to send what no well-behaved
//! client library would (binary attachments, wrong argument lists, broken JSON).
#![allow(dead_code)] // each test binary uses a different part of the fixture

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use switchyard_server::Config;
use switchyard_sio::client::{self, ServerPacket};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "integration-test-secret-of-enough-length";

/// A running server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Server {
    /// Starts a server with `--jwt-secret SECRET` plus `args`. Load shedding is off unless
    /// `args` turn it on: test threads share a busy machine, and a thread descheduled for
    /// longer than the limit would refuse a test's message (tests/overload.rs stalls on purpose).
    pub async fn start(args: &[&str]) -> Server {
        let mut argv = vec!["switchyard-server", "--jwt-secret", SECRET, "--shutdown-grace-seconds", "2"];
        if !args.contains(&"--overload-max-lag-ms") {
            argv.extend_from_slice(&["--overload-max-lag-ms", "0"]);
        }
        argv.extend_from_slice(args);
        let config = Config::load_from(argv).expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            switchyard_server::serve(listener, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("server runs");
        });
        Server { addr, stop: Some(stop) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The value of the first `/metrics` sample of `name` whose labels include `label`.
    pub async fn metric(&self, name: &str, label: &str) -> Option<f64> {
        let text = reqwest::get(self.url("/metrics")).await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Connects to `/chat` as `user`.
    pub async fn chat(&self, user: &str) -> Client {
        Client::connect(self.addr, "/chat", Some(&token(user))).await.expect("connects")
    }
}

/// An HS256 token for `user`, valid for an hour.
pub fn token(user: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({ "sub": user, "iat": now, "exp": now + 3600 });
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// A raw Socket.IO v5 client over WebSocket: packets are encoded and decoded by the shared
/// test client of the transport (`switchyard_sio::client`, also used by its own protocol
/// tests and by the load generator); only what no well-behaved client sends is spelled out
/// here (a raw argument list, a binary attachment).
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    ns: String,
    next_id: u64,
    /// Events received while waiting for something else.
    events: VecDeque<(String, Value)>,
}

impl Client {
    /// Opens a WebSocket session and connects to `ns`; `Err` carries the connect_error message.
    pub async fn connect(addr: SocketAddr, ns: &str, token: Option<&str>) -> Result<Client, String> {
        Self::connect_with_auth(addr, ns, token.map_or(json!({}), |t| json!({ "token": t }))).await
    }

    /// [`Client::connect`] with any handshake `auth` object (a `traceparent` next to the token, say).
    pub async fn connect_with_auth(addr: SocketAddr, ns: &str, auth: Value) -> Result<Client, String> {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/socket.io/?EIO=4&transport=websocket"))
            .await
            .unwrap();
        match client::join(&mut ws, ns, Some(&auth)).await {
            Ok(_sid) => Ok(Client { ws, ns: ns.to_owned(), next_id: 0, events: VecDeque::new() }),
            Err(client::JoinError::Refused(message)) => Err(message),
            Err(e) => panic!("joining {ns}: {e}"),
        }
    }

    async fn send(&mut self, text: String) {
        self.ws.send(Frame::text(text)).await.expect("send");
    }

    /// Next Socket.IO packet, answering pings on the way.
    async fn recv(&mut self) -> ServerPacket {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a packet within 10 s")
                .expect("socket open")
                .expect("frame");
            if let Some(packet) = self.decode(frame).await {
                return packet;
            }
        }
    }

    /// The packet a frame carries, or `None` for pings (answered here) and non-text frames.
    async fn decode(&mut self, frame: Frame) -> Option<ServerPacket> {
        match frame {
            Frame::Text(t) => match ServerPacket::decode(t.as_str()) {
                Some(ServerPacket::Ping) => {
                    self.send(client::PONG.into()).await;
                    None
                }
                Some(packet) => Some(packet),
                None => panic!("undecodable packet from the server: {t}"),
            },
            // A close frame is followed by the end of the stream, which `recv` reports.
            _ => None,
        }
    }

    /// Emits `event` with `payload` and returns the ack.
    pub async fn call(&mut self, event: &str, payload: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(client::event(&self.ns, Some(id), event, &[payload])).await;
        self.wait_ack(id).await
    }

    /// Emits a raw argument array (any JSON text, broken or not) and returns the ack.
    pub async fn call_raw(&mut self, args: &str) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(format!("42{},{}{}", self.ns, id, args)).await;
        self.wait_ack(id).await
    }

    /// Emits `event` whose payload is a binary attachment, and returns the ack.
    pub async fn call_binary(&mut self, event: &str, bytes: Vec<u8>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let placeholder = json!([event, { "_placeholder": true, "num": 0 }]);
        self.send(format!("451-{},{}{}", self.ns, id, placeholder)).await;
        self.ws.send(Frame::binary(bytes)).await.unwrap();
        self.wait_ack(id).await
    }

    async fn wait_ack(&mut self, id: u64) -> Value {
        loop {
            match self.recv().await {
                ServerPacket::Ack { ns, id: acked, mut args, .. } if ns == self.ns && acked == id => {
                    return args.remove(0);
                }
                packet => self.stash(packet),
            }
        }
    }

    fn stash(&mut self, packet: ServerPacket) {
        if let ServerPacket::Event { ns, name, mut args, .. } = packet
            && ns == self.ns
        {
            let first = if args.is_empty() { Value::Null } else { args.remove(0) };
            self.events.push_back((name, first));
        }
    }

    /// The next `event` (earlier ones of other names stay queued).
    pub async fn next_event(&mut self, event: &str) -> Value {
        loop {
            if let Some(pos) = self.events.iter().position(|(n, _)| n == event) {
                return self.events.remove(pos).unwrap().1;
            }
            let packet = self.recv().await;
            self.stash(packet);
        }
    }

    /// Events named `event` received within `wait`.
    pub async fn drain_events(&mut self, event: &str, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let Some(packet) = self.decode(frame).await {
                self.stash(packet);
            }
        }
        let (matching, rest): (Vec<_>, Vec<_>) = self.events.drain(..).partition(|(n, _)| n == event);
        self.events = rest.into();
        matching.into_iter().map(|(_, v)| v).collect()
    }

    /// Waits for the server's disconnect packet for this namespace, keeping the events that
    /// come before it.
    pub async fn disconnected(&mut self) {
        loop {
            match self.recv().await {
                ServerPacket::Disconnect { ns } if ns == self.ns => return,
                packet => self.stash(packet),
            }
        }
    }

    /// The ack is `{ ok: false }` with `code`; returns its message.
    pub fn error_of(ack: &Value, code: &str) -> String {
        assert_eq!(ack["ok"], json!(false), "expected an error ack, got {ack}");
        assert_eq!(ack["error"]["code"], json!(code), "wrong code in {ack}");
        ack["error"]["message"].as_str().unwrap().to_owned()
    }

    /// The ack is `{ ok: true }`; returns its data.
    pub fn data_of(ack: &Value) -> Value {
        assert_eq!(ack["ok"], json!(true), "expected success, got {ack}");
        ack["data"].clone()
    }
}
