//! The managed Redis: a one-pod StatefulSet with the append-only file on, its Service, a
//! NetworkPolicy, and the password Secret the operator generates for it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, Secret, SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{REDIS_PORT, child_meta, redis_name, selector_labels};
use crate::crd::{ManagedRedisSpec, RealtimeCluster, SecretKeyRef};

/// Key of the generated Redis Secret that holds the password.
pub const PASSWORD_KEY: &str = "password";
/// Key of the generated Redis Secret that holds the URL the servers connect with.
pub const URL_KEY: &str = "url";

/// Name of the Secret with the managed Redis's password (`<name>-redis-auth`).
pub fn password_secret_name(rtc: &RealtimeCluster) -> String {
    format!("{}-auth", redis_name(rtc))
}

/// The server's `REDIS_URL`, password included, when the Redis is managed.
pub fn url_secret_ref(rtc: &RealtimeCluster) -> Option<SecretKeyRef> {
    rtc.spec.managed_redis()?;
    Some(SecretKeyRef { name: password_secret_name(rtc), key: URL_KEY.into() })
}

/// A new `<name>-redis-auth` Secret, when the Redis is managed: 32 random bytes as 64 hex
/// characters, and the URL with them. Redis needs a password even behind its NetworkPolicy:
/// not every network plugin enforces policies, and any pod that reaches an open Redis can
/// read every message and run any command. Like the JWT Secret, created once and never
/// rewritten (a new password would cut every server off until it restarted).
pub fn generated_password_secret(rtc: &RealtimeCluster) -> Option<Secret> {
    rtc.spec.managed_redis()?;
    let bytes: [u8; 32] = rand::random();
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let url = format!("redis://:{password}@{}:{REDIS_PORT}", redis_name(rtc));
    Some(Secret {
        metadata: child_meta(rtc, password_secret_name(rtc), "redis"),
        string_data: Some(BTreeMap::from([(PASSWORD_KEY.to_string(), password), (URL_KEY.to_string(), url)])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

/// The Redis server arguments: the password from the environment (the kubelet expands
/// `$(REDIS_PASSWORD)`, so it is not in the pod spec), AOF with the chosen fsync policy when
/// persistent, no persistence at all otherwise.
pub fn redis_args(managed: &ManagedRedisSpec) -> Vec<String> {
    let mut args: Vec<String> =
        ["redis-server", "--port", &REDIS_PORT.to_string(), "--requirepass", "$(REDIS_PASSWORD)"]
            .map(String::from)
            .to_vec();
    if managed.persistence.enabled {
        args.extend(
            ["--appendonly", "yes", "--appendfsync", managed.persistence.append_fsync.as_str(), "--dir", "/data"]
                .map(String::from),
        );
    } else {
        args.extend(["--appendonly", "no", "--save", ""].map(String::from));
    }
    args
}

/// The Redis StatefulSet, when the spec asks for a managed Redis.
pub fn statefulset(rtc: &RealtimeCluster) -> Option<StatefulSet> {
    let managed = rtc.spec.managed_redis()?;
    let selector = selector_labels(rtc, "redis");
    let persistent = managed.persistence.enabled;

    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: managed.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(managed.storage.size.clone()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let container = Container {
        name: "redis".into(),
        image: Some(managed.image.clone()),
        image_pull_policy: Some(rtc.spec.image_pull_policy.as_str().into()),
        args: Some(redis_args(&managed)),
        // REDISCLI_AUTH: the readiness probe's redis-cli authenticates with it.
        env: Some(
            ["REDIS_PASSWORD", "REDISCLI_AUTH"]
                .map(|name| EnvVar {
                    name: name.into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: password_secret_name(rtc),
                            key: PASSWORD_KEY.into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .to_vec(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction { command: Some(vec!["redis-cli".into(), "ping".into()]) }),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            ..Default::default()
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::String("redis".into()), host: None }),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Default::default()
        }),
        resources: Some(managed.resources.clone().unwrap_or_else(default_resources)),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]),
        // Meets the "restricted" Pod Security Standard, like the server pods.
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };

    Some(StatefulSet {
        metadata: child_meta(rtc, redis_name(rtc), "redis"),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(redis_name(rtc)),
            selector: LabelSelector { match_labels: Some(selector.clone()), ..Default::default() },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(if managed.storage.delete_claim_on_delete { "Delete" } else { "Retain" }.into()),
                when_scaled: Some("Retain".into()),
            }),
            volume_claim_templates: persistent.then(|| vec![claim]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(selector), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    // uid/gid 999 is the redis user of the official image.
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(999),
                        run_as_group: Some(999),
                        fs_group: Some(999),
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    volumes: (!persistent).then(|| {
                        vec![Volume { name: "data".into(), empty_dir: Some(Default::default()), ..Default::default() }]
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("50m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ])),
        ..Default::default()
    }
}

/// The headless Service that names the Redis pod (`<name>-redis:6379`).
pub fn service(rtc: &RealtimeCluster) -> Option<Service> {
    rtc.spec.managed_redis()?;
    Some(Service {
        metadata: child_meta(rtc, redis_name(rtc), "redis"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(rtc, "redis")),
            ports: Some(vec![ServicePort {
                name: Some("redis".into()),
                port: REDIS_PORT,
                target_port: Some(IntOrString::String("redis".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The NetworkPolicy of the managed Redis: only this cluster's server pods may connect, and
/// only to the Redis port. Redis holds the chat state, so no other pod in the cluster should
/// reach it, password or not. Enforced by the cluster's network plugin (most enforce
/// NetworkPolicy; with one that does not, the object has no effect and the password is what
/// keeps others out).
pub fn network_policy(rtc: &RealtimeCluster) -> Option<NetworkPolicy> {
    rtc.spec.managed_redis()?;
    Some(NetworkPolicy {
        metadata: child_meta(rtc, redis_name(rtc), "redis"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(rtc, "redis")),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(rtc, "server")),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(REDIS_PORT)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            }]),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ExternalRedisSpec, RedisPersistenceSpec, RedisSpec, SecretKeyRef};
    use crate::fixtures::rtc;

    #[test]
    fn managed_redis_is_the_default_and_has_aof_on_a_claim() {
        let r = rtc("chat");
        let sts = statefulset(&r).unwrap();
        assert_eq!(sts.metadata.name.as_deref(), Some("chat-redis"));
        let spec = sts.spec.unwrap();
        assert_eq!(spec.service_name.as_deref(), Some("chat-redis"));
        let args = spec.template.spec.unwrap().containers[0].args.clone().unwrap();
        let joined = args.join(" ");
        assert!(joined.contains("--appendonly yes"), "{joined}");
        assert!(joined.contains("--appendfsync everysec"), "{joined}");
        let claim = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(
            claim.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "1Gi"
        );
        assert_eq!(spec.persistent_volume_claim_retention_policy.unwrap().when_deleted.as_deref(), Some("Retain"));
        assert_eq!(service(&r).unwrap().spec.unwrap().cluster_ip.as_deref(), Some("None"));
    }

    #[test]
    fn redis_requires_the_generated_password_and_its_probe_uses_it() {
        let r = rtc("chat");
        let secret = generated_password_secret(&r).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("chat-redis-auth"));
        let data = secret.string_data.unwrap();
        let password = &data[PASSWORD_KEY];
        assert_eq!(password.len(), 64);
        assert_ne!(password, &generated_password_secret(&r).unwrap().string_data.unwrap()[PASSWORD_KEY], "random");
        assert_eq!(data[URL_KEY], format!("redis://:{password}@chat-redis:6379"));
        let container = &statefulset(&r).unwrap().spec.unwrap().template.spec.unwrap().containers[0];
        let args = container.args.clone().unwrap().join(" ");
        assert!(args.contains("--requirepass $(REDIS_PASSWORD)"), "{args}");
        for var in container.env.as_ref().unwrap() {
            let sel = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
            assert_eq!((sel.name.as_str(), sel.key.as_str()), ("chat-redis-auth", PASSWORD_KEY), "{}", var.name);
        }
        let names: Vec<_> = container.env.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["REDIS_PASSWORD", "REDISCLI_AUTH"]);
        assert_eq!(url_secret_ref(&r).map(|s| (s.name, s.key)), Some(("chat-redis-auth".into(), URL_KEY.into())));
    }

    #[test]
    fn only_the_server_pods_reach_redis() {
        let r = rtc("chat");
        let spec = network_policy(&r).unwrap().spec.unwrap();
        assert_eq!(spec.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/component"], "redis");
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
        let rule = &spec.ingress.unwrap()[0];
        let from = rule.from.as_ref().unwrap()[0].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(from, &selector_labels(&r, "server"));
        assert!(rule.from.as_ref().unwrap()[0].namespace_selector.is_none(), "same namespace only");
        assert_eq!(rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(REDIS_PORT)));
    }

    #[test]
    fn persistence_off_uses_an_empty_dir_without_aof() {
        let mut r = rtc("chat");
        r.spec.redis = Some(RedisSpec {
            managed: Some(ManagedRedisSpec {
                persistence: RedisPersistenceSpec { enabled: false, ..Default::default() },
                ..Default::default()
            }),
            external: None,
        });
        let spec = statefulset(&r).unwrap().spec.unwrap();
        assert!(spec.volume_claim_templates.is_none());
        assert!(spec.template.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0].empty_dir.is_some());
        assert!(spec.template.spec.unwrap().containers[0].args.clone().unwrap().join(" ").contains("--appendonly no"));
    }

    #[test]
    fn external_redis_means_no_redis_objects() {
        let mut r = rtc("chat");
        r.spec.redis = Some(RedisSpec {
            managed: None,
            external: Some(ExternalRedisSpec { secret_ref: SecretKeyRef { name: "r".into(), key: "u".into() } }),
        });
        assert!(statefulset(&r).is_none());
        assert!(service(&r).is_none());
        assert!(network_policy(&r).is_none());
        assert!(generated_password_secret(&r).is_none());
        assert!(url_secret_ref(&r).is_none());
    }
}
