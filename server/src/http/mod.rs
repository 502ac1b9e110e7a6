//! The HTTP side: the probes, the development token route, the web app and each feature's
//! API, which passes the same admission gate (`gate`) as the socket events, here as
//! extractors and calls: [`User`] identifies, `gate::admit` rate-limits, `gate::parse_*`
//! parse with the events' rules.
//!
//! - `health` — `/health`, `/ready`, `/ready/sms`, `/metrics`, `/dev/token`.
//! - `chat` — the chat API.
//! - `notifications` — the notification routes, `POST /api/events`, dead letters, SMS
//!   delivery status.
//! - `webapp` — the web app at `/`, embedded in the binary.
//! - `server_api` — the server API for backends under `/api/server/`.
//! - `admin_ui` — the official Socket.IO Admin UI at `ADMIN_UI_PATH`, when it is on.
//! - `assets` — the files those two embed, served with ETags.

mod admin_ui;
mod assets;
mod chat;
mod health;
mod notifications;
mod server_api;
mod webapp;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::EventClass;
use crate::state::AppState;

/// All HTTP routes. `/dev/token` exists only in development mode.
pub fn routes(state: &AppState) -> Router<AppState> {
    // Bodies up to the Engine.IO frame limit are read so that anything over
    // MAX_PAYLOAD_BYTES gets the contract's `payload_too_large` rather than a bare 413.
    health::routes(state)
        .merge(chat::routes())
        .merge(notifications::routes())
        .merge(server_api::routes())
        .merge(webapp::routes())
        .merge(admin_ui::routes(state))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config().limits.engine_max_payload() as usize))
}

/// The caller of an API route, from `Authorization: Bearer <jwt>`.
pub struct User(pub Identity);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let token = crate::auth::bearer(&parts.headers);
        Ok(User(crate::gate::identify(app, token, "missing bearer token").await?))
    }
}

/// Counts a request of `user` against their budget for `class`.
async fn admit(app: &AppState, user: &Identity, class: EventClass) -> ApiResult<()> {
    crate::gate::admit(app, user, class).await.map_err(|refused| refused.error)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
