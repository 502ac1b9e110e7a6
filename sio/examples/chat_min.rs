//! A minimal `/chat` server on this crate, for measuring the transport alone with
//! `switchyard-loadgen idle`: HS256 JWT at connect, `user:U` joined, nothing stored.

use std::sync::Arc;

use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use switchyard_sio::{Config, Io, NamespaceBuilder, Socket};

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

#[tokio::main]
async fn main() {
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "bench-secret".into());
    let key = Arc::new(DecodingKey::from_secret(secret.as_bytes()));
    let io = Io::<String>::builder(Config::default())
        .ns(NamespaceBuilder::new("/chat", move |socket: Arc<Socket<String>>, auth: Option<Value>| {
            let key = key.clone();
            async move {
                let token =
                    auth.as_ref().and_then(|a| a.get("token")).and_then(Value::as_str).ok_or("missing token")?;
                let claims = jsonwebtoken::decode::<Claims>(token, &key, &Validation::default())
                    .map_err(|e| e.to_string())?
                    .claims;
                socket.join([format!("user:{}", claims.sub)]);
                let _ = socket.set_state(claims.sub);
                Ok(())
            }
        }))
        .build();
    let app = axum::Router::new().route("/socket.io/", axum::routing::any(Io::handle)).with_state(io);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3999".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
