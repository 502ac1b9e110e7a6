//! The server process and its pods: settings, probes, volumes, scheduling, disruption budget.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, Probe, Toleration, TopologySpreadConstraint};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

/// The official Socket.IO Admin UI (ADMIN_UI_* settings of the server): the `/admin`
/// namespace and the UI's page, off unless enabled with credentials from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!self.enabled || has(self.credentialsSecret)").message("adminUi.credentialsSecret is required when adminUi.enabled is true"))]
#[serde(rename_all = "camelCase")]
pub struct AdminUiSpec {
    /// Serve the Admin UI. Off by default; without it no pod has the `/admin` namespace.
    #[serde(default)]
    pub enabled: bool,

    /// Read-only Admin UI: it shows the fleet and refuses disconnect, join and leave
    /// (ADMIN_UI_READONLY).
    #[serde(default)]
    pub read_only: bool,

    /// Name of a Secret in this namespace with the keys `username` (ADMIN_UI_USERNAME) and
    /// `passwordHash`, a bcrypt hash such as `$2b$10$...` (ADMIN_UI_PASSWORD_HASH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: Option<String>,

    /// Path of the UI's page (ADMIN_UI_PATH), `/admin/` by default.
    #[x_kube(validation = Rule::new("self.matches('^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]/?$')").message("adminUi.path must be a path such as /admin/"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 256))]
    pub path: Option<String>,
}

/// Server process settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// Value of the `environment` label on every metric (ENVIRONMENT), 1 to 64 characters.
    #[serde(default = "default_environment")]
    #[schemars(length(min = 1, max = 64))]
    pub environment: String,

    /// Log format (LOG_FORMAT).
    #[serde(default)]
    pub log_format: LogFormat,

    /// Log filter (LOG_LEVEL): a level (trace, debug, info, warn, error, off), or
    /// comma-separated `target=level` directives, for example info,switchyard_server=debug.
    #[x_kube(validation = Rule::new(LOG_FILTER_RULE).message("server.logLevel must be a level or target=level directives, such as info,switchyard_server=debug"))]
    #[serde(default = "default_log_level")]
    #[schemars(length(min = 1, max = 256))]
    pub log_level: String,

    /// Seconds a terminating pod spends telling clients to reconnect elsewhere
    /// (SHUTDOWN_GRACE_SECONDS), 1 to 3600. The pod's termination grace period is set above
    /// this.
    #[serde(default = "default_shutdown_grace")]
    #[schemars(range(min = 1, max = 3600))]
    pub shutdown_grace_seconds: i32,

    /// Seconds the preStop hook sleeps before SIGTERM, so endpoints and load balancers stop
    /// sending new connections first.
    #[serde(default = "default_pre_stop")]
    #[schemars(range(min = 0, max = 300))]
    pub pre_stop_sleep_seconds: i32,

    /// Engine.IO ping interval in milliseconds (PING_INTERVAL_MS), 1000 to 600000.
    #[serde(default = "default_ping_interval")]
    #[schemars(range(min = 1000, max = 600000))]
    pub ping_interval_ms: i64,

    /// Engine.IO ping timeout in milliseconds (PING_TIMEOUT_MS), 1000 to 600000.
    #[serde(default = "default_ping_timeout")]
    #[schemars(range(min = 1000, max = 600000))]
    pub ping_timeout_ms: i64,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            environment: default_environment(),
            log_format: LogFormat::default(),
            log_level: default_log_level(),
            shutdown_grace_seconds: default_shutdown_grace(),
            pre_stop_sleep_seconds: default_pre_stop(),
            ping_interval_ms: default_ping_interval(),
            ping_timeout_ms: default_ping_timeout(),
        }
    }
}

/// A log level, as the server's filter parser spells it (any case).
macro_rules! log_level {
    () => {
        "(?i:trace|debug|info|warn|error|off)"
    };
}
/// One filter directive: a level, or a target with an optional `=level`.
macro_rules! log_directive {
    () => {
        concat!("(", log_level!(), "|[A-Za-z_][A-Za-z0-9_:]*(=", log_level!(), ")?)")
    };
}
/// The log filters the CRD admits: directives separated by commas. A subset of what the
/// server's filter parser takes (span filters are left out), strict enough that a value the
/// server would refuse at start-up (and crash-loop on) is refused by the API server instead.
const LOG_FILTER_RULE: &str = concat!("self.matches('^", log_directive!(), "(,", log_directive!(), ")*$')");

fn default_environment() -> String {
    "production".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_shutdown_grace() -> i32 {
    30
}
fn default_pre_stop() -> i32 {
    5
}
fn default_ping_interval() -> i64 {
    25_000
}
fn default_ping_timeout() -> i64 {
    20_000
}

/// Server log format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// The LOG_FORMAT value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }
}

/// Probe replacements for the server container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeOverrides {
    /// Replaces the liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// Replaces the readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Replaces the startup probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
}

/// A key of a ConfigMap in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Pod-level settings for the server pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecOverrides {
    /// Extra pod labels (the operator's selector labels cannot be overridden).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Topology spread constraints. When empty, pods are spread across nodes on a best-effort
    /// basis (maxSkew 1, ScheduleAnyway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity rules of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// ServiceAccount the pods run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Secrets for pulling private images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// PodDisruptionBudget settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudgetSpec {
    /// Create the PodDisruptionBudget.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Server pods that voluntary disruptions may take down at once.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl Default for DisruptionBudgetSpec {
    fn default() -> Self {
        Self { enabled: true, max_unavailable: default_max_unavailable() }
    }
}

fn default_max_unavailable() -> i32 {
    1
}
