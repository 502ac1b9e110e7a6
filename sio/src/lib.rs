//! A Socket.IO v5 server over Engine.IO v4 (long-polling and WebSocket), built to hold many
//! idle connections cheaply and to broadcast with little work per receiver.
//!
//! Written instead of using socketioxide for measured reasons (bench/README.md): there, an idle
//! connection cost 20 KiB, almost all of it engineioxide's per-session queue, tasks and read
//! buffer; a broadcast pushed a packet through every receiver's bounded queue (a semaphore
//! permit, an allocation and a task wake each); and every handshake paid an immediate ping.
//! Here an idle WebSocket connection is one task waiting for readability, with no buffer and
//! no timer; a broadcast encodes its frame once and appends it to each receiver's byte buffer,
//! which one flusher per worker writes with one call per receiver.
//!
//! Layout, one module per concept: `server` (the Engine.IO endpoint, every packet a client
//! sends, the heartbeat and connect timeout, the Engine.IO hook), `session` (a session's
//! transport, unsent bytes, flushers and the WebSocket read loop), `ws` (RFC 6455 framing,
//! handshake keys, close codes), `packet` (Engine.IO and Socket.IO packet text), `payload`
//! (every argument and binary attachment), `socket` (namespaces, sockets, their in-order
//! inbox, rooms, broadcasts, acks), `recovery` (connection state recovery: `pid`s, offsets,
//! the broadcasts a dropped socket missed, on one node), `store` (recovery across nodes: the
//! [`SessionStore`] seam and the replay from it), `serve` (the accept loop with a head timeout), `sid` and
//! `error`. What it implements and its limits: `sio/README.md`.
//!
//! ```ignore
//! let io = Io::<MyState>::builder(Config::default())
//!     .ns(NamespaceBuilder::new("/chat", |socket, auth| async move { Ok(()) })
//!         .on("ping", |socket, data, ack| async move { let _ = ack.send(&data.ok()); }))
//!     .build();
//! let app = axum::Router::new().route("/socket.io/", axum::routing::any(Io::handle)).with_state(io);
//! ```

#[cfg(feature = "client")]
pub mod client;
mod error;
mod packet;
mod payload;
mod recovery;
mod serve;
mod server;
mod session;
mod sid;
mod socket;
mod store;
mod ws;

pub use error::{PacketError, SendError, WsError};
pub use packet::DataError;
pub use payload::Payload;
pub use recovery::{Offset, Recovery};
pub use serve::{BACKLOG, HEAD_TIMEOUT, listen, serve};
pub use server::{Builder, CONNECT_TIMEOUT, Config, Engine, EngineError, EngineMessage, Io};
pub use sid::Sid;
pub use socket::{Ack, BoxFuture, Delivery, DisconnectReason, Namespace, NamespaceBuilder, RoomChange, Socket, To};
pub use store::{Kept, Missed, Session, SessionStore};
