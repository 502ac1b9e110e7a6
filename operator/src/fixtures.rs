//! Test builders shared by the unit tests.

use kube::core::ObjectMeta;

use crate::crd::{RealtimeCluster, RealtimeClusterSpec};

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
