//! The `RealtimeCluster` custom resource (`switchyard.dev/v1alpha1`).
//!
//! Every field carries a `///` doc comment: they become the OpenAPI descriptions that
//! `kubectl explain rtc.spec...` prints. Defaults live in the schema (through `serde(default)`)
//! and are mirrored by `Default` impls so code that reads an absent section sees the same values.
//! Cross-field checks are CEL rules, evaluated by the API server on `kubectl apply`.
//!
//! One file per area of the spec, as in `resources/`: `autoscaling`, `redis`, `routing`,
//! `auth`, `monitoring`, `server`, `notifications` (channel settings), and `status` for what
//! the operator writes back. This file holds the resource itself (its top-level spec, printer
//! columns and root rules), the pieces several areas share, and the YAML generation.

use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, ResourceRequirements, Volume, VolumeMount};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod auth;
mod autoscaling;
mod monitoring;
mod notifications;
mod redis;
mod routing;
mod server;
mod status;

pub use auth::*;
pub use autoscaling::*;
pub use monitoring::*;
pub use notifications::*;
pub use redis::*;
pub use routing::*;
pub use server::*;
pub use status::*;

/// An OCI image reference: optional registry host (and port), one or more lowercase path
/// components, an optional tag and an optional sha256 digest. As in the distribution
/// reference grammar, so that a typo is refused at `kubectl apply` rather than as an
/// ImagePullBackOff later.
const IMAGE_RULE: &str = r"self.matches('^([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$')";
/// The Kubernetes quantity grammar (`500m`, `2`, `1Gi`, `1e3`), as controller-gen writes it
/// for `resource.Quantity`. A schema pattern, not CEL: a CEL rule over the open-ended request
/// and limit maps exceeds the API server's cost budget.
const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// `ResourceRequirements` whose every request and limit must match [`QUANTITY_PATTERN`], so
/// that `cpu: fast` is refused at `kubectl apply` with the field named, rather than later on
/// the Deployment the operator writes.
fn resources_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<ResourceRequirements>().to_value();
    for map in ["limits", "requests"] {
        if let Some(values) =
            schema.pointer_mut(&format!("/properties/{map}/additionalProperties")).and_then(|v| v.as_object_mut())
        {
            values.insert("pattern".into(), QUANTITY_PATTERN.into());
        }
    }
    schema["nullable"] = true.into();
    schemars::Schema::try_from(schema).expect("an object schema")
}

/// Desired state of a fleet of Switchyard realtime servers and everything around them.
// The derive's repeated `printcolumn(type_ = ...)` arguments trip this lint.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "RealtimeCluster",
    plural = "realtimeclusters",
    shortname = "rtc",
    category = "switchyard",
    namespaced,
    status = "RealtimeClusterStatus",
    derive = "PartialEq",
    doc = "A fleet of Switchyard Socket.IO-compatible realtime servers with Redis, sticky routing, autoscaling on connections and dashboards.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status",
        description = "Whether every part of the cluster is ready"
    ),
    printcolumn(
        name = "Reconciled",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Reconciled')].status",
        description = "Whether the current spec is applied in full"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas",
        description = "Server pods wanted (by spec.replicas or the autoscaler)"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Server pods available to clients"
    ),
    printcolumn(
        name = "Connections",
        type_ = "integer",
        json_path = ".status.connections",
        description = "Open client connections reported by the autoscaler"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "Where clients connect",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // The Service takes the cluster's name, so it must be a DNS label starting with a letter;
    // the Redis StatefulSet `<name>-redis` must stay within 52 characters, or its pods' revision
    // label would pass 63.
    // The scale subresource writes spec.replicas, which the autoscaler overrules: refuse it
    // there rather than let `kubectl scale` print "scaled" and do nothing.
    validation = Rule::new("!has(self.spec.autoscaling) || !has(oldSelf.spec.autoscaling) || self.spec.replicas == oldSelf.spec.replicas").message("spec.replicas cannot change while spec.autoscaling is set (the autoscaler decides the pod count): change autoscaling.minReplicas and maxReplicas, or remove spec.autoscaling first").field_path(".spec.replicas"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 46").message("metadata.name must start with a letter, hold only lowercase letters, digits and '-', and be at most 46 characters (it names the Service and the Redis StatefulSet)")
)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeClusterSpec {
    /// Server container image. Defaults to ghcr.io/switchyard-dev/switchyard-server at the
    /// operator's own version, so upgrading the operator upgrades clusters that do not pin one.
    #[x_kube(validation = Rule::new(IMAGE_RULE).message("image must be an image reference such as ghcr.io/example/switchyard-server:1.2.3"))]
    #[schemars(length(min = 1, max = 512))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Stop reconciling: while true the operator creates, changes and deletes nothing for this
    /// cluster (manual edits to its children stay) and says so in the Reconciled condition.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,

    /// Image pull policy for the server and managed Redis containers.
    #[serde(default = "default_pull_policy")]
    pub image_pull_policy: PullPolicy,

    /// Number of server pods when `autoscaling` is not set. Ignored while autoscaling is on.
    /// `kubectl scale rtc/NAME --replicas=N` writes this field.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// CPU and memory requests/limits of each server container.
    #[schemars(schema_with = "resources_schema")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Scale the server on open connections per pod. When absent, `replicas` pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Where the server keeps shared state (cross-pod broadcast, rooms, presence, rate limits,
    /// the notification queue). When absent, the operator runs a managed Redis with defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,

    /// Public routing with sticky sessions. When absent, the cluster is reachable only through
    /// its Service inside Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingSpec>,

    /// How clients and backends authenticate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Origins browsers may connect from (CORS_ORIGINS), for example https://app.example.com;
    /// `*` allows any origin.
    #[x_kube(validation = Rule::new("self.all(o, o == '*' || o.startsWith('https://') || o.startsWith('http://'))").message("corsOrigins entries must be * or http(s) origins such as https://app.example.com"))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub cors_origins: Vec<String>,

    /// Per-client event budgets enforced by every server pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitSpec>,

    /// Prometheus scraping and Grafana dashboards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,

    /// OpenTelemetry trace export from the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,

    /// Server process settings: environment label, logging, shutdown drain and heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSpec>,

    /// Extra environment variables for the server container. They win over the variables the
    /// operator derives from the rest of the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Extra variable sources of the server container (ConfigMaps or Secrets loaded whole).
    /// Variables the operator derives from the spec win over these; `env` wins over both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,

    /// Extra volumes of the server pods, for `volumeMounts` and `sidecars`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,

    /// Extra mounts of the server container (the root filesystem is read-only; `/tmp` is
    /// writable and taken).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,

    /// Extra containers that run next to the server in each pod, for example a log shipper.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Container>,

    /// Replacements for the server container's probes; each one given replaces the default
    /// entirely (liveness GET /health every 10 s, readiness GET /ready every 5 s, startup GET
    /// /health every 2 s up to 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<ProbeOverrides>,

    /// Notification rules from a ConfigMap key instead of the image's built-in rules: mounted
    /// read-only and passed to the server as RULES_FILE. A bad file stops the server at
    /// start-up with a one-line error naming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_rules: Option<ConfigMapKeyRef>,

    /// The `sms` notification channel over SMPP 3.4; its credentials come from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsSpec>,

    /// The official Socket.IO Admin UI across the cluster's pods; its credentials come from
    /// a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_ui: Option<AdminUiSpec>,

    /// Scheduling and metadata settings of the server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSpecOverrides>,

    /// PodDisruptionBudget for the server pods, so node drains take pods down one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudgetSpec>,
}

fn default_replicas() -> i32 {
    2
}

fn default_pull_policy() -> PullPolicy {
    PullPolicy::IfNotPresent
}

/// Kubernetes image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Pull on every pod start.
    Always,
    /// Never pull; the image must already be on the node.
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
            PullPolicy::Never => "Never",
        }
    }
}

/// A key in a Secret in the RealtimeCluster's namespace. The operator never reads it; the
/// server pods get it as an environment variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_true() -> bool {
    true
}

/// The server image of this operator version, for clusters that pin none.
pub fn default_image() -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

impl RealtimeCluster {
    /// The server image default this cluster keeps while `spec.image` is unset: the one pinned
    /// in its status, else this operator version's (which the next status write pins).
    pub fn pinned_default_image(&self) -> String {
        self.status.as_ref().and_then(|s| s.default_image.clone()).unwrap_or_else(default_image)
    }

    /// This cluster as the child builders should see it: `spec.image` filled in with the
    /// pinned default when unset.
    pub fn with_pinned_image(&self) -> RealtimeCluster {
        let mut rtc = self.clone();
        rtc.spec.image.get_or_insert_with(|| self.pinned_default_image());
        rtc
    }
}

impl RealtimeClusterSpec {
    /// The image the server pods run: the spec's, else the default for this operator version.
    pub fn server_image(&self) -> String {
        self.image.clone().unwrap_or_else(default_image)
    }
    /// Server settings with defaults applied.
    pub fn server_settings(&self) -> ServerSpec {
        self.server.clone().unwrap_or_default()
    }
    /// Monitoring settings with defaults applied.
    pub fn monitoring_settings(&self) -> MonitoringSpec {
        self.monitoring.clone().unwrap_or_default()
    }
    /// The managed Redis settings, or None when an external Redis is configured.
    pub fn managed_redis(&self) -> Option<ManagedRedisSpec> {
        match &self.redis {
            None => Some(ManagedRedisSpec::default()),
            Some(RedisSpec { external: Some(_), .. }) => None,
            Some(RedisSpec { managed, .. }) => Some(managed.clone().unwrap_or_default()),
        }
    }
    /// The external Redis settings, if any.
    pub fn external_redis(&self) -> Option<&ExternalRedisSpec> {
        self.redis.as_ref().and_then(|r| r.external.as_ref())
    }
    /// Disruption budget settings with defaults applied.
    pub fn disruption_budget_settings(&self) -> DisruptionBudgetSpec {
        self.disruption_budget.clone().unwrap_or_default()
    }
}

/// Repository of the default server image.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/switchyard-dev/switchyard-server";

/// The CRD as committed in `crds/realtimecluster.yaml` (what `crdgen` prints).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&RealtimeCluster::crd()).expect("CRD serializes to YAML");
    let yaml = quote_yaml11_booleans(&yaml);
    format!("# Generated by `cargo run -p switchyard-operator --bin crdgen`; do not edit.\n{yaml}")
}

/// Plain scalars that YAML 1.1 reads as booleans.
const YAML11_BOOLEANS: [&str; 16] =
    ["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"];

/// Quotes the plain scalars in `yaml` that YAML 1.1 would read as booleans. serde_yaml writes
/// YAML 1.2, where only `true` and `false` are booleans, but kubectl and Helm read YAML 1.1: the
/// `no` of `appendFsync`'s enum arrived as `false`, so that policy could never be set. Text inside
/// block scalars (`|-` descriptions) is left as it is.
fn quote_yaml11_booleans(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    // The indentation of the line that opened the block scalar we are in, if any.
    let mut block: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(opener) = block {
            if line.trim().is_empty() || indent > opener {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block = None;
        }
        let item = line.trim_start();
        let body = item.strip_prefix("- ").unwrap_or(item);
        let body_at = line.len() - body.len();
        // The value: after `key: `, or the whole body of a list item.
        let value_at = match body.find(": ") {
            Some(colon) => Some(body_at + colon + 2),
            None => (body.len() != item.len()).then_some(body_at),
        };
        match value_at {
            Some(at) if YAML11_BOOLEANS.contains(&&line[at..]) => {
                out.push_str(&line[..at]);
                out.push('\'');
                out.push_str(&line[at..]);
                out.push('\'');
            }
            _ => out.push_str(line),
        }
        out.push('\n');
        if [": |", ": |-", ": >", ": >-"].iter().any(|marker| line.ends_with(marker)) {
            block = Some(indent);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_booleans_are_quoted_outside_block_scalars() {
        let yaml = "enum:\n- everysec\n- no\n- 'yes'\nkey: off\nlist:\n- name: on\ndescription: |-\n  no\n  - no\nafter: N\nnote: not no\n";
        let quoted = quote_yaml11_booleans(yaml);
        assert_eq!(
            quoted,
            "enum:\n- everysec\n- 'no'\n- 'yes'\nkey: 'off'\nlist:\n- name: 'on'\ndescription: |-\n  no\n  - no\nafter: 'N'\nnote: not no\n"
        );
        assert!(crd_yaml().contains("- 'no'\n"), "appendFsync's `no` must reach kubectl as a string");
    }

    /// CI guard: the committed CRD must match the Rust types.
    #[test]
    fn committed_crd_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/realtimecluster.yaml");
        let committed = std::fs::read_to_string(path).expect("crds/realtimecluster.yaml exists");
        assert!(
            committed == crd_yaml(),
            "crds/realtimecluster.yaml is stale: run `cargo run -p switchyard-operator --bin crdgen > crds/realtimecluster.yaml`"
        );
    }

    #[test]
    fn defaults_in_code_match_the_schema() {
        // An empty spec deserializes through the same serde defaults the schema publishes.
        let spec: RealtimeClusterSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.image_pull_policy, PullPolicy::IfNotPresent);
        let a: AutoscalingSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(a, AutoscalingSpec::default());
        let s: ServerSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(s, ServerSpec::default());
        let m: MonitoringSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(m, MonitoringSpec::default());
        let r: ManagedRedisSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(r, ManagedRedisSpec::default());
    }

    #[test]
    fn an_unpinned_cluster_keeps_the_default_image_it_was_created_with() {
        let mut rtc = crate::fixtures::rtc("chat");
        assert_eq!(rtc.with_pinned_image().spec.image, Some(default_image()));
        rtc.status = Some(RealtimeClusterStatus {
            default_image: Some("ghcr.io/switchyard-dev/switchyard-server:0.0.9".into()),
            ..Default::default()
        });
        assert_eq!(
            rtc.with_pinned_image().spec.image.as_deref(),
            Some("ghcr.io/switchyard-dev/switchyard-server:0.0.9")
        );
        rtc.spec.image = Some("example.com/mine:1".into());
        assert_eq!(rtc.with_pinned_image().spec.image.as_deref(), Some("example.com/mine:1"));
    }

    #[test]
    fn crd_has_the_subresources_and_columns() {
        use kube::CustomResourceExt;
        let crd = RealtimeCluster::crd();
        assert_eq!(crd.spec.names.short_names, Some(vec!["rtc".to_string()]));
        let v = &crd.spec.versions[0];
        let sub = v.subresources.as_ref().unwrap();
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().unwrap();
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
        let cols: Vec<_> = v.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(cols, ["Ready", "Reconciled", "Desired", "Available", "Connections", "Endpoint", "Age"]);
    }
}
