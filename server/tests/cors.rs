//! CORS as browsers see it, on Engine.IO long-polling and the HTTP API. With an explicit
//! `CORS_ORIGINS` list, allowed origins are answered with credentials allowed, so browser
//! clients behind a load balancer with cookie affinity send the affinity cookie
//! (`withCredentials: true`) and their polls reach the node that holds their session; `*`
//! allows any origin, never with credentials.

mod support;

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use support::{Server, token};

const APP: &str = "https://app.example.com";
const ADMIN: &str = "https://admin.example.com";
const POLLING: &str = "/socket.io/?EIO=4&transport=polling";

async fn send(server: &Server, method: Method, path: &str, origin: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = reqwest::Client::new().request(method, server.url(path)).header("origin", origin);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// A preflight for `method` on `path`, as a browser sends it before a credentialed request
/// with an `Authorization` header.
async fn preflight(server: &Server, path: &str, origin: &str, method: &str) -> HeaderMap {
    let response = send(
        server,
        Method::OPTIONS,
        path,
        origin,
        &[("access-control-request-method", method), ("access-control-request-headers", "authorization,content-type")],
    )
    .await;
    assert_eq!(response.status(), 200, "preflight of {path}");
    response.headers().clone()
}

/// The `sid` of a new Engine.IO polling session opened from `origin`, with the response headers.
async fn open_polling(server: &Server, origin: &str) -> (String, HeaderMap) {
    let response = send(server, Method::GET, POLLING, origin, &[]).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let open = response.text().await.unwrap();
    let handshake: serde_json::Value = serde_json::from_str(open.strip_prefix('0').expect("an open packet")).unwrap();
    (handshake["sid"].as_str().unwrap().to_owned(), headers)
}

fn assert_credentialed(headers: &HeaderMap, origin: &str, what: &str) {
    assert_eq!(headers.get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some(origin), "{what}");
    assert_eq!(headers.get("access-control-allow-credentials").map(|v| v.to_str().unwrap()), Some("true"), "{what}");
}

#[tokio::test]
async fn listed_origins_are_allowed_with_credentials() {
    let server = Server::start(&["--cors-origins", &format!("{APP},{ADMIN}")]).await;
    for origin in [APP, ADMIN] {
        let (sid, headers) = open_polling(&server, origin).await;
        assert_credentialed(&headers, origin, "polling handshake");
        // A request of the session, which must carry the affinity cookie to reach the node
        // holding the session: the client's connect to `/chat`.
        let poll = reqwest::Client::new()
            .post(server.url(&format!("{POLLING}&sid={sid}")))
            .header("origin", origin)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(format!(r#"40/chat,{{"token":"{}"}}"#, token("alice")))
            .send()
            .await
            .unwrap();
        assert_eq!(poll.status(), 200);
        assert_credentialed(poll.headers(), origin, "polling request of the session");

        let headers = preflight(&server, POLLING, origin, "POST").await;
        assert_credentialed(&headers, origin, "polling preflight");
        let methods = headers["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains("POST"), "allowed methods: {methods}");

        let headers = preflight(&server, "/api/chat/rooms", origin, "GET").await;
        assert_credentialed(&headers, origin, "API preflight");
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("authorization"), "allowed headers: {allowed}");
        let bearer = format!("Bearer {}", token("alice"));
        let rooms = send(&server, Method::GET, "/api/chat/rooms", origin, &[("authorization", &bearer)]).await;
        assert_eq!(rooms.status(), 200);
        assert_credentialed(rooms.headers(), origin, "API response");
    }
}

#[tokio::test]
async fn other_origins_are_not_allowed() {
    let server = Server::start(&["--cors-origins", APP]).await;
    for origin in ["https://evil.example.com", "https://app.example.com.evil.example", "http://app.example.com"] {
        let (_, headers) = open_polling(&server, origin).await;
        assert!(headers.get("access-control-allow-origin").is_none(), "{origin}: {headers:?}");
        let headers = preflight(&server, POLLING, origin, "POST").await;
        assert!(headers.get("access-control-allow-origin").is_none(), "{origin}: {headers:?}");
        let headers = preflight(&server, "/api/chat/rooms", origin, "POST").await;
        assert!(headers.get("access-control-allow-origin").is_none(), "{origin}: {headers:?}");
    }
}

#[tokio::test]
async fn any_origin_is_allowed_without_credentials() {
    // `*` anywhere in the list allows every origin; with credentials that would be invalid CORS
    // (and a panic in tower-http on the first request).
    for origins in ["*", &format!("{APP},*")] {
        let server = Server::start(&["--cors-origins", origins]).await;
        let (_, polling) = open_polling(&server, APP).await;
        let preflight = preflight(&server, POLLING, "https://elsewhere.example", "POST").await;
        for headers in [polling, preflight] {
            assert_eq!(headers["access-control-allow-origin"], "*", "{origins}: {headers:?}");
            assert!(headers.get("access-control-allow-credentials").is_none(), "{origins}: {headers:?}");
        }
    }
}
