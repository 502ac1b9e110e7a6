//! The one error type that crosses the client boundary: the same value becomes a socket
//! ack `{ ok: false, error }` or an HTTP `{ error }` response, so both paths agree.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// Error codes of the client contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload has the wrong shape or values.
    InvalidPayload,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials, but not allowed.
    Forbidden,
    /// The room, message or route does not exist.
    NotFound,
    /// Over a rate-limit budget, or blocked.
    RateLimited,
    /// The payload or content is too large.
    PayloadTooLarge,
    /// A dependency (Redis) is down or the server is draining.
    Unavailable,
    /// A bug; details are in the server log, never in the reply.
    Internal,
}

impl ErrorCode {
    /// HTTP status for this code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidPayload => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The wire name (`invalid_payload`, ...), also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A client-facing error: a code and a message safe to show.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// Contract error code.
    pub code: ErrorCode,
    /// Human-readable explanation; never contains internals.
    pub message: String,
    /// For `rate_limited` and load shedding's `unavailable`: when to retry (becomes
    /// `Retry-After`).
    pub retry_after: Option<Duration>,
}

/// Result alias for operations that answer a client.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    /// `invalid_payload`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, message)
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `internal`: logs the cause, tells the client nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// `{ code, message }`, the body shared by acks and HTTP errors.
    pub fn body(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

/// The ack for a handled event: `{ ok: true, data }` or `{ ok: false, error }`.
pub fn ack_json<T: Serialize>(result: &ApiResult<T>) -> Value {
    match result {
        Ok(data) => json!({ "ok": true, "data": data }),
        Err(e) => json!({ "ok": false, "error": e.body() }),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), axum::Json(json!({ "error": self.body() }))).into_response();
        if let Some(after) = self.retry_after {
            // Retry-After is whole seconds; round up so clients never retry early.
            let secs = after.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// Failures of a backend (a store, the queue, presence, the rate limiter). Neither variant
/// carries client-visible detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing service cannot be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("store error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => {
                tracing::warn!(%why, "store unavailable");
                Self::new(ErrorCode::Unavailable, "storage is temporarily unavailable")
            }
            StoreError::Internal(why) => Self::internal(why),
        }
    }
}

/// Result of a backend call.
pub type StoreResult<T> = Result<T, StoreError>;
