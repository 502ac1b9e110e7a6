//! Hostile payloads at every event: wrong types, huge strings, deep nesting, binary
//! attachments, extra and missing arguments. Each gets an error ack; the socket stays up.

mod support;

use serde_json::{Value, json};
use support::{Client, Server};

const EVENTS: &[&str] = &["getOrCreateRoom", "sendMessage", "getMessages", "markMessagesRead", "typing", "getRooms"];

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_object(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

#[tokio::test]
async fn garbage_never_panics_or_disconnects() {
    let mut args = vec!["--max-payload-bytes", "4096"];
    for class in ["message", "typing", "read", "room", "query"] {
        args.extend([Box::leak(format!("--rate-limit-{class}").into_boxed_str()) as &str, "100000/1s"]);
    }
    let server = Server::start(&args).await;
    let mut c = server.chat("mallory").await;
    let room =
        Client::data_of(&c.call("getOrCreateRoom", json!({ "participantIds": ["victim"] })).await)["room"].clone();
    let rid = room["id"].as_str().unwrap().to_owned();

    let huge = "h".repeat(200_000);
    let payloads: Vec<String> = vec![
        "null".into(),
        "true".into(),
        "42".into(),
        "-1e308".into(),
        r#""a string""#.into(),
        "[]".into(),
        "[1,2,3]".into(),
        "{}".into(),
        json!({ "roomId": null, "content": null, "participantIds": null, "messageId": null, "isTyping": null }).to_string(),
        json!({ "roomId": [], "content": {}, "participantIds": {}, "messageId": [], "isTyping": [] }).to_string(),
        json!({ "roomId": rid, "content": 1, "participantIds": [null], "messageId": true, "isTyping": 1, "limit": "x" }).to_string(),
        json!({ "roomId": rid, "before": {}, "after": [], "limit": 1e300 }).to_string(),
        json!({ "roomId": rid, "limit": -5 }).to_string(),
        json!({ "roomId": "\u{0000}\u{0007}", "content": "x", "messageId": "\u{0000}", "isTyping": true }).to_string(),
        json!({ "roomId": huge, "content": huge, "participantIds": [huge], "messageId": huge }).to_string(),
        json!({ "__proto__": { "admin": true }, "constructor": 1 }).to_string(),
        nested(64),
        nested(2000),
        nested_object(2000),
        format!(r#"{{"roomId":"{rid}","content":{}}}"#, nested(500)),
    ];
    for event in EVENTS {
        for payload in &payloads {
            let ack = c.call_raw(&format!(r#"["{event}",{payload}]"#)).await;
            // getRooms takes any object it can decode; the rest must fail.
            if *event == "getRooms" && payload.starts_with('{') && ack["ok"] == json!(true) {
                continue;
            }
            assert_eq!(ack["ok"], json!(false), "{event} {}: {ack}", &payload[..payload.len().min(60)]);
            let code = ack["error"]["code"].as_str().unwrap();
            let ok_codes: &[&str] =
                if payload.len() > 4096 { &["invalid_payload", "payload_too_large"] } else { &["invalid_payload"] };
            assert!(ok_codes.contains(&code), "{event} {}: {ack}", &payload[..payload.len().min(60)]);
        }
        // Missing argument, and extra arguments after the payload.
        Client::error_of(&c.call_raw(&format!(r#"["{event}"]"#)).await, "invalid_payload");
        let extra = c.call_raw(&format!(r#"["{event}",{{}},{{"x":1}},"more"]"#)).await;
        assert_eq!(extra["ok"], json!(event == &"getRooms"), "{event}: {extra}");
        // A binary attachment instead of JSON.
        let ack = c.call_binary(event, vec![0, 159, 146, 150, 255]).await;
        Client::error_of(&ack, "invalid_payload");
    }
    // Still connected and fully working after all of that.
    let ok = c.call("sendMessage", json!({ "roomId": rid, "content": "still here" })).await;
    assert_eq!(Client::data_of(&ok)["message"]["content"], "still here");
}

#[tokio::test]
async fn unknown_events_are_ignored_without_disconnect() {
    let server = Server::start(&[]).await;
    let mut c = server.chat("u").await;
    let ack = tokio::time::timeout(std::time::Duration::from_millis(300), c.call("noSuchEvent", json!({}))).await;
    assert!(ack.is_err(), "unknown events get no ack");
    let value: Value = Client::data_of(&c.call("getRooms", json!({})).await);
    assert_eq!(value, json!({ "rooms": [] }));
}
