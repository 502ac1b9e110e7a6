//! The server Deployment, its Service and its PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities as LinuxCapabilities, ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service,
    ServicePort, ServiceSpec, SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CONFIG_HASH_ANNOTATION, SERVER_PORT, child_meta, config_name, selector_labels, server_name};
use crate::crd::{IngressKind, RealtimeCluster, SecretKeyRef};

/// Volume and directory of the notification rules ConfigMap, and the file name it gets.
const RULES_VOLUME: &str = "notification-rules";
const RULES_DIR: &str = "/etc/switchyard/notifications";
const RULES_FILE_NAME: &str = "rules.yaml";

/// Seconds between the end of the server's drain and SIGKILL, on top of preStop + drain.
const TERMINATION_MARGIN_SECONDS: i64 = 10;

/// The server Deployment. `replicas` is left out while an autoscaler owns it.
pub fn deployment(rtc: &RealtimeCluster, config_hash: &str) -> Deployment {
    let spec = &rtc.spec;
    let server = spec.server_settings();
    let selector = selector_labels(rtc, "server");
    let pod = spec.pod.clone().unwrap_or_default();

    let mut pod_labels = pod.labels.clone();
    pod_labels.extend(selector.clone());

    let mut annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), SERVER_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    annotations.extend(pod.annotations.clone());
    annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string());

    let topology = if pod.topology_spread_constraints.is_empty() {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector { match_labels: Some(selector.clone()), ..Default::default() }),
            ..Default::default()
        }]
    } else {
        pod.topology_spread_constraints.clone()
    };

    let grace = i64::from(server.pre_stop_sleep_seconds)
        + i64::from(server.shutdown_grace_seconds)
        + TERMINATION_MARGIN_SECONDS;

    let probes = spec.probes.clone().unwrap_or_default();
    let mut volumes = vec![Volume { name: "tmp".into(), empty_dir: Some(Default::default()), ..Default::default() }];
    let mut mounts = vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() }];
    if let Some(rules) = &spec.notification_rules {
        volumes.push(Volume {
            name: RULES_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: rules.name.clone(),
                items: Some(vec![KeyToPath { key: rules.key.clone(), path: RULES_FILE_NAME.into(), mode: None }]),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: RULES_VOLUME.into(),
            mount_path: RULES_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    volumes.extend(spec.volumes.iter().cloned());
    mounts.extend(spec.volume_mounts.iter().cloned());

    let container = Container {
        name: "server".into(),
        image: Some(spec.server_image()),
        image_pull_policy: Some(spec.image_pull_policy.as_str().into()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: SERVER_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        // Later sources win: the operator's ConfigMap over the user's sources.
        env_from: Some(
            spec.env_from
                .iter()
                .cloned()
                .chain([EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource { name: config_name(rtc), optional: Some(false) }),
                    ..Default::default()
                }])
                .collect(),
        ),
        env: Some(secret_env(rtc)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        liveness_probe: Some(probes.liveness.unwrap_or_else(|| http_probe("/health", 10, 3))),
        readiness_probe: Some(probes.readiness.unwrap_or_else(|| http_probe("/ready", 5, 2))),
        startup_probe: Some(probes.startup.unwrap_or_else(|| http_probe("/health", 2, 30))),
        // A sleep (not an exec of `sleep`): the image has no shell. It lets endpoints and load
        // balancers stop sending new clients before the drain starts. None for 0: API servers
        // before 1.33 refuse a sleep of 0 seconds, and the Deployment would never apply.
        lifecycle: (server.pre_stop_sleep_seconds > 0).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: i64::from(server.pre_stop_sleep_seconds) }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(LinuxCapabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let containers = std::iter::once(container).chain(spec.sidecars.iter().cloned()).collect();

    Deployment {
        metadata: child_meta(rtc, server_name(rtc), "server"),
        spec: Some(DeploymentSpec {
            replicas: if spec.autoscaling.is_some() { None } else { Some(spec.replicas) },
            selector: LabelSelector { match_labels: Some(selector), ..Default::default() },
            // New pods first: a removed pod drops its clients, so never go below the count.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    termination_grace_period_seconds: Some(grace),
                    topology_spread_constraints: Some(topology),
                    priority_class_name: pod.priority_class_name.clone(),
                    node_selector: (!pod.node_selector.is_empty()).then(|| pod.node_selector.clone()),
                    tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
                    affinity: pod.affinity.clone(),
                    service_account_name: pod.service_account_name.clone(),
                    image_pull_secrets: (!pod.image_pull_secrets.is_empty()).then(|| pod.image_pull_secrets.clone()),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Secret-backed variables (never copied into the ConfigMap) and RULES_FILE, followed by the
/// user's `env`.
fn secret_env(rtc: &RealtimeCluster) -> Vec<EnvVar> {
    let spec = &rtc.spec;
    let mut env = Vec::new();
    let mut from_secret = |name: &str, r: &SecretKeyRef| {
        env.push(EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    };
    if let Some(ext) = spec.external_redis() {
        from_secret("REDIS_URL", &ext.secret_ref);
    }
    if let Some(managed) = super::redis::url_secret_ref(rtc) {
        from_secret("REDIS_URL", &managed);
    }
    if let Some(generated) = super::auth::generated_secret_ref(rtc) {
        from_secret("JWT_SECRET", &generated);
    }
    if let Some(auth) = &spec.auth {
        if let Some(r) = &auth.jwt_secret_ref {
            from_secret("JWT_SECRET", r);
        }
        if let Some(r) = &auth.public_key_secret_ref {
            from_secret("JWT_PUBLIC_KEY", r);
        }
        if let Some(r) = &auth.service_api_keys_secret_ref {
            from_secret("SERVICE_API_KEYS", r);
        }
    }
    if let Some(sms) = &spec.sms {
        from_secret("SMPP_SYSTEM_ID", &sms.system_id_secret_ref);
        from_secret("SMPP_PASSWORD", &sms.password_secret_ref);
    }
    if let Some(secret) = spec.admin_ui.as_ref().filter(|a| a.enabled).and_then(|a| a.credentials_secret.as_ref()) {
        from_secret("ADMIN_UI_USERNAME", &SecretKeyRef { name: secret.clone(), key: "username".into() });
        from_secret("ADMIN_UI_PASSWORD_HASH", &SecretKeyRef { name: secret.clone(), key: "passwordHash".into() });
    }
    // Not secret, but a path inside the pod: it belongs with the volume, not in the ConfigMap.
    if spec.notification_rules.is_some() {
        env.push(EnvVar {
            name: "RULES_FILE".into(),
            value: Some(format!("{RULES_DIR}/{RULES_FILE_NAME}")),
            ..Default::default()
        });
    }
    env.extend(spec.env.iter().cloned());
    env
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), Quantity("512Mi".into()))])),
        ..Default::default()
    }
}

/// The server Service. Traefik reads its sticky-cookie settings from Service annotations.
pub fn service(rtc: &RealtimeCluster) -> Service {
    let mut metadata = child_meta(rtc, server_name(rtc), "server");
    if let Some(routing) = &rtc.spec.routing
        && routing.gateway.is_none()
        && routing.ingress.as_ref().is_some_and(|i| i.kind == IngressKind::Traefik)
    {
        let p = "traefik.ingress.kubernetes.io/service.sticky.cookie";
        metadata.annotations = Some(BTreeMap::from([
            (p.to_string(), "true".to_string()),
            (format!("{p}.name"), routing.sticky.cookie_name.clone()),
            (format!("{p}.httponly"), "true".to_string()),
            (format!("{p}.samesite"), "lax".to_string()),
            (format!("{p}.secure"), routing.tls.is_some().to_string()),
            (format!("{p}.maxage"), routing.sticky.max_age_seconds.to_string()),
        ]));
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(rtc, "server")),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVER_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                app_protocol: Some("http".into()),
                ..Default::default()
            }]),
            // In-cluster clients that use HTTP long-polling need to stay on one pod too.
            session_affinity: Some("ClientIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// PodDisruptionBudget, unless disabled.
pub fn pdb(rtc: &RealtimeCluster) -> Option<PodDisruptionBudget> {
    let settings = rtc.spec.disruption_budget_settings();
    settings.enabled.then(|| PodDisruptionBudget {
        metadata: child_meta(rtc, server_name(rtc), "server"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(settings.max_unavailable)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(rtc, "server")), ..Default::default() }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AuthSpec, AutoscalingSpec, IngressSpec, PodSpecOverrides, ServerSpec};
    use crate::fixtures::{routed, rtc};

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    #[test]
    fn extra_sources_volumes_sidecars_and_probes_reach_the_pod() {
        let mut r = rtc("chat");
        let extra: crate::crd::RealtimeClusterSpec = serde_json::from_value(serde_json::json!({
            "envFrom": [{"secretRef": {"name": "team-env"}}],
            "volumes": [{"name": "certs", "secret": {"secretName": "ca"}}],
            "volumeMounts": [{"name": "certs", "mountPath": "/etc/ssl/extra", "readOnly": true}],
            "sidecars": [{"name": "shipper", "image": "example.com/shipper:1"}],
            "probes": {"liveness": {"tcpSocket": {"port": 3001}, "periodSeconds": 30}},
            "notificationRules": {"name": "rules", "key": "rules.yaml"}
        }))
        .unwrap();
        r.spec = extra;
        let d = deployment(&r, "h");
        let p = pod(&d);
        assert_eq!(p.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["server", "shipper"]);
        let server = &p.containers[0];
        let from = server.env_from.as_ref().unwrap();
        assert_eq!(from[0].secret_ref.as_ref().unwrap().name, "team-env");
        assert_eq!(from[1].config_map_ref.as_ref().unwrap().name, "chat-config", "the operator's variables win");
        assert_eq!(server.liveness_probe.as_ref().unwrap().period_seconds, Some(30));
        assert_eq!(server.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/ready"));
        let volumes: Vec<&str> = p.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["tmp", "notification-rules", "certs"]);
        let mounts: Vec<&str> = server.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
        assert_eq!(mounts, ["/tmp", "/etc/switchyard/notifications", "/etc/ssl/extra"]);
        let rules = p.volumes.as_ref().unwrap()[1].config_map.as_ref().unwrap();
        assert_eq!((rules.name.as_str(), rules.items.as_ref().unwrap()[0].key.as_str()), ("rules", "rules.yaml"));
        let env = server.env.as_ref().unwrap();
        let file = env.iter().find(|e| e.name == "RULES_FILE").unwrap();
        assert_eq!(file.value.as_deref(), Some("/etc/switchyard/notifications/rules.yaml"));
    }

    #[test]
    fn deployment_runs_the_default_image_with_probes_and_drain() {
        let d = deployment(&rtc("chat"), "abc");
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(2));
        let c = &pod(&d).containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some(concat!("ghcr.io/switchyard-dev/switchyard-server:", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 3001);
        assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/ready"));
        assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/health"));
        let sleep = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap().sleep.as_ref().unwrap();
        assert_eq!(sleep.seconds, 5);
        // grace = preStop 5 + drain 30 + margin 10, strictly more than drain + preStop
        assert_eq!(pod(&d).termination_grace_period_seconds, Some(45));
        let ann = spec.template.metadata.as_ref().unwrap().annotations.as_ref().unwrap();
        assert_eq!(ann[CONFIG_HASH_ANNOTATION], "abc");
        assert_eq!(c.env_from.as_ref().unwrap()[0].config_map_ref.as_ref().unwrap().name, "chat-config");
    }

    #[test]
    fn grace_period_follows_the_drain_settings() {
        let mut r = rtc("chat");
        r.spec.server =
            Some(ServerSpec { shutdown_grace_seconds: 120, pre_stop_sleep_seconds: 15, ..Default::default() });
        assert_eq!(pod(&deployment(&r, "h")).termination_grace_period_seconds, Some(145));
    }

    #[test]
    fn no_pre_stop_hook_without_a_sleep() {
        let mut r = rtc("chat");
        r.spec.server = Some(ServerSpec { pre_stop_sleep_seconds: 0, ..Default::default() });
        let d = deployment(&r, "h");
        assert_eq!(pod(&d).containers[0].lifecycle, None);
        assert_eq!(pod(&d).termination_grace_period_seconds, Some(40));
    }

    #[test]
    fn autoscaling_leaves_replicas_to_the_autoscaler() {
        let mut r = rtc("chat");
        r.spec.autoscaling = Some(AutoscalingSpec::default());
        assert_eq!(deployment(&r, "h").spec.unwrap().replicas, None);
    }

    #[test]
    fn secrets_are_referenced_not_copied_and_user_env_comes_last() {
        let mut r = rtc("chat");
        r.spec.auth = Some(AuthSpec {
            jwt_secret_ref: Some(SecretKeyRef { name: "jwt".into(), key: "secret".into() }),
            service_api_keys_secret_ref: Some(SecretKeyRef { name: "keys".into(), key: "list".into() }),
            ..Default::default()
        });
        r.spec.env = vec![EnvVar { name: "EXTRA".into(), value: Some("1".into()), ..Default::default() }];
        let d = deployment(&r, "h");
        let env = pod(&d).containers[0].env.clone().unwrap();
        let names: Vec<_> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["REDIS_URL", "JWT_SECRET", "SERVICE_API_KEYS", "EXTRA"]);
        let sel = |i: usize| env[i].value_from.as_ref().unwrap().secret_key_ref.clone().unwrap();
        assert_eq!((sel(0).name, sel(0).key), ("chat-redis-auth".into(), "url".into()));
        assert_eq!((sel(1).name, sel(1).key), ("jwt".into(), "secret".into()));
    }

    #[test]
    fn the_smpp_credentials_come_from_their_secret() {
        let mut r = rtc("chat");
        r.spec.sms = Some(crate::crd::SmsSpec {
            address: "smsc:2775".into(),
            system_id_secret_ref: SecretKeyRef { name: "smpp".into(), key: "id".into() },
            password_secret_ref: SecretKeyRef { name: "smpp".into(), key: "pw".into() },
            source_addr: "+4930123456".into(),
            bind: None,
            window: None,
            max_parts: None,
        });
        let d = deployment(&r, "h");
        let env = pod(&d).containers[0].env.clone().unwrap();
        for (name, key) in [("SMPP_SYSTEM_ID", "id"), ("SMPP_PASSWORD", "pw")] {
            let var = env.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(var.value, None);
            let sel = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
            assert_eq!((sel.name.as_str(), sel.key.as_str()), ("smpp", key));
        }
    }

    #[test]
    fn the_admin_ui_credentials_come_from_their_secret_only_when_enabled() {
        let mut r = rtc("chat");
        let admin = crate::crd::AdminUiSpec {
            enabled: true,
            credentials_secret: Some("admin-ui".into()),
            ..Default::default()
        };
        r.spec.admin_ui = Some(admin.clone());
        let env = pod(&deployment(&r, "h")).containers[0].env.clone().unwrap();
        for (name, key) in [("ADMIN_UI_USERNAME", "username"), ("ADMIN_UI_PASSWORD_HASH", "passwordHash")] {
            let var = env.iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(var.value, None);
            let sel = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
            assert_eq!((sel.name.as_str(), sel.key.as_str()), ("admin-ui", key));
        }
        r.spec.admin_ui = Some(crate::crd::AdminUiSpec { enabled: false, ..admin });
        let env = pod(&deployment(&r, "h")).containers[0].env.clone().unwrap();
        assert!(env.iter().all(|e| !e.name.starts_with("ADMIN_UI_")), "disabled: no credentials");
    }

    #[test]
    fn without_auth_every_pod_reads_the_generated_secret() {
        let d = deployment(&rtc("chat"), "h");
        let env = pod(&d).containers[0].env.clone().unwrap();
        let jwt = env.iter().find(|e| e.name == "JWT_SECRET").expect("JWT_SECRET set");
        let sel = jwt.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("chat-jwt", "secret"));
    }

    #[test]
    fn pod_overrides_apply_but_cannot_break_the_selector() {
        let mut r = rtc("chat");
        r.spec.pod = Some(PodSpecOverrides {
            labels: BTreeMap::from([
                ("team".to_string(), "rt".to_string()),
                ("app.kubernetes.io/instance".to_string(), "hijack".to_string()),
            ]),
            priority_class_name: Some("high".into()),
            ..Default::default()
        });
        let d = deployment(&r, "h");
        let labels = d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(labels["team"], "rt");
        assert_eq!(labels["app.kubernetes.io/instance"], "chat");
        assert_eq!(pod(&d).priority_class_name.as_deref(), Some("high"));
        assert_eq!(pod(&d).topology_spread_constraints.as_ref().unwrap()[0].when_unsatisfiable, "ScheduleAnyway");
    }

    #[test]
    fn traefik_stickiness_lives_on_the_service() {
        assert!(service(&rtc("chat")).metadata.annotations.is_none());
        let r = routed("chat", Some(IngressSpec { kind: IngressKind::Traefik, ..Default::default() }));
        let ann = service(&r).metadata.annotations.unwrap();
        assert_eq!(ann["traefik.ingress.kubernetes.io/service.sticky.cookie"], "true");
        assert_eq!(ann["traefik.ingress.kubernetes.io/service.sticky.cookie.name"], "switchyard-affinity");
    }

    #[test]
    fn pdb_can_be_disabled() {
        let mut r = rtc("chat");
        assert_eq!(pdb(&r).unwrap().spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
        r.spec.disruption_budget = Some(crate::crd::DisruptionBudgetSpec { enabled: false, max_unavailable: 1 });
        assert!(pdb(&r).is_none());
    }
}
