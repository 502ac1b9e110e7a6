//! The listening socket of `switchyard_sio::listen`: an accept queue deep enough for a
//! reconnect storm, where Rust's own `bind` (128) makes the kernel drop handshakes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Handshakes that complete while nothing accepts: far past Rust's default queue of 128,
/// well within [`switchyard_sio::BACKLOG`].
const WAITING: u64 = 600;

/// How many completed connections wait in the accept queue of the listener on `port`
/// (`rx_queue` of its LISTEN line in /proc/net/tcp).
fn accept_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // fields: sl, local_address, rem_address, st (0A = LISTEN), tx_queue:rx_queue, ...
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
            .then(|| u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok())
            .flatten()
    })
}

#[tokio::test]
async fn a_storm_of_handshakes_waits_in_the_queue_instead_of_being_dropped() {
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    assert!(somaxconn > WAITING, "net.core.somaxconn is {somaxconn}: the kernel caps every accept queue there");
    let listener = switchyard_sio::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    // Nothing accepts, so every handshake the kernel completes stays queued. With a queue of
    // 128 the count stops at 129 and the rest are dropped (their clients retransmit SYNs).
    let clients: Vec<_> = (0..WAITING).map(|_| tokio::spawn(TcpStream::connect(addr))).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut queued = accept_queue(addr.port());
    while queued != Some(WAITING) {
        assert!(
            Instant::now() < deadline,
            "{queued:?} of {WAITING} handshakes wait in the accept queue (the kernel dropped the rest)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        queued = accept_queue(addr.port());
    }
    for client in clients {
        client.abort();
    }
    drop(listener);
}
