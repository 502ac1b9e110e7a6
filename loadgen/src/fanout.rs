//! `fanout`: R rooms × S members, one sender per room at a fixed rate; delivered messages/s,
//! end-to-end latency from a timestamp at the start of the content, and drops. Messages the
//! server refused as overloaded (`unavailable` acks) are counted apart and owe no deliveries.
//! Spread over several `--server` addresses it is the cross-node scenario, and latency is also
//! reported per server, so the hop to other nodes shows apart from the sender's own node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::client::{self, Packet, Proto, decode};
use crate::{Args, now_micros, source, token, total_rss};

/// One room's members: the sender is member 0.
pub async fn fanout(
    args: &Args,
    rooms: usize,
    members: usize,
    rate: u64,
    duration: u64,
    size: usize,
) -> anyhow::Result<Value> {
    let deliveries = Arc::new(Deliveries {
        bytes: AtomicU64::new(0),
        latency: Mutex::new(histogram()),
        by_server: args.server.iter().map(|_| Mutex::new(histogram())).collect(),
    });
    let ack_errors = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut senders = vec![];
    let mut readers = vec![];
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let before = total_rss(args);
    for r in 0..rooms {
        let users: Vec<String> = (0..members).map(|m| format!("fan-{r}-{m}")).collect();
        // Connected 200 at a time: a slow handshake must not leave the first members unread
        // (and their pings unanswered) for the whole setup.
        let mut conns: Vec<(client::Tx, client::Rx)> = futures::stream::iter(users.iter().enumerate())
            .map(|(m, user)| {
                let server = args.server[server_of(args, r * members + m)];
                let tok = token(&args.secret, user);
                let room = format!("r{r}");
                async move { client::connect(args.proto, server, source(args, r * members + m), &tok, &room).await }
            })
            .buffered(200)
            .try_collect()
            .await?;
        let (mut tx0, mut rx0) = conns.remove(0);
        // Socket.IO targets: member 0 creates the room; every member's sockets join it. The floor
        // and Centrifugo joined room `r{r}` as they connected.
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
        for (m, (tx, rx)) in conns.into_iter().enumerate() {
            // Member 0 was removed: this is member m + 1.
            let server = server_of(args, r * members + m + 1);
            let (deliveries, stop) = (deliveries.clone(), stop_rx.clone());
            readers.push(tokio::spawn(receive(args.proto, tx, rx, deliveries, server, stop)));
        }
        senders.push((tx0, rx0, room_id));
    }
    let setup_rss = total_rss(args);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The content is `size` bytes: a 16-digit µs timestamp, a separator, the padding.
    let padding = "x".repeat(size.saturating_sub(17));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut send_tasks = vec![];
    for (mut tx, mut rx, room_id) in senders {
        let (sent, errors, refused, proto, padding) =
            (sent.clone(), ack_errors.clone(), refused.clone(), args.proto, padding.clone());
        // The sender reads its acks (and pings) on the side.
        let ack_reader = tokio::spawn(async move {
            while let Some(Ok(Frame::Text(t))) = rx.next().await {
                for message in client::messages(proto, t.as_str()) {
                    if let Packet::Ack(_, v) = decode(proto, message)
                        && v["ok"] != json!(true)
                    {
                        let counter = if client::is_refusal(&v) { &refused } else { &errors };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
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
                    Proto::Centrifugo => client::publish(id, &room_id, &content),
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
    let refused = refused.load(Ordering::Relaxed);
    let expected = sent.saturating_sub(refused) * (members as u64 - 1);
    let bytes = deliveries.bytes.load(Ordering::Relaxed);
    let h = deliveries.latency.lock().await;
    // Every delivery has a latency sample: runs last seconds, far below the histogram's minute.
    let got = h.len();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut per_server = vec![];
    for (i, server) in args.server.iter().enumerate() {
        let h = deliveries.by_server[i].lock().await;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        // Room r's sender is its member 0.
        let senders = (0..rooms).filter(|r| server_of(args, r * members) == i).count();
        per_server.push(json!({ "server": server.to_string(), "senders": senders, "delivered": h.len(),
                                "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999) }));
    }
    Ok(json!({
        "scenario": "fanout", "rooms": rooms, "members": members, "rate_per_sender": rate, "sent": sent,
        "refused": refused, "expected": expected, "delivered": got, "drops": expected.saturating_sub(got),
        "delivered_per_sec": got as f64 / elapsed, "frame_bytes": if got > 0 { bytes as f64 / got as f64 } else { 0.0 },
        "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "max_ms": h.max() as f64 / 1000.0, "ack_errors": ack_errors.load(Ordering::Relaxed),
        "rss_before_kib": before, "rss_setup_kib": setup_rss, "rss_end_kib": total_rss(args),
        "by_server": per_server,
    }))
}

type Histogram = hdrhistogram::Histogram<u64>;

/// The index of the server that connection `n` of the run (room by room, member by member)
/// uses: round robin over `--server`.
fn server_of(args: &Args, n: usize) -> usize {
    n % args.server.len()
}

/// What a run's receivers got.
struct Deliveries {
    /// Their total size: the messages as delivered, protocol framing included.
    bytes: AtomicU64,
    /// Latency in µs, of all of them and again by the server each receiver is connected to.
    latency: Mutex<Histogram>,
    by_server: Vec<Mutex<Histogram>>,
}

/// From 1 µs to a minute.
fn histogram() -> Histogram {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Counts the bytes of deliveries and records their latency from the timestamp at the start of
/// the content, until `stop`; then adds its figures to the run's, under `server` too.
async fn receive(
    proto: Proto,
    mut tx: client::Tx,
    mut rx: client::Rx,
    deliveries: Arc<Deliveries>,
    server: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (mut local, mut bytes) = (histogram(), 0);
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
        for message in client::messages(proto, t.as_str()) {
            if client::is_ping(proto, message) {
                let _ = tx.send(Frame::text(client::pong(proto))).await;
            } else if let Some(sent) = client::sent_at(proto, message) {
                let _ = local.record(now_micros().saturating_sub(sent).max(1));
                bytes += message.len() as u64;
            }
        }
    }
    deliveries.bytes.fetch_add(bytes, Ordering::Relaxed);
    let _ = deliveries.latency.lock().await.add(&local);
    let _ = deliveries.by_server[server].lock().await.add(&local);
}
