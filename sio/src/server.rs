//! The server: Engine.IO's HTTP endpoint (long-polling and WebSocket), the handling of
//! every packet a client sends, and the heartbeat.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use dashmap::DashMap;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

use crate::error::SendError;
use crate::error::{PacketError, WsError};
use crate::packet::{self, DataError, EnginePacket, Kind, Packet};
use crate::payload::Payload;
use crate::recovery::Recovery;
use crate::session::{Lanes, Limits, Message, Partial, Session, Transport};
use crate::sid::Sid;
use crate::socket::{DisconnectReason, Event, Namespace, NamespaceBuilder, Socket};
use crate::store::SessionStore;
use crate::ws;

/// Engine.IO settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long a pong may take.
    pub ping_timeout: Duration,
    /// The largest message (WebSocket) or request body (long-polling) a client may send.
    pub max_payload: usize,
    /// Unsent bytes a connection may hold: emits and broadcasts beyond it are refused
    /// ([`crate::SendError::Full`]); a reply the client asked for (pong, ack) beyond it
    /// closes the connection, since that client sends and does not read.
    pub max_buffered: usize,
    /// Handshake headers kept for the connect handlers (`authorization`, `traceparent`…).
    /// Others are dropped at once: a session keeps only what it will use.
    pub keep_headers: Vec<HeaderName>,
    /// Connection state recovery (`connectionStateRecovery` of the official client), off
    /// unless set: when on, every event broadcast to a room carries an offset as its last
    /// argument and is kept in memory for the window. See the `recovery` module.
    pub recovery: Option<Recovery>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            max_buffered: 1 << 20,
            keep_headers: vec![header::AUTHORIZATION],
            recovery: None,
        }
    }
}

/// Builds an [`Io`].
pub struct Builder<S> {
    config: Config,
    namespaces: Vec<NamespaceBuilder<S>>,
    connect_timeout: Duration,
    engine_hook: Option<EngineHook<S>>,
    upgrade_hook: Option<UpgradeHook<S>>,
    store: Option<Arc<dyn SessionStore>>,
}

type EngineHook<S> = Box<dyn Fn(&Engine<'_, S>, EngineMessage<'_>) + Send + Sync>;
type UpgradeHook<S> = Box<dyn Fn(&Arc<Socket<S>>) + Send + Sync>;

/// An Engine.IO message from a client, for [`Builder::on_engine_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMessage<'a> {
    /// A text message (the packet after its `4`).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// An Engine.IO session, as [`Builder::on_engine_message`]'s hook sees it.
pub struct Engine<'a, S> {
    session: &'a Arc<Session<S>>,
    limit: usize,
    /// A plain WebSocket ([`Io::handle_websocket`]): text goes out as given.
    raw: bool,
}

impl<S> Engine<'_, S> {
    /// The session's id.
    pub fn id(&self) -> Sid {
        self.session.id
    }

    /// Sends a text message.
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        if self.raw {
            return self.session.send(text, self.limit);
        }
        self.session.send(&format!("4{text}"), self.limit)
    }

    /// Sends a binary message.
    pub fn send_binary(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.session.send_binary(None, &[Bytes::copy_from_slice(bytes)], self.limit)
    }
}

/// Node's `connectTimeout`: how long a session may stay without joining a namespace.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

impl<S: Send + Sync + 'static> Builder<S> {
    /// How long a new session may take to join a namespace before it is closed
    /// ([`CONNECT_TIMEOUT`] unless set): a connection that never joins must not be held.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Takes every Engine.IO message (text and binary) instead of Socket.IO: the server is
    /// then a plain Engine.IO server (namespaces and the connect timeout do not apply).
    /// The hook runs on the connection's task, in the order messages arrive: keep it short.
    pub fn on_engine_message(
        mut self,
        hook: impl Fn(&Engine<'_, S>, EngineMessage<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.engine_hook = Some(Box::new(hook));
        self
    }

    /// Runs `hook` for each socket of a session whose transport became WebSocket (an
    /// upgrade from long-polling), on the connection's task: keep it short.
    pub fn on_upgrade(mut self, hook: impl Fn(&Arc<Socket<S>>) + Send + Sync + 'static) -> Self {
        self.upgrade_hook = Some(Box::new(hook));
        self
    }

    /// With connection state recovery on ([`Config::recovery`]), keeps sessions and
    /// broadcasts in `store`, shared by every node, instead of this node's memory: a client
    /// then recovers on whichever node it reconnects to, and the broadcasts must be written
    /// with [`Namespace::broadcast_at`] in the order of a bus every node reads (see
    /// [`SessionStore`]).
    pub fn session_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a namespace.
    pub fn ns(mut self, ns: NamespaceBuilder<S>) -> Self {
        self.namespaces.push(ns);
        self
    }

    /// Starts the server's tasks (the heartbeat and one flusher per worker thread); call it
    /// inside a tokio runtime.
    pub fn build(self) -> Io<S> {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let lanes = Lanes::spawn(workers);
        let namespaces = self
            .namespaces
            .into_iter()
            .map(|ns| {
                let ns = Arc::new(ns.build(
                    lanes.clone(),
                    self.config.max_buffered,
                    self.config.recovery,
                    self.store.clone(),
                ));
                (ns.name().to_owned(), ns)
            })
            .collect();
        let shared = Arc::new(Shared {
            config: self.config,
            connect_timeout: self.connect_timeout,
            engine_hook: self.engine_hook,
            upgrade_hook: self.upgrade_hook,
            namespaces,
            sessions: DashMap::new(),
            lanes,
        });
        tokio::spawn(heartbeat(Arc::downgrade(&shared)));
        Io(shared)
    }
}

/// A Socket.IO server. Cloning it is cheap; it stops when the last clone is dropped.
pub struct Io<S>(Arc<Shared<S>>);

impl<S> Clone for Io<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

struct Shared<S> {
    config: Config,
    connect_timeout: Duration,
    engine_hook: Option<EngineHook<S>>,
    upgrade_hook: Option<UpgradeHook<S>>,
    namespaces: HashMap<String, Arc<Namespace<S>>>,
    sessions: DashMap<Sid, Arc<Session<S>>>,
    lanes: Arc<Lanes<S>>,
}

impl<S> Drop for Shared<S> {
    fn drop(&mut self) {
        self.lanes.stop();
    }
}

impl<S: Send + Sync + 'static> Io<S> {
    /// A server with `config`; add namespaces, then [`Builder::build`].
    pub fn builder(config: Config) -> Builder<S> {
        Builder {
            config,
            namespaces: Vec::new(),
            connect_timeout: CONNECT_TIMEOUT,
            engine_hook: None,
            upgrade_hook: None,
            store: None,
        }
    }

    /// Namespace `name`.
    pub fn of(&self, name: &str) -> Option<&Arc<Namespace<S>>> {
        self.0.namespaces.get(name)
    }

    /// Every namespace.
    pub fn namespaces(&self) -> impl Iterator<Item = &Arc<Namespace<S>>> {
        self.0.namespaces.values()
    }

    /// Open Engine.IO sessions on this node.
    pub fn sessions(&self) -> usize {
        self.0.sessions.len()
    }

    /// Every socket on this node that joined its namespace, across namespaces. A walk over
    /// every session, for occasional listings (an admin view): no index of sockets is kept
    /// beside the rooms, which would cost every connection memory.
    pub fn sockets(&self) -> Vec<Arc<Socket<S>>> {
        let mut sockets = Vec::new();
        for session in self.0.sessions.iter() {
            sockets.extend(session.value().state().sockets.iter().filter(|s| s.connected()).cloned());
        }
        sockets
    }

    /// Bytes written to this node's sessions that their clients have not taken yet (the
    /// sum of every connection's buffer, which [`Config::max_buffered`] bounds).
    pub fn unsent_bytes(&self) -> usize {
        self.0.sessions.iter().map(|s| s.value().unsent()).sum()
    }

    /// Closes every session at the transport level (WebSocket close 1001; long-polls get a
    /// close packet), runs the disconnect handlers and returns when they are done. Clients
    /// reconnect, to another node if this one is going away.
    pub async fn close(&self) {
        // Taken out of the map here rather than by `finish`: a session's own task that wakes
        // to find it closed then finds it gone and leaves the handlers to this call, which
        // waits for them. Otherwise that task could win and this call return before they ran.
        let ids: Vec<Sid> = self.0.sessions.iter().map(|s| *s.key()).collect();
        let sessions: Vec<Arc<Session<S>>> =
            ids.iter().filter_map(|id| self.0.sessions.remove(id)).map(|(_, session)| session).collect();
        for session in &sessions {
            let mut bye = Vec::with_capacity(4);
            ws::write_close(&mut bye, ws::GOING_AWAY);
            session.send_ws(&bye, usize::MAX);
            session.close(DisconnectReason::ServerShutdown);
        }
        futures::future::join_all(sessions.into_iter().map(end_sockets)).await;
    }

    /// The axum handler for Engine.IO's endpoint; route it at `/socket.io/`.
    pub async fn handle(State(io): State<Io<S>>, request: Request) -> Response {
        io.serve(request).await.unwrap_or_else(|e| e.into_response())
    }

    async fn serve(&self, request: Request) -> Result<Response, EngineError> {
        let query = Query::parse(request.uri().query().unwrap_or_default())?;
        match (query.transport, request.method()) {
            (TransportKind::WebSocket, &Method::GET) => self.websocket(request, query.sid),
            (TransportKind::Polling, &Method::GET) => match query.sid {
                None => Ok(self.open_polling(&request)),
                Some(sid) => self.poll(self.session(sid)?).await,
            },
            (TransportKind::Polling, &Method::POST) => {
                let session = self.session(query.sid.ok_or(EngineError::BadRequest)?)?;
                self.post(session, request).await
            }
            _ => Err(EngineError::BadRequest),
        }
    }

    /// Session `sid`, unless its pong is late: the heartbeat checks only every few ticks,
    /// and a request must not find alive a session whose deadline has passed.
    fn session(&self, sid: Sid) -> Result<Arc<Session<S>>, EngineError> {
        let session = self.0.sessions.get(&sid).map(|s| s.value().clone()).ok_or(EngineError::UnknownSid)?;
        let late = session.state().ping_sent.is_some_and(|sent| sent.elapsed() > self.0.config.ping_timeout);
        if late {
            session.close(DisconnectReason::HeartbeatTimeout);
            retire(&self.0, session);
            return Err(EngineError::UnknownSid);
        }
        Ok(session)
    }

    fn new_session(&self, request: &Request, transport: Transport) -> Arc<Session<S>> {
        let headers = request.headers();
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
        let kept = self
            .0
            .config
            .keep_headers
            .iter()
            // Copied: a parsed header value is a slice of the connection's read buffer, and
            // keeping it would keep that whole buffer (8 KiB or more) for the session's life.
            .filter_map(|name| Some((name.clone(), HeaderValue::from_bytes(headers.get(name)?.as_bytes()).ok()?)))
            .collect();
        let now = Instant::now();
        let next_ping = now + self.0.config.ping_interval;
        let connect_by = self.0.engine_hook.is_none().then(|| now + self.0.connect_timeout);
        let session = Arc::new(Session::new(kept, peer, transport, self.0.lanes.clone(), next_ping, connect_by));
        self.0.sessions.insert(session.id, session.clone());
        session
    }

    fn open_packet(&self, sid: Sid, upgrades: &[&str]) -> String {
        let config = &self.0.config;
        let open = json!({
            "sid": sid.to_string(),
            "upgrades": upgrades,
            "pingInterval": config.ping_interval.as_millis() as u64,
            "pingTimeout": config.ping_timeout.as_millis() as u64,
            "maxPayload": config.max_payload,
        });
        format!("0{open}")
    }

    fn open_polling(&self, request: &Request) -> Response {
        let session = self.new_session(request, Transport::Polling);
        text(self.open_packet(session.id, &["websocket"]))
    }

    /// A long-poll: answers with every waiting packet, waiting for one if there is none.
    async fn poll(&self, session: Arc<Session<S>>) -> Result<Response, EngineError> {
        {
            let mut state = session.state();
            if state.transport == Transport::WebSocket {
                // Upgraded: this transport is over (Node answers 400 too).
                return Err(EngineError::BadRequest);
            }
            if state.polling {
                drop(state);
                session.close(DisconnectReason::MultipleHttpPolling);
                retire(&self.0, session);
                return Err(EngineError::BadRequest);
            }
            state.polling = true;
        }
        let _waiting = PollGuard(&session);
        loop {
            {
                let mut state = session.state();
                if !state.outbox.is_empty() {
                    let mut body = String::new();
                    for (i, packet) in state.outbox.drain(..).enumerate() {
                        if i > 0 {
                            body.push(packet::SEPARATOR);
                        }
                        body.push_str(&packet);
                    }
                    state.outbox_bytes = 0;
                    return Ok(text(body));
                }
                match state.transport {
                    Transport::Closed => {
                        // The client's own close releases its GET with a noop; a close by
                        // the server tells the client with a close packet.
                        let answer = if state.reason == Some(DisconnectReason::TransportClose) { "6" } else { "1" };
                        drop(state);
                        retire(&self.0, session.clone());
                        return Ok(text(answer.into()));
                    }
                    // The client pauses polling to upgrade: release its last GET.
                    Transport::Upgrading | Transport::WebSocket => return Ok(text("6".into())),
                    Transport::Polling => {}
                }
            }
            session.poll_wake.notified().await;
        }
    }

    /// A long-polling POST: the packets of its body, in order.
    async fn post(&self, session: Arc<Session<S>>, request: Request) -> Result<Response, EngineError> {
        let body = axum::body::to_bytes(request.into_body(), self.0.config.max_payload)
            .await
            .map_err(|_| EngineError::PayloadTooLarge)?;
        if session.state().transport == Transport::WebSocket {
            return Err(EngineError::BadRequest);
        }
        let handled = std::str::from_utf8(&body).map_err(|_| PacketError::Utf8).and_then(|body| {
            body.split(packet::SEPARATOR).try_for_each(|packet| match packet.strip_prefix('b') {
                Some(encoded) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_err(|_| PacketError::Attachment)?;
                    self.on_binary(&session, &bytes)
                }
                None => self.on_text(&session, packet),
            })
        });
        if let Err(e) = &handled {
            // As Node: a body that does not parse ends the session.
            tracing::debug!(sid = %session.id, error = %e, "malformed packet; closing");
            session.close(DisconnectReason::TransportError);
        }
        if session.state().transport == Transport::Closed {
            retire(&self.0, session);
        }
        handled.map(|()| text("ok".into())).map_err(|_| EngineError::BadRequest)
    }

    /// A WebSocket handshake: a new session, or the upgrade of a long-polling one.
    fn websocket(&self, mut request: Request, sid: Option<Sid>) -> Result<Response, EngineError> {
        let accept = handshake_accept(&request)?;
        let session = match sid {
            Some(sid) => {
                let session = self.session(sid)?;
                if session.state().transport != Transport::Polling {
                    // Upgraded already, or upgrading: as Node, the handshake succeeds and
                    // the new connection is closed at once.
                    return Ok(refuse_websocket(request, accept));
                }
                session
            }
            None => {
                let session = self.new_session(&request, Transport::WebSocket);
                // Queued now, so the open packet goes first whatever the heartbeat adds
                // before the connection is handed over; written once it is.
                let _ = session.send(&self.open_packet(session.id, &[]), usize::MAX);
                session
            }
        };
        let on_upgrade = hyper::upgrade::on(&mut request);
        let io = self.clone();
        let fresh = sid.is_none();
        tokio::spawn(async move {
            let parts =
                match on_upgrade.await.map(hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>) {
                    Ok(Ok(parts)) => parts,
                    _ => {
                        tracing::warn!("WebSocket upgrade failed");
                        if fresh {
                            session.close(DisconnectReason::TransportError);
                            finish(io.0.clone(), session).await;
                        }
                        return;
                    }
                };
            if !session.attach(parts.io.into_inner()) {
                return;
            }
            // What was queued before there was a connection to write to (the open packet).
            session.flush();
            // Bytes the client sent right after its handshake, copied for the same reason.
            let early = parts.read_buf.to_vec();
            drop(parts.read_buf);
            io.run_websocket(session, early).await;
        });
        Ok(switching_protocols(accept))
    }

    /// A plain WebSocket endpoint on this crate's framing, without Engine.IO: no open packet
    /// and no heartbeat; every message goes to the [`Builder::on_engine_message`] hook as
    /// it came, and [`Engine::send_text`] writes text as given. It exists to check the
    /// framing (the Autobahn|Testsuite runs against it, see the `ws_echo` example).
    pub async fn handle_websocket(State(io): State<Io<S>>, mut request: Request) -> Response {
        let accept = match handshake_accept(&request) {
            Ok(accept) => accept,
            Err(e) => return e.into_response(),
        };
        // Not in the session map: no heartbeat, no connect timeout.
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let session =
            Arc::new(Session::new(HeaderMap::new(), None, Transport::WebSocket, io.0.lanes.clone(), far, None));
        let on_upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(Ok(parts)) =
                on_upgrade.await.map(hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>)
            else {
                return;
            };
            session.attach(parts.io.into_inner());
            let early = parts.read_buf.to_vec();
            io.run_frames(&session, early, |message| {
                if let Some(hook) = &io.0.engine_hook {
                    hook(&io.engine(&session, true), message);
                }
                Ok(())
            })
            .await;
            session.shutdown();
        });
        switching_protocols(accept)
    }

    /// Runs a WebSocket connection's frames until it ends, giving each message to
    /// `on_message` (whose error, a packet that does not parse, ends the session as in
    /// Node), and closes with the code a protocol error calls for.
    async fn run_frames(
        &self,
        session: &Arc<Session<S>>,
        early: Vec<u8>,
        mut on_message: impl FnMut(EngineMessage<'_>) -> Result<(), PacketError>,
    ) {
        let config = &self.0.config;
        let limits = Limits { max_payload: config.max_payload, max_buffered: config.max_buffered };
        let result = session
            .run_ws(early, limits, |message| {
                let handled = match message {
                    Message::Text(text) => on_message(EngineMessage::Text(text)),
                    Message::Binary(bytes) => on_message(EngineMessage::Binary(bytes)),
                };
                if let Err(e) = handled {
                    tracing::debug!(sid = %session.id, error = %e, "malformed packet; closing");
                    session.close(DisconnectReason::TransportError);
                }
            })
            .await;
        if let Err(e) = result {
            tracing::debug!(sid = %session.id, error = %e, "WebSocket protocol error");
            let code = match e {
                WsError::TooBig => ws::TOO_BIG,
                WsError::Unread => ws::POLICY_VIOLATION,
                WsError::Utf8 => ws::INVALID_PAYLOAD,
                _ => ws::PROTOCOL_ERROR,
            };
            let mut bye = Vec::with_capacity(4);
            ws::write_close(&mut bye, code);
            session.send_ws(&bye, usize::MAX);
            session.close(DisconnectReason::TransportError);
            session.flush();
        }
    }

    async fn run_websocket(&self, session: Arc<Session<S>>, early: Vec<u8>) {
        self.run_frames(&session, early, |message| match message {
            EngineMessage::Text(text) => self.on_text(&session, text),
            EngineMessage::Binary(bytes) => self.on_binary(&session, bytes),
        })
        .await;
        let probe_failed = {
            let mut state = session.state();
            let polling = matches!(state.transport, Transport::Upgrading | Transport::Polling);
            if polling {
                state.transport = Transport::Polling;
            }
            polling
        };
        if probe_failed {
            // The session goes on long-polling. Its probe connection ends here; the stream
            // stays attached, so this session cannot try another upgrade (clients try once).
            session.shutdown();
            return;
        }
        session.close(DisconnectReason::TransportClose);
        finish(self.0.clone(), session).await;
    }

    fn engine<'a>(&self, session: &'a Arc<Session<S>>, raw: bool) -> Engine<'a, S> {
        Engine { session, limit: self.0.config.max_buffered, raw }
    }

    /// One Engine.IO text packet from a client.
    fn on_text(&self, session: &Arc<Session<S>>, text: &str) -> Result<(), PacketError> {
        match EnginePacket::parse(text)? {
            EnginePacket::Message(message) => match &self.0.engine_hook {
                Some(hook) => hook(&self.engine(session, false), EngineMessage::Text(message)),
                None => return self.on_message(session, message),
            },
            EnginePacket::Pong => session.state().ping_sent = None,
            EnginePacket::Ping(data) => {
                let mut state = session.state();
                if data == "probe" && state.transport == Transport::Polling {
                    state.transport = Transport::Upgrading;
                    drop(state);
                    let mut probe = Vec::with_capacity(8);
                    ws::write_frame(&mut probe, ws::TEXT, b"3probe");
                    // One per session: no limit needed.
                    session.send_ws(&probe, usize::MAX);
                    session.poll_wake.notify_one();
                } else {
                    drop(state);
                    let _ = session.reply(&format!("3{data}"), self.0.config.max_buffered);
                }
            }
            EnginePacket::Upgrade => {
                if session.upgraded() {
                    session.poll_wake.notify_one();
                    if let Some(hook) = &self.0.upgrade_hook {
                        let sockets = session.state().sockets.clone();
                        sockets.iter().for_each(hook);
                    }
                }
            }
            EnginePacket::Close => session.close(DisconnectReason::TransportClose),
            EnginePacket::Noop => {}
        }
        Ok(())
    }

    /// A binary message: an attachment of the binary event being received.
    fn on_binary(&self, session: &Arc<Session<S>>, bytes: &[u8]) -> Result<(), PacketError> {
        if let Some(hook) = &self.0.engine_hook {
            hook(&self.engine(session, false), EngineMessage::Binary(bytes));
            return Ok(());
        }
        let mut state = session.state();
        let partial = state.binary.as_mut().ok_or(PacketError::Attachment)?;
        // A packet and its attachments together are held to the payload limit, as they
        // would be in one long-polling body.
        partial.bytes += bytes.len();
        if partial.bytes > self.0.config.max_payload {
            return Err(PacketError::Attachment);
        }
        partial.attachments.push(Bytes::copy_from_slice(bytes));
        if partial.attachments.len() < partial.due {
            return Ok(());
        }
        let partial = state.binary.take().expect("checked above");
        drop(state);
        self.on_binary_event(session, &Packet::parse(&partial.text)?, partial.attachments)
    }

    /// One Socket.IO packet from a client.
    fn on_message(&self, session: &Arc<Session<S>>, text: &str) -> Result<(), PacketError> {
        let packet = Packet::parse(text)?;
        if session.state().binary.is_some() {
            // Node's parser refuses text while attachments are due, too.
            return Err(PacketError::Attachment);
        }
        match packet.kind {
            Kind::Connect => self.on_connect(session, &packet)?,
            Kind::Disconnect => {
                let socket = {
                    let mut state = session.state();
                    let at = state.sockets.iter().position(|s| s.ns() == packet.ns);
                    at.map(|at| state.sockets.swap_remove(at))
                };
                if let Some(socket) = socket {
                    tokio::spawn(socket.end(DisconnectReason::ClientNamespaceDisconnect));
                }
            }
            Kind::Event => {
                let (name, args) = packet::event(packet.data)?;
                self.on_event(session, &packet, &name, args.map(Payload::new));
            }
            Kind::BinaryEvent if packet.attachments > 0 => {
                // Checked now, not when the attachments are in.
                let _ = packet::event(packet.data)?;
                session.state().binary = Some(Box::new(Partial {
                    text: text.into(),
                    due: packet.attachments,
                    attachments: Vec::new(),
                    bytes: text.len(),
                }));
            }
            Kind::BinaryEvent => self.on_binary_event(session, &packet, Vec::new())?,
            // The server asks for no acknowledgements, and the rest is server-to-client.
            Kind::Ack | Kind::BinaryAck | Kind::ConnectError => {}
        }
        Ok(())
    }

    fn on_connect(&self, session: &Arc<Session<S>>, packet: &Packet<'_>) -> Result<(), PacketError> {
        let auth = packet::connect_auth(packet.data)?;
        let Some(ns) = self.of(packet.ns).cloned() else {
            let _ = session
                .reply(&packet::encode_connect_error(packet.ns, "Invalid namespace"), self.0.config.max_buffered);
            return Ok(());
        };
        let socket = {
            let mut state = session.state();
            if state.transport == Transport::Closed || state.sockets.iter().any(|s| s.ns() == packet.ns) {
                return Ok(());
            }
            let socket = Arc::new(Socket::new(ns.clone(), session.clone()));
            state.sockets.push(socket.clone());
            socket
        };
        tokio::spawn(ns.connect(socket, auth));
        Ok(())
    }

    /// A binary event, complete with its attachments.
    fn on_binary_event(
        &self,
        session: &Arc<Session<S>>,
        packet: &Packet<'_>,
        attachments: Vec<Bytes>,
    ) -> Result<(), PacketError> {
        let (name, args) = packet::event(packet.data)?;
        self.on_event(session, packet, &name, args.map(|args| Payload { args, attachments }));
        Ok(())
    }

    fn on_event(&self, session: &Arc<Session<S>>, packet: &Packet<'_>, name: &str, data: Result<Payload, DataError>) {
        let socket = {
            let state = session.state();
            if state.transport == Transport::Closed {
                return;
            }
            state.sockets.iter().find(|s| s.ns() == packet.ns).cloned()
        };
        let Some(socket) = socket.filter(|s| s.connected()) else {
            return tracing::debug!(sid = %session.id, ns = packet.ns, "event for a namespace not joined; ignored");
        };
        let attached = data.as_ref().map_or(0, |p| p.attachments.iter().map(Bytes::len).sum::<usize>());
        let event = Event { name: name.to_owned(), data, ack: packet.ack, size: packet.data.len() + attached };
        if !socket.dispatch(event, self.0.config.max_buffered) {
            tracing::debug!(sid = %session.id, "events arrive faster than their handlers run; closing");
            session.close(DisconnectReason::TransportError);
        }
    }
}

/// The `Sec-WebSocket-Accept` answer to a valid handshake. RFC 6455 section 4.2.1: an
/// HTTP/1.1 GET with `Upgrade: websocket`, a `Connection` naming `Upgrade`, a 16-byte key in
/// base64 and version 13 (anything else is answered 426 with the version this server
/// speaks).
fn handshake_accept(request: &Request) -> Result<String, EngineError> {
    let headers = request.headers();
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok());
    let connection = headers.get(header::CONNECTION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(EngineError::BadRequest)?;
    if request.version() != axum::http::Version::HTTP_11
        || !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        || !connection.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        || !ws::valid_key(key.as_bytes())
    {
        return Err(EngineError::BadRequest);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(EngineError::WebSocketVersion);
    }
    Ok(ws::accept_key(key.as_bytes()))
}

/// Completes a WebSocket handshake only to close the connection at once (an empty close
/// frame, then the end), for a second WebSocket of a session that has one.
fn refuse_websocket(mut request: Request, accept: String) -> Response {
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(Ok(parts)) =
            on_upgrade.await.map(hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>)
        {
            let mut stream = parts.io.into_inner();
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &[0x80 | ws::CLOSE, 0]).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
        }
    });
    switching_protocols(accept)
}

fn switching_protocols(accept: String) -> Response {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .expect("a valid response")
}

/// Clears a session's waiting GET when the request ends, however it ends.
struct PollGuard<'a, S>(&'a Arc<Session<S>>);

impl<S> Drop for PollGuard<'_, S> {
    fn drop(&mut self) {
        self.0.state().polling = false;
    }
}

/// Removes a closed session and runs its sockets' disconnect handlers (once, whoever calls).
async fn finish<S: Send + Sync + 'static>(shared: Arc<Shared<S>>, session: Arc<Session<S>>) {
    if shared.sessions.remove(&session.id).is_some() {
        end_sockets(session).await;
    }
}

/// Takes a closed session out of the map now, so that the next request for it finds it gone
/// (a GET right after a refused POST is answered 400, as in Node, not with the close packet
/// of a session still on its way out), and runs its disconnect handlers in the background.
fn retire<S: Send + Sync + 'static>(shared: &Arc<Shared<S>>, session: Arc<Session<S>>) {
    if shared.sessions.remove(&session.id).is_some() {
        tokio::spawn(end_sockets(session));
    }
}

/// Runs the disconnect handlers of a closed session that was taken out of the map.
async fn end_sockets<S: Send + Sync + 'static>(session: Arc<Session<S>>) {
    session.shutdown();
    let (sockets, reason) = {
        let mut state = session.state();
        (std::mem::take(&mut state.sockets), state.reason.unwrap_or(DisconnectReason::TransportClose))
    };
    for socket in sockets {
        socket.end(reason).await;
    }
}

/// Pings every session when its ping is due and closes those whose pong is late. One task
/// for all sessions: a timer per session would cost memory on every idle connection.
async fn heartbeat<S: Send + Sync + 'static>(shared: Weak<Shared<S>>) {
    let tick = {
        let Some(shared) = shared.upgrade() else { return };
        (shared.config.ping_interval.min(shared.config.ping_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    };
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        let mut late = Vec::new();
        let mut ping = Vec::new();
        for entry in shared.sessions.iter() {
            let session = entry.value();
            let mut state = session.state();
            if state.transport == Transport::Closed {
                // Closed by a reply that did not fit, with nobody left to end it.
                late.push(session.clone());
                continue;
            }
            if let Some(by) = state.connect_by
                && now >= by
            {
                if state.sockets.is_empty() {
                    tracing::debug!(sid = %session.id, "no namespace joined in time; closing");
                    late.push(session.clone());
                    continue;
                }
                state.connect_by = None;
            }
            match state.ping_sent {
                Some(sent) if now.duration_since(sent) > shared.config.ping_timeout => late.push(session.clone()),
                None if now >= state.next_ping => {
                    // The pong's deadline counts from when the ping was due, not from this
                    // tick (up to a tick later): sessions end on time, as Node's do.
                    state.ping_sent = Some(state.next_ping);
                    state.next_ping = now + shared.config.ping_interval;
                    ping.push(session.clone());
                }
                _ => {}
            }
        }
        for session in ping {
            let _ = session.send("2", usize::MAX);
        }
        for session in late {
            session.close(DisconnectReason::HeartbeatTimeout);
            retire(&shared, session);
        }
    }
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransportKind {
    Polling,
    WebSocket,
}

/// The Engine.IO query: `EIO=4`, the transport and the session id.
struct Query {
    transport: TransportKind,
    sid: Option<Sid>,
}

impl Query {
    fn parse(query: &str) -> Result<Self, EngineError> {
        let mut eio = None;
        let mut transport = None;
        let mut sid = None;
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => eio = Some(value),
                "transport" => transport = Some(value),
                "sid" => sid = Some(value.parse::<Sid>().map_err(|()| EngineError::UnknownSid)?),
                _ => {}
            }
        }
        if eio != Some("4") {
            return Err(EngineError::Version);
        }
        let transport = match transport {
            Some("polling") => TransportKind::Polling,
            Some("websocket") => TransportKind::WebSocket,
            _ => return Err(EngineError::Transport),
        };
        Ok(Self { transport, sid })
    }
}

/// Engine.IO's HTTP errors, with the codes its clients know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Code 0.
    #[error("Transport unknown")]
    Transport,
    /// Code 1.
    #[error("Session ID unknown")]
    UnknownSid,
    /// Code 3.
    #[error("Bad request")]
    BadRequest,
    /// Code 5.
    #[error("Unsupported protocol version")]
    Version,
    /// A long-polling body over the payload limit.
    #[error("Payload too large")]
    PayloadTooLarge,
    /// A WebSocket handshake for a version other than 13.
    #[error("Unsupported WebSocket version")]
    WebSocketVersion,
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            Self::Transport => (StatusCode::BAD_REQUEST, 0),
            Self::UnknownSid => (StatusCode::BAD_REQUEST, 1),
            Self::BadRequest => (StatusCode::BAD_REQUEST, 3),
            Self::Version => (StatusCode::BAD_REQUEST, 5),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, 3),
            Self::WebSocketVersion => {
                let body = axum::Json(json!({ "code": 3, "message": self.to_string() }));
                return (StatusCode::UPGRADE_REQUIRED, [(header::SEC_WEBSOCKET_VERSION, "13")], body).into_response();
            }
        };
        (status, axum::Json(json!({ "code": code, "message": self.to_string() }))).into_response()
    }
}
