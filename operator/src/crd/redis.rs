//! The shared state backend: a managed Redis or an external one.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::*;

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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedisSpec {
    /// Redis container image.
    #[x_kube(validation = Rule::new(IMAGE_RULE).message("redis.managed.image must be an image reference such as docker.io/library/redis:7.4"))]
    #[schemars(length(min = 1, max = 512))]
    #[serde(default = "default_redis_image")]
    pub image: String,

    /// Persistent volume for the Redis data directory.
    #[serde(default)]
    pub storage: RedisStorageSpec,

    /// Durability settings.
    #[serde(default)]
    pub persistence: RedisPersistenceSpec,

    /// CPU and memory requests/limits of the Redis container.
    #[schemars(schema_with = "resources_schema")]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisStorageSpec {
    /// Size of the PersistentVolumeClaim, for example 1Gi.
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("redis.managed.storage.size must be a positive quantity such as 1Gi or 500Mi"))]
    #[schemars(length(min = 1, max = 64))]
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
