//! JWT verification for socket handshakes and the HTTP API: HS256 with a shared secret,
//! RS256/ES256 with a PEM public key, or keys from a JWKS URL (cached, refetched when a
//! token names a `kid` we have not seen). Development mode signs its own tokens.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, ConfigError};
use crate::error::{ApiError, ErrorCode};

/// Longest accepted user id, in bytes.
const MAX_USER_ID: usize = 128;
/// Known keys are refetched after this long anyway, to pick up rotations and revocations.
const JWKS_TTL: Duration = Duration::from_secs(300);

/// Who a verified token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim.
    pub user_id: String,
    /// The optional `name` claim.
    pub name: Option<String>,
}

/// Why a token was refused. `Display` is the exact `connect_error` message of the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No token, a malformed one, a bad signature, an unknown key or a refused algorithm.
    #[error("unauthorized")]
    Unauthorized(&'static str),
    /// `exp` is in the past.
    #[error("token_expired")]
    Expired,
    /// Authentic, but not for this service (`iss` or `aud` mismatch).
    #[error("forbidden")]
    Forbidden(&'static str),
}

impl AuthFailure {
    /// The human explanation (logged, and sent in HTTP error bodies).
    pub fn detail(&self) -> &'static str {
        match self {
            AuthFailure::Unauthorized(why) | AuthFailure::Forbidden(why) => why,
            AuthFailure::Expired => "token has expired",
        }
    }

    /// Label for `socket_auth_events_total{status}`.
    pub fn metric_status(&self) -> &'static str {
        match self {
            AuthFailure::Expired => "expired",
            _ => "failed",
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        let code = match f {
            AuthFailure::Forbidden(_) => ErrorCode::Forbidden,
            _ => ErrorCode::Unauthorized,
        };
        ApiError::new(code, f.detail())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

enum Keys {
    /// One key and the algorithms it may verify (never mixing HMAC with public keys).
    Static {
        key: DecodingKey,
        algorithms: Vec<Algorithm>,
    },
    Jwks(Jwks),
}

/// Verifies bearer tokens. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    keys: Keys,
    validation: Validation,
    /// Present in development mode only: signs `POST /dev/token` tokens.
    dev_signer: Option<EncodingKey>,
}

impl Verifier {
    /// Builds the verifier the configuration asks for (development mode when it asks for none).
    pub fn from_config(config: &AuthConfig) -> Result<Self, ConfigError> {
        let mut dev_signer = None;
        let keys = if let Some(secret) = &config.jwt_secret {
            Keys::Static { key: DecodingKey::from_secret(secret.as_bytes()), algorithms: vec![Algorithm::HS256] }
        } else if let Some(pem) = &config.jwt_public_key {
            let pem = read_pem(pem)?;
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                Keys::Static { key, algorithms: vec![Algorithm::RS256] }
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                Keys::Static { key, algorithms: vec![Algorithm::ES256] }
            } else {
                return Err(ConfigError {
                    setting: "JWT_PUBLIC_KEY",
                    reason: "not an RSA or EC public key in PEM form".into(),
                });
            }
        } else if let Some(url) = &config.jwt_jwks_url {
            Keys::Jwks(Jwks::new(url.clone(), Duration::from_secs(config.jwt_jwks_min_refresh_seconds)))
        } else {
            let secret: [u8; 32] = rand::random();
            dev_signer = Some(EncodingKey::from_secret(&secret));
            Keys::Static { key: DecodingKey::from_secret(&secret), algorithms: vec![Algorithm::HS256] }
        };

        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.jwt_leeway_seconds;
        validation.validate_exp = true;
        let required: &[&str] = if config.jwt_require_exp { &["exp", "sub"] } else { &["sub"] };
        validation.set_required_spec_claims(required);
        match &config.jwt_issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &config.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self { inner: Arc::new(VerifierInner { keys, validation, dev_signer }) })
    }

    /// True in development mode (the server signs its own tokens).
    pub fn is_dev(&self) -> bool {
        self.inner.dev_signer.is_some()
    }

    /// Signs a 24-hour development token; `None` outside development mode.
    pub fn dev_token(&self, user_id: &str, name: Option<&str>) -> Option<String> {
        let key = self.inner.dev_signer.as_ref()?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims =
            Claims { sub: user_id.into(), name: name.map(str::to_owned), iat: Some(now), exp: Some(now + 24 * 3600) };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()
    }

    /// Verifies a token and returns whose it is.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthFailure::Unauthorized("malformed token or unsupported algorithm"))?;
        let (key, algorithm) = match &self.inner.keys {
            Keys::Static { key, algorithms } => {
                if !algorithms.contains(&header.alg) {
                    return Err(AuthFailure::Unauthorized("token algorithm not accepted"));
                }
                (key.clone(), header.alg)
            }
            Keys::Jwks(jwks) => jwks.key_for(header.kid.as_deref()).await?,
        };
        if header.alg != algorithm {
            return Err(AuthFailure::Unauthorized("token algorithm does not match its key"));
        }
        let mut validation = self.inner.validation.clone();
        validation.algorithms = vec![algorithm];
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthFailure::Expired,
            ErrorKind::InvalidIssuer => AuthFailure::Forbidden("token issuer not accepted"),
            ErrorKind::InvalidAudience => AuthFailure::Forbidden("token audience not accepted"),
            ErrorKind::InvalidSignature => AuthFailure::Unauthorized("bad token signature"),
            ErrorKind::MissingRequiredClaim(_) => AuthFailure::Unauthorized("token lacks a required claim"),
            _ => AuthFailure::Unauthorized("invalid token"),
        })?;
        let user_id = match data.claims.sub {
            serde_json::Value::String(s) if !s.is_empty() && s.len() <= MAX_USER_ID => s,
            _ => return Err(AuthFailure::Unauthorized("sub must be a non-empty string of at most 128 bytes")),
        };
        Ok(Identity { user_id, name: data.claims.name })
    }
}

/// `JWT_PUBLIC_KEY` holds either the PEM itself or a path to it.
fn read_pem(value: &str) -> Result<Vec<u8>, ConfigError> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    std::fs::read(value)
        .map_err(|e| ConfigError { setting: "JWT_PUBLIC_KEY", reason: format!("cannot read {value}: {e}") })
}

/// Keys from a JWKS URL, cached by `kid`.
struct Jwks {
    url: String,
    /// A JWKS is refetched for an unknown `kid` at most this often, so a flood of forged
    /// `kid`s cannot turn us into a load generator against the identity provider.
    min_refresh: Duration,
    http: reqwest::Client,
    cache: RwLock<JwksCache>,
    /// Serialises refetches so concurrent handshakes with a new `kid` cause one request.
    fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched_at: Option<Instant>,
}

impl Jwks {
    fn new(url: String, min_refresh: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { url, min_refresh, http, cache: RwLock::default(), fetch_lock: tokio::sync::Mutex::new(()) }
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<(DecodingKey, Algorithm), AuthFailure> {
        if let Some(found) = self.lookup(kid, JWKS_TTL) {
            return Ok(found);
        }
        let _guard = self.fetch_lock.lock().await;
        // Another handshake may have refreshed while we waited.
        if let Some(found) = self.lookup(kid, JWKS_TTL) {
            return Ok(found);
        }
        let recently = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .fetched_at
            .is_some_and(|t| t.elapsed() < self.min_refresh);
        if !recently {
            match self.fetch().await {
                Ok(keys) => {
                    let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                }
                Err(e) => tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping cached keys"),
            }
        }
        // After a failed fetch, stale keys are better than refusing everyone.
        self.lookup(kid, Duration::MAX).ok_or(AuthFailure::Unauthorized("unknown signing key"))
    }

    fn lookup(&self, kid: Option<&str>, max_age: Duration) -> Option<(DecodingKey, Algorithm)> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        if cache.fetched_at.is_none_or(|t| t.elapsed() >= max_age) {
            return None;
        }
        match kid {
            Some(kid) => cache.keys.get(kid).cloned(),
            // A token without `kid` is only unambiguous when the set has one key.
            None if cache.keys.len() == 1 => cache.keys.values().next().cloned(),
            None => None,
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>, String> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
                // Symmetric or unsupported keys in a public JWKS are skipped, never trusted.
                _ => continue,
            };
            if let Some(declared) = jwk.common.key_algorithm
                && format!("{declared:?}") != format!("{algorithm:?}")
            {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            let kid = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
            keys.insert(kid, (key, algorithm));
        }
        Ok(keys)
    }
}
/// The token of an `Authorization: Bearer <token>` header, for the handshake and the HTTP API.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}
