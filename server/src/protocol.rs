//! Payloads of the client contract and their validation. Socket events and HTTP routes
//! parse through the same functions, so they reject the same inputs with the same errors.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::{parse_cursor, parse_message_id};

/// Longest id (user, room, clientMessageId) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Most participants in one room.
pub const MAX_PARTICIPANTS: usize = 1000;
/// Longest room name, in characters.
pub const MAX_ROOM_NAME: usize = 100;
/// Default and largest `getMessages` page.
pub const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;

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

/// `getOrCreateRoom`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOrCreateRoom {
    /// Other participants (the caller is added).
    pub participant_ids: Vec<String>,
    /// Group name.
    #[serde(default)]
    pub name: Option<String>,
}

impl GetOrCreateRoom {
    /// Validates and returns the sorted participant set including `caller`, and the trimmed name.
    pub fn normalise(self, caller: &str) -> ApiResult<(Vec<String>, Option<String>)> {
        if self.participant_ids.len() > MAX_PARTICIPANTS {
            return Err(ApiError::invalid(format!("participantIds: at most {MAX_PARTICIPANTS} participants")));
        }
        for id in &self.participant_ids {
            check_id("participantIds", id)?;
        }
        let mut ids = self.participant_ids;
        ids.push(caller.to_owned());
        ids.sort_unstable();
        ids.dedup();
        if ids.len() < 2 {
            return Err(ApiError::invalid("participantIds: name at least one participant besides yourself"));
        }
        let name = match self.name.map(|n| n.trim().to_owned()) {
            Some(n) if n.is_empty() || n.chars().count() > MAX_ROOM_NAME => {
                return Err(ApiError::invalid(format!("name: must be 1 to {MAX_ROOM_NAME} characters")));
            }
            other => other,
        };
        Ok((ids, name))
    }
}

/// `sendMessage`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// Target room.
    pub room_id: String,
    /// Text; trimmed before checking its length.
    pub content: String,
    /// Idempotency key.
    #[serde(default)]
    pub client_message_id: Option<String>,
}

impl SendMessage {
    /// Validates ids and returns the trimmed content.
    pub fn normalise(&self, max_chars: usize) -> ApiResult<String> {
        check_id("roomId", &self.room_id)?;
        if let Some(cid) = &self.client_message_id {
            check_id("clientMessageId", cid)?;
        }
        let content = self.content.trim();
        if content.is_empty() {
            return Err(ApiError::invalid("content: must not be empty"));
        }
        if content.chars().count() > max_chars {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("content: longer than {max_chars} characters"),
            ));
        }
        Ok(content.to_owned())
    }
}

/// `getMessages`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMessages {
    /// Room to read.
    pub room_id: String,
    /// Only messages older than this id.
    #[serde(default)]
    pub before: Option<String>,
    /// Only messages newer than this id.
    #[serde(default)]
    pub after: Option<String>,
    /// 1..=100, default 50.
    #[serde(default)]
    pub limit: Option<i64>,
}

impl GetMessages {
    /// Validates and returns the store cursor.
    pub fn cursor(&self) -> ApiResult<crate::store::Cursor> {
        check_id("roomId", &self.room_id)?;
        let seq = |field: &str, v: &Option<String>| -> ApiResult<Option<u64>> {
            v.as_deref()
                .map(|id| parse_cursor(id).ok_or_else(|| ApiError::invalid(format!("{field}: not a message id"))))
                .transpose()
        };
        let limit = match self.limit {
            None => DEFAULT_PAGE,
            Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
            Some(_) => return Err(ApiError::invalid(format!("limit: must be 1 to {MAX_PAGE}"))),
        };
        Ok(crate::store::Cursor { before: seq("before", &self.before)?, after: seq("after", &self.after)?, limit })
    }
}

/// `markMessagesRead`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarkRead {
    /// Room.
    pub room_id: String,
    /// Everything up to and including this message is read.
    pub message_id: String,
}

impl MarkRead {
    /// Validates and returns the message's sequence number.
    pub fn seq(&self) -> ApiResult<u64> {
        check_id("roomId", &self.room_id)?;
        parse_message_id(&self.message_id).ok_or_else(|| ApiError::invalid("messageId: not a message id"))
    }
}

/// `typing`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    /// Room.
    pub room_id: String,
    /// Started (true) or stopped (false).
    pub is_typing: bool,
}

/// A payload that must be an object and carries nothing we read (`getRooms`).
#[derive(Debug, Deserialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_errors_name_the_field() {
        let e = parse::<SendMessage>(json!({ "roomId": 5, "content": "x" }), 1000).unwrap_err();
        assert_eq!(e.message, "roomId: invalid type: integer `5`, expected a string");
        let e = parse::<SendMessage>(json!({ "roomId": "r" }), 1000).unwrap_err();
        assert_eq!(e.message, "missing field `content`");
        let e = parse::<SendMessage>(json!([1, 2]), 1000).unwrap_err();
        assert_eq!(e.message, "payload must be a JSON object");
    }

    #[test]
    fn oversized_payloads_are_payload_too_large() {
        let e = parse::<SendMessage>(json!({ "roomId": "r", "content": "x".repeat(2000) }), 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn content_is_trimmed_and_bounded() {
        let m = SendMessage { room_id: "r".into(), content: "  hi  ".into(), client_message_id: None };
        assert_eq!(m.normalise(10).unwrap(), "hi");
        let m = SendMessage { room_id: "r".into(), content: "   ".into(), client_message_id: None };
        assert_eq!(m.normalise(10).unwrap_err().code, ErrorCode::InvalidPayload);
        let m = SendMessage { room_id: "r".into(), content: "é".repeat(11), client_message_id: None };
        assert_eq!(m.normalise(10).unwrap_err().code, ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn participants_include_the_caller_once() {
        let p = GetOrCreateRoom { participant_ids: vec!["b".into(), "a".into(), "b".into()], name: None };
        assert_eq!(p.normalise("a").unwrap().0, ["a", "b"]);
        let p = GetOrCreateRoom { participant_ids: vec!["a".into()], name: None };
        assert!(p.normalise("a").is_err());
    }
}
