//! Autoscaling on open connections: the HPA or KEDA settings.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
