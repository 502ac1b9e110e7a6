//! The webhook channel: a JSON POST signed with HMAC-SHA256 over the timestamp and the body.
//!
//! `X-Switchyard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(WEBHOOK_SECRET, "<t>.<body>")>`.
//! Receivers recompute it over the raw body, compare in constant time, and refuse old `t`s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::json;
use sha2::Sha256;

use super::Outcome;
use crate::config::WebhookConfig;
use crate::notifications::queue::Job;
use crate::notifications::rules::configured;

/// Posts jobs to their URL. Cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    secret: Vec<u8>,
}

/// The signature header value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

impl Webhook {
    /// The channel, when `WEBHOOK_SECRET` is set.
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Option<Self>> {
        let Some(secret) = configured(&config.webhook_secret) else { return Ok(None) };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.webhook_timeout_ms))
            // A redirect is answered as a permanent failure: following it would post the
            // signed body to a URL nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Some(Self { client, secret: secret.into_bytes() }))
    }

    /// One attempt: 2xx delivered; 408, 429, 5xx, timeouts and connection errors retried;
    /// anything else permanent.
    pub async fn deliver(&self, job: &Job) -> Outcome {
        let Some(url) = &job.webhook_url else { return Outcome::Permanent("job has no webhook URL".into()) };
        let body = json!({
            "jobId": job.id,
            "eventId": job.event_id,
            "eventType": job.event_type,
            "rule": job.rule,
            "userId": job.user_id,
            "attempt": job.attempts + 1,
            "notification": job.notification,
        })
        .to_string();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Switchyard-Signature", signature(&self.secret, now, body.as_bytes()))
            .header("X-Switchyard-Job-Id", &job.id)
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) => classify(response.status()),
            Err(e) if e.is_timeout() => Outcome::Retry("webhook timed out".into()),
            Err(e) => Outcome::Retry(format!("webhook unreachable: {e}")),
        }
    }
}

fn classify(status: StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
        Outcome::Retry(format!("webhook answered {status}"))
    } else {
        Outcome::Permanent(format!("webhook answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_contract_says() {
        assert_eq!(classify(StatusCode::NO_CONTENT), Outcome::Delivered);
        for retried in [408, 429, 500, 502, 503] {
            assert!(matches!(classify(StatusCode::from_u16(retried).unwrap()), Outcome::Retry(_)), "{retried}");
        }
        for permanent in [301, 400, 401, 404, 410, 422] {
            assert!(matches!(classify(StatusCode::from_u16(permanent).unwrap()), Outcome::Permanent(_)), "{permanent}");
        }
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
