//! Recovery sessions in Redis: the transport's [`SessionStore`] when recovery is on with
//! `REDIS_URL`, so a client recovers on whichever node it reconnects to, also after the node
//! that held its socket was killed.
//!
//! A session is the hash `<prefix>:recovery:<ns>:<pid>` with `owner` (the user), `sock` (the
//! socket id) and `s` (`{"socket": <sid>, "rooms": [...]}`). It is written when its socket joins and whenever its
//! rooms change, and while the socket is connected it lives `window × 1.5`, re-written by
//! its node every half window: a node killed with SIGKILL writes nothing more, so its
//! sessions stay between one and one and a half windows. A socket whose connection
//! dropped gets `window` more; one whose client left is deleted. Restoring takes the hash
//! (a script: only for its owner, and once). The broadcasts come from the bus's stream
//! ([`super::stream`]).
//!
//! Writes never hold a socket up: they go through a queue to one task, which pipelines them.
//! A write lost to a Redis outage is made good by the next re-write of the live sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_sio::{BoxFuture, Kept, Missed, Offset, Session, SessionStore, Sid};
use tokio::sync::mpsc;

use super::bus::{self, Op};
use super::stream;
use crate::redis::Redis;

/// Takes a session for its owner only, once.
const TAKE: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner ~= ARGV[1] then return false end
local session = redis.call('HGET', KEYS[1], 's')
redis.call('DEL', KEYS[1])
return session
";

/// Ends a session (`ARGV[2]`: keep it this many ms; 0: delete it), unless a later socket
/// of the same `pid` saved it since: a socket restored while the old one was still thought
/// connected must not lose its session when the old one's end is noticed.
const END: &str = r"
if redis.call('HGET', KEYS[1], 'sock') ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
";

/// The stored form of a session.
#[derive(Serialize, Deserialize)]
struct Stored {
    socket: String,
    rooms: Vec<String>,
}

enum Write {
    Save { key: String, socket: String, owner: String, session: String },
    End { key: String, socket: String, keep: bool },
}

/// A live session as its node keeps it for the re-writes.
struct Live {
    socket: String,
    owner: String,
    session: String,
}

/// Sessions in Redis, broadcasts in the bus's stream.
pub struct RedisSessions {
    redis: Redis,
    stream: String,
    max_len: usize,
    writes: mpsc::UnboundedSender<Write>,
    take: redis::Script,
}

impl RedisSessions {
    /// Sessions kept for `window` after their socket dropped, next to the stream `stream`
    /// of at most `max_len` entries.
    pub fn start(redis: Redis, stream: String, max_len: usize, window: Duration) -> Arc<Self> {
        let (writes, queue) = mpsc::unbounded_channel();
        tokio::spawn(write(redis.clone(), window, queue));
        Arc::new(Self { redis, stream, max_len, writes, take: redis::Script::new(TAKE) })
    }

    fn key(&self, ns: &str, pid: Sid) -> String {
        self.redis.key(&["recovery", ns, &pid.to_string()])
    }
}

impl SessionStore for RedisSessions {
    fn save(&self, ns: &str, pid: Sid, owner: &str, session: Session) {
        let stored =
            Stored { socket: session.socket.to_string(), rooms: session.rooms.iter().map(|r| r.to_string()).collect() };
        let Ok(session) = serde_json::to_string(&stored) else { return };
        let (key, socket, owner) = (self.key(ns, pid), stored.socket, owner.to_owned());
        let _ = self.writes.send(Write::Save { key, socket, owner, session });
    }

    fn end(&self, ns: &str, pid: Sid, socket: Sid, keep: bool) {
        let _ = self.writes.send(Write::End { key: self.key(ns, pid), socket: socket.to_string(), keep });
    }

    fn take(&self, ns: &str, pid: Sid, owner: &str) -> BoxFuture<Option<Session>> {
        let key = self.key(ns, pid);
        let (redis, script, owner) = (self.redis.clone(), self.take.clone(), owner.to_owned());
        Box::pin(async move {
            let mut conn = redis.conn();
            let mut call = script.key(&key);
            call.arg(&owner);
            let stored: Option<String> = match redis.run(call.invoke_async(&mut conn)).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(error = %e, "recovery: cannot read the session; the client joins as new");
                    return None;
                }
            };
            let stored: Stored = serde_json::from_str(&stored?).ok()?;
            Some(Session {
                socket: stored.socket.parse().ok()?,
                rooms: stored.rooms.into_iter().map(Into::into).collect(),
            })
        })
    }

    fn after(&self, ns: &str, offset: Offset) -> BoxFuture<Option<Missed>> {
        let (redis, key, ns, max_len) = (self.redis.clone(), self.stream.clone(), ns.to_owned(), self.max_len);
        Box::pin(async move {
            let id = offset.to_string();
            let mut pipe = redis::pipe();
            // The claimed entry itself, then what follows it.
            pipe.cmd("XRANGE").arg(&key).arg(&id).arg(&id);
            pipe.cmd("XRANGE").arg(&key).arg(format!("({id}")).arg("+").arg("COUNT").arg(max_len);
            let mut conn = redis.conn();
            let (own, rest): (redis::Value, redis::Value) = match redis.run(pipe.query_async(&mut conn)).await {
                Ok(replies) => replies,
                Err(e) => {
                    tracing::warn!(error = %e, "recovery: cannot read the bus stream; the client joins as new");
                    return None;
                }
            };
            if stream::range_entries(own).is_empty() {
                return None;
            }
            let entries = stream::range_entries(rest);
            let through = entries.last().map_or(offset, |e| e.offset);
            let mut seen = HashMap::new();
            let kept = entries
                .into_iter()
                .filter(|entry| stream::fresh(&mut seen, entry))
                .filter_map(|entry| match bus::decode(&entry.message)? {
                    Op::Emit { ns: of, room, except, origin, packet } if of == ns => Some(Kept {
                        offset: entry.offset,
                        room,
                        except,
                        skip: origin.and_then(|o| o.parse().ok()),
                        text: packet,
                    }),
                    _ => None,
                })
                .collect();
            Some(Missed { kept, through })
        })
    }
}

/// Applies the queued writes, pipelined, and re-writes the live sessions every half window.
async fn write(redis: Redis, window: Duration, mut queue: mpsc::UnboundedReceiver<Write>) {
    let refresh = window / 2;
    let live_ttl = (window + refresh).as_millis() as u64;
    let window_ms = window.as_millis() as u64;
    // Each live session's last state, for the re-writes.
    let mut live: HashMap<String, Live> = HashMap::new();
    let mut tick = tokio::time::interval(refresh.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut pipe = redis::pipe();
        let save = |pipe: &mut redis::Pipeline, key: &str, live: &Live| {
            let Live { socket, owner, session } = live;
            pipe.cmd("HSET").arg(key).arg("sock").arg(socket).arg("owner").arg(owner).arg("s").arg(session).ignore();
            pipe.cmd("PEXPIRE").arg(key).arg(live_ttl).ignore();
        };
        tokio::select! {
            write = queue.recv() => {
                let Some(first) = write else { return };
                let mut next = Some(first);
                let mut count = 0;
                while let Some(write) = next.take() {
                    match write {
                        Write::Save { key, socket, owner, session } => {
                            let session = Live { socket, owner, session };
                            save(&mut pipe, &key, &session);
                            live.insert(key, session);
                        }
                        Write::End { key, socket, keep } => {
                            let ms = if keep { window_ms } else { 0 };
                            pipe.cmd("EVAL").arg(END).arg(1).arg(&key).arg(&socket).arg(ms).ignore();
                            if live.get(&key).is_some_and(|l| l.socket == socket) {
                                live.remove(&key);
                            }
                        }
                    }
                    count += 1;
                    if count < 512 {
                        next = queue.try_recv().ok();
                    }
                }
            }
            _ = tick.tick() => {
                // In pipelines of a bounded size: a node may hold many thousand sessions.
                let sessions: Vec<_> = live.iter().collect();
                for chunk in sessions.chunks(REWRITE_BATCH) {
                    let mut pipe = redis::pipe();
                    for (key, session) in chunk {
                        save(&mut pipe, key, session);
                    }
                    run(&redis, pipe).await;
                }
                continue;
            }
        }
        run(&redis, pipe).await;
    }
}

/// Sessions re-written per round trip.
const REWRITE_BATCH: usize = 1_000;

async fn run(redis: &Redis, pipe: redis::Pipeline) {
    let mut conn = redis.conn();
    if let Err(e) = redis.run(pipe.query_async::<()>(&mut conn)).await {
        tracing::warn!(error = %e, "recovery: cannot write sessions; the next re-write retries");
    }
}
