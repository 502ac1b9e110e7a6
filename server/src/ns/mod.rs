//! Socket.IO namespaces: the handshake check shared by all of them, and the per-event
//! steps every handler takes (who, rate limit, parse) before doing its work.
//!
//! Observability lives here too, so every namespace gets it the same way: [`authenticate`]
//! opens the handshake span (continuing a `traceparent` from the handshake) and counts auth
//! events; [`track`] counts the connection in and out; [`handle`] runs one client event in
//! its own span and records its count, size, duration and error code. A new namespace calls
//! `track` in its connect handler and writes its handlers with `handle`.

pub mod chat;
pub mod notifications;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide_core::adapter::DefinedAdapter;

use std::time::Instant;

use opentelemetry::trace::{SpanContext, TraceContextExt};
use socketioxide::socket::DisconnectReason;
use tracing::{Instrument, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::app::AppState;
use crate::auth::{AuthFailure, Identity};
use crate::error::{ApiError, ApiResult, ack_json};
use crate::ratelimit::{EventClass, Verdict};

/// Registers every namespace on `io`. Handlers are generic over the adapter so the same code
/// runs on the in-memory default and on Redis; the returned init results tell the caller
/// whether a remote adapter subscribed.
pub fn register<A: Adapter + DefinedAdapter>(io: &SocketIo<A>) -> Vec<A::InitRes> {
    vec![
        // Middlewares run last-added first: authenticate, then set up.
        io.ns(crate::chat::NS, chat::on_connect::<A>.with(chat::setup::<A>).with(authenticate::<A>)),
        io.ns(
            crate::notifications::NS,
            notifications::on_connect::<A>.with(notifications::setup::<A>).with(authenticate::<A>),
        ),
    ]
}

/// Connect middleware: verifies the JWT from `auth.token` (or `Authorization: Bearer`) and
/// stores the [`Identity`] on the socket. Its error text is the `connect_error` message.
pub async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<Value>,
    State(app): State<AppState>,
) -> Result<(), AuthFailure> {
    let auth = auth.ok();
    let span = tracing::info_span!(
        "socket.connect",
        otel.name = %format!("connect {}", socket.ns()),
        otel.kind = "server",
        socketio.namespace = socket.ns(),
        auth.status = field::Empty,
    );
    // Browsers cannot set headers on a WebSocket, so `auth.traceparent` counts too.
    let traceparent = auth.as_ref().and_then(|a| a.get("traceparent")).and_then(Value::as_str).map(str::to_owned);
    match traceparent {
        Some(tp) => crate::telemetry::set_remote_parent(&span, Some(&tp)),
        None => {
            let parent = crate::telemetry::context_from_headers(&socket.req_parts().headers);
            if parent.span().span_context().is_valid() {
                let _ = span.set_parent(parent);
            }
        }
    }
    let verdict = async {
        let from_auth = auth.as_ref().and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
        let token = from_auth.or_else(|| bearer(socket.req_parts().headers.get(axum::http::header::AUTHORIZATION)));
        let Some(token) = token else {
            tracing::info!(ns = socket.ns(), "handshake without token");
            return Err(AuthFailure::Unauthorized("missing token"));
        };
        match app.verifier().verify(&token).await {
            Ok(identity) => {
                tracing::debug!(ns = socket.ns(), user = %identity.user_id, "authenticated");
                socket.extensions.insert(identity);
                Ok(())
            }
            Err(failure) => {
                tracing::info!(ns = socket.ns(), reason = failure.detail(), "handshake refused");
                Err(failure)
            }
        }
    }
    .instrument(span.clone())
    .await;
    match &verdict {
        Ok(()) => {
            app.metrics().auth_succeeded();
            if let Ok(user) = identity(&socket) {
                app.presence().connected(&user.user_id, &presence_key(&socket)).await;
            }
            span.record("auth.status", "success");
            socket.extensions.insert(HandshakeTrace(span.context().span().span_context().clone()));
        }
        Err(failure) => {
            app.metrics().auth_failed(failure);
            let kind = match failure {
                AuthFailure::Unauthorized(_) => "unauthorized",
                AuthFailure::Expired => "token_expired",
                AuthFailure::Forbidden(_) => "forbidden",
            };
            app.metrics().error(static_ns(socket.ns()), kind);
            span.record("auth.status", failure.metric_status());
        }
    }
    verdict
}

/// The span context of a socket's handshake; its event spans link to it.
#[derive(Clone)]
struct HandshakeTrace(SpanContext);

/// Namespaces as `&'static str` metric labels (`other` for anything unexpected).
pub fn static_ns(ns: &str) -> &'static str {
    [crate::chat::NS, "/notifications"].into_iter().find(|known| *known == ns).unwrap_or("other")
}

/// Takes the connection gauge back down when the socket is gone, whoever handles its
/// disconnect (shared by the clones socketioxide's extensions make).
#[derive(Clone)]
struct Connected {
    _guard: std::sync::Arc<ConnectedInner>,
}

struct ConnectedInner {
    metrics: crate::metrics::Metrics,
    ns: &'static str,
}

impl Drop for ConnectedInner {
    fn drop(&mut self) {
        self.metrics.gone(self.ns);
    }
}

/// Counts an authenticated socket as connected, and in its disconnect handler, out again by
/// reason. A namespace that sets its own `on_disconnect` (replacing this one) should call
/// [`count_disconnect`] from it; the active-connection gauge is right either way.
pub fn track<A: Adapter>(socket: &SocketRef<A>, app: &AppState) {
    let ns = static_ns(socket.ns());
    app.metrics().connected(ns);
    let guard = std::sync::Arc::new(ConnectedInner { metrics: app.metrics().clone(), ns });
    socket.extensions.insert(Connected { _guard: guard });
    socket.on_disconnect(on_disconnect::<A>);
}

async fn on_disconnect<A: Adapter>(socket: SocketRef<A>, reason: DisconnectReason, State(app): State<AppState>) {
    count_disconnect(&socket, &app, reason);
    if let Ok(user) = identity(&socket) {
        app.presence().disconnected(&user.user_id, &presence_key(&socket)).await;
    }
}

/// A socket's presence key: unique per namespace and socket.
fn presence_key<A: Adapter>(socket: &SocketRef<A>) -> String {
    format!("{}#{}", socket.ns(), socket.id)
}

/// Counts a disconnect of `socket` by `reason`.
pub fn count_disconnect<A: Adapter>(socket: &SocketRef<A>, app: &AppState, reason: DisconnectReason) {
    app.metrics().disconnected(static_ns(socket.ns()), reason);
    // Drop the gauge guard now rather than when the last reference to the socket goes.
    socket.extensions.remove::<Connected>();
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
pub async fn handle<A, T, R>(
    socket: &SocketRef<A>,
    app: &AppState,
    ack: AckSender<A>,
    event: &'static str,
    class: EventClass,
    data: Result<Value, socketioxide::ParserError>,
    work: impl AsyncFnOnce(Identity, T) -> ApiResult<R>,
) where
    A: Adapter,
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
    if let Some(HandshakeTrace(handshake)) = socket.extensions.get::<HandshakeTrace>() {
        span.add_link(handshake);
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
pub fn identity<A: Adapter>(socket: &SocketRef<A>) -> ApiResult<Identity> {
    socket
        .extensions
        .get::<Identity>()
        .ok_or_else(|| ApiError::new(crate::error::ErrorCode::Unauthorized, "not authenticated"))
}

/// The steps before an event's own work: identify, rate-limit (telling the socket about a
/// warning or a block), and parse the payload.
pub async fn prepare<T: DeserializeOwned, A: Adapter>(
    socket: &SocketRef<A>,
    app: &AppState,
    event: &'static str,
    class: EventClass,
    data: Result<Value, socketioxide::ParserError>,
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
pub fn reply<T: serde::Serialize, A: Adapter>(ack: AckSender<A>, result: ApiResult<T>) {
    if let Err(e) = &result {
        // The code only: messages can quote the client's payload, which stays out of logs.
        tracing::debug!(code = e.code.as_str(), "event rejected");
    }
    let _ = ack.send(&ack_json(&result));
}
