//! `switchyard-loadgen`: drives a realtime server (Switchyard, Node socket.io, or the raw
//! WebSocket floor) with bounded scenarios and prints one JSON result line.
//!
//! Scenarios: `idle` (hold N authenticated connections, measure server RSS per connection and
//! connect rate), `fanout` (R rooms × S members, one sender per room at a fixed rate; delivered
//! messages/s, end-to-end latency from a timestamp in the payload, drops). Fan-out over several
//! `--server` addresses is the cross-node scenario. A process here may hold at most 20,000
//! open files, so `idle` can split itself over `--procs` child processes.

mod client;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use client::{Packet, Proto, decode};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as Frame;

#[derive(Parser)]
#[command(about = "Load generator for Switchyard and its peers")]
struct Args {
    /// Wire protocol of the target.
    #[arg(long, value_enum, default_value_t = Proto::Socketio)]
    proto: Proto,
    /// Server address; repeat to spread connections over several nodes.
    #[arg(long, required = true)]
    server: Vec<SocketAddr>,
    /// HS256 secret to mint tokens with.
    #[arg(long, default_value = "bench-secret-that-is-long-enough-for-hs256")]
    secret: String,
    /// Loopback source addresses to use (127.0.0.2 onwards), to avoid port exhaustion.
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Server process ids whose RSS to report.
    #[arg(long)]
    server_pid: Vec<u32>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Hold idle authenticated connections.
    Idle {
        /// Connections in total.
        #[arg(long)]
        connections: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Seconds to hold them once all are up.
        #[arg(long, default_value_t = 3)]
        hold: u64,
        /// Child processes to split the connections over.
        #[arg(long, default_value_t = 1)]
        procs: usize,
        /// Offset of user ids (set for child processes).
        #[arg(long, default_value_t = 0, hide = true)]
        offset: usize,
    },
    /// Rooms of members with one sender each.
    Fanout {
        /// Rooms.
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Members per room, sender included.
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// Messages per second per sender.
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn token(secret: &str, user: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({ "sub": user, "iat": now, "exp": now + 3600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing")
}

fn source(args: &Args, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % args.sources.max(1) as usize) as u8))
}

/// Resident set size of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn total_rss(args: &Args) -> u64 {
    args.server_pid.iter().map(|p| rss_kib(*p)).sum()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let result = match &args.scenario {
        Scenario::Idle { connections, concurrency, hold, procs, offset } => {
            if *procs > 1 {
                idle_parent(&args, *connections, *procs).await?
            } else {
                idle(&args, *connections, *concurrency, *hold, *offset).await?
            }
        }
        Scenario::Fanout { rooms, members, rate, duration, size } => {
            fanout(&args, *rooms, *members, *rate, *duration, *size).await?
        }
    };
    println!("{result}");
    Ok(())
}

/// Splits `idle` over child processes (each under the per-process open-file limit).
async fn idle_parent(args: &Args, connections: usize, procs: usize) -> anyhow::Result<Value> {
    let before = total_rss(args);
    let per = connections.div_ceil(procs);
    let exe = std::env::current_exe()?;
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut children = vec![];
    for p in 0..procs {
        // Same arguments, a share of the connections, and no further splitting.
        let mut argv: Vec<String> =
            raw.iter().filter(|a| !a.starts_with("--procs") && !a.starts_with("--connections")).cloned().collect();
        strip_value(&mut argv, &raw, "--procs");
        strip_value(&mut argv, &raw, "--connections");
        argv.extend(["--connections".into(), per.to_string(), "--offset".into(), (p * per).to_string()]);
        children.push(tokio::process::Command::new(&exe).args(&argv).stdout(std::process::Stdio::piped()).spawn()?);
    }
    // Read peak RSS while the children hold their connections.
    let mut peak = before;
    let mut outputs = vec![];
    let watch = async {
        loop {
            peak = peak.max(total_rss(args));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let wait = async {
        for child in children {
            outputs.push(child.wait_with_output().await);
        }
    };
    tokio::select! { _ = wait => {}, _ = watch => {} }
    let mut connected = 0;
    let mut failed = 0;
    let mut rate = 0.0;
    for out in outputs {
        let v: Value = serde_json::from_slice(&out?.stdout).context("child result")?;
        connected += v["connected"].as_u64().unwrap_or(0);
        failed += v["failed"].as_u64().unwrap_or(0);
        rate += v["connect_rate"].as_f64().unwrap_or(0.0);
    }
    let per_conn = if connected > 0 { peak.saturating_sub(before) as f64 / connected as f64 } else { 0.0 };
    Ok(json!({ "scenario": "idle", "connected": connected, "failed": failed, "connect_rate": rate,
               "rss_before_kib": before, "rss_peak_kib": peak, "kib_per_connection": per_conn }))
}

fn strip_value(argv: &mut Vec<String>, raw: &[String], flag: &str) {
    if let Some(pos) = raw.iter().position(|a| a == flag)
        && let Some(value) = raw.get(pos + 1)
        && let Some(i) = argv.iter().position(|a| a == value)
    {
        argv.remove(i);
    }
}

/// Opens `n` connections, holds them for `hold` seconds, reports connect rate and RSS.
async fn idle(args: &Args, n: usize, concurrency: usize, hold: u64, offset: usize) -> anyhow::Result<Value> {
    let before = total_rss(args);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let (server, src) = (args.server[i % args.server.len()], source(args, offset + i));
        let (tok, proto, failed) = (token(&args.secret, &format!("idle-{}", offset + i)), args.proto, failed.clone());
        tasks.push(tokio::spawn(async move {
            let conn = client::connect(proto, server, src, &tok, "idle").await;
            drop(permit);
            match conn {
                Ok(c) => Some(c),
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("connect failed: {e:#}");
                    }
                    None
                }
            }
        }));
    }
    let mut conns = vec![];
    for t in tasks {
        if let Some(c) = t.await? {
            conns.push(c);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let connected = conns.len();
    // Hold, answering pings so the server sees healthy clients.
    let holders: Vec<_> = conns
        .into_iter()
        .map(|(mut tx, mut rx)| {
            tokio::spawn(async move {
                while let Some(Ok(Frame::Text(t))) = rx.next().await {
                    if t.as_str() == "2" {
                        let _ = tx.send(Frame::text(client::PONG)).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let peak = total_rss(args);
    for h in holders {
        h.abort();
    }
    let per_conn = if connected > 0 { peak.saturating_sub(before) as f64 / connected as f64 } else { 0.0 };
    Ok(json!({ "scenario": "idle", "connected": connected, "failed": failed.load(Ordering::Relaxed),
               "connect_rate": connected as f64 / elapsed, "rss_before_kib": before, "rss_peak_kib": peak,
               "kib_per_connection": per_conn }))
}

/// One room's members: the sender is member 0.
async fn fanout(
    args: &Args,
    rooms: usize,
    members: usize,
    rate: u64,
    duration: u64,
    size: usize,
) -> anyhow::Result<Value> {
    let hist = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let received = Arc::new(AtomicU64::new(0));
    let ack_errors = Arc::new(AtomicU64::new(0));
    let mut senders = vec![];
    let mut readers = vec![];
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let before = total_rss(args);
    for r in 0..rooms {
        let users: Vec<String> = (0..members).map(|m| format!("fan-{r}-{m}")).collect();
        let mut conns = vec![];
        for (m, user) in users.iter().enumerate() {
            let server = args.server[(r * members + m) % args.server.len()];
            conns.push(
                client::connect(
                    args.proto,
                    server,
                    source(args, r * members + m),
                    &token(&args.secret, user),
                    &format!("r{r}"),
                )
                .await?,
            );
        }
        let (mut tx0, mut rx0) = conns.remove(0);
        // Socket.IO targets: member 0 creates the room; every member's sockets join it.
        let room_id = if args.proto == Proto::Socketio {
            let payload = json!({ "participantIds": users[1..], "name": format!("bench-{r}") });
            tx0.send(Frame::text(client::event(1, "getOrCreateRoom", &payload))).await?;
            let ack = loop {
                let Some(frame) = rx0.next().await else { anyhow::bail!("closed before the room ack") };
                if let Frame::Text(t) = frame?
                    && let Packet::Ack(1, v) = decode(args.proto, t.as_str())
                {
                    break v;
                }
            };
            ack["data"]["room"]["id"].as_str().context("room id in the ack")?.to_owned()
        } else {
            format!("r{r}")
        };
        for (tx, rx) in conns {
            readers.push(tokio::spawn(receive(args.proto, tx, rx, hist.clone(), received.clone(), stop_rx.clone())));
        }
        senders.push((tx0, rx0, room_id));
    }
    let setup_rss = total_rss(args);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let padding = "x".repeat(size.saturating_sub(20));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut send_tasks = vec![];
    for (mut tx, mut rx, room_id) in senders {
        let (sent, errors, proto, padding) = (sent.clone(), ack_errors.clone(), args.proto, padding.clone());
        // The sender reads its acks (and pings) on the side.
        let ack_reader = tokio::spawn(async move {
            while let Some(Ok(Frame::Text(t))) = rx.next().await {
                if let Packet::Ack(_, v) = decode(proto, t.as_str())
                    && v["ok"] != json!(true)
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        send_tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            let end = Instant::now() + Duration::from_secs(duration);
            let mut id = 10;
            while Instant::now() < end {
                tick.tick().await;
                let content = format!("{}|{padding}", now_micros());
                let frame = match proto {
                    Proto::Socketio => {
                        client::event(id, "sendMessage", &json!({ "roomId": room_id, "content": content }))
                    }
                    Proto::Raw => content,
                };
                id += 1;
                if tx.send(Frame::text(frame)).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            ack_reader.abort();
        }));
    }
    for t in send_tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64() - 2.0;
    let _ = stop_tx.send(true);
    for r in readers {
        r.await?;
    }
    let sent = sent.load(Ordering::Relaxed);
    let expected = sent * (members as u64 - 1);
    let got = received.load(Ordering::Relaxed);
    let h = hist.lock().await;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(json!({
        "scenario": "fanout", "rooms": rooms, "members": members, "rate_per_sender": rate, "sent": sent,
        "expected": expected, "delivered": got, "drops": expected.saturating_sub(got),
        "delivered_per_sec": got as f64 / elapsed, "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": h.max() as f64 / 1000.0, "ack_errors": ack_errors.load(Ordering::Relaxed),
        "rss_before_kib": before, "rss_setup_kib": setup_rss, "rss_end_kib": total_rss(args),
    }))
}

/// Counts deliveries and records latency from the timestamp at the start of the content,
/// until `stop`; then adds its samples to the shared histogram.
async fn receive(
    proto: Proto,
    mut tx: client::Tx,
    mut rx: client::Rx,
    hist: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    received: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut local = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    loop {
        let frame = tokio::select! {
            frame = rx.next() => frame,
            _ = stop.changed() => break,
        };
        let Some(Ok(Frame::Text(t))) = frame else {
            if frame.is_none() {
                break;
            }
            continue;
        };
        let content = match decode(proto, t.as_str()) {
            Packet::Ping => {
                let _ = tx.send(Frame::text(client::PONG)).await;
                continue;
            }
            Packet::Event(name, data) if name == "newMessage" => data["content"].as_str().map(str::to_owned),
            Packet::Event(name, Value::String(s)) if name.is_empty() => Some(s),
            _ => None,
        };
        if let Some(sent) = content.as_deref().and_then(|c| c.split('|').next()).and_then(|s| s.parse::<u64>().ok()) {
            let _ = local.record(now_micros().saturating_sub(sent).max(1));
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = hist.lock().await.add(&local);
}
