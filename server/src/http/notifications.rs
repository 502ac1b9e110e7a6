//! HTTP routes of the notification side: the polling fallback for users, and the backend
//! routes (`POST /api/events`, dead letters, SMS delivery status) behind the service credential.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{User, admit};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::gate::{Field, parse_body, parse_query};
use crate::notifications::{Event, GetNotifications, MAX_DEAD_LETTER_PAGE, MarkNotificationsRead};
use crate::ratelimit::EventClass;
use crate::state::AppState;

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
}

/// A backend holding one of the `SERVICE_API_KEYS`, from `Authorization: Bearer <key>`.
pub struct Service;

impl FromRequestParts<AppState> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        service_key(app, &parts.headers).await.map(|_| Service)
    }
}

/// The service key of `headers`' `Authorization: Bearer <key>`, when it is one of the
/// `SERVICE_API_KEYS`; otherwise the error to answer with.
pub(super) async fn service_key(app: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let token =
        crate::auth::bearer(headers).ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
    let keys = app.notifications().keys();
    if keys.accepts(&token) {
        return Ok(token);
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

async fn list(
    State(app): State<AppState>,
    User(user): User,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    admit(&app, &user, EventClass::Query).await?;
    let fields = [("before", Field::Text), ("limit", Field::Integer), ("unreadOnly", Field::Boolean)];
    let payload: GetNotifications = parse_query(&app, Map::new(), &query, &fields)?;
    Ok(Json(app.notifications().inbox().list(&user.user_id, payload).await?))
}

async fn mark_read(State(app): State<AppState>, User(user): User, body: Bytes) -> ApiResult<Json<Value>> {
    admit(&app, &user, EventClass::Read).await?;
    let payload: MarkNotificationsRead = parse_body(&app, &body)?;
    Ok(Json(app.notifications().inbox().mark_read(&user.user_id, payload).await?))
}

async fn submit_event(State(app): State<AppState>, _: Service, body: Bytes) -> ApiResult<Response> {
    let event: Event = parse_body(&app, &body)?;
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
            .filter(|n| (1..=MAX_DEAD_LETTER_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit: must be 1 to {}", MAX_DEAD_LETTER_PAGE)))?,
    };
    let notifications = app.notifications();
    let mut letters = serde_json::to_value(notifications.dead_letters(limit).await?).unwrap_or_default();
    // An SMS job's dead letter shows what the SMSC said about its parts.
    if let (Some(sms), Value::Array(letters)) = (notifications.sms(), &mut letters) {
        for letter in letters {
            let Some(id) = letter["id"].as_str() else { continue };
            if let Some(status) = sms.status(id).await? {
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
    let status = sms.status(&id).await?.ok_or_else(|| ApiError::not_found("no SMS delivery with this job id"))?;
    Ok(Json(json!(status)))
}

async fn redrive(State(app): State<AppState>, _: Service, Path(id): Path<String>) -> ApiResult<Response> {
    let job = app.notifications().redrive(&id).await?;
    let body = json!({ "jobId": job.id, "channel": job.channel, "redrives": job.redrives });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
