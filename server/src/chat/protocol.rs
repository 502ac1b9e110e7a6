//! Payloads of the chat events and routes, and their validation.

use serde::Deserialize;

use super::store::{Cursor, parse_cursor, parse_message_id};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::protocol::check_id;

/// Most participants in one room.
pub const MAX_PARTICIPANTS: usize = 1000;
/// Longest room name, in characters.
pub const MAX_ROOM_NAME: usize = 100;
/// Default and largest `getMessages` page.
pub const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;

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
    pub fn cursor(&self) -> ApiResult<Cursor> {
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
        Ok(Cursor { before: seq("before", &self.before)?, after: seq("after", &self.after)?, limit })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

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
