//! A plain WebSocket echo on this crate's framing (no Engine.IO): every text and binary
//! message comes back as it came. The Autobahn|Testsuite cases run against it
//! (`scripts/autobahn.sh`). Messages up to 64 MiB (the suite's largest are 16 MiB).
//!
//! `cargo run --release -p switchyard-sio --example ws_echo [-- ADDR]` (ADDR defaults to
//! 127.0.0.1:9001; any path).

use axum::routing::any;
use switchyard_sio::{Config, EngineMessage, HEAD_TIMEOUT, Io};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let config = Config { max_payload: 64 << 20, max_buffered: 64 << 20, ..Config::default() };
    let io = Io::<()>::builder(config)
        .on_engine_message(|socket, message| {
            let _ = match message {
                EngineMessage::Text(text) => socket.send_text(text),
                EngineMessage::Binary(bytes) => socket.send_binary(bytes),
            };
        })
        .build();
    let app = axum::Router::new().fallback(any(Io::handle_websocket)).with_state(io);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("WebSocket echo on {addr}");
    switchyard_sio::serve(listener, app, HEAD_TIMEOUT, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
