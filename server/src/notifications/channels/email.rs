//! The email channel: one plain-text message per job over SMTP (lettre), with the TLS mode
//! and credentials from the configuration.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Outcome;
use crate::config::{SmtpConfig, SmtpTls};
use crate::notifications::queue::Job;
use crate::notifications::rules::configured;

/// Sends jobs through the configured SMTP server. Cheap to clone.
#[derive(Clone)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The `From` mailbox of `SMTP_FROM`.
pub fn sender(config: &SmtpConfig) -> Result<Mailbox, String> {
    config.smtp_from.parse::<Mailbox>().map_err(|e| format!("not a mailbox ({e}): {:?}", config.smtp_from))
}

impl Email {
    /// The channel, when `SMTP_HOST` is set.
    pub fn new(config: &SmtpConfig) -> anyhow::Result<Option<Self>> {
        let Some(host) = configured(&config.smtp_host) else { return Ok(None) };
        let builder = match config.smtp_tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)?,
        };
        let mut builder = builder.port(config.smtp_port).timeout(Some(Duration::from_millis(config.smtp_timeout_ms)));
        if let (Some(user), Some(password)) = (configured(&config.smtp_username), config.smtp_password.clone()) {
            builder = builder.credentials(Credentials::new(user, password));
        }
        let from = sender(config).map_err(|e| anyhow::anyhow!("SMTP_FROM: {e}"))?;
        Ok(Some(Self { transport: builder.build(), from }))
    }

    /// One attempt: SMTP 5xx answers are permanent; 4xx answers, timeouts and connection
    /// errors are retried.
    pub async fn deliver(&self, job: &Job) -> Outcome {
        let Some(email) = &job.email else { return Outcome::Permanent("job has no email recipient".into()) };
        let to = match email.to.parse::<Mailbox>() {
            Ok(to) => to,
            Err(e) => return Outcome::Permanent(format!("bad recipient {:?}: {e}", email.to)),
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&email.subject)
            // The job id makes redelivered copies recognisable to the receiving side.
            .message_id(Some(format!("<{}@switchyard>", job.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(job.notification.body.clone());
        let message = match message {
            Ok(m) => m,
            Err(e) => return Outcome::Permanent(format!("cannot build the message: {e}")),
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::Delivered,
            Err(e) if e.is_permanent() => Outcome::Permanent(format!("SMTP refused: {e}")),
            Err(e) => Outcome::Retry(format!("SMTP failed: {e}")),
        }
    }
}
