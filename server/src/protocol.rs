//! The client contract's common ground: the namespaces, how every payload is parsed and
//! validated, ids, and the contract's clocks. Socket events and HTTP routes parse through the
//! same functions, so they reject the same inputs with the same errors. Each feature's own
//! payloads live with it (`chat::protocol`, `notifications::protocol`).

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, ErrorCode};

/// Longest id (user, room, clientMessageId) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// The `/chat` namespace.
pub const CHAT: &str = "/chat";
/// The `/notifications` namespace (notifications and presence).
pub const NOTIFICATIONS: &str = "/notifications";
/// Every namespace the server serves.
pub const NAMESPACES: [&str; 2] = [CHAT, NOTIFICATIONS];

/// Namespaces as `&'static str` metric labels (`other` for anything unexpected).
pub fn static_ns(ns: &str) -> &'static str {
    NAMESPACES.into_iter().find(|known| *known == ns).unwrap_or("other")
}

/// Counts serialised bytes without allocating them.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Size of a payload as JSON, in bytes.
pub fn json_size(value: &Value) -> u64 {
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Parses a payload into `T`: it must be a JSON object no larger than `max_bytes`, and a type
/// mismatch names the field (`roomId: invalid type: integer, expected a string`).
pub fn parse<T: DeserializeOwned>(value: Value, max_bytes: u64) -> ApiResult<T> {
    if !value.is_object() {
        return Err(ApiError::invalid("payload must be a JSON object"));
    }
    if json_size(&value) > max_bytes {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, format!("payload exceeds {max_bytes} bytes")));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." { ApiError::invalid(inner) } else { ApiError::invalid(format!("{path}: {inner}")) }
    })
}

/// Checks an id: a non-empty string of at most [`MAX_ID_BYTES`] bytes.
pub fn check_id(field: &str, id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field}: must be 1 to {MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// A payload that must be an object and carries nothing we read (`getRooms`).
#[derive(Debug, Deserialize)]
pub struct Empty {}

/// Current time as RFC 3339 UTC with milliseconds (the contract's `createdAt`).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Milliseconds since the Unix epoch (the contract's `untilMs`).
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        room_id: String,
        content: String,
    }

    #[test]
    fn type_errors_name_the_field() {
        let ok = parse::<Sample>(json!({ "roomId": "r", "content": "x" }), 1000).unwrap();
        assert_eq!((ok.room_id.as_str(), ok.content.as_str()), ("r", "x"));
        let e = parse::<Sample>(json!({ "roomId": 5, "content": "x" }), 1000).unwrap_err();
        assert_eq!(e.message, "roomId: invalid type: integer `5`, expected a string");
        let e = parse::<Sample>(json!({ "roomId": "r" }), 1000).unwrap_err();
        assert_eq!(e.message, "missing field `content`");
        let e = parse::<Sample>(json!([1, 2]), 1000).unwrap_err();
        assert_eq!(e.message, "payload must be a JSON object");
    }

    #[test]
    fn oversized_payloads_are_payload_too_large() {
        let e = parse::<Sample>(json!({ "roomId": "r", "content": "x".repeat(2000) }), 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    }
}
