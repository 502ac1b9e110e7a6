//! The router: the HTTP routes in their request spans, the Engine.IO endpoint outside them,
//! CORS on everything, and the refusal of new sessions while draining or unready.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use switchyard_sio::Io;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::delivery::Conn;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The server's routes over `state`, with `io` answering `/socket.io/`.
pub fn router(state: &AppState, io: Io<Conn>) -> Router {
    // Engine.IO requests stay out of the HTTP request spans: every long-poll would be one.
    let engine = Router::new()
        .route("/socket.io/", axum::routing::any(Io::handle))
        .route("/socket.io", axum::routing::any(Io::handle))
        .with_state(io);
    crate::http::routes(state)
        .layer(middleware::from_fn(crate::telemetry::trace_http))
        .with_state(state.clone())
        .merge(engine)
        .layer(middleware::from_fn_with_state(state.clone(), refuse_new_sessions))
        .layer(cors(&state.config().cors_origins))
}

/// CORS for `CORS_ORIGINS`, on every route: Engine.IO long-polling, the HTTP API and the
/// probes; preflights are answered here without reaching them.
///
/// An explicit list allows credentials: behind a load balancer with cookie affinity, browser
/// clients on another origin (`withCredentials: true`) must send the affinity cookie with every
/// long-polling request, or their polls land on nodes that do not know the session. `*` allows
/// any origin without credentials: a wildcard with credentials is invalid CORS, which
/// tower-http turns into a panic on the first request.
fn cors(origins: &[String]) -> CorsLayer {
    let layer = if origins.iter().any(|o| o == "*") {
        CorsLayer::new().allow_origin(AllowOrigin::any())
    } else {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok())))
            .allow_credentials(true)
    };
    layer
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, crate::telemetry::TRACEPARENT.clone()])
        .expose_headers([header::RETRY_AFTER])
}

/// While draining or while the store is unreachable, new Engine.IO sessions (requests
/// without `sid`) get 503: `socket.io-client` retries with back-off, reaching another node
/// or this one once it recovers. Existing sessions keep working until they are closed.
async fn refuse_new_sessions(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let new_session =
        request.uri().path().starts_with("/socket.io") && !request.uri().query().unwrap_or_default().contains("sid=");
    if new_session && !state.ready() {
        let why = if state.draining() { "server is shutting down" } else { "storage is temporarily unavailable" };
        return ApiError::new(ErrorCode::Unavailable, why).into_response();
    }
    next.run(request).await
}
