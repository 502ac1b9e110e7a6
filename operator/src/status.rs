//! Status computation: what the children report, turned into conditions, counts and the
//! endpoint. Pure, so each condition's reasoning is unit tested.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::core::DynamicObject;

use crate::crd::{AutoscalingMode, IngressKind, RealtimeCluster, RealtimeClusterStatus};
use crate::resources::{self, Capabilities, SERVER_PORT, routing};

/// Condition types, in the order they are written.
pub const CONDITION_TYPES: [&str; 7] =
    ["Ready", "Reconciled", "Progressing", "RedisReady", "ServerAvailable", "RoutingReady", "AutoscalingReady"];

/// Reason of `Progressing=False` when the server rollout is stuck (the Deployment's own).
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// What the controller read back from the cluster after applying the children.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Optional APIs served by the cluster.
    pub caps: Capabilities,
    /// The server Deployment.
    pub deployment: Option<Deployment>,
    /// The managed Redis StatefulSet.
    pub redis: Option<StatefulSet>,
    /// The Ingress.
    pub ingress: Option<Ingress>,
    /// The HTTPRoute.
    pub http_route: Option<DynamicObject>,
    /// The HPA: the operator's in hpa mode, KEDA's `keda-hpa-<name>` in keda mode.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// The KEDA ScaledObject.
    pub scaled_object: Option<DynamicObject>,
}

/// One condition's verdict before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the condition holds.
    pub ok: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

fn verdict(ok: bool, reason: &str, message: impl Into<String>) -> Verdict {
    Verdict { ok, reason: reason.into(), message: message.into() }
}

/// RedisReady.
pub fn redis_verdict(rtc: &RealtimeCluster, o: &Observed) -> Verdict {
    if let Some(ext) = rtc.spec.external_redis() {
        return verdict(
            true,
            "ExternalRedis",
            format!("using the Redis URL in Secret {} key {}", ext.secret_ref.name, ext.secret_ref.key),
        );
    }
    let Some(sts) = &o.redis else {
        return verdict(false, "Pending", format!("StatefulSet {} does not exist yet", resources::redis_name(rtc)));
    };
    let ready = sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    if ready >= 1 {
        verdict(true, "Ready", "managed Redis is ready")
    } else {
        verdict(false, "NotReady", format!("0/1 pods of StatefulSet {} ready", sts.name_any()))
    }
}

/// ServerAvailable.
pub fn server_verdict(o: &Observed) -> Verdict {
    let Some(d) = &o.deployment else {
        return verdict(false, "Pending", "the server Deployment does not exist yet");
    };
    let status = d.status.clone().unwrap_or_default();
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if desired == 0 {
        return verdict(false, "ScaledToZero", "the server is scaled to 0 replicas");
    }
    let dep_available = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Available")
        .map(|c| (c.status == "True", c.message.clone().unwrap_or_default()));
    match dep_available {
        Some((true, _)) if available > 0 => verdict(true, "Available", format!("{ready}/{desired} server pods ready")),
        Some((_, msg)) => verdict(false, "Unavailable", format!("{ready}/{desired} server pods ready: {msg}")),
        None => verdict(false, "Unavailable", format!("{ready}/{desired} server pods ready")),
    }
}

/// Progressing: True while the server Deployment rolls out a new template; False when it has
/// finished, or with [`PROGRESS_DEADLINE_EXCEEDED`] when it is stuck.
pub fn progressing_verdict(o: &Observed) -> Verdict {
    let Some(d) = &o.deployment else {
        return verdict(true, "Creating", "the server Deployment is being created");
    };
    let status = d.status.clone().unwrap_or_default();
    let progress = status.conditions.iter().flatten().find(|c| c.type_ == "Progressing");
    if let Some(c) = progress
        && c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)
    {
        let message = c.message.clone().unwrap_or_default();
        return verdict(false, PROGRESS_DEADLINE_EXCEEDED, format!("the server rollout is stuck: {message}"));
    }
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if status.observed_generation < d.metadata.generation {
        return verdict(true, "RollingOut", "the Deployment controller has not acted on the new template yet");
    }
    if updated < desired || total > updated || available < updated {
        return verdict(
            true,
            "RollingOut",
            format!("{updated}/{desired} server pods run the current template, {available} available"),
        );
    }
    verdict(false, "RolloutComplete", format!("all {desired} server pods run the current template"))
}

/// RoutingReady.
pub fn routing_verdict(rtc: &RealtimeCluster, o: &Observed) -> Verdict {
    let Some(r) = &rtc.spec.routing else {
        return verdict(
            true,
            "NotConfigured",
            format!("no public routing; clients use Service {}", resources::server_name(rtc)),
        );
    };
    if r.gateway.is_some() {
        if !o.caps.http_route {
            return verdict(
                false,
                "GatewayAPINotInstalled",
                "the gateway.networking.k8s.io HTTPRoute CRD is not installed",
            );
        }
        let Some(route) = &o.http_route else {
            return verdict(false, "Pending", "the HTTPRoute does not exist yet");
        };
        let accepted = route.data["status"]["parents"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["conditions"].as_array().cloned().unwrap_or_default())
            .any(|c| c["type"] == "Accepted" && c["status"] == "True");
        return if accepted {
            verdict(true, "Accepted", format!("HTTPRoute accepted by its Gateway for {}", r.host))
        } else {
            verdict(false, "NotAccepted", "no Gateway has accepted the HTTPRoute yet")
        };
    }
    let Some(ing) = &o.ingress else {
        return verdict(false, "Pending", "the Ingress does not exist yet");
    };
    let addresses: Vec<String> = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip.or(i.hostname))
        .collect();
    if addresses.is_empty() {
        // Traefik leaves Ingress status alone unless told which address to publish, so with
        // its defaults this would wait forever (found on the node suite's ingress scenario).
        let hint = match r.ingress.as_ref().map(|i| i.kind) {
            Some(IngressKind::Traefik) => {
                " (Traefik writes one only with providers.kubernetesIngress.ingressEndpoint set: publishedService, ip or hostname)"
            }
            _ => "",
        };
        verdict(
            false,
            "WaitingForAddress",
            format!("no ingress controller has given Ingress {} an address yet{hint}", ing.name_any()),
        )
    } else {
        verdict(true, "AddressAssigned", format!("Ingress for {} served at {}", r.host, addresses.join(", ")))
    }
}

/// AutoscalingReady.
pub fn autoscaling_verdict(rtc: &RealtimeCluster, o: &Observed) -> Verdict {
    let Some(a) = &rtc.spec.autoscaling else {
        return verdict(true, "Disabled", format!("autoscaling off; replicas fixed at {}", rtc.spec.replicas));
    };
    if a.mode == AutoscalingMode::Keda {
        if !o.caps.scaled_object {
            return verdict(false, "KEDANotInstalled", "the keda.sh ScaledObject CRD is not installed");
        }
        let Some(so) = &o.scaled_object else {
            return verdict(false, "Pending", "the ScaledObject does not exist yet");
        };
        let ready = so.data["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
        return match ready {
            Some(c) if c["status"] == "True" => verdict(true, "ScaledObjectReady", "KEDA ScaledObject is ready"),
            Some(c) => {
                verdict(false, "ScaledObjectNotReady", c["message"].as_str().unwrap_or("KEDA reports not ready"))
            }
            None => verdict(false, "Pending", "KEDA has not reported on the ScaledObject yet"),
        };
    }
    let Some(hpa) = &o.hpa else {
        return verdict(false, "Pending", "the HorizontalPodAutoscaler does not exist yet");
    };
    let conditions = hpa.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if conditions.is_empty() {
        return verdict(false, "Pending", "the HorizontalPodAutoscaler has not reported yet");
    }
    // The first failing HPA condition explains the problem best (for example
    // FailedGetPodsMetric when no custom-metrics adapter serves socket_active_connections).
    for wanted in ["AbleToScale", "ScalingActive"] {
        if let Some(c) = conditions.iter().find(|c| c.type_ == wanted)
            && c.status != "True"
        {
            let reason = c.reason.clone().unwrap_or_else(|| format!("{wanted}False"));
            return verdict(false, &reason, c.message.clone().unwrap_or_default());
        }
    }
    verdict(
        true,
        "ScalingActive",
        format!("scaling on socket_active_connections, target {} per pod", a.target_connections_per_pod),
    )
}

/// Open connections: the autoscaler's current per-pod average times its current replicas.
pub fn connections_from_hpa(hpa: &HorizontalPodAutoscaler) -> Option<i64> {
    let status = hpa.status.as_ref()?;
    let replicas = i64::from(status.current_replicas.unwrap_or(0));
    status.current_metrics.iter().flatten().find_map(|m| {
        let avg = m
            .pods
            .as_ref()
            .and_then(|p| p.current.average_value.clone())
            .or_else(|| m.external.as_ref().and_then(|e| e.current.average_value.clone()))?;
        parse_quantity(&avg.0).map(|v| (v * replicas as f64).round() as i64)
    })
}

/// Parses the decimal Kubernetes quantities metric APIs produce (`1500m`, `12`, `3k`).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let (num, mult) = match q.chars().last()? {
        'm' => (&q[..q.len() - 1], 1e-3),
        'k' => (&q[..q.len() - 1], 1e3),
        'M' => (&q[..q.len() - 1], 1e6),
        'G' => (&q[..q.len() - 1], 1e9),
        _ => (q, 1.0),
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

/// The endpoint clients use.
pub fn endpoint(rtc: &RealtimeCluster) -> String {
    match &rtc.spec.routing {
        Some(r) => routing::public_endpoint(r),
        None => {
            format!("http://{}.{}.svc:{SERVER_PORT}", resources::server_name(rtc), rtc.namespace().unwrap_or_default())
        }
    }
}

/// The full status. Conditions keep their `lastTransitionTime` while their status is unchanged,
/// so writing the same status twice is a no-op for server-side apply.
pub fn compute(rtc: &RealtimeCluster, o: &Observed, now: &Time) -> RealtimeClusterStatus {
    let generation = rtc.metadata.generation;
    let progressing = progressing_verdict(o);
    let parts = [
        ("RedisReady", redis_verdict(rtc, o)),
        ("ServerAvailable", server_verdict(o)),
        ("RoutingReady", routing_verdict(rtc, o)),
        ("AutoscalingReady", autoscaling_verdict(rtc, o)),
    ];
    let waiting: Vec<&str> = parts.iter().filter(|(_, v)| !v.ok).map(|(t, _)| *t).collect();
    let ready = if progressing.reason == PROGRESS_DEADLINE_EXCEEDED {
        verdict(false, PROGRESS_DEADLINE_EXCEEDED, progressing.message.clone())
    } else if waiting.is_empty() {
        verdict(true, "Ready", "all components are ready")
    } else {
        verdict(false, "NotReady", format!("waiting for {}", waiting.join(", ")))
    };
    let reconciled =
        verdict(true, "Applied", format!("every child object matches generation {}", generation.unwrap_or_default()));
    let previous = rtc.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let conditions = [("Ready", ready), ("Reconciled", reconciled), ("Progressing", progressing)]
        .into_iter()
        .chain(parts)
        .map(|(t, v)| condition(t, v, generation, previous, now))
        .collect();

    let dep_status = o.deployment.as_ref().and_then(|d| d.status.clone()).unwrap_or_default();
    RealtimeClusterStatus {
        observed_generation: generation,
        conditions,
        desired_replicas: o.deployment.as_ref().and_then(|d| d.spec.as_ref()?.replicas),
        replicas: dep_status.replicas.unwrap_or(0),
        ready_replicas: dep_status.ready_replicas.unwrap_or(0),
        available_replicas: dep_status.available_replicas.unwrap_or(0),
        selector: Some(resources::server_selector_string(rtc)),
        endpoint: Some(endpoint(rtc)),
        connections: o.hpa.as_ref().and_then(connections_from_hpa),
        default_image: rtc.status.as_ref().and_then(|s| s.default_image.clone()),
    }
}

/// The status of a paused cluster: `Reconciled` turns False with reason `Paused`; everything
/// else keeps what was last observed (nothing is read while paused).
pub fn paused(rtc: &RealtimeCluster, now: &Time) -> RealtimeClusterStatus {
    let generation = rtc.metadata.generation;
    let mut status = rtc.status.clone().unwrap_or_default();
    let previous = std::mem::take(&mut status.conditions);
    let pause = verdict(
        false,
        "Paused",
        "spec.paused is true: the operator creates, changes and deletes nothing until it is false",
    );
    status.conditions = CONDITION_TYPES
        .iter()
        .filter_map(|&t| match t {
            "Reconciled" => Some(condition(t, pause.clone(), generation, &previous, now)),
            _ => previous.iter().find(|c| c.type_ == t).cloned(),
        })
        .collect();
    status
}

/// The status after a reconciliation that could not apply the spec: `Ready` and `Reconciled`
/// turn False with `reason` and `message`; the other conditions, the counts and
/// `observedGeneration` (the last generation applied in full) keep what was last observed.
pub fn failed(rtc: &RealtimeCluster, reason: &str, message: &str, now: &Time) -> RealtimeClusterStatus {
    let generation = rtc.metadata.generation;
    let mut status = rtc.status.clone().unwrap_or_default();
    let previous = std::mem::take(&mut status.conditions);
    let failure = verdict(false, reason, message);
    status.conditions = CONDITION_TYPES
        .iter()
        .filter_map(|&t| match t {
            "Ready" | "Reconciled" => Some(condition(t, failure.clone(), generation, &previous, now)),
            _ => previous.iter().find(|c| c.type_ == t).cloned(),
        })
        .collect();
    status.selector.get_or_insert_with(|| resources::server_selector_string(rtc));
    status.endpoint.get_or_insert_with(|| endpoint(rtc));
    status
}

fn condition(type_: &str, v: Verdict, generation: Option<i64>, previous: &[Condition], now: &Time) -> Condition {
    let status = if v.ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: v.reason,
        message: v.message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AutoscalingSpec, ExternalRedisSpec, IngressSpec, RedisSpec, SecretKeyRef};
    use crate::fixtures::{routed, rtc};
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus, StatefulSetStatus};
    use k8s_openapi::api::autoscaling::v2::MetricIdentifier;
    use k8s_openapi::api::autoscaling::v2::{
        HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricStatus, MetricValueStatus,
        PodsMetricStatus,
    };
    use k8s_openapi::api::networking::v1::{IngressLoadBalancerIngress, IngressLoadBalancerStatus, IngressStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn now() -> Time {
        Time("2026-01-01T00:00:00Z".parse().unwrap())
    }

    fn available_deployment(replicas: i32, ready: i32) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec { replicas: Some(replicas), ..Default::default() }),
            status: Some(DeploymentStatus {
                replicas: Some(replicas),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                conditions: Some(vec![DeploymentCondition {
                    type_: "Available".into(),
                    status: if ready > 0 { "True" } else { "False" }.into(),
                    message: Some("Deployment has minimum availability.".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ready_redis() -> StatefulSet {
        StatefulSet {
            status: Some(StatefulSetStatus { ready_replicas: Some(1), replicas: 1, ..Default::default() }),
            ..Default::default()
        }
    }

    fn cond<'a>(s: &'a RealtimeClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn everything_ready_means_ready() {
        let r = rtc("chat");
        let o =
            Observed { deployment: Some(available_deployment(2, 2)), redis: Some(ready_redis()), ..Default::default() };
        let s = compute(&r, &o, &now());
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "RoutingReady").reason, "NotConfigured");
        assert_eq!(cond(&s, "AutoscalingReady").reason, "Disabled");
        assert_eq!((s.replicas, s.ready_replicas), (2, 2));
        assert_eq!(s.endpoint.as_deref(), Some("http://chat.apps.svc:3001"));
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.conditions.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), CONDITION_TYPES);
    }

    #[test]
    fn unscheduled_pods_are_reported_not_hidden() {
        let r = rtc("chat");
        let o = Observed {
            deployment: Some(available_deployment(2, 0)),
            redis: Some(StatefulSet::default()),
            ..Default::default()
        };
        let s = compute(&r, &o, &now());
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").message, "waiting for RedisReady, ServerAvailable");
        assert_eq!(cond(&s, "ServerAvailable").reason, "Unavailable");
        assert!(cond(&s, "ServerAvailable").message.starts_with("0/2 server pods ready"));
        assert_eq!(cond(&s, "RedisReady").reason, "NotReady");
    }

    #[test]
    fn external_redis_is_ready_by_declaration() {
        let mut r = rtc("chat");
        r.spec.redis = Some(RedisSpec {
            managed: None,
            external: Some(ExternalRedisSpec { secret_ref: SecretKeyRef { name: "r".into(), key: "url".into() } }),
        });
        assert!(redis_verdict(&r, &Observed::default()).ok);
    }

    #[test]
    fn ingress_without_address_is_not_ready() {
        let r = routed("chat", None);
        let mut ing = Ingress::default();
        let mut o = Observed { ingress: Some(ing.clone()), ..Default::default() };
        let v = routing_verdict(&r, &o);
        assert_eq!(v.reason, "WaitingForAddress");
        assert!(!v.message.contains("Traefik"), "{}", v.message);
        ing.status = Some(IngressStatus {
            load_balancer: Some(IngressLoadBalancerStatus {
                ingress: Some(vec![IngressLoadBalancerIngress { ip: Some("10.0.0.5".into()), ..Default::default() }]),
            }),
        });
        o.ingress = Some(ing);
        let v = routing_verdict(&r, &o);
        assert!(v.ok);
        assert!(v.message.contains("10.0.0.5"));
        assert_eq!(endpoint(&r), "http://chat.example.com");
    }

    #[test]
    fn traefik_without_address_says_what_traefik_needs() {
        let r = routed("chat", Some(IngressSpec { kind: IngressKind::Traefik, ..Default::default() }));
        let o = Observed { ingress: Some(Ingress::default()), ..Default::default() };
        let v = routing_verdict(&r, &o);
        assert_eq!(v.reason, "WaitingForAddress");
        assert!(v.message.ends_with("(Traefik writes one only with providers.kubernetesIngress.ingressEndpoint set: publishedService, ip or hostname)"), "{}", v.message);
    }

    #[test]
    fn hpa_failures_surface_with_their_reason_and_connections_come_from_hpa_status() {
        let mut r = rtc("chat");
        r.spec.autoscaling = Some(AutoscalingSpec::default());
        let mut hpa = HorizontalPodAutoscaler {
            status: Some(HorizontalPodAutoscalerStatus {
                current_replicas: Some(3),
                desired_replicas: 3,
                conditions: Some(vec![
                    HorizontalPodAutoscalerCondition {
                        type_: "AbleToScale".into(),
                        status: "True".into(),
                        ..Default::default()
                    },
                    HorizontalPodAutoscalerCondition {
                        type_: "ScalingActive".into(),
                        status: "False".into(),
                        reason: Some("FailedGetPodsMetric".into()),
                        message: Some("unable to get metric socket_active_connections".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let o = Observed { hpa: Some(hpa.clone()), ..Default::default() };
        let v = autoscaling_verdict(&r, &o);
        assert_eq!((v.ok, v.reason.as_str()), (false, "FailedGetPodsMetric"));

        let status = hpa.status.as_mut().unwrap();
        status.conditions.as_mut().unwrap()[1].status = "True".into();
        status.current_metrics = Some(vec![MetricStatus {
            type_: "Pods".into(),
            pods: Some(PodsMetricStatus {
                metric: MetricIdentifier { name: "socket_active_connections".into(), selector: None },
                current: MetricValueStatus { average_value: Some(Quantity("1500500m".into())), ..Default::default() },
            }),
            ..Default::default()
        }]);
        let o = Observed { hpa: Some(hpa.clone()), ..Default::default() };
        assert!(autoscaling_verdict(&r, &o).ok);
        assert_eq!(connections_from_hpa(&hpa), Some(4502));
    }

    #[test]
    fn transition_time_only_moves_when_status_changes() {
        let mut r = rtc("chat");
        let o =
            Observed { deployment: Some(available_deployment(2, 2)), redis: Some(ready_redis()), ..Default::default() };
        let first = compute(&r, &o, &now());
        r.status = Some(first.clone());
        let later = Time("2026-01-01T01:00:00Z".parse().unwrap());
        let second = compute(&r, &o, &later);
        assert_eq!(first, second);
        let broken = Observed { deployment: Some(available_deployment(2, 0)), ..o };
        let third = compute(&r, &broken, &later);
        assert_eq!(cond(&third, "ServerAvailable").last_transition_time, later);
    }

    fn rolling(generation: i64, observed: i64, updated: i32, progress_reason: &str) -> Deployment {
        let mut d = available_deployment(2, 2);
        d.metadata.generation = Some(generation);
        let status = d.status.as_mut().unwrap();
        status.observed_generation = Some(observed);
        status.updated_replicas = Some(updated);
        status.conditions.as_mut().unwrap().push(DeploymentCondition {
            type_: "Progressing".into(),
            status: if progress_reason == PROGRESS_DEADLINE_EXCEEDED { "False" } else { "True" }.into(),
            reason: Some(progress_reason.into()),
            message: Some("ReplicaSet \"chat-5d8\" has timed out progressing.".into()),
            ..Default::default()
        });
        d
    }

    #[test]
    fn a_stuck_rollout_is_not_ready() {
        let r = rtc("chat");
        let o = Observed {
            deployment: Some(rolling(2, 2, 1, PROGRESS_DEADLINE_EXCEEDED)),
            redis: Some(ready_redis()),
            ..Default::default()
        };
        let s = compute(&r, &o, &now());
        assert_eq!(cond(&s, "ServerAvailable").status, "True", "the old pods still serve");
        assert_eq!(cond(&s, "Progressing").status, "False");
        assert_eq!(cond(&s, "Progressing").reason, PROGRESS_DEADLINE_EXCEEDED);
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").reason, PROGRESS_DEADLINE_EXCEEDED);
        assert!(cond(&s, "Ready").message.contains("has timed out progressing"), "{:?}", cond(&s, "Ready"));
    }

    #[test]
    fn a_rollout_in_flight_is_progressing_and_a_finished_one_is_not() {
        let r = rtc("chat");
        let mut o = Observed {
            deployment: Some(rolling(2, 2, 1, "ReplicaSetUpdated")),
            redis: Some(ready_redis()),
            ..Default::default()
        };
        let v = progressing_verdict(&o);
        assert_eq!((v.ok, v.reason.as_str()), (true, "RollingOut"));
        assert_eq!(v.message, "1/2 server pods run the current template, 2 available");
        o.deployment = Some(rolling(3, 2, 2, "NewReplicaSetAvailable"));
        assert_eq!(progressing_verdict(&o).reason, "RollingOut", "generation not observed yet");
        o.deployment = Some(rolling(3, 3, 2, "NewReplicaSetAvailable"));
        let s = compute(&r, &o, &now());
        assert_eq!(cond(&s, "Progressing").status, "False");
        assert_eq!(cond(&s, "Progressing").reason, "RolloutComplete");
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Reconciled").reason, "Applied");
        assert_eq!((s.desired_replicas, s.available_replicas), (Some(2), 2));
    }

    #[test]
    fn a_failed_apply_turns_ready_and_reconciled_false_and_keeps_the_rest() {
        let mut r = rtc("chat");
        // The first apply fails: there is no status yet.
        let s = failed(&r, "ApplyForbidden", "applying Deployment chat: exceeded quota", &now());
        assert_eq!(s.conditions.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), ["Ready", "Reconciled"]);
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Reconciled").reason, "ApplyForbidden");
        assert_eq!(cond(&s, "Reconciled").message, "applying Deployment chat: exceeded quota");
        assert_eq!(s.observed_generation, None);
        assert_eq!(s.endpoint.as_deref(), Some("http://chat.apps.svc:3001"));

        // A later edit fails: observedGeneration stays at the last applied one.
        let o =
            Observed { deployment: Some(available_deployment(2, 2)), redis: Some(ready_redis()), ..Default::default() };
        r.status = Some(compute(&r, &o, &now()));
        r.metadata.generation = Some(2);
        let s = failed(&r, "ChildInvalid", "applying Deployment chat: invalid", &now());
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.conditions.len(), CONDITION_TYPES.len());
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").observed_generation, Some(2));
        assert_eq!(cond(&s, "ServerAvailable").status, "True");
        assert_eq!(s.ready_replicas, 2);
    }

    #[test]
    fn a_paused_cluster_says_so_and_keeps_the_rest() {
        let mut r = rtc("chat");
        let o =
            Observed { deployment: Some(available_deployment(2, 2)), redis: Some(ready_redis()), ..Default::default() };
        r.status = Some(compute(&r, &o, &now()));
        r.spec.paused = true;
        r.metadata.generation = Some(2);
        let s = paused(&r, &now());
        assert_eq!(cond(&s, "Reconciled").status, "False");
        assert_eq!(cond(&s, "Reconciled").reason, "Paused");
        assert_eq!(cond(&s, "Ready").status, "True", "the running pods still serve");
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.conditions.len(), CONDITION_TYPES.len());
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("1500m"), Some(1.5));
        assert_eq!(parse_quantity("12"), Some(12.0));
        assert_eq!(parse_quantity("3k"), Some(3000.0));
        assert_eq!(parse_quantity("x"), None);
    }
}
