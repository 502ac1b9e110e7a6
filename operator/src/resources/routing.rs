//! Public routing with sticky sessions: an Ingress (ingress-nginx or Traefik) or a Gateway API
//! HTTPRoute.
//!
//! Socket.IO's HTTP long-polling transport needs every request of a session on the same pod,
//! hence the affinity cookie; WebSockets need proxy timeouts longer than the Engine.IO ping
//! interval plus ping timeout, or idle sockets get cut.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use kube::ResourceExt;
use kube::core::DynamicObject;
use serde_json::json;

use super::{SERVER_PORT, child_meta, dynamic_child, http_route_resource, server_name};
use crate::crd::{IngressKind, RealtimeCluster, RoutingSpec};

/// Seconds added to ping interval + ping timeout for the minimum proxy timeout.
const TIMEOUT_MARGIN_SECONDS: i64 = 15;

/// Whether the spec routes through a Gateway API HTTPRoute.
pub fn wants_gateway(rtc: &RealtimeCluster) -> bool {
    rtc.spec.routing.as_ref().is_some_and(|r| r.gateway.is_some())
}

/// Whether the spec routes through an Ingress (the default routing flavour).
pub fn wants_ingress(rtc: &RealtimeCluster) -> bool {
    rtc.spec.routing.as_ref().is_some_and(|r| r.gateway.is_none())
}

/// Proxy timeout in seconds: the spec's, but never below what the heartbeats need.
pub fn effective_timeout(rtc: &RealtimeCluster, routing: &RoutingSpec) -> i64 {
    let server = rtc.spec.server_settings();
    let heartbeat = (server.ping_interval_ms + server.ping_timeout_ms + 999) / 1000 + TIMEOUT_MARGIN_SECONDS;
    i64::from(routing.timeout_seconds).max(heartbeat)
}

/// Formats seconds as a Gateway API duration (`1h30m`, at most 5 digits per unit).
pub fn gateway_duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The public URL clients use, when routing is configured.
pub fn public_endpoint(routing: &RoutingSpec) -> String {
    let scheme = if routing.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{}", routing.host)
}

/// The Ingress, when routing goes through an Ingress controller.
pub fn ingress(rtc: &RealtimeCluster) -> Option<Ingress> {
    if !wants_ingress(rtc) {
        return None;
    }
    let routing = rtc.spec.routing.as_ref()?;
    let ing = routing.ingress.clone().unwrap_or_default();
    let timeout = effective_timeout(rtc, routing).to_string();

    let mut annotations = BTreeMap::new();
    match ing.kind {
        IngressKind::Nginx => {
            let p = "nginx.ingress.kubernetes.io";
            let max_age = routing.sticky.max_age_seconds.to_string();
            for (k, v) in [
                ("affinity", "cookie"),
                // balanced: after a scale-up new sessions spread to the new pods.
                ("affinity-mode", "balanced"),
                ("session-cookie-name", routing.sticky.cookie_name.as_str()),
                ("session-cookie-path", "/"),
                ("session-cookie-samesite", "Lax"),
                ("session-cookie-max-age", max_age.as_str()),
                ("session-cookie-expires", max_age.as_str()),
                ("proxy-read-timeout", timeout.as_str()),
                ("proxy-send-timeout", timeout.as_str()),
                ("proxy-http-version", "1.1"),
            ] {
                annotations.insert(format!("{p}/{k}"), v.to_string());
            }
        }
        IngressKind::Traefik => {
            // Traefik's stickiness is on the Service (see server::service); its timeouts are
            // entrypoint settings, documented in docs/operator.md.
            if routing.tls.is_some() {
                annotations.insert("traefik.ingress.kubernetes.io/router.tls".into(), "true".into());
            }
        }
    }
    annotations.extend(ing.annotations.clone());

    let mut metadata = child_meta(rtc, server_name(rtc), "routing");
    metadata.annotations = Some(annotations);
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: ing.class_name.clone(),
            tls: routing.tls.as_ref().map(|t| {
                vec![IngressTLS { hosts: Some(vec![routing.host.clone()]), secret_name: Some(t.secret_name.clone()) }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(routing.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: PUBLIC_PATHS
                        .iter()
                        .map(|(path, exact)| HTTPIngressPath {
                            path: Some((*path).into()),
                            path_type: if *exact { "Exact" } else { "Prefix" }.into(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: server_name(rtc),
                                    port: Some(ServiceBackendPort { number: Some(SERVER_PORT), name: None }),
                                }),
                                resource: None,
                            },
                        })
                        .collect(),
                }),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What the public host routes to the server, as (path, exact): Socket.IO, the HTTP API, and
/// the web app (`/` and its files under `/app/`). `/metrics`, `/health` and `/ready` answer
/// without authentication, so they stay inside the cluster for Prometheus and the kubelet.
pub const PUBLIC_PATHS: [(&str, bool); 4] = [("/socket.io", false), ("/api", false), ("/app", false), ("/", true)];

/// The HTTPRoute, when routing goes through a Gateway. Session persistence is GEP-1619 (the
/// experimental channel); Gateways that do not implement it ignore the field.
pub fn http_route(rtc: &RealtimeCluster) -> Option<DynamicObject> {
    let routing = rtc.spec.routing.as_ref()?;
    let gw = routing.gateway.as_ref()?;
    let mut parent = json!({ "name": gw.parent_ref.name });
    if let Some(ns) = &gw.parent_ref.namespace {
        parent["namespace"] = json!(ns);
    }
    if let Some(section) = &gw.parent_ref.section_name {
        parent["sectionName"] = json!(section);
    }
    let mut rule = json!({
        "matches": PUBLIC_PATHS
            .iter()
            .map(|(path, exact)| json!({ "path": { "type": if *exact { "Exact" } else { "PathPrefix" }, "value": path } }))
            .collect::<Vec<_>>(),
        "backendRefs": [{ "name": server_name(rtc), "port": SERVER_PORT }],
        "sessionPersistence": {
            "sessionName": routing.sticky.cookie_name,
            "type": "Cookie",
            "absoluteTimeout": gateway_duration(routing.sticky.max_age_seconds),
            "cookieConfig": { "lifetimeType": "Permanent" }
        }
    });
    if let Some(t) = &gw.request_timeout {
        rule["timeouts"] = json!({ "request": t });
    }
    let spec = json!({
        "parentRefs": [parent],
        "hostnames": [routing.host],
        "rules": [rule],
    });
    Some(dynamic_child(rtc, &http_route_resource(), rtc.name_any(), "routing", spec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{GatewayParentRef, GatewaySpec, IngressSpec as IngressSettings, ServerSpec, TlsSpec};
    use crate::fixtures::rtc;

    fn routed(kind: IngressKind) -> RealtimeCluster {
        let mut r = rtc("chat");
        r.spec.routing = Some(RoutingSpec {
            host: "chat.example.com".into(),
            tls: Some(TlsSpec { secret_name: "chat-tls".into() }),
            ingress: Some(IngressSettings { class_name: Some("nginx".into()), kind, annotations: BTreeMap::new() }),
            gateway: None,
            sticky: Default::default(),
            timeout_seconds: 3600,
        });
        r
    }

    #[test]
    fn no_routing_no_ingress() {
        assert!(ingress(&rtc("chat")).is_none());
        assert!(http_route(&rtc("chat")).is_none());
    }

    #[test]
    fn nginx_ingress_has_cookie_affinity_and_websocket_timeouts() {
        let ing = ingress(&routed(IngressKind::Nginx)).unwrap();
        let ann = ing.metadata.annotations.clone().unwrap();
        assert_eq!(ann["nginx.ingress.kubernetes.io/affinity"], "cookie");
        assert_eq!(ann["nginx.ingress.kubernetes.io/session-cookie-name"], "switchyard-affinity");
        assert_eq!(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"], "3600");
        let spec = ing.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        assert_eq!(spec.tls.unwrap()[0].secret_name.as_deref(), Some("chat-tls"));
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("chat.example.com"));
        let backend = rule.http.as_ref().unwrap().paths[0].backend.service.clone().unwrap();
        assert_eq!((backend.name.as_str(), backend.port.unwrap().number), ("chat", Some(3001)));
    }

    /// Kubernetes and Gateway API path matching: a prefix matches whole path elements.
    fn matches(rule: &str, exact: bool, path: &str) -> bool {
        path == rule || (!exact && path.strip_prefix(rule).is_some_and(|rest| rule == "/" || rest.starts_with('/')))
    }

    #[test]
    fn only_the_public_paths_reach_the_server() {
        let ing = ingress(&routed(IngressKind::Nginx)).unwrap();
        let ingress_paths: Vec<(String, bool)> = ing.spec.unwrap().rules.unwrap()[0]
            .http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| (p.path.clone().unwrap(), p.path_type == "Exact"))
            .collect();
        let mut r = routed(IngressKind::Nginx);
        let routing = r.spec.routing.as_mut().unwrap();
        routing.ingress = None;
        routing.gateway = Some(GatewaySpec {
            parent_ref: GatewayParentRef { name: "public".into(), namespace: None, section_name: None },
            request_timeout: None,
        });
        let route = http_route(&r).unwrap();
        let route_paths: Vec<(String, bool)> = route.data["spec"]["rules"][0]["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["path"]["value"].as_str().unwrap().to_string(), m["path"]["type"] == "Exact"))
            .collect();
        for paths in [ingress_paths, route_paths] {
            let routed = |path: &str| paths.iter().any(|(rule, exact)| matches(rule, *exact, path));
            for public in ["/", "/socket.io/", "/api/chat/rooms", "/api/notifications", "/app/main.js"] {
                assert!(routed(public), "{public} must be reachable: {paths:?}");
            }
            for private in ["/metrics", "/health", "/ready", "/dev/token", "/apix", "/socket.iox"] {
                assert!(!routed(private), "{private} must stay inside the cluster: {paths:?}");
            }
        }
    }

    #[test]
    fn timeout_never_drops_below_the_heartbeat() {
        let mut r = routed(IngressKind::Nginx);
        r.spec.routing.as_mut().unwrap().timeout_seconds = 10;
        r.spec.server = Some(ServerSpec { ping_interval_ms: 60_000, ping_timeout_ms: 30_000, ..Default::default() });
        let ann = ingress(&r).unwrap().metadata.annotations.unwrap();
        assert_eq!(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"], "105");
    }

    #[test]
    fn user_annotations_win() {
        let mut r = routed(IngressKind::Nginx);
        r.spec.routing.as_mut().unwrap().ingress.as_mut().unwrap().annotations =
            BTreeMap::from([("nginx.ingress.kubernetes.io/affinity-mode".to_string(), "persistent".to_string())]);
        let ann = ingress(&r).unwrap().metadata.annotations.unwrap();
        assert_eq!(ann["nginx.ingress.kubernetes.io/affinity-mode"], "persistent");
    }

    #[test]
    fn traefik_ingress_has_no_nginx_annotations() {
        let ann = ingress(&routed(IngressKind::Traefik)).unwrap().metadata.annotations.unwrap();
        assert!(ann.keys().all(|k| !k.starts_with("nginx.")));
        assert_eq!(ann["traefik.ingress.kubernetes.io/router.tls"], "true");
    }

    #[test]
    fn gateway_routing_builds_an_http_route_and_no_ingress() {
        let mut r = routed(IngressKind::Nginx);
        let routing = r.spec.routing.as_mut().unwrap();
        routing.ingress = None;
        routing.gateway = Some(GatewaySpec {
            parent_ref: GatewayParentRef { name: "public".into(), namespace: Some("gw".into()), section_name: None },
            request_timeout: None,
        });
        assert!(ingress(&r).is_none());
        let route = http_route(&r).unwrap();
        assert_eq!(route.types.as_ref().unwrap().kind, "HTTPRoute");
        let spec = &route.data["spec"];
        assert_eq!(spec["parentRefs"][0]["namespace"], "gw");
        assert_eq!(spec["hostnames"][0], "chat.example.com");
        assert_eq!(spec["rules"][0]["backendRefs"][0]["port"], 3001);
        assert_eq!(spec["rules"][0]["sessionPersistence"]["absoluteTimeout"], "48h");
        assert!(spec["rules"][0].get("timeouts").is_none());
    }

    #[test]
    fn gateway_durations_fit_the_api_format() {
        assert_eq!(gateway_duration(172_800), "48h");
        assert_eq!(gateway_duration(5_400), "1h30m");
        assert_eq!(gateway_duration(61), "1m1s");
        assert_eq!(gateway_duration(0), "0s");
    }
}
