//! The server API for backends (`/api/server/…`) on two server instances sharing a real
//! `redis-server`: emits to a user, a room and a namespace, a fleet-wide disconnect, a
//! user's sockets and a room's online members, with a user whose sockets are on both
//! nodes; then every refusal with its exact error, and the rate limit.

mod notifications_support;
mod support;

use std::time::{Duration, Instant};

use notifications_support::RedisServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Client, Server, token};

const KEY: &str = "backend-key-0123456789";

async fn node(redis: &RedisServer) -> Server {
    Server::start(&["--redis-url", &redis.url(), "--service-api-keys", KEY]).await
}

/// Calls `path` on `server` with `auth` as the bearer token; returns the status and JSON body.
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, server.url(path));
    if let Some(auth) = auth {
        request = request.bearer_auth(auth);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn post(server: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    call(server, Method::POST, path, Some(KEY), Some(body)).await
}

async fn get(server: &Server, path: &str) -> (StatusCode, Value) {
    call(server, Method::GET, path, Some(KEY), None).await
}

/// Polls `GET path` until `done` holds for the body (presence settles through Redis).
async fn get_until(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(server, path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never settled: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn error(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_reach_users_rooms_and_namespaces_on_every_node() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    // alice has a socket on each node; bob one on b.
    let mut alice_chat = a.chat("alice").await;
    let mut alice_notes = Client::connect(b.addr, "/notifications", Some(&token("alice"))).await.unwrap();
    let mut bob = b.chat("bob").await;

    let alice = get_until(&a, "/api/server/users/alice", |u| u["sockets"].as_array().unwrap().len() == 2).await;
    assert_eq!(alice["userId"], "alice");
    assert_eq!(alice["online"], true);
    let sockets = alice["sockets"].as_array().unwrap();
    let mut namespaces: Vec<&str> = sockets.iter().map(|s| s["namespace"].as_str().unwrap()).collect();
    namespaces.sort();
    assert_eq!(namespaces, ["/chat", "/notifications"]);
    assert!(sockets.iter().all(|s| !s["id"].as_str().unwrap().is_empty()));
    let (n0, n1) = (sockets[0]["node"].as_str().unwrap(), sockets[1]["node"].as_str().unwrap());
    assert_ne!(n0, n1, "one socket per node: {alice}");
    let nobody = get(&b, "/api/server/users/nobody").await;
    assert_eq!(nobody, (StatusCode::OK, json!({ "userId": "nobody", "online": false, "sockets": [] })));

    // To a user, in the namespace asked for, from the node without that socket.
    let sent = post(
        &a,
        "/api/server/users/alice/emit",
        json!({ "namespace": "/notifications", "event": "ping", "data": { "n": 1 } }),
    )
    .await;
    assert_eq!(
        sent,
        (StatusCode::ACCEPTED, json!({ "userId": "alice", "namespace": "/notifications", "event": "ping" }))
    );
    assert_eq!(alice_notes.next_event("ping").await, json!({ "n": 1 }));
    let sent = post(&b, "/api/server/users/alice/emit", json!({ "namespace": "/chat", "event": "ping" })).await;
    assert_eq!(sent.0, StatusCode::ACCEPTED);
    assert_eq!(alice_chat.next_event("ping").await, Value::Null);

    // To a chat room, and its online members.
    let room = Client::data_of(
        &alice_chat.call("getOrCreateRoom", json!({ "participantIds": ["bob", "carol"] })).await,
    )["room"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent =
        post(&b, &format!("/api/server/rooms/{room}/emit"), json!({ "event": "announce", "data": ["x", 2] })).await;
    assert_eq!(sent, (StatusCode::ACCEPTED, json!({ "roomId": room, "namespace": "/chat", "event": "announce" })));
    assert_eq!(alice_chat.next_event("announce").await, json!(["x", 2]));
    assert_eq!(bob.next_event("announce").await, json!(["x", 2]));
    let members = get(&a, &format!("/api/server/rooms/{room}/members")).await;
    assert_eq!(members, (StatusCode::OK, json!({ "roomId": room, "online": ["alice", "bob"] })));

    // To everyone in a namespace, on both nodes.
    let sent =
        post(&a, "/api/server/emit", json!({ "namespace": "/chat", "event": "maintenance", "data": "soon" })).await;
    assert_eq!(sent, (StatusCode::ACCEPTED, json!({ "namespace": "/chat", "event": "maintenance" })));
    assert_eq!(alice_chat.next_event("maintenance").await, "soon");
    assert_eq!(bob.next_event("maintenance").await, "soon");

    // Disconnect alice everywhere: both her sockets, on both nodes; bob stays.
    let gone = post(&a, "/api/server/users/alice/disconnect", json!({})).await;
    assert_eq!(gone, (StatusCode::ACCEPTED, json!({ "userId": "alice" })));
    alice_chat.disconnected().await;
    alice_notes.disconnected().await;
    let alice = get_until(&b, "/api/server/users/alice", |u| u["online"] == false).await;
    assert_eq!(alice["sockets"], json!([]));
    assert!(alice["lastSeen"].is_string(), "{alice}");
    let members = get(&b, &format!("/api/server/rooms/{room}/members")).await;
    assert_eq!(members.1["online"], json!(["bob"]));
    let sent =
        post(&a, "/api/server/users/bob/emit", json!({ "namespace": "/chat", "event": "still", "data": 1 })).await;
    assert_eq!(sent.0, StatusCode::ACCEPTED);
    assert_eq!(bob.next_event("still").await, 1);

    assert!(a.metric("switchyard_server_api_requests_total", r#"route="emit_user",code="ok""#).await >= Some(1.0));
    assert!(b.metric("switchyard_server_api_requests_total", r#"route="room_members",code="ok""#).await >= Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_the_contract_errors() {
    let redis = RedisServer::start().await;
    let a = node(&redis).await;
    let emit = "/api/server/users/alice/emit";

    // Callers: none, a user, a wrong key.
    let missing = call(&a, Method::POST, emit, None, Some(json!({}))).await;
    assert_eq!(missing, (StatusCode::UNAUTHORIZED, error("unauthorized", "missing bearer token")));
    for path in ["/api/server/users/alice", "/api/server/rooms/r/members"] {
        let user = call(&a, Method::GET, path, Some(&token("alice")), None).await;
        let message = "user tokens cannot call service routes; use a service key";
        assert_eq!(user, (StatusCode::FORBIDDEN, error("forbidden", message)), "{path}");
    }
    let user = call(&a, Method::POST, "/api/server/users/bob/disconnect", Some(&token("alice")), None).await;
    assert_eq!(user.0, StatusCode::FORBIDDEN);
    let wrong = call(&a, Method::POST, emit, Some("not-the-key-0123456789"), Some(json!({}))).await;
    assert_eq!(wrong, (StatusCode::UNAUTHORIZED, error("unauthorized", "invalid service key")));

    // Bodies.
    let bad = |body: Value, message: &str| (body, error("invalid_payload", message));
    let cases = [
        bad(json!({ "namespace": "/admin", "event": "x" }), "namespace: must be one of /chat, /notifications"),
        bad(json!({ "event": "x" }), "missing field `namespace`"),
        bad(json!({ "namespace": "/chat", "event": "connect" }), "event: `connect` is reserved by Socket.IO"),
        bad(json!({ "namespace": "/chat", "event": "" }), "event: must be 1 to 128 bytes without control characters"),
        bad(
            json!({ "namespace": "/chat", "event": "x".repeat(129) }),
            "event: must be 1 to 128 bytes without control characters",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(post(&a, emit, body.clone()).await, (StatusCode::BAD_REQUEST, expected), "{body}");
    }
    let unknown = post(&a, emit, json!({ "namespace": "/chat", "event": "x", "room": "r" })).await;
    assert_eq!((unknown.0, &unknown.1["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_payload")));
    assert!(unknown.1["error"]["message"].as_str().unwrap().contains("unknown field `room`"), "{}", unknown.1);
    let no_event = post(&a, "/api/server/emit", json!({ "namespace": "/chat" })).await;
    assert_eq!(no_event.1["error"]["message"], "missing field `event`", "{}", no_event.1);
    let not_json = reqwest::Client::new().post(a.url(emit)).bearer_auth(KEY).body("{nope").send().await.unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(not_json.json::<Value>().await.unwrap()["error"]["code"], "invalid_payload");
    let huge = post(&a, emit, json!({ "namespace": "/chat", "event": "x", "data": "y".repeat(70_000) })).await;
    assert_eq!(huge, (StatusCode::PAYLOAD_TOO_LARGE, error("payload_too_large", "payload exceeds 65536 bytes")));
    let long_id = format!("/api/server/users/{}/emit", "u".repeat(129));
    let message = "userId: must be 1 to 128 bytes without control characters";
    assert_eq!(
        post(&a, &long_id, json!({ "namespace": "/chat", "event": "x" })).await,
        (StatusCode::BAD_REQUEST, error("invalid_payload", message))
    );

    // Rooms: the room route takes no namespace; unknown rooms are 404.
    let with_ns = post(&a, "/api/server/rooms/r/emit", json!({ "namespace": "/chat", "event": "x" })).await;
    assert_eq!(
        with_ns,
        (StatusCode::BAD_REQUEST, error("invalid_payload", "namespace: rooms are in /chat; leave it out"))
    );
    let missing_room = post(&a, "/api/server/rooms/g-none/emit", json!({ "event": "x" })).await;
    assert_eq!(missing_room, (StatusCode::NOT_FOUND, error("not_found", "room not found")));
    assert_eq!(
        get(&a, "/api/server/rooms/g-none/members").await,
        (StatusCode::NOT_FOUND, error("not_found", "room not found"))
    );
    assert_eq!(get(&a, "/api/server/nothing").await, (StatusCode::NOT_FOUND, error("not_found", "no such route")));
    assert!(a.metric("switchyard_server_api_requests_total", r#"route="user",code="forbidden""#).await >= Some(1.0));
    assert!(
        a.metric("switchyard_server_api_requests_total", r#"route="emit_room",code="not_found""#).await >= Some(1.0)
    );

    // Without SERVICE_API_KEYS the routes are closed.
    let closed = Server::start(&[]).await;
    let refused = call(&closed, Method::GET, "/api/server/users/alice", Some(KEY), None).await;
    let message = "service routes are closed: SERVICE_API_KEYS is not set";
    assert_eq!(refused, (StatusCode::FORBIDDEN, error("forbidden", message)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_key_has_a_budget_of_its_own_apart_from_the_users() {
    const OTHER: &str = "another-backend-key-0123456789";
    let keys = format!("{KEY},{OTHER}");
    // Users' budgets of one call would refuse the second; the server API's budget is 3.
    let limits = ["--rate-limit-server", "3/60s", "--rate-limit-query", "1/60s", "--rate-limit-message", "1/60s"];
    let server = Server::start(&[&["--service-api-keys", keys.as_str()][..], &limits[..]].concat()).await;
    for _ in 0..2 {
        assert_eq!(get(&server, "/api/server/users/alice").await.0, StatusCode::OK);
    }
    let sent = post(&server, "/api/server/emit", json!({ "namespace": "/chat", "event": "x" })).await;
    assert_eq!(sent.0, StatusCode::ACCEPTED, "reads and writes share the key's budget");
    let response =
        reqwest::Client::new().get(server.url("/api/server/users/alice")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
    let other =
        reqwest::Client::new().get(server.url("/api/server/users/alice")).bearer_auth(OTHER).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK, "another key has its own budget");
}
