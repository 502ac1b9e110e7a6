//! The Redis queue (apalis-redis) with a real `redis-server` and the server binary: jobs
//! queued and in flight survive a killed server and reach the browser channel exactly once;
//! SIGTERM hands jobs back; dead letters survive restarts; a Redis outage is a clean 503.

mod notifications_support;
mod support;

use std::collections::HashSet;
use std::time::Duration;

use notifications_support::{
    KEY, Process, Receiver, RedisServer, WEBHOOK_SECRET, eventually, free_port, post_event, request, webhook_rules,
};
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Client, token};

const EVENTS: usize = 60;

fn env(redis: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", redis.url()),
        // Slow enough that a batch is always fetched (in flight) and the rest queued.
        ("QUEUE_RATE_LIMIT_BROWSER", "10/1s".into()),
        ("QUEUE_CONCURRENCY", "4".into()),
        ("QUEUE_HEARTBEAT_MS", "1000".into()),
        ("QUEUE_POLL_INTERVAL_MS", "50".into()),
    ]
}

/// Jobs fetched by a worker (in flight) and jobs waiting, on the browser queue.
async fn queue_state(redis: &RedisServer) -> (usize, usize) {
    let mut conn = redis.conn().await;
    let sets: Vec<String> = conn.keys("sy:{core:apalis:queues:list}:notify:browser:inflight:*").await.unwrap();
    let mut inflight = 0;
    for set in sets {
        inflight += conn.scard::<_, usize>(set).await.unwrap();
    }
    let waiting: usize = conn.llen("sy:{core:apalis:queues:list}:notify:browser:active").await.unwrap();
    (inflight, waiting)
}

/// Posts the events all at once. One after another they took seconds on a loaded machine,
/// long enough for the worker (10 a second) to deliver them all before a test stopped it,
/// leaving nothing to hand back: `sigterm_hands_the_jobs_back_to_the_queue` failed that way.
async fn post_events(url: &str, user: &str) {
    let posts = (0..EVENTS).map(|i| async move {
        let event = json!({ "type": "user.registered", "userId": user, "eventId": format!("{user}-{i}") });
        post_event(url, &event).await
    });
    for (status, body) in futures::future::join_all(posts).await {
        assert_eq!(status, 202, "{body}");
    }
}

/// Every notification of `user`, once it has all of them.
async fn all_notifications(url: &str, user: &str) -> Value {
    eventually(Duration::from_secs(30), "every notification", async || {
        let (status, body) =
            request(Method::GET, &format!("{url}/api/notifications?limit=100"), Some(&token(user)), None).await;
        (status == 200 && body["notifications"].as_array().is_some_and(|n| n.len() >= EVENTS)).then_some(body)
    })
    .await
}

fn ids_of(events: &[Value]) -> Vec<String> {
    events.iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
}

async fn delivered_exactly_once(url: &str, user: &str, seen_live: &[String]) {
    let body = all_notifications(url, user).await;
    let stored = ids_of(body["notifications"].as_array().unwrap());
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!((stored.len(), unique.len()), (EVENTS, EVENTS), "each job stored once");
    assert_eq!(body["unreadCount"], EVENTS, "and counted once");
    let live: HashSet<&String> = seen_live.iter().collect();
    assert_eq!(live.len(), seen_live.len(), "no newNotification twice: {seen_live:?}");
    assert!(live.is_subset(&unique));
}

#[tokio::test]
async fn jobs_survive_a_killed_server_and_reach_the_browser_exactly_once() {
    let redis = RedisServer::start().await;
    let port = free_port();
    let first = Process::start(port, &env(&redis)).await;
    let mut socket =
        Client::connect(([127, 0, 0, 1], port).into(), "/notifications", Some(&token("kim"))).await.unwrap();
    post_events(&first.url, "kim").await;
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 10 {
        seen.push(socket.next_event("newNotification").await["id"].as_str().unwrap().to_owned());
    }
    // Kill while some jobs are fetched by the worker (in flight) and others still queued.
    eventually(Duration::from_secs(5), "jobs in flight and queued", async || {
        let (inflight, waiting) = queue_state(&redis).await;
        (inflight > 0 && waiting > 0).then_some(())
    })
    .await;
    let status = first.signal("KILL").await;
    assert!(!status.success());
    seen.extend(ids_of(&socket.drain_events("newNotification", Duration::from_millis(200)).await));
    let (inflight, _) = queue_state(&redis).await;
    assert!(inflight > 0, "a killed worker hands nothing back");

    let second = Process::start(port, &env(&redis)).await;
    let mut socket =
        Client::connect(([127, 0, 0, 1], port).into(), "/notifications", Some(&token("kim"))).await.unwrap();
    delivered_exactly_once(&second.url, "kim", &seen).await;
    seen.extend(ids_of(&socket.drain_events("newNotification", Duration::from_millis(500)).await));
    delivered_exactly_once(&second.url, "kim", &seen).await;
    assert_eq!(queue_state(&redis).await, (0, 0));
}

#[tokio::test]
async fn sigterm_hands_the_jobs_back_to_the_queue() {
    let redis = RedisServer::start().await;
    let port = free_port();
    let first = Process::start(port, &env(&redis)).await;
    let mut socket =
        Client::connect(([127, 0, 0, 1], port).into(), "/notifications", Some(&token("lou"))).await.unwrap();
    post_events(&first.url, "lou").await;
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 10 {
        seen.push(socket.next_event("newNotification").await["id"].as_str().unwrap().to_owned());
    }
    let status = first.signal("TERM").await;
    assert!(status.success(), "{status}");
    let (inflight, waiting) = queue_state(&redis).await;
    assert_eq!(inflight, 0, "a drained worker leaves nothing in flight");
    assert!(waiting > 0, "the rest is back in the queue");

    let second = Process::start(port, &env(&redis)).await;
    delivered_exactly_once(&second.url, "lou", &seen).await;
}

#[tokio::test]
async fn dead_letters_survive_a_restart_and_can_be_redriven() {
    let redis = RedisServer::start().await;
    let receiver = Receiver::start(|n| if n == 0 { 400 } else { 200 }).await;
    let rules = webhook_rules(&receiver.url);
    let mut vars = env(&redis);
    vars.push(("RULES_FILE", rules.display().to_string()));
    vars.push(("WEBHOOK_SECRET", WEBHOOK_SECRET.into()));
    let port = free_port();
    let first = Process::start(port, &vars).await;
    let event = json!({ "type": "order.shipped", "userId": "mo", "data": { "order": "E-1" } });
    let (_, accepted) = post_event(&first.url, &event).await;
    let job = accepted["jobs"][0]["id"].as_str().unwrap().to_owned();
    let dead_url = format!("{}/api/admin/dead-letters", first.url);
    eventually(Duration::from_secs(10), "the dead letter", async || {
        let (_, body) = request(Method::GET, &dead_url, Some(KEY), None).await;
        (body["deadLetters"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    assert!(first.signal("TERM").await.success());

    let second = Process::start(port, &vars).await;
    let (status, body) = request(Method::GET, &dead_url, Some(KEY), None).await;
    assert_eq!(status, 200);
    let dead = &body["deadLetters"][0];
    assert_eq!((&dead["id"], &dead["permanent"], &dead["attempts"]), (&json!(job), &json!(true), &json!(1)));
    let (status, _) =
        request(Method::POST, &format!("{}/api/admin/dead-letters/{job}/retry", second.url), Some(KEY), None).await;
    assert_eq!(status, 202);
    let hits = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert!(hits[1].signed_with(WEBHOOK_SECRET));
    assert_eq!(hits[1].json()["jobId"], job.as_str());
    eventually(Duration::from_secs(5), "an empty dead-letter list", async || {
        let (_, body) = request(Method::GET, &dead_url, Some(KEY), None).await;
        (body["deadLetters"] == json!([])).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_redis_outage_refuses_events_with_503_and_the_queue_recovers() {
    let mut redis = RedisServer::start().await;
    let port = free_port();
    let server = Process::start(port, &env(&redis)).await;
    redis.stop().await;
    let event = json!({ "type": "user.registered", "userId": "nia", "eventId": "outage-1" });
    let (status, body) = post_event(&server.url, &event).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");

    redis.restart().await;
    // The client retries the same event once Redis is back; the worker recovered on its own.
    eventually(Duration::from_secs(15), "the event to be accepted", async || {
        let (status, _) = post_event(&server.url, &event).await;
        (status == 202).then_some(())
    })
    .await;
    eventually(Duration::from_secs(15), "the notification", async || {
        let (_, body) =
            request(Method::GET, &format!("{}/api/notifications", server.url), Some(&token("nia")), None).await;
        (body["notifications"][0]["id"] == "outage-1.welcome").then_some(())
    })
    .await;
}

#[tokio::test]
async fn with_redis_gone_sigterm_does_not_wait_to_hand_jobs_back() {
    let mut redis = RedisServer::start().await;
    let mut vars = env(&redis);
    vars.push(("SHUTDOWN_GRACE_SECONDS", "20".into()));
    let server = Process::start(free_port(), &vars).await;
    redis.stop().await;
    let started = std::time::Instant::now();
    server.send("TERM");
    eventually(Duration::from_secs(6), "the workers to stop", async || {
        server.logged("notification workers stopped").then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // A worker that was polling when the TERM came gave up handing its jobs back; one that
    // had already met the outage (more likely on a loaded machine) ended its run with the
    // error and was waiting to restart, its jobs left to the next heartbeat. Either way, no
    // worker waited for Redis.
    assert!(
        server.logged("could not hand jobs back to Redis; they run again later")
            || server.logged("queue worker failed; restarting"),
        "neither a hand-back given up nor a worker ended by the outage was logged:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn a_local_event_does_not_wait_for_the_poll_interval() {
    let redis = RedisServer::start().await;
    let mut vars = env(&redis);
    vars.push(("QUEUE_POLL_INTERVAL_MS", "60000".into()));
    let port = free_port();
    let server = Process::start(port, &vars).await;
    let mut socket =
        Client::connect(([127, 0, 0, 1], port).into(), "/notifications", Some(&token("ola"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let (status, _) = post_event(&server.url, &json!({ "type": "user.registered", "userId": "ola" })).await;
    assert_eq!(status, 202);
    socket.next_event("newNotification").await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?} with a 60 s poll interval", started.elapsed());
}
