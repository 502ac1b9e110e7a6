//! The probes (the server's, and the sms channel's SMPP session), the metrics scrape and the
//! development token route.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::protocol::check_id;
use crate::state::AppState;

/// The probe routes, and `/dev/token` in development mode.
pub fn routes(state: &AppState) -> Router<AppState> {
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/ready/sms", get(sms_ready))
        .route("/metrics", get(metrics));
    if state.verifier().is_dev() { router.route("/dev/token", post(dev_token)) } else { router }
}

async fn health(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "port": app.config().port,
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": app.uptime().as_secs(),
    }))
}

/// Prometheus scrape endpoint (OpenMetrics text).
async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.metrics().encode(app.ready());
    ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

async fn ready(State(app): State<AppState>) -> Response {
    if app.ready() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        let status = if app.draining() { "draining" } else { "unavailable" };
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": status }))).into_response()
    }
}

/// The sms channel's readiness: 200 while its SMPP session is bound, else 503 with the
/// reason (a refused bind names the SMSC's status).
async fn sms_ready(State(app): State<AppState>) -> Response {
    match app.notifications().sms() {
        None => (StatusCode::NOT_FOUND, Json(json!({ "status": "off", "error": "SMPP_ADDRESS is not set" })))
            .into_response(),
        Some(sms) => {
            let readiness = sms.readiness();
            let code = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (code, Json(json!(readiness))).into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevTokenRequest {
    user_id: String,
    #[serde(default)]
    name: Option<String>,
}

async fn dev_token(State(app): State<AppState>, body: Bytes) -> ApiResult<Json<Value>> {
    let request: DevTokenRequest = crate::gate::parse_json(&app, &body)?;
    check_id("userId", &request.user_id)?;
    let token = app
        .verifier()
        .dev_token(&request.user_id, request.name.as_deref())
        .ok_or_else(|| ApiError::not_found("no such route"))?;
    Ok(Json(json!({ "token": token })))
}
