//! The one admission gate every client request passes, socket event or HTTP route alike:
//! identify the caller, count the request against their budget, parse the payload with the
//! contract's rules. The socket layer wraps it in an event span (`socket::handle`); HTTP
//! requests get theirs from `telemetry::trace_http`. Both sides call the same functions, so
//! they refuse the same requests with the same errors and metrics.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::auth::{AuthFailure, Identity};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::ratelimit::{EventClass, Verdict};
use crate::state::AppState;

/// Verifies `token` (from the handshake or an `Authorization` header) and counts the
/// outcome; `missing` is the refusal when there is none.
pub async fn identify(app: &AppState, token: Option<String>, missing: &'static str) -> Result<Identity, AuthFailure> {
    let result = match token {
        None => Err(AuthFailure::Unauthorized(missing)),
        Some(token) => app.verifier().verify(&token).await,
    };
    match &result {
        Ok(_) => app.metrics().auth_succeeded(),
        Err(failure) => app.metrics().auth_failed(failure),
    }
    result
}

/// A request refused by the rate limiter: the error to answer with, and the verdict, which
/// the socket layer turns into `rateLimitWarning` / `rateLimitBlocked`.
#[derive(Debug)]
pub struct Refused {
    /// The `rate_limited` error.
    pub error: ApiError,
    /// Why.
    pub verdict: Verdict,
}

/// Counts one request against `user`'s budget for `class`.
pub async fn admit(app: &AppState, user: &Identity, class: EventClass) -> Result<(), Box<Refused>> {
    let verdict = match app.limiter().check(&user.user_id, class).await {
        Ok(v) => v,
        // Failing open: a limiter outage must not take chat down with it; the store
        // calls that follow fail on their own if the outage is shared.
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable; allowing event");
            Verdict::Allow
        }
    };
    match verdict.error() {
        None => Ok(()),
        Some(error) => Err(Box::new(Refused { error, verdict })),
    }
}

/// Parses a payload into `T` within `MAX_PAYLOAD_BYTES`.
pub fn parse<T: DeserializeOwned>(app: &AppState, value: Value) -> ApiResult<T> {
    crate::protocol::parse(value, app.config().limits.max_payload_bytes)
}

/// Parses a JSON request body into `T`.
pub fn parse_json<T: DeserializeOwned>(app: &AppState, body: &[u8]) -> ApiResult<T> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("body is not JSON: {e}")))?;
    parse(app, value)
}

/// Parses a JSON request body into `T`, refusing one over `MAX_PAYLOAD_BYTES` before
/// reading it as JSON.
pub fn parse_body<T: DeserializeOwned>(app: &AppState, body: &[u8]) -> ApiResult<T> {
    let max = app.config().limits.max_payload_bytes;
    if body.len() as u64 > max {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, format!("payload exceeds {max} bytes")));
    }
    parse_json(app, body)
}

/// What a query-string value stands for in the event's JSON shape.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    /// A string, as given.
    Text,
    /// A number when it reads as one, else the string (which then fails like a string would).
    Integer,
    /// A boolean when it reads as one, else the string.
    Boolean,
}

/// Parses a query string into `T` through the event's JSON shape, so that a route and its
/// event share one set of rules (`?limit=x` fails like `"limit": "x"`). `fields` are the
/// keys read; `base` holds what the path already gave.
pub fn parse_query<T: DeserializeOwned>(
    app: &AppState,
    mut base: Map<String, Value>,
    query: &HashMap<String, String>,
    fields: &[(&str, Field)],
) -> ApiResult<T> {
    for (key, field) in fields {
        let Some(text) = query.get(*key) else { continue };
        let value = match field {
            Field::Text => None,
            Field::Integer => text.parse::<i64>().ok().map(Value::from),
            Field::Boolean => text.parse::<bool>().ok().map(Value::from),
        };
        base.insert((*key).to_owned(), value.unwrap_or_else(|| json!(text)));
    }
    parse(app, Value::Object(base))
}
