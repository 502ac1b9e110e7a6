//! Test builders shared by the unit tests.

use kube::core::ObjectMeta;

use crate::crd::{IngressSpec, RealtimeCluster, RealtimeClusterSpec, RoutingSpec};

/// A RealtimeCluster as the API server would return it after defaulting: namespace `apps`,
/// a fixed uid (so owner references can be asserted) and generation 1.
pub fn rtc(name: &str) -> RealtimeCluster {
    let spec: RealtimeClusterSpec = serde_json::from_value(serde_json::json!({})).expect("empty spec takes defaults");
    RealtimeCluster {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("apps".into()),
            uid: Some("11111111-2222-3333-4444-555555555555".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// [`rtc`] routed at `chat.example.com` without TLS, through `ingress` when given.
pub fn routed(name: &str, ingress: Option<IngressSpec>) -> RealtimeCluster {
    let mut r = rtc(name);
    r.spec.routing = Some(RoutingSpec {
        host: "chat.example.com".into(),
        tls: None,
        ingress,
        gateway: None,
        sticky: Default::default(),
        timeout_seconds: 3600,
    });
    r
}
