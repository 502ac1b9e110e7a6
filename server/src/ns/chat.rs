//! The `/chat` namespace: joins on connect, then one free handler per contract event.

use std::convert::Infallible;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::{handle, identity, track};
use crate::app::AppState;
use crate::emitter::{chat_room, user_room};
use crate::protocol::{Empty, GetMessages, GetOrCreateRoom, MarkRead, SendMessage, Typing};
use crate::ratelimit::EventClass;

/// Connect middleware (after authentication): registers the handlers, then joins `user:U`
/// and `room:R` for each of the user's rooms. This is a middleware rather than the connect
/// handler because socketioxide sends the client its CONNECT before it spawns the connect
/// handler: handlers registered there can miss the events a client sends right away.
pub async fn setup<A: Adapter>(socket: SocketRef<A>, State(app): State<AppState>) -> Result<(), Infallible> {
    track(&socket, &app);
    socket.on("getOrCreateRoom", on_get_or_create_room::<A>);
    socket.on("sendMessage", on_send_message::<A>);
    socket.on("getMessages", on_get_messages::<A>);
    socket.on("markMessagesRead", on_mark_messages_read::<A>);
    socket.on("typing", on_typing::<A>);
    socket.on("getRooms", on_get_rooms::<A>);
    let Ok(user) = identity(&socket) else { return Ok(()) };
    socket.join(user_room(&user.user_id));
    match app.chat().store().room_ids_of(&user.user_id).await {
        Ok(rooms) => socket.join(rooms.iter().map(|r| chat_room(r)).collect::<Vec<_>>()),
        // The socket still gets direct deliveries; room events resume after a reconnect.
        Err(e) => tracing::warn!(error = %e, "could not load rooms on connect"),
    }
    Ok(())
}

/// The connect handler: everything happened in [`setup`].
pub async fn on_connect<A: Adapter>(_socket: SocketRef<A>) {}

async fn on_get_or_create_room<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "getOrCreateRoom", EventClass::Room, data, async |user, payload: GetOrCreateRoom| {
        let (room, _) = app.chat().get_or_create_room(&user, payload).await?;
        Ok(json!({ "room": room }))
    })
    .await;
}

async fn on_send_message<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "sendMessage", EventClass::Message, data, async |user, payload: SendMessage| {
        let (message, _) = app.chat().send_message(&user, payload, Some(socket.id)).await?;
        Ok(json!({ "message": message }))
    })
    .await;
}

async fn on_get_messages<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "getMessages", EventClass::Query, data, async |user, payload: GetMessages| {
        app.chat().get_messages(&user, payload).await
    })
    .await;
}

async fn on_mark_messages_read<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "markMessagesRead", EventClass::Read, data, async |user, payload: MarkRead| {
        app.chat().mark_read(&user, payload).await
    })
    .await;
}

async fn on_typing<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "typing", EventClass::Typing, data, async |user, payload: Typing| {
        app.chat().typing(&user, payload).await?;
        Ok(json!({}))
    })
    .await;
}

async fn on_get_rooms<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "getRooms", EventClass::Query, data, async |user, _: Empty| {
        Ok(json!({ "rooms": app.chat().get_rooms(&user).await? }))
    })
    .await;
}
