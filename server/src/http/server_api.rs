//! The server API for backends, behind the service credential (`SERVICE_API_KEYS`): emit an
//! event to a user, a chat room or a whole namespace, disconnect a user on every node, and
//! read a user's sockets and a room's online members. Every call is counted against the
//! calling key's own budget (`RATE_LIMIT_SERVER`, not a user's), counted in
//! `switchyard_server_api_requests_total` and traced by `telemetry::trace_http`. The routes
//! and their errors are in docs/protocol.md.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::admit;
use super::notifications::service_key;
use crate::auth::Identity;
use crate::delivery::{EVERYONE, Target, chat_room, user_room};
use crate::error::{ApiError, ApiResult};
use crate::gate::parse_body;
use crate::protocol::{CHAT, NAMESPACES, check_id};
use crate::ratelimit::EventClass;
use crate::state::AppState;

/// Longest event name a backend may emit, in bytes.
pub const MAX_EVENT_BYTES: usize = 128;

/// Event names the Socket.IO client keeps for itself: an emit under them would be refused
/// or misread by every client.
const RESERVED_EVENTS: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// The server API's routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/server/emit", post(emit_all))
        .route("/api/server/users/{user_id}", get(user))
        .route("/api/server/users/{user_id}/emit", post(emit_user))
        .route("/api/server/users/{user_id}/disconnect", post(disconnect_user))
        .route("/api/server/rooms/{room_id}/emit", post(emit_room))
        .route("/api/server/rooms/{room_id}/members", get(room_members))
}

/// The body of the emit routes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Emit {
    /// `/chat` or `/notifications`; the room route is always `/chat` and takes none.
    namespace: Option<String>,
    /// The event name.
    event: String,
    /// Its argument (`null` when absent).
    #[serde(default)]
    data: Value,
}

impl Emit {
    /// Checks the event name and picks the namespace: `fixed` for routes that have one.
    fn checked(self, fixed: Option<&'static str>) -> ApiResult<(&'static str, String, Value)> {
        let event = self.event;
        if event.is_empty() || event.len() > MAX_EVENT_BYTES || event.chars().any(char::is_control) {
            return Err(ApiError::invalid(format!(
                "event: must be 1 to {MAX_EVENT_BYTES} bytes without control characters"
            )));
        }
        if RESERVED_EVENTS.contains(&event.as_str()) {
            return Err(ApiError::invalid(format!("event: `{event}` is reserved by Socket.IO")));
        }
        let ns = match (fixed, self.namespace) {
            (Some(ns), None) => ns,
            (Some(_), Some(_)) => return Err(ApiError::invalid("namespace: rooms are in /chat; leave it out")),
            (None, None) => return Err(ApiError::invalid("missing field `namespace`")),
            (None, Some(given)) => NAMESPACES
                .into_iter()
                .find(|ns| *ns == given)
                .ok_or_else(|| ApiError::invalid(format!("namespace: must be one of {}", NAMESPACES.join(", "))))?,
        };
        Ok((ns, event, self.data))
    }
}

/// Runs one call of `route`: checks the service key, counts the call against the key's
/// budget, runs `call` and counts the outcome.
async fn serve<F>(app: &AppState, headers: &HeaderMap, route: &'static str, call: F) -> Response
where
    F: Future<Output = ApiResult<Response>>,
{
    let result = async {
        let key = service_key(app, headers).await?;
        admit(app, &caller(&key), EventClass::Server).await?;
        call.await
    }
    .await;
    app.metrics().server_api(route, result.as_ref().err().map(|e| e.code));
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The rate limiter's name for a service key: `service:` and the start of its SHA-256, so
/// every key has its own budget and the key itself is never stored.
fn caller(key: &str) -> Identity {
    let digest = Sha256::digest(key.as_bytes());
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Identity { user_id: format!("service:{id}"), name: None }
}

/// 202 with what was sent where.
fn accepted(body: Value) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

async fn emit_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Response {
    serve(&app, &headers, "emit_user", async {
        check_id("userId", &user_id)?;
        let (ns, event, data) = parse_body::<Emit>(&app, &body)?.checked(None)?;
        app.io().emit_custom(Target::room(ns, &user_room(&user_id)), &event, &data).await;
        Ok(accepted(json!({ "userId": user_id, "namespace": ns, "event": event })))
    })
    .await
}

async fn emit_room(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(room_id): Path<String>,
    body: Bytes,
) -> Response {
    serve(&app, &headers, "emit_room", async {
        check_id("roomId", &room_id)?;
        let (ns, event, data) = parse_body::<Emit>(&app, &body)?.checked(Some(CHAT))?;
        if app.chat().store().room(&room_id).await?.is_none() {
            return Err(ApiError::not_found("room not found"));
        }
        app.io().emit_custom(Target::room(ns, &chat_room(&room_id)), &event, &data).await;
        Ok(accepted(json!({ "roomId": room_id, "namespace": ns, "event": event })))
    })
    .await
}

async fn emit_all(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&app, &headers, "emit_all", async {
        let (ns, event, data) = parse_body::<Emit>(&app, &body)?.checked(None)?;
        app.io().emit_custom(Target::room(ns, EVERYONE), &event, &data).await;
        Ok(accepted(json!({ "namespace": ns, "event": event })))
    })
    .await
}

async fn disconnect_user(State(app): State<AppState>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    serve(&app, &headers, "disconnect_user", async {
        check_id("userId", &user_id)?;
        app.io().disconnect(&user_room(&user_id)).await;
        Ok(accepted(json!({ "userId": user_id })))
    })
    .await
}

async fn user(State(app): State<AppState>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    serve(&app, &headers, "user", async {
        check_id("userId", &user_id)?;
        let status = app.presence().status(std::slice::from_ref(&user_id)).await?;
        let sockets: Vec<Value> = app
            .presence()
            .sockets(&user_id)
            .await?
            .into_iter()
            .map(|(key, node)| {
                // Presence keys are `<namespace>#<socket id>`.
                let (namespace, id) = key.split_once('#').unwrap_or(("", key.as_str()));
                json!({ "id": id, "namespace": namespace, "node": node })
            })
            .collect();
        let mut body = serde_json::to_value(&status[0]).map_err(ApiError::internal)?;
        body["sockets"] = Value::Array(sockets);
        Ok(Json(body).into_response())
    })
    .await
}

async fn room_members(State(app): State<AppState>, headers: HeaderMap, Path(room_id): Path<String>) -> Response {
    serve(&app, &headers, "room_members", async {
        check_id("roomId", &room_id)?;
        let room = app.chat().store().room(&room_id).await?.ok_or_else(|| ApiError::not_found("room not found"))?;
        let statuses = app.presence().status(&room.participant_ids).await?;
        let online: Vec<&str> = statuses.iter().filter(|s| s.online).map(|s| s.user_id.as_str()).collect();
        Ok(Json(json!({ "roomId": room_id, "online": online })).into_response())
    })
    .await
}
