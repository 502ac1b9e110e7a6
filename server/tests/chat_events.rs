//! Every `/chat` event against a real server: the happy path and each error code.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Client, Server};

const LIMITS: &[&str] = &["--max-message-length", "50", "--max-payload-bytes", "1024"];

async fn room_of(c: &mut Client, others: &[&str]) -> Value {
    Client::data_of(&c.call("getOrCreateRoom", json!({ "participantIds": others })).await)["room"].clone()
}

/// Alice, Bob and Eve connected, and the id of Alice's room with Bob (Eve is not in it).
async fn alice_and_bob_with_eve_outside(server: &Server) -> (Client, Client, Client, String) {
    let mut alice = server.chat("alice").await;
    let bob = server.chat("bob").await;
    let eve = server.chat("eve").await;
    let room = room_of(&mut alice, &["bob"]).await;
    (alice, bob, eve, room["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn get_or_create_room() {
    let server = Server::start(LIMITS).await;
    let mut alice = server.chat("alice").await;
    let mut bob = server.chat("bob").await;

    let room = room_of(&mut alice, &["bob"]).await;
    assert_eq!(room["type"], "direct");
    assert_eq!(room["participantIds"], json!(["alice", "bob"]));
    assert_eq!(bob.next_event("roomCreated").await, room);
    // Deterministic: the other side asking gets the same room, and no second roomCreated.
    assert_eq!(room_of(&mut bob, &["alice", "alice"]).await["id"], room["id"]);
    assert!(alice.drain_events("roomCreated", Duration::from_millis(200)).await.len() == 1);

    let group =
        Client::data_of(&alice.call("getOrCreateRoom", json!({ "participantIds": ["bob"], "name": "pair" })).await);
    assert_eq!(group["room"]["type"], "group");
    assert_ne!(group["room"]["id"], room["id"]);

    for (payload, message) in [
        (json!({}), "missing field `participantIds`"),
        (json!({ "participantIds": "bob" }), "participantIds: invalid type: string \"bob\", expected a sequence"),
        (json!({ "participantIds": [1] }), "participantIds[0]: invalid type: integer `1`, expected a string"),
        (json!({ "participantIds": [] }), "participantIds: name at least one participant besides yourself"),
        (json!({ "participantIds": ["alice"] }), "participantIds: name at least one participant besides yourself"),
        (json!({ "participantIds": [""] }), "participantIds: must be 1 to 128 bytes without control characters"),
        (
            json!({ "participantIds": ["x".repeat(129)] }),
            "participantIds: must be 1 to 128 bytes without control characters",
        ),
        (json!({ "participantIds": ["bob"], "name": "  " }), "name: must be 1 to 100 characters"),
        (json!({ "participantIds": ["bob"], "name": 7 }), "name: invalid type: integer `7`, expected a string"),
    ] {
        assert_eq!(
            Client::error_of(&alice.call("getOrCreateRoom", payload.clone()).await, "invalid_payload"),
            message,
            "{payload}"
        );
    }
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let ack = alice.call("getOrCreateRoom", json!({ "participantIds": many })).await;
    // 1001 ids are over MAX_PAYLOAD_BYTES here before they are over the participant cap.
    Client::error_of(&ack, "payload_too_large");
}

#[tokio::test]
async fn send_message() {
    let server = Server::start(LIMITS).await;
    let (mut alice, mut bob, mut eve, rid) = alice_and_bob_with_eve_outside(&server).await;
    let rid = rid.as_str();

    let ack = alice.call("sendMessage", json!({ "roomId": rid, "content": " hi ", "clientMessageId": "k1" })).await;
    let message = Client::data_of(&ack)["message"].clone();
    assert_eq!(message["content"], "hi");
    assert_eq!(message["senderId"], "alice");
    assert_eq!(message["clientMessageId"], "k1");
    assert_eq!(bob.next_event("newMessage").await, message);
    // Idempotent on clientMessageId: same message back, nothing delivered.
    let again =
        alice.call("sendMessage", json!({ "roomId": rid, "content": "changed", "clientMessageId": "k1" })).await;
    assert_eq!(Client::data_of(&again)["message"], message);
    assert!(bob.drain_events("newMessage", Duration::from_millis(200)).await.is_empty());
    // Ids sort in send order.
    let next = Client::data_of(&alice.call("sendMessage", json!({ "roomId": rid, "content": "2nd" })).await)["message"]
        .clone();
    assert!(next["id"].as_str().unwrap() > message["id"].as_str().unwrap());

    let cases = [
        (json!({ "content": "x" }), "invalid_payload", "missing field `roomId`"),
        (
            json!({ "roomId": 5, "content": "x" }),
            "invalid_payload",
            "roomId: invalid type: integer `5`, expected a string",
        ),
        (json!({ "roomId": rid }), "invalid_payload", "missing field `content`"),
        (
            json!({ "roomId": rid, "content": null }),
            "invalid_payload",
            "content: invalid type: null, expected a string",
        ),
        (json!({ "roomId": rid, "content": "   " }), "invalid_payload", "content: must not be empty"),
        (
            json!({ "roomId": rid, "content": "x", "clientMessageId": "" }),
            "invalid_payload",
            "clientMessageId: must be 1 to 128 bytes without control characters",
        ),
        (
            json!({ "roomId": rid, "content": "y".repeat(51) }),
            "payload_too_large",
            "content: longer than 50 characters",
        ),
        (json!({ "roomId": rid, "content": "z".repeat(2000) }), "payload_too_large", "payload exceeds 1024 bytes"),
        (json!({ "roomId": "nope", "content": "x" }), "not_found", "roomId: no such room"),
    ];
    for (payload, code, message) in cases {
        assert_eq!(Client::error_of(&alice.call("sendMessage", payload.clone()).await, code), message, "{payload}");
    }
    let ack = eve.call("sendMessage", json!({ "roomId": rid, "content": "let me in" })).await;
    assert_eq!(Client::error_of(&ack, "forbidden"), "you are not a participant of this room");
    // Eve got nothing from the room she is not in.
    assert!(eve.drain_events("newMessage", Duration::from_millis(100)).await.is_empty());
}

#[tokio::test]
async fn get_messages() {
    let server = Server::start(LIMITS).await;
    let mut alice = server.chat("alice").await;
    let mut eve = server.chat("eve").await;
    let room = room_of(&mut alice, &["bob"]).await;
    let rid = room["id"].as_str().unwrap();
    let mut ids = vec![];
    for i in 0..5 {
        let ack = alice.call("sendMessage", json!({ "roomId": rid, "content": format!("m{i}") })).await;
        ids.push(Client::data_of(&ack)["message"]["id"].as_str().unwrap().to_owned());
    }
    let contents = |data: &Value| {
        data["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let all = Client::data_of(&alice.call("getMessages", json!({ "roomId": rid })).await);
    assert_eq!(contents(&all), ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(all["hasMore"], false);
    let latest = Client::data_of(&alice.call("getMessages", json!({ "roomId": rid, "limit": 2 })).await);
    assert_eq!((contents(&latest), latest["hasMore"].clone()), (vec!["m3".into(), "m4".into()], json!(true)));
    let before =
        Client::data_of(&alice.call("getMessages", json!({ "roomId": rid, "before": ids[3], "limit": 2 })).await);
    assert_eq!(contents(&before), ["m1", "m2"]);
    let after =
        Client::data_of(&alice.call("getMessages", json!({ "roomId": rid, "after": ids[1], "limit": 2 })).await);
    assert_eq!((contents(&after), after["hasMore"].clone()), (vec!["m2".into(), "m3".into()], json!(true)));
    let between =
        Client::data_of(&alice.call("getMessages", json!({ "roomId": rid, "after": ids[0], "before": ids[3] })).await);
    assert_eq!(contents(&between), ["m1", "m2"]);

    let cases = [
        (json!({}), "invalid_payload", "missing field `roomId`"),
        (json!({ "roomId": rid, "limit": 0 }), "invalid_payload", "limit: must be 1 to 100"),
        (json!({ "roomId": rid, "limit": 101 }), "invalid_payload", "limit: must be 1 to 100"),
        (
            json!({ "roomId": rid, "limit": "ten" }),
            "invalid_payload",
            "limit: invalid type: string \"ten\", expected i64",
        ),
        (json!({ "roomId": rid, "before": "abc" }), "invalid_payload", "before: not a message id"),
        (
            json!({ "roomId": rid, "after": 3 }),
            "invalid_payload",
            "after: invalid type: integer `3`, expected a string",
        ),
        (json!({ "roomId": "nope" }), "not_found", "roomId: no such room"),
    ];
    for (payload, code, message) in cases {
        assert_eq!(Client::error_of(&alice.call("getMessages", payload.clone()).await, code), message, "{payload}");
    }
    Client::error_of(&eve.call("getMessages", json!({ "roomId": rid })).await, "forbidden");
}

#[tokio::test]
async fn mark_messages_read() {
    let server = Server::start(LIMITS).await;
    let (mut alice, mut bob, mut eve, rid) = alice_and_bob_with_eve_outside(&server).await;
    let rid = rid.as_str();
    let mut ids = vec![];
    for i in 0..3 {
        let ack = alice.call("sendMessage", json!({ "roomId": rid, "content": format!("m{i}") })).await;
        ids.push(Client::data_of(&ack)["message"]["id"].as_str().unwrap().to_owned());
    }
    let read = Client::data_of(&bob.call("markMessagesRead", json!({ "roomId": rid, "messageId": ids[1] })).await);
    assert_eq!(read, json!({ "roomId": rid, "userId": "bob", "lastReadMessageId": ids[1], "unreadCount": 1 }));
    let receipt = alice.next_event("messagesRead").await;
    assert_eq!(receipt["lastReadMessageId"], json!(ids[1]));
    assert_eq!(receipt["userId"], "bob");
    // Never backwards.
    let back = Client::data_of(&bob.call("markMessagesRead", json!({ "roomId": rid, "messageId": ids[0] })).await);
    assert_eq!(back["lastReadMessageId"], json!(ids[1]));
    let rooms = Client::data_of(&bob.call("getRooms", json!({})).await);
    assert_eq!(rooms["rooms"][0]["unreadCount"], 1);
    assert_eq!(rooms["rooms"][0]["lastMessage"]["content"], "m2");

    let cases = [
        (json!({ "roomId": rid }), "invalid_payload", "missing field `messageId`"),
        (json!({ "roomId": rid, "messageId": "x1" }), "invalid_payload", "messageId: not a message id"),
        (json!({ "roomId": rid, "messageId": "000000000099" }), "not_found", "messageId: no such message in this room"),
        (json!({ "roomId": "nope", "messageId": ids[0] }), "not_found", "roomId: no such room"),
    ];
    for (payload, code, message) in cases {
        assert_eq!(Client::error_of(&bob.call("markMessagesRead", payload.clone()).await, code), message, "{payload}");
    }
    Client::error_of(&eve.call("markMessagesRead", json!({ "roomId": rid, "messageId": ids[0] })).await, "forbidden");
}

#[tokio::test]
async fn typing_relays_and_times_out() {
    let server = Server::start(&["--typing-timeout-ms", "300"]).await;
    let mut alice = server.chat("alice").await;
    let mut alice2 = server.chat("alice").await;
    let mut bob = server.chat("bob").await;
    let mut eve = server.chat("eve").await;
    let room = room_of(&mut alice, &["bob"]).await;
    let rid = room["id"].as_str().unwrap();

    assert_eq!(Client::data_of(&alice.call("typing", json!({ "roomId": rid, "isTyping": true })).await), json!({}));
    assert_eq!(bob.next_event("userTyping").await, json!({ "roomId": rid, "userId": "alice", "isTyping": true }));
    // No stop from the client: the server sends one after the timeout.
    let start = std::time::Instant::now();
    assert_eq!(bob.next_event("userTyping").await["isTyping"], false);
    assert!(start.elapsed() >= Duration::from_millis(200));
    // The typist's own sockets hear nothing.
    assert!(alice2.drain_events("userTyping", Duration::from_millis(50)).await.is_empty());

    for (payload, message) in [
        (json!({ "roomId": rid }), "missing field `isTyping`"),
        (json!({ "roomId": rid, "isTyping": "yes" }), "isTyping: invalid type: string \"yes\", expected a boolean"),
    ] {
        assert_eq!(Client::error_of(&alice.call("typing", payload).await, "invalid_payload"), message);
    }
    Client::error_of(&alice.call("typing", json!({ "roomId": "nope", "isTyping": true })).await, "not_found");
    Client::error_of(&eve.call("typing", json!({ "roomId": rid, "isTyping": true })).await, "forbidden");
}

#[tokio::test]
async fn get_rooms() {
    let server = Server::start(LIMITS).await;
    let mut alice = server.chat("alice").await;
    let empty = Client::data_of(&alice.call("getRooms", json!({})).await);
    assert_eq!(empty, json!({ "rooms": [] }));
    room_of(&mut alice, &["bob"]).await;
    room_of(&mut alice, &["carol"]).await;
    let rooms = Client::data_of(&alice.call("getRooms", json!({})).await);
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 2);
    assert_eq!(rooms["rooms"][0]["unreadCount"], 0);
    assert_eq!(
        Client::error_of(&alice.call("getRooms", json!([])).await, "invalid_payload"),
        "payload must be a JSON object"
    );
    assert_eq!(
        Client::error_of(&alice.call_raw(r#"["getRooms"]"#).await, "invalid_payload"),
        "payload must be a JSON object"
    );
}

#[tokio::test]
async fn rate_limit_warns_then_blocks_across_sockets() {
    let server = Server::start(&[
        "--rate-limit-message",
        "3/60s",
        "--rate-limit-warnings",
        "2",
        "--rate-limit-block-seconds",
        "60",
    ])
    .await;
    let mut a1 = server.chat("alice").await;
    let mut a2 = server.chat("alice").await;
    let room = room_of(&mut a1, &["bob"]).await;
    let rid = room["id"].as_str().unwrap();
    let send = json!({ "roomId": rid, "content": "spam" });
    // The budget is per user: three messages over two sockets use it up.
    Client::data_of(&a1.call("sendMessage", send.clone()).await);
    Client::data_of(&a2.call("sendMessage", send.clone()).await);
    Client::data_of(&a1.call("sendMessage", send.clone()).await);

    assert_eq!(
        Client::error_of(&a2.call("sendMessage", send.clone()).await, "rate_limited"),
        "rate limit exceeded; slow down"
    );
    let warning = a2.next_event("rateLimitWarning").await;
    assert_eq!(warning["event"], "sendMessage");
    assert_eq!(warning["remaining"], 1);
    assert!(warning["retryAfterMs"].as_u64().unwrap() > 0);
    Client::error_of(&a1.call("sendMessage", send.clone()).await, "rate_limited");
    assert_eq!(a1.next_event("rateLimitWarning").await["remaining"], 0);

    let ack = a1.call("sendMessage", send.clone()).await;
    assert_eq!(Client::error_of(&ack, "rate_limited"), "blocked for exceeding the rate limit");
    let blocked = a1.next_event("rateLimitBlocked").await;
    assert_eq!(blocked["event"], "sendMessage");
    assert!(blocked["untilMs"].as_u64().unwrap() > switchyard_server::protocol::epoch_ms() + 50_000);
    assert!(blocked["reason"].is_string());
    // While blocked, every event is refused, whatever its class, on every socket.
    Client::error_of(&a2.call("getRooms", json!({})).await, "rate_limited");
    Client::error_of(&a2.call("typing", json!({ "roomId": rid, "isTyping": true })).await, "rate_limited");
    // Other users are unaffected.
    let mut bob = server.chat("bob").await;
    Client::data_of(&bob.call("sendMessage", send).await);
}
