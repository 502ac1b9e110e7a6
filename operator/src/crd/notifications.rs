//! The notification channels that need settings of their own: the `sms` channel over SMPP.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

/// The SMS channel (SMPP_* settings of the server). Settings not named here go through `env`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SmsSpec {
    /// SMSC `host:port` (SMPP_ADDRESS), for example smsc.example.com:2775.
    #[x_kube(validation = Rule::new("self.matches('^[^:]+:[0-9]{1,5}$')").message("sms.address must be host:port"))]
    #[schemars(length(min = 3, max = 253))]
    pub address: String,

    /// Secret key with the bind's system_id (SMPP_SYSTEM_ID).
    pub system_id_secret_ref: SecretKeyRef,

    /// Secret key with the bind's password (SMPP_PASSWORD).
    pub password_secret_ref: SecretKeyRef,

    /// Sender (SMPP_SOURCE_ADDR): an E.164 number or an alphanumeric id of up to 11 characters.
    #[schemars(length(min = 1, max = 16))]
    pub source_addr: String,

    /// transceiver (receipts on the same session) or transmitter (SMPP_BIND).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<SmppBind>,

    /// submit_sm requests awaiting an answer at once per pod (SMPP_WINDOW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub window: Option<u32>,

    /// Most concatenated parts of one SMS (SMPP_MAX_PARTS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub max_parts: Option<u32>,
}

/// How the server binds to the SMSC.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmppBind {
    /// Submit and receive receipts on one session.
    Transceiver,
    /// Submit only.
    Transmitter,
}
