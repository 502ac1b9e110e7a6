//! Files compiled into the binary and served with strong ETags: the web app (`webapp`) and
//! the Admin UI (`admin_ui`) are each a [`Bundle`].

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// One embedded file.
pub struct Asset {
    /// Path within its bundle.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// `text/javascript` for the bundles' scripts.
pub const JS: &str = "text/javascript; charset=utf-8";

/// A set of embedded files and the policy of its page.
pub struct Bundle {
    assets: &'static [Asset],
    /// The page: the one file that gets the content security policy.
    page: &'static str,
    csp: &'static str,
    /// Strong ETags (a hash of each file), computed on first use.
    etags: OnceLock<Vec<HeaderValue>>,
}

impl Bundle {
    /// A bundle of `assets` whose page `page` is served with `csp`.
    pub const fn new(assets: &'static [Asset], page: &'static str, csp: &'static str) -> Self {
        Self { assets, page, csp, etags: OnceLock::new() }
    }

    /// Answers a GET of `path`: the file (or 304 when `If-None-Match` names it), or 404.
    pub fn serve(&self, path: &str, headers: &HeaderMap) -> Response {
        let Some(i) = self.assets.iter().position(|a| a.path == path) else {
            return ApiError::not_found("no such route").into_response();
        };
        let asset = &self.assets[i];
        let etag = &self.etags()[i];
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
        if path == self.page {
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(self.csp));
        }
        response
    }

    fn etags(&self) -> &[HeaderValue] {
        self.etags.get_or_init(|| {
            self.assets
                .iter()
                .map(|a| {
                    let digest = Sha256::digest(a.body);
                    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
                })
                .collect()
        })
    }

    /// Every path, for the bundles' tests.
    #[cfg(test)]
    pub fn paths(&self) -> Vec<&'static str> {
        self.assets.iter().map(|a| a.path).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: &[Asset] = &[
        Asset { path: "index.html", content_type: "text/html", body: b"<p>hi</p>" },
        Asset { path: "app.js", content_type: JS, body: b"1" },
    ];
    static BUNDLE: Bundle = Bundle::new(FILES, "index.html", "default-src 'self'");

    #[test]
    fn unknown_paths_are_404_and_etags_give_304() {
        assert_eq!(BUNDLE.serve("nope.js", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
        let first = BUNDLE.serve("app.js", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        assert!(first.headers().get(header::CONTENT_SECURITY_POLICY).is_none());
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, first.headers()[header::ETAG].clone());
        assert_eq!(BUNDLE.serve("app.js", &headers).status(), StatusCode::NOT_MODIFIED);
        let page = BUNDLE.serve("index.html", &HeaderMap::new());
        assert_eq!(page.headers()[header::CONTENT_SECURITY_POLICY], "default-src 'self'");
    }
}
