//! Connection state recovery, as the official client's `connectionStateRecovery` (v4.6+)
//! expects it: the join answer carries a private session id (`pid`), every event broadcast to
//! rooms carries an offset as its last argument, and a client that lost its connection joins
//! again with `{pid, offset}` in its auth. Within the window, its new socket gets the rooms of
//! the old one and every broadcast it missed (after that offset, to those rooms), in order,
//! and the same `pid`, which the client reads as `socket.recovered === true`.
//!
//! Kept per namespace, in this node's memory: the broadcasts of the window (trimmed by age and
//! count), the `pid` of each connected socket, and the rooms of each socket that dropped
//! without leaving. One lock covers recording a broadcast and writing it to its room, and
//! restoring a socket and replaying to it: a broadcast is then either replayed or written
//! live to the restored socket, never both nor neither, and never out of order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sid::Sid;
use crate::socket::{DisconnectReason, To};

/// The settings of connection state recovery ([`crate::Config::recovery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// How long a socket's rooms and the broadcasts it misses are kept after its connection
    /// dropped (Node's `maxDisconnectionDuration`, two minutes by default).
    pub max_disconnection: Duration,
    /// At most this many broadcasts are kept per namespace, whatever their age: a client
    /// that missed more than that recovers nothing (`recovered` false).
    pub max_packets: usize,
}

impl Default for Recovery {
    fn default() -> Self {
        Self { max_disconnection: Duration::from_secs(120), max_packets: 10_000 }
    }
}

/// Where a broadcast stands in the order a namespace's broadcasts are delivered in: the
/// offset a client gets with each one and sends back to recover. On one node it is a counter
/// (`7`); across nodes it is the id the bus gave the broadcast (a Redis stream id,
/// `1733400000000-3`). Ordered as the broadcasts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset {
    /// The high part (a stream id's milliseconds; 0 for a counter).
    pub ms: u64,
    /// The low part (a stream id's sequence; the counter itself).
    pub seq: u64,
}

impl std::fmt::Display for Offset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ms {
            0 => write!(f, "{}", self.seq),
            ms => write!(f, "{ms}-{}", self.seq),
        }
    }
}

impl std::str::FromStr for Offset {
    type Err = std::num::ParseIntError;

    /// `7` or `1733400000000-3`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('-') {
            Some((ms, seq)) => Ok(Self { ms: ms.parse()?, seq: seq.parse()? }),
            None => Ok(Self { ms: 0, seq: text.parse()? }),
        }
    }
}

/// What a client claims in its join's auth: the `pid` it was given and the offset of the last
/// broadcast it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The session it claims.
    pub pid: Sid,
    /// The last broadcast it got.
    pub offset: Offset,
}

impl Claim {
    /// The claim in a join's auth, if it holds a well-formed one (anything else is no claim:
    /// the client joins as new).
    pub fn from_auth(auth: Option<&Value>) -> Option<Self> {
        let auth = auth?;
        let pid = auth.get("pid")?.as_str()?.parse().ok()?;
        let offset = auth.get("offset")?.as_str()?.parse().ok()?;
        Some(Self { pid, offset })
    }
}

/// A namespace's recovery state on this node.
pub(crate) struct Log {
    config: Recovery,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The offset the next broadcast gets.
    next: u64,
    /// The broadcasts of the window, oldest first, their offsets consecutive.
    packets: VecDeque<Stored>,
    /// The `pid` of each connected socket, by socket id.
    live: HashMap<Sid, Sid>,
    /// Sockets that dropped, by `pid`.
    parked: HashMap<Sid, Parked>,
    /// When each was parked, oldest first, to expire them without a scan.
    parked_order: VecDeque<(Instant, Sid)>,
}

struct Stored {
    offset: u64,
    at: Instant,
    room: Arc<str>,
    except: Option<Arc<str>>,
    skip: Option<Sid>,
    text: Arc<str>,
}

struct Parked {
    socket: Sid,
    rooms: Vec<Arc<str>>,
    owner: Option<String>,
    at: Instant,
}

/// A socket restored from a parked one: its `pid` and the broadcasts to replay.
pub(crate) struct Restored {
    /// The `pid` the join answer carries (the old one when recovered, else a new one).
    pub pid: Sid,
    /// True when the rooms were restored and `missed` is complete.
    pub recovered: bool,
    /// The rooms to join again.
    pub rooms: Vec<Arc<str>>,
    /// The broadcasts missed, oldest first.
    pub missed: Vec<Arc<str>>,
}

impl Log {
    pub fn new(config: Recovery) -> Self {
        Self { config, inner: Mutex::new(Inner::default()) }
    }

    /// Locks the log: broadcasts and restores are serialised by it (see the module header).
    pub fn lock(&self) -> LogGuard<'_> {
        LogGuard { config: self.config, inner: self.inner.lock().unwrap_or_else(|p| p.into_inner()) }
    }
}

/// The locked log.
pub(crate) struct LogGuard<'a> {
    config: Recovery,
    inner: MutexGuard<'a, Inner>,
}

impl LogGuard<'_> {
    /// Gives an event broadcast to `to` its offset (appended as its last argument) and keeps
    /// it for the window. Text that is not an event array (`…]`) goes out as it came.
    pub fn record(&mut self, to: To<'_>, text: String) -> Arc<str> {
        let Some(body) = text.strip_suffix(']') else { return text.into() };
        let now = Instant::now();
        self.expire(now);
        let inner = &mut *self.inner;
        let offset = inner.next;
        inner.next += 1;
        let text: Arc<str> = format!("{body},\"{offset}\"]").into();
        inner.packets.push_back(Stored {
            offset,
            at: now,
            room: to.room.into(),
            except: to.except.map(Into::into),
            skip: to.skip,
            text: text.clone(),
        });
        if inner.packets.len() > self.config.max_packets {
            inner.packets.pop_front();
        }
        text
    }

    /// Decides a join: restores the parked socket `claim` names if it is still kept, belongs
    /// to `owner` and every broadcast after its offset is still here and fits in `limit`
    /// bytes; otherwise gives the socket a new `pid`. Either way, `socket` is registered.
    pub fn join(&mut self, socket: Sid, claim: Option<Claim>, owner: Option<&str>, limit: usize) -> Restored {
        let now = Instant::now();
        self.expire(now);
        let inner = &mut *self.inner;
        let restored = claim.and_then(|claim| {
            let parked = inner.parked.get(&claim.pid)?;
            if parked.owner.as_deref() != owner {
                tracing::debug!(pid = %claim.pid, "recovery refused: the session belongs to another owner");
                return None;
            }
            let first = inner.packets.front().map_or(inner.next, |p| p.offset);
            // The client's last offset must be one this node gave, and nothing after it
            // may have been trimmed.
            let Offset { ms: 0, seq: offset } = claim.offset else { return None };
            if offset >= inner.next || offset + 1 < first {
                return None;
            }
            let missed: Vec<Arc<str>> = inner
                .packets
                .iter()
                .filter(|p| {
                    p.offset > offset && missed_by(&parked.rooms, parked.socket, &p.room, p.except.as_deref(), p.skip)
                })
                .map(|p| p.text.clone())
                .collect();
            if missed.iter().map(|t| t.len()).sum::<usize>() > limit {
                return None;
            }
            let parked = inner.parked.remove(&claim.pid).expect("found above");
            Some(Restored { pid: claim.pid, recovered: true, rooms: parked.rooms, missed })
        });
        let restored = restored.unwrap_or_else(|| Restored {
            pid: Sid::random(),
            recovered: false,
            rooms: Vec::new(),
            missed: Vec::new(),
        });
        inner.live.insert(socket, restored.pid);
        restored
    }

    /// A connected socket leaves: when its connection dropped (rather than the client
    /// leaving) and `kept` is given, its rooms (and its owner) are kept for the window under
    /// its `pid`.
    pub fn leave(&mut self, socket: Sid, reason: DisconnectReason, kept: Option<(Vec<Arc<str>>, Option<String>)>) {
        let now = Instant::now();
        self.expire(now);
        let inner = &mut *self.inner;
        let Some(pid) = inner.live.remove(&socket) else { return };
        let Some((rooms, owner)) = kept.filter(|_| recoverable(reason)) else { return };
        inner.parked.insert(pid, Parked { socket, rooms, owner, at: now });
        inner.parked_order.push_back((now, pid));
    }

    /// Drops the broadcasts and parked sockets older than the window.
    fn expire(&mut self, now: Instant) {
        let window = self.config.max_disconnection;
        let inner = &mut *self.inner;
        let old = |at: Instant| now.saturating_duration_since(at) > window;
        while inner.packets.front().is_some_and(|p| old(p.at)) {
            inner.packets.pop_front();
        }
        while let Some(&(at, pid)) = inner.parked_order.front() {
            if !old(at) {
                break;
            }
            inner.parked_order.pop_front();
            // Restored and dropped again since: that later parking has its own entry.
            if inner.parked.get(&pid).is_some_and(|p| p.at == at) {
                inner.parked.remove(&pid);
            }
        }
    }
}

/// True when a broadcast to `room` (skipping the sockets of `except` and the socket `skip`)
/// would have reached socket `socket`, a member of `rooms`.
pub(crate) fn missed_by(rooms: &[Arc<str>], socket: Sid, room: &str, except: Option<&str>, skip: Option<Sid>) -> bool {
    skip != Some(socket)
        && rooms.iter().any(|r| &**r == room)
        && !except.is_some_and(|e| rooms.iter().any(|r| &**r == e))
}

/// A connection that dropped is recoverable; a client that left its namespace is not.
pub(crate) fn recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::HeartbeatTimeout
            | DisconnectReason::ServerShutdown
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn to(room: &str) -> To<'_> {
        To { room, except: None, skip: None }
    }

    #[test]
    fn offsets_are_appended_as_the_last_argument() {
        let log = Log::new(Recovery::default());
        let mut guard = log.lock();
        assert_eq!(&*guard.record(to("r"), r#"42/chat,["m",1]"#.into()), r#"42/chat,["m",1,"0"]"#);
        assert_eq!(&*guard.record(to("r"), r#"42["m"]"#.into()), r#"42["m","1"]"#);
    }

    #[test]
    fn claims_need_a_pid_and_an_offset() {
        let pid = Sid::random();
        let claim = Claim::from_auth(Some(&json!({ "pid": pid.to_string(), "offset": "4", "token": "t" })));
        assert_eq!(claim, Some(Claim { pid, offset: Offset { ms: 0, seq: 4 } }));
        let stream = Claim::from_auth(Some(&json!({ "pid": pid.to_string(), "offset": "1733400000000-3" })));
        assert_eq!(stream.map(|c| c.offset), Some(Offset { ms: 1_733_400_000_000, seq: 3 }));
        assert_eq!(stream.map(|c| c.offset.to_string()).as_deref(), Some("1733400000000-3"));
        assert!(Offset { ms: 1, seq: 0 } > Offset { ms: 0, seq: 9 });
        assert_eq!(Claim::from_auth(Some(&json!({ "pid": pid.to_string() }))), None);
        assert_eq!(Claim::from_auth(Some(&json!({ "pid": "forged", "offset": "1" }))), None);
        assert_eq!(Claim::from_auth(None), None);
    }

    #[test]
    fn restores_rooms_and_missed_broadcasts_once() {
        let log = Log::new(Recovery::default());
        let (old, new) = (Sid::random(), Sid::random());
        let mut guard = log.lock();
        let pid = guard.join(old, None, Some("alice"), usize::MAX).pid;
        guard.record(to("a"), r#"42["m",0]"#.into());
        guard.leave(old, DisconnectReason::TransportClose, Some((vec!["a".into()], Some("alice".into()))));
        guard.record(to("a"), r#"42["m",1]"#.into());
        guard.record(to("b"), r#"42["m",2]"#.into());
        guard.record(To { room: "a", except: None, skip: Some(old) }, r#"42["m",3]"#.into());
        // Another owner recovers nothing, and does not spend the session.
        let claim = Some(Claim { pid, offset: Offset { ms: 0, seq: 0 } });
        assert!(!guard.join(Sid::random(), claim, Some("mallory"), usize::MAX).recovered);
        let restored = guard.join(new, claim, Some("alice"), usize::MAX);
        assert!(restored.recovered);
        assert_eq!(restored.pid, pid);
        assert_eq!(restored.rooms, vec![Arc::<str>::from("a")]);
        assert_eq!(restored.missed, vec![Arc::<str>::from(r#"42["m",1,"1"]"#)]);
        assert!(!guard.join(Sid::random(), claim, Some("alice"), usize::MAX).recovered);
    }

    #[test]
    fn a_client_that_left_is_not_kept() {
        let log = Log::new(Recovery::default());
        let old = Sid::random();
        let mut guard = log.lock();
        let pid = guard.join(old, None, None, usize::MAX).pid;
        guard.record(to("a"), r#"42["m"]"#.into());
        guard.leave(old, DisconnectReason::ClientNamespaceDisconnect, Some((vec!["a".into()], None)));
        assert!(
            !guard
                .join(Sid::random(), Some(Claim { pid, offset: Offset { ms: 0, seq: 0 } }), None, usize::MAX)
                .recovered
        );
    }

    #[test]
    fn trimmed_broadcasts_end_recovery() {
        let log = Log::new(Recovery { max_packets: 2, ..Recovery::default() });
        let old = Sid::random();
        let mut guard = log.lock();
        let pid = guard.join(old, None, None, usize::MAX).pid;
        guard.record(to("a"), r#"42["m"]"#.into());
        guard.leave(old, DisconnectReason::TransportError, Some((vec!["a".into()], None)));
        for _ in 0..3 {
            guard.record(to("a"), r#"42["m"]"#.into());
        }
        assert!(
            !guard
                .join(Sid::random(), Some(Claim { pid, offset: Offset { ms: 0, seq: 0 } }), None, usize::MAX)
                .recovered
        );
    }
}
