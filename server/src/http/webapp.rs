//! The web app served at `/`: a chat and notifications client in plain HTML, CSS and ES
//! modules (`server/webapp/`), compiled into the binary so it works offline, with no CDN and
//! nothing to deploy beside the server.
//!
//! The Socket.IO client is the official `socket.io-client` browser build
//! (`dist/socket.io.esm.min.js`, license header intact), committed under
//! `server/webapp/vendor/` rather than copied from `node_modules` by a build script: building
//! the server then needs only cargo (no npm, no network), and the copy is still the npm file
//! byte for byte, which `tests/browser/assets.test.js` checks against the version locked in
//! `tests/browser/package-lock.json`. To upgrade, bump it there and copy the file over.

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::assets::{Asset, Bundle, JS};
use crate::error::ApiError;

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_bytes!(concat!("../../webapp/", $path)) }
    };
}

/// Every file of the app. `index.html` is served at `/`, the rest under `/app/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("connection.js", JS),
    asset!("view.js", JS),
    asset!("icon.svg", "image/svg+xml"),
    asset!("vendor/socket.io.esm.min.js", JS),
];

static APP: Bundle = Bundle::new(ASSETS, "index.html", CSP);

/// Everything the app loads comes from this origin; sockets go to this origin too.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /` and `GET /app/{path}`. Generic over the state so it merges into any router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/app/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    APP.serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // The page itself lives at `/` only, so it is never served under two URLs.
    if path == "index.html" {
        return ApiError::not_found("no such route").into_response();
    }
    APP.serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_referenced_by_a_unique_path() {
        let mut paths = APP.paths();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
    }
}
