//! A client that stops reading: its send buffer fills, emits skip it and say so in
//! `switchyard_deliveries_skipped_total`, and nobody else loses a message.

mod support;

use serde_json::{Value, json};
use support::{Client, Server};

/// `switchyard_deliveries_skipped_total` for full queues in `/chat`.
async fn skipped(server: &Server) -> f64 {
    let labels = r#"namespace="/chat",reason="queue_full""#;
    server.metric("switchyard_deliveries_skipped_total", labels).await.expect("the series exists from start-up")
}

#[tokio::test]
async fn a_stalled_reader_is_skipped_and_counted_while_the_others_get_everything() {
    let server = Server::start(&["--rate-limit-message", "1000000/1s", "--max-payload-bytes", "16384"]).await;
    let mut alice = server.chat("alice").await;
    let mut bob = server.chat("bob").await;
    // Carol connects and then never reads: the kernel buffers fill, then her send buffer.
    let carol = server.chat("carol").await;
    let room = Client::data_of(&alice.call("getOrCreateRoom", json!({ "participantIds": ["bob", "carol"] })).await)
        ["room"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(skipped(&server).await, 0.0);

    // Bob reads everything, concurrently with the sends.
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = tokio::spawn(async move {
        let mut received = 0;
        while let Some(id) = sent_rx.recv().await {
            assert_eq!(bob.next_event("newMessage").await["id"], id, "bob gets every message, in order");
            received += 1;
        }
        received
    });
    // 3 KB messages until carol has been skipped (a few MB of kernel buffers come first).
    let content = "c".repeat(3000);
    let mut sent = 0;
    while sent < 20_000 {
        for _ in 0..200 {
            let ack = alice.call("sendMessage", json!({ "roomId": room, "content": content })).await;
            sent_tx.send(Client::data_of(&ack)["message"]["id"].clone()).unwrap();
            sent += 1;
        }
        if skipped(&server).await > 0.0 {
            break;
        }
    }
    drop(sent_tx);
    let received = reader.await.unwrap();
    let queue_full = skipped(&server).await;
    assert!(queue_full > 0.0, "carol was never skipped in {sent} messages");
    assert!(queue_full < sent as f64, "only carol is skipped: {queue_full} of {sent}");
    assert_eq!(received, sent);
    drop(carol);
}
