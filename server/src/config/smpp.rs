//! The SMS channel's settings (`SMPP_*`), flattened into [`super::Config`]; the channel
//! (`notifications::channels::sms`) checks them into its account.

use std::path::PathBuf;

/// How the channel binds to the SMSC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BindMode {
    /// Submits and receives receipts on one session.
    Transceiver,
    /// Submits only: no receipts reach this session (the SMSC may send them to a receiver
    /// bind of the same account instead).
    Transmitter,
}

/// The SMS channel over SMPP 3.4.
#[derive(Debug, Clone, clap::Args)]
pub struct SmppConfig {
    /// SMSC address `host:port`; setting it enables the `sms` channel.
    #[arg(long, env = "SMPP_ADDRESS")]
    pub smpp_address: Option<String>,

    /// `system_id` of the bind (at most 15 characters).
    #[arg(long, env = "SMPP_SYSTEM_ID")]
    pub smpp_system_id: Option<String>,

    /// Password of the bind (at most 8 characters); prefer `SMPP_PASSWORD_FILE`.
    #[arg(long, env = "SMPP_PASSWORD", hide_env_values = true)]
    pub smpp_password: Option<String>,

    /// File holding the password (a mounted Secret); a trailing newline is ignored.
    #[arg(long, env = "SMPP_PASSWORD_FILE")]
    pub smpp_password_file: Option<PathBuf>,

    /// `system_type` of the bind, when the SMSC wants one.
    #[arg(long, env = "SMPP_SYSTEM_TYPE", default_value = "")]
    pub smpp_system_type: String,

    /// `transceiver` (receipts on the same session) or `transmitter`.
    #[arg(long, env = "SMPP_BIND", value_enum, default_value = "transceiver")]
    pub smpp_bind: BindMode,

    /// The sender (`source_addr`): an E.164 number or an alphanumeric sender id of up to 11
    /// characters.
    #[arg(long, env = "SMPP_SOURCE_ADDR")]
    pub smpp_source_addr: Option<String>,

    /// `submit_sm` requests awaiting their answer at once, per process.
    #[arg(long, env = "SMPP_WINDOW", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub smpp_window: u32,

    /// Most concatenated parts of one message; a longer text fails its job.
    #[arg(long, env = "SMPP_MAX_PARTS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub smpp_max_parts: u32,

    /// Milliseconds between `enquire_link`s on an idle session.
    #[arg(long, env = "SMPP_ENQUIRE_LINK_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub smpp_enquire_link_ms: u64,

    /// Milliseconds to wait for any answer of the SMSC (and for a session when none is
    /// bound) before the attempt is retried.
    #[arg(long, env = "SMPP_RESPONSE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=300_000))]
    pub smpp_response_timeout_ms: u64,

    /// Longest pause between two connection attempts, in milliseconds (they start at
    /// 250 ms and double).
    #[arg(long, env = "SMPP_RECONNECT_MAX_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(250..=3_600_000))]
    pub smpp_reconnect_max_ms: u64,

    /// Milliseconds before a job refused with `ESME_RTHROTTLED` or `ESME_RMSGQFUL` is tried
    /// again (such an answer uses none of the job's attempts).
    #[arg(long, env = "SMPP_THROTTLE_DELAY_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub smpp_throttle_delay_ms: u64,
}
