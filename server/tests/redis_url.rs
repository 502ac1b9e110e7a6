//! A malformed `REDIS_URL` stops the binary before it binds: exit 64 and one line naming the
//! variable, what is wrong, and the form expected (single Redis, Sentinel and Cluster). An
//! unreachable one stops start-up within `REDIS_STARTUP_TIMEOUT_MS`, with one line naming it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SENTINEL: &str = "expected redis+sentinel://[user:password@]host:26379[,host:26379...]/<master>[/<db>]";
const CLUSTER: &str = "expected redis+cluster://[user:password@]host:6379[,host:6379...]";

#[test]
fn malformed_redis_urls_stop_start_up_with_one_line() {
    let cases = [
        ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379", format!("the master name is missing; {SENTINEL}")),
        ("redis+sentinel:///mymaster", format!("no hosts given; {SENTINEL}")),
        ("redis+sentinel://10.0.0.1:sentinel/mymaster", format!("\"10.0.0.1:sentinel\" has no valid port; {SENTINEL}")),
        ("redis+sentinel://10.0.0.1/mymaster/first", format!("database \"first\" is not a number; {SENTINEL}")),
        ("redis+cluster://", format!("no hosts given; {CLUSTER}")),
        ("redis+cluster://10.0.0.1:7000,,10.0.0.3:7000", format!("\"\" is not a host[:port]; {CLUSTER}")),
        (
            "redis+cluster://10.0.0.1:7000/2",
            format!("a Redis Cluster has only database 0 and takes no path or options; {CLUSTER}"),
        ),
        ("redis+cluster://10.0.0.1:0", format!("\"10.0.0.1:0\" has no valid port; {CLUSTER}")),
        ("http://10.0.0.1:6379", "not a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL".into()),
    ];
    for (url, reason) in cases {
        let out =
            Command::new(env!("CARGO_BIN_EXE_switchyard-server")).env_clear().env("REDIS_URL", url).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{url}: {stderr}");
        assert_eq!(stderr.trim(), format!("error: invalid value for REDIS_URL: {reason}"), "{url}");
    }
}

#[test]
fn unreachable_redis_stops_start_up_within_the_bound() {
    // A port nothing listens on: bound by the OS, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A single Redis waits for the bound (its client retries a refused connection); the
    // Sentinel and Cluster clients give up on their own. Every URL holds a password that the
    // line must not show.
    let cases = [
        (
            format!("redis://:hunter2@127.0.0.1:{port}/1"),
            format!(
                "cannot connect to Redis at redis://127.0.0.1:{port}/1 within 1s (REDIS_STARTUP_TIMEOUT_MS); check that \
                 it runs and that REDIS_URL's host, port, password and TLS are right"
            ),
        ),
        (
            format!("redis+sentinel://:hunter2@127.0.0.1:{port}/mymaster"),
            format!("cannot connect to Redis at redis+sentinel://127.0.0.1:{port}/mymaster: "),
        ),
        (
            format!("redis+cluster://user:hunter2@127.0.0.1:{port}"),
            format!("cannot connect to Redis at redis+cluster://127.0.0.1:{port}: "),
        ),
    ];
    for (url, line) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-server"))
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("WEBSOCKET_PORT", "0")
            .env("REDIS_URL", &url)
            .env("REDIS_STARTUP_TIMEOUT_MS", "1000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("{url}: still starting after 20 s with a 1 s REDIS_STARTUP_TIMEOUT_MS");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert!(stderr.starts_with(&format!("Error: {line}")), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{url}: the password leaked: {stderr}");
    }
}
