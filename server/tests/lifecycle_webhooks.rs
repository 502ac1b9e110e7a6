//! Lifecycle webhooks: `user.online` / `user.offline` rules on the webhook channel, on two
//! server instances sharing a real `redis-server`, against a real HTTP receiver. A user with
//! sockets on both nodes gives one `user.online` and, when the last socket leaves, one
//! `user.offline`, each signed; also when the node holding the last socket is killed with
//! SIGKILL (the survivor's presence sweep finds it dead). The optional per-socket events,
//! `socket.connected` and `socket.disconnected`, arrive once per socket when rules ask.

mod notifications_support;
mod support;

use std::time::Duration;

use notifications_support::{KEY, Process, Receiver, RedisServer, WEBHOOK_SECRET, free_port, rules_file};
use serde_json::Value;
use support::{Client, Server, token};

const RULES: &str = "rules:
  - name: came-online
    event: user.online
    title: \"{{userId}} is online\"
    body: \"presence\"
    channels: [webhook]
    webhook:
      url: URL
  - name: went-offline
    event: user.offline
    title: \"{{userId}} is offline\"
    body: \"presence\"
    channels: [webhook]
    webhook:
      url: URL
";

/// (eventType, userId) of each hit, sorted.
fn transitions(hits: &[notifications_support::Hit]) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = hits
        .iter()
        .map(|h| {
            let body: Value = h.json();
            (body["eventType"].as_str().unwrap().to_owned(), body["userId"].as_str().unwrap().to_owned())
        })
        .collect();
    seen.sort();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_and_offline_arrive_once_per_transition_across_nodes() {
    let receiver = Receiver::start(|_| 200).await;
    let rules = rules_file(&RULES.replace("URL", &receiver.url));
    let redis = RedisServer::start().await;
    let args = [
        "--redis-url",
        &redis.url(),
        "--service-api-keys",
        KEY,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--rules-file",
        rules.to_str().unwrap(),
    ];
    let (a, b) = (Server::start(&args).await, Server::start(&args).await);

    // alice: two sockets on a, one on b; one transition to online.
    let alice_a1 = a.chat("alice").await;
    let alice_a2 = Client::connect(a.addr, "/notifications", Some(&token("alice"))).await.unwrap();
    let alice_b = b.chat("alice").await;
    let hits = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(transitions(&hits), [("user.online".into(), "alice".into())]);
    let online = hits[0].json();
    assert_eq!(online["rule"], "came-online");
    assert_eq!(online["notification"]["title"], "alice is online");
    assert!(hits[0].signed_with(WEBHOOK_SECRET), "{online}");

    // Her sockets leave one by one, the last on the other node: one transition to offline.
    drop(alice_a1);
    drop(alice_a2);
    drop(alice_b);
    let hits = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert!(hits.iter().all(|h| h.signed_with(WEBHOOK_SECRET)));
    let offline = hits.iter().map(|h| h.json()).find(|h| h["eventType"] == "user.offline").expect("offline hit");
    assert_eq!(offline["userId"], "alice");
    assert_eq!(offline["notification"]["title"], "alice is offline");

    // A later transition of someone else arrives; alice's stay one each (no per-socket hits,
    // nothing from the second node).
    let _bob = b.chat("bob").await;
    let hits = receiver.wait_for(3, Duration::from_secs(20)).await;
    let expected: Vec<(String, String)> = vec![
        ("user.offline".into(), "alice".into()),
        ("user.online".into(), "alice".into()),
        ("user.online".into(), "bob".into()),
    ];
    assert_eq!(transitions(&hits), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_arrives_once_when_the_users_node_is_killed() {
    let receiver = Receiver::start(|_| 200).await;
    let rules = rules_file(&RULES.replace("URL", &receiver.url));
    let redis = RedisServer::start().await;
    let survivor = Server::start(&[
        "--redis-url",
        &redis.url(),
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--rules-file",
        rules.to_str().unwrap(),
    ])
    .await;
    let env = [
        ("REDIS_URL", redis.url()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("RULES_FILE", rules.to_str().unwrap().to_owned()),
    ];
    let doomed = Process::start(free_port(), &env).await;
    let addr = format!("127.0.0.1:{}", doomed.port).parse().unwrap();
    let _carol = Client::connect(addr, "/chat", Some(&token("carol"))).await.unwrap();
    let hits = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(transitions(&hits), [("user.online".into(), "carol".into())]);

    assert!(!doomed.signal("KILL").await.success());
    // Within the heartbeat TTL plus a sweep (20 s), with room for a loaded machine.
    let hits = receiver.wait_for(2, Duration::from_secs(60)).await;
    assert!(hits.iter().all(|h| h.signed_with(WEBHOOK_SECRET)));
    // A later transition, then the count: carol's offline came once.
    let _dave = survivor.chat("dave").await;
    let hits = receiver.wait_for(3, Duration::from_secs(20)).await;
    let expected: Vec<(String, String)> = vec![
        ("user.offline".into(), "carol".into()),
        ("user.online".into(), "carol".into()),
        ("user.online".into(), "dave".into()),
    ];
    assert_eq!(transitions(&hits), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_socket_connect_and_disconnect_arrive_when_rules_ask_for_them() {
    let receiver = Receiver::start(|_| 200).await;
    let rules = rules_file(&format!(
        "rules:
  - name: socket-in
    event: socket.connected
    title: \"{{{{data.namespace}}}} {{{{data.socketId}}}}\"
    body: \"in\"
    channels: [webhook]
    webhook:
      url: {url}
  - name: socket-out
    event: socket.disconnected
    title: \"{{{{data.namespace}}}} {{{{data.socketId}}}}\"
    body: \"{{{{data.reason}}}}\"
    channels: [webhook]
    webhook:
      url: {url}
",
        url = receiver.url
    ));
    let server = Server::start(&["--webhook-secret", WEBHOOK_SECRET, "--rules-file", rules.to_str().unwrap()]).await;
    let chat = server.chat("erin").await;
    let notifications = Client::connect(server.addr, "/notifications", Some(&token("erin"))).await.unwrap();
    let hits = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(
        transitions(&hits),
        [("socket.connected".into(), "erin".into()), ("socket.connected".into(), "erin".into())]
    );
    assert!(hits.iter().all(|h| h.signed_with(WEBHOOK_SECRET)));
    let mut titles: Vec<String> =
        hits.iter().map(|h| h.json()["notification"]["title"].as_str().unwrap().to_owned()).collect();
    titles.sort();
    assert!(titles[0].starts_with("/chat ") && titles[1].starts_with("/notifications "), "{titles:?}");

    drop(chat);
    let hits = receiver.wait_for(3, Duration::from_secs(20)).await;
    let out =
        hits.iter().map(|h| h.json()).find(|h| h["eventType"] == "socket.disconnected").expect("a disconnect hit");
    assert_eq!(out["userId"], "erin");
    assert_eq!(out["notification"]["title"], titles[0].as_str(), "the /chat socket's end");
    assert_eq!(out["notification"]["body"], "transport_close");
    drop(notifications);
    receiver.wait_for(4, Duration::from_secs(20)).await;
}
