//! Client authentication and per-client rate limits.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::*;

/// Authentication of Socket.IO clients (JWT) and backend callers (API keys).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.jwtSecretRef), has(self.publicKeySecretRef), has(self.jwksUrl)].filter(x, x).size() <= 1").message("auth.jwtSecretRef, auth.publicKeySecretRef and auth.jwksUrl are mutually exclusive: set one of them"))]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret key with the HS256 signing secret (JWT_SECRET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_ref: Option<SecretKeyRef>,

    /// Secret key with a PEM public key for RS256/ES256 tokens (JWT_PUBLIC_KEY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_secret_ref: Option<SecretKeyRef>,

    /// JWKS URL the servers fetch signing keys from (JWT_JWKS_URL).
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("auth.jwksUrl must be an http(s) URL"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub jwks_url: Option<String>,

    /// Required `iss` claim (JWT_ISSUER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,

    /// Required `aud` claim (JWT_AUDIENCE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,

    /// Secret key with comma-separated API keys for backend callers (SERVICE_API_KEYS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_api_keys_secret_ref: Option<SecretKeyRef>,
}

/// Per-client rate limits, each `<count>/<seconds>s` (for example 30/10s). Unset values keep
/// the server's defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// Chat messages (RATE_LIMIT_MESSAGE).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.message must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub message: Option<String>,

    /// Typing indicators (RATE_LIMIT_TYPING).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.typing must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub typing: Option<String>,

    /// Read receipts (RATE_LIMIT_READ).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.read must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub read: Option<String>,

    /// Room creation with getOrCreateRoom (RATE_LIMIT_ROOM).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.room must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub room: Option<String>,

    /// History and presence queries (RATE_LIMIT_QUERY).
    #[x_kube(validation = Rule::new(BUDGET_RULE).message("rateLimits.query must look like 30/10s"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub query: Option<String>,

    /// Over-budget rejections before a client is blocked (RATE_LIMIT_WARNINGS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub warnings: Option<i32>,

    /// How long a blocked client stays blocked, in seconds (RATE_LIMIT_BLOCK_SECONDS), 1 to
    /// 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub block_seconds: Option<i32>,
}

/// A rate-limit budget, `<count>/<seconds>s`, with numbers small enough for the server's
/// parser (a count above u32 would be refused at start-up).
const BUDGET_RULE: &str = "self.matches('^[1-9][0-9]{0,8}/[1-9][0-9]{0,8}s$')";
