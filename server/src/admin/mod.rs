//! The server side of the official Socket.IO Admin UI (`@socket.io/admin-ui` 0.5), across
//! every node of a fleet: the UI connects to the `/admin` namespace of any node and sees the
//! whole fleet, as Node's admin-ui does over the Redis adapter.
//!
//! What the UI hears (events of the `/admin` namespace, the names and arguments of Node's):
//!
//! - `session` (a session id to reconnect with, see `credentials`) and `config`
//!   (`supportedFeatures`: `JOIN`, `LEAVE`, `DISCONNECT`, `MJOIN`, `MLEAVE`, `MDISCONNECT`, or
//!   none when read-only), once signed in;
//! - `all_sockets`: every user socket of the fleet, gathered from every node, once signed in;
//! - `server_stats` from every node every [`STATS_INTERVAL`] (its id, host, pid, uptime,
//!   Engine.IO clients and sockets per namespace);
//! - `socket_connected`, `socket_disconnected`, `room_joined`, `room_left` and
//!   `socket_updated` (an upgrade to WebSocket) as they happen on any node.
//!
//! What the UI asks (unless read-only): `_disconnect(nsp, close, filter)`,
//! `join(nsp, room, filter)` and `leave(nsp, room, filter)`, where `filter` is a socket id or
//! a room (none: the whole namespace). Every node applies them to its own sockets.
//!
//! Across nodes, the bus (`delivery::bus`) carries the live events as ordinary broadcasts to
//! the `/admin` room [`ADMIN_ROOM`], and [`Message`]s as its `admin` operation: each node's
//! stats, a signed-in UI's request for every node's sockets and the answers, and actions.
//! Nodes report live events only while a UI is signed in somewhere (a node with one says so
//! in its stats), so a fleet nobody watches pays nothing per connection but the check.
//!
//! Sockets of `/admin` itself are not listed. Node's admin-ui also reports every event a
//! socket sends or receives (`event_received`/`event_sent`, in its development mode) and
//! can emit to sockets (`EMIT`); Switchyard does neither: contract traffic stays out of the
//! admin channel.

pub mod credentials;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_sio::{DisconnectReason, Payload, RoomChange, To};
use tokio::sync::mpsc;

use crate::config::AdminUiConfig;
use crate::delivery::{Conn, EVERYONE, IoHandle, Socket};
use crate::protocol::{NAMESPACES, epoch_ms};
use credentials::Credentials;

/// The namespace the UI connects to (its default).
pub const ADMIN_NS: &str = "/admin";
/// The room of every signed-in UI socket, on every node.
pub const ADMIN_ROOM: &str = "admin";
/// How often every node reports its stats (Node's admin-ui: every 2 s; the UI marks a server
/// unhealthy after 10 s without).
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// How long a UI's request for every node's sockets waits for the nodes it knows of.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);
/// Live events waiting to be published before new ones are dropped (the UI then shows a
/// stale view until it reconnects), so a stalled Redis cannot grow memory without bound.
const EVENT_QUEUE: usize = 65_536;

/// What one node's Admin UI side tells the others over the bus (`Op::Admin`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Message {
    /// A node's `server_stats`, and whether a UI is signed in to it.
    Stats {
        /// The stats, as the UI takes them.
        stats: Value,
        /// A UI is signed in on that node: live events are wanted.
        watched: bool,
    },
    /// A UI signed in: every node answers with its sockets.
    Snapshot {
        /// Matches the answers to the request.
        request: u64,
    },
    /// One node's answer to a [`Message::Snapshot`].
    Sockets {
        /// The request answered.
        request: u64,
        /// The answering node's server id.
        server: String,
        /// Its sockets, as the UI takes them.
        sockets: Vec<Value>,
    },
    /// An action of a UI, for every node to apply to its sockets.
    Act {
        /// What to do.
        action: Action,
    },
}

/// What a UI asks to be done to sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Action {
    /// Take the sockets out of their namespace; with `close`, every socket of their clients.
    Disconnect {
        /// Namespace.
        ns: String,
        /// Node's `disconnect(true)`: the whole client, not only this namespace.
        close: bool,
        /// A socket id or a room; none for the whole namespace.
        filter: Option<String>,
    },
    /// Make the sockets join `room`.
    Join {
        /// Namespace.
        ns: String,
        /// The room to join.
        room: String,
        /// A socket id or a room; none for the whole namespace.
        filter: Option<String>,
    },
    /// Make the sockets leave `room`.
    Leave {
        /// Namespace.
        ns: String,
        /// The room to leave.
        room: String,
        /// A socket id or a room; none for the whole namespace.
        filter: Option<String>,
    },
}

/// A live event for the UIs, in the order it happened on this node.
struct Live {
    event: &'static str,
    args: Vec<Value>,
}

/// This node's Admin UI side.
pub struct Admin {
    credentials: Credentials,
    readonly: bool,
    io: Arc<IoHandle>,
    server_id: String,
    hostname: String,
    started: Instant,
    /// UI sockets signed in on this node.
    local_uis: AtomicI64,
    /// Until when (milliseconds after `started`) a UI on another node wants live events.
    watched_until: AtomicU64,
    live: mpsc::Sender<Live>,
    fleet: Mutex<Fleet>,
}

/// What this node knows of the others, and the socket listings it is gathering.
#[derive(Default)]
struct Fleet {
    /// Server ids and when their stats last came.
    servers: HashMap<String, Instant>,
    pending: HashMap<u64, Pending>,
    /// UIs whose listing went out, for answers that come later (from a node this one had
    /// not heard of yet): those sockets follow as `socket_connected`.
    finished: HashMap<u64, (Arc<Socket>, Instant)>,
}

/// What a node's answer to a listing request means here.
enum Answer {
    /// The last one awaited: the listing can go out.
    Last,
    /// For a listing that went out already: its sockets follow one by one.
    Late(Arc<Socket>, Vec<Value>),
    /// Others are still awaited (or the request is not this node's).
    Waiting,
}

/// A signed-in UI waiting for every node's sockets.
struct Pending {
    socket: Arc<Socket>,
    sockets: Vec<Value>,
    waiting: HashSet<String>,
}

impl Admin {
    /// The Admin UI side for `config` (which must be enabled) of the server listening on
    /// `port`, delivering through `io`. Starts the task that publishes live events in order.
    pub fn new(config: &AdminUiConfig, port: u16, io: Arc<IoHandle>) -> Arc<Self> {
        let username = config.admin_ui_username.as_deref().unwrap_or_default();
        let hash = config.admin_ui_password_hash.as_deref().unwrap_or_default();
        let hostname = hostname();
        let (live, mut queue) = mpsc::channel::<Live>(EVENT_QUEUE);
        let admin = Arc::new(Self {
            credentials: Credentials::new(username, hash),
            readonly: config.admin_ui_readonly,
            io,
            // Host and port: unique in a fleet (pods have their own names; processes on one
            // host their own ports), and it says where the node is. Node's `hostname#pid`
            // would repeat for every pod (pid 1) if hosts shared names, and for nodes in one
            // process (the tests).
            server_id: format!("{hostname}:{port}"),
            hostname,
            started: Instant::now(),
            local_uis: AtomicI64::new(0),
            watched_until: AtomicU64::new(0),
            live,
            fleet: Mutex::new(Fleet::default()),
        });
        let weak = Arc::downgrade(&admin);
        tokio::spawn(async move {
            while let Some(Live { event, args }) = queue.recv().await {
                let Some(admin) = weak.upgrade() else { return };
                let Some(ns) = admin.io.get().and_then(|io| io.of(ADMIN_NS)) else { continue };
                let packet = ns.encode_args(event, args);
                admin.io.broadcast_packet(ADMIN_NS, ADMIN_ROOM, packet).await;
            }
        });
        admin
    }

    /// The sign-in check.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// True in read-only mode: actions are refused.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// The features the UI may offer.
    pub fn features(&self) -> Vec<&'static str> {
        if self.readonly { Vec::new() } else { vec!["JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"] }
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// True while a UI is signed in somewhere in the fleet: live events are worth sending.
    fn watched(&self) -> bool {
        self.local_uis.load(Ordering::Relaxed) > 0 || self.elapsed_ms() < self.watched_until.load(Ordering::Relaxed)
    }

    /// A UI elsewhere wants live events for the next three stats intervals.
    fn watch(&self) {
        let until = self.elapsed_ms() + 3 * STATS_INTERVAL.as_millis() as u64;
        self.watched_until.fetch_max(until, Ordering::Relaxed);
    }

    /// A UI socket passed the sign-in on this node (its disconnect handler will call
    /// [`Admin::signed_out`] once).
    pub fn signed_in(&self) {
        self.local_uis.fetch_add(1, Ordering::Relaxed);
    }

    /// A signed-in UI socket of this node left.
    pub fn signed_out(&self) {
        self.local_uis.fetch_sub(1, Ordering::Relaxed);
    }

    /// Greets a signed-in UI socket: its session id, the features and this node's stats at
    /// once, then every socket of the fleet once each node it knows of (from their stats)
    /// answered, or [`SNAPSHOT_TIMEOUT`] passed. Answers after that, from nodes this one had
    /// not heard of yet (it just started, say), follow as `socket_connected` events.
    pub async fn welcome(self: &Arc<Self>, socket: Arc<Socket>) {
        let _ = socket.emit("session", &self.credentials.session());
        let _ = socket.emit("config", &json!({ "supportedFeatures": self.features() }));
        // Joined before the listing is taken: an event that happens meanwhile is not lost
        // (at worst the listing, which comes after, already holds its result).
        socket.join([ADMIN_ROOM]);
        let _ = socket.emit("server_stats", &self.stats());
        let request = rand::random::<u64>();
        let sockets = self.local_sockets();
        let waiting: HashSet<String> = {
            let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = 3 * STATS_INTERVAL;
            fleet.servers.retain(|_, seen| seen.elapsed() < fresh);
            let waiting: HashSet<String> = fleet.servers.keys().filter(|id| **id != self.server_id).cloned().collect();
            let pending = Pending { socket, sockets, waiting: waiting.clone() };
            fleet.pending.insert(request, pending);
            waiting
        };
        if !self.io.has_bus() {
            self.finish(request);
            return;
        }
        if waiting.is_empty() {
            self.finish(request);
        }
        self.publish(Message::Snapshot { request }).await;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(SNAPSHOT_TIMEOUT).await;
            if let Some(admin) = weak.upgrade() {
                admin.finish(request);
            }
        });
    }

    /// Sends a gathered listing to its UI (once: later calls find it gone).
    fn finish(&self, request: u64) {
        let pending = {
            let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
            let pending = fleet.pending.remove(&request);
            fleet.finished.retain(|_, (_, at)| at.elapsed() < 2 * SNAPSHOT_TIMEOUT);
            if let Some(pending) = &pending {
                fleet.finished.insert(request, (pending.socket.clone(), Instant::now()));
            }
            pending
        };
        if let Some(Pending { socket, sockets, waiting }) = pending {
            if !waiting.is_empty() {
                tracing::warn!(missing = ?waiting, "admin UI listing sent before these servers answered");
            }
            let _ = socket.emit("all_sockets", &sockets);
        }
    }

    /// This node's stats, as `server_stats` carries them.
    fn stats(&self) -> Value {
        let io = self.io.get();
        let namespaces: Vec<Value> = NAMESPACES
            .iter()
            .map(|name| {
                let count = io.and_then(|io| io.of(name)).map_or(0, |ns| ns.sockets(EVERYONE).len());
                json!({ "name": name, "socketsCount": count })
            })
            .collect();
        json!({
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": io.map_or(0, |io| io.sessions()),
            "namespaces": namespaces,
        })
    }

    /// Every [`STATS_INTERVAL`]: this node's stats to the UIs here and to the other nodes.
    pub async fn tick(&self) {
        let stats = self.stats();
        self.show_stats(&stats);
        let watched = self.local_uis.load(Ordering::Relaxed) > 0;
        self.publish(Message::Stats { stats, watched }).await;
    }

    /// Shows a node's stats to the UIs signed in on this node.
    fn show_stats(&self, stats: &Value) {
        if self.local_uis.load(Ordering::Relaxed) <= 0 {
            return;
        }
        if let Some(ns) = self.io.get().and_then(|io| io.of(ADMIN_NS)) {
            let _ = ns.broadcast(To { room: ADMIN_ROOM, except: None, skip: None }, "server_stats", stats);
        }
    }

    async fn publish(&self, message: Message) {
        match serde_json::to_value(&message) {
            Ok(message) => self.io.publish_admin(message).await,
            Err(e) => tracing::warn!(error = %e, "admin UI message not encodable"),
        }
    }

    /// Handles a message from another node (the bus's `admin` operation).
    pub fn receive(self: &Arc<Self>, message: Value) {
        let message = match serde_json::from_value::<Message>(message) {
            Ok(message) => message,
            Err(e) => return tracing::warn!(error = %e, "admin UI message not understood; ignored"),
        };
        match message {
            Message::Stats { stats, watched } => {
                if let Some(id) = stats.get("serverId").and_then(Value::as_str) {
                    let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
                    fleet.servers.insert(id.to_owned(), Instant::now());
                }
                if watched {
                    self.watch();
                }
                self.show_stats(&stats);
            }
            Message::Snapshot { request } => {
                self.watch();
                let answer =
                    Message::Sockets { request, server: self.server_id.clone(), sockets: self.local_sockets() };
                let admin = self.clone();
                tokio::spawn(async move { admin.publish(answer).await });
            }
            Message::Sockets { request, server, sockets } => {
                let answer = {
                    let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
                    match fleet.pending.get_mut(&request) {
                        Some(pending) => {
                            pending.sockets.extend(sockets);
                            pending.waiting.remove(&server);
                            if pending.waiting.is_empty() { Answer::Last } else { Answer::Waiting }
                        }
                        None => match fleet.finished.get(&request) {
                            Some((ui, _)) => Answer::Late(ui.clone(), sockets),
                            None => Answer::Waiting,
                        },
                    }
                };
                match answer {
                    Answer::Last => self.finish(request),
                    Answer::Late(ui, sockets) => {
                        for socket in sockets {
                            let _ = ui.emit_payload("socket_connected", &Payload::new(vec![socket, now()]));
                        }
                    }
                    Answer::Waiting => {}
                }
            }
            Message::Act { action } => {
                apply(self.io.get(), &action);
            }
        }
    }

    /// Runs a UI's action on every node: here at once, then on the others.
    pub async fn act(&self, action: Action) -> usize {
        tracing::info!(?action, "admin UI action");
        let affected = apply(self.io.get(), &action);
        self.publish(Message::Act { action }).await;
        affected
    }

    /// Every user socket of this node, as the UI takes them.
    fn local_sockets(&self) -> Vec<Value> {
        let Some(io) = self.io.get() else { return Vec::new() };
        io.sockets().iter().filter(|s| s.ns() != ADMIN_NS).filter_map(|s| describe(s)).collect()
    }

    fn send(&self, event: &'static str, args: Vec<Value>) {
        if self.live.try_send(Live { event, args }).is_err() {
            tracing::warn!(event, "admin UI events queue full; event dropped");
        }
    }

    /// A user socket joined its namespace (its rooms joined).
    pub fn connected(&self, socket: &Socket) {
        if self.watched()
            && let Some(described) = describe(socket)
        {
            self.send("socket_connected", vec![described, now()]);
        }
    }

    /// A user socket left its namespace.
    pub fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        if self.watched() {
            let reason = reason.as_str().replace('_', " ");
            self.send(
                "socket_disconnected",
                vec![socket.ns().into(), socket.id.to_string().into(), reason.into(), now()],
            );
        }
    }

    /// A user socket joined or left a room. Joins before it is connected are in its
    /// `socket_connected`.
    pub fn room(&self, socket: &Socket, room: &str, change: RoomChange) {
        if !self.watched() || (change == RoomChange::Join && !socket.connected()) {
            return;
        }
        let event = match change {
            RoomChange::Join => "room_joined",
            RoomChange::Leave => "room_left",
        };
        self.send(event, vec![socket.ns().into(), room.into(), socket.id.to_string().into(), now()]);
    }

    /// A user socket's client upgraded to WebSocket.
    pub fn upgraded(&self, socket: &Socket) {
        if self.watched() && socket.ns() != ADMIN_NS {
            let update = json!({ "id": socket.id.to_string(), "nsp": socket.ns(), "transport": socket.transport() });
            self.send("socket_updated", vec![update]);
        }
    }
}

/// Applies `action` to this node's sockets; returns how many it touched.
fn apply(io: Option<&switchyard_sio::Io<Conn>>, action: &Action) -> usize {
    let Some(io) = io else { return 0 };
    let (ns, filter) = match action {
        Action::Disconnect { ns, filter, .. } | Action::Join { ns, filter, .. } | Action::Leave { ns, filter, .. } => {
            (ns, filter)
        }
    };
    let Some(namespace) = io.of(ns).filter(|n| n.name() != ADMIN_NS) else { return 0 };
    let mut targets: Vec<Arc<Socket>> = match filter {
        None => io.sockets().into_iter().filter(|s| s.ns() == ns).collect(),
        Some(filter) => {
            let mut found = namespace.sockets(filter);
            found.extend(io.sockets().into_iter().filter(|s| s.ns() == ns && s.id.to_string() == *filter));
            found
        }
    };
    targets.sort_by_key(|s| s.id.to_string());
    targets.dedup_by_key(|s| s.id);
    for socket in &targets {
        match action {
            Action::Disconnect { close: false, .. } => {
                socket.disconnect();
            }
            Action::Disconnect { close: true, .. } => {
                for sibling in socket.client_sockets() {
                    sibling.disconnect();
                }
            }
            Action::Join { room, .. } => socket.join([room]),
            Action::Leave { room, .. } => socket.leave([room]),
        }
    }
    targets.len()
}

/// A user socket as the UI takes it (Node's `serialize`); `None` for one without a user.
fn describe(socket: &Socket) -> Option<Value> {
    let conn = socket.state()?;
    let forwarded = socket.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let address = forwarded.map(str::to_owned).or_else(|| socket.peer().map(|p| p.ip().to_string()));
    let headers = match forwarded {
        Some(value) => json!({ "x-forwarded-for": value }),
        None => json!({}),
    };
    let rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    Some(json!({
        "id": socket.id.to_string(),
        "clientId": socket.client_id().to_string(),
        "transport": socket.transport(),
        "nsp": socket.ns(),
        "data": { "userId": conn.identity.user_id, "name": conn.identity.name },
        "handshake": {
            "address": address,
            "headers": headers,
            "query": {},
            "issued": conn.since_ms,
            "time": rfc3339(conn.since_ms),
        },
        "rooms": rooms,
    }))
}

/// The UI's timestamps: a JSON date, as Node's `new Date()` serialises.
fn now() -> Value {
    rfc3339(epoch_ms()).into()
}

fn rfc3339(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The host's name (a pod's name in Kubernetes), as Node's `os.hostname()`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_in_their_wire_format() {
        let act = Message::Act {
            action: Action::Disconnect { ns: "/chat".into(), close: false, filter: Some("abc".into()) },
        };
        let text = serde_json::to_string(&act).unwrap();
        assert_eq!(text, r#"{"type":"act","action":{"kind":"disconnect","ns":"/chat","close":false,"filter":"abc"}}"#);
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), act);
        let snapshot = serde_json::to_string(&Message::Snapshot { request: 7 }).unwrap();
        assert_eq!(snapshot, r#"{"type":"snapshot","request":7}"#);
    }

    #[test]
    fn timestamps_are_json_dates() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
