//! The Socket.IO side: the namespaces, the handshake every one of them shares, and the one
//! way a client event is declared and run.
//!
//! Observability lives here too, so every namespace gets it the same way: `authenticate`
//! opens the handshake span (continuing a `traceparent` from the handshake) and counts auth
//! events and connections; `on_disconnect` counts them out; every event runs in its own
//! span through the admission gate (`gate`: identify, rate limit, parse) and records its
//! count, size, duration and error code. A namespace is `connect` plus one
//! [`Events::event`] per contract event:
//!
//! ```ignore
//! connect(CHAT, app, setup).event(app, "getRooms", EventClass::Query, get_rooms)
//!
//! async fn get_rooms(call: Call, _: Empty) -> ApiResult<Value> {
//!     Ok(json!({ "rooms": call.app.chat().get_rooms(&call.user).await? }))
//! }
//! ```

mod admin;
mod chat;
mod notifications;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::trace::TraceContextExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchyard_sio::{Ack, DataError, DisconnectReason, NamespaceBuilder};
use tracing::{Instrument, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::auth::{AuthFailure, Identity};
use crate::delivery::{Conn, Socket};
use crate::error::{ApiError, ApiResult, ErrorCode, ack_json};
use crate::protocol::static_ns;
use crate::ratelimit::{EventClass, Verdict};
use crate::state::AppState;

/// Every namespace, for the server's builder: `/admin` too when the Admin UI is on.
pub fn namespaces(app: &AppState) -> Vec<NamespaceBuilder<Conn>> {
    let mut namespaces = vec![chat::namespace(app), notifications::namespace(app)];
    if let Some(admin) = app.admin() {
        namespaces.push(admin::namespace(admin));
    }
    namespaces
}

/// A namespace joined with [`authenticate`], then `setup` (joining rooms before the client
/// hears it is connected), then `connected` (once the client knows), counted out by
/// [`on_disconnect`]. The Admin UI, when on, hears of the socket and its rooms.
fn connect<F, Fut, G, GFut>(ns: &'static str, app: &AppState, setup: F, connected: G) -> NamespaceBuilder<Conn>
where
    F: Fn(Arc<Socket>, AppState) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    G: Fn(Arc<Socket>, AppState) -> GFut + Send + Sync + Copy + 'static,
    GFut: Future<Output = ()> + Send + 'static,
{
    let (on_join, on_joined, on_leave) = (app.clone(), app.clone(), app.clone());
    let builder = NamespaceBuilder::new(ns, move |socket: Arc<Socket>, auth: Option<Value>| {
        let app = on_join.clone();
        async move {
            authenticate(&socket, auth, &app).await.map_err(|failure| failure.to_string())?;
            setup(socket, app).await;
            Ok(())
        }
    })
    .on_connected(move |socket| {
        let app = on_joined.clone();
        async move {
            if let Some(admin) = app.admin() {
                admin.connected(&socket);
            }
            // Borrowed, not cloned: every connection passes here, with or without a rule.
            if let Some(conn) = socket.state() {
                app.submit_lifecycle(SOCKET_CONNECTED, &conn.identity.user_id, || socket_data(&socket, None));
            }
            connected(socket, app).await;
        }
    })
    .on_disconnect(move |socket, reason| on_disconnect(socket, reason, on_leave.clone()))
    // With recovery on (`RECOVERY_WINDOW_MS`), a dropped socket is restored only to a join
    // authenticated as the same user: a `pid` is no credential.
    .recovery_owner(|conn: &Conn| conn.identity.user_id.clone());
    // The Admin UI hears of room changes; without it, no hook and no cost.
    match app.admin() {
        Some(admin) => {
            let admin = admin.clone();
            builder.on_room(move |socket, room, change| admin.room(socket, room, change))
        }
        None => builder,
    }
}

/// Verifies the JWT from `auth.token` (or `Authorization: Bearer`) and stores the
/// [`Identity`] on the socket. Its error text is the `connect_error` message.
async fn authenticate(socket: &Arc<Socket>, auth: Option<Value>, app: &AppState) -> Result<(), AuthFailure> {
    let ns = static_ns(socket.ns());
    let span = tracing::info_span!(
        "socket.connect",
        otel.name = %format!("connect {ns}"),
        otel.kind = "server",
        socketio.namespace = ns,
        auth.status = field::Empty,
    );
    // Browsers cannot set headers on a WebSocket, so `auth.traceparent` counts too.
    let traceparent = auth.as_ref().and_then(|a| a.get("traceparent")).and_then(Value::as_str).map(str::to_owned);
    match traceparent {
        Some(tp) => crate::telemetry::set_remote_parent(&span, Some(&tp)),
        None => {
            let parent = crate::telemetry::context_from_headers(socket.headers());
            if parent.span().span_context().is_valid() {
                let _ = span.set_parent(parent);
            }
        }
    }
    let verdict = async {
        let from_auth = auth.as_ref().and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
        let token = from_auth.or_else(|| crate::auth::bearer(socket.headers()));
        let given = token.is_some();
        match crate::gate::identify(app, token, "missing token").await {
            Ok(identity) => {
                tracing::debug!(ns, user = %identity.user_id, "authenticated");
                Ok(identity)
            }
            Err(failure) if !given => {
                tracing::info!(ns, "handshake without token");
                Err(failure)
            }
            Err(failure) => {
                tracing::info!(ns, reason = failure.detail(), "handshake refused");
                Err(failure)
            }
        }
    }
    .instrument(span.clone())
    .await;
    match verdict {
        Ok(identity) => {
            app.presence().connected(&identity.user_id, &presence_key(socket)).await;
            span.record("auth.status", "success");
            let trace = span.context().span().span_context().clone();
            let _ = socket.set_state(Conn { identity, trace, since_ms: crate::protocol::epoch_ms() });
            socket.join([crate::delivery::EVERYONE]);
            app.metrics().connected(ns);
            Ok(())
        }
        Err(failure) => {
            let kind = match failure {
                AuthFailure::Unauthorized(_) => "unauthorized",
                AuthFailure::Expired => "token_expired",
                AuthFailure::Forbidden(_) => "forbidden",
            };
            app.metrics().error(ns, kind);
            span.record("auth.status", failure.metric_status());
            Err(failure)
        }
    }
}

/// Counts a joined socket out by reason, and tells presence it is gone.
async fn on_disconnect(socket: Arc<Socket>, reason: DisconnectReason, app: AppState) {
    let ns = static_ns(socket.ns());
    app.metrics().disconnected(ns, reason);
    app.metrics().gone(ns);
    if let Some(admin) = app.admin() {
        admin.disconnected(&socket, reason);
    }
    if let Ok(user) = identity(&socket) {
        app.submit_lifecycle(SOCKET_DISCONNECTED, &user.user_id, || socket_data(&socket, Some(reason)));
        app.presence().disconnected(&user.user_id, &presence_key(&socket)).await;
    }
}

/// Event type of a socket's join, for rules that want every connection (off unless a rule
/// takes it); `user.online` is the fleet-wide one.
pub const SOCKET_CONNECTED: &str = "socket.connected";
/// Event type of a socket's end, with its reason (off unless a rule takes it).
pub const SOCKET_DISCONNECTED: &str = "socket.disconnected";

/// A socket lifecycle event's data: which socket, where, and why it ended.
fn socket_data(socket: &Socket, reason: Option<DisconnectReason>) -> Value {
    let mut data = serde_json::json!({ "socketId": socket.id.to_string(), "namespace": socket.ns() });
    if let Some(reason) = reason {
        data["reason"] = reason.as_str().into();
    }
    data
}

/// A socket's presence key: unique per namespace and socket.
fn presence_key(socket: &Socket) -> String {
    format!("{}#{}", socket.ns(), socket.id)
}

/// The authenticated user of a socket (set by [`authenticate`]).
fn identity(socket: &Socket) -> ApiResult<Identity> {
    socket
        .state()
        .map(|conn| conn.identity.clone())
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "not authenticated"))
}

/// A contract event: its name (declared once, where it is registered) and its budget.
#[derive(Debug, Clone, Copy)]
struct Event {
    name: &'static str,
    class: EventClass,
}

/// One client event past the gate: who sent it, on which socket, with the state.
pub struct Call {
    /// The socket it came on.
    pub socket: Arc<Socket>,
    /// The application state.
    pub app: AppState,
    /// The sender.
    pub user: Identity,
}

/// Registers contract events on a namespace.
pub trait Events {
    /// Runs `work` for every `name` event: through the gate as `class`, in its span, with
    /// its metrics, its payload parsed as `T` and its result sent as the ack.
    fn event<T, R, F, Fut>(self, app: &AppState, name: &'static str, class: EventClass, work: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Call, T) -> Fut + Copy + Send + Sync + 'static,
        Fut: Future<Output = ApiResult<R>> + Send + 'static;
}

impl Events for NamespaceBuilder<Conn> {
    fn event<T, R, F, Fut>(self, app: &AppState, name: &'static str, class: EventClass, work: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Call, T) -> Fut + Copy + Send + Sync + 'static,
        Fut: Future<Output = ApiResult<R>> + Send + 'static,
    {
        let app = app.clone();
        let event = Event { name, class };
        self.on(name, move |socket, data, ack| handle(Incoming { socket, app: app.clone(), event, data }, ack, work))
    }
}

/// A client event as it arrived.
struct Incoming {
    socket: Arc<Socket>,
    app: AppState,
    event: Event,
    data: Result<Value, DataError>,
}

/// Runs one client event: its span (linked to the handshake), [`admit`], `work`, the ack,
/// and the event's duration and error metrics.
async fn handle<T, R, Fut>(incoming: Incoming, ack: Ack<Conn>, work: impl FnOnce(Call, T) -> Fut)
where
    T: DeserializeOwned,
    R: Serialize,
    Fut: Future<Output = ApiResult<R>>,
{
    let Incoming { socket, app, event, data } = incoming;
    let ns = static_ns(socket.ns());
    let span = tracing::info_span!(
        "socket.event",
        otel.name = %format!("{ns} {}", event.name),
        otel.kind = "server",
        socketio.namespace = ns,
        socketio.event = event.name,
        error.type = field::Empty,
        otel.status_code = field::Empty,
    );
    if let Some(conn) = socket.state() {
        span.add_link(conn.trace.clone());
    }
    let started = Instant::now();
    let result = async {
        let (user, payload) = admit(&socket, &app, event, data).await?;
        work(Call { socket: socket.clone(), app: app.clone(), user }, payload).await
    }
    .instrument(span.clone())
    .await;
    let code = result.as_ref().err().map(|e| e.code);
    if let Some(code) = code {
        span.record("error.type", code.as_str());
        if matches!(code, ErrorCode::Internal | ErrorCode::Unavailable) {
            span.record("otel.status_code", "ERROR");
        }
    }
    app.metrics().handled(ns, event.name, started.elapsed(), code);
    span.in_scope(|| reply(ack, result));
}

/// The gate for a socket event: identify (from the handshake), rate-limit (telling the
/// socket about a warning or a block), and parse the payload.
async fn admit<T: DeserializeOwned>(
    socket: &Socket,
    app: &AppState,
    event: Event,
    data: Result<Value, DataError>,
) -> ApiResult<(Identity, T)> {
    let ns = static_ns(socket.ns());
    let size = data.as_ref().map(|v| serde_json::to_vec(v).map_or(0, |b| b.len())).unwrap_or(0);
    app.metrics().inbound(ns, event.name, size);
    let user = identity(socket)?;
    if let Err(refused) = crate::gate::admit(app, &user, event.class).await {
        match refused.verdict {
            Verdict::Warn { retry_after, remaining } => {
                let body = json!({ "event": event.name, "retryAfterMs": retry_after.as_millis() as u64, "remaining": remaining });
                app.metrics().outbound(ns, "rateLimitWarning");
                let _ = socket.emit("rateLimitWarning", &body);
            }
            Verdict::Blocked { until_ms, started: true } => {
                let body =
                    json!({ "event": event.name, "untilMs": until_ms, "reason": "too many requests after warnings" });
                app.metrics().outbound(ns, "rateLimitBlocked");
                let _ = socket.emit("rateLimitBlocked", &body);
            }
            _ => {}
        }
        return Err(refused.error);
    }
    // A payload that is not JSON at all (binary attachments, no argument) lands here too.
    let value = data.map_err(|_| ApiError::invalid("payload must be a JSON object"))?;
    Ok((user, crate::gate::parse(app, value)?))
}

/// Sends the ack for `result`, if the client asked for one.
fn reply<T: Serialize>(ack: Ack<Conn>, result: ApiResult<T>) {
    if let Err(e) = &result {
        // The code only: messages can quote the client's payload, which stays out of logs.
        tracing::debug!(code = e.code.as_str(), "event rejected");
    }
    let _ = ack.send(&ack_json(&result));
}
