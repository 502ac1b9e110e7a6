//! The `RealtimeCluster` custom resource (`switchyard.dev/v1alpha1`).
//!
//! Every field carries a `///` doc comment: they become the OpenAPI descriptions that
//! `kubectl explain rtc.spec...` prints. Defaults live in the schema (through `serde(default)`)
//! and are mirrored by `Default` impls so code that reads an absent section sees the same values.
//! Cross-field checks are CEL rules, evaluated by the API server on `kubectl apply`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Server pods that are ready"
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
        description = "Where clients connect"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // The Service takes the cluster's name, so it must be a DNS label starting with a letter;
    // the Redis StatefulSet `<name>-redis` must stay within 52 characters, or its pods' revision
    // label would pass 63.
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 46").message("metadata.name must start with a letter, hold only lowercase letters, digits and '-', and be at most 46 characters (it names the Service and the Redis StatefulSet)")
)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeClusterSpec {
    /// Server container image. Defaults to ghcr.io/switchyard-dev/switchyard-server at the
    /// operator's own version, so upgrading the operator upgrades clusters that do not pin one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image pull policy for the server and managed Redis containers.
    #[serde(default = "default_pull_policy")]
    pub image_pull_policy: PullPolicy,

    /// Number of server pods when `autoscaling` is not set. Ignored while autoscaling is on.
    /// `kubectl scale rtc/NAME --replicas=N` writes this field.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// CPU and memory requests/limits of each server container.
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

    /// The `sms` notification channel over SMPP 3.4; its credentials come from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsSpec>,

    /// Extra environment variables for the server container. They win over the variables the
    /// operator derives from the rest of the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

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

/// Horizontal autoscaling on the per-pod gauge `socket_active_connections`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas").field_path(".minReplicas"),
    validation = Rule::new("self.mode != 'keda' || has(self.keda)").message("autoscaling.keda (with prometheusServerAddress) is required when autoscaling.mode is keda").field_path(".mode")
)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Which autoscaler to create: `hpa` (an autoscaling/v2 HorizontalPodAutoscaler reading the
    /// Pods metric through a custom-metrics adapter such as prometheus-adapter) or `keda` (a KEDA
    /// ScaledObject with a Prometheus trigger). Never both.
    #[serde(default)]
    pub mode: AutoscalingMode,

    /// Fewest server pods the autoscaler keeps.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,

    /// Most server pods the autoscaler may run.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Average open connections per pod the autoscaler aims for (must be at least 1).
    #[serde(default = "default_target_connections")]
    #[schemars(range(min = 1))]
    pub target_connections_per_pod: i64,

    /// How fast the autoscaler removes pods. Removing a pod disconnects its clients, so the
    /// defaults are conservative: wait 5 minutes, then remove at most one pod every 2 minutes.
    #[serde(default)]
    pub scale_down: ScaleDownSpec,

    /// KEDA settings; required when `mode` is `keda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keda: Option<KedaSpec>,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            mode: AutoscalingMode::default(),
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            target_connections_per_pod: default_target_connections(),
            scale_down: ScaleDownSpec::default(),
            keda: None,
        }
    }
}

fn default_min_replicas() -> i32 {
    2
}
fn default_max_replicas() -> i32 {
    10
}
fn default_target_connections() -> i64 {
    1000
}

/// The autoscaler implementation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalingMode {
    /// autoscaling/v2 HorizontalPodAutoscaler on the Pods metric `socket_active_connections`.
    #[default]
    Hpa,
    /// KEDA ScaledObject with a Prometheus trigger (KEDA creates and owns the HPA).
    Keda,
}

/// Scale-down behaviour of the autoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownSpec {
    /// Seconds the autoscaler looks back before removing pods (0 to 3600).
    #[serde(default = "default_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: i32,

    /// Most pods removed per `periodSeconds`.
    #[serde(default = "default_pods_per_period")]
    #[schemars(range(min = 1))]
    pub pods_per_period: i32,

    /// Length of the scale-down period in seconds (1 to 1800).
    #[serde(default = "default_scale_down_period")]
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

impl Default for ScaleDownSpec {
    fn default() -> Self {
        Self {
            stabilization_window_seconds: default_stabilization(),
            pods_per_period: default_pods_per_period(),
            period_seconds: default_scale_down_period(),
        }
    }
}

fn default_stabilization() -> i32 {
    300
}
fn default_pods_per_period() -> i32 {
    1
}
fn default_scale_down_period() -> i32 {
    120
}

/// KEDA ScaledObject settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KedaSpec {
    /// Address of the Prometheus that scrapes the server pods, for example
    /// http://prometheus-operated.monitoring.svc:9090.
    #[schemars(length(min = 1))]
    pub prometheus_server_address: String,

    /// Total connections below which KEDA scales the Deployment to `minReplicas` and stops
    /// evaluating (KEDA's activationThreshold). 0 keeps the autoscaler always active.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub activation_connections: i64,
}

/// Shared state backend: exactly one of `managed` or `external`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!(has(self.managed) && has(self.external))").message("redis.managed and redis.external are mutually exclusive: set one of them"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// A Redis StatefulSet run by the operator, with append-only-file persistence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedisSpec>,

    /// A Redis you run yourself; its URL (redis://host:6379 or rediss://...) is read by the pods
    /// from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedisSpec>,
}

/// A Redis run by the operator as a one-pod StatefulSet behind a Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedisSpec {
    /// Redis container image.
    #[serde(default = "default_redis_image")]
    pub image: String,

    /// Persistent volume for the Redis data directory.
    #[serde(default)]
    pub storage: RedisStorageSpec,

    /// Durability settings.
    #[serde(default)]
    pub persistence: RedisPersistenceSpec,

    /// CPU and memory requests/limits of the Redis container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ManagedRedisSpec {
    fn default() -> Self {
        Self {
            image: default_redis_image(),
            storage: RedisStorageSpec::default(),
            persistence: RedisPersistenceSpec::default(),
            resources: None,
        }
    }
}

fn default_redis_image() -> String {
    "docker.io/library/redis:7.4".into()
}

/// Volume settings of the managed Redis.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisStorageSpec {
    /// Size of the PersistentVolumeClaim, for example 1Gi.
    #[serde(default = "default_storage_size")]
    pub size: String,

    /// StorageClass of the claim; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,

    /// Delete the claim (and so the data) when the RealtimeCluster is deleted. Off by default.
    #[serde(default)]
    pub delete_claim_on_delete: bool,
}

impl Default for RedisStorageSpec {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None, delete_claim_on_delete: false }
    }
}

fn default_storage_size() -> String {
    "1Gi".into()
}

/// Redis durability.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisPersistenceSpec {
    /// Keep data on a PersistentVolumeClaim with the append-only file on. When false, Redis runs
    /// on an emptyDir without AOF and loses its data with the pod.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// AOF fsync policy: `everysec` (at most one second of writes lost), `always` or `no`.
    #[serde(default)]
    pub append_fsync: AppendFsync,
}

impl Default for RedisPersistenceSpec {
    fn default() -> Self {
        Self { enabled: true, append_fsync: AppendFsync::default() }
    }
}

/// Redis `appendfsync` policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppendFsync {
    /// fsync once per second.
    #[default]
    Everysec,
    /// fsync after every write.
    Always,
    /// Leave fsync to the OS.
    No,
}

impl AppendFsync {
    /// The value of redis.conf `appendfsync`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppendFsync::Everysec => "everysec",
            AppendFsync::Always => "always",
            AppendFsync::No => "no",
        }
    }
}

/// A Redis outside the operator's control.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedisSpec {
    /// Secret key holding the Redis URL, for example redis://:password@redis.example:6379.
    pub secret_ref: SecretKeyRef,
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

/// Public routing to the server pods with sticky sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!(has(self.ingress) && has(self.gateway))").message("routing.ingress and routing.gateway are mutually exclusive: set one of them"))]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Public DNS name clients connect to, for example chat.example.com.
    #[x_kube(validation = Rule::new("self.matches('^(\\\\*\\\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("routing.host must be a lowercase DNS name such as chat.example.com"))]
    #[schemars(length(min = 1, max = 253))]
    pub host: String,

    /// TLS termination at the Ingress. With a Gateway, TLS is configured on the Gateway listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Route through an Ingress controller (the default when neither ingress nor gateway is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// Route through a Gateway API HTTPRoute attached to an existing Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,

    /// Cookie that pins a client to one pod; Socket.IO's HTTP long-polling needs it.
    #[serde(default)]
    pub sticky: StickySpec,

    /// Proxy read/send timeout in seconds for long-lived WebSocket connections. The operator
    /// never sets less than the server's ping interval plus ping timeout plus a margin.
    #[serde(default = "default_proxy_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: i32,
}

fn default_proxy_timeout() -> i32 {
    3600
}

/// Ingress TLS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret of type kubernetes.io/tls holding the certificate for `host`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Ingress settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// IngressClass name; the cluster default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,

    /// Which controller's annotations to write for cookie affinity and timeouts.
    #[serde(default)]
    pub kind: IngressKind,

    /// Extra annotations for the Ingress (they win over the operator's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Ingress controller flavour.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IngressKind {
    /// ingress-nginx: cookie affinity and proxy timeouts as Ingress annotations.
    #[default]
    Nginx,
    /// Traefik: sticky cookie as Service annotations.
    Traefik,
}

/// Gateway API settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The Gateway the HTTPRoute attaches to.
    pub parent_ref: GatewayParentRef,

    /// HTTPRoute request timeout (Gateway API duration, for example 0s for none). Left out when
    /// unset, since some implementations reject timeouts. Long-polling requests last up to the
    /// ping interval, so a timeout below it cuts them.
    #[x_kube(validation = Rule::new("self.matches('^([0-9]{1,5}(h|m|s|ms)){1,4}$')").message("routing.gateway.requestTimeout must be a Gateway API duration such as 0s, 90s or 1h"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
}

/// Reference to a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Gateway name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Gateway namespace; the RealtimeCluster's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Session-affinity cookie.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickySpec {
    /// Cookie name.
    #[serde(default = "default_cookie_name")]
    #[schemars(length(min = 1, max = 64))]
    pub cookie_name: String,

    /// Cookie lifetime in seconds.
    #[serde(default = "default_cookie_max_age")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: i64,
}

impl Default for StickySpec {
    fn default() -> Self {
        Self { cookie_name: default_cookie_name(), max_age_seconds: default_cookie_max_age() }
    }
}

fn default_cookie_name() -> String {
    "switchyard-affinity".into()
}
fn default_cookie_max_age() -> i64 {
    172_800
}

/// Authentication of Socket.IO clients (JWT) and backend callers (API keys).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.jwtSecretRef), has(self.publicKeySecretRef), has(self.jwksUrl)].filter(x, x).size() <= 1").message("auth.jwtSecretRef, auth.publicKeySecretRef and auth.jwksUrl are mutually exclusive: set one of them"))]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key with the HS256 signing secret (JWT_SECRET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_ref: Option<SecretKeyRef>,

    /// Secret key with a PEM public key for RS256/ES256 tokens (JWT_PUBLIC_KEY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_secret_ref: Option<SecretKeyRef>,

    /// JWKS URL the servers fetch signing keys from (JWT_JWKS_URL).
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("auth.jwksUrl must be an http(s) URL"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub jwks_url: Option<String>,

    /// Required `iss` claim (JWT_ISSUER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,

    /// Required `aud` claim (JWT_AUDIENCE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,

    /// Secret key with comma-separated API keys for backend callers (SERVICE_API_KEYS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_api_keys_secret_ref: Option<SecretKeyRef>,
}

/// Per-client rate limits, each `<count>/<seconds>s` (for example 30/10s). Unset values keep
/// the server's defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Chat messages (RATE_LIMIT_MESSAGE).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.message must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub message: Option<String>,

    /// Typing indicators (RATE_LIMIT_TYPING).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.typing must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub typing: Option<String>,

    /// Read receipts (RATE_LIMIT_READ).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.read must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub read: Option<String>,

    /// Room creation with getOrCreateRoom (RATE_LIMIT_ROOM).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.room must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub room: Option<String>,

    /// History and presence queries (RATE_LIMIT_QUERY).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.query must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub query: Option<String>,

    /// Over-budget rejections before a client is blocked (RATE_LIMIT_WARNINGS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub warnings: Option<i32>,

    /// How long a blocked client stays blocked, in seconds (RATE_LIMIT_BLOCK_SECONDS), 1 to
    /// 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub block_seconds: Option<i32>,
}

/// Metrics scraping and dashboards.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Prometheus Operator ServiceMonitor for the server pods.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,

    /// Grafana dashboard ConfigMap for the Grafana sidecar.
    #[serde(default)]
    pub grafana_dashboard: GrafanaDashboardSpec,
}

/// ServiceMonitor settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create a ServiceMonitor. It is created only while the monitoring.coreos.com CRDs exist;
    /// otherwise the pods still carry prometheus.io/scrape annotations.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Scrape interval, for example 30s.
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h|d|w|y))+$')").message("monitoring.serviceMonitor.interval must be a Prometheus duration such as 30s or 1m"))]
    #[serde(default = "default_scrape_interval")]
    pub interval: String,

    /// Extra labels, for example `release: kube-prometheus-stack` so that Prometheus selects it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        Self { enabled: true, interval: default_scrape_interval(), labels: BTreeMap::new() }
    }
}

fn default_scrape_interval() -> String {
    "30s".into()
}

/// Grafana dashboard settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaDashboardSpec {
    /// Create the dashboard ConfigMap.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Extra labels on the ConfigMap. `grafana_dashboard: "1"` is always set, matching the
    /// kube-prometheus-stack sidecar defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for GrafanaDashboardSpec {
    fn default() -> Self {
        Self { enabled: true, labels: BTreeMap::new() }
    }
}

/// OpenTelemetry tracing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    /// OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT), for example http://otel-collector:4317.
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("tracing.otlpEndpoint must be an http(s) URL"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,

    /// Fraction of traces sampled, 0 to 1 (OTEL_TRACES_SAMPLER_ARG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: Option<f64>,

    /// Service name on the spans (OTEL_SERVICE_NAME); the RealtimeCluster's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_name: Option<String>,
}

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

/// A rate-limit budget, `<count>/<seconds>s`, with numbers small enough for the server's
/// parser (a count above u32 would be refused at start-up).
const BUDGET_RULE: &str = "self.matches('^[1-9][0-9]{0,8}/[1-9][0-9]{0,8}s$')";

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

fn default_true() -> bool {
    true
}

/// Observed state, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, RedisReady, ServerAvailable, RoutingReady and AutoscalingReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Server pods that exist (the scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,

    /// Server pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Label selector of the server pods (the scale subresource reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Where clients connect: the public URL with routing, else the in-cluster Service URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Open client connections: the autoscaler's current average per pod times the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
}

/// Conditions as a list-map keyed by `type`, so server-side apply merges them per type.
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    serde_json::from_value(serde_json::json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": { "type": "string", "format": "date-time", "description": "When the status last changed." },
                "message": { "type": "string", "description": "Human-readable details." },
                "observedGeneration": { "type": "integer", "format": "int64", "description": "The generation the condition was computed for." },
                "reason": { "type": "string", "description": "CamelCase reason for the status." },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"], "description": "True, False or Unknown." },
                "type": { "type": "string", "description": "Condition type." }
            }
        }
    }))
    .expect("static schema is valid")
}

impl RealtimeClusterSpec {
    /// The image the server pods run: the spec's, else the default for this operator version.
    pub fn server_image(&self) -> String {
        self.image.clone().unwrap_or_else(|| format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION")))
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
        assert_eq!(cols, ["Ready", "Replicas", "Connections", "Endpoint", "Age"]);
    }
}
