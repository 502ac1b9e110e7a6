//! The accept loop: like `axum::serve` (HTTP/1.1 and HTTP/2, upgrades, graceful shutdown),
//! plus a request-head read timeout, which axum's loop does not offer. Without one, a
//! client can open connections and trickle their request heads (or send none) and hold
//! them for ever. Every request carries its connection's peer address as axum's
//! [`ConnectInfo`], which a session keeps (an admin view shows where a client is).
//! [`listen`] binds the listening socket it serves, with an accept queue deep enough for a
//! reconnect storm.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceExt as _;

/// Node's `server.headersTimeout`: how long a client may take to send a request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// The accept queue [`listen`] asks for. The kernel caps it at `net.core.somaxconn` (4096 by
/// default since Linux 5.4).
pub const BACKLOG: u32 = 4096;

/// Binds a listening socket for [`serve`], with [`BACKLOG`] as its accept queue.
///
/// Rust's `TcpListener::bind` (Tokio's too) asks for 128. A reconnect storm overflows that: every
/// client of a restarted pod at once, or a benchmark's few hundred concurrent handshakes. The
/// kernel then drops handshakes or answers them with SYN cookies, and each dropped client
/// waits for a SYN retransmit (1 s, then 2, 4...). Measured with 128: one 19,000-connection
/// storm from 400 concurrent handshakes caused 749 listen overflows and 387 SYN retransmits.
/// Node listens with 511, Go with `somaxconn`.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As std's bind does: a restarted server can bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the open
/// connections to finish (upgraded ones are the caller's to close, see [`crate::Io::close`]).
/// A connection whose request head has not fully arrived `head_timeout` after it began is
/// closed.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(head_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                request
            },
        ));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
