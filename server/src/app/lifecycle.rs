//! Lifecycle webhooks: a user's fleet-wide presence changes become the notification events
//! `user.online` and `user.offline`, so rules on those types deliver them through the
//! channels (a `webhook` rule: signed, retried, dead-lettered like any other job). Without
//! such a rule nothing is submitted. Here, on the top floor, because it joins two features
//! (presence and notifications) that know nothing of each other.

use async_trait::async_trait;
use serde_json::json;

use crate::presence::{PresenceListener, PresenceStatus};
use crate::state::WeakState;

/// Event type submitted when a user's first socket connects.
pub const USER_ONLINE: &str = "user.online";
/// Event type submitted when a user's last socket leaves (or its node dies).
pub const USER_OFFLINE: &str = "user.offline";

/// Submits lifecycle events for the server whose state this is.
pub struct Lifecycle(pub WeakState);

#[async_trait]
impl PresenceListener for Lifecycle {
    async fn changed(&self, status: &PresenceStatus) {
        let Some(app) = self.0.upgrade() else { return };
        let kind = if status.online { USER_ONLINE } else { USER_OFFLINE };
        app.submit_lifecycle(
            kind,
            &status.user_id,
            || json!({ "online": status.online, "lastSeen": status.last_seen }),
        );
    }
}
