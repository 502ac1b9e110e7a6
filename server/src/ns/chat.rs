//! The `/chat` namespace: joins on connect, then one free handler per contract event.

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::{identity, prepare, reply};
use crate::app::AppState;
use crate::emitter::{chat_room, user_room};
use crate::protocol::{Empty, GetMessages, GetOrCreateRoom, MarkRead, SendMessage, Typing};
use crate::ratelimit::EventClass;

/// Joins `user:U` and `room:R` for each of the user's rooms, then registers the handlers.
pub async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(app): State<AppState>) {
    socket.on("getOrCreateRoom", on_get_or_create_room::<A>);
    socket.on("sendMessage", on_send_message::<A>);
    socket.on("getMessages", on_get_messages::<A>);
    socket.on("markMessagesRead", on_mark_messages_read::<A>);
    socket.on("typing", on_typing::<A>);
    socket.on("getRooms", on_get_rooms::<A>);
    let Ok(user) = identity(&socket) else { return };
    socket.join(user_room(&user.user_id));
    match app.chat().store().room_ids_of(&user.user_id).await {
        Ok(rooms) => socket.join(rooms.iter().map(|r| chat_room(r)).collect::<Vec<_>>()),
        // The socket still gets direct deliveries; room events resume after a reconnect.
        Err(e) => tracing::warn!(error = %e, "could not load rooms on connect"),
    }
}

async fn on_get_or_create_room<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    let result = async {
        let (user, payload): (_, GetOrCreateRoom) =
            prepare(&socket, &app, "getOrCreateRoom", EventClass::Room, data).await?;
        let (room, _) = app.chat().get_or_create_room(&user, payload).await?;
        Ok(json!({ "room": room }))
    };
    reply(ack, result.await);
}

async fn on_send_message<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    let result = async {
        let (user, payload): (_, SendMessage) =
            prepare(&socket, &app, "sendMessage", EventClass::Message, data).await?;
        let (message, _) = app.chat().send_message(&user, payload, Some(socket.id)).await?;
        Ok(json!({ "message": message }))
    };
    reply(ack, result.await);
}

async fn on_get_messages<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    let result = async {
        let (user, payload): (_, GetMessages) = prepare(&socket, &app, "getMessages", EventClass::Query, data).await?;
        app.chat().get_messages(&user, payload).await
    };
    reply(ack, result.await);
}

async fn on_mark_messages_read<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    let result = async {
        let (user, payload): (_, MarkRead) = prepare(&socket, &app, "markMessagesRead", EventClass::Read, data).await?;
        app.chat().mark_read(&user, payload).await
    };
    reply(ack, result.await);
}

async fn on_typing<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    let result = async {
        let (user, payload): (_, Typing) = prepare(&socket, &app, "typing", EventClass::Typing, data).await?;
        app.chat().typing(&user, payload).await?;
        Ok(json!({}))
    };
    reply(ack, result.await);
}

async fn on_get_rooms<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    let result = async {
        let (user, _): (_, Empty) = prepare(&socket, &app, "getRooms", EventClass::Query, data).await?;
        Ok(json!({ "rooms": app.chat().get_rooms(&user).await? }))
    };
    reply(ack, result.await);
}
