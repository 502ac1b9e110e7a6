//! Tracing and logs of the real binary: spans reach a real OTLP receiver (the collector's
//! gRPC `TraceService`, decoding the real protobuf), continue the caller's `traceparent` on
//! HTTP and on the Socket.IO handshake, and cross nodes through the Redis bus as one
//! trace; log lines are JSON carrying their span's ids, and never a token or message content.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};
use support::{Client, SECRET, token};

/// A received span, flattened, with the process it came from.
#[derive(Debug, Clone)]
struct Got {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
    links: Vec<(String, String)>,
    service: String,
    pid: String,
}

/// An OTLP/gRPC receiver on a free port, keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.record(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Receiver {
    fn record(&self, request: ExportTraceServiceRequest) {
        let mut got = self.0.lock().unwrap();
        for rs in request.resource_spans {
            let resource = attributes(rs.resource.map(|r| r.attributes).unwrap_or_default());
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(Got {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: attributes(span.attributes),
                    links: span.links.iter().map(|l| (hex(&l.trace_id), hex(&l.span_id))).collect(),
                    service: resource.get("service.name").cloned().unwrap_or_default(),
                    pid: resource.get("process.pid").cloned().unwrap_or_default(),
                });
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: Vec<KeyValue>) -> HashMap<String, String> {
    kvs.into_iter()
        .map(|kv| {
            let value = match kv.value.and_then(|v| v.value) {
                Some(Any::StringValue(s)) => s,
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key, value)
        })
        .collect()
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (receiver, addr)
    }

    /// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf bodies) on a free port.
    async fn start_http() -> (Receiver, SocketAddr) {
        use prost::Message;
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = receiver.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                sink.record(ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body"));
                ExportTraceServiceResponse { partial_success: None }.encode_to_vec()
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn all(&self) -> Vec<Got> {
        self.0.lock().unwrap().clone()
    }

    /// The first span matching `pred`, waiting up to 20 s for the exporters' batches.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Got) -> bool) -> Got {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(span) = self.0.lock().unwrap().iter().find(|s| pred(s)) {
                return span.clone();
            }
            if Instant::now() > deadline {
                let names: Vec<String> =
                    self.0.lock().unwrap().iter().map(|s| format!("{} {}", s.pid, s.name)).collect();
                panic!("no span for {what}; received: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A `switchyard-server` process with its stdout lines.
struct Server {
    child: Child,
    addr: SocketAddr,
    pid: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn spawn(env: &[(&str, String)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard-server"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("WEBSOCKET_PORT", "0")
            .env("JWT_SECRET", SECRET)
            .env("LOG_FORMAT", "json")
            // Export batches every 100 ms instead of 5 s, so tests wait less.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("server binary starts");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "switchyard-server listening"
                {
                    let _ = tx.send(v["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("server did not start"));
        let pid = child.id().to_string();
        Server { child, addr, pid, lines }
    }

    fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first log line (as JSON) matching `pred`, waiting up to 10 s.
    async fn wait_log(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.logs().iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| pred(v));
            if let Some(line) = found {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line for {what}:\n{}", self.logs().join("\n"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway `redis-server` on a free port.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/setup.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis(child, port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.1)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn otlp_env(otlp: SocketAddr) -> Vec<(&'static str, String)> {
    vec![("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")), ("OTEL_SERVICE_NAME", "sy-under-test".into())]
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn an_http_request_continues_the_callers_trace_and_its_log_lines_carry_the_ids() {
    let (rx, otlp) = Receiver::start().await;
    let mut env = otlp_env(otlp);
    env.push(("LOG_LEVEL", "switchyard_server=debug,info".into()));
    let server = Server::spawn(&env);

    let res = reqwest::Client::new()
        .get(format!("http://{}/api/chat/rooms", server.addr))
        .bearer_auth(token("alice"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let span = rx.wait_for("GET /api/chat/rooms", |s| s.trace_id == TRACE && s.name == "GET /api/chat/rooms").await;
    assert_eq!(span.parent, PARENT, "the caller's span is the parent");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.service, "sy-under-test");
    assert_eq!(span.pid, server.pid);
    assert_eq!(span.attributes["http.route"], "/api/chat/rooms");
    assert_eq!(span.attributes["http.response.status_code"], "200");

    let line = server.wait_log("the request's log line", |v| v["trace_id"] == TRACE).await;
    assert_eq!(line["span_id"], span.span_id.as_str(), "the line names the span it was logged in");
    assert_eq!(line["message"], "request");
    assert_eq!(line["level"], "DEBUG");
    assert_eq!(line["target"], "switchyard_server::telemetry");

    // A request without `traceparent` starts a new trace.
    let res = reqwest::Client::new().get(format!("http://{}/api/chat/rooms", server.addr)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let fresh = rx.wait_for("a new trace", |s| s.name == "GET /api/chat/rooms" && s.trace_id != TRACE).await;
    assert!(fresh.parent.is_empty());
    assert_eq!(fresh.attributes["http.response.status_code"], "401");
}

#[tokio::test]
async fn the_handshake_continues_the_callers_trace_and_each_event_is_a_span_with_its_emits() {
    let (rx, otlp) = Receiver::start().await;
    let server = Server::spawn(&otlp_env(otlp));

    let auth = json!({ "token": token("alice"), "traceparent": format!("00-{TRACE}-{PARENT}-01") });
    let mut alice = Client::connect_with_auth(server.addr, "/chat", auth).await.unwrap();
    let mut bob = Client::connect(server.addr, "/chat", Some(&token("bob"))).await.unwrap();
    let connect = rx.wait_for("connect /chat", |s| s.trace_id == TRACE && s.name == "connect /chat").await;
    assert_eq!(connect.parent, PARENT);
    assert_eq!(connect.attributes["auth.status"], "success");

    let room = Client::data_of(&alice.call("getOrCreateRoom", json!({ "participantIds": ["bob"] })).await);
    let room_id = room["room"]["id"].as_str().unwrap().to_owned();
    let ack = alice.call("sendMessage", json!({ "roomId": room_id, "content": "hi", "clientMessageId": "c1" })).await;
    Client::data_of(&ack);
    bob.next_event("newMessage").await;

    let event = rx.wait_for("/chat sendMessage", |s| s.name == "/chat sendMessage").await;
    assert_eq!(event.kind, SpanKind::Server as i32);
    assert_eq!(event.attributes["socketio.event"], "sendMessage");
    assert!(
        event.links.contains(&(connect.trace_id.clone(), connect.span_id.clone())),
        "events link to their connection's handshake: {event:?}"
    );
    let emit = rx.wait_for("emit newMessage", |s| s.name == "emit newMessage" && s.parent == event.span_id).await;
    assert_eq!(emit.trace_id, event.trace_id);
    assert_eq!(emit.kind, SpanKind::Producer as i32);

    // An event answered with an error says which.
    let ack = alice.call("sendMessage", json!({ "roomId": "no-such-room", "content": "x" })).await;
    Client::error_of(&ack, "not_found");
    let failed =
        rx.wait_for("a failed event", |s| s.attributes.get("error.type").is_some_and(|e| e == "not_found")).await;
    assert_eq!(failed.name, "/chat sendMessage");

    // A refused handshake is a span too.
    assert!(Client::connect(server.addr, "/chat", Some("not-a-jwt")).await.is_err());
    rx.wait_for("refused handshake", |s| s.attributes.get("auth.status").is_some_and(|a| a == "failed")).await;
}

#[tokio::test]
async fn a_message_from_one_node_to_another_is_one_trace_with_spans_from_both_processes() {
    let redis = Redis::start();
    let (rx, otlp) = Receiver::start().await;
    let mut env = otlp_env(otlp);
    env.push(("REDIS_URL", redis.url()));
    let a = Server::spawn(&env);
    let b = Server::spawn(&env);
    assert_ne!(a.pid, b.pid);

    let mut alice = Client::connect(a.addr, "/chat", Some(&token("alice-x"))).await.unwrap();
    let mut bob = Client::connect(b.addr, "/chat", Some(&token("bob-x"))).await.unwrap();
    let room = Client::data_of(&alice.call("getOrCreateRoom", json!({ "participantIds": ["bob-x"] })).await);
    let room_id = room["room"]["id"].as_str().unwrap().to_owned();
    bob.next_event("roomCreated").await;
    let ack =
        alice.call("sendMessage", json!({ "roomId": room_id, "content": "across", "clientMessageId": "x1" })).await;
    Client::data_of(&ack);
    assert_eq!(bob.next_event("newMessage").await["content"], "across");

    let event = rx.wait_for("sendMessage on node A", |s| s.name == "/chat sendMessage" && s.pid == a.pid).await;
    let emit = rx
        .wait_for("emit newMessage on node A", |s| {
            s.trace_id == event.trace_id && s.name == "emit newMessage" && s.pid == a.pid
        })
        .await;
    let receive = rx
        .wait_for("the bus message arriving on node B", |s| {
            s.trace_id == event.trace_id && s.name == "socket.io adapter receive" && s.pid == b.pid
        })
        .await;
    assert_eq!(receive.parent, emit.span_id, "node B's span is a child of node A's emit");
    assert_eq!(receive.kind, SpanKind::Consumer as i32);

    // Node A skips its own message when pub/sub hands it back, so it records no receipt of
    // it. bob's reply reaches A on the same channel after that echo, and A exports spans in
    // the order they end: once A's receipt of the reply is in, an echo span would be too.
    let ack = bob.call("sendMessage", json!({ "roomId": room_id, "content": "back", "clientMessageId": "x2" })).await;
    Client::data_of(&ack);
    assert_eq!(alice.next_event("newMessage").await["content"], "back");
    let reply = rx.wait_for("sendMessage on node B", |s| s.name == "/chat sendMessage" && s.pid == b.pid).await;
    rx.wait_for("the reply arriving on node A", |s| {
        s.trace_id == reply.trace_id && s.name == "socket.io adapter receive" && s.pid == a.pid
    })
    .await;
    let echoes: Vec<Got> = rx
        .all()
        .into_iter()
        .filter(|s| s.trace_id == event.trace_id && s.name == "socket.io adapter receive" && s.pid == a.pid)
        .collect();
    assert!(echoes.is_empty(), "node A traced the receipt of its own message: {echoes:?}");
}

#[tokio::test]
async fn log_lines_are_json_and_never_carry_tokens_or_message_content() {
    // `trace` is as loud as logging gets, for every crate.
    let dir = std::env::temp_dir().join(format!("sy-logs-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::spawn(&[("LOG_LEVEL", "trace".into()), ("LOG_DIR", dir.display().to_string())]);
    let secret_content = "content-that-must-not-be-logged-7f3a";
    let alice_token = token("alice");
    let mut alice = Client::connect(server.addr, "/chat", Some(&alice_token)).await.unwrap();
    let room = Client::data_of(&alice.call("getOrCreateRoom", json!({ "participantIds": ["bob"] })).await);
    let room_id = room["room"]["id"].as_str().unwrap().to_owned();
    let ack = alice.call("sendMessage", json!({ "roomId": room_id, "content": secret_content })).await;
    Client::data_of(&ack);
    // Wrong types quote the offending value in the ack; it must not reach the log either.
    let ack = alice.call("sendMessage", json!({ "roomId": room_id, "content": [secret_content] })).await;
    Client::error_of(&ack, "invalid_payload");
    let expired = {
        use jsonwebtoken::{EncodingKey, Header};
        let claims = json!({ "sub": "carol", "exp": 1_000_000 });
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    };
    let Err(refused) = Client::connect(server.addr, "/chat", Some(&expired)).await else {
        panic!("expired token accepted")
    };
    assert_eq!(refused, "token_expired");
    let res = reqwest::Client::new()
        .post(format!("http://{}/api/chat/messages", server.addr))
        .bearer_auth(&alice_token)
        .json(&json!({ "roomId": room_id, "content": secret_content }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // Verbose lines of each kind were written (and are checked below).
    for message in ["authenticated", "event rejected", "request", "handshake refused"] {
        server.wait_log(message, |v| v["message"] == message).await;
    }

    let logs = server.logs();
    for line in &logs {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        for secret in [secret_content, alice_token.as_str(), expired.as_str()] {
            assert!(!line.contains(secret), "log line leaks {secret}: {line}");
        }
    }

    // The same lines go to a daily file under LOG_DIR (written in the background).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (name, text) = loop {
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(files.len() <= 1, "one file per day: {files:?}");
        if let Some(file) = files.first() {
            let text = std::fs::read_to_string(file).unwrap();
            if text.contains("handshake refused") {
                break (file.file_name().unwrap().to_string_lossy().into_owned(), text);
            }
        }
        assert!(Instant::now() < deadline, "no log file in {}", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(name.starts_with("switchyard.") && name.ends_with(".log"), "{name}");
    let mut with_ids = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        with_ids += usize::from(v.get("trace_id").is_some() && v.get("span_id").is_some());
        for secret in [secret_content, alice_token.as_str(), expired.as_str()] {
            assert!(!line.contains(secret), "log file leaks {secret}: {line}");
        }
    }
    assert!(with_ids >= 3, "file lines carry trace ids too:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into()
}

#[tokio::test]
async fn spans_also_go_over_otlp_http_and_the_ratio_sampler_follows_a_sampled_caller() {
    let (rx, otlp) = Receiver::start_http().await;
    let server = Server::spawn(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        // New traces are never sampled; a caller's sampled trace always is.
        ("OTEL_TRACES_SAMPLER_ARG", "0".into()),
    ]);
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/chat/rooms", server.addr);
    let unsampled = http.get(&url).bearer_auth(token("alice")).send().await.unwrap();
    assert_eq!(unsampled.status(), 200);
    let sampled =
        http.get(&url).bearer_auth(token("alice")).header("traceparent", format!("00-{TRACE}-{PARENT}-01")).send();
    assert_eq!(sampled.await.unwrap().status(), 200);

    let span = rx.wait_for("the sampled request over HTTP", |s| s.trace_id == TRACE).await;
    assert_eq!(span.name, "GET /api/chat/rooms");
    assert_eq!(span.service, "switchyard-server", "the default service name");
    // Both requests were exported in the same or an earlier batch; only the sampled one is there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.all().iter().all(|s| s.trace_id == TRACE), "unsampled spans exported: {:?}", rx.all());
}

#[test]
fn invalid_tracing_settings_name_their_variable() {
    use switchyard_server::Config;
    let err = Config::load_from(["s", "--otel-sample-ratio", "1.5"]).unwrap_err();
    assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
    let err = Config::load_from(["s", "--otlp-endpoint", "collector:4317"]).unwrap_err();
    assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
    let err = Config::load_from(["s", "--otlp-protocol", "carrier-pigeon"]).unwrap_err();
    assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
    // Empty means unset, as Kubernetes manifests often write it.
    let config = Config::load_from(["s", "--otlp-endpoint", ""]).unwrap();
    assert!(config.tracing.otlp_endpoint.is_none());
}
