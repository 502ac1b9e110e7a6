//! The observed state the operator writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeClusterStatus {
    /// The last `metadata.generation` applied in full. Behind `metadata.generation` while an
    /// edit cannot be applied (the Reconciled condition says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready (everything below holds), Reconciled (the current spec is applied), Progressing (a
    /// server rollout is under way; False with reason ProgressDeadlineExceeded when it is
    /// stuck), RedisReady, ServerAvailable, RoutingReady and AutoscalingReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Server pods wanted: the Deployment's replicas, set by spec.replicas or the autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,

    /// Server pods that exist (the scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,

    /// Server pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Server pods available to clients (ready for the Deployment's minReadySeconds).
    #[serde(default)]
    pub available_replicas: i32,

    /// Label selector of the server pods (the scale subresource reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Where clients connect: the public URL with routing, else the in-cluster Service URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Open client connections: the autoscaler's current average per pod times the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,

    /// The server image used while spec.image is unset: the operator's default when this
    /// cluster was created, kept across operator upgrades so that an upgrade does not restart
    /// every cluster at once. Remove it (`kubectl patch rtc NAME --subresource=status
    /// --type=json -p '[{"op":"remove","path":"/status/defaultImage"}]'`) to move this cluster
    /// to the running operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_image: Option<String>,
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
