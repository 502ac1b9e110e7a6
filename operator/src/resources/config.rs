//! The server's non-secret environment as a ConfigMap, and its hash.
//!
//! Pods load the ConfigMap with `envFrom`. A changed ConfigMap alone would not restart them, so
//! the Deployment's pod template carries [`config_hash`] as an annotation: any config change
//! changes the template and rolls the pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};

use super::{SERVER_PORT, child_meta, config_name};
use crate::crd::{RealtimeCluster, SmppBind};

/// Environment variables the server reads, derived from the spec (secrets excluded).
pub fn server_env(rtc: &RealtimeCluster) -> BTreeMap<String, String> {
    let spec = &rtc.spec;
    let server = spec.server_settings();
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("HOST", "0.0.0.0".into());
    set("WEBSOCKET_PORT", SERVER_PORT.to_string());
    set("ENVIRONMENT", server.environment.clone());
    set("LOG_FORMAT", server.log_format.as_str().into());
    set("LOG_LEVEL", server.log_level.clone());
    set("SHUTDOWN_GRACE_SECONDS", server.shutdown_grace_seconds.to_string());
    set("PING_INTERVAL_MS", server.ping_interval_ms.to_string());
    set("PING_TIMEOUT_MS", server.ping_timeout_ms.to_string());
    if !spec.cors_origins.is_empty() {
        set("CORS_ORIGINS", spec.cors_origins.join(","));
    }
    if let Some(auth) = &spec.auth {
        if let Some(url) = &auth.jwks_url {
            set("JWT_JWKS_URL", url.clone());
        }
        if let Some(iss) = &auth.issuer {
            set("JWT_ISSUER", iss.clone());
        }
        if let Some(aud) = &auth.audience {
            set("JWT_AUDIENCE", aud.clone());
        }
    }
    if let Some(rl) = &spec.rate_limits {
        let pairs = [
            ("RATE_LIMIT_MESSAGE", &rl.message),
            ("RATE_LIMIT_TYPING", &rl.typing),
            ("RATE_LIMIT_READ", &rl.read),
            ("RATE_LIMIT_ROOM", &rl.room),
            ("RATE_LIMIT_QUERY", &rl.query),
        ];
        for (key, value) in pairs {
            if let Some(v) = value {
                set(key, v.clone());
            }
        }
        if let Some(w) = rl.warnings {
            set("RATE_LIMIT_WARNINGS", w.to_string());
        }
        if let Some(b) = rl.block_seconds {
            set("RATE_LIMIT_BLOCK_SECONDS", b.to_string());
        }
    }
    if let Some(sms) = &spec.sms {
        set("SMPP_ADDRESS", sms.address.clone());
        set("SMPP_SOURCE_ADDR", sms.source_addr.clone());
        if let Some(bind) = sms.bind {
            set("SMPP_BIND", if bind == SmppBind::Transmitter { "transmitter" } else { "transceiver" }.into());
        }
        if let Some(window) = sms.window {
            set("SMPP_WINDOW", window.to_string());
        }
        if let Some(parts) = sms.max_parts {
            set("SMPP_MAX_PARTS", parts.to_string());
        }
    }
    if let Some(admin) = spec.admin_ui.as_ref().filter(|a| a.enabled) {
        set("ADMIN_UI_READONLY", admin.read_only.to_string());
        if let Some(path) = &admin.path {
            set("ADMIN_UI_PATH", path.clone());
        }
    }
    if let Some(tr) = &spec.tracing {
        if let Some(ep) = &tr.otlp_endpoint {
            set("OTEL_EXPORTER_OTLP_ENDPOINT", ep.clone());
            set("OTEL_SERVICE_NAME", tr.service_name.clone().unwrap_or_else(|| super::server_name(rtc)));
        }
        // The server's sampler is always parent-based: only the ratio is a setting.
        if let Some(ratio) = tr.sampling_ratio {
            set("OTEL_TRACES_SAMPLER_ARG", ratio.to_string());
        }
    }
    env
}

/// The `<name>-config` ConfigMap.
pub fn config_map(rtc: &RealtimeCluster) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(rtc, config_name(rtc), "server"),
        data: Some(server_env(rtc)),
        ..ConfigMap::default()
    }
}

/// Short SHA-256 of the ConfigMap data; stable because the data is an ordered map.
pub fn config_hash(cm: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in cm.data.iter().flatten() {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(v.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    use crate::crd::{
        AuthSpec, ExternalRedisSpec, RateLimitSpec, RedisSpec, SecretKeyRef, ServerSpec, SmsSpec, TracingSpec,
    };
    use crate::fixtures::rtc;

    /// Runs the server's own flag parser and start-up validation over `env`, each variable
    /// given as the flag that reads it (flags win over this test process's environment). A
    /// variable the server does not read is an error too: a setting the operator writes for
    /// nothing (the log level once went out as RUST_LOG, which the server ignores).
    fn server_accepts(env: &BTreeMap<String, String>) -> Result<(), String> {
        let command = switchyard_server::Config::command();
        let mut args = vec!["switchyard-server".to_string()];
        for (key, value) in env {
            let flag = command
                .get_arguments()
                .find(|arg| arg.get_env().is_some_and(|e| e == key.as_str()))
                .and_then(|arg| arg.get_long())
                .ok_or_else(|| format!("{key} is not a server setting"))?;
            args.push(format!("--{flag}={value}"));
        }
        switchyard_server::Config::load_from(args).map(drop)
    }

    /// The environment of `rtc` as its pod gets it: the ConfigMap plus the JWT secret that
    /// the Deployment adds (from `auth.jwtSecretRef` or the generated Secret) when no JWKS URL
    /// is set.
    fn pod_env(rtc: &RealtimeCluster) -> BTreeMap<String, String> {
        let mut env = server_env(rtc);
        if !env.contains_key("JWT_JWKS_URL") {
            env.insert("JWT_SECRET".into(), "a-secret-of-at-least-thirty-two-bytes".into());
        }
        env
    }

    /// Every budget set to `budget`, with the warning-then-block settings.
    fn limits(budget: &str, warnings: i32, block_seconds: i32) -> RateLimitSpec {
        let budget = Some(budget.to_string());
        RateLimitSpec {
            message: budget.clone(),
            typing: budget.clone(),
            read: budget.clone(),
            room: budget.clone(),
            query: budget,
            warnings: Some(warnings),
            block_seconds: Some(block_seconds),
        }
    }

    #[test]
    fn the_server_starts_with_what_specs_at_the_crd_bounds_produce() {
        assert_eq!(server_accepts(&pod_env(&rtc("defaults"))), Ok(()));

        let mut low = rtc("low");
        low.spec.server = Some(ServerSpec {
            environment: "p".into(),
            log_level: "ERROR".into(),
            shutdown_grace_seconds: 1,
            pre_stop_sleep_seconds: 0,
            ping_interval_ms: 1000,
            ping_timeout_ms: 1000,
            ..Default::default()
        });
        low.spec.rate_limits = Some(limits("1/1s", 0, 1));
        low.spec.tracing = Some(TracingSpec {
            otlp_endpoint: Some("http://c:4317".into()),
            sampling_ratio: Some(0.0),
            service_name: Some("s".into()),
        });
        assert_eq!(server_accepts(&pod_env(&low)), Ok(()));

        let mut high = rtc("high");
        high.spec.server = Some(ServerSpec {
            environment: "e".repeat(64),
            log_level: "info,switchyard_server=trace,tower_http::trace=Debug,off".into(),
            shutdown_grace_seconds: 3600,
            pre_stop_sleep_seconds: 300,
            ping_interval_ms: 600_000,
            ping_timeout_ms: 600_000,
            ..Default::default()
        });
        high.spec.rate_limits = Some(limits("999999999/999999999s", i32::MAX, 86_400));
        high.spec.tracing = Some(TracingSpec {
            otlp_endpoint: Some("https://otel.example:4317".into()),
            sampling_ratio: Some(1.0),
            service_name: Some("s".repeat(253)),
        });
        high.spec.cors_origins = vec!["*".into(), "https://app.example".into()];
        high.spec.auth = Some(AuthSpec {
            jwks_url: Some("https://id.example/jwks".into()),
            issuer: Some("id".into()),
            audience: Some("chat".into()),
            ..Default::default()
        });
        assert_eq!(server_accepts(&pod_env(&high)), Ok(()));
    }

    #[test]
    fn the_sms_settings_reach_the_server_and_its_credentials_stay_out_of_the_config_map() {
        let mut r = rtc("sms");
        r.spec.sms = Some(SmsSpec {
            address: "smsc.example:2775".into(),
            system_id_secret_ref: SecretKeyRef { name: "smpp".into(), key: "systemId".into() },
            password_secret_ref: SecretKeyRef { name: "smpp".into(), key: "password".into() },
            source_addr: "Switchyard".into(),
            bind: Some(SmppBind::Transmitter),
            window: Some(1000),
            max_parts: Some(255),
        });
        let env = server_env(&r);
        assert_eq!(env["SMPP_ADDRESS"], "smsc.example:2775");
        assert_eq!(env["SMPP_BIND"], "transmitter");
        assert!(!env.contains_key("SMPP_PASSWORD") && !env.contains_key("SMPP_SYSTEM_ID"), "{env:?}");
        // The Deployment adds both from the Secret.
        let mut pod = pod_env(&r);
        pod.insert("SMPP_SYSTEM_ID".into(), "switchyard".into());
        pod.insert("SMPP_PASSWORD".into(), "s3cret".into());
        assert_eq!(server_accepts(&pod), Ok(()));
    }

    #[test]
    fn the_admin_ui_settings_reach_the_server_and_its_credentials_stay_out_of_the_config_map() {
        let mut r = rtc("admin");
        r.spec.admin_ui = Some(crate::crd::AdminUiSpec {
            enabled: true,
            read_only: true,
            credentials_secret: Some("admin-ui".into()),
            path: Some("/ops/socket-admin/".into()),
        });
        let env = server_env(&r);
        assert_eq!((env["ADMIN_UI_READONLY"].as_str(), env["ADMIN_UI_PATH"].as_str()), ("true", "/ops/socket-admin/"));
        assert!(!env.contains_key("ADMIN_UI_USERNAME") && !env.contains_key("ADMIN_UI_PASSWORD_HASH"), "{env:?}");
        // The Deployment adds both from the Secret.
        let mut pod = pod_env(&r);
        pod.insert("ADMIN_UI_USERNAME".into(), "ops".into());
        pod.insert(
            "ADMIN_UI_PASSWORD_HASH".into(),
            "$2a$04$oym0iiYp3Twzqv/qxOnWOu3QndxG2rznJh.0/QxWu00AoD07bcdoa".into(),
        );
        assert_eq!(server_accepts(&pod), Ok(()));
        // Disabled, nothing of it reaches the server.
        r.spec.admin_ui.as_mut().unwrap().enabled = false;
        assert!(server_env(&r).keys().all(|k| !k.starts_with("ADMIN_UI_")));
    }

    #[test]
    fn the_contract_check_catches_what_the_server_would_refuse_or_ignore() {
        let mut env = pod_env(&rtc("chat"));
        env.insert("RUST_LOG".into(), "debug".into());
        assert_eq!(server_accepts(&env), Err("RUST_LOG is not a server setting".into()));
        let mut env = pod_env(&rtc("chat"));
        env.insert("SHUTDOWN_GRACE_SECONDS".into(), "0".into());
        assert!(server_accepts(&env).is_err_and(|e| e.contains("shutdown-grace-seconds")), "{env:?}");
    }

    #[test]
    fn defaults_wire_the_server_settings_and_keep_the_managed_redis_url_out() {
        let env = server_env(&rtc("chat"));
        assert!(!env.contains_key("REDIS_URL"), "it holds the password: a secretKeyRef");
        assert_eq!(env["HOST"], "0.0.0.0");
        assert_eq!(env["WEBSOCKET_PORT"], "3001");
        assert_eq!(env["SHUTDOWN_GRACE_SECONDS"], "30");
        assert_eq!(env["PING_INTERVAL_MS"], "25000");
        assert_eq!(env["PING_TIMEOUT_MS"], "20000");
        assert_eq!(env["ENVIRONMENT"], "production");
        assert_eq!(env["LOG_LEVEL"], "info");
        assert!(!env.contains_key("CORS_ORIGINS"));
    }

    #[test]
    fn external_redis_url_is_not_in_the_config_map() {
        let mut rtc = rtc("chat");
        rtc.spec.redis = Some(RedisSpec {
            managed: None,
            external: Some(ExternalRedisSpec { secret_ref: SecretKeyRef { name: "r".into(), key: "url".into() } }),
        });
        assert!(!server_env(&rtc).contains_key("REDIS_URL"));
    }

    #[test]
    fn spec_sections_map_to_their_variables() {
        let mut rtc = rtc("chat");
        rtc.spec.cors_origins = vec!["https://a.example".into(), "https://b.example".into()];
        rtc.spec.auth = Some(AuthSpec {
            jwks_url: Some("https://id.example/jwks".into()),
            issuer: Some("id".into()),
            audience: Some("chat".into()),
            ..Default::default()
        });
        rtc.spec.rate_limits =
            Some(RateLimitSpec { message: Some("30/10s".into()), warnings: Some(5), ..Default::default() });
        rtc.spec.tracing = Some(TracingSpec {
            otlp_endpoint: Some("http://otel:4317".into()),
            sampling_ratio: Some(0.25),
            service_name: None,
        });
        let env = server_env(&rtc);
        assert_eq!(env["CORS_ORIGINS"], "https://a.example,https://b.example");
        assert_eq!(env["JWT_JWKS_URL"], "https://id.example/jwks");
        assert_eq!(env["JWT_ISSUER"], "id");
        assert_eq!(env["JWT_AUDIENCE"], "chat");
        assert_eq!(env["RATE_LIMIT_MESSAGE"], "30/10s");
        assert_eq!(env["RATE_LIMIT_WARNINGS"], "5");
        assert!(!env.contains_key("RATE_LIMIT_TYPING"));
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel:4317");
        assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.25");
        assert_eq!(env["OTEL_SERVICE_NAME"], "chat");
    }

    #[test]
    fn hash_changes_with_config_and_only_with_config() {
        let a = rtc("chat");
        let mut b = rtc("chat");
        assert_eq!(config_hash(&config_map(&a)), config_hash(&config_map(&b)));
        b.spec.cors_origins = vec!["https://x.example".into()];
        assert_ne!(config_hash(&config_map(&a)), config_hash(&config_map(&b)));
        assert_eq!(config_hash(&config_map(&a)).len(), 16);
    }
}
