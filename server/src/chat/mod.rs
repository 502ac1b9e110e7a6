//! Chat operations shared by the `/chat` socket events and the HTTP API: validation,
//! membership checks, storage, then delivery to the other participants. It knows no
//! transport: [`protocol`] holds its payloads, [`store`] its state (a trait, `memory`,
//! `redis`), [`overload`] the load shedding of `sendMessage`.

pub mod overload;
pub mod protocol;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard_sio::Sid;

use crate::auth::Identity;
use crate::delivery::{Emitter, Target, chat_room, user_room};
use crate::error::{ApiError, ApiResult};
use crate::protocol::{CHAT as NS, now_rfc3339};
use overload::Overload;
use protocol::{GetMessages, GetOrCreateRoom, MarkRead, SendMessage, Typing};
use store::{ChatStore, Message, NewMessage, Page, Room, RoomKind, RoomSummary};

/// `markMessagesRead` answer, also the body of `messagesRead` (plus `readAt`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    /// Room.
    pub room_id: String,
    /// Reader.
    pub user_id: String,
    /// Highest message read.
    pub last_read_message_id: String,
    /// Messages by others still unread.
    pub unread_count: u64,
}

/// Chat service: one per process, cheap to share.
pub struct Chat {
    store: Arc<dyn ChatStore>,
    emitter: Arc<dyn Emitter>,
    max_message_chars: usize,
    typing: Arc<TypingTimers>,
    overload: Overload,
}

impl Chat {
    /// A chat service over `store`, delivering through `emitter`; `overload` decides whether
    /// new messages are accepted.
    pub fn new(
        store: Arc<dyn ChatStore>,
        emitter: Arc<dyn Emitter>,
        max_message_chars: usize,
        typing_timeout: Duration,
        overload: Overload,
    ) -> Self {
        let typing = Arc::new(TypingTimers { timeout: typing_timeout, generations: Mutex::default() });
        Self { store, emitter, max_message_chars, typing, overload }
    }

    /// The store (for connect-time room joins and readiness).
    pub fn store(&self) -> &Arc<dyn ChatStore> {
        &self.store
    }

    /// `getOrCreateRoom`: returns the room and whether it was created now. A new room is
    /// announced with `roomCreated` and joined by every participant's sockets at once.
    pub async fn get_or_create_room(&self, user: &Identity, payload: GetOrCreateRoom) -> ApiResult<(Room, bool)> {
        let (participant_ids, name) = payload.normalise(&user.user_id)?;
        let kind = if participant_ids.len() == 2 && name.is_none() { RoomKind::Direct } else { RoomKind::Group };
        let id = match kind {
            RoomKind::Direct => direct_room_id(&participant_ids[0], &participant_ids[1]),
            RoomKind::Group => format!("g-{:032x}", rand::random::<u128>()),
        };
        let room = Room { id, kind, name, participant_ids, created_at: now_rfc3339() };
        let (room, created) = self.store.create_room(room).await?;
        if !room.has(&user.user_id) {
            // Only reachable through an id collision; never hand out someone else's room.
            return Err(ApiError::internal("room id collision"));
        }
        if created {
            let data = serde_json::to_value(&room).map_err(ApiError::internal)?;
            let socket_room = chat_room(&room.id);
            for participant in &room.participant_ids {
                let members = user_room(participant);
                self.emitter.join(NS, &members, &socket_room).await;
                self.emitter.emit(Target::room(NS, &members), "roomCreated", &data).await;
            }
        }
        Ok((room, created))
    }

    /// `sendMessage`: stored first, then delivered to the room except `origin`. A retry with
    /// the same `clientMessageId` returns the stored message and delivers nothing. Past
    /// saturation a valid message is refused with `unavailable` before it is stored, so the
    /// sender knows to retry and nothing half-delivered lands in history.
    pub async fn send_message(
        &self,
        user: &Identity,
        payload: SendMessage,
        origin: Option<Sid>,
    ) -> ApiResult<(Message, bool)> {
        let content = payload.normalise(self.max_message_chars)?;
        self.overload.admit()?;
        self.member_room(user, &payload.room_id).await?;
        let new = NewMessage {
            room_id: payload.room_id,
            sender_id: user.user_id.clone(),
            content,
            client_message_id: payload.client_message_id,
        };
        let (message, created) = self.store.append(new).await?;
        if created {
            let data = serde_json::to_value(&message).map_err(ApiError::internal)?;
            let room = chat_room(&message.room_id);
            self.emitter.emit(Target { origin, ..Target::room(NS, &room) }, "newMessage", &data).await;
            // A message ends its author's typing in that room.
            self.typing.clear(&self.emitter, &message.room_id, &user.user_id, false).await;
        }
        Ok((message, created))
    }

    /// `getMessages`.
    pub async fn get_messages(&self, user: &Identity, payload: GetMessages) -> ApiResult<Page> {
        let cursor = payload.cursor()?;
        self.member_room(user, &payload.room_id).await?;
        Ok(self.store.messages(&payload.room_id, cursor).await?)
    }

    /// `markMessagesRead`: moves the read position and tells the room with `messagesRead`.
    pub async fn mark_read(&self, user: &Identity, payload: MarkRead) -> ApiResult<ReadReceipt> {
        let seq = payload.seq()?;
        self.member_room(user, &payload.room_id).await?;
        let state = self
            .store
            .mark_read(&payload.room_id, &user.user_id, seq)
            .await?
            .ok_or_else(|| ApiError::not_found("messageId: no such message in this room"))?;
        let receipt = ReadReceipt {
            room_id: payload.room_id,
            user_id: user.user_id.clone(),
            last_read_message_id: state.last_read_message_id,
            unread_count: state.unread_count,
        };
        let event = json!({
            "roomId": receipt.room_id,
            "userId": receipt.user_id,
            "lastReadMessageId": receipt.last_read_message_id,
            "readAt": now_rfc3339(),
        });
        self.emitter.emit(Target::room(NS, &chat_room(&receipt.room_id)), "messagesRead", &event).await;
        Ok(receipt)
    }

    /// `typing`: relayed to the room except the typist's sockets; the server ends an
    /// unrefreshed `isTyping: true` after the typing timeout.
    pub async fn typing(&self, user: &Identity, payload: Typing) -> ApiResult<()> {
        crate::protocol::check_id("roomId", &payload.room_id)?;
        self.member_room(user, &payload.room_id).await?;
        if payload.is_typing {
            self.typing.start(&self.emitter, &payload.room_id, &user.user_id).await;
        } else {
            // An explicit stop is always relayed: the start may have reached another node.
            self.typing.clear(&self.emitter, &payload.room_id, &user.user_id, true).await;
        }
        Ok(())
    }

    /// `getRooms`.
    pub async fn get_rooms(&self, user: &Identity) -> ApiResult<Vec<RoomSummary>> {
        Ok(self.store.rooms_of(&user.user_id).await?)
    }

    async fn member_room(&self, user: &Identity, room_id: &str) -> ApiResult<Room> {
        let room = self.store.room(room_id).await?.ok_or_else(|| ApiError::not_found("roomId: no such room"))?;
        if !room.has(&user.user_id) {
            return Err(ApiError::forbidden("you are not a participant of this room"));
        }
        Ok(room)
    }
}

/// The same pair always maps to the same direct room, whoever asks first.
fn direct_room_id(a: &str, b: &str) -> String {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    let mut h = Sha256::new();
    // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
    h.update((a.len() as u64).to_be_bytes());
    h.update(a.as_bytes());
    h.update(b.as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("d-{hex}")
}

/// Typing state per (room, user): a generation counter so a refreshed `isTyping: true`
/// cancels the timeout of the previous one without tracking task handles.
struct TypingTimers {
    timeout: Duration,
    generations: Mutex<HashMap<(String, String), u64>>,
}

impl TypingTimers {
    async fn start(self: &Arc<Self>, emitter: &Arc<dyn Emitter>, room: &str, user: &str) {
        let key = (room.to_owned(), user.to_owned());
        let generation = {
            let mut map = self.generations.lock().unwrap_or_else(|p| p.into_inner());
            let g = map.entry(key.clone()).or_insert(0);
            *g += 1;
            *g
        };
        emit_typing(emitter, room, user, true).await;
        let (timers, emitter) = (Arc::clone(self), Arc::clone(emitter));
        tokio::spawn(async move {
            tokio::time::sleep(timers.timeout).await;
            let expired = {
                let mut map = timers.generations.lock().unwrap_or_else(|p| p.into_inner());
                let current = map.get(&key) == Some(&generation);
                if current {
                    map.remove(&key);
                }
                current
            };
            if expired {
                emit_typing(&emitter, &key.0, &key.1, false).await;
            }
        });
    }

    /// Ends `user`'s typing in `room`; emits when they were typing here, or when `always`.
    async fn clear(&self, emitter: &Arc<dyn Emitter>, room: &str, user: &str, always: bool) {
        let was_typing = self
            .generations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(room.to_owned(), user.to_owned()))
            .is_some();
        if was_typing || always {
            emit_typing(emitter, room, user, false).await;
        }
    }
}

async fn emit_typing(emitter: &Arc<dyn Emitter>, room: &str, user: &str, is_typing: bool) {
    let data: Value = json!({ "roomId": room, "userId": user, "isTyping": is_typing });
    let (socket_room, typist) = (chat_room(room), user_room(user));
    let target = Target { except: Some(&typist), ..Target::room(NS, &socket_room) };
    emitter.emit(target, "userTyping", &data).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_room_ids_ignore_order_and_resist_concatenation() {
        assert_eq!(direct_room_id("alice", "bob"), direct_room_id("bob", "alice"));
        assert_ne!(direct_room_id("ab", "c"), direct_room_id("a", "bc"));
    }
}
