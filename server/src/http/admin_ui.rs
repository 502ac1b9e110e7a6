//! The official Socket.IO Admin UI (`@socket.io/admin-ui` 0.5.1's `ui/dist`, unchanged),
//! served at `ADMIN_UI_PATH` while the Admin UI is on, from a copy compiled into the
//! binary: it needs no CDN and nothing deployed beside the server, and it signs in to the
//! `/admin` namespace of the same origin (`socket::admin`).
//!
//! The copy is committed under `server/admin-ui/` (without the source maps; with the
//! package's license), like the web app's vendored client: building the server needs only
//! cargo, and `tests/browser/admin_ui.test.js` checks every file against the package locked
//! in `tests/browser/package-lock.json`. To upgrade, bump it there and copy `ui/dist` over.
//!
//! The page itself asks two CDNs for fonts (Roboto and the Material Design icons): without
//! them the UI works, with fallback fonts and no icon glyphs.

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::assets::{Asset, Bundle, JS};
use crate::error::ApiError;
use crate::state::AppState;

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_bytes!(concat!("../../admin-ui/", $path)) }
    };
}

/// Every file of `ui/dist` but the source maps.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("favicon.png", "image/png"),
    asset!("css/app.6e3b9661.css", "text/css; charset=utf-8"),
    asset!("css/chunk-vendors.9f55d012.css", "text/css; charset=utf-8"),
    asset!("img/logo-dark.3727fec5.svg", "image/svg+xml"),
    asset!("img/logo-light.73342c25.svg", "image/svg+xml"),
    asset!("js/app.0d7d7845.js", JS),
    asset!("js/chunk-vendors.934c03ff.js", JS),
];

/// Scripts and styles from this origin (Vue sets inline styles), the fonts the page names
/// from their CDNs, and sockets to any server: the UI may be pointed at another one.
const CSP: &str = "default-src 'self'; script-src 'self'; \
                   style-src 'self' 'unsafe-inline' https://fonts.googleapis.com https://cdn.jsdelivr.net; \
                   font-src 'self' data: https://fonts.gstatic.com https://cdn.jsdelivr.net; img-src 'self' data:; \
                   connect-src 'self' http: https: ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

static UI: Bundle = Bundle::new(ASSETS, "index.html", CSP);

/// `GET <path>/` (the page), `GET <path>/<file>`, and `<path>` redirected to `<path>/` (the
/// page's links are relative); no routes while the Admin UI is off.
pub fn routes(state: &AppState) -> Router<AppState> {
    let config = &state.config().admin_ui;
    if !config.enabled() {
        return Router::new();
    }
    let base = config.base_path().to_owned();
    let page = format!("{base}/");
    Router::new()
        .route(&base, get(move || async move { Redirect::permanent(&page) }))
        .route(&format!("{base}/"), get(|headers: HeaderMap| async move { UI.serve("index.html", &headers) }))
        .route(&format!("{base}/{{*path}}"), get(asset))
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // The page lives at `<path>/` only, so it is never served under two URLs.
    if path == "index.html" {
        return ApiError::not_found("no such route").into_response();
    }
    UI.serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_asset_it_loads() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for path in UI.paths().iter().filter(|p| p.starts_with("css/") || p.starts_with("js/")) {
            assert!(page.contains(&format!("\"{path}\"")), "index.html does not load {path}");
        }
        assert!(page.contains("href=\"favicon.png\""));
    }
}
