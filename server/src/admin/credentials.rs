//! Signing in to the Admin UI, as Node's admin-ui does it: the UI's handshake carries
//! `{username, password}`, checked against the configured bcrypt hash; a success is answered
//! with a `session` id that the UI sends instead (`{sessionId}`) when it reconnects or is
//! reloaded.
//!
//! Node keeps session ids in a store (memory, or Redis for several servers). Here a session
//! id is signed instead: its expiry and an HMAC of it under a key derived from the
//! credentials, so every node of a fleet accepts it with no shared store, and changing the
//! password ends every session.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::protocol::epoch_ms;

/// How long a session id is good for (Node's `RedisStore` keeps sessions a day).
pub const SESSION_SECONDS: u64 = 86_400;

/// The Admin UI's user name, password hash and session key.
pub struct Credentials {
    username: String,
    hash: String,
    key: [u8; 32],
    /// One bcrypt check at a time per process: each takes tens of milliseconds of CPU on
    /// purpose, and a flood of sign-ins must not take every core from the sockets.
    checks: Semaphore,
}

impl Credentials {
    /// Credentials for `username` with bcrypt `hash` (checked at start-up by `config`).
    pub fn new(username: &str, hash: &str) -> Self {
        let key = Sha256::new()
            .chain_update(b"switchyard admin-ui session\0")
            .chain_update(username.as_bytes())
            .chain_update(b"\0")
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        Self { username: username.to_owned(), hash: hash.to_owned(), key, checks: Semaphore::new(1) }
    }

    /// True when the handshake's `auth` holds a valid session id, or the user name and a
    /// password matching the hash.
    pub async fn check(&self, auth: Option<&Value>) -> bool {
        let field = |name| auth.and_then(|a| a.get(name)).and_then(Value::as_str);
        if let Some(session) = field("sessionId")
            && self.valid_session(session, epoch_ms() / 1000)
        {
            return true;
        }
        let (Some(username), Some(password)) = (field("username"), field("password")) else { return false };
        let Ok(_permit) = self.checks.acquire().await else { return false };
        let (password, hash) = (password.to_owned(), self.hash.clone());
        // Checked even for a wrong user name, so the answer's timing does not tell them apart.
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        let user_matches: bool = username.as_bytes().ct_eq(self.username.as_bytes()).into();
        matches && user_matches
    }

    /// A new session id, good for [`SESSION_SECONDS`] from now.
    pub fn session(&self) -> String {
        let expires = epoch_ms() / 1000 + SESSION_SECONDS;
        format!("{expires}.{}", self.sign(expires))
    }

    fn valid_session(&self, session: &str, now: u64) -> bool {
        let Some((expires, signature)) = session.split_once('.') else { return false };
        let Ok(expires) = expires.parse::<u64>() else { return false };
        expires > now && signature.as_bytes().ct_eq(self.sign(expires).as_bytes()).into()
    }

    fn sign(&self, expires: u64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(expires.to_string().as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `changeit` at cost 4 (the lowest, to keep the test fast).
    fn credentials() -> Credentials {
        Credentials::new("admin", &bcrypt::hash("changeit", 4).unwrap())
    }

    #[tokio::test]
    async fn the_password_or_a_session_signs_in() {
        let c = credentials();
        assert!(c.check(Some(&json!({ "username": "admin", "password": "changeit" }))).await);
        for wrong in [
            json!({ "username": "admin", "password": "changeme" }),
            json!({ "username": "root", "password": "changeit" }),
            json!({ "username": "admin" }),
            json!({ "sessionId": "4102444800.00" }),
            json!({ "sessionId": 5 }),
            json!({}),
        ] {
            assert!(!c.check(Some(&wrong)).await, "{wrong} signed in");
        }
        assert!(!c.check(None).await);
        let session = c.session();
        assert!(c.check(Some(&json!({ "sessionId": session }))).await);
        // Another password (or user) makes another key: its sessions are worthless here.
        let other = Credentials::new("admin", &bcrypt::hash("other", 4).unwrap());
        assert!(!other.check(Some(&json!({ "sessionId": session }))).await);
    }

    #[test]
    fn sessions_expire() {
        let c = credentials();
        let session = c.session();
        let expires: u64 = session.split_once('.').unwrap().0.parse().unwrap();
        assert!(c.valid_session(&session, expires - 1));
        assert!(!c.valid_session(&session, expires));
        // The expiry is signed: moving it breaks the signature.
        let moved = format!("{}.{}", expires + 1000, session.split_once('.').unwrap().1);
        assert!(!c.valid_session(&moved, expires - 1));
    }
}
