//! An Engine.IO session: its transport (long-polling, then perhaps WebSocket), the bytes it
//! still has to write, and its heartbeat.
//!
//! Memory is the point of this design (it was written for a measured reason: engineioxide
//! allocates a 32-slot queue block, three tasks and a read buffer per session, 19.8 KB of the
//! 20 KiB an idle connection cost). An idle WebSocket session here holds no buffer and no
//! timer: one task waits for the socket to become readable and reads into a per-thread
//! buffer; what the server writes is appended to a byte buffer that exists only while bytes
//! wait for the kernel, and a flusher per worker thread writes it. Heartbeats come from one
//! ticker for all sessions.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::http::HeaderMap;
use base64::Engine as _;
use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::error::{SendError, WsError};
use crate::sid::Sid;
use crate::socket::{DisconnectReason, Socket};
use crate::ws;

/// Reads of the per-thread buffer (64 KiB each) a connection makes per wake-up.
const READS_PER_WAKE: usize = 16;

/// Sessions a flusher writes before it yields.
const FLUSH_CHUNK: usize = 64;

/// Buffers above this capacity are freed once written rather than kept for the next write.
const KEEP_CAPACITY: usize = 4096;

/// Where a session's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Long-polling: packets wait in the outbox for the next GET.
    Polling,
    /// A WebSocket is being probed; packets still go to the outbox.
    Upgrading,
    /// WebSocket frames, written by the flushers.
    WebSocket,
    /// Gone.
    Closed,
}

/// What a session has to write and how.
pub(crate) struct State<S> {
    pub transport: Transport,
    /// Long-polling packets waiting for a GET, as Engine.IO packet text.
    pub outbox: VecDeque<Arc<str>>,
    /// Their total length.
    pub outbox_bytes: usize,
    /// A GET is waiting.
    pub polling: bool,
    /// WebSocket bytes the kernel has not taken yet.
    pub pending: Vec<u8>,
    /// In a flusher's list.
    queued: bool,
    /// The kernel's send buffer was full; the session's task waits for writability.
    blocked: bool,
    /// The namespaces this session joined.
    pub sockets: Vec<Arc<Socket<S>>>,
    /// A binary packet waiting for its attachments (boxed: most sessions never have one).
    pub binary: Option<Box<Partial>>,
    /// When the last ping went out, if its pong is still due.
    pub ping_sent: Option<Instant>,
    /// When the next ping is due.
    pub next_ping: Instant,
    /// When the session must have joined a namespace, until the heartbeat has seen it did.
    pub connect_by: Option<Instant>,
    /// Why the session closed.
    pub reason: Option<DisconnectReason>,
}

/// A binary event or ack whose attachments are still arriving.
pub(crate) struct Partial {
    /// Its text.
    pub text: Box<str>,
    /// How many attachments it announced.
    pub due: usize,
    /// Those in so far.
    pub attachments: Vec<Bytes>,
    /// Their total size, held under the payload limit.
    pub bytes: usize,
}

/// One Engine.IO session.
pub struct Session<S> {
    /// Its id.
    pub id: Sid,
    /// The handshake request's headers the server was configured to keep.
    pub headers: HeaderMap,
    /// The address the handshake came from (a proxy's, behind one), when known.
    pub peer: Option<SocketAddr>,
    lanes: Arc<Lanes<S>>,
    /// Its flusher lane.
    lane: usize,
    /// The WebSocket's TCP stream once the session has one.
    stream: std::sync::OnceLock<TcpStream>,
    /// Wakes the WebSocket task (something to re-check: closing, blocked writes).
    pub(crate) wake: Notify,
    /// Wakes the waiting long-poll GET.
    pub(crate) poll_wake: Notify,
    state: Mutex<State<S>>,
}

impl<S> Session<S> {
    pub(crate) fn new(
        headers: HeaderMap,
        peer: Option<SocketAddr>,
        transport: Transport,
        lanes: Arc<Lanes<S>>,
        next_ping: Instant,
        connect_by: Option<Instant>,
    ) -> Self {
        let id = Sid::random();
        Self {
            id,
            headers,
            peer,
            lane: id.spread() % lanes.count(),
            lanes,
            stream: std::sync::OnceLock::new(),
            wake: Notify::new(),
            poll_wake: Notify::new(),
            state: Mutex::new(State {
                transport,
                outbox: VecDeque::new(),
                outbox_bytes: 0,
                polling: false,
                pending: Vec::new(),
                queued: false,
                blocked: false,
                sockets: Vec::new(),
                binary: None,
                ping_sent: None,
                next_ping,
                connect_by,
                reason: None,
            }),
        }
    }

    /// The session's state. A poisoned lock only means a panic elsewhere; the state is
    /// still consistent (every change is a single assignment or push).
    pub(crate) fn state(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one Engine.IO packet (text such as `42/chat,[…]`), unless `limit` bytes are
    /// already waiting.
    pub fn send(self: &Arc<Self>, text: &str, limit: usize) -> Result<(), SendError> {
        let frame = |out: &mut Vec<u8>| ws::write_frame(out, ws::TEXT, text.as_bytes());
        if self.queue(|| text.into(), frame, text.len(), limit)? {
            self.lanes.schedule(std::slice::from_ref(self));
        }
        Ok(())
    }

    /// Writes a packet and its binary attachments (a text packet, then one binary message
    /// each; `b<base64>` packets on long-polling), unless `limit` bytes are already waiting.
    /// Without text, writes binary Engine.IO messages alone.
    pub fn send_binary(
        self: &Arc<Self>,
        text: Option<&str>,
        attachments: &[Bytes],
        limit: usize,
    ) -> Result<(), SendError> {
        let len = text.map_or(0, str::len) + attachments.iter().map(Bytes::len).sum::<usize>();
        let mut state = self.state();
        let schedule = match state.transport {
            Transport::Closed => return Err(SendError::Closed),
            Transport::Polling | Transport::Upgrading => {
                if state.outbox_bytes + len > limit {
                    return Err(SendError::Full);
                }
                state.outbox_bytes += len;
                state.outbox.extend(text.map(Arc::from));
                for attachment in attachments {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
                    state.outbox.push_back(format!("b{encoded}").into());
                }
                drop(state);
                self.poll_wake.notify_one();
                false
            }
            Transport::WebSocket => {
                if state.pending.len() + len > limit {
                    return Err(SendError::Full);
                }
                if let Some(text) = text {
                    ws::write_frame(&mut state.pending, ws::TEXT, text.as_bytes());
                }
                for attachment in attachments {
                    ws::write_frame(&mut state.pending, ws::BINARY, attachment);
                }
                state.take_schedule()
            }
        };
        if schedule {
            self.lanes.schedule(std::slice::from_ref(self));
        }
        Ok(())
    }

    /// [`Session::send_binary`] for a reply the client asked for (see [`Session::reply`]).
    pub fn reply_binary(
        self: &Arc<Self>,
        text: Option<&str>,
        attachments: &[Bytes],
        limit: usize,
    ) -> Result<(), SendError> {
        let sent = self.send_binary(text, attachments, limit);
        if sent == Err(SendError::Full) {
            tracing::debug!(sid = %self.id, "replies not read; closing");
            self.close(DisconnectReason::TransportError);
        }
        sent
    }

    /// Writes a reply the client asked for (an Engine.IO pong, an ack, the answer to a
    /// namespace join). It counts against `limit` like any packet, and when it does not fit
    /// the session is closed: a client that keeps asking and never reads the answers would
    /// otherwise grow the server's memory without bound. Closing rather than pausing the
    /// reads frees that memory at once; a paused connection would hold it (and the kernel's
    /// buffers) until the heartbeat noticed, since its pongs would sit unread too.
    pub fn reply(self: &Arc<Self>, text: &str, limit: usize) -> Result<(), SendError> {
        let sent = self.send(text, limit);
        if sent == Err(SendError::Full) {
            tracing::debug!(sid = %self.id, "replies not read; closing");
            self.close(DisconnectReason::TransportError);
        }
        sent
    }

    /// Writes a packet already encoded for both transports; true when the session must be
    /// handed to a flusher (the caller batches those, see [`Lanes::schedule`]).
    pub(crate) fn send_shared(&self, frame: &SharedFrame, limit: usize) -> Result<bool, SendError> {
        self.queue(|| frame.text.clone(), |out| out.extend_from_slice(&frame.ws), frame.ws.len(), limit)
    }

    /// Queues a packet for the current transport: its text for the next long-poll, or its
    /// WebSocket frame (written into the pending bytes by `frame`). Refused when `len` more
    /// bytes would put the waiting ones over `limit`, on either transport: a long-polling
    /// client that stops polling must not grow its outbox without bound either.
    fn queue(
        &self,
        text: impl FnOnce() -> Arc<str>,
        frame: impl FnOnce(&mut Vec<u8>),
        len: usize,
        limit: usize,
    ) -> Result<bool, SendError> {
        let mut state = self.state();
        match state.transport {
            Transport::Closed => Err(SendError::Closed),
            Transport::Polling | Transport::Upgrading => {
                if state.outbox_bytes + len > limit {
                    return Err(SendError::Full);
                }
                state.outbox_bytes += len;
                state.outbox.push_back(text());
                drop(state);
                self.poll_wake.notify_one();
                Ok(false)
            }
            Transport::WebSocket => {
                if state.pending.len() + len > limit {
                    return Err(SendError::Full);
                }
                frame(&mut state.pending);
                Ok(state.take_schedule())
            }
        }
    }

    /// Completes an upgrade (false if none was under way): the packets that waited for
    /// polling become WebSocket frames under the same lock that switches the transport, so
    /// a packet sent meanwhile cannot overtake them.
    pub(crate) fn upgraded(self: &Arc<Self>) -> bool {
        let mut state = self.state();
        if state.transport != Transport::Upgrading {
            return false;
        }
        state.transport = Transport::WebSocket;
        let State { outbox, pending, .. } = &mut *state;
        for packet in outbox.drain(..) {
            // Attachments waited as `b<base64>` packets; they go as binary frames.
            match packet.strip_prefix('b').map(|b64| base64::engine::general_purpose::STANDARD.decode(b64)) {
                Some(Ok(bytes)) => ws::write_frame(pending, ws::BINARY, &bytes),
                _ => ws::write_frame(pending, ws::TEXT, packet.as_bytes()),
            }
        }
        state.outbox_bytes = 0;
        let schedule = state.take_schedule();
        drop(state);
        if schedule {
            self.lanes.schedule(std::slice::from_ref(self));
        }
        true
    }

    /// Writes raw WebSocket bytes (control frames) ahead of nothing else: they join the
    /// pending bytes in order. False, and nothing written, when they would put the pending
    /// bytes over `limit` (a close frame is always written: it is the last one).
    pub(crate) fn send_ws(self: &Arc<Self>, bytes: &[u8], limit: usize) -> bool {
        let mut state = self.state();
        let close = bytes.first() == Some(&(0x80 | ws::CLOSE));
        if !close && (state.transport == Transport::Closed || state.pending.len() + bytes.len() > limit) {
            return false;
        }
        state.pending.extend_from_slice(bytes);
        let schedule = state.take_schedule();
        drop(state);
        if schedule {
            self.lanes.schedule(std::slice::from_ref(self));
        }
        true
    }

    /// The bytes written to this session that its client has not taken yet.
    pub(crate) fn unsent(&self) -> usize {
        let state = self.state();
        state.pending.len() + state.outbox_bytes
    }

    /// Writes what is pending until done or the kernel's buffer is full; in that case the
    /// session's task waits for writability and calls this again.
    pub(crate) fn flush(&self) {
        // Not connected yet: the bytes stay queued, and the WebSocket task flushes once it
        // has attached the stream.
        let Some(stream) = self.stream.get() else { return };
        let mut state = self.state();
        state.queued = false;
        if state.blocked {
            return;
        }
        let mut written = 0;
        let failed = loop {
            if written == state.pending.len() {
                break false;
            }
            match stream.try_write(&state.pending[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    state.blocked = true;
                    break false;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if written == state.pending.len() {
            if state.pending.capacity() > KEEP_CAPACITY {
                state.pending = Vec::new();
            } else {
                state.pending.clear();
            }
        } else {
            state.pending.drain(..written);
        }
        let wake = state.blocked || failed;
        if failed {
            state.close(DisconnectReason::TransportError);
        }
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Marks the session closed with `reason` (the first reason wins) and wakes its waiters;
    /// the caller then runs the disconnect handlers (see `Io::finish`).
    pub(crate) fn close(&self, reason: DisconnectReason) {
        self.state().close(reason);
        self.wake.notify_one();
        self.poll_wake.notify_one();
    }

    /// Writes what it can of the pending bytes (a close frame, say) and shuts the WebSocket
    /// connection down, so the client sees the end now rather than when the last reference
    /// to the session goes (a handler still running holds one).
    pub(crate) fn shutdown(&self) {
        self.flush();
        if let Some(stream) = self.stream.get() {
            let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
        }
    }

    /// Sets the WebSocket stream (once).
    pub(crate) fn attach(&self, stream: TcpStream) -> bool {
        self.stream.set(stream).is_ok()
    }

    /// Runs the WebSocket side of the session: reads frames as they arrive and hands each
    /// message to `on_message`, and writes what the flushers could not. Returns when the
    /// session is closed or the connection is gone.
    pub(crate) async fn run_ws(
        self: &Arc<Self>,
        mut early: Vec<u8>,
        limits: Limits,
        mut on_message: impl FnMut(Message<'_>),
    ) -> Result<(), WsError> {
        let Some(stream) = self.stream.get() else { return Ok(()) };
        let mut reader = Reader::default();
        if !early.is_empty() {
            reader.feed(self, &mut early, limits, &mut on_message)?;
        }
        drop(early);
        if reader.closed {
            self.flush();
            return Ok(());
        }
        loop {
            let blocked = {
                let state = self.state();
                if state.transport == Transport::Closed {
                    drop(state);
                    // Last words (a close frame) go out before the socket drops.
                    self.flush();
                    return Ok(());
                }
                state.blocked
            };
            let interest = if blocked { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            tokio::select! {
                () = self.wake.notified() => {}
                ready = stream.ready(interest) => {
                    let Ok(ready) = ready else { return Ok(()) };
                    if ready.is_writable() && blocked {
                        self.state().blocked = false;
                        self.flush();
                    }
                    if ready.is_readable() || ready.is_read_closed() {
                        let open = READ_BUF.with_borrow_mut(|buf| -> Result<bool, WsError> {
                            // At most 1 MiB per wake-up: a client that sends without pause
                            // must not keep this worker from its other tasks.
                            for _ in 0..READS_PER_WAKE {
                                match stream.try_read(&mut buf[..]) {
                                    Ok(0) => return Ok(false),
                                    Ok(n) => {
                                        reader.feed(self, &mut buf[..n], limits, &mut on_message)?;
                                        if reader.closed {
                                            return Ok(false);
                                        }
                                    }
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                                    Err(_) => return Ok(false),
                                }
                            }
                            Ok(true)
                        })?;
                        if !open {
                            // The answer to a close frame goes out before the caller ends
                            // the session.
                            self.flush();
                            return Ok(());
                        }
                    }
                }
            }
            // Readiness can stay set (the reads above stopped before the kernel ran dry), so
            // the next wait may not suspend: yield when this task's budget is spent.
            tokio::task::consume_budget().await;
        }
    }
}

impl<S> State<S> {
    /// True (once) when the session needs a flusher: it has bytes and is neither queued nor
    /// waiting for writability.
    fn take_schedule(&mut self) -> bool {
        let schedule = !self.queued && !self.blocked;
        self.queued = true;
        schedule
    }

    fn close(&mut self, reason: DisconnectReason) {
        if self.transport != Transport::Closed {
            self.transport = Transport::Closed;
            self.reason = Some(reason);
        }
    }
}

thread_local! {
    /// The buffer every WebSocket read goes into; bytes of an unfinished frame are copied
    /// out to that connection's own buffer. 64 KiB: a read takes what the kernel has.
    static READ_BUF: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; 64 * 1024].into_boxed_slice());
}

/// A complete WebSocket message.
pub(crate) enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// What a connection may send and have waiting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The largest message a client may send.
    pub max_payload: usize,
    /// The most bytes that may wait to be written to it.
    pub max_buffered: usize,
}

/// Reassembles frames into messages. Empty (no allocation) between messages.
#[derive(Default)]
struct Reader {
    /// Bytes of a frame that has not fully arrived.
    partial: Vec<u8>,
    /// Payload of a fragmented message so far, and its opcode.
    message: Vec<u8>,
    opcode: Option<u8>,
    /// The client sent a close frame.
    closed: bool,
}

impl Reader {
    /// Consumes `input` (just read), handing out every complete message.
    fn feed<S>(
        &mut self,
        session: &Arc<Session<S>>,
        input: &mut [u8],
        limits: Limits,
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Result<(), WsError> {
        if self.partial.is_empty() {
            let used = self.frames(session, input, limits, on_message)?;
            self.partial.extend_from_slice(&input[used..]);
        } else {
            let mut partial = std::mem::take(&mut self.partial);
            partial.extend_from_slice(input);
            let used = self.frames(session, &mut partial, limits, on_message)?;
            partial.drain(..used);
            if partial.is_empty() && partial.capacity() > KEEP_CAPACITY {
                partial = Vec::new();
            }
            self.partial = partial;
        }
        Ok(())
    }

    /// Handles the complete frames at the start of `buf`; returns the bytes used.
    fn frames<S>(
        &mut self,
        session: &Arc<Session<S>>,
        buf: &mut [u8],
        limits: Limits,
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Result<usize, WsError> {
        let max = limits.max_payload;
        let mut at = 0;
        while let Some(frame) = ws::parse(&mut buf[at..], max)? {
            let payload = &buf[at + frame.payload.0..at + frame.payload.1];
            match frame.opcode {
                ws::PING => {
                    let mut pong = Vec::with_capacity(payload.len() + 2);
                    ws::write_frame(&mut pong, ws::PONG, payload);
                    // Pongs count against the buffer limit like any reply (see
                    // `Session::reply`): a client that pings and never reads is closed.
                    if !session.send_ws(&pong, limits.max_buffered) {
                        return Err(WsError::Unread);
                    }
                }
                ws::PONG => {}
                ws::CLOSE => {
                    // Answered with its code (an empty body with an empty one: 1005 only
                    // means "no code" and never goes on the wire), and the connection ends;
                    // whether the session ends with it is the caller's decision (a closed
                    // upgrade probe leaves it polling). A malformed one is a protocol error.
                    let code = ws::close_code(payload)?;
                    let mut close = Vec::with_capacity(4);
                    match code {
                        Some(code) => ws::write_close(&mut close, code),
                        None => ws::write_frame(&mut close, ws::CLOSE, &[]),
                    }
                    session.send_ws(&close, usize::MAX);
                    self.closed = true;
                    return Ok(at + frame.len);
                }
                ws::TEXT | ws::BINARY if self.opcode.is_some() => return Err(WsError::Fragmentation),
                ws::TEXT | ws::BINARY if frame.fin => deliver(frame.opcode, payload, on_message)?,
                ws::TEXT | ws::BINARY => {
                    self.opcode = Some(frame.opcode);
                    self.message.extend_from_slice(payload);
                }
                _ => {
                    let Some(opcode) = self.opcode else { return Err(WsError::Fragmentation) };
                    if self.message.len() + payload.len() > max {
                        return Err(WsError::TooBig);
                    }
                    self.message.extend_from_slice(payload);
                    if frame.fin {
                        let message = std::mem::take(&mut self.message);
                        self.opcode = None;
                        deliver(opcode, &message, on_message)?;
                    }
                }
            }
            at += frame.len;
        }
        Ok(at)
    }
}

fn deliver(opcode: u8, payload: &[u8], on_message: &mut impl FnMut(Message<'_>)) -> Result<(), WsError> {
    if opcode == ws::TEXT {
        on_message(Message::Text(std::str::from_utf8(payload).map_err(|_| WsError::Utf8)?));
    } else {
        on_message(Message::Binary(payload));
    }
    Ok(())
}

/// A packet encoded once for every member of a broadcast: the Engine.IO text for
/// long-polling sessions and the whole WebSocket frame for the others.
pub(crate) struct SharedFrame {
    pub text: Arc<str>,
    pub ws: Vec<u8>,
}

impl SharedFrame {
    pub fn new(text: String) -> Self {
        Self::from_shared(text.into())
    }

    /// The frame of text that is shared already (kept by connection state recovery too).
    pub fn from_shared(text: Arc<str>) -> Self {
        let mut ws = Vec::with_capacity(text.len() + 10);
        ws::write_frame(&mut ws, ws::TEXT, text.as_bytes());
        Self { text, ws }
    }
}

/// The flushers' work lists, one per worker thread. A session with new bytes is put on its
/// lane (once, however many packets it gets meanwhile); the lane's flusher task writes each
/// session's bytes with one `write` call. When the server is busy, the flusher runs later
/// and finds more bytes per session: writes batch by themselves under load, and cost one
/// task wake-up at low load.
pub(crate) struct Lanes<S> {
    lanes: Box<[Lane<S>]>,
    stopped: AtomicBool,
}

struct Lane<S> {
    list: Mutex<Vec<Arc<Session<S>>>>,
    notify: Notify,
}

impl<S: Send + Sync + 'static> Lanes<S> {
    /// `count` lanes and their flusher tasks; the tasks end after [`Lanes::stop`].
    pub fn spawn(count: usize) -> Arc<Self> {
        let lanes = Arc::new(Self {
            lanes: (0..count.max(1)).map(|_| Lane { list: Mutex::new(Vec::new()), notify: Notify::new() }).collect(),
            stopped: AtomicBool::new(false),
        });
        for index in 0..lanes.lanes.len() {
            let lanes = lanes.clone();
            tokio::spawn(async move {
                let lane = &lanes.lanes[index];
                let mut batch = Vec::new();
                while !lanes.stopped.load(Ordering::Relaxed) {
                    std::mem::swap(&mut batch, &mut *lane.list.lock().unwrap_or_else(|p| p.into_inner()));
                    if batch.is_empty() {
                        lane.notify.notified().await;
                        continue;
                    }
                    // A few dozen writes at a time, yielding in between: a lane of a thousand
                    // sessions written in one go held its worker for milliseconds, which the
                    // load-shedding probe saw as scheduling lag. And the tasks that produce
                    // bytes run meanwhile: what they queue leaves in the same writes.
                    let mut rest = &batch[..];
                    while !rest.is_empty() {
                        let (now, later) = rest.split_at(rest.len().min(FLUSH_CHUNK));
                        for session in now {
                            session.flush();
                        }
                        rest = later;
                        tokio::task::yield_now().await;
                    }
                    batch.clear();
                }
            });
        }
        lanes
    }
}

impl<S> Lanes<S> {
    /// How many lanes there are.
    pub fn count(&self) -> usize {
        self.lanes.len()
    }

    /// Puts `sessions` on their lanes, taking each lane's lock once.
    pub fn schedule(&self, sessions: &[Arc<Session<S>>]) {
        for (index, lane) in self.lanes.iter().enumerate() {
            let mut mine = sessions.iter().filter(|s| s.lane == index).peekable();
            if mine.peek().is_none() {
                continue;
            }
            lane.list.lock().unwrap_or_else(|p| p.into_inner()).extend(mine.cloned());
            lane.notify.notify_one();
        }
    }

    /// Ends the flusher tasks.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        for lane in &self.lanes[..] {
            lane.notify.notify_one();
        }
    }
}
