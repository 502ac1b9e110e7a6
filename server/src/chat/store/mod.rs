//! Chat state behind a trait: rooms, messages, read positions. The in-memory store is the
//! embedded default; a Redis store shares the same contract across nodes.

mod memory;
mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::error::StoreResult;

/// Direct (two people, no name) or group room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    /// Two participants, no name; one room per pair.
    Direct,
    /// Any other room.
    Group,
}

/// A chat room as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    /// Room id (`d-…` for direct rooms, derived from the pair; `g-…` for groups).
    pub id: String,
    /// Direct or group.
    #[serde(rename = "type")]
    pub kind: RoomKind,
    /// Group name, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Participants, sorted.
    pub participant_ids: Vec<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl Room {
    /// True when `user` may read, send to and mark this room.
    pub fn has(&self, user: &str) -> bool {
        self.participant_ids.binary_search_by(|p| p.as_str().cmp(user)).is_ok()
    }
}

/// A stored chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Sorts in send order within its room (zero-padded sequence number).
    pub id: String,
    /// Room it belongs to.
    pub room_id: String,
    /// Author.
    pub sender_id: String,
    /// Trimmed text.
    pub content: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The sender's idempotency key, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Target room (membership already checked).
    pub room_id: String,
    /// Author.
    pub sender_id: String,
    /// Trimmed, length-checked text.
    pub content: String,
    /// Idempotency key.
    pub client_message_id: Option<String>,
}

/// Which slice of history to read. Sequence numbers, exclusive bounds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    /// Only messages older than this.
    pub before: Option<u64>,
    /// Only messages newer than this; the page then starts right after it.
    pub after: Option<u64>,
    /// Page size, 1..=100.
    pub limit: usize,
}

/// One page of history, oldest first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// Oldest to newest.
    pub messages: Vec<Message>,
    /// More messages exist beyond the page in the direction read.
    pub has_more: bool,
}

/// A user's read position in a room after marking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    /// Highest message read (never moves backwards).
    pub last_read_message_id: String,
    /// Messages by others after it.
    pub unread_count: u64,
}

/// A room with the caller's unread count and its newest message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// The room.
    #[serde(flatten)]
    pub room: Room,
    /// Messages by others after the caller's read position.
    pub unread_count: u64,
    /// Newest message, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
}

/// Formats a room sequence number as a message id; zero padding makes ids sort like numbers.
pub fn message_id(seq: u64) -> String {
    format!("{seq:012}")
}

/// Parses a message id back to its sequence number.
pub fn parse_message_id(id: &str) -> Option<u64> {
    parse_cursor(id).filter(|&n| n > 0)
}

/// Parses a history cursor: a message id, or all zeros for "before the first message", so
/// `after: "000000000000"` reads history from the oldest retained message.
pub fn parse_cursor(id: &str) -> Option<u64> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Chat persistence. Implementations must make `create_room` and `append` idempotent, and
/// keep sequence numbers strictly increasing per room.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Stores `room` unless a room with its id exists; returns the stored one and whether
    /// it was created now.
    async fn create_room(&self, room: Room) -> StoreResult<(Room, bool)>;

    /// A room by id.
    async fn room(&self, id: &str) -> StoreResult<Option<Room>>;

    /// Ids of the rooms `user` belongs to.
    async fn room_ids_of(&self, user: &str) -> StoreResult<Vec<String>>;

    /// Rooms of `user` with unread counts and last messages, newest activity first.
    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<RoomSummary>>;

    /// Appends a message; with a `client_message_id` already stored for that sender and room,
    /// returns the stored message and `false`.
    async fn append(&self, message: NewMessage) -> StoreResult<(Message, bool)>;

    /// A page of history.
    async fn messages(&self, room_id: &str, cursor: Cursor) -> StoreResult<Page>;

    /// Moves `user`'s read position to `seq` (never backwards); `None` when no such message
    /// was ever sent to the room.
    async fn mark_read(&self, room_id: &str, user: &str, seq: u64) -> StoreResult<Option<ReadState>>;

    /// True when the store can serve (for `/ready`).
    async fn ready(&self) -> bool;
}

/// When a room last saw activity: its newest message, or its creation (sorts `getRooms`).
fn activity(s: &RoomSummary) -> &str {
    s.last_message.as_ref().map_or(s.room.created_at.as_str(), |m| m.created_at.as_str())
}
