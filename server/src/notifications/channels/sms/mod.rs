//! The SMS channel over SMPP 3.4: one `submit_sm` per part (GSM 03.38 or UCS-2,
//! concatenated with a UDH when long), within a window of outstanding requests, on a
//! session that binds, keeps alive and reconnects on its own. Delivery receipts are
//! requested and recorded on the job's [`DeliveryStatus`].
//!
//! The protocol is rusmpp's (PDUs, codec, alphabets, concatenation) and rusmppc's
//! (request matching, `enquire_link`); this module adds the session's life cycle and the
//! queue's view of the SMSC's answers.

mod config;
mod encoding;
mod phone;
mod receipt;
mod session;
mod status;

use std::sync::Arc;
use std::time::Duration;

use rusmpp::CommandStatus;
use rusmpp::pdus::SubmitSm;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{EsmClass, Npi, RegisteredDelivery, ServiceType, Ton};
use rusmppc::error::Error as SmppError;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use config::{BindMode, SmppConfig};
pub use encoding::{EncodeError, encode};
pub use phone::e164;
pub use status::{DeliveryState, DeliveryStatus, DeliveryStore, MemoryDeliveries, OnOutcome, RedisDeliveries};

use super::Outcome;
use crate::error::StoreResult;
use session::{Link, Settings, status_name};
use status::Deliveries;

/// Whether the channel can submit now, for its readiness signal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// True while bound.
    pub ready: bool,
    /// `bound`, `connecting` or `refused`.
    pub state: &'static str,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The channel. One per process; its session runs until it is dropped.
pub struct Sms {
    link: watch::Receiver<Link>,
    window: Semaphore,
    deliveries: Arc<Deliveries>,
    source: (Ton, Npi, String),
    max_parts: usize,
    response_timeout: Duration,
    throttle_delay: Duration,
    session: JoinHandle<()>,
}

impl Drop for Sms {
    fn drop(&mut self) {
        self.session.abort();
    }
}

/// Checks the settings; `Ok(())` also when the channel is off.
pub fn check(config: &SmppConfig) -> Result<(), (&'static str, String)> {
    config.account().map(drop)
}

impl Sms {
    /// The channel when `SMPP_ADDRESS` is set; starts its session. Delivery statuses are kept
    /// in `store`; `on_outcome` sees every job's final receipt outcome once (for metrics).
    pub fn start(
        config: &SmppConfig,
        store: Arc<dyn DeliveryStore>,
        on_outcome: OnOutcome,
    ) -> anyhow::Result<Option<Self>> {
        let Some(account) = config.account().map_err(|(setting, reason)| anyhow::anyhow!("{setting}: {reason}"))?
        else {
            return Ok(None);
        };
        let source = match phone::e164(&account.source) {
            Ok(digits) => (Ton::International, Npi::Isdn, digits.to_owned()),
            Err(_) => (Ton::Alphanumeric, Npi::Unknown, account.source.clone()),
        };
        let response_timeout = Duration::from_millis(config.smpp_response_timeout_ms);
        let settings = Settings {
            account,
            bind: config.smpp_bind,
            system_type: config.smpp_system_type.clone(),
            enquire_link: Duration::from_millis(config.smpp_enquire_link_ms),
            response_timeout,
            reconnect_max: Duration::from_millis(config.smpp_reconnect_max_ms),
        };
        let deliveries = Arc::new(Deliveries::new(store, on_outcome));
        let (link_tx, link) = watch::channel(Link::Connecting(None));
        let receipts = deliveries.clone();
        let session = tokio::spawn(session::run(settings, link_tx, move |receipt| {
            let receipts = receipts.clone();
            // Off the session's reading loop: recording waits on the store.
            tokio::spawn(async move {
                let id = receipt.message_id.clone();
                match receipts.receipt(receipt).await {
                    Ok(Some(job)) => tracing::info!(job = %job, message = %id, "SMS receipt recorded"),
                    Ok(None) => tracing::warn!(message = %id, "SMS receipt for a message id no job has"),
                    Err(e) => tracing::error!(message = %id, error = %e, "SMS receipt not recorded"),
                }
            });
        }));
        Ok(Some(Self {
            link,
            window: Semaphore::new(config.smpp_window as usize),
            deliveries,
            source,
            max_parts: config.smpp_max_parts as usize,
            response_timeout,
            throttle_delay: Duration::from_millis(config.smpp_throttle_delay_ms),
            session,
        }))
    }

    /// Bound, connecting or refused.
    pub fn readiness(&self) -> Readiness {
        match &*self.link.borrow() {
            Link::Bound(_) => Readiness { ready: true, state: "bound", error: None },
            Link::Connecting(error) => Readiness { ready: false, state: "connecting", error: error.clone() },
            Link::Refused(error) => Readiness { ready: false, state: "refused", error: Some(error.clone()) },
        }
    }

    /// The delivery status of `job_id`.
    pub async fn status(&self, job_id: &str) -> StoreResult<Option<DeliveryStatus>> {
        self.deliveries.get(job_id).await
    }

    /// One attempt of job `job_id`: `text` to `to`. Parts accepted by an earlier attempt
    /// are not submitted again. `context` comes back with the job's final receipt outcome.
    pub async fn deliver(&self, job_id: &str, to: &str, text: &str, context: serde_json::Value) -> Outcome {
        let outcome = self.submit(job_id, to, text, context).await;
        if let Outcome::Permanent(error) = &outcome
            && let Err(e) = self.deliveries.failed(job_id, to, error).await
        {
            tracing::error!(job = %job_id, error = %e, "the SMS job's failure is not recorded on its status");
        }
        outcome
    }

    async fn submit(&self, job_id: &str, to: &str, text: &str, context: serde_json::Value) -> Outcome {
        let destination = match phone::e164(to) {
            Ok(digits) => digits,
            Err(e) => return Outcome::Permanent(e),
        };
        // The same on every attempt and node, so that parts sent by a retry join the parts an
        // earlier attempt had sent.
        let reference = Sha256::digest(job_id.as_bytes())[0];
        let encoded = match encoding::encode(text, self.max_parts, reference) {
            Ok(encoded) => encoded,
            Err(e) => return Outcome::Permanent(e.to_string()),
        };
        let accepted =
            match self.deliveries.begin(job_id, to, encoded.coding.as_str(), encoded.parts.len(), context).await {
                Ok(accepted) => accepted,
                // Without its record a retry could send accepted parts again: wait for the store.
                Err(e) => return Outcome::Retry(format!("the delivery status is unavailable: {e}")),
            };
        let client = match self.bound().await {
            Ok(client) => client,
            Err(e) => return Outcome::Retry(e),
        };
        let (ton, npi, source) = &self.source;
        for (index, part) in encoded.parts.iter().enumerate() {
            if accepted[index].is_some() {
                continue;
            }
            let esm_class =
                if encoded.concatenated() { EsmClass::default().with_udhi_indicator() } else { EsmClass::default() };
            let submit = SubmitSm::builder()
                .service_type(ServiceType::default())
                .source_addr_ton(*ton)
                .source_addr_npi(*npi)
                .source_addr(source.parse().unwrap_or_else(|_| COctetString::empty()))
                .dest_addr_ton(Ton::International)
                .dest_addr_npi(Npi::Isdn)
                .destination_addr(destination.parse().unwrap_or_else(|_| COctetString::empty()))
                .esm_class(esm_class)
                .registered_delivery(RegisteredDelivery::from(1))
                .data_coding(encoded.data_coding)
                .short_message(match OctetString::from_vec(part.clone()) {
                    Ok(message) => message,
                    Err(e) => {
                        return Outcome::Permanent(format!("part {} does not fit a short message: {e}", index + 1));
                    }
                })
                .build();
            // The window bounds the requests in flight on the session, across jobs.
            let Ok(_permit) = self.window.acquire().await else {
                return Outcome::Retry("the channel is closing".into());
            };
            match client.submit_sm(submit).await {
                Ok(response) => {
                    let message_id = response.message_id();
                    if let Err(e) = self.deliveries.accepted(job_id, index, message_id.as_str()).await {
                        // The part is out; what is lost is its record, so a retry would send
                        // it twice and its receipt finds no job. Said loudly, not retried.
                        tracing::error!(job = %job_id, part = index + 1, error = %e, "an accepted SMS part is not recorded");
                    }
                }
                Err(e) => return self.refused(e, index, encoded.parts.len()),
            }
        }
        Outcome::Delivered
    }

    /// The bound session, waiting up to the response timeout for one.
    async fn bound(&self) -> Result<Arc<rusmppc::Client>, String> {
        let mut link = self.link.clone();
        let wait = link.wait_for(|l| matches!(l, Link::Bound(c) if c.is_active()));
        match tokio::time::timeout(self.response_timeout, wait).await {
            Ok(Ok(link)) => match &*link {
                Link::Bound(client) => Ok(client.clone()),
                _ => Err("no SMPP session".into()),
            },
            _ => Err(match &*self.link.borrow() {
                Link::Refused(e) => format!("no SMPP session: {e}"),
                Link::Connecting(Some(e)) => format!("no SMPP session: {e}"),
                _ => "no SMPP session yet".into(),
            }),
        }
    }

    /// The queue's view of a failed `submit_sm`.
    fn refused(&self, error: SmppError, index: usize, parts: usize) -> Outcome {
        let part = if parts > 1 { format!(" (part {} of {parts})", index + 1) } else { String::new() };
        let SmppError::UnexpectedResponse { response } = &error else {
            return Outcome::Retry(format!("submit_sm failed{part}: {error}"));
        };
        let status = response.status();
        let message = format!("the SMSC answered submit_sm{part} with {}", status_name(status));
        match status {
            CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => {
                Outcome::Throttled { error: message, after: self.throttle_delay }
            }
            // The address, the text or the account's rights: the same job fails again.
            CommandStatus::EsmeRinvdstadr
            | CommandStatus::EsmeRinvdstton
            | CommandStatus::EsmeRinvdstnpi
            | CommandStatus::EsmeRinvsrcadr
            | CommandStatus::EsmeRinvmsglen
            | CommandStatus::EsmeRinvesmclass
            | CommandStatus::EsmeRinvdcs
            | CommandStatus::EsmeRprohibited => Outcome::Permanent(message),
            _ => Outcome::Retry(message),
        }
    }
}
