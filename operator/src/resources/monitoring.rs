//! Grafana dashboard ConfigMap and Prometheus Operator ServiceMonitor.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::DynamicObject;
use serde_json::json;

use super::{child_meta, dashboard_name, dynamic_child, selector_labels, server_name, service_monitor_resource};
use crate::crd::RealtimeCluster;

/// The dashboard JSON, compiled in from the one copy in `monitoring/`.
pub const DASHBOARD_JSON: &str = include_str!("../../../monitoring/grafana/dashboards/socket-dashboard.json");

/// Data key of the dashboard in its ConfigMap.
pub const DASHBOARD_KEY: &str = "switchyard-socket-dashboard.json";

/// The Grafana sidecar's default label selector (kube-prometheus-stack).
pub const GRAFANA_LABEL: (&str, &str) = ("grafana_dashboard", "1");

/// The dashboard ConfigMap, unless disabled.
pub fn dashboard(rtc: &RealtimeCluster) -> Option<ConfigMap> {
    let settings = rtc.spec.monitoring_settings().grafana_dashboard;
    if !settings.enabled {
        return None;
    }
    let mut metadata = child_meta(rtc, dashboard_name(rtc), "monitoring");
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(settings.labels.clone());
    labels.insert(GRAFANA_LABEL.0.into(), GRAFANA_LABEL.1.into());
    Some(ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(DASHBOARD_KEY.to_string(), DASHBOARD_JSON.to_string())])),
        ..Default::default()
    })
}

/// The ServiceMonitor, unless disabled.
///
/// The server labels its metrics with `namespace` = Socket.IO namespace. Prometheus would
/// rename that to `exported_namespace` because its target label `namespace` holds the
/// Kubernetes namespace, so the relabelings move things back: the Kubernetes namespace goes to
/// `kubernetes_namespace` (what prometheus-adapter and KEDA select on) and the Socket.IO
/// namespace stays `namespace` (what the dashboard filters on), in Kubernetes as outside it.
pub fn service_monitor(rtc: &RealtimeCluster) -> Option<DynamicObject> {
    let settings = rtc.spec.monitoring_settings().service_monitor;
    if !settings.enabled {
        return None;
    }
    let spec = json!({
        "selector": { "matchLabels": selector_labels(rtc, "server") },
        "endpoints": [{
            "port": "http",
            "path": "/metrics",
            "interval": settings.interval,
            "metricRelabelings": [
                { "sourceLabels": ["namespace"], "targetLabel": "kubernetes_namespace", "action": "replace" },
                { "sourceLabels": ["exported_namespace"], "targetLabel": "namespace", "action": "replace" },
                { "regex": "exported_namespace", "action": "labeldrop" }
            ]
        }]
    });
    let mut obj = dynamic_child(rtc, &service_monitor_resource(), server_name(rtc), "monitoring", spec);
    obj.metadata.labels.get_or_insert_with(BTreeMap::new).extend(settings.labels.clone());
    Some(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{GrafanaDashboardSpec, MonitoringSpec, ServiceMonitorSpec};
    use crate::fixtures::rtc;

    #[test]
    fn dashboard_config_map_carries_the_monitoring_json_and_sidecar_label() {
        let cm = dashboard(&rtc("chat")).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("chat-dashboard"));
        assert_eq!(cm.metadata.labels.as_ref().unwrap()["grafana_dashboard"], "1");
        let json: serde_json::Value = serde_json::from_str(&cm.data.unwrap()[DASHBOARD_KEY]).unwrap();
        assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()));
    }

    /// The metric names the server exports (the contract the dashboard is written against):
    /// the server's own list, so the two cannot drift.
    use switchyard_server::metrics::CONTRACT as SERVER_METRICS;

    /// Exported but not drawn: `switchyard_server_ready` is for the alert rules
    /// (`monitoring/prometheus/rules.yaml`); `switchyard_channel_ready` exists only where a
    /// channel with a session (sms) is configured, so a panel would be empty elsewhere, and
    /// `GET /ready/sms` answers the same with the reason.
    const NOT_DRAWN: [&str; 2] = ["switchyard_server_ready", "switchyard_channel_ready"];

    #[test]
    fn dashboard_has_the_rows_variables_and_only_known_metrics() {
        let dash: serde_json::Value = serde_json::from_str(DASHBOARD_JSON).unwrap();
        let panels = dash["panels"].as_array().unwrap();
        let rows: Vec<_> = panels.iter().filter(|p| p["type"] == "row").map(|p| p["title"].as_str().unwrap()).collect();
        assert_eq!(
            rows,
            ["Connection Status", "Connection Activity", "Messages", "Performance", "Auth & Errors", "Redis & Queue"]
        );
        let vars: Vec<_> =
            dash["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(vars, ["datasource", "environment", "namespace"]);

        let mut used = std::collections::BTreeSet::new();
        for panel in panels.iter().filter(|p| p["type"] != "row") {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                assert!(expr.contains("environment=~\"$environment\""), "{expr}");
                // Every identifier followed by `{` is a metric selector.
                for (i, _) in expr.match_indices('{') {
                    let name: String = expr[..i]
                        .chars()
                        .rev()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    if !name.is_empty() {
                        assert!(SERVER_METRICS.contains(&name.as_str()), "unknown metric {name} in {expr}");
                        used.insert(name);
                    }
                }
            }
        }
        let undrawn: Vec<_> = SERVER_METRICS.iter().filter(|m| !used.contains(**m) && !NOT_DRAWN.contains(m)).collect();
        assert!(undrawn.is_empty(), "metrics without a panel: {undrawn:?}");
    }

    #[test]
    fn monitoring_toggles_and_labels() {
        let mut r = rtc("chat");
        r.spec.monitoring = Some(MonitoringSpec {
            service_monitor: ServiceMonitorSpec {
                enabled: true,
                interval: "15s".into(),
                labels: BTreeMap::from([("release".to_string(), "kps".to_string())]),
            },
            grafana_dashboard: GrafanaDashboardSpec { enabled: false, labels: BTreeMap::new() },
        });
        assert!(dashboard(&r).is_none());
        let sm = service_monitor(&r).unwrap();
        assert_eq!(sm.metadata.labels.as_ref().unwrap()["release"], "kps");
        assert_eq!(sm.data["spec"]["endpoints"][0]["interval"], "15s");
        assert_eq!(sm.data["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], "server");
    }
}
