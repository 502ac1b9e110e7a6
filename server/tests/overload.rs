//! Load shedding: while the server's runtime runs late, `sendMessage` is refused with
//! `unavailable` before anything is stored, over a socket and over HTTP, and the same message
//! goes through once the runtime has caught up.
//!
//! The server runs in this process on the test's single runtime thread, so blocking that
//! thread is what saturation does to a server (its tasks cannot run), without a load whose
//! effect would depend on the machine's speed.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, Server, token};

const MAX_LAG_MS: &str = "100";

/// Keeps every task of the runtime, the server's included, from running for 400 ms.
fn stall() {
    std::thread::sleep(Duration::from_millis(400));
}

/// Long enough for the lag probe (every 10 ms) to run on time again.
async fn catch_up() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_late_runtime_refuses_messages_until_it_catches_up() {
    let server = Server::start(&["--overload-max-lag-ms", MAX_LAG_MS]).await;
    let mut alice = server.chat("alice").await;
    let mut bob = server.chat("bob").await;
    let ack = alice.call("getOrCreateRoom", json!({ "participantIds": ["bob"] })).await;
    let room = Client::data_of(&ack)["room"]["id"].as_str().unwrap().to_owned();
    let message = json!({ "roomId": room, "content": "hello", "clientMessageId": "m-1" });

    stall();
    let ack = alice.call("sendMessage", message.clone()).await;
    assert_eq!(Client::error_of(&ack, "unavailable"), "server overloaded; retry later");
    let page = Client::data_of(&alice.call("getMessages", json!({ "roomId": room })).await);
    assert_eq!(page["messages"], json!([]), "a refused message is not stored");

    // Over HTTP: 503 with Retry-After and the same body.
    stall();
    let res = reqwest::Client::new()
        .post(server.url("/api/chat/messages"))
        .bearer_auth(token("alice"))
        .json(&message)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "error": { "code": "unavailable", "message": "server overloaded; retry later" } }));

    // The retry the error asks for, once the server has caught up, is accepted and delivered.
    catch_up().await;
    let sent = Client::data_of(&alice.call("sendMessage", message).await);
    assert_eq!(bob.next_event("newMessage").await["id"], sent["message"]["id"]);
    let errors = server.metric("socket_errors_total", r#"namespace="/chat",type="unavailable""#).await;
    assert_eq!(errors, Some(1.0), "the socket refusal is counted as an error");
}

#[tokio::test]
async fn shedding_turned_off_accepts_a_late_message() {
    let server = Server::start(&["--overload-max-lag-ms", "0"]).await;
    let mut alice = server.chat("alice").await;
    let ack = alice.call("getOrCreateRoom", json!({ "participantIds": ["bob"] })).await;
    let room = Client::data_of(&ack)["room"]["id"].as_str().unwrap().to_owned();
    stall();
    Client::data_of(&alice.call("sendMessage", json!({ "roomId": room, "content": "hello" })).await);
}
