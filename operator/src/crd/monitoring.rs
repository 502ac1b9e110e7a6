//! Metrics scraping, dashboards and tracing.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

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
