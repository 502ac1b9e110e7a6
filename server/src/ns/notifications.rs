//! The `/notifications` namespace: joins `user:U`, sends the unread count on connect, then
//! one free handler per contract event (notifications and presence subscriptions).

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_sio::{Ack, DataError, NamespaceBuilder};

use super::{Conn, Socket, connect, handle, identity, with};
use crate::app::AppState;
use crate::emitter::user_room;
use crate::error::ApiError;
use crate::notifications::{GetNotifications, MarkNotificationsRead};
use crate::presence::{MAX_SUBSCRIPTIONS, PresenceUsers, presence_room};
use crate::ratelimit::EventClass;

/// The namespace and its handlers.
pub fn namespace(app: &AppState) -> NamespaceBuilder<Conn> {
    let connected = app.clone();
    connect(crate::notifications::NS, app, setup)
        .on_connected(move |socket| send_unread_count(socket, connected.clone()))
        .on("getNotifications", with(app, on_get_notifications))
        .on("markNotificationsRead", with(app, on_mark_notifications_read))
        .on("subscribePresence", with(app, on_subscribe_presence))
        .on("unsubscribePresence", with(app, on_unsubscribe_presence))
}

/// After authentication, before the client hears it is connected: joins `user:U`.
async fn setup(socket: Arc<Socket>, _: AppState) {
    if let Ok(user) = identity(&socket) {
        socket.join([user_room(&user.user_id)]);
    }
}

/// Sends `unreadCount` once the client is connected (an emit before CONNECT would be dropped).
async fn send_unread_count(socket: Arc<Socket>, app: AppState) {
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

async fn on_get_notifications(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "getNotifications", EventClass::Query, data, async |user, payload: GetNotifications| {
        app.notifications().inbox().list(&user.user_id, payload).await
    })
    .await;
}

async fn on_mark_notifications_read(
    socket: Arc<Socket>,
    data: Result<Value, DataError>,
    ack: Ack<Conn>,
    app: AppState,
) {
    let event = "markNotificationsRead";
    handle(&socket, &app, ack, event, EventClass::Read, data, async |user, payload: MarkNotificationsRead| {
        app.notifications().inbox().mark_read(&user.user_id, payload).await
    })
    .await;
}

async fn on_subscribe_presence(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "subscribePresence", EventClass::Query, data, async |_, payload: PresenceUsers| {
        let ids = payload.normalise()?;
        let rooms: Vec<String> = ids.iter().map(|u| presence_room(u)).collect();
        let joined = socket.rooms();
        let watched = joined.iter().filter(|r| r.starts_with("presence:")).count();
        let new = rooms.iter().filter(|r| !joined.iter().any(|have| **have == **r)).count();
        if watched + new > MAX_SUBSCRIPTIONS {
            return Err(ApiError::invalid(format!("userIds: a socket may watch at most {MAX_SUBSCRIPTIONS} users")));
        }
        // Join before reading, so a change between the two is not missed.
        socket.join(&rooms);
        Ok(json!({ "users": app.presence().status(&ids).await? }))
    })
    .await;
}

async fn on_unsubscribe_presence(socket: Arc<Socket>, data: Result<Value, DataError>, ack: Ack<Conn>, app: AppState) {
    handle(&socket, &app, ack, "unsubscribePresence", EventClass::Query, data, async |_, payload: PresenceUsers| {
        let rooms: Vec<String> = payload.normalise()?.iter().map(|u| presence_room(u)).collect();
        socket.leave(rooms);
        Ok(json!({}))
    })
    .await;
}
