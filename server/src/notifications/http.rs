//! HTTP routes of the notification side: the polling fallback for users, and the backend
//! routes (`POST /api/events`, dead letters) behind the service credential.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Event, GetNotifications, MarkNotificationsRead};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{User, admit, admit_json};
use crate::protocol::parse;
use crate::ratelimit::EventClass;

/// Default dead-letter page.
const DEFAULT_DEAD_LETTERS: usize = 100;

/// The notification routes, merged into the server's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/notifications", get(list))
        .route("/api/notifications/read", patch(mark_read))
        .route("/api/events", post(submit_event))
        .route("/api/admin/dead-letters", get(dead_letters))
        .route("/api/admin/dead-letters/{id}/retry", post(redrive))
        .route("/api/admin/deliveries/{id}", get(delivery))
        .route("/ready/sms", get(sms_ready))
}

/// A backend holding one of the `SERVICE_API_KEYS`, from `Authorization: Bearer <key>`.
pub struct Service;

impl FromRequestParts<AppState> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let token = crate::ns::bearer(parts.headers.get(axum::http::header::AUTHORIZATION))
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        let keys = app.notifications().keys();
        if keys.accepts(&token) {
            return Ok(Service);
        }
        if keys.is_empty() {
            return Err(ApiError::forbidden("service routes are closed: SERVICE_API_KEYS is not set"));
        }
        // A valid user token is a known caller without the right: 403, not 401.
        if app.verifier().verify(&token).await.is_ok() {
            return Err(ApiError::forbidden("user tokens cannot call service routes; use a service key"));
        }
        Err(ApiError::new(ErrorCode::Unauthorized, "invalid service key"))
    }
}

async fn list(
    State(app): State<AppState>,
    User(user): User,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    admit(&app, &user, EventClass::Query).await?;
    // Query strings are text; give them the event's JSON shape so both paths share one set
    // of rules (a non-numeric limit fails like a string `limit` would).
    let mut payload = json!({});
    if let Some(before) = query.get("before") {
        payload["before"] = json!(before);
    }
    if let Some(limit) = query.get("limit") {
        payload["limit"] = limit.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(limit));
    }
    if let Some(unread) = query.get("unreadOnly") {
        payload["unreadOnly"] = unread.parse::<bool>().map(Value::from).unwrap_or_else(|_| json!(unread));
    }
    let payload: GetNotifications = parse(payload, app.config().limits.max_payload_bytes)?;
    Ok(Json(app.notifications().inbox().list(&user.user_id, payload).await?))
}

async fn mark_read(State(app): State<AppState>, User(user): User, body: Bytes) -> ApiResult<Json<Value>> {
    let payload: MarkNotificationsRead = admit_json(&app, &user, EventClass::Read, &body).await?;
    Ok(Json(app.notifications().inbox().mark_read(&user.user_id, payload).await?))
}

async fn submit_event(State(app): State<AppState>, _: Service, body: Bytes) -> ApiResult<Response> {
    let max = app.config().limits.max_payload_bytes;
    if body.len() as u64 > max {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, format!("payload exceeds {max} bytes")));
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("body is not JSON: {e}")))?;
    let event: Event = parse(value, max)?;
    let accepted = app.notifications().submit(event).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

async fn dead_letters(
    State(app): State<AppState>,
    _: Service,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let limit = match query.get("limit") {
        None => DEFAULT_DEAD_LETTERS,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=super::MAX_DEAD_LETTER_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit: must be 1 to {}", super::MAX_DEAD_LETTER_PAGE)))?,
    };
    let notifications = app.notifications();
    let mut letters = serde_json::to_value(notifications.dead_letters(limit).await?).unwrap_or_default();
    // An SMS job's dead letter shows what the SMSC said about its parts.
    if let (Some(sms), Value::Array(letters)) = (notifications.sms(), &mut letters) {
        for letter in letters {
            if let Some(status) = letter["id"].as_str().and_then(|id| sms.status(id)) {
                letter["delivery"] = json!(status);
            }
        }
    }
    Ok(Json(json!({ "deadLetters": letters })))
}

/// The delivery status of an SMS job (`GET /api/admin/deliveries/{jobId}`): its parts'
/// message ids and receipts.
async fn delivery(State(app): State<AppState>, _: Service, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    crate::protocol::check_id("id", &id)?;
    let sms = app.notifications().sms().ok_or_else(|| ApiError::not_found("the sms channel is not configured"))?;
    let status = sms.status(&id).ok_or_else(|| ApiError::not_found("no SMS delivery with this job id on this node"))?;
    Ok(Json(json!(status)))
}

/// The sms channel's readiness: 200 while its SMPP session is bound, else 503 with the
/// reason (a refused bind names the SMSC's status).
async fn sms_ready(State(app): State<AppState>) -> Response {
    match app.notifications().sms() {
        None => (StatusCode::NOT_FOUND, Json(json!({ "status": "off", "error": "SMPP_ADDRESS is not set" })))
            .into_response(),
        Some(sms) => {
            let readiness = sms.readiness();
            let code = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (code, Json(json!(readiness))).into_response()
        }
    }
}

async fn redrive(State(app): State<AppState>, _: Service, Path(id): Path<String>) -> ApiResult<Response> {
    let job = app.notifications().redrive(&id).await?;
    let body = json!({ "jobId": job.id, "channel": job.channel, "redrives": job.redrives });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
