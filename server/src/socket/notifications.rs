//! The `/notifications` namespace: joins `user:U`, sends the unread count on connect, then
//! one handler per contract event (notifications and presence subscriptions).

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_sio::NamespaceBuilder;

use super::{Call, Events, connect, identity};
use crate::delivery::{Conn, Socket, is_presence_room, presence_room, user_room};
use crate::error::{ApiError, ApiResult};
use crate::notifications::{GetNotifications, MarkNotificationsRead};
use crate::presence::{MAX_SUBSCRIPTIONS, PresenceUsers};
use crate::protocol::NOTIFICATIONS;
use crate::ratelimit::EventClass;
use crate::state::AppState;

/// The namespace and its handlers.
pub fn namespace(app: &AppState) -> NamespaceBuilder<Conn> {
    connect(NOTIFICATIONS, app, setup, send_unread_count)
        .event(app, "getNotifications", EventClass::Query, get_notifications)
        .event(app, "markNotificationsRead", EventClass::Read, mark_notifications_read)
        .event(app, "subscribePresence", EventClass::Query, subscribe_presence)
        .event(app, "unsubscribePresence", EventClass::Query, unsubscribe_presence)
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
                app.metrics().outbound(NOTIFICATIONS, "unreadCount");
            }
        }
        // The count follows with the next change; the client can also ask getNotifications.
        Err(e) => tracing::warn!(error = %e.message, "could not read the unread count on connect"),
    }
}

async fn get_notifications(call: Call, payload: GetNotifications) -> ApiResult<Value> {
    call.app.notifications().inbox().list(&call.user.user_id, payload).await
}

async fn mark_notifications_read(call: Call, payload: MarkNotificationsRead) -> ApiResult<Value> {
    call.app.notifications().inbox().mark_read(&call.user.user_id, payload).await
}

async fn subscribe_presence(call: Call, payload: PresenceUsers) -> ApiResult<Value> {
    let ids = payload.normalise()?;
    let rooms: Vec<String> = ids.iter().map(|u| presence_room(u)).collect();
    let joined = call.socket.rooms();
    let watched = joined.iter().filter(|r| is_presence_room(r)).count();
    let new = rooms.iter().filter(|r| !joined.iter().any(|have| **have == **r)).count();
    if watched + new > MAX_SUBSCRIPTIONS {
        return Err(ApiError::invalid(format!("userIds: a socket may watch at most {MAX_SUBSCRIPTIONS} users")));
    }
    // Join before reading, so a change between the two is not missed.
    call.socket.join(&rooms);
    Ok(json!({ "users": call.app.presence().status(&ids).await? }))
}

async fn unsubscribe_presence(call: Call, payload: PresenceUsers) -> ApiResult<Value> {
    let rooms: Vec<String> = payload.normalise()?.iter().map(|u| presence_room(u)).collect();
    call.socket.leave(rooms);
    Ok(json!({}))
}
