//! Socket.IO namespaces: the handshake check shared by all of them, and the per-event
//! steps every handler takes (who, rate limit, parse) before doing its work.

pub mod chat;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide_core::adapter::DefinedAdapter;

use crate::app::AppState;
use crate::auth::{AuthFailure, Identity};
use crate::error::{ApiError, ApiResult, ack_json};
use crate::ratelimit::{EventClass, Verdict};

/// Registers every namespace on `io`. Handlers are generic over the adapter so the same code
/// runs on the in-memory default and on Redis; the returned init results tell the caller
/// whether a remote adapter subscribed.
pub fn register<A: Adapter + DefinedAdapter>(io: &SocketIo<A>) -> Vec<A::InitRes> {
    vec![io.ns(crate::chat::NS, chat::on_connect::<A>.with(authenticate::<A>))]
}

/// Connect middleware: verifies the JWT from `auth.token` (or `Authorization: Bearer`) and
/// stores the [`Identity`] on the socket. Its error text is the `connect_error` message.
pub async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<Value>,
    State(app): State<AppState>,
) -> Result<(), AuthFailure> {
    let from_auth = auth.ok().and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
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
    let user = identity(socket)?;
    if let Err(refused) = app.admit(&user.user_id, class).await {
        match refused.verdict {
            Verdict::Warn { retry_after, remaining } => {
                let body =
                    json!({ "event": event, "retryAfterMs": retry_after.as_millis() as u64, "remaining": remaining });
                let _ = socket.emit("rateLimitWarning", &body);
            }
            Verdict::Blocked { until_ms, started: true } => {
                let body = json!({ "event": event, "untilMs": until_ms, "reason": "too many requests after warnings" });
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
        tracing::debug!(code = e.code.as_str(), message = %e.message, "event rejected");
    }
    let _ = ack.send(&ack_json(&result));
}
