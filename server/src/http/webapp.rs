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

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// One embedded file.
struct Asset {
    /// Path under `/app/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_bytes!(concat!("../../webapp/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

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

/// Strong ETags (a hash of each file), computed once on first use.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
        })
        .collect()
});

/// Everything the app loads comes from this origin; sockets go to this origin too.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /` and `GET /app/{path}`. Generic over the state so it merges into any router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/app/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // The page itself lives at `/` only, so it is never served under two URLs.
    if path == "index.html" {
        return ApiError::not_found("no such route").into_response();
    }
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return ApiError::not_found("no such route").into_response();
    };
    let (asset, etag) = (&ASSETS[i], &ETAGS[i]);
    // `no-cache` = revalidate every time: a new server version takes effect on reload, and
    // an unchanged file costs a 304.
    let mut response = if headers.get(header::IF_NONE_MATCH) == Some(etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if path == "index.html" {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_referenced_by_a_unique_path() {
        let mut paths: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
        assert_eq!(ETAGS.len(), ASSETS.len());
    }

    #[test]
    fn unknown_paths_are_404_and_etags_give_304() {
        assert_eq!(serve("nope.js", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
        let first = serve("app.js", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, first.headers()[header::ETAG].clone());
        assert_eq!(serve("app.js", &headers).status(), StatusCode::NOT_MODIFIED);
    }
}
