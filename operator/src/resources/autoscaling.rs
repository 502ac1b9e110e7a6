//! Autoscaling on open connections: an autoscaling/v2 HPA on the Pods metric
//! `socket_active_connections`, or a KEDA ScaledObject with a Prometheus trigger. Never both:
//! KEDA creates and owns an HPA of its own.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec, MetricTarget,
    PodsMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::core::DynamicObject;
use serde_json::json;

use super::{child_meta, dynamic_child, scaled_object_resource, server_name};
use crate::crd::{AutoscalingMode, AutoscalingSpec, RealtimeCluster};

/// The per-pod gauge the autoscalers read.
pub const CONNECTIONS_METRIC: &str = "socket_active_connections";

/// Whether the spec asks for a KEDA ScaledObject.
pub fn wants_keda(rtc: &RealtimeCluster) -> bool {
    rtc.spec.autoscaling.as_ref().is_some_and(|a| a.mode == AutoscalingMode::Keda)
}

fn behavior(a: &AutoscalingSpec) -> HorizontalPodAutoscalerBehavior {
    HorizontalPodAutoscalerBehavior {
        scale_down: Some(HPAScalingRules {
            stabilization_window_seconds: Some(a.scale_down.stabilization_window_seconds),
            select_policy: Some("Min".into()),
            policies: Some(vec![HPAScalingPolicy {
                type_: "Pods".into(),
                value: a.scale_down.pods_per_period,
                period_seconds: a.scale_down.period_seconds,
            }]),
            ..Default::default()
        }),
        // The Kubernetes defaults, written out so the object says what it does.
        scale_up: Some(HPAScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: Some("Max".into()),
            policies: Some(vec![
                HPAScalingPolicy { type_: "Percent".into(), value: 100, period_seconds: 15 },
                HPAScalingPolicy { type_: "Pods".into(), value: 4, period_seconds: 15 },
            ]),
            ..Default::default()
        }),
    }
}

/// The HPA, in `hpa` mode.
pub fn hpa(rtc: &RealtimeCluster) -> Option<HorizontalPodAutoscaler> {
    let a = rtc.spec.autoscaling.as_ref().filter(|a| a.mode == AutoscalingMode::Hpa)?;
    Some(HorizontalPodAutoscaler {
        metadata: child_meta(rtc, server_name(rtc), "autoscaling"),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: server_name(rtc),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Pods".into(),
                pods: Some(PodsMetricSource {
                    metric: MetricIdentifier { name: CONNECTIONS_METRIC.into(), selector: None },
                    target: MetricTarget {
                        type_: "AverageValue".into(),
                        average_value: Some(Quantity(a.target_connections_per_pod.to_string())),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            behavior: Some(behavior(a)),
        }),
        ..Default::default()
    })
}

/// The PromQL KEDA evaluates: total connections of this cluster's pods. KEDA divides it by
/// the threshold (AverageValue) to get the pod count. `kubernetes_namespace` is the label the
/// operator's ServiceMonitor writes (the server's own `namespace` label is the Socket.IO one).
pub fn keda_query(rtc: &RealtimeCluster) -> String {
    format!(
        "sum({CONNECTIONS_METRIC}{{kubernetes_namespace=\"{}\",pod=~\"{}-[a-z0-9]+-[a-z0-9]+\"}})",
        rtc.namespace().unwrap_or_default(),
        server_name(rtc)
    )
}

/// The ScaledObject, in `keda` mode.
pub fn scaled_object(rtc: &RealtimeCluster) -> Option<DynamicObject> {
    let a = rtc.spec.autoscaling.as_ref().filter(|a| a.mode == AutoscalingMode::Keda)?;
    let keda = a.keda.as_ref()?;
    let spec = json!({
        "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": server_name(rtc) },
        "minReplicaCount": a.min_replicas,
        "maxReplicaCount": a.max_replicas,
        "advanced": { "horizontalPodAutoscalerConfig": { "behavior": behavior(a) } },
        "triggers": [{
            "type": "prometheus",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": keda.prometheus_server_address,
                "query": keda_query(rtc),
                "threshold": a.target_connections_per_pod.to_string(),
                "activationThreshold": keda.activation_connections.to_string(),
            }
        }]
    });
    Some(dynamic_child(rtc, &scaled_object_resource(), server_name(rtc), "autoscaling", spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{KedaSpec, ScaleDownSpec};
    use crate::fixtures::rtc;

    fn scaled(mode: AutoscalingMode) -> RealtimeCluster {
        let mut r = rtc("chat");
        r.spec.autoscaling = Some(AutoscalingSpec {
            mode,
            min_replicas: 3,
            max_replicas: 12,
            target_connections_per_pod: 500,
            scale_down: ScaleDownSpec { stabilization_window_seconds: 600, pods_per_period: 2, period_seconds: 60 },
            keda: Some(KedaSpec { prometheus_server_address: "http://prom:9090".into(), activation_connections: 5 }),
        });
        r
    }

    #[test]
    fn keda_example_in_monitoring_matches_what_the_operator_builds() {
        let example: serde_json::Value =
            serde_yaml::from_str(include_str!("../../../monitoring/keda/scaledobject.yaml")).unwrap();
        let mut r = rtc("chat");
        r.spec.autoscaling = Some(AutoscalingSpec {
            mode: AutoscalingMode::Keda,
            keda: Some(KedaSpec {
                prometheus_server_address: "http://prometheus-operated.monitoring.svc:9090".into(),
                activation_connections: 0,
            }),
            ..Default::default()
        });
        let built = scaled_object(&r).unwrap();
        assert_eq!(example["spec"], built.data["spec"]);
        assert_eq!(example["metadata"]["namespace"], "apps");
    }

    #[test]
    fn no_autoscaling_no_autoscaler() {
        assert!(hpa(&rtc("chat")).is_none());
        assert!(scaled_object(&rtc("chat")).is_none());
    }

    #[test]
    fn hpa_targets_connections_per_pod() {
        let h = hpa(&scaled(AutoscalingMode::Hpa)).unwrap();
        let spec = h.spec.unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 12));
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!(spec.scale_target_ref.name, "chat");
        let pods = spec.metrics.unwrap()[0].pods.clone().unwrap();
        assert_eq!(pods.metric.name, "socket_active_connections");
        assert_eq!(pods.target.type_, "AverageValue");
        assert_eq!(pods.target.average_value.unwrap().0, "500");
        let down = spec.behavior.unwrap().scale_down.unwrap();
        assert_eq!(down.stabilization_window_seconds, Some(600));
        assert_eq!(down.policies.unwrap()[0].value, 2);
        assert!(scaled_object(&scaled(AutoscalingMode::Hpa)).is_none());
    }

    #[test]
    fn keda_mode_builds_a_scaled_object_instead() {
        let r = scaled(AutoscalingMode::Keda);
        assert!(hpa(&r).is_none());
        let so = scaled_object(&r).unwrap();
        assert_eq!(so.types.as_ref().unwrap().api_version, "keda.sh/v1alpha1");
        let spec = &so.data["spec"];
        assert_eq!(spec["minReplicaCount"], 3);
        assert_eq!(spec["maxReplicaCount"], 12);
        let trigger = &spec["triggers"][0];
        assert_eq!(trigger["type"], "prometheus");
        assert_eq!(trigger["metadata"]["threshold"], "500");
        assert_eq!(trigger["metadata"]["activationThreshold"], "5");
        assert_eq!(
            trigger["metadata"]["query"],
            "sum(socket_active_connections{kubernetes_namespace=\"apps\",pod=~\"chat-[a-z0-9]+-[a-z0-9]+\"})"
        );
        let behavior = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
        assert_eq!(behavior["scaleDown"]["stabilizationWindowSeconds"], 600);
    }
}
