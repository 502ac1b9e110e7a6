//! The Admin UI's side on one node, with a raw Socket.IO client in the UI's place: off by
//! default (no `/admin` namespace, no page), the sign-in and its exact refusal, what a
//! signed-in UI hears, its actions, read-only mode, and a bad setting stopping start-up.
//! Then two nodes on a real `redis-server`: a UI signed in to one sees both servers and the
//! sockets of both, hears the other node's connections and room changes, and its actions
//! reach sockets on the other node. The official UI in Chromium against two nodes is
//! `tests/browser/admin_ui.test.js`.

mod notifications_support;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use notifications_support::RedisServer;

use serde_json::{Value, json};
use support::{Client, Server};

/// `changeit` at cost 4 (bcryptjs's `hashSync("changeit", 4)`).
const HASH: &str = "$2a$04$oym0iiYp3Twzqv/qxOnWOu3QndxG2rznJh.0/QxWu00AoD07bcdoa";

async fn admin_server(extra: &[&str]) -> Server {
    let mut args = vec!["--admin-ui-username", "ops", "--admin-ui-password-hash", HASH];
    args.extend_from_slice(extra);
    Server::start(&args).await
}

async fn sign_in(server: &Server, auth: Value) -> Result<Client, String> {
    Client::connect_with_auth(server.addr, "/admin", auth).await
}

fn credentials() -> Value {
    json!({ "username": "ops", "password": "changeit" })
}

async fn get(url: &str) -> reqwest::Response {
    let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    http.get(url).send().await.unwrap()
}

#[tokio::test]
async fn off_by_default_there_is_no_namespace_and_no_page() {
    let server = Server::start(&[]).await;
    let refused = sign_in(&server, credentials()).await.err();
    assert_eq!(refused.as_deref(), Some("Invalid namespace"));
    assert_eq!(get(&server.url("/admin/")).await.status(), 404);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_with_invalid_credentials() {
    let server = admin_server(&[]).await;
    for auth in [
        json!({ "username": "ops", "password": "wrong" }),
        json!({ "username": "root", "password": "changeit" }),
        json!({ "sessionId": "4102444800.forged" }),
        json!({}),
    ] {
        let refused = sign_in(&server, auth.clone()).await.err();
        assert_eq!(refused.as_deref(), Some("invalid credentials"), "{auth}");
    }
}

#[tokio::test]
async fn the_page_is_served_at_its_path() {
    let server = admin_server(&["--admin-ui-path", "/ops/ui/"]).await;
    let redirect = get(&server.url("/ops/ui")).await;
    assert_eq!((redirect.status().as_u16(), redirect.headers()["location"].to_str().unwrap()), (308, "/ops/ui/"));
    let page = get(&server.url("/ops/ui/")).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert!(page.text().await.unwrap().contains("<title>Socket.IO Admin UI</title>"));
    let script = get(&server.url("/ops/ui/js/app.0d7d7845.js")).await;
    assert_eq!(
        (script.status().as_u16(), script.headers()["content-type"].to_str().unwrap()),
        (200, "text/javascript; charset=utf-8")
    );
    assert_eq!(get(&server.url("/ops/ui/index.html")).await.status(), 404);
    assert_eq!(get(&server.url("/ops/ui/js/nope.js")).await.status(), 404);
    assert_eq!(get(&server.url("/admin/")).await.status(), 404);
}

#[tokio::test]
async fn a_signed_in_ui_sees_the_sockets_and_their_changes_and_disconnects_one() {
    let server = admin_server(&[]).await;
    let mut alice = server.chat("alice").await;
    let mut ui = sign_in(&server, credentials()).await.expect("signs in");
    let session = ui.next_event("session").await;
    let features = ui.next_event("config").await;
    assert_eq!(features["supportedFeatures"], json!(["JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]));
    let stats = ui.next_event("server_stats").await;
    assert_eq!(stats["pid"], json!(std::process::id()));
    assert_eq!(
        stats["namespaces"],
        json!([{ "name": "/chat", "socketsCount": 1 }, { "name": "/notifications", "socketsCount": 0 }])
    );
    let sockets = ui.next_event("all_sockets").await;
    let sockets = sockets.as_array().unwrap();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let listed = &sockets[0];
    assert_eq!((listed["nsp"].as_str(), listed["transport"].as_str()), (Some("/chat"), Some("websocket")));
    assert_eq!(listed["data"]["userId"], "alice");
    assert_eq!(listed["handshake"]["address"], "127.0.0.1");
    assert!(listed["handshake"]["issued"].as_u64().unwrap() > 1_700_000_000_000);
    let mut rooms: Vec<&str> = listed["rooms"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    rooms.sort_unstable();
    assert_eq!(rooms, ["everyone", "user:alice"]);

    // The session id signs in without the password (a reload of the UI).
    assert!(sign_in(&server, json!({ "sessionId": session })).await.is_ok());

    // Live: a new socket, with its rooms.
    let bob = server.chat("bob").await;
    let connected = ui.next_event("socket_connected").await;
    assert_eq!(connected["data"]["userId"], "bob");
    drop(bob);
    assert_eq!(ui.next_event("socket_disconnected").await, json!("/chat"));
    let carol = Client::connect(server.addr, "/notifications", Some(&support::token("carol"))).await.unwrap();
    let connected = ui.next_event("socket_connected").await;
    assert_eq!(
        (connected["nsp"].as_str(), connected["data"]["userId"].as_str()),
        (Some("/notifications"), Some("carol"))
    );
    drop(carol);

    // Actions: a join and a disconnect by socket id; the ack says how many sockets here.
    let id = listed["id"].as_str().unwrap();
    let ack = ui.call_raw(&json!(["join", "/chat", "vip", id]).to_string()).await;
    assert_eq!(Client::data_of(&ack), json!({ "affected": 1 }));
    assert_eq!(ui.next_event("room_joined").await, json!("/chat"));
    let ack = ui.call_raw(&json!(["_disconnect", "/chat", false, id]).to_string()).await;
    assert_eq!(Client::data_of(&ack), json!({ "affected": 1 }));
    alice.disconnected().await;
    let ack = ui.call_raw(&json!(["_disconnect", "/admin", false]).to_string()).await;
    assert_eq!(Client::error_of(&ack, "invalid_payload"), "nsp: must be one of /chat, /notifications");
}

#[tokio::test]
async fn read_only_shows_everything_and_refuses_actions() {
    let server = admin_server(&["--admin-ui-readonly", "true"]).await;
    let mut alice = server.chat("alice").await;
    let mut ui = sign_in(&server, credentials()).await.expect("signs in");
    assert_eq!(ui.next_event("config").await, json!({ "supportedFeatures": [] }));
    let sockets = ui.next_event("all_sockets").await;
    let id = sockets[0]["id"].as_str().unwrap().to_owned();
    let ack = ui.call_raw(&json!(["_disconnect", "/chat", true, id]).to_string()).await;
    assert_eq!(Client::error_of(&ack, "forbidden"), "the admin UI is read-only");
    let ack = ui.call_raw(&json!(["leave", "/chat", "everyone"]).to_string()).await;
    assert_eq!(Client::error_of(&ack, "forbidden"), "the admin UI is read-only");
    // Alice is still connected and in her rooms.
    let ack = alice.call("getRooms", json!({})).await;
    Client::data_of(&ack);
}

#[test]
fn a_bad_hash_stops_start_up_naming_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard-server"))
        .env_clear()
        .env("ADMIN_UI_USERNAME", "ops")
        .env("ADMIN_UI_PASSWORD_HASH", "changeit")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "error: invalid value for ADMIN_UI_PASSWORD_HASH: not a bcrypt hash (such as $2b$10$ followed by 53 characters)"
    );
}

/// Events a UI gets until `done` holds for one of `event` (the stats of both nodes, say).
async fn until_event(ui: &mut Client, event: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = ui.next_event(event).await;
        if done(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "no {event} matching before the deadline; last {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ui_sees_and_acts_on_two_nodes_through_redis() {
    let redis = RedisServer::start().await;
    let node = |redis: &RedisServer| {
        let url = redis.url();
        async move {
            Server::start(&["--redis-url", &url, "--admin-ui-username", "ops", "--admin-ui-password-hash", HASH]).await
        }
    };
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut alice = b.chat("alice").await;
    let mut ui = sign_in(&a, credentials()).await.expect("signs in");

    // Both servers report, each with its own id (host:port).
    let b_id = format!(":{}", b.addr.port());
    until_event(&mut ui, "server_stats", |s| s["serverId"].as_str().unwrap().ends_with(&b_id)).await;
    // Alice (on b) is listed: in the listing, or just after it when a had not heard of b yet.
    let sockets = ui.next_event("all_sockets").await;
    let on_b = sockets.as_array().unwrap().iter().find(|s| s["data"]["userId"] == "alice").cloned();
    let listed = match on_b {
        Some(socket) => socket,
        None => until_event(&mut ui, "socket_connected", |s| s["data"]["userId"] == "alice").await,
    };
    let id = listed["id"].as_str().unwrap().to_owned();

    // b's sockets are heard of as they come and change rooms.
    let bob = b.chat("bob").await;
    until_event(&mut ui, "socket_connected", |s| s["data"]["userId"] == "bob").await;
    drop(bob);
    ui.next_event("socket_disconnected").await;

    // Actions sent to a reach alice on b: a join (heard back as room_joined), a disconnect.
    let ack = ui.call_raw(&json!(["join", "/chat", "vip", id]).to_string()).await;
    assert_eq!(Client::data_of(&ack), json!({ "affected": 0 }), "no socket of a was touched");
    until_event(&mut ui, "room_joined", |nsp| nsp == "/chat").await;
    ui.call_raw(&json!(["_disconnect", "/chat", false, "vip"]).to_string()).await;
    alice.disconnected().await;
}
