//! `chat`: a realistic mix. Users are paired into direct rooms and grouped into group rooms;
//! each user acts `rate` times a second at random: a message to one of its two rooms (60%),
//! marking the newest message it received read (20%), or typing (20%). Every action asks for
//! an ack. Reports acked actions/s, ack latency, `newMessage` deliveries with their latency,
//! and drops: deliveries owed by acked messages that never arrived. Actions the server refused
//! as overloaded are counted apart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures::{SinkExt, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::client::{self, Packet, Proto, decode};
use crate::{Args, now_micros, source, token, total_rss};

/// How long users keep reading after the last action, so in-flight acks and deliveries land.
const GRACE: Duration = Duration::from_secs(2);

/// A room as one of its members sees it.
#[derive(Clone)]
struct Room {
    id: String,
    members: u64,
}

/// Counters shared by every user.
#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    expected: AtomicU64,
    delivered: AtomicU64,
    receipts: AtomicU64,
    typing: AtomicU64,
}

/// Latencies in µs, merged from every user at the end.
struct Latencies {
    ack: Histogram<u64>,
    delivery: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Runs the mix for `duration` seconds and reports it.
pub async fn chat(args: &Args, users: usize, group: usize, rate: f64, duration: u64) -> anyhow::Result<Value> {
    ensure!(args.proto == Proto::Socketio, "chat needs a Socket.IO server");
    ensure!(
        group >= 2 && users >= group && users.is_multiple_of(group) && users.is_multiple_of(2),
        "users must be even and a multiple of --group (≥ 2)"
    );
    ensure!(rate > 0.0, "--rate must be positive");
    let before = total_rss(args);
    let names: Vec<String> = (0..users).map(|i| format!("chat-{i}")).collect();
    let mut conns: Vec<(client::Tx, client::Rx)> = futures::stream::iter(0..users)
        .map(|i| {
            let server = args.server[i % args.server.len()];
            let tok = token(&args.secret, &names[i]);
            async move { client::connect(Proto::Socketio, server, source(args, i), &tok, "").await }
        })
        .buffered(200)
        .try_collect()
        .await?;

    // Every user is in one direct room (with its neighbour) and one group room.
    let mut rooms: Vec<Vec<Room>> = vec![vec![]; users];
    for pair in (0..users).step_by(2) {
        let id = create_room(&mut conns[pair], json!({ "participantIds": [names[pair + 1]] })).await?;
        for member in [pair, pair + 1] {
            rooms[member].push(Room { id: id.clone(), members: 2 });
        }
    }
    for first in (0..users).step_by(group) {
        let payload = json!({ "participantIds": names[first + 1..first + group], "name": format!("group {first}") });
        let id = create_room(&mut conns[first], payload).await?;
        for member in &mut rooms[first..first + group] {
            member.push(Room { id: id.clone(), members: group as u64 });
        }
    }
    let setup_rss = total_rss(args);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let tally = Arc::new(Tally::default());
    let latencies = Arc::new(Mutex::new(Latencies { ack: histogram(), delivery: histogram() }));
    let started = Instant::now();
    let end = started + Duration::from_secs(duration);
    let period = Duration::from_secs_f64(1.0 / rate);
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(rooms)
        .map(|((tx, rx), rooms)| tokio::spawn(act(tx, rx, rooms, period, end, tally.clone(), latencies.clone())))
        .collect();
    for task in tasks {
        task.await?;
    }
    let l = latencies.lock().await;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (expected, delivered) = (get(&tally.expected), get(&tally.delivered));
    Ok(json!({
        "scenario": "chat", "users": users, "group": group, "rate_per_user": rate,
        "acked": get(&tally.acked), "ack_errors": get(&tally.errors), "refused": get(&tally.refused),
        "actions_per_sec": get(&tally.acked) as f64 / duration as f64,
        "ack_p50_ms": ms(&l.ack, 0.5), "ack_p99_ms": ms(&l.ack, 0.99), "ack_p999_ms": ms(&l.ack, 0.999),
        "expected": expected, "delivered": delivered, "drops": expected.saturating_sub(delivered),
        "p50_ms": ms(&l.delivery, 0.5), "p99_ms": ms(&l.delivery, 0.99), "p999_ms": ms(&l.delivery, 0.999),
        "receipts_seen": get(&tally.receipts), "typing_seen": get(&tally.typing),
        "rss_before_kib": before, "rss_setup_kib": setup_rss, "rss_end_kib": total_rss(args),
    }))
}

/// Asks for a room on `conn` and returns its id from the ack.
async fn create_room(conn: &mut (client::Tx, client::Rx), payload: Value) -> anyhow::Result<String> {
    let (tx, rx) = conn;
    tx.send(Frame::text(client::event(1, "getOrCreateRoom", &payload))).await?;
    while let Some(frame) = rx.next().await {
        if let Frame::Text(t) = frame?
            && let Packet::Ack(1, v) = decode(Proto::Socketio, t.as_str())
        {
            return Ok(v["data"]["room"]["id"].as_str().context("room id in the ack")?.to_owned());
        }
    }
    anyhow::bail!("closed before the room ack")
}

/// What an ack id was for.
enum Action {
    Send { members: u64 },
    Other,
}

/// One user: acts every `period` until `end`, keeps reading until `end + GRACE`.
async fn act(
    mut tx: client::Tx,
    mut rx: client::Rx,
    rooms: Vec<Room>,
    period: Duration,
    end: Instant,
    tally: Arc<Tally>,
    latencies: Arc<Mutex<Latencies>>,
) {
    let (mut ack_hist, mut delivery_hist) = (histogram(), histogram());
    let mut pending: HashMap<u64, (Action, Instant)> = HashMap::new();
    let mut newest: HashMap<String, String> = HashMap::new();
    let mut next_id = 10;
    // Users start at random points of the period, so they do not act in lockstep.
    let first = tokio::time::Instant::now() + period.mul_f64(rand::random::<f64>());
    let mut tick = tokio::time::interval_at(first, period);
    let stop = tokio::time::sleep_until((end + GRACE).into());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick(), if Instant::now() < end => {
                let room = &rooms[rand::random_range(0..rooms.len())];
                let roll = rand::random_range(0..10);
                let (name, payload, action) = match newest.get(&room.id) {
                    Some(id) if (6..8).contains(&roll) => {
                        ("markMessagesRead", json!({ "roomId": room.id, "messageId": id }), Action::Other)
                    }
                    _ if roll >= 8 => ("typing", json!({ "roomId": room.id, "isTyping": true }), Action::Other),
                    _ => {
                        let content = format!("{}|hello from the chat mix", now_micros());
                        ("sendMessage", json!({ "roomId": room.id, "content": content }), Action::Send { members: room.members })
                    }
                };
                next_id += 1;
                pending.insert(next_id, (action, Instant::now()));
                if tx.send(Frame::text(client::event(next_id, name, &payload))).await.is_err() {
                    break;
                }
            }
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else { break };
                let Frame::Text(t) = frame else { continue };
                match decode(Proto::Socketio, t.as_str()) {
                    Packet::Ping => {
                        let _ = tx.send(Frame::text(client::PONG)).await;
                    }
                    Packet::Ack(id, v) => {
                        let Some((action, at)) = pending.remove(&id) else { continue };
                        if client::is_refusal(&v) {
                            tally.refused.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if v["ok"] != json!(true) {
                            if tally.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("action failed: {v}");
                            }
                            continue;
                        }
                        tally.acked.fetch_add(1, Ordering::Relaxed);
                        let _ = ack_hist.record(at.elapsed().as_micros().max(1) as u64);
                        if let Action::Send { members } = action {
                            tally.expected.fetch_add(members - 1, Ordering::Relaxed);
                        }
                    }
                    Packet::Event(name, data) => match name.as_str() {
                        "newMessage" => {
                            tally.delivered.fetch_add(1, Ordering::Relaxed);
                            if let Some(sent) = client::sent_at(Proto::Socketio, t.as_str()) {
                                let _ = delivery_hist.record(now_micros().saturating_sub(sent).max(1));
                            }
                            if let (Some(room), Some(id)) = (data["roomId"].as_str(), data["id"].as_str()) {
                                newest.insert(room.to_owned(), id.to_owned());
                            }
                        }
                        "messagesRead" => {
                            tally.receipts.fetch_add(1, Ordering::Relaxed);
                        }
                        "userTyping" => {
                            tally.typing.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    },
                    Packet::Other => {}
                }
            }
            _ = &mut stop => break,
        }
    }
    let mut l = latencies.lock().await;
    let _ = l.ack.add(&ack_hist);
    let _ = l.delivery.add(&delivery_hist);
}
