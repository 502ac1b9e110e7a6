//! The SMPP session: connect, bind, keep it alive with `enquire_link` (rusmppc), answer
//! the SMSC's `deliver_sm`s, and reconnect with backoff when the connection goes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rusmpp::pdus::{BindTransceiver, BindTransmitter, DeliverSmResp};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{CommandStatus, Pdu};
use rusmppc::error::Error as SmppError;
use rusmppc::{Client, ConnectionBuilder, Event};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::config::{Account, BindMode};
use super::receipt::{self, Receipt};

/// First pause after a failed connection; it doubles up to the configured maximum.
const RECONNECT_BASE: Duration = Duration::from_millis(250);

/// The state of the link to the SMSC.
#[derive(Clone)]
pub enum Link {
    /// Not bound yet, or the connection went; the last error when there was one.
    Connecting(Option<String>),
    /// Bound: submits go here.
    Bound(Arc<Client>),
    /// The SMSC refused the bind (credentials, system type): no submit can pass until
    /// the settings change. Binding is still retried at the longest pause.
    Refused(String),
}

/// What the session needs besides the account.
pub struct Settings {
    /// The account.
    pub account: Account,
    /// Transceiver or transmitter.
    pub bind: BindMode,
    /// `system_type`.
    pub system_type: String,
    /// `enquire_link` interval.
    pub enquire_link: Duration,
    /// Answer timeout of every request (bind included).
    pub response_timeout: Duration,
    /// Longest pause between connection attempts.
    pub reconnect_max: Duration,
}

/// Runs the session until the task is aborted, publishing its state on `link` and passing
/// every receipt to `on_receipt`.
pub async fn run(settings: Settings, link: watch::Sender<Link>, on_receipt: impl Fn(Receipt) + Send + 'static) {
    let mut pause = RECONNECT_BASE;
    loop {
        match bind(&settings).await {
            Ok((client, mut events)) => {
                pause = RECONNECT_BASE;
                let client = Arc::new(client);
                tracing::info!(smsc = %settings.account.address, "SMPP session bound");
                link.send_replace(Link::Bound(client.clone()));
                let mut reason = "the SMSC closed the connection".to_owned();
                while let Some(event) = events.next().await {
                    match event {
                        Event::Incoming(command) => incoming(&client, command, &on_receipt).await,
                        Event::Error(e) => reason = e.to_string(),
                    }
                }
                tracing::warn!(smsc = %settings.account.address, %reason, "SMPP session lost; reconnecting");
                link.send_replace(Link::Connecting(Some(reason)));
            }
            Err(Failure::Refused(error)) => {
                // One error per change, not one per attempt.
                if !matches!(&*link.borrow(), Link::Refused(e) if *e == error) {
                    tracing::error!(smsc = %settings.account.address, %error, "SMPP bind refused; the sms channel is not ready");
                }
                link.send_replace(Link::Refused(error));
                pause = settings.reconnect_max;
            }
            Err(Failure::Unreachable(error)) => {
                tracing::warn!(smsc = %settings.account.address, %error, ?pause, "SMSC unreachable; retrying");
                link.send_replace(Link::Connecting(Some(error)));
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(settings.reconnect_max);
    }
}

enum Failure {
    Refused(String),
    Unreachable(String),
}

async fn bind(s: &Settings) -> Result<(Client, impl futures::Stream<Item = Event> + Unpin + use<>), Failure> {
    let unreachable = |e: &dyn std::fmt::Display| Failure::Unreachable(e.to_string());
    let stream = tokio::time::timeout(s.response_timeout, TcpStream::connect(&s.account.address))
        .await
        .map_err(|_| Failure::Unreachable(format!("connecting to {} timed out", s.account.address)))?
        .map_err(|e| unreachable(&e))?;
    let (client, events) = ConnectionBuilder::new()
        .enquire_link_interval(s.enquire_link)
        .enquire_link_response_timeout(s.response_timeout)
        .response_timeout(s.response_timeout)
        // rusmppc checks for SMPP 5.0 binds; this one speaks 3.4.
        .disable_interface_version_check()
        .connected(stream);
    // The configuration checked the lengths; an error here is a bug in that check.
    fn text<const MIN: usize, const MAX: usize>(value: &str) -> Result<COctetString<MIN, MAX>, Failure> {
        value.parse().map_err(|e| Failure::Refused(format!("{value:?}: {e}")))
    }
    let (system_id, password, system_type) =
        (text(&s.account.system_id)?, text(&s.account.password)?, text(&s.system_type)?);
    // Both bind PDUs have the same body (rusmpp keeps its shared `BindAny` private).
    macro_rules! bind {
        ($pdu:ident) => {
            $pdu::new(
                system_id,
                password,
                system_type,
                InterfaceVersion::Smpp3_4,
                Ton::Unknown,
                Npi::Unknown,
                COctetString::empty(),
            )
        };
    }
    let result = match s.bind {
        BindMode::Transceiver => client.bind_transceiver(bind!(BindTransceiver)).await.map(drop),
        BindMode::Transmitter => client.bind_transmitter(bind!(BindTransmitter)).await.map(drop),
    };
    match result {
        Ok(()) => Ok((client, events)),
        Err(SmppError::UnexpectedResponse { response }) => {
            let _ = client.close().await;
            Err(Failure::Refused(format!(
                "the SMSC refused the bind of {:?}: {}",
                s.account.system_id,
                status_name(response.status())
            )))
        }
        Err(e) => {
            let _ = client.close().await;
            Err(unreachable(&e))
        }
    }
}

/// A command the SMSC sent: receipts are answered and passed on; an `unbind` is answered
/// and the connection closes (the session then reconnects).
async fn incoming(client: &Client, command: rusmpp::Command, on_receipt: &impl Fn(Receipt)) {
    let sequence = command.sequence_number();
    match command.pdu() {
        Some(Pdu::DeliverSm(deliver)) => {
            let text = String::from_utf8_lossy(deliver.short_message().as_ref()).into_owned();
            if let Err(e) = client.deliver_sm_resp(sequence, DeliverSmResp::default()).await {
                tracing::warn!(error = %e, "cannot answer a deliver_sm");
            }
            match receipt::parse(&text) {
                Ok(receipt) => on_receipt(receipt),
                Err(why) => tracing::info!(%why, "deliver_sm that is not a delivery receipt ignored"),
            }
        }
        Some(Pdu::Unbind) => {
            let _ = client.unbind_resp(sequence).await;
            let _ = client.close().await;
        }
        _ => tracing::debug!(id = ?command.id(), "SMPP command ignored"),
    }
}

/// The SMPP name of a status (`ESME_RINVPASWD`), as operators know them.
pub fn status_name(status: CommandStatus) -> String {
    let name = format!("{status:?}");
    match name.strip_prefix("EsmeR") {
        Some(rest) => format!("ESME_R{} (0x{:08X})", rest.to_uppercase(), u32::from(status)),
        None => format!("{name} (0x{:08X})", u32::from(status)),
    }
}
