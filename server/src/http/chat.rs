//! The chat API: the same validation and service calls as the `/chat` events.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{User, admit};
use crate::chat::protocol::{GetMessages, GetOrCreateRoom, MarkRead, SendMessage};
use crate::error::{ApiError, ApiResult};
use crate::gate::{Field, parse_body, parse_query};
use crate::ratelimit::EventClass;
use crate::state::AppState;

/// The chat routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/chat/rooms", post(create_room).get(list_rooms))
        .route("/api/chat/rooms/{room_id}/messages", get(list_messages))
        .route("/api/chat/messages", post(send_message))
        .route("/api/chat/messages/read", patch(mark_read))
}

async fn create_room(State(app): State<AppState>, User(user): User, body: Bytes) -> ApiResult<Response> {
    admit(&app, &user, EventClass::Room).await?;
    let payload: GetOrCreateRoom = parse_body(&app, &body)?;
    let (room, created) = app.chat().get_or_create_room(&user, payload).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "room": room }))).into_response())
}

async fn list_rooms(State(app): State<AppState>, User(user): User) -> ApiResult<Json<Value>> {
    admit(&app, &user, EventClass::Query).await?;
    Ok(Json(json!({ "rooms": app.chat().get_rooms(&user).await? })))
}

async fn send_message(State(app): State<AppState>, User(user): User, body: Bytes) -> ApiResult<Response> {
    admit(&app, &user, EventClass::Message).await?;
    let payload: SendMessage = parse_body(&app, &body)?;
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
    let path = Map::from_iter([("roomId".to_owned(), json!(room_id))]);
    let fields = [("before", Field::Text), ("after", Field::Text), ("limit", Field::Integer)];
    let payload: GetMessages = parse_query(&app, path, &query, &fields)?;
    let page = app.chat().get_messages(&user, payload).await?;
    Ok(Json(serde_json::to_value(page).map_err(ApiError::internal)?))
}

async fn mark_read(State(app): State<AppState>, User(user): User, body: Bytes) -> ApiResult<Json<Value>> {
    admit(&app, &user, EventClass::Read).await?;
    let payload: MarkRead = parse_body(&app, &body)?;
    let receipt = app.chat().mark_read(&user, payload).await?;
    Ok(Json(serde_json::to_value(receipt).map_err(ApiError::internal)?))
}
