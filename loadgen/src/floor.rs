//! `ws-floor`: the physical floor for fan-out benchmarks. A raw WebSocket server with rooms
//! (`/floor?room=R`) that relays every text frame a client sends to the room's other clients,
//! with no protocol, no auth and no storage: what a realtime server cannot beat.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::UnboundedSender<Message>)>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3900".into()).parse()?;
    let listener = TcpListener::bind(addr).await?;
    println!("ws-floor listening on {}", listener.local_addr()?);
    let rooms = Rooms::default();
    let mut next_id = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        next_id += 1;
        tokio::spawn(serve(stream, rooms.clone(), next_id));
    }
}

async fn serve(stream: tokio::net::TcpStream, rooms: Rooms, id: u64) {
    let mut room = String::new();
    // The callback's error type is tungstenite's; the size lint does not apply to our code.
    #[allow(clippy::result_large_err)]
    let pick_room = |req: &Request, resp: Response| {
        room = req.uri().query().and_then(|q| q.strip_prefix("room=")).unwrap_or("default").to_owned();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, pick_room).await else { return };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    rooms.lock().unwrap().entry(room.clone()).or_default().push((id, tx));
    // Frames queued for this client go out in one write: flush only when the queue is empty,
    // as a real server does (a flush per frame is a syscall per delivery, and that, not the
    // network, would be the floor).
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = source.next().await {
        if let Message::Text(_) = msg {
            // Cloning a frame shares its bytes: one allocation per broadcast, like a server that
            // serialises once.
            for (other, tx) in rooms.lock().unwrap().get(&room).into_iter().flatten() {
                if *other != id {
                    let _ = tx.send(msg.clone());
                }
            }
        }
    }
    if let Some(members) = rooms.lock().unwrap().get_mut(&room) {
        members.retain(|(other, _)| *other != id);
    }
    writer.abort();
}
