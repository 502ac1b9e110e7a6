//! The reference server the official `socket.io-protocol` and `engine.io-protocol` test
//! suites expect, on this crate: ping interval 300 ms, ping timeout 200 ms, maxPayload
//! 1,000,000; Socket.IO at `/socket.io/` with namespaces `/` and `/custom`, each emitting
//! `auth` (the join's payload) on connect, answering `message` with `message-back` and
//! `message-with-ack` with an ack, every argument and attachment included; and an
//! Engine.IO echo at `/engine.io/`.
//!
//! `cargo run --release -p switchyard-sio --example conformance [-- ADDR]` (ADDR defaults to
//! 127.0.0.1:3000, where the suites look).

use std::sync::Arc;
use std::time::Duration;

use axum::routing::any;
use serde_json::{Value, json};
use switchyard_sio::{Config, EngineMessage, HEAD_TIMEOUT, Io, NamespaceBuilder, Socket};

/// A namespace as the Socket.IO suite wants it; a socket's state is its join's payload.
fn namespace(name: &str) -> NamespaceBuilder<Value> {
    NamespaceBuilder::new(name, |socket: Arc<Socket<Value>>, auth: Option<Value>| async move {
        let _ = socket.set_state(auth.unwrap_or_else(|| json!({})));
        Ok(())
    })
    .on_connected(|socket| async move {
        let _ = socket.emit("auth", socket.state().unwrap_or(&Value::Null));
    })
    .on_payload("message", |socket, data, _| async move {
        if let Ok(payload) = data {
            let _ = socket.emit_payload("message-back", &payload);
        }
    })
    .on_payload("message-with-ack", |_, data, ack| async move {
        if let Ok(payload) = data {
            let _ = ack.send_payload(&payload);
        }
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let config = Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        ..Config::default()
    };
    let socket_io = Io::builder(config.clone()).ns(namespace("/")).ns(namespace("/custom")).build();
    let engine_io = Io::<()>::builder(config)
        .on_engine_message(|engine, message| {
            let _ = match message {
                EngineMessage::Text(text) => engine.send_text(text),
                EngineMessage::Binary(bytes) => engine.send_binary(bytes),
            };
        })
        .build();
    let app = axum::Router::new()
        .route("/socket.io/", any(Io::handle).with_state(socket_io))
        .route("/engine.io/", any(Io::handle).with_state(engine_io));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("conformance server on {addr}: Socket.IO at /socket.io/, Engine.IO echo at /engine.io/");
    switchyard_sio::serve(listener, app, HEAD_TIMEOUT, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
