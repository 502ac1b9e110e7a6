//! Pure builders: `RealtimeCluster` spec in, Kubernetes objects out.
//!
//! Nothing here talks to the API server, so every child object can be unit tested. The
//! controller applies what [`desired`] returns with server-side apply and deletes the kinds it
//! returns `None` for.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Resource, ResourceExt};

use crate::crd::RealtimeCluster;

pub mod auth;
pub mod autoscaling;
pub mod config;
pub mod monitoring;
pub mod redis;
pub mod routing;
pub mod server;

/// The single server-side-apply field manager for every object the operator writes.
pub const MANAGER: &str = "switchyard-operator";
/// Port the server listens on (`WEBSOCKET_PORT`).
pub const SERVER_PORT: i32 = 3001;
/// Port of the managed Redis.
pub const REDIS_PORT: i32 = 6379;
/// Pod-template annotation carrying the hash of the server configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "switchyard.dev/config-hash";

const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label naming the RealtimeCluster a child belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// One kind of child object, as apply, prune and the controller's watches know it.
#[derive(Clone, Copy, Debug)]
pub struct ChildKind {
    /// The kind, as named in events, logs and metrics.
    pub kind: &'static str,
    /// Its API resource (group, version, plural).
    pub resource: fn() -> ApiResource,
    /// Watched, so that a change or deletion is repaired at once. The kinds of optional CRDs
    /// are not (a watch of a missing API fails); the periodic requeue checks them.
    pub watched: bool,
}

const fn built_in(kind: &'static str, resource: fn() -> ApiResource) -> ChildKind {
    ChildKind { kind, resource, watched: true }
}

const fn optional_crd(kind: &'static str, resource: fn() -> ApiResource) -> ChildKind {
    ChildKind { kind, resource, watched: false }
}

/// ConfigMap children: the server environment and the dashboard.
pub const CONFIG_MAP: ChildKind = built_in("ConfigMap", || ApiResource::erase::<ConfigMap>(&()));
/// Service children: the server's and the managed Redis's.
pub const SERVICE: ChildKind = built_in("Service", || ApiResource::erase::<Service>(&()));
/// The server Deployment.
pub const DEPLOYMENT: ChildKind = built_in("Deployment", || ApiResource::erase::<Deployment>(&()));
/// The managed Redis StatefulSet.
pub const STATEFUL_SET: ChildKind = built_in("StatefulSet", || ApiResource::erase::<StatefulSet>(&()));
/// The managed Redis NetworkPolicy.
pub const NETWORK_POLICY: ChildKind = built_in("NetworkPolicy", || ApiResource::erase::<NetworkPolicy>(&()));
/// The server PodDisruptionBudget.
pub const PDB: ChildKind = built_in("PodDisruptionBudget", || ApiResource::erase::<PodDisruptionBudget>(&()));
/// The Ingress.
pub const INGRESS: ChildKind = built_in("Ingress", || ApiResource::erase::<Ingress>(&()));
/// The HorizontalPodAutoscaler.
pub const HPA: ChildKind = built_in("HorizontalPodAutoscaler", || ApiResource::erase::<HorizontalPodAutoscaler>(&()));
/// The Gateway API HTTPRoute.
pub const HTTP_ROUTE: ChildKind = optional_crd("HTTPRoute", http_route_resource);
/// The KEDA ScaledObject.
pub const SCALED_OBJECT: ChildKind = optional_crd("ScaledObject", scaled_object_resource);
/// The Prometheus Operator ServiceMonitor.
pub const SERVICE_MONITOR: ChildKind = optional_crd("ServiceMonitor", service_monitor_resource);

/// Every kind of child the operator writes (the generated JWT Secret aside: it is created
/// once and never changed, watched or deleted).
pub const CHILD_KINDS: [ChildKind; 11] = [
    CONFIG_MAP,
    SERVICE,
    DEPLOYMENT,
    STATEFUL_SET,
    NETWORK_POLICY,
    PDB,
    INGRESS,
    HPA,
    HTTP_ROUTE,
    SCALED_OBJECT,
    SERVICE_MONITOR,
];

/// Which optional APIs the cluster serves; decided by discovery in the controller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `monitoring.coreos.com/v1` ServiceMonitor.
    pub service_monitor: bool,
    /// `gateway.networking.k8s.io/v1` HTTPRoute.
    pub http_route: bool,
    /// `keda.sh/v1alpha1` ScaledObject.
    pub scaled_object: bool,
}

/// Every child object for one RealtimeCluster; `None` means "must not exist".
#[derive(Clone, Debug)]
pub struct Desired {
    /// Non-secret server environment (`<name>-config`).
    pub config: ConfigMap,
    /// The server Deployment (`<name>`).
    pub deployment: Deployment,
    /// The server Service (`<name>`).
    pub service: Service,
    /// PodDisruptionBudget for the server pods.
    pub pdb: Option<PodDisruptionBudget>,
    /// Managed Redis StatefulSet (`<name>-redis`).
    pub redis_statefulset: Option<StatefulSet>,
    /// Managed Redis Service (`<name>-redis`).
    pub redis_service: Option<Service>,
    /// NetworkPolicy admitting only the server pods to the managed Redis (`<name>-redis`).
    pub redis_network_policy: Option<NetworkPolicy>,
    /// Ingress with cookie affinity.
    pub ingress: Option<Ingress>,
    /// Gateway API HTTPRoute with session persistence.
    pub http_route: Option<DynamicObject>,
    /// autoscaling/v2 HPA on `socket_active_connections`.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// KEDA ScaledObject.
    pub scaled_object: Option<DynamicObject>,
    /// Grafana dashboard ConfigMap (`<name>-dashboard`).
    pub dashboard: Option<ConfigMap>,
    /// Prometheus Operator ServiceMonitor.
    pub service_monitor: Option<DynamicObject>,
    /// Secrets to create once if missing, never to update: the JWT key (`<name>-jwt`) when
    /// the spec names none, the managed Redis's password (`<name>-redis-auth`). Each with
    /// what the event about its creation says.
    pub generated_secrets: Vec<(Secret, &'static str)>,
}

impl Desired {
    /// The optional children of `rtc`: kind, name and whether the spec asks for it. Those it
    /// does not ask for are pruned.
    pub fn optional(&self, rtc: &RealtimeCluster) -> [(ChildKind, String, bool); 10] {
        let (server, redis) = (server_name(rtc), redis_name(rtc));
        [
            (STATEFUL_SET, redis.clone(), self.redis_statefulset.is_some()),
            (SERVICE, redis.clone(), self.redis_service.is_some()),
            (NETWORK_POLICY, redis, self.redis_network_policy.is_some()),
            (PDB, server.clone(), self.pdb.is_some()),
            (INGRESS, server.clone(), self.ingress.is_some()),
            (HTTP_ROUTE, server.clone(), self.http_route.is_some()),
            (HPA, server.clone(), self.hpa.is_some()),
            (SCALED_OBJECT, server.clone(), self.scaled_object.is_some()),
            (CONFIG_MAP, dashboard_name(rtc), self.dashboard.is_some()),
            (SERVICE_MONITOR, server, self.service_monitor.is_some()),
        ]
    }
}

/// Builds every child object the spec asks for.
///
/// Kinds whose CRD is missing are left out even when asked for; the controller reports that
/// in the conditions instead.
pub fn desired(rtc: &RealtimeCluster, caps: Capabilities) -> Desired {
    let config = config::config_map(rtc);
    let hash = config::config_hash(&config);
    let wants_route = routing::wants_gateway(rtc);
    let wants_keda = autoscaling::wants_keda(rtc);
    Desired {
        deployment: server::deployment(rtc, &hash),
        service: server::service(rtc),
        config,
        pdb: server::pdb(rtc),
        redis_statefulset: redis::statefulset(rtc),
        redis_service: redis::service(rtc),
        redis_network_policy: redis::network_policy(rtc),
        ingress: routing::ingress(rtc),
        http_route: if wants_route && caps.http_route { routing::http_route(rtc) } else { None },
        hpa: autoscaling::hpa(rtc),
        scaled_object: if wants_keda && caps.scaled_object { autoscaling::scaled_object(rtc) } else { None },
        dashboard: monitoring::dashboard(rtc),
        service_monitor: if caps.service_monitor { monitoring::service_monitor(rtc) } else { None },
        generated_secrets: [
            auth::generated_secret(rtc).map(|s| (s, "no auth in the spec: a key shared by every pod")),
            redis::generated_password_secret(rtc).map(|s| (s, "the managed Redis's password")),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// Name of the server Deployment, Service, PDB, Ingress, HTTPRoute, HPA and ScaledObject.
pub fn server_name(rtc: &RealtimeCluster) -> String {
    rtc.name_any()
}

/// Name of the managed Redis StatefulSet and Service.
pub fn redis_name(rtc: &RealtimeCluster) -> String {
    format!("{}-redis", rtc.name_any())
}

/// Name of the server environment ConfigMap.
pub fn config_name(rtc: &RealtimeCluster) -> String {
    format!("{}-config", rtc.name_any())
}

/// Name of the Grafana dashboard ConfigMap.
pub fn dashboard_name(rtc: &RealtimeCluster) -> String {
    format!("{}-dashboard", rtc.name_any())
}

/// Labels that select the pods of one component.
pub fn selector_labels(rtc: &RealtimeCluster, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), "switchyard".to_string()),
        (INSTANCE_LABEL.to_string(), rtc.name_any()),
        (COMPONENT_LABEL.to_string(), component.to_string()),
    ])
}

/// Selector labels plus the managed-by label, for object metadata.
pub fn labels(rtc: &RealtimeCluster, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(rtc, component);
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGER.to_string());
    labels
}

/// The server pod selector as a string, for `status.selector` and the scale subresource.
pub fn server_selector_string(rtc: &RealtimeCluster) -> String {
    selector_labels(rtc, "server").iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Metadata of a child: name, namespace, labels and the controller owner reference that lets
/// the garbage collector delete it with its RealtimeCluster.
pub fn child_meta(rtc: &RealtimeCluster, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: rtc.namespace(),
        labels: Some(labels(rtc, component)),
        owner_references: rtc.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// A `DynamicObject` child of a kind the operator has no Rust types for.
pub fn dynamic_child(
    rtc: &RealtimeCluster,
    ar: &ApiResource,
    name: String,
    component: &str,
    spec: serde_json::Value,
) -> DynamicObject {
    let mut obj = DynamicObject::new(&name, ar);
    obj.metadata = child_meta(rtc, name, component);
    obj.data = serde_json::json!({ "spec": spec });
    obj
}

/// API resource of the Gateway API HTTPRoute.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// API resource of the KEDA ScaledObject.
pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"), "scaledobjects")
}

/// API resource of the Prometheus Operator ServiceMonitor.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::rtc;

    #[test]
    fn children_are_owned_by_their_cluster() {
        let rtc = rtc("chat");
        let meta = child_meta(&rtc, "chat".into(), "server");
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "RealtimeCluster");
        assert_eq!(owner.uid, "11111111-2222-3333-4444-555555555555");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("apps"));
    }

    #[test]
    fn every_optional_child_is_a_kind_of_the_table() {
        let r = rtc("chat");
        let d = desired(&r, Capabilities::default());
        for (kind, _, _) in d.optional(&r) {
            assert!(CHILD_KINDS.iter().any(|k| k.kind == kind.kind), "{} is not in CHILD_KINDS", kind.kind);
        }
        let watched: Vec<&str> = CHILD_KINDS.iter().filter(|k| k.watched).map(|k| k.kind).collect();
        assert_eq!(watched.len(), 8);
        for k in CHILD_KINDS {
            assert_eq!((k.resource)().kind, k.kind);
        }
    }

    #[test]
    fn selector_string_is_sorted_and_stable() {
        assert_eq!(
            server_selector_string(&rtc("chat")),
            "app.kubernetes.io/component=server,app.kubernetes.io/instance=chat,app.kubernetes.io/name=switchyard"
        );
    }

    #[test]
    fn optional_kinds_are_left_out_without_their_crds() {
        let mut rtc = rtc("chat");
        rtc.spec.autoscaling = Some(crate::crd::AutoscalingSpec {
            mode: crate::crd::AutoscalingMode::Keda,
            keda: Some(crate::crd::KedaSpec {
                prometheus_server_address: "http://prom:9090".into(),
                activation_connections: 0,
            }),
            ..Default::default()
        });
        let none = desired(&rtc, Capabilities::default());
        assert!(none.scaled_object.is_none());
        assert!(none.service_monitor.is_none());
        assert!(none.hpa.is_none(), "keda mode never creates an HPA of its own");
        let all = desired(&rtc, Capabilities { service_monitor: true, http_route: true, scaled_object: true });
        assert!(all.scaled_object.is_some());
        assert!(all.service_monitor.is_some());
    }
}
