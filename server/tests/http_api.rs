//! The HTTP API: the same rules and errors as the socket events, plus HTTP specifics.

mod support;

use serde_json::{Value, json};
use support::{Client, Server, token};

async fn call(
    method: reqwest::Method,
    url: String,
    user: Option<&str>,
    body: Option<String>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, url).header("content-type", "application/json");
    if let Some(u) = user {
        req = req.bearer_auth(token(u));
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

#[tokio::test]
async fn chat_routes_match_the_events() {
    use reqwest::Method;
    let server = Server::start(&["--max-message-length", "20", "--max-payload-bytes", "512"]).await;
    let mut bob = server.chat("bob").await;

    let (status, body, _) = call(
        Method::POST,
        server.url("/api/chat/rooms"),
        Some("alice"),
        Some(json!({ "participantIds": ["bob"] }).to_string()),
    )
    .await;
    assert_eq!(status, 201);
    let rid = body["room"]["id"].as_str().unwrap().to_owned();
    assert_eq!(bob.next_event("roomCreated").await, body["room"]);
    let (status, again, _) = call(
        Method::POST,
        server.url("/api/chat/rooms"),
        Some("alice"),
        Some(json!({ "participantIds": ["bob"] }).to_string()),
    )
    .await;
    assert_eq!((status, again["room"]["id"].as_str()), (200, Some(rid.as_str())));

    let send =
        |content: &str| Some(json!({ "roomId": rid, "content": content, "clientMessageId": content }).to_string());
    let (status, sent, _) = call(Method::POST, server.url("/api/chat/messages"), Some("alice"), send("hello")).await;
    assert_eq!(status, 201);
    assert_eq!(bob.next_event("newMessage").await, sent["message"]);
    let (status, replay, _) = call(Method::POST, server.url("/api/chat/messages"), Some("alice"), send("hello")).await;
    assert_eq!((status, &replay["message"]), (200, &sent["message"]));

    let mid = sent["message"]["id"].as_str().unwrap();
    let (status, page, _) =
        call(Method::GET, server.url(&format!("/api/chat/rooms/{rid}/messages?limit=10")), Some("bob"), None).await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"][0], sent["message"]);
    assert_eq!(page["hasMore"], false);
    let (_, after, _) =
        call(Method::GET, server.url(&format!("/api/chat/rooms/{rid}/messages?after={mid}")), Some("bob"), None).await;
    assert_eq!(after["messages"], json!([]));

    let (status, read, _) = call(
        Method::PATCH,
        server.url("/api/chat/messages/read"),
        Some("bob"),
        Some(json!({ "roomId": rid, "messageId": mid }).to_string()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(read, json!({ "roomId": rid, "userId": "bob", "lastReadMessageId": mid, "unreadCount": 0 }));
    let (_, rooms, _) = call(Method::GET, server.url("/api/chat/rooms"), Some("bob"), None).await;
    assert_eq!(rooms["rooms"][0]["id"], json!(rid));

    // Errors: same codes and messages as the socket events.
    let err = |code: &str, message: &str| json!({ "error": { "code": code, "message": message } });
    // (method, path, caller, body, status, expected body; null = any invalid_payload)
    type Case<'a> = (Method, String, Option<&'a str>, Option<String>, u16, Value);
    let cases: Vec<Case> = vec![
        (Method::POST, "/api/chat/messages".into(), Some("alice"), Some("{not json".into()), 400, Value::Null),
        (
            Method::POST,
            "/api/chat/messages".into(),
            Some("alice"),
            Some("[]".into()),
            400,
            err("invalid_payload", "payload must be a JSON object"),
        ),
        (
            Method::POST,
            "/api/chat/messages".into(),
            Some("alice"),
            Some(json!({ "roomId": 1, "content": "x" }).to_string()),
            400,
            err("invalid_payload", "roomId: invalid type: integer `1`, expected a string"),
        ),
        (
            Method::POST,
            "/api/chat/messages".into(),
            Some("alice"),
            send(&"x".repeat(21)),
            413,
            err("payload_too_large", "content: longer than 20 characters"),
        ),
        (
            Method::POST,
            "/api/chat/messages".into(),
            Some("alice"),
            Some(json!({ "roomId": rid, "content": "x".repeat(600) }).to_string()),
            413,
            err("payload_too_large", "payload exceeds 512 bytes"),
        ),
        (
            Method::POST,
            "/api/chat/messages".into(),
            Some("alice"),
            Some(json!({ "roomId": "nope", "content": "x" }).to_string()),
            404,
            err("not_found", "roomId: no such room"),
        ),
        (
            Method::POST,
            "/api/chat/messages".into(),
            Some("eve"),
            send("hi"),
            403,
            err("forbidden", "you are not a participant of this room"),
        ),
        (Method::POST, "/api/chat/messages".into(), None, send("hi"), 401, err("unauthorized", "missing bearer token")),
        (
            Method::GET,
            format!("/api/chat/rooms/{rid}/messages?limit=abc"),
            Some("bob"),
            None,
            400,
            err("invalid_payload", "limit: invalid type: string \"abc\", expected i64"),
        ),
        (
            Method::GET,
            format!("/api/chat/rooms/{rid}/messages?limit=0"),
            Some("bob"),
            None,
            400,
            err("invalid_payload", "limit: must be 1 to 100"),
        ),
        (
            Method::GET,
            format!("/api/chat/rooms/{rid}/messages?before=zz"),
            Some("bob"),
            None,
            400,
            err("invalid_payload", "before: not a message id"),
        ),
        (
            Method::GET,
            format!("/api/chat/rooms/{rid}/messages"),
            Some("eve"),
            None,
            403,
            err("forbidden", "you are not a participant of this room"),
        ),
        (
            Method::GET,
            "/api/chat/rooms/nope/messages".into(),
            Some("bob"),
            None,
            404,
            err("not_found", "roomId: no such room"),
        ),
        (
            Method::PATCH,
            "/api/chat/messages/read".into(),
            Some("bob"),
            Some(json!({ "roomId": rid, "messageId": "000000000077" }).to_string()),
            404,
            err("not_found", "messageId: no such message in this room"),
        ),
        (Method::GET, "/api/nothing-here".into(), Some("bob"), None, 404, err("not_found", "no such route")),
        (
            Method::POST,
            "/dev/token".into(),
            None,
            Some(json!({ "userId": "x" }).to_string()),
            404,
            err("not_found", "no such route"),
        ),
    ];
    for (method, path, user, body, status, expected) in cases {
        let (got_status, got, _) = call(method.clone(), server.url(&path), user, body).await;
        assert_eq!(got_status, status, "{method} {path}: {got}");
        if expected.is_null() {
            assert_eq!(got["error"]["code"], "invalid_payload", "{method} {path}: {got}");
        } else {
            assert_eq!(got, expected, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    use reqwest::Method;
    let server = Server::start(&["--rate-limit-query", "2/60s"]).await;
    for _ in 0..2 {
        assert_eq!(call(Method::GET, server.url("/api/chat/rooms"), Some("alice"), None).await.0, 200);
    }
    let (status, body, headers) = call(Method::GET, server.url("/api/chat/rooms"), Some("alice"), None).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    // The budget is shared with the user's sockets.
    let mut socket = server.chat("alice").await;
    Client::error_of(&socket.call("getRooms", json!({})).await, "rate_limited");
}

#[tokio::test]
async fn health_and_ready() {
    let server = Server::start(&[]).await;
    let health: Value = reqwest::get(server.url("/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptimeSeconds"].is_u64());
    assert_eq!(reqwest::get(server.url("/ready")).await.unwrap().status(), 200);
}
