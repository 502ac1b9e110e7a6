//! Errors of this crate.

/// A WebSocket frame the server refuses; the connection is closed with a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A reserved bit was set (no extension is negotiated).
    #[error("reserved bits set")]
    ReservedBits,
    /// Clients must mask every frame.
    #[error("unmasked client frame")]
    Unmasked,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    /// A fragmented or over-long control frame.
    #[error("malformed control frame")]
    BadControl,
    /// A frame or message over the payload limit.
    #[error("message over the payload limit")]
    TooBig,
    /// A continuation without a message to continue, or a new message inside one.
    #[error("broken fragmentation")]
    Fragmentation,
    /// A text message or a close reason that is not UTF-8.
    #[error("text is not UTF-8")]
    Utf8,
    /// A close frame with a one-byte body or a code no endpoint may send.
    #[error("malformed close frame")]
    BadClose,
    /// The client does not read the replies to what it sends (pongs, acks): they reached
    /// the connection's limit of unsent bytes.
    #[error("the client does not read its replies")]
    Unread,
}

/// An Engine.IO or Socket.IO packet that cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// No type character.
    #[error("empty packet")]
    Empty,
    /// An Engine.IO type outside 1 to 6 (a client never sends an open packet).
    #[error("unknown Engine.IO packet type {0:?}")]
    EngineType(char),
    /// A Socket.IO type outside 0 to 6.
    #[error("unknown Socket.IO packet type {0:?}")]
    SocketType(char),
    /// A binary packet without a valid attachment count.
    #[error("bad attachment count")]
    Attachments,
    /// An acknowledgement id that does not fit 64 bits.
    #[error("bad acknowledgement id")]
    AckId,
    /// An event that is not a JSON array starting with its name.
    #[error("an event must be an array starting with its name")]
    EventShape,
    /// A long-polling body that is not UTF-8.
    #[error("the body is not UTF-8")]
    Utf8,
    /// A namespace join whose payload is not a JSON object.
    #[error("a namespace join's payload must be an object")]
    ConnectPayload,
    /// A binary message no binary packet announced, or a text packet while attachments
    /// were due.
    #[error("binary attachments out of place")]
    Attachment,
}

/// Why a packet was not written to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection's unsent bytes are at their limit: the client reads slower than it is
    /// written to (or the server is past saturation).
    #[error("send buffer full")]
    Full,
    /// The connection is closed or closing, or the socket left its namespace.
    #[error("connection closed")]
    Closed,
    /// The payload could not be serialized.
    #[error("payload not serializable")]
    Serialize,
}
