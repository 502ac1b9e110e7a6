//! Public routing with sticky sessions: Ingress or Gateway API.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Public routing to the server pods with sticky sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!(has(self.ingress) && has(self.gateway))").message("routing.ingress and routing.gateway are mutually exclusive: set one of them"))]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Public DNS name clients connect to, for example chat.example.com.
    #[x_kube(validation = Rule::new("self.matches('^(\\\\*\\\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("routing.host must be a lowercase DNS name such as chat.example.com"))]
    #[schemars(length(min = 1, max = 253))]
    pub host: String,

    /// TLS termination at the Ingress. With a Gateway, TLS is configured on the Gateway listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Route through an Ingress controller (the default when neither ingress nor gateway is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// Route through a Gateway API HTTPRoute attached to an existing Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewaySpec>,

    /// Cookie that pins a client to one pod; Socket.IO's HTTP long-polling needs it.
    #[serde(default)]
    pub sticky: StickySpec,

    /// Proxy read/send timeout in seconds for long-lived WebSocket connections. The operator
    /// never sets less than the server's ping interval plus ping timeout plus a margin.
    #[serde(default = "default_proxy_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: i32,
}

fn default_proxy_timeout() -> i32 {
    3600
}

/// Ingress TLS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret of type kubernetes.io/tls holding the certificate for `host`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Ingress settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// IngressClass name; the cluster default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,

    /// Which controller's annotations to write for cookie affinity and timeouts.
    #[serde(default)]
    pub kind: IngressKind,

    /// Extra annotations for the Ingress (they win over the operator's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Ingress controller flavour.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IngressKind {
    /// ingress-nginx: cookie affinity and proxy timeouts as Ingress annotations.
    #[default]
    Nginx,
    /// Traefik: sticky cookie as Service annotations.
    Traefik,
}

/// Gateway API settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The Gateway the HTTPRoute attaches to.
    pub parent_ref: GatewayParentRef,

    /// HTTPRoute request timeout (Gateway API duration, for example 0s for none). Left out when
    /// unset, since some implementations reject timeouts. Long-polling requests last up to the
    /// ping interval, so a timeout below it cuts them.
    #[x_kube(validation = Rule::new("self.matches('^([0-9]{1,5}(h|m|s|ms)){1,4}$')").message("routing.gateway.requestTimeout must be a Gateway API duration such as 0s, 90s or 1h"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
}

/// Reference to a Gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Gateway name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Gateway namespace; the RealtimeCluster's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Session-affinity cookie.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StickySpec {
    /// Cookie name.
    #[serde(default = "default_cookie_name")]
    #[schemars(length(min = 1, max = 64))]
    pub cookie_name: String,

    /// Cookie lifetime in seconds.
    #[serde(default = "default_cookie_max_age")]
    #[schemars(range(min = 1))]
    pub max_age_seconds: i64,
}

impl Default for StickySpec {
    fn default() -> Self {
        Self { cookie_name: default_cookie_name(), max_age_seconds: default_cookie_max_age() }
    }
}

fn default_cookie_name() -> String {
    "switchyard-affinity".into()
}
fn default_cookie_max_age() -> i64 {
    172_800
}
