//! The notification queue on the in-process backend, against real receivers: a local
//! webhook receiver (retries with growing gaps and valid signatures, permanent 4xx, dead
//! letters and re-drive, rate limit, concurrency), a real SMTP server, and the drain.

mod notifications_support;
mod support;

use std::time::Duration;

use notifications_support::{
    KEY, Process, Receiver, Smtp, WEBHOOK_SECRET, free_port, post_event, request, webhook_rules,
};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Client, Server, token};

/// An in-process server with webhook rules for `receiver` and the given queue flags.
async fn server_for(receiver: &Receiver, flags: &[&str]) -> Server {
    let rules = webhook_rules(&receiver.url);
    let mut args =
        vec!["--service-api-keys", KEY, "--webhook-secret", WEBHOOK_SECRET, "--rules-file", rules.to_str().unwrap()];
    args.extend_from_slice(flags);
    Server::start(&args).await
}

async fn ship(server: &Server, order: &str) -> String {
    let event = json!({ "type": "order.shipped", "userId": "ivy", "data": { "order": order } });
    let (status, body) = post_event(&server.url(""), &event).await;
    assert_eq!(status, 202, "{body}");
    body["jobs"][0]["id"].as_str().unwrap().to_owned()
}

async fn dead_letters(server: &Server) -> Vec<Value> {
    let (status, body) = request(Method::GET, &server.url("/api/admin/dead-letters"), Some(KEY), None).await;
    assert_eq!(status, 200, "{body}");
    body["deadLetters"].as_array().unwrap().clone()
}

async fn wait_for_dead_letters(server: &Server, n: usize) -> Vec<Value> {
    notifications_support::eventually(Duration::from_secs(10), "dead letters", async || {
        let dead = dead_letters(server).await;
        (dead.len() >= n).then_some(dead)
    })
    .await
}

#[tokio::test]
async fn retries_arrive_with_growing_gaps_and_valid_signatures() {
    // Three failures, then success.
    let receiver = Receiver::start(|n| if n < 3 { 503 } else { 200 }).await;
    let server = server_for(&receiver, &["--queue-backoff-base-ms", "200", "--queue-max-attempts", "5"]).await;
    let job = ship(&server, "A-1").await;
    let hits = receiver.wait_for(4, Duration::from_secs(10)).await;

    let gaps: Vec<u128> = hits.windows(2).map(|w| (w[1].at - w[0].at).as_millis()).collect();
    // Half-jitter: retry n waits between 200·2^(n-1)/2 and 200·2^(n-1) ms.
    for (gap, (low, high)) in gaps.iter().zip([(100, 200), (200, 400), (400, 800)]) {
        assert!((low..high + 150).contains(gap), "gaps {gaps:?}");
    }
    assert!(gaps.windows(2).all(|w| w[0] <= w[1]), "gaps grow: {gaps:?}");
    for (i, hit) in hits.iter().enumerate() {
        assert!(hit.signed_with(WEBHOOK_SECRET), "attempt {} is signed", i + 1);
        assert!(!hit.signed_with("some-other-secret-0123"), "and only with the configured secret");
        assert_eq!(hit.headers["x-switchyard-job-id"], job.as_str());
        let body = hit.json();
        assert_eq!(body["attempt"], i + 1);
        assert_eq!(body["jobId"], job.as_str());
        assert_eq!(body["eventType"], "order.shipped");
        assert_eq!(body["userId"], "ivy");
        assert_eq!(body["notification"]["title"], "Order A-1 shipped");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits().len(), 4, "nothing after the success");
    assert!(dead_letters(&server).await.is_empty());
    assert_eq!(server.metric("switchyard_queue_job_retries_total", r#"channel="webhook""#).await, Some(3.0));
}

#[tokio::test]
async fn a_400_is_a_dead_letter_after_one_try() {
    let receiver = Receiver::start(|_| 400).await;
    let server = server_for(&receiver, &["--queue-backoff-base-ms", "50"]).await;
    let job = ship(&server, "B-1").await;
    let dead = wait_for_dead_letters(&server, 1).await;
    assert_eq!(dead[0]["id"], job.as_str());
    assert_eq!(dead[0]["permanent"], true);
    assert_eq!(dead[0]["attempts"], 1);
    assert_eq!(dead[0]["error"], "webhook answered 400 Bad Request");
    assert_eq!(dead[0]["job"]["channel"], "webhook");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.hits().len(), 1, "never retried");
    assert_eq!(server.metric("switchyard_queue_dead_letters_total", r#"channel="webhook""#).await, Some(1.0));
    let gauge = notifications_support::eventually(Duration::from_secs(8), "the dead-letter gauge", async || {
        server.metric("switchyard_queue_jobs", r#"state="dead""#).await.filter(|v| *v == 1.0)
    })
    .await;
    assert_eq!(gauge, 1.0);

    // 408 and 429 are not permanent: they are retried.
    let receiver = Receiver::start(|n| [408, 429, 204][n.min(2)]).await;
    let server = server_for(&receiver, &["--queue-backoff-base-ms", "20"]).await;
    ship(&server, "B-2").await;
    receiver.wait_for(3, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(dead_letters(&server).await.is_empty());
}

#[tokio::test]
async fn a_503_is_a_dead_letter_after_the_maximum_attempts_and_can_be_redriven() {
    // 503 for the first three calls (every attempt), then 200 (the re-drive).
    let receiver = Receiver::start(|n| if n < 3 { 503 } else { 200 }).await;
    let server = server_for(&receiver, &["--queue-backoff-base-ms", "40", "--queue-max-attempts", "3"]).await;
    let job = ship(&server, "C-1").await;
    let dead = wait_for_dead_letters(&server, 1).await;
    assert_eq!(receiver.hits().len(), 3);
    assert_eq!((&dead[0]["id"], &dead[0]["permanent"], &dead[0]["attempts"]), (&json!(job), &json!(false), &json!(3)));
    assert_eq!(dead[0]["error"], "webhook answered 503 Service Unavailable");

    // Re-drive: the wrong credential is refused, an unknown id is 404, the right one runs.
    let retry = server.url(&format!("/api/admin/dead-letters/{job}/retry"));
    let (status, _) = request(Method::POST, &retry, Some(&token("ivy")), None).await;
    assert_eq!(status, 403);
    let (status, body) = request(Method::POST, &retry, Some(KEY), None).await;
    assert_eq!((status, body), (202, json!({ "jobId": job, "channel": "webhook", "redrives": 1 })));
    let hits = receiver.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(hits[3].json()["attempt"], 1, "a re-driven job starts counting again");
    assert!(hits[3].signed_with(WEBHOOK_SECRET));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(dead_letters(&server).await.is_empty());
    let (status, _) = request(Method::POST, &retry, Some(KEY), None).await;
    assert_eq!(status, 404, "a dead letter is re-driven once");
}

#[tokio::test]
async fn the_channel_rate_limit_and_concurrency_hold() {
    // Rate: 2 at once, then one every 500 ms.
    let receiver = Receiver::start(|_| 200).await;
    let server = server_for(&receiver, &["--queue-rate-limit-webhook", "2/1s"]).await;
    for i in 0..6 {
        ship(&server, &format!("R-{i}")).await;
    }
    let hits = receiver.wait_for(6, Duration::from_secs(10)).await;
    let span = hits[5].at - hits[0].at;
    assert!(span >= Duration::from_millis(1900), "6 calls at 2/s took {span:?}");
    assert!(hits[1].at - hits[0].at < Duration::from_millis(300), "the burst goes at once");

    // Concurrency: slow answers, 2 at a time at most.
    let receiver = Receiver::start_slow(Duration::from_millis(300), |_| 200).await;
    let server = server_for(&receiver, &["--queue-concurrency", "2"]).await;
    for i in 0..6 {
        ship(&server, &format!("K-{i}")).await;
    }
    receiver.wait_for(6, Duration::from_secs(10)).await;
    assert_eq!(receiver.max_concurrent(), 2);
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server_with_the_rendered_subject_and_body() {
    let smtp = Smtp::start(free_port()).await;
    let port = smtp.port.to_string();
    let server = Server::start(&[
        "--service-api-keys",
        KEY,
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &port,
        "--smtp-tls",
        "none",
        "--smtp-from",
        "Switchyard Tests <tests@switchyard.test>",
    ])
    .await;
    let mut socket = Client::connect(server.addr, "/notifications", Some(&token("jan"))).await.unwrap();
    let event =
        json!({ "type": "user.registered", "userId": "jan", "data": { "name": "Jan", "email": "jan@example.com" } });
    let (status, body) = post_event(&server.url(""), &event).await;
    assert_eq!(status, 202);
    let channels: Vec<&str> = body["jobs"].as_array().unwrap().iter().map(|j| j["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["browser", "email"], "the built-in welcome rules, email included once SMTP is set");
    assert_eq!(socket.next_event("newNotification").await["title"], "Welcome to Switchyard, Jan!");

    let message = notifications_support::eventually(Duration::from_secs(10), "the email", async || {
        smtp.messages().into_iter().next()
    })
    .await;
    assert!(message.contains("Subject: Welcome to Switchyard, Jan!"), "{message}");
    assert!(message.contains("To: jan@example.com"), "{message}");
    assert!(message.contains("From: \"Switchyard Tests\" <tests@switchyard.test>"), "{message}");
    let job = body["jobs"][1]["id"].as_str().unwrap();
    assert!(message.contains(&format!("Message-ID: <{job}@switchyard>")), "{message}");
    let text = message.split_once("\n\n").map(|(_, body)| body).unwrap_or_default();
    assert_eq!(text.trim(), "Hi Jan,\n\nyour account jan is ready.\n\nThe Switchyard team");

    // An event that lacks what the email rule needs is refused whole: nothing is queued.
    let (status, body) = post_event(&server.url(""), &json!({ "type": "user.registered", "userId": "kai" })).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "data.email: required by rule \"welcome-email\" (email.to)");
}

#[tokio::test]
async fn email_is_retried_until_the_smtp_server_is_up() {
    let port = free_port();
    let server = Server::start(&[
        "--service-api-keys",
        KEY,
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        &port.to_string(),
        "--smtp-tls",
        "none",
        "--queue-backoff-base-ms",
        "300",
        "--queue-max-attempts",
        "10",
    ])
    .await;
    let event = json!({ "type": "user.registered", "userId": "lia", "data": { "email": "lia@example.com" } });
    assert_eq!(post_event(&server.url(""), &event).await.0, 202);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let smtp = Smtp::start(port).await;
    let message = notifications_support::eventually(Duration::from_secs(15), "the retried email", async || {
        smtp.messages().into_iter().next()
    })
    .await;
    assert!(message.contains("Subject: Welcome to Switchyard, friend!"), "{message}");
    assert!(dead_letters(&server).await.is_empty());
}

#[tokio::test]
async fn sigterm_lets_the_job_in_flight_finish() {
    let receiver = Receiver::start_slow(Duration::from_millis(1500), |_| 200).await;
    let rules = webhook_rules(&receiver.url);
    let process = Process::start(
        free_port(),
        &[
            ("RULES_FILE", rules.display().to_string()),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
            ("SHUTDOWN_GRACE_SECONDS", "10".into()),
        ],
    )
    .await;
    let event = json!({ "type": "order.shipped", "userId": "max", "data": { "order": "D-1" } });
    assert_eq!(post_event(&process.url, &event).await.0, 202);
    receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(receiver.answered(), 0, "the call is in flight");
    let logs = process.logs.clone();
    let status = process.signal("TERM").await;
    assert!(status.success(), "{status}");
    assert_eq!(receiver.answered(), 1, "the worker waited for the call before exiting");
    assert!(logs.lock().unwrap().iter().any(|l| l.contains("notification workers stopped")));
}
