//! The HTTP side: health, readiness, the development token route and the chat API, which
//! runs the same validation and service calls as the socket events.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::protocol::{GetMessages, GetOrCreateRoom, MarkRead, SendMessage, check_id, parse};
use crate::ratelimit::EventClass;

/// All HTTP routes. `/dev/token` exists only in development mode.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/chat/rooms", post(create_room).get(list_rooms))
        .route("/api/chat/rooms/{room_id}/messages", get(list_messages))
        .route("/api/chat/messages", post(send_message))
        .route("/api/chat/messages/read", patch(mark_read));
    if state.verifier().is_dev() {
        router = router.route("/dev/token", post(dev_token));
    }
    // The web app at `/`, its files compiled into the binary.
    router = router.merge(crate::webapp::routes());
    // Bodies up to the Engine.IO frame limit are read so that anything over
    // MAX_PAYLOAD_BYTES gets the contract's `payload_too_large` rather than a bare 413.
    router
        .merge(crate::notifications::http::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config().limits.engine_max_payload() as usize))
}

/// The caller of an API route, from `Authorization: Bearer <jwt>`.
pub struct User(pub Identity);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = crate::ns::bearer(parts.headers.get(axum::http::header::AUTHORIZATION)) else {
            app.metrics().auth_failed(&crate::auth::AuthFailure::Unauthorized("missing bearer token"));
            return Err(ApiError::new(crate::error::ErrorCode::Unauthorized, "missing bearer token"));
        };
        match app.verifier().verify(&token).await {
            Ok(identity) => {
                app.metrics().auth_succeeded();
                Ok(User(identity))
            }
            Err(failure) => {
                app.metrics().auth_failed(&failure);
                Err(failure.into())
            }
        }
    }
}

/// Rate-limits and parses a JSON body with the socket events' rules.
pub(crate) async fn admit_json<T: DeserializeOwned>(
    app: &AppState,
    user: &Identity,
    class: EventClass,
    body: &Bytes,
) -> ApiResult<T> {
    admit(app, user, class).await?;
    if body.len() as u64 > app.config().limits.max_payload_bytes {
        return Err(ApiError::new(
            crate::error::ErrorCode::PayloadTooLarge,
            format!("payload exceeds {} bytes", app.config().limits.max_payload_bytes),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("body is not JSON: {e}")))?;
    parse(value, app.config().limits.max_payload_bytes)
}

pub(crate) async fn admit(app: &AppState, user: &Identity, class: EventClass) -> ApiResult<()> {
    app.admit(&user.user_id, class).await.map_err(|refused| refused.error)
}

async fn health(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "port": app.config().port,
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": app.uptime().as_secs(),
    }))
}

/// Prometheus scrape endpoint (OpenMetrics text).
async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.metrics().encode(app.ready());
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

async fn ready(State(app): State<AppState>) -> Response {
    if app.ready() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        let status = if app.draining() { "draining" } else { "unavailable" };
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": status }))).into_response()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevTokenRequest {
    user_id: String,
    #[serde(default)]
    name: Option<String>,
}

async fn dev_token(State(app): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("body is not JSON: {e}")))?;
    let request: DevTokenRequest = parse(value, app.config().limits.max_payload_bytes)?;
    check_id("userId", &request.user_id)?;
    let token = app
        .verifier()
        .dev_token(&request.user_id, request.name.as_deref())
        .ok_or_else(|| ApiError::not_found("no such route"))?;
    Ok(Json(json!({ "token": token })))
}

async fn create_room(State(app): State<AppState>, User(user): User, body: Bytes) -> ApiResult<Response> {
    let payload: GetOrCreateRoom = admit_json(&app, &user, EventClass::Room, &body).await?;
    let (room, created) = app.chat().get_or_create_room(&user, payload).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "room": room }))).into_response())
}

async fn list_rooms(State(app): State<AppState>, User(user): User) -> ApiResult<Json<Value>> {
    admit(&app, &user, EventClass::Query).await?;
    Ok(Json(json!({ "rooms": app.chat().get_rooms(&user).await? })))
}

async fn send_message(State(app): State<AppState>, User(user): User, body: Bytes) -> ApiResult<Response> {
    let payload: SendMessage = admit_json(&app, &user, EventClass::Message, &body).await?;
    let (message, created) = app.chat().send_message(&user, payload, None).await?;
    // A replayed clientMessageId is answered 200 with the stored message.
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "message": message }))).into_response())
}

async fn list_messages(
    State(app): State<AppState>,
    User(user): User,
    Path(room_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    admit(&app, &user, EventClass::Query).await?;
    // Query strings are text; turn them into the event's JSON shape so both paths share
    // one set of rules (a non-numeric limit fails like a string `limit` would).
    let mut payload = json!({ "roomId": room_id });
    for key in ["before", "after"] {
        if let Some(v) = query.get(key) {
            payload[key] = json!(v);
        }
    }
    if let Some(limit) = query.get("limit") {
        payload["limit"] = limit.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(limit));
    }
    let payload: GetMessages = parse(payload, app.config().limits.max_payload_bytes)?;
    let page = app.chat().get_messages(&user, payload).await?;
    Ok(Json(serde_json::to_value(page).map_err(ApiError::internal)?))
}

async fn mark_read(State(app): State<AppState>, User(user): User, body: Bytes) -> ApiResult<Json<Value>> {
    let payload: MarkRead = admit_json(&app, &user, EventClass::Read, &body).await?;
    let receipt = app.chat().mark_read(&user, payload).await?;
    Ok(Json(serde_json::to_value(receipt).map_err(ApiError::internal)?))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
