//! Who a socket is and which Socket.IO rooms it is in: the per-socket state, the room names
//! every feature delivers to, and the local census of them.

use opentelemetry::trace::SpanContext;
use switchyard_sio::Io;

use crate::auth::Identity;
use crate::protocol::CHAT;

/// What the server keeps about a connected socket: who it is, its handshake's span (event
/// spans link to it) and when it joined (the Admin UI shows it).
pub struct Conn {
    /// The authenticated user.
    pub identity: Identity,
    /// The handshake's span.
    pub trace: SpanContext,
    /// When it joined its namespace, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// A socket of this server.
pub type Socket = switchyard_sio::Socket<Conn>;

/// Room every authenticated socket joins, in either namespace: a namespace-wide emit goes
/// to it (Socket.IO rooms are the only broadcast target).
pub const EVERYONE: &str = "everyone";

/// Room every socket of user `u` joins.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// Room every socket of a participant of chat room `r` joins.
pub fn chat_room(room: &str) -> String {
    format!("room:{room}")
}

/// Prefix of the rooms of sockets watching a user's presence.
const PRESENCE: &str = "presence:";

/// The room of the sockets watching `user`'s presence.
pub fn presence_room(user: &str) -> String {
    format!("{PRESENCE}{user}")
}

/// True for a `presence:U` room.
pub fn is_presence_room(room: &str) -> bool {
    room.starts_with(PRESENCE)
}

/// Chat rooms and users with at least one socket on this process, from the rooms local
/// sockets are in: `room:R` rooms of `/chat`, and distinct `user:U` rooms of any namespace.
/// Per process on purpose: with Redis, every pod reports its own share.
pub fn local_rooms_and_users(io: &Io<Conn>) -> (usize, usize) {
    let (room_prefix, user_prefix) = (chat_room(""), user_room(""));
    let mut rooms = 0;
    let mut users = std::collections::HashSet::new();
    for ns in io.namespaces() {
        for (room, _) in ns.rooms() {
            if ns.name() == CHAT && room.starts_with(&room_prefix) {
                rooms += 1;
            } else if room.starts_with(&user_prefix) {
                users.insert(room);
            }
        }
    }
    (rooms, users.len())
}
