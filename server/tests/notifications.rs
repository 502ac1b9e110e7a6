//! The `/notifications` namespace, its HTTP fallback, presence, and `POST /api/events` with
//! every kind of bad input: each gets its exact error and queues nothing.

mod notifications_support;
mod support;

use std::time::Duration;

use notifications_support::{KEY, post_event, request};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Client, Server, token};

async fn notifications(server: &Server, user: &str) -> Client {
    Client::connect(server.addr, "/notifications", Some(&token(user))).await.expect("connects")
}

async fn start(extra: &[&str]) -> Server {
    let mut args = vec!["--service-api-keys", KEY];
    args.extend_from_slice(extra);
    Server::start(&args).await
}

#[tokio::test]
async fn an_event_reaches_every_socket_of_the_user_and_reads_bring_the_count_down() {
    let server = start(&[]).await;
    let base = server.url("");
    let mut first = notifications(&server, "ann").await;
    let mut second = notifications(&server, "ann").await;
    let mut other = notifications(&server, "bob").await;
    for socket in [&mut first, &mut second, &mut other] {
        assert_eq!(socket.next_event("unreadCount").await, json!({ "count": 0 }));
    }
    // Sent straight to each socket on connect, and counted like every other emit.
    let sent = server.metric("socket_messages_total", r#"event="unreadCount",direction="outbound""#).await;
    assert_eq!(sent, Some(3.0));

    let (status, body) =
        post_event(&base, &json!({ "type": "user.registered", "userId": "ann", "data": { "name": "Ann" } })).await;
    assert_eq!(status, 202, "{body}");
    let event_id = body["eventId"].as_str().unwrap().to_owned();
    assert!(event_id.starts_with("evt_"), "{body}");
    let job_id = format!("{event_id}.welcome.browser");
    assert_eq!(body["jobs"], json!([{ "id": job_id, "rule": "welcome", "channel": "browser" }]));

    for socket in [&mut first, &mut second] {
        let n = socket.next_event("newNotification").await;
        assert_eq!(n["id"], json!(format!("{event_id}.welcome")));
        assert_eq!(n["type"], "welcome");
        assert_eq!(n["title"], "Welcome to Switchyard, Ann!");
        assert_eq!(n["body"], "Your account ann is ready. Say hello in a chat room.");
        assert_eq!(n["data"], json!({ "name": "Ann" }));
        assert_eq!(n["read"], false);
        assert_eq!(socket.next_event("unreadCount").await, json!({ "count": 1 }));
    }
    assert!(other.drain_events("newNotification", Duration::from_millis(300)).await.is_empty());

    // The polling fallback returns the same list the socket event returns.
    let page = Client::data_of(&first.call("getNotifications", json!({})).await);
    assert_eq!(page["unreadCount"], 1);
    let (status, polled) = request(Method::GET, &format!("{base}/api/notifications"), Some(&token("ann")), None).await;
    assert_eq!(status, 200);
    assert_eq!(polled, page);

    let id = page["notifications"][0]["id"].clone();
    let ack = first.call("markNotificationsRead", json!({ "ids": [id] })).await;
    assert_eq!(Client::data_of(&ack), json!({ "unreadCount": 0 }));
    for socket in [&mut first, &mut second] {
        assert_eq!(socket.next_event("unreadCount").await, json!({ "count": 0 }));
    }
    let (_, polled) =
        request(Method::GET, &format!("{base}/api/notifications?unreadOnly=true"), Some(&token("ann")), None).await;
    assert_eq!(polled, json!({ "notifications": [], "unreadCount": 0 }));
    let (_, polled) = request(Method::GET, &format!("{base}/api/notifications"), Some(&token("ann")), None).await;
    assert_eq!(polled["notifications"][0]["read"], true);

    // Resubmitting the same eventId queues nothing new.
    let again = json!({ "type": "user.registered", "userId": "ann", "data": { "name": "Ann" }, "eventId": event_id });
    let (status, body) = post_event(&base, &again).await;
    assert_eq!((status, body["eventId"].as_str()), (202, Some(event_id.as_str())));
    assert!(first.drain_events("newNotification", Duration::from_millis(300)).await.is_empty());
}

#[tokio::test]
async fn reading_pages_and_marking_all() {
    let server = start(&[]).await;
    let base = server.url("");
    let mut socket = notifications(&server, "cid").await;
    for i in 0..3 {
        let event = json!({ "type": "user.registered", "userId": "cid", "eventId": format!("e{i}") });
        assert_eq!(post_event(&base, &event).await.0, 202);
        socket.next_event("newNotification").await;
    }
    let page = Client::data_of(&socket.call("getNotifications", json!({ "limit": 2 })).await);
    let ids: Vec<&str> = page["notifications"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["e2.welcome", "e1.welcome"], "newest first");
    let older = Client::data_of(&socket.call("getNotifications", json!({ "before": "e1.welcome" })).await);
    assert_eq!(older["notifications"][0]["id"], "e0.welcome");
    assert_eq!(older["notifications"].as_array().unwrap().len(), 1);

    let (status, body) =
        request(Method::PATCH, &format!("{base}/api/notifications/read"), Some(&token("cid")), Some(r#"{"all":true}"#))
            .await;
    assert_eq!((status, body), (200, json!({ "unreadCount": 0 })));
    let counts: Vec<Value> = socket.drain_events("unreadCount", Duration::from_millis(300)).await;
    assert_eq!(counts.last(), Some(&json!({ "count": 0 })));
}

#[tokio::test]
async fn malformed_notification_requests_get_invalid_payload() {
    let server = start(&[]).await;
    let mut socket = notifications(&server, "dee").await;
    let cases = [
        ("getNotifications", json!({ "limit": 0 }), "limit: must be 1 to 100"),
        ("getNotifications", json!({ "limit": "ten" }), "limit: invalid type: string \"ten\", expected i64"),
        ("getNotifications", json!({ "before": "" }), "before: must be 1 to 128 bytes without control characters"),
        ("markNotificationsRead", json!({}), "give ids: [..] or all: true"),
        ("markNotificationsRead", json!({ "all": false }), "give ids: [..] or all: true"),
        ("markNotificationsRead", json!({ "ids": [] }), "ids: must hold 1 to 100 ids"),
        ("markNotificationsRead", json!({ "ids": ["a"], "all": true }), "give either ids or all: true, not both"),
        ("markNotificationsRead", json!({ "ids": [5] }), "ids[0]: invalid type: integer `5`, expected a string"),
        ("subscribePresence", json!({}), "missing field `userIds`"),
        ("subscribePresence", json!({ "userIds": [] }), "userIds: must hold 1 to 100 ids"),
        ("unsubscribePresence", json!({ "userIds": "x" }), "userIds: invalid type: string \"x\", expected a sequence"),
    ];
    for (event, payload, message) in cases {
        let ack = socket.call(event, payload.clone()).await;
        assert_eq!(Client::error_of(&ack, "invalid_payload"), message, "{event} {payload}");
    }
    let ack = socket.call_raw(r#"["getNotifications", "not an object"]"#).await;
    assert_eq!(Client::error_of(&ack, "invalid_payload"), "payload must be a JSON object");
    let (status, body) =
        request(Method::GET, &format!("{}/api/notifications?limit=500", server.url("")), Some(&token("dee")), None)
            .await;
    assert_eq!((status, &body["error"]["message"]), (400, &json!("limit: must be 1 to 100")));
}

/// Every bad event: the exact status and message, and nothing queued (no notification, no
/// job, no dead letter).
#[tokio::test]
async fn bad_events_get_their_exact_error_and_queue_nothing() {
    let server = start(&["--max-event-data-bytes", "100"]).await;
    let base = server.url("");
    let mut socket = notifications(&server, "eve").await;
    let events = format!("{base}/api/events");
    let cases: Vec<(Option<String>, String, u16, &str, String)> = vec![
        (
            Some(KEY.into()),
            json!({ "type": "user.deleted", "userId": "eve" }).to_string(),
            400,
            "invalid_payload",
            "type: no rule for event type \"user.deleted\"".into(),
        ),
        (
            Some(KEY.into()),
            json!({ "type": "user.registered" }).to_string(),
            400,
            "invalid_payload",
            "missing field `userId`".into(),
        ),
        (
            Some(KEY.into()),
            json!({ "type": "user.registered", "userId": "" }).to_string(),
            400,
            "invalid_payload",
            "userId: must be 1 to 128 bytes without control characters".into(),
        ),
        (
            Some(KEY.into()),
            json!({ "type": "user registered", "userId": "eve" }).to_string(),
            400,
            "invalid_payload",
            "type: must be 1 to 64 of A-Z a-z 0-9 _ . : - starting with a letter or digit".into(),
        ),
        (
            Some(KEY.into()),
            json!({ "type": "user.registered", "userId": "eve", "data": { "name": "x".repeat(200) } }).to_string(),
            413,
            "payload_too_large",
            "data: larger than 100 bytes".into(),
        ),
        (
            Some(KEY.into()),
            json!({ "type": "user.registered", "userId": "eve", "data": [1] }).to_string(),
            400,
            "invalid_payload",
            "data: must be an object".into(),
        ),
        (
            Some(KEY.into()),
            json!({ "type": "user.registered", "userId": "eve", "data": { "name": ["x"] } }).to_string(),
            400,
            "invalid_payload",
            "data.name: must be a string, number or boolean by rule \"welcome\" (title)".into(),
        ),
        (
            Some(KEY.into()),
            json!({ "type": "user.registered", "userId": "eve", "userID": "eve" }).to_string(),
            400,
            "invalid_payload",
            "userID: unknown field `userID`, expected one of `type`, `userId`, `data`, `eventId`".into(),
        ),
        (
            Some(KEY.into()),
            "{not json".into(),
            400,
            "invalid_payload",
            "body is not JSON: key must be a string at line 1 column 2".into(),
        ),
        (
            None,
            json!({ "type": "user.registered", "userId": "eve" }).to_string(),
            401,
            "unauthorized",
            "missing bearer token".into(),
        ),
        (
            Some("wrong-key-0123456789".into()),
            json!({ "type": "user.registered", "userId": "eve" }).to_string(),
            401,
            "unauthorized",
            "invalid service key".into(),
        ),
        (
            Some(token("eve")),
            json!({ "type": "user.registered", "userId": "eve" }).to_string(),
            403,
            "forbidden",
            "user tokens cannot call service routes; use a service key".into(),
        ),
    ];
    for (credential, body, status, code, message) in cases {
        let (got, reply) = request(Method::POST, &events, credential.as_deref(), Some(&body)).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert_eq!(reply, json!({ "error": { "code": code, "message": message } }), "{body}");
    }
    assert!(socket.drain_events("newNotification", Duration::from_millis(500)).await.is_empty());
    let (_, list) = request(Method::GET, &format!("{base}/api/notifications"), Some(&token("eve")), None).await;
    assert_eq!(list, json!({ "notifications": [], "unreadCount": 0 }));
    let (status, dead) = request(Method::GET, &format!("{base}/api/admin/dead-letters"), Some(KEY), None).await;
    assert_eq!((status, dead), (200, json!({ "deadLetters": [] })));

    // A user token is refused on the admin routes too; an unknown dead letter is 404.
    let (status, _) = request(Method::GET, &format!("{base}/api/admin/dead-letters"), Some(&token("eve")), None).await;
    assert_eq!(status, 403);
    let (status, body) =
        request(Method::POST, &format!("{base}/api/admin/dead-letters/nope/retry"), Some(KEY), None).await;
    assert_eq!((status, &body["error"]["message"]), (404, &json!("no dead letter with this id")));
}

#[tokio::test]
async fn without_service_keys_the_service_routes_are_closed() {
    let server = Server::start(&[]).await;
    let (status, body) = post_event(&server.url(""), &json!({ "type": "user.registered", "userId": "x" })).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["message"], "service routes are closed: SERVICE_API_KEYS is not set");
}

#[tokio::test]
async fn presence_follows_the_last_socket_of_a_user() {
    let server = start(&[]).await;
    let mut watcher = notifications(&server, "watcher").await;
    let ack = watcher.call("subscribePresence", json!({ "userIds": ["fay", "gus", "fay"] })).await;
    assert_eq!(
        Client::data_of(&ack),
        json!({ "users": [{ "userId": "fay", "online": false }, { "userId": "gus", "online": false }] })
    );

    let chat = server.chat("fay").await;
    assert_eq!(watcher.next_event("presence").await, json!({ "userId": "fay", "online": true }));
    let second = notifications(&server, "fay").await;
    drop(chat);
    let ack = watcher.call("subscribePresence", json!({ "userIds": ["fay"] })).await;
    assert_eq!(Client::data_of(&ack), json!({ "users": [{ "userId": "fay", "online": true }] }));
    assert!(
        watcher.drain_events("presence", Duration::from_millis(300)).await.is_empty(),
        "one of two sockets leaving changes nothing"
    );

    drop(second);
    let offline = watcher.next_event("presence").await;
    assert_eq!(offline["userId"], "fay");
    assert_eq!(offline["online"], false);
    let last_seen = offline["lastSeen"].as_str().expect("lastSeen when going offline");
    assert!(last_seen.ends_with('Z') && last_seen.len() >= 20, "{last_seen}");
    let ack = watcher.call("subscribePresence", json!({ "userIds": ["fay"] })).await;
    assert_eq!(Client::data_of(&ack)["users"][0], offline);

    let ack = watcher.call("unsubscribePresence", json!({ "userIds": ["fay"] })).await;
    assert_eq!(Client::data_of(&ack), json!({}));
    let again = server.chat("fay").await;
    assert!(watcher.drain_events("presence", Duration::from_millis(300)).await.is_empty(), "unsubscribed");
    drop(again);
}

#[tokio::test]
async fn a_malformed_rules_file_stops_start_up_naming_the_rule_and_field() {
    let dir = std::env::temp_dir().join(format!("switchyard-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "rules:\n  - name: greet\n    event: a.b\n    title: Hi\n    body: There\n    channels: [browser, fax]\n",
            "rule \"greet\": field `channels[1]`: unknown variant `fax`, expected one of `browser`, `webhook`, `email`, `sms`",
        ),
        (
            "rules:\n  - name: text\n    event: a.b\n    title: T\n    body: B\n    channels: [sms]\n",
            "rule \"text\": field `channels`: the sms channel needs SMPP_ADDRESS",
        ),
        (
            "rules:\n  - name: greet\n    event: a.b\n    title: \"Hi {{data.name\"\n    body: B\n    channels: [browser]\n",
            "rule \"greet\": field `title`: unclosed placeholder at \"{{data.name\"",
        ),
        (
            "rules:\n  - name: greet\n    event: a.b\n    body: B\n    channels: [browser]\n",
            "rule \"greet\": missing field `title`",
        ),
        (
            "rules:\n  - name: mail\n    event: a.b\n    title: T\n    body: B\n    channels: [email]\n",
            "rule \"mail\": field `channels`: the email channel needs SMTP_HOST",
        ),
        ("rules: [", "did not find expected node content"),
    ];
    for (i, (yaml, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("rules-{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let out = std::process::Command::new(notifications_support::binary())
            .env_clear()
            .env("RULES_FILE", &path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        let line = stderr.trim();
        assert_eq!(line.lines().count(), 1, "{stderr}");
        let prefix = format!("error: invalid value for RULES_FILE: {}: ", path.display());
        assert!(line.starts_with(&prefix) && line.contains(expected), "{line}\nexpected: {expected}");
    }
    let missing = dir.join("absent.yaml");
    let out = std::process::Command::new(notifications_support::binary())
        .env_clear()
        .env("RULES_FILE", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(&format!(
            "error: invalid value for RULES_FILE: cannot read {}: No such file",
            missing.display()
        ))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
