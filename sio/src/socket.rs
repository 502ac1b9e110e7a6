//! Namespaces, the sockets connected to them, rooms and broadcasts.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::HeaderMap;
use dashmap::DashMap;
use futures::FutureExt as _;
use serde::Serialize;
use serde_json::Value;

use crate::error::SendError;
use crate::packet::{self, DataError};
use crate::payload::Payload;
use crate::recovery::{Claim, Log, Offset, Recovery, recoverable};
use crate::session::{Lanes, Session, SharedFrame, Transport};
use crate::sid::Sid;
use crate::store::{self, Cover, Fleet, SessionStore};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

type ConnectFn<S> = Box<dyn Fn(Arc<Socket<S>>, Option<Value>) -> BoxFuture<Result<(), String>> + Send + Sync>;
type ConnectedFn<S> = Box<dyn Fn(Arc<Socket<S>>) -> BoxFuture<()> + Send + Sync>;
type EventFn<S> = Box<dyn Fn(Arc<Socket<S>>, Result<Payload, DataError>, Ack<S>) -> BoxFuture<()> + Send + Sync>;
type DisconnectFn<S> = Box<dyn Fn(Arc<Socket<S>>, DisconnectReason) -> BoxFuture<()> + Send + Sync>;
type OwnerFn<S> = Box<dyn Fn(&S) -> String + Send + Sync>;
type RoomFn<S> = Box<dyn Fn(&Socket<S>, &str, RoomChange) + Send + Sync>;

/// What happened to a socket's membership of a room, for [`NamespaceBuilder::on_room`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomChange {
    /// It joined.
    Join,
    /// It left (also when the socket leaves its namespace).
    Leave,
}

/// Why a socket left its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the connection (or it dropped).
    TransportClose,
    /// The connection failed: a write error, a frame or packet the protocol forbids, or a
    /// client that does not read the replies to what it sends.
    TransportError,
    /// No pong within the ping timeout.
    HeartbeatTimeout,
    /// The client left the namespace.
    ClientNamespaceDisconnect,
    /// The server removed the socket from its namespace ([`Namespace::disconnect_room`]).
    ServerNamespaceDisconnect,
    /// The server is closing.
    ServerShutdown,
    /// A second long-poll GET while one was waiting.
    MultipleHttpPolling,
}

impl DisconnectReason {
    /// A short label (`transport_close`, …) for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport_close",
            Self::TransportError => "transport_error",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::ClientNamespaceDisconnect => "client_namespace_disconnect",
            Self::ServerNamespaceDisconnect => "server_namespace_disconnect",
            Self::ServerShutdown => "closing_server",
            Self::MultipleHttpPolling => "multiple_http_polling_error",
        }
    }
}

/// The handlers of one namespace, given to [`crate::Builder::ns`].
pub struct NamespaceBuilder<S> {
    name: String,
    connect: ConnectFn<S>,
    connected: Option<ConnectedFn<S>>,
    events: HashMap<String, EventFn<S>>,
    disconnect: Option<DisconnectFn<S>>,
    owner: Option<OwnerFn<S>>,
    room: Option<RoomFn<S>>,
}

impl<S: Send + Sync + 'static> NamespaceBuilder<S> {
    /// Namespace `name` (`/chat`); `connect` runs for each join before the client hears of
    /// it: it may set the socket's state and join rooms, and its `Err` text is the
    /// `connect_error` message the client gets.
    pub fn new<F, Fut>(name: &str, connect: F) -> Self
    where
        F: Fn(Arc<Socket<S>>, Option<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.to_owned(),
            connect: Box::new(move |s, auth| Box::pin(connect(s, auth))),
            connected: None,
            events: HashMap::new(),
            disconnect: None,
            owner: None,
            room: None,
        }
    }

    /// With connection state recovery on ([`crate::Config::recovery`]): who a socket belongs
    /// to, from the state its connect handler set (a user id). A dropped socket is then
    /// restored only to a join whose handler set a state of the same owner, so a `pid`
    /// presented by another user recovers nothing; a socket without state is not kept.
    /// Without it, knowing the `pid` is enough (as in Node).
    pub fn recovery_owner(mut self, owner: impl Fn(&S) -> String + Send + Sync + 'static) -> Self {
        self.owner = Some(Box::new(owner));
        self
    }

    /// Runs after the client was told it joined (emits before that would be lost).
    pub fn on_connected<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Arc<Socket<S>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.connected = Some(Box::new(move |s| Box::pin(handler(s))));
        self
    }

    /// Handles `event`: its first argument (or why there is none to give) and its ack.
    pub fn on<F, Fut>(mut self, event: &str, handler: F) -> Self
    where
        F: Fn(Arc<Socket<S>>, Result<Value, DataError>, Ack<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events
            .insert(event.to_owned(), Box::new(move |s, p, a| Box::pin(handler(s, p.and_then(Payload::first), a))));
        self
    }

    /// Handles `event` with every argument and attachment it came with (or
    /// [`DataError::Malformed`] when they nest too deep to parse), and its ack.
    pub fn on_payload<F, Fut>(mut self, event: &str, handler: F) -> Self
    where
        F: Fn(Arc<Socket<S>>, Result<Payload, DataError>, Ack<S>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events.insert(event.to_owned(), Box::new(move |s, p, a| Box::pin(handler(s, p, a))));
        self
    }

    /// Runs `hook` whenever a socket joins or leaves a room (leaving its namespace leaves
    /// every room), under the socket's room list lock: keep it short, and neither join, leave
    /// nor read the socket's rooms from it.
    pub fn on_room(mut self, hook: impl Fn(&Socket<S>, &str, RoomChange) + Send + Sync + 'static) -> Self {
        self.room = Some(Box::new(hook));
        self
    }

    /// Runs when a socket that joined leaves, for whatever reason.
    pub fn on_disconnect<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Arc<Socket<S>>, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.disconnect = Some(Box::new(move |s, r| Box::pin(handler(s, r))));
        self
    }

    pub(crate) fn build(
        self,
        lanes: Arc<Lanes<S>>,
        limit: usize,
        recovery: Option<Recovery>,
        store: Option<Arc<dyn SessionStore>>,
    ) -> Namespace<S> {
        let (log, fleet) = match (recovery, store) {
            (None, _) => (None, None),
            (Some(recovery), None) => (Some(Log::new(recovery)), None),
            (Some(_), Some(store)) => (None, Some(Fleet::new(store))),
        };
        Namespace {
            log,
            fleet,
            owner: self.owner,
            room: self.room,
            name: self.name.into(),
            connect: self.connect,
            connected: self.connected,
            events: self.events,
            disconnect: self.disconnect,
            rooms: DashMap::new(),
            lanes,
            limit,
        }
    }
}

/// What a broadcast did on this node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Sockets it was written to (or queued for their long-poll).
    pub sent: usize,
    /// Sockets skipped because their unsent bytes were at the limit.
    pub full: usize,
    /// Sockets skipped because they were closing.
    pub closed: usize,
}

/// Who a broadcast is for.
#[derive(Debug, Clone, Copy)]
pub struct To<'a> {
    /// The room.
    pub room: &'a str,
    /// Sockets in this room are skipped.
    pub except: Option<&'a str>,
    /// This socket is skipped.
    pub skip: Option<Sid>,
}

/// A namespace: its handlers and its rooms on this node.
pub struct Namespace<S> {
    name: Box<str>,
    connect: ConnectFn<S>,
    connected: Option<ConnectedFn<S>>,
    events: HashMap<String, EventFn<S>>,
    disconnect: Option<DisconnectFn<S>>,
    rooms: DashMap<Arc<str>, HashMap<Sid, Arc<Socket<S>>>>,
    lanes: Arc<Lanes<S>>,
    limit: usize,
    /// Connection state recovery on this node alone, when on.
    log: Option<Log>,
    /// Connection state recovery across nodes, when on with a shared store.
    fleet: Option<Fleet>,
    owner: Option<OwnerFn<S>>,
    room: Option<RoomFn<S>>,
}

impl<S: Send + Sync + 'static> Namespace<S> {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Emits `event` to `to`'s sockets on this node, encoding it once.
    pub fn broadcast(&self, to: To<'_>, event: &str, data: &impl Serialize) -> Result<Delivery, SendError> {
        Ok(self.broadcast_encoded(to, self.encode(event, data)?))
    }

    /// `event` with `data` as this namespace's Engine.IO packet text, for
    /// [`Namespace::broadcast_encoded`] here and on other nodes.
    pub fn encode(&self, event: &str, data: &impl Serialize) -> Result<String, SendError> {
        packet::encode_event(&self.name, event, data).map_err(|_| SendError::Serialize)
    }

    /// `event` with several arguments (no binary ones), as [`Namespace::encode`] encodes one.
    pub fn encode_args(&self, event: &str, args: Vec<Value>) -> String {
        packet::encode_event_payload(&self.name, event, &Payload::new(args))
    }

    /// Writes an encoded Engine.IO packet (`42/chat,[…]`) to `to`'s sockets on this node.
    /// With connection state recovery on this node, an event gets its offset as its last
    /// argument and is kept for the window. With recovery across nodes
    /// ([`crate::Builder::session_store`]) broadcasts go through
    /// [`Namespace::broadcast_at`]; one written here carries no offset and is not replayed.
    pub fn broadcast_encoded(&self, to: To<'_>, text: String) -> Delivery {
        match &self.log {
            None => self.deliver(to, SharedFrame::new(text)),
            Some(log) => {
                // Held while writing: see the `recovery` module's header.
                let mut log = log.lock();
                let text = log.record(to, text);
                self.deliver(to, SharedFrame::from_shared(text))
            }
        }
    }

    /// Writes an encoded Engine.IO packet to `to`'s sockets on this node as the broadcast at
    /// `offset` of the bus every node applies in one order (with recovery across nodes: the
    /// event gets `offset` as its last argument, and a socket restored here gets every
    /// broadcast once). Offsets must come in increasing order. Without recovery across nodes
    /// this is [`Namespace::broadcast_encoded`].
    pub fn broadcast_at(&self, to: To<'_>, text: String, offset: Offset) -> Delivery {
        let Some(fleet) = &self.fleet else { return self.broadcast_encoded(to, text) };
        // Held while writing: see the `store` module's header.
        let mut cursor = fleet.cursor.lock().unwrap_or_else(|p| p.into_inner());
        let delivery = self.deliver(to, SharedFrame::from_shared(store::with_offset(&text, offset)));
        *cursor = (*cursor).max(Some(offset));
        delivery
    }

    /// With recovery across nodes: every broadcast up to `offset` was delivered here or
    /// never will be (where this node's bus reader starts), so a restore here replays them.
    pub fn delivered_up_to(&self, offset: Offset) {
        if let Some(fleet) = &self.fleet {
            let mut cursor = fleet.cursor.lock().unwrap_or_else(|p| p.into_inner());
            *cursor = (*cursor).max(Some(offset));
        }
    }

    fn deliver(&self, to: To<'_>, frame: SharedFrame) -> Delivery {
        let mut delivery = Delivery::default();
        let except: Vec<Sid> = match to.except {
            Some(room) => self.rooms.get(room).map(|m| m.keys().copied().collect()).unwrap_or_default(),
            None => Vec::new(),
        };
        let Some(members) = self.rooms.get(to.room) else { return delivery };
        let mut flush = Vec::new();
        for (sid, socket) in members.iter() {
            // A socket being restored gets what it missed, up to the restore, as a replay
            // after its join's answer; live before that, it would get some twice.
            if Some(*sid) == to.skip || except.contains(sid) || socket.restoring.load(Ordering::Acquire) {
                continue;
            }
            match socket.session.send_shared(&frame, self.limit) {
                Ok(schedule) => {
                    delivery.sent += 1;
                    if schedule {
                        flush.push(socket.session.clone());
                    }
                }
                Err(SendError::Full) => delivery.full += 1,
                Err(_) => delivery.closed += 1,
            }
        }
        drop(members);
        self.lanes.schedule(&flush);
        delivery
    }

    /// Makes every socket of `members` on this node join `room`.
    pub fn join_members(&self, members: &str, room: &str) {
        for socket in self.sockets(members) {
            socket.join([room]);
        }
    }

    /// The sockets of `room` on this node.
    pub fn sockets(&self, room: &str) -> Vec<Arc<Socket<S>>> {
        self.rooms.get(room).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Takes every socket of `room` on this node out of the namespace, as Node's
    /// `socket.disconnect()` does: the client gets a disconnect packet (and does not
    /// reconnect), the session stays, and the disconnect handler runs with
    /// [`DisconnectReason::ServerNamespaceDisconnect`]. Returns how many sockets left.
    pub fn disconnect_room(&self, room: &str) -> usize {
        self.sockets(room).iter().filter(|socket| socket.disconnect()).count()
    }

    /// The rooms with members on this node, and how many sockets each has.
    pub fn rooms(&self) -> Vec<(Arc<str>, usize)> {
        self.rooms.iter().map(|r| (r.key().clone(), r.value().len())).collect()
    }

    /// Joins `socket` to this namespace: runs the connect handler, then tells the client.
    pub(crate) async fn connect(self: Arc<Self>, socket: Arc<Socket<S>>, auth: Option<Value>) {
        let recovering = self.log.is_some() || self.fleet.is_some();
        let claim = recovering.then(|| Claim::from_auth(auth.as_ref())).flatten();
        // Nothing live until the restore is decided: the rooms the connect handler joins
        // would otherwise deliver broadcasts that the replay repeats, and before the answer
        // (which the client puts first). Cleared under the recovery lock with the answer.
        if claim.is_some() {
            socket.restoring.store(true, Ordering::Release);
        }
        match (self.connect)(socket.clone(), auth).await {
            Ok(()) => {
                if socket.phase.compare_exchange(CONNECTING, CONNECTED, Ordering::AcqRel, Ordering::Acquire).is_err() {
                    // The session closed while the handler ran: it connected and left.
                    socket.leave_all();
                    if let Some(disconnect) = &self.disconnect {
                        let reason = socket.session.state().reason.unwrap_or(DisconnectReason::TransportClose);
                        disconnect(socket, reason).await;
                    }
                    return;
                }
                match &self.fleet {
                    Some(fleet) => self.answer_fleet_join(&socket, claim, fleet).await,
                    None => self.answer_join(&socket, claim),
                }
                if let Some(connected) = &self.connected {
                    connected(socket).await;
                }
            }
            Err(message) => {
                socket.phase.store(DISCONNECTED, Ordering::Release);
                socket.leave_all();
                socket.session.state().sockets.retain(|s| !Arc::ptr_eq(s, &socket));
                let _ = socket.session.reply(&packet::encode_connect_error(&self.name, &message), self.limit);
            }
        }
    }

    /// Tells the client it joined; with recovery on, with its `pid`, restoring the rooms and
    /// replaying the broadcasts of the dropped socket it claims when that is allowed.
    fn answer_join(&self, socket: &Arc<Socket<S>>, claim: Option<Claim>) {
        let sid = socket.id.to_string();
        let Some(log) = &self.log else {
            let _ = socket.session.reply(&packet::encode_connect(&self.name, &sid, None), self.limit);
            return;
        };
        // With an owner to check, a socket without state (so without owner) restores nothing.
        let (claim, owner) = match (&self.owner, socket.state()) {
            (Some(owner), Some(state)) => (claim, Some(owner(state))),
            (Some(_), None) => (None, None),
            (None, _) => (claim, None),
        };
        let mut log = log.lock();
        // Checked under the lock `end` takes to unregister it: a socket whose session closed
        // meanwhile must not be registered after `end` ran (it would never be removed).
        if !socket.connected() {
            return;
        }
        let restored = log.join(socket.id, claim, owner.as_deref(), self.limit);
        socket.join(&restored.rooms);
        if claim.is_some() {
            tracing::debug!(ns = %self.name, recovered = restored.recovered, missed = restored.missed.len(), "recovery claimed");
        }
        let pid = restored.pid.to_string();
        let _ = socket.session.reply(&packet::encode_connect(&self.name, &sid, Some(&pid)), self.limit);
        // Their size was checked against the limit by `join`.
        for text in &restored.missed {
            let _ = socket.session.send(text, usize::MAX);
        }
        socket.restoring.store(false, Ordering::Release);
    }

    /// Who `socket` belongs to for recovery: `None` when an owner is checked and the socket
    /// has no state to tell it (such a socket is neither kept nor restored).
    fn owner_of(&self, socket: &Socket<S>) -> Option<String> {
        match (&self.owner, socket.state()) {
            (Some(owner), Some(state)) => Some(owner(state)),
            (Some(_), None) => None,
            (None, _) => Some(String::new()),
        }
    }

    /// [`Namespace::answer_join`] with recovery across nodes: the session and the broadcasts
    /// the socket missed come from the shared store (see the `store` module's header).
    async fn answer_fleet_join(&self, socket: &Arc<Socket<S>>, claim: Option<Claim>, fleet: &Fleet) {
        let owner = self.owner_of(socket);
        let restored = match (claim, &owner) {
            (Some(claim), Some(owner)) => self.restore(socket, claim, owner, fleet).await,
            _ => None,
        };
        let recovered = restored.is_some();
        let sid = socket.id.to_string();
        let (pid, missed) = match restored {
            Some((pid, missed, cursor)) => {
                // Answered under the cursor's lock `restore` returns: no broadcast is
                // delivered live between the replayed ones and the answer.
                let _ =
                    socket.session.reply(&packet::encode_connect(&self.name, &sid, Some(&pid.to_string())), self.limit);
                for text in &missed {
                    let _ = socket.session.send(text, usize::MAX);
                }
                socket.restoring.store(false, Ordering::Release);
                drop(cursor);
                (pid, missed.len())
            }
            None => {
                let pid = Sid::random();
                let _ =
                    socket.session.reply(&packet::encode_connect(&self.name, &sid, Some(&pid.to_string())), self.limit);
                socket.restoring.store(false, Ordering::Release);
                (pid, 0)
            }
        };
        if claim.is_some() {
            tracing::debug!(ns = %self.name, recovered, missed, "recovery claimed");
        }
        fleet.live(socket.id, pid);
        // The session closed meanwhile and `end` found no `pid` to end: not kept.
        if !socket.connected() {
            fleet.gone(socket.id);
            return;
        }
        socket.save_session();
    }

    /// Restores the session `claim` names to `socket` if it is kept, belongs to `owner` and
    /// every broadcast it missed is still kept and fits in the limit: joins its rooms and
    /// gives its `pid`, the broadcasts to replay and the cursor's lock to answer under.
    async fn restore<'f>(
        &self,
        socket: &Arc<Socket<S>>,
        claim: Claim,
        owner: &str,
        fleet: &'f Fleet,
    ) -> Option<(Sid, Vec<Arc<str>>, std::sync::MutexGuard<'f, Option<Offset>>)> {
        let Some(session) = fleet.store.take(&self.name, claim.pid, owner).await else {
            tracing::debug!(ns = %self.name, pid = %claim.pid, "recovery refused: no such session for this owner");
            return None;
        };
        let deadline = std::time::Instant::now() + store::CATCH_UP;
        let mut fetched = store::Missed { kept: Vec::new(), through: claim.offset };
        loop {
            let more = fleet.store.after(&self.name, fetched.through).await?;
            fetched.kept.extend(more.kept);
            fetched.through = more.through.max(fetched.through);
            {
                let cursor = fleet.cursor.lock().unwrap_or_else(|p| p.into_inner());
                match store::cover(&fetched, claim.offset, *cursor, &session) {
                    Cover::Done(missed) => {
                        // Checked under the lock, as in `answer_join`.
                        if !socket.connected() || missed.iter().map(|t| t.len()).sum::<usize>() > self.limit {
                            return None;
                        }
                        socket.join(&session.rooms);
                        return Some((claim.pid, missed, cursor));
                    }
                    // However it goes, the store and the bus are given `CATCH_UP` to agree.
                    _ if std::time::Instant::now() > deadline => return None,
                    Cover::More => continue,
                    Cover::Behind => {}
                }
            }
            tokio::time::sleep(store::CATCH_UP_PAUSE).await;
        }
    }
}

const CONNECTING: u8 = 0;
const CONNECTED: u8 = 1;
const DISCONNECTED: u8 = 2;

/// A client's membership of one namespace.
pub struct Socket<S> {
    /// Its id (not the session's).
    pub id: Sid,
    ns: Arc<Namespace<S>>,
    pub(crate) session: Arc<Session<S>>,
    state: OnceLock<S>,
    rooms: Mutex<Vec<Arc<str>>>,
    phase: AtomicU8,
    /// Claimed a recovery session that is not decided yet: skipped by broadcasts.
    restoring: AtomicBool,
    inbox: Mutex<Inbox>,
}

/// An event from the client, waiting for its handler.
pub(crate) struct Event {
    /// Its name.
    pub name: String,
    /// Its arguments.
    pub data: Result<Payload, DataError>,
    /// The acknowledgement id the client waits on.
    pub ack: Option<u64>,
    /// Its size on the wire, counted against the limit of waiting events.
    pub size: usize,
}

/// A socket's events waiting for their handlers, which run one at a time in the order the
/// client sent the events (a task per event let a later one overtake an earlier one: chat
/// messages must be stored and acknowledged in order). No task exists while a socket is
/// idle: the first event spawns one, which runs the events that arrive meanwhile and ends
/// when there are none. An idle socket pays this struct (a few dozen bytes, no allocation).
#[derive(Default)]
struct Inbox {
    /// A task is running this socket's handlers.
    running: bool,
    /// What it runs next.
    queue: VecDeque<Event>,
    /// Their total size.
    bytes: usize,
}

impl<S: Send + Sync + 'static> Socket<S> {
    pub(crate) fn new(ns: Arc<Namespace<S>>, session: Arc<Session<S>>) -> Self {
        Self {
            id: Sid::random(),
            ns,
            session,
            state: OnceLock::new(),
            rooms: Mutex::new(Vec::new()),
            phase: AtomicU8::new(CONNECTING),
            restoring: AtomicBool::new(false),
            inbox: Mutex::new(Inbox::default()),
        }
    }

    /// The namespace's name.
    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    /// True once the client was told it joined, until it leaves.
    pub fn connected(&self) -> bool {
        self.phase.load(Ordering::Acquire) == CONNECTED
    }

    /// The handshake headers the server keeps (see [`crate::Config::keep_headers`]).
    pub fn headers(&self) -> &HeaderMap {
        &self.session.headers
    }

    /// The id of its Engine.IO session (Node's `socket.conn.id`), shared by the client's
    /// sockets in other namespaces.
    pub fn client_id(&self) -> Sid {
        self.session.id
    }

    /// The address the client's handshake came from (a proxy's, behind one), when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.session.peer
    }

    /// The transport it is on now: `"websocket"` or `"polling"` (also while an upgrade is
    /// being probed).
    pub fn transport(&self) -> &'static str {
        match self.session.state().transport {
            Transport::WebSocket => "websocket",
            _ => "polling",
        }
    }

    /// Takes it out of its namespace, as Node's `socket.disconnect()`: the client gets a
    /// disconnect packet (and does not reconnect), the session stays, and the disconnect
    /// handler runs with [`DisconnectReason::ServerNamespaceDisconnect`]. False when it had
    /// left already.
    pub fn disconnect(self: &Arc<Self>) -> bool {
        let removed = {
            let mut state = self.session.state();
            let before = state.sockets.len();
            state.sockets.retain(|s| !Arc::ptr_eq(s, self));
            state.sockets.len() < before
        };
        if removed {
            let _ = self.session.send(&packet::encode_disconnect(&self.ns.name), self.ns.limit);
            tokio::spawn(self.clone().end(DisconnectReason::ServerNamespaceDisconnect));
        }
        removed
    }

    /// Every socket of its client (its session), in every namespace, this one included:
    /// disconnecting them all ends the client's connection, since `socket.io-client` closes
    /// it when its last socket leaves (Node's `socket.disconnect(true)`).
    pub fn client_sockets(&self) -> Vec<Arc<Socket<S>>> {
        self.session.state().sockets.clone()
    }

    /// The state the connect handler set.
    pub fn state(&self) -> Option<&S> {
        self.state.get()
    }

    /// Sets the socket's state (once; a second call gives the value back).
    pub fn set_state(&self, state: S) -> Result<(), S> {
        self.state.set(state)
    }

    /// Emits `event` to this socket alone.
    pub fn emit(&self, event: &str, data: &impl Serialize) -> Result<(), SendError> {
        // Its session may live on after it left the namespace, and may join again as a new
        // socket: that one must not get packets meant for this one.
        if self.phase.load(Ordering::Acquire) == DISCONNECTED {
            return Err(SendError::Closed);
        }
        let text = packet::encode_event(&self.ns.name, event, data).map_err(|_| SendError::Serialize)?;
        self.session.send(&text, self.ns.limit)
    }

    /// Emits `event` with every argument and attachment of `payload` to this socket alone.
    pub fn emit_payload(&self, event: &str, payload: &Payload) -> Result<(), SendError> {
        if self.phase.load(Ordering::Acquire) == DISCONNECTED {
            return Err(SendError::Closed);
        }
        let text = packet::encode_event_payload(&self.ns.name, event, payload);
        self.session.send_binary(Some(&text), &payload.attachments, self.ns.limit)
    }

    /// The rooms it is in.
    pub fn rooms(&self) -> Vec<Arc<str>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Joins `rooms` (joining a room twice changes nothing).
    pub fn join<R: AsRef<str>>(self: &Arc<Self>, rooms: impl IntoIterator<Item = R>) {
        let mut mine = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let before = mine.len();
        for room in rooms {
            let room = room.as_ref();
            if mine.iter().any(|r| &**r == room) {
                continue;
            }
            // The room's key is shared by every member's list: one allocation per room.
            let mut entry = self.ns.rooms.entry(Arc::from(room)).or_default();
            entry.insert(self.id, self.clone());
            mine.push(entry.key().clone());
            drop(entry);
            if let Some(hook) = &self.ns.room {
                hook(self, room, RoomChange::Join);
            }
        }
        if mine.len() != before {
            self.save_rooms(&mine);
        }
    }

    /// Leaves `rooms`.
    pub fn leave<R: AsRef<str>>(&self, rooms: impl IntoIterator<Item = R>) {
        let mut mine = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let before = mine.len();
        for room in rooms {
            let room = room.as_ref();
            if let Some(at) = mine.iter().position(|r| &**r == room) {
                let room = mine.swap_remove(at);
                self.ns.remove_member(&room, self.id);
                if let Some(hook) = &self.ns.room {
                    hook(self, &room, RoomChange::Leave);
                }
            }
        }
        if mine.len() != before {
            self.save_rooms(&mine);
        }
    }

    /// With recovery across nodes, hands the session's current rooms to the store.
    fn save_session(&self) {
        let mine = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        self.save_rooms(&mine);
    }

    /// Called with the rooms' lock held, which `end` takes before it ends the session in the
    /// store: a save never follows the end (it would keep a gone socket's session live).
    fn save_rooms(&self, rooms: &[Arc<str>]) {
        let Some(fleet) = &self.ns.fleet else { return };
        if !self.connected() {
            return;
        }
        let (Some(pid), Some(owner)) = (fleet.pid(self.id), self.ns.owner_of(self)) else { return };
        fleet.store.save(&self.ns.name, pid, &owner, store::Session { socket: self.id, rooms: rooms.to_vec() });
    }

    /// Runs `event`'s handler after those of the events that came before it. False, and the
    /// event dropped, when the events already waiting hold `limit` bytes: the client sends
    /// faster than its handlers run, and the caller closes the connection.
    pub(crate) fn dispatch(self: &Arc<Self>, event: Event, limit: usize) -> bool {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.running {
            if inbox.bytes + event.size > limit {
                return false;
            }
            inbox.bytes += event.size;
            inbox.queue.push_back(event);
            return true;
        }
        inbox.running = true;
        drop(inbox);
        tokio::spawn(self.clone().run_handlers(event));
        true
    }

    /// Runs `event`'s handler, then those of the events waiting, until there are none.
    async fn run_handlers(self: Arc<Self>, mut event: Event) {
        loop {
            if let Some(handler) = self.ns.events.get(event.name.as_str()) {
                let ack = Ack { socket: self.clone(), id: event.ack };
                // A handler that panics must not stop the events after it.
                if std::panic::AssertUnwindSafe(handler(self.clone(), event.data, ack)).catch_unwind().await.is_err() {
                    tracing::error!(ns = %self.ns.name, event = event.name, "event handler panicked");
                }
            } else {
                tracing::debug!(ns = %self.ns.name, event = event.name, "no handler; event ignored");
            }
            {
                let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
                let Some(next) = inbox.queue.pop_front() else {
                    inbox.running = false;
                    // A burst's queue is not kept for the socket's life.
                    inbox.queue = VecDeque::new();
                    return;
                };
                inbox.bytes -= next.size;
                event = next;
            }
            // Handlers that finish without waiting must not hold the worker for a burst.
            tokio::task::consume_budget().await;
        }
    }

    /// Leaves every room.
    fn leave_all(&self) {
        let rooms = std::mem::take(&mut *self.rooms.lock().unwrap_or_else(|p| p.into_inner()));
        for room in rooms {
            self.ns.remove_member(&room, self.id);
            if let Some(hook) = &self.ns.room {
                hook(self, &room, RoomChange::Leave);
            }
        }
    }

    /// Takes the socket out of its namespace and runs the disconnect handler if it had joined.
    pub(crate) async fn end(self: Arc<Self>, reason: DisconnectReason) {
        let was = self.phase.swap(DISCONNECTED, Ordering::AcqRel);
        if was == CONNECTED
            && let Some(log) = &self.ns.log
        {
            match (&self.ns.owner, self.state()) {
                (Some(owner), Some(state)) => {
                    log.lock().leave(self.id, reason, Some((self.rooms(), Some(owner(state)))))
                }
                // Without an owner to check a later claim against, the socket is not kept.
                (Some(_), None) => log.lock().leave(self.id, reason, None),
                (None, _) => log.lock().leave(self.id, reason, Some((self.rooms(), None))),
            }
        }
        if was == CONNECTED
            && let Some(fleet) = &self.ns.fleet
            && let Some(pid) = fleet.gone(self.id)
        {
            // Under the rooms' lock: see `save_rooms`.
            let _rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            let keep = recoverable(reason) && self.ns.owner_of(&self).is_some();
            fleet.store.end(&self.ns.name, pid, self.id, keep);
        }
        self.leave_all();
        if was == CONNECTED {
            let ns = self.ns.clone();
            if let Some(disconnect) = &ns.disconnect {
                disconnect(self, reason).await;
            }
        }
    }
}

impl<S> Namespace<S> {
    fn remove_member(&self, room: &str, sid: Sid) {
        if let Some(mut members) = self.rooms.get_mut(room) {
            members.remove(&sid);
        }
        self.rooms.remove_if(room, |_, members| members.is_empty());
    }
}

/// The acknowledgement a client may wait for.
pub struct Ack<S> {
    socket: Arc<Socket<S>>,
    id: Option<u64>,
}

impl<S: Send + Sync + 'static> Ack<S> {
    /// True when the client asked for an acknowledgement.
    pub fn wanted(&self) -> bool {
        self.id.is_some()
    }

    /// Sends it (nothing happens if the client did not ask for one).
    pub fn send(self, data: &impl Serialize) -> Result<(), SendError> {
        let Some(id) = self.id else { return Ok(()) };
        let text = packet::encode_ack(self.socket.ns(), id, data).map_err(|_| SendError::Serialize)?;
        // An ack answers the client's own request: not dropped for a full buffer like an
        // emit, but a client that does not read its acks is closed (see `Session::reply`).
        self.socket.session.reply(&text, self.socket.ns.limit)
    }

    /// Sends it with every argument and attachment of `payload`.
    pub fn send_payload(self, payload: &Payload) -> Result<(), SendError> {
        let Some(id) = self.id else { return Ok(()) };
        let text = packet::encode_ack_payload(self.socket.ns(), id, payload);
        self.socket.session.reply_binary(Some(&text), &payload.attachments, self.socket.ns.limit)
    }
}
