//! The `/chat` namespace: joins on connect, then one free handler per contract event.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_sio::{Ack, DataError, NamespaceBuilder};

use super::{Conn, Socket, connect, handle, identity, with};
use crate::app::AppState;
use crate::emitter::{chat_room, user_room};
use crate::protocol::{Empty, GetMessages, GetOrCreateRoom, MarkRead, SendMessage, Typing};
use crate::ratelimit::EventClass;

/// The namespace and its handlers.
pub fn namespace(app: &AppState) -> NamespaceBuilder<Conn> {
    connect(crate::chat::NS, app, setup)
        .on("getOrCreateRoom", with(app, on_get_or_create_room))
        .on("sendMessage", with(app, on_send_message))
        .on("getMessages", with(app, on_get_messages))
        .on("markMessagesRead", with(app, on_mark_messages_read))
        .on("typing", with(app, on_typing))
        .on("getRooms", with(app, on_get_rooms))
}

/// After authentication, before the client hears it is connected: joins `user:U` and
/// `room:R` for each of the user's rooms, so no delivery to them is missed.
async fn setup(socket: Arc<Socket>, app: AppState) {
    let Ok(user) = identity(&socket) else { return };
    socket.join([user_room(&user.user_id)]);
    match app.chat().store().room_ids_of(&user.user_id).await {
        Ok(rooms) => socket.join(rooms.iter().map(|r| chat_room(r))),
        // The socket still gets direct deliveries; room events resume after a reconnect.
        Err(e) => tracing::warn!(error = %e, "could not load rooms on connect"),
    }
}

async fn on_get_or_create_room(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "getOrCreateRoom", EventClass::Room, data, async |user, payload: GetOrCreateRoom| {
        let (room, _) = app.chat().get_or_create_room(&user, payload).await?;
        Ok(json!({ "room": room }))
    })
    .await;
}

async fn on_send_message(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "sendMessage", EventClass::Message, data, async |user, payload: SendMessage| {
        let (message, _) = app.chat().send_message(&user, payload, Some(socket.id)).await?;
        Ok(json!({ "message": message }))
    })
    .await;
}

async fn on_get_messages(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "getMessages", EventClass::Query, data, async |user, payload: GetMessages| {
        app.chat().get_messages(&user, payload).await
    })
    .await;
}

async fn on_mark_messages_read(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "markMessagesRead", EventClass::Read, data, async |user, payload: MarkRead| {
        app.chat().mark_read(&user, payload).await
    })
    .await;
}

async fn on_typing(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "typing", EventClass::Typing, data, async |user, payload: Typing| {
        app.chat().typing(&user, payload).await?;
        Ok(json!({}))
    })
    .await;
}

async fn on_get_rooms(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "getRooms", EventClass::Query, data, async |user, _: Empty| {
        Ok(json!({ "rooms": app.chat().get_rooms(&user).await? }))
    })
    .await;
}
