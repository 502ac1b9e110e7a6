//! The `/chat` namespace: joins on connect, then one handler per contract event.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_sio::NamespaceBuilder;

use super::{Call, Events, connect, identity};
use crate::chat::ReadReceipt;
use crate::chat::protocol::{GetMessages, GetOrCreateRoom, MarkRead, SendMessage, Typing};
use crate::chat::store::Page;
use crate::delivery::{Conn, Socket, chat_room, user_room};
use crate::error::ApiResult;
use crate::protocol::{CHAT, Empty};
use crate::ratelimit::EventClass;
use crate::state::AppState;

/// The namespace and its handlers.
pub fn namespace(app: &AppState) -> NamespaceBuilder<Conn> {
    connect(CHAT, app, setup, |_, _| std::future::ready(()))
        .event(app, "getOrCreateRoom", EventClass::Room, get_or_create_room)
        .event(app, "sendMessage", EventClass::Message, send_message)
        .event(app, "getMessages", EventClass::Query, get_messages)
        .event(app, "markMessagesRead", EventClass::Read, mark_messages_read)
        .event(app, "typing", EventClass::Typing, typing)
        .event(app, "getRooms", EventClass::Query, get_rooms)
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

async fn get_or_create_room(call: Call, payload: GetOrCreateRoom) -> ApiResult<Value> {
    let (room, _) = call.app.chat().get_or_create_room(&call.user, payload).await?;
    Ok(json!({ "room": room }))
}

async fn send_message(call: Call, payload: SendMessage) -> ApiResult<Value> {
    let (message, _) = call.app.chat().send_message(&call.user, payload, Some(call.socket.id)).await?;
    Ok(json!({ "message": message }))
}

async fn get_messages(call: Call, payload: GetMessages) -> ApiResult<Page> {
    call.app.chat().get_messages(&call.user, payload).await
}

async fn mark_messages_read(call: Call, payload: MarkRead) -> ApiResult<ReadReceipt> {
    call.app.chat().mark_read(&call.user, payload).await
}

async fn typing(call: Call, payload: Typing) -> ApiResult<Value> {
    call.app.chat().typing(&call.user, payload).await?;
    Ok(json!({}))
}

async fn get_rooms(call: Call, _: Empty) -> ApiResult<Value> {
    Ok(json!({ "rooms": call.app.chat().get_rooms(&call.user).await? }))
}
