//! Connection state recovery across nodes: the seam to a store every node shares
//! ([`SessionStore`], given with [`crate::Builder::session_store`]), and what a namespace
//! keeps to replay from it without a gap or a duplicate.
//!
//! On one node the `recovery` module's log gives each broadcast its offset and keeps it. Across
//! nodes the offsets come from the bus that carries broadcasts to every node in one order (a
//! Redis stream: its entry ids), the broadcasts are kept there, and each node applies them with
//! [`crate::Namespace::broadcast_at`]. The store keeps each socket's session (its rooms and
//! owner) from its join on, not only once its connection dropped, so a socket whose node was
//! killed can be restored by another one.
//!
//! Restoring on a node: the store gives the missed broadcasts up to where it is, then, under
//! the lock [`crate::Namespace::broadcast_at`] takes, the node replays those up to the last one
//! it delivered live (its cursor) and puts the socket in its rooms; the bus delivers every later
//! one live. When the node delivered past what the store gave, the store is asked again for the
//! rest. So each broadcast reaches the restored socket once, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::recovery::{Offset, missed_by};
use crate::sid::Sid;
use crate::socket::BoxFuture;

/// A broadcast as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Its offset (the bus's id for it).
    pub offset: Offset,
    /// The room it went to.
    pub room: String,
    /// The room whose sockets it skipped.
    pub except: Option<String>,
    /// The socket it skipped (the one that caused it).
    pub skip: Option<Sid>,
    /// Its Engine.IO packet text, without the offset.
    pub text: String,
}

/// A socket's session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The socket's id (broadcasts that skipped it are not replayed).
    pub socket: Sid,
    /// Its rooms.
    pub rooms: Vec<Arc<str>>,
}

/// Where sessions and broadcasts are kept for recovery across nodes. `save` and `end` are
/// called on the socket's path and must not wait: an implementation queues the write.
pub trait SessionStore: Send + Sync + 'static {
    /// The session `pid` of namespace `ns` (of `owner`) is live with `session` (it joined, or
    /// its rooms changed): keep it for as long as its node lives, and the window after.
    fn save(&self, ns: &str, pid: Sid, owner: &str, session: Session);

    /// Socket `socket` of session `pid` left: keep the session for the window when `keep`
    /// (its connection dropped), forget it otherwise (the client left). A session saved by a
    /// later socket since (the same `pid`, restored while this one was still thought
    /// connected) is left as it is.
    fn end(&self, ns: &str, pid: Sid, socket: Sid, keep: bool);

    /// Takes the session `pid` if it is kept and belongs to `owner` (once: a second take finds
    /// nothing). A session of another owner is left as it is.
    fn take(&self, ns: &str, pid: Sid, owner: &str) -> BoxFuture<Option<Session>>;

    /// The broadcasts of `ns` after `offset`, oldest first, as far as the store has them;
    /// `None` when `offset` itself is no longer kept (trimmed: some after it may be gone too)
    /// or the store cannot answer.
    fn after(&self, ns: &str, offset: Offset) -> BoxFuture<Option<Missed>>;
}

/// What a store has after an offset ([`SessionStore::after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// The namespace's broadcasts, oldest first.
    pub kept: Vec<Kept>,
    /// How far the store looked: the offset of the last entry it read, of whatever namespace
    /// (the offset asked about when there was none). Asked again, it continues from here.
    pub through: Offset,
}

/// How long a restore waits for this node's bus reader to reach the offset the client
/// claims (it got that broadcast from the node it left, which may have been ahead) before it
/// gives up and the client joins as new.
pub(crate) const CATCH_UP: Duration = Duration::from_secs(2);

/// How often a restore looks again meanwhile.
pub(crate) const CATCH_UP_PAUSE: Duration = Duration::from_millis(20);

/// A namespace's side of recovery across nodes.
pub(crate) struct Fleet {
    pub store: Arc<dyn SessionStore>,
    /// The offset of the last broadcast delivered here: held while delivering one (see the
    /// module header). `None` until the first.
    pub cursor: Mutex<Option<Offset>>,
    /// The `pid` of each connected socket, by socket id.
    pids: Mutex<HashMap<Sid, Sid>>,
}

impl Fleet {
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store, cursor: Mutex::new(None), pids: Mutex::new(HashMap::new()) }
    }

    /// Socket `socket` joined with `pid`.
    pub fn live(&self, socket: Sid, pid: Sid) {
        self.pids.lock().unwrap_or_else(|p| p.into_inner()).insert(socket, pid);
    }

    /// The `pid` of connected socket `socket`.
    pub fn pid(&self, socket: Sid) -> Option<Sid> {
        self.pids.lock().unwrap_or_else(|p| p.into_inner()).get(&socket).copied()
    }

    /// Socket `socket` left; its `pid`, if it had one.
    pub fn gone(&self, socket: Sid) -> Option<Sid> {
        self.pids.lock().unwrap_or_else(|p| p.into_inner()).remove(&socket)
    }
}

/// What a restore replays, once the store answered and the node's cursor is known.
pub(crate) enum Cover {
    /// The broadcasts the socket missed, up to the cursor, oldest first.
    Done(Vec<Arc<str>>),
    /// The node delivered past what the store gave: ask it for what follows.
    More,
    /// The node has not delivered the claimed offset yet (its bus reader is behind the node
    /// the client left): what it delivers next, the client may have had. Try again shortly.
    Behind,
}

/// Of `fetched` (every broadcast after the claimed offset the store gave so far, which looked
/// up to `through`), those that `session` missed up to `cursor`, with their offsets, or what
/// to do when that is not known yet.
pub(crate) fn cover(fetched: &Missed, claimed: Offset, cursor: Option<Offset>, session: &Session) -> Cover {
    let Some(cursor) = cursor.filter(|c| *c >= claimed) else { return Cover::Behind };
    if cursor > fetched.through {
        return Cover::More;
    }
    let missed = fetched
        .kept
        .iter()
        .filter(|k| k.offset <= cursor)
        .filter(|k| missed_by(&session.rooms, session.socket, &k.room, k.except.as_deref(), k.skip))
        .map(|k| with_offset(&k.text, k.offset))
        .collect();
    Cover::Done(missed)
}

/// `text` (an event, `…]`) with `offset` appended as its last argument; other text as it is.
pub(crate) fn with_offset(text: &str, offset: Offset) -> Arc<str> {
    match text.strip_suffix(']') {
        Some(body) => format!("{body},\"{offset}\"]").into(),
        None => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(seq: u64, room: &str) -> Kept {
        Kept {
            offset: Offset { ms: 5, seq },
            room: room.into(),
            except: None,
            skip: None,
            text: format!("42[\"m\",{seq}]"),
        }
    }

    /// `kept`, as a store that read up to the last of them gives them.
    fn missed(kept: Vec<Kept>) -> Missed {
        let through = kept.last().map_or(Offset { ms: 5, seq: 0 }, |k| k.offset);
        Missed { kept, through }
    }

    #[test]
    fn replays_up_to_the_cursor_what_the_session_missed() {
        let socket = Sid::random();
        let session = Session { socket, rooms: vec!["a".into()] };
        let mut skipped = kept(3, "a");
        skipped.skip = Some(socket);
        let fetched = missed(vec![kept(1, "a"), kept(2, "b"), skipped, kept(4, "a"), kept(5, "a")]);
        let Cover::Done(missed) = cover(&fetched, Offset { ms: 5, seq: 0 }, Some(Offset { ms: 5, seq: 4 }), &session)
        else {
            panic!("the store gave enough");
        };
        assert_eq!(missed, vec![Arc::<str>::from(r#"42["m",1,"5-1"]"#), Arc::from(r#"42["m",4,"5-4"]"#)]);
    }

    #[test]
    fn asks_for_more_when_the_node_delivered_past_the_store() {
        let session = Session { socket: Sid::random(), rooms: vec!["a".into()] };
        let claimed = Offset { ms: 5, seq: 0 };
        let fetched = missed(vec![kept(1, "a")]);
        assert!(matches!(cover(&fetched, claimed, Some(Offset { ms: 5, seq: 3 }), &session), Cover::More));
        // The store read past entries of another namespace: its own last one does not matter.
        let through = Missed { kept: vec![kept(1, "a")], through: Offset { ms: 5, seq: 3 } };
        assert!(matches!(cover(&through, claimed, Some(Offset { ms: 5, seq: 3 }), &session), Cover::Done(_)));
    }

    #[test]
    fn a_node_behind_the_claim_waits() {
        // Live delivery would repeat what the client had from the node it left.
        let session = Session { socket: Sid::random(), rooms: vec!["a".into()] };
        let claimed = Offset { ms: 5, seq: 2 };
        let fetched = missed(vec![kept(3, "a")]);
        assert!(matches!(cover(&fetched, claimed, None, &session), Cover::Behind));
        assert!(matches!(cover(&fetched, claimed, Some(Offset { ms: 5, seq: 1 }), &session), Cover::Behind));
        let Cover::Done(missed) = cover(&fetched, claimed, Some(claimed), &session) else {
            panic!("caught up");
        };
        assert!(missed.is_empty(), "offset 3 comes live");
    }
}
