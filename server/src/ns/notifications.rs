//! The `/notifications` namespace: joins `user:U`, sends the unread count on connect, then
//! one free handler per contract event (notifications and presence subscriptions).

use std::convert::Infallible;

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};

use super::{handle, identity, track};
use crate::app::AppState;
use crate::emitter::user_room;
use crate::error::ApiError;
use crate::notifications::{GetNotifications, MarkNotificationsRead};
use crate::presence::{MAX_SUBSCRIPTIONS, PresenceUsers, presence_room};
use crate::ratelimit::EventClass;

/// Connect middleware (after authentication): registers the handlers and joins `user:U`
/// before the client hears it is connected, so events it sends right away are not lost
/// (socketioxide sends CONNECT before it spawns the connect handler; see `chat::setup`).
pub async fn setup<A: Adapter>(socket: SocketRef<A>, State(app): State<AppState>) -> Result<(), Infallible> {
    track(&socket, &app);
    socket.on("getNotifications", on_get_notifications::<A>);
    socket.on("markNotificationsRead", on_mark_notifications_read::<A>);
    socket.on("subscribePresence", on_subscribe_presence::<A>);
    socket.on("unsubscribePresence", on_unsubscribe_presence::<A>);
    if let Ok(user) = identity(&socket) {
        socket.join(user_room(&user.user_id));
    }
    Ok(())
}

/// Sends `unreadCount` once the client is connected (an emit before CONNECT would be dropped).
pub async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(app): State<AppState>) {
    let Ok(user) = identity(&socket) else { return };
    match app.notifications().inbox().unread(&user.user_id).await {
        // Straight to this socket, not through the emitter, so it is counted here.
        Ok(count) => {
            if socket.emit("unreadCount", &json!({ "count": count })).is_ok() {
                app.metrics().outbound(crate::notifications::NS, "unreadCount");
            }
        }
        // The count follows with the next change; the client can also ask getNotifications.
        Err(e) => tracing::warn!(error = %e.message, "could not read the unread count on connect"),
    }
}

async fn on_get_notifications<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "getNotifications", EventClass::Query, data, async |user, payload: GetNotifications| {
        app.notifications().inbox().list(&user.user_id, payload).await
    })
    .await;
}

async fn on_mark_notifications_read<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    let event = "markNotificationsRead";
    handle(&socket, &app, ack, event, EventClass::Read, data, async |user, payload: MarkNotificationsRead| {
        app.notifications().inbox().mark_read(&user.user_id, payload).await
    })
    .await;
}

async fn on_subscribe_presence<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "subscribePresence", EventClass::Query, data, async |_, payload: PresenceUsers| {
        let ids = payload.normalise()?;
        let rooms: Vec<String> = ids.iter().map(|u| presence_room(u)).collect();
        let joined = socket.rooms();
        let watched = joined.iter().filter(|r| r.starts_with("presence:")).count();
        let new = rooms.iter().filter(|r| !joined.iter().any(|have| have == r.as_str())).count();
        if watched + new > MAX_SUBSCRIPTIONS {
            return Err(ApiError::invalid(format!("userIds: a socket may watch at most {MAX_SUBSCRIPTIONS} users")));
        }
        // Join before reading, so a change between the two is not missed.
        socket.join(rooms);
        Ok(json!({ "users": app.presence().status(&ids).await? }))
    })
    .await;
}

async fn on_unsubscribe_presence<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(app): State<AppState>,
) {
    handle(&socket, &app, ack, "unsubscribePresence", EventClass::Query, data, async |_, payload: PresenceUsers| {
        let rooms: Vec<String> = payload.normalise()?.iter().map(|u| presence_room(u)).collect();
        socket.leave(rooms);
        Ok(json!({}))
    })
    .await;
}
