//! Real parts for the notification tests: a webhook receiver (HTTP on a free port) with a
//! scripted answer per call, an SMTP server (Debian's `python3-aiosmtpd`), a `redis-server`
//! the test can kill and restart, and the server binary as a child process (for SIGKILL).
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A service key for the tests.
pub const KEY: &str = "test-service-key-0123456789";
/// The webhook signing secret of the tests.
pub const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";

/// `POST /api/events` (or any route) with `credential` as the bearer; returns status and body.
pub async fn request(method: reqwest::Method, url: &str, credential: Option<&str>, body: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url).header("content-type", "application/json");
    if let Some(c) = credential {
        req = req.bearer_auth(c);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    let res = req.send().await.expect("request sent");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Posts an event with the test key.
pub async fn post_event(base: &str, event: &Value) -> (u16, Value) {
    request(reqwest::Method::POST, &format!("{base}/api/events"), Some(KEY), Some(&event.to_string())).await
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on `port`.
pub async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns `Some`, for up to `within`.
pub async fn eventually<T, F: AsyncFnMut() -> Option<T>>(within: Duration, what: &str, mut check: F) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// When it arrived.
    pub at: Instant,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its raw body.
    pub body: Bytes,
}

impl Hit {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// True when `X-Switchyard-Signature` is right for the body under `secret`, checked the
    /// way docs/notifications.md tells receivers to.
    pub fn signed_with(&self, secret: &str) -> bool {
        use hmac::{Hmac, Mac};
        let header = self.headers.get("x-switchyard-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let (Some(t), Some(v1)) = (
            header.split(',').find_map(|p| p.strip_prefix("t=")),
            header.split(',').find_map(|p| p.strip_prefix("v1=")),
        ) else {
            return false;
        };
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .abs_diff(t.parse().unwrap_or(0));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        age < 300 && expected == v1
    }
}

/// A webhook receiver: answers call `n` (from 0) with `script(n)` and records every call.
pub struct Receiver {
    /// Its URL.
    pub url: String,
    state: Arc<ReceiverState>,
    _server: tokio::task::JoinHandle<()>,
}

struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    script: Box<dyn Fn(usize) -> u16 + Send + Sync>,
    /// How long each answer takes.
    delay: Duration,
    /// Calls being answered now, and the most at once.
    busy: Mutex<(usize, usize)>,
    /// Calls answered.
    answered: Mutex<usize>,
}

impl Receiver {
    /// Starts a receiver on a free port that answers at once.
    pub async fn start(script: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Receiver {
        Self::start_slow(Duration::ZERO, script).await
    }

    /// Starts a receiver whose every answer takes `delay`.
    pub async fn start_slow(delay: Duration, script: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Receiver {
        let state = Arc::new(ReceiverState {
            hits: Mutex::default(),
            script: Box::new(script),
            delay,
            busy: Mutex::default(),
            answered: Mutex::default(),
        });
        let app = axum::Router::new().route("/hook", axum::routing::post(record)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url: format!("http://{addr}/hook"), state, _server: server }
    }

    /// The calls so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// The most calls that were being answered at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.state.busy.lock().unwrap().1
    }

    /// Calls answered (their answer fully computed) so far.
    pub fn answered(&self) -> usize {
        *self.state.answered.lock().unwrap()
    }

    /// Waits for at least `n` calls.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        eventually(within, &format!("{n} webhook calls"), async || {
            let hits = self.hits();
            (hits.len() >= n).then_some(hits)
        })
        .await
    }
}

async fn record(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = {
        let mut hits = state.hits.lock().unwrap();
        hits.push(Hit { at: Instant::now(), headers, body });
        hits.len() - 1
    };
    {
        let mut busy = state.busy.lock().unwrap();
        busy.0 += 1;
        busy.1 = busy.1.max(busy.0);
    }
    tokio::time::sleep(state.delay).await;
    state.busy.lock().unwrap().0 -= 1;
    *state.answered.lock().unwrap() += 1;
    StatusCode::from_u16((state.script)(n)).unwrap()
}

/// The Python with Debian's aiosmtpd (`/usr/bin/python3`; pyenv's may lack it).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// A real SMTP server (`python3 -m aiosmtpd`), printing each message it accepts.
pub struct Smtp {
    /// Its port.
    pub port: u16,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Smtp {
    /// Starts aiosmtpd on `port`.
    pub async fn start(port: u16) -> Smtp {
        let mut child = Command::new(python())
            .args(["-u", "-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 -m aiosmtpd (Debian package python3-aiosmtpd; scripts/setup.sh installs it)");
        let output: Arc<Mutex<String>> = Arc::default();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        wait_for_port(port).await;
        Smtp { port, child, output }
    }

    /// The messages received so far (header and body text of each).
    pub fn messages(&self) -> Vec<String> {
        let out = self.output.lock().unwrap();
        out.split("---------- MESSAGE FOLLOWS ----------\n")
            .filter_map(|m| m.split("------------ END MESSAGE ------------").next())
            .filter(|m| !m.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A `redis-server` on a free port with an append-only file in a temporary directory, so a
/// restart keeps the data.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts it.
    pub async fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("switchyard-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = RedisServer { port, dir, child: None };
        redis.restart().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process (its append-only file stays).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// A connection for inspecting keys.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// (Re)starts the process on the same port and data directory.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (Debian package redis-server; scripts/setup.sh installs it)");
        self.child = Some(child);
        wait_for_port(self.port).await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server binary as a child process, for tests that kill it.
pub struct Process {
    /// Its base URL.
    pub url: String,
    /// Its port.
    pub port: u16,
    child: Child,
    /// Log lines so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// The server binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard-server")
}

impl Process {
    /// Starts the binary on `port` with `env` (plus a JWT secret and text-free JSON logs)
    /// and waits until it listens.
    pub async fn start(port: u16, env: &[(&str, String)]) -> Process {
        let mut cmd = Command::new(binary());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("WEBSOCKET_PORT", port.to_string())
            .env("JWT_SECRET", crate::support::SECRET)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .env("SERVICE_API_KEYS", KEY);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true).spawn().unwrap();
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        eventually(Duration::from_secs(20), "the server to listen", async || {
            sink_has(&logs, "switchyard-server listening").then_some(())
        })
        .await;
        Process { url: format!("http://127.0.0.1:{port}"), port, child, logs }
    }

    /// Sends `signal` (`KILL`, `TERM`) and waits for the exit.
    pub async fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        self.send(signal);
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("exits").unwrap()
    }

    /// Sends `signal` without waiting.
    pub fn send(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(status.success());
    }

    /// True when a log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        sink_has(&self.logs, text)
    }

    /// Every log line so far, for a failure message.
    pub fn log(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

fn sink_has(logs: &Arc<Mutex<Vec<String>>>, text: &str) -> bool {
    logs.lock().unwrap().iter().any(|l| l.contains(text))
}

/// Writes `yaml` to a fresh temporary rules file.
pub fn rules_file(yaml: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "switchyard-rules-{}-{:016x}.yaml",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A rules file with one rule `hook` on event `order.shipped` posting to `url`.
pub fn webhook_rules(url: &str) -> PathBuf {
    rules_file(&format!(
        "rules:\n  - name: hook\n    event: order.shipped\n    title: \"Order {{{{data.order}}}} shipped\"\n    body: \"On its way\"\n    channels: [webhook]\n    webhook:\n      url: {url}\n"
    ))
}
