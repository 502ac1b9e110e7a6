//! Socket.IO namespaces: the handshake check shared by all of them, and the per-event
//! steps every handler takes (who, rate limit, parse) before doing its work.
//!
//! Observability lives here too, so every namespace gets it the same way: [`authenticate`]
//! opens the handshake span (continuing a `traceparent` from the handshake) and counts auth
//! events and connections; [`on_disconnect`] counts them out; [`handle`] runs one client
//! event in its own span and records its count, size, duration and error code. A new
//! namespace connects with [`connect`] and writes its handlers with `handle`.

pub mod chat;
pub mod notifications;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::trace::{SpanContext, TraceContextExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchyard_sio::{Ack, DataError, DisconnectReason, NamespaceBuilder};
use tracing::{Instrument, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::app::AppState;
use crate::auth::{AuthFailure, Identity};
use crate::error::{ApiError, ApiResult, ack_json};
use crate::ratelimit::{EventClass, Verdict};

/// What the server keeps about a connected socket: who it is, and its handshake's span
/// (event spans link to it).
pub struct Conn {
    identity: Identity,
    trace: SpanContext,
}

/// A socket of this server.
pub type Socket = switchyard_sio::Socket<Conn>;

/// Every namespace, for the server's builder.
pub fn namespaces(app: &AppState) -> Vec<NamespaceBuilder<Conn>> {
    vec![chat::namespace(app), notifications::namespace(app)]
}

/// An event handler taking the application state, as the namespace builder wants it.
pub fn with<F, Fut>(
    app: &AppState,
    handler: F,
) -> impl Fn(Arc<Socket>, Result<Value, DataError>, Ack<Conn>) -> Fut + Send + Sync + 'static
where
    F: Fn(Arc<Socket>, Result<Value, DataError>, Ack<Conn>, AppState) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let app = app.clone();
    move |socket, data, ack| handler(socket, data, ack, app.clone())
}

/// A namespace joined with [`authenticate`], then `setup` (joining rooms before the client
/// hears it is connected), counted out by [`on_disconnect`].
pub fn connect<F, Fut>(ns: &'static str, app: &AppState, setup: F) -> NamespaceBuilder<Conn>
where
    F: Fn(Arc<Socket>, AppState) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (on_join, on_leave) = (app.clone(), app.clone());
    NamespaceBuilder::new(ns, move |socket: Arc<Socket>, auth: Option<Value>| {
        let app = on_join.clone();
        async move {
            authenticate(&socket, auth, &app).await.map_err(|failure| failure.to_string())?;
            setup(socket, app).await;
            Ok(())
        }
    })
    .on_disconnect(move |socket, reason| on_disconnect(socket, reason, on_leave.clone()))
}

/// Verifies the JWT from `auth.token` (or `Authorization: Bearer`) and stores the
/// [`Identity`] on the socket. Its error text is the `connect_error` message.
pub async fn authenticate(socket: &Arc<Socket>, auth: Option<Value>, app: &AppState) -> Result<(), AuthFailure> {
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
        let token = from_auth.or_else(|| bearer(socket.headers().get(axum::http::header::AUTHORIZATION)));
        let Some(token) = token else {
            tracing::info!(ns, "handshake without token");
            return Err(AuthFailure::Unauthorized("missing token"));
        };
        match app.verifier().verify(&token).await {
            Ok(identity) => {
                tracing::debug!(ns, user = %identity.user_id, "authenticated");
                Ok(identity)
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
            app.metrics().auth_succeeded();
            app.presence().connected(&identity.user_id, &presence_key(socket)).await;
            span.record("auth.status", "success");
            let trace = span.context().span().span_context().clone();
            let _ = socket.set_state(Conn { identity, trace });
            app.metrics().connected(ns);
            Ok(())
        }
        Err(failure) => {
            app.metrics().auth_failed(&failure);
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

/// Namespaces as `&'static str` metric labels (`other` for anything unexpected).
pub fn static_ns(ns: &str) -> &'static str {
    [crate::chat::NS, "/notifications"].into_iter().find(|known| *known == ns).unwrap_or("other")
}

/// Counts a joined socket out by reason, and tells presence it is gone.
async fn on_disconnect(socket: Arc<Socket>, reason: DisconnectReason, app: AppState) {
    let ns = static_ns(socket.ns());
    app.metrics().disconnected(ns, reason);
    app.metrics().gone(ns);
    if let Ok(user) = identity(&socket) {
        app.presence().disconnected(&user.user_id, &presence_key(&socket)).await;
    }
}

/// A socket's presence key: unique per namespace and socket.
fn presence_key(socket: &Socket) -> String {
    format!("{}#{}", socket.ns(), socket.id)
}

/// Runs one client event: its span (linked to the handshake), [`prepare`], `work`, the ack,
/// and the event's duration and error metrics. Handlers are one call:
///
/// ```ignore
/// handle(&socket, &app, ack, "getRooms", EventClass::Query, data, async |user, _: Empty| {
///     Ok(json!({ "rooms": app.chat().get_rooms(&user).await? }))
/// })
/// .await
/// ```
#[allow(clippy::too_many_arguments)]
pub async fn handle<T, R>(
    socket: &Socket,
    app: &AppState,
    ack: Ack<Conn>,
    event: &'static str,
    class: EventClass,
    data: Result<Value, DataError>,
    work: impl AsyncFnOnce(Identity, T) -> ApiResult<R>,
) where
    T: DeserializeOwned,
    R: serde::Serialize,
{
    let ns = static_ns(socket.ns());
    let span = tracing::info_span!(
        "socket.event",
        otel.name = %format!("{ns} {event}"),
        otel.kind = "server",
        socketio.namespace = ns,
        socketio.event = event,
        error.type = field::Empty,
        otel.status_code = field::Empty,
    );
    if let Some(conn) = socket.state() {
        span.add_link(conn.trace.clone());
    }
    let started = Instant::now();
    let result = async {
        let (user, payload) = prepare(socket, app, event, class, data).await?;
        work(user, payload).await
    }
    .instrument(span.clone())
    .await;
    let code = result.as_ref().err().map(|e| e.code);
    if let Some(code) = code {
        span.record("error.type", code.as_str());
        if matches!(code, crate::error::ErrorCode::Internal | crate::error::ErrorCode::Unavailable) {
            span.record("otel.status_code", "ERROR");
        }
    }
    app.metrics().handled(ns, event, started.elapsed(), code);
    span.in_scope(|| reply(ack, result));
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&axum::http::HeaderValue>) -> Option<String> {
    let value = header?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The authenticated user of a socket (set by [`authenticate`]).
pub fn identity(socket: &Socket) -> ApiResult<Identity> {
    socket
        .state()
        .map(|conn| conn.identity.clone())
        .ok_or_else(|| ApiError::new(crate::error::ErrorCode::Unauthorized, "not authenticated"))
}

/// The steps before an event's own work: identify, rate-limit (telling the socket about a
/// warning or a block), and parse the payload.
pub async fn prepare<T: DeserializeOwned>(
    socket: &Socket,
    app: &AppState,
    event: &'static str,
    class: EventClass,
    data: Result<Value, DataError>,
) -> ApiResult<(Identity, T)> {
    let ns = static_ns(socket.ns());
    let size = data.as_ref().map(|v| serde_json::to_vec(v).map_or(0, |b| b.len())).unwrap_or(0);
    app.metrics().inbound(ns, event, size);
    let user = identity(socket)?;
    if let Err(refused) = app.admit(&user.user_id, class).await {
        match refused.verdict {
            Verdict::Warn { retry_after, remaining } => {
                let body =
                    json!({ "event": event, "retryAfterMs": retry_after.as_millis() as u64, "remaining": remaining });
                app.metrics().outbound(ns, "rateLimitWarning");
                let _ = socket.emit("rateLimitWarning", &body);
            }
            Verdict::Blocked { until_ms, started: true } => {
                let body = json!({ "event": event, "untilMs": until_ms, "reason": "too many requests after warnings" });
                app.metrics().outbound(ns, "rateLimitBlocked");
                let _ = socket.emit("rateLimitBlocked", &body);
            }
            _ => {}
        }
        return Err(refused.error);
    }
    // A payload that is not JSON at all (binary attachments, no argument) lands here too.
    let value = data.map_err(|_| ApiError::invalid("payload must be a JSON object"))?;
    let payload = crate::protocol::parse(value, app.config().limits.max_payload_bytes)?;
    Ok((user, payload))
}

/// Sends the ack for `result`, if the client asked for one.
pub fn reply<T: serde::Serialize>(ack: Ack<Conn>, result: ApiResult<T>) {
    if let Err(e) = &result {
        // The code only: messages can quote the client's payload, which stays out of logs.
        tracing::debug!(code = e.code.as_str(), "event rejected");
    }
    let _ = ack.send(&ack_json(&result));
}
