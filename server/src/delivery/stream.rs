//! The cross-node bus on a Redis stream, used instead of pub/sub when connection state
//! recovery is on with Redis (`RECOVERY_WINDOW_MS` and `REDIS_URL`).
//!
//! Recovery across nodes needs what pub/sub cannot give: one order of broadcasts that every
//! node delivers in (the entry ids are the offsets clients get), the broadcasts of the window
//! kept where any node can replay them, and no broadcast lost while Redis is away. So every
//! message is appended to the stream `<REDIS_KEY_PREFIX>-sio-stream`, and every node,
//! the sender included, reads it in order and applies it to its own sockets.
//!
//! - Publishing never waits for Redis: a message joins this node's outbox, which one task
//!   appends in order (pipelined, so a burst costs one round trip). While Redis is away the
//!   outbox keeps the messages and appends them when it is back; those older than the window
//!   by then are dropped with a warning (a client could not recover them anyway).
//! - An entry is `n` (the sending node), `s` (its sequence number on that node) and `m`
//!   (the message, as `bus` frames it). A batch whose reply was lost is appended again; readers
//!   skip an `(n, s)` they already applied, so it is applied once.
//! - The stream is trimmed to `RECOVERY_MAX_PACKETS` entries (approximately, `MAXLEN ~`) at
//!   each append and to the window (`MINID ~`) with each batch.
//! - Each node reads on a connection of its own (`XREAD BLOCK` holds its connection).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Value;
use switchyard_sio::Offset;
use tokio::sync::mpsc;

use crate::redis::{Conn, Redis};

/// Largest batch appended or read in one round trip.
const BATCH: usize = 512;

/// One stream entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id: the offset of what it carries.
    pub offset: Offset,
    /// The node that appended it.
    pub node: u64,
    /// Its sequence number on that node.
    pub seq: u64,
    /// The bus message.
    pub message: Vec<u8>,
}

/// This node's end of the stream: the outbox.
pub struct Stream {
    outbox: mpsc::UnboundedSender<(Instant, u64, Vec<u8>)>,
    seq: AtomicU64,
}

/// The stream's settings.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The stream's key.
    pub key: String,
    /// Entries kept at most.
    pub max_len: usize,
    /// How long entries are kept.
    pub window: Duration,
    /// Entries read ahead of being applied.
    pub buffer: usize,
    /// Longest pause before trying Redis again.
    pub pause: Duration,
    /// How long one read waits for new entries (shorter than the connection's timeout).
    pub block: Duration,
}

impl Stream {
    /// Starts appending for node `node` through `redis` and reading through `reader` (a
    /// connection of its own). Gives the stream, the entries to apply (in order, each once)
    /// and the offset reading starts after.
    pub async fn start(
        redis: Redis,
        mut reader: Conn,
        node: u64,
        config: StreamConfig,
    ) -> redis::RedisResult<(Self, mpsc::Receiver<Entry>, Offset)> {
        let start = last_id(&mut reader, &config.key).await?;
        let (outbox, pending) = mpsc::unbounded_channel();
        let (inbox, entries) = mpsc::channel(config.buffer);
        tokio::spawn(append(redis, config.clone(), node, pending));
        tokio::spawn(read(reader, config.clone(), start, inbox));
        Ok((Self { outbox, seq: AtomicU64::new(0) }, entries, start))
    }

    /// Queues `message` for the stream.
    pub fn publish(&self, message: Vec<u8>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        // The appending task lives as long as the server.
        let _ = self.outbox.send((Instant::now(), seq, message));
    }
}

/// The id of the stream's last entry, `0-0` when it has none.
async fn last_id(conn: &mut Conn, key: &str) -> redis::RedisResult<Offset> {
    let reply: Value = redis::cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(1).query_async(conn).await?;
    Ok(range_entries(reply).first().map_or(Offset { ms: 0, seq: 0 }, |e| e.offset))
}

/// Appends the outbox's messages in order, retrying while Redis is away.
async fn append(
    redis: Redis,
    config: StreamConfig,
    node: u64,
    mut pending: mpsc::UnboundedReceiver<(Instant, u64, Vec<u8>)>,
) {
    let mut batch: VecDeque<(Instant, u64, Vec<u8>)> = VecDeque::new();
    let mut failing = false;
    loop {
        if batch.is_empty() {
            match pending.recv().await {
                Some(first) => batch.push_back(first),
                None => return,
            }
        }
        while batch.len() < BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push_back(next),
                Err(_) => break,
            }
        }
        let stale = batch.iter().take_while(|(at, _, _)| at.elapsed() > config.window).count();
        if stale > 0 {
            tracing::warn!(
                dropped = stale,
                "bus messages older than the recovery window dropped: Redis was away longer"
            );
            batch.drain(..stale);
            continue;
        }
        let mut pipe = redis::pipe();
        for (_, seq, message) in &batch {
            pipe.cmd("XADD")
                .arg(&config.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(config.max_len)
                .arg("*")
                .arg("n")
                .arg(node)
                .arg("s")
                .arg(*seq)
                .arg("m")
                .arg(message.as_slice())
                .ignore();
        }
        pipe.cmd("XTRIM").arg(&config.key).arg("MINID").arg("~").arg(min_id(config.window)).ignore();
        let mut conn = redis.conn();
        match redis.run(pipe.query_async::<()>(&mut conn)).await {
            Ok(()) => {
                if failing {
                    tracing::info!("bus stream reachable again; the queued messages are appended");
                    failing = false;
                }
                batch.clear();
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, queued = batch.len(), "cannot append to the bus stream; keeping the messages until Redis is back");
                    failing = true;
                }
                tokio::time::sleep(config.pause).await;
            }
        }
    }
}

/// The oldest id the window keeps.
fn min_id(window: Duration) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}-0", now.saturating_sub(window).as_millis())
}

/// Reads the stream after `cursor`, handing each entry to `inbox` once, in order.
async fn read(mut conn: Conn, config: StreamConfig, mut cursor: Offset, inbox: mpsc::Sender<Entry>) {
    let mut applied: HashMap<u64, u64> = HashMap::new();
    let mut failing = false;
    loop {
        let call = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(config.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&config.key)
            .arg(cursor.to_string())
            .query_async::<Value>(&mut conn)
            .await;
        match call {
            Ok(reply) => {
                if failing {
                    tracing::info!("bus stream readable again");
                    failing = false;
                }
                for entry in read_entries(reply) {
                    cursor = entry.offset;
                    if fresh(&mut applied, &entry) && inbox.send(entry).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                if inbox.is_closed() {
                    return;
                }
                if !failing {
                    tracing::warn!(error = %e, "cannot read the bus stream; retrying");
                    failing = true;
                }
                tokio::time::sleep(config.pause).await;
            }
        }
    }
}

/// True the first time `(node, seq)` is seen, remembered in `applied`.
pub fn fresh(applied: &mut HashMap<u64, u64>, entry: &Entry) -> bool {
    let last = applied.entry(entry.node).or_default();
    if entry.seq <= *last {
        return false;
    }
    *last = entry.seq;
    true
}

/// The entries of an `XRANGE` or `XREVRANGE` reply, skipping any that are not ours.
pub fn range_entries(reply: Value) -> Vec<Entry> {
    let Value::Array(items) = reply else { return Vec::new() };
    items.into_iter().filter_map(entry).collect()
}

/// The entries of an `XREAD` reply for one stream: `[[name, entries]]` (RESP2) or
/// `{name: entries}` (RESP3); nothing when it timed out.
fn read_entries(reply: Value) -> Vec<Entry> {
    let list = match reply {
        Value::Map(mut streams) if !streams.is_empty() => streams.swap_remove(0).1,
        Value::Array(mut streams) if !streams.is_empty() => match streams.swap_remove(0) {
            Value::Array(mut pair) if pair.len() == 2 => pair.swap_remove(1),
            _ => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    range_entries(list)
}

fn entry(value: Value) -> Option<Entry> {
    let Value::Array(mut pair) = value else { return None };
    if pair.len() != 2 {
        return None;
    }
    let fields = pair.pop()?;
    let id: String = redis::from_redis_value(pair.pop()?).ok()?;
    let offset = id.parse().ok()?;
    let fields: Vec<Vec<u8>> = redis::from_redis_value(fields).ok()?;
    let (mut node, mut seq, mut message) = (None, None, None);
    let mut it = fields.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        match name.as_slice() {
            b"n" => node = std::str::from_utf8(&value).ok()?.parse().ok(),
            b"s" => seq = std::str::from_utf8(&value).ok()?.parse().ok(),
            b"m" => message = Some(value),
            _ => {}
        }
    }
    Some(Entry { offset, node: node?, seq: seq?, message: message? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn raw(id: &str, node: &str, seq: &str, message: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![bulk("n"), bulk(node), bulk("s"), bulk(seq), bulk("m"), bulk(message)]),
        ])
    }

    fn decoded(ms: u64, node: u64, seq: u64, message: &str) -> Entry {
        Entry { offset: Offset { ms, seq: 0 }, node, seq, message: message.as_bytes().to_vec() }
    }

    #[test]
    fn reads_ranges_and_both_protocols_xread_replies() {
        let list = || Value::Array(vec![raw("7-0", "1", "1", "a"), raw("8-0", "1", "2", "b")]);
        let want = vec![decoded(7, 1, 1, "a"), decoded(8, 1, 2, "b")];
        assert_eq!(range_entries(list()), want);
        assert_eq!(read_entries(Value::Map(vec![(bulk("sy-sio-stream"), list())])), want);
        assert_eq!(read_entries(Value::Array(vec![Value::Array(vec![bulk("sy-sio-stream"), list()])])), want);
        // A read that timed out.
        assert_eq!(read_entries(Value::Nil), vec![]);
        // Entries that are not ours are skipped.
        let odd = Value::Array(vec![raw("9-0", "x", "1", "c"), Value::Array(vec![bulk("10-0"), Value::Array(vec![])])]);
        assert_eq!(range_entries(odd), vec![]);
    }

    #[test]
    fn an_entry_appended_again_is_applied_once() {
        let mut applied = HashMap::new();
        assert!(fresh(&mut applied, &decoded(1, 1, 1, "a")));
        assert!(fresh(&mut applied, &decoded(2, 2, 1, "b")), "another node's numbering");
        assert!(fresh(&mut applied, &decoded(3, 1, 2, "c")));
        // The batch 1..=2 of node 1 appended again after a lost reply.
        assert!(!fresh(&mut applied, &decoded(4, 1, 1, "a")));
        assert!(!fresh(&mut applied, &decoded(5, 1, 2, "c")));
        assert!(fresh(&mut applied, &decoded(6, 1, 3, "d")));
    }
}
