//! A malformed `REDIS_URL` stops the binary before it binds: exit 64 and one line naming the
//! variable, what is wrong, and the form expected (single Redis, Sentinel and Cluster).

use std::process::Command;

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
