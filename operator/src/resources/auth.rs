//! The JWT secret the operator generates when the spec names no way to verify tokens.
//!
//! Without one, every server pod would start in development mode with a random secret of its
//! own: a token minted against one pod would be refused by the next after a reconnect, and
//! `POST /dev/token` would mint tokens for anyone who reaches a pod. So the operator creates
//! `<name>-jwt` once, with a random key every pod shares, and never rewrites it: a new key would
//! invalidate every token in use. It is owned by the RealtimeCluster and deleted with it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::child_meta;
use crate::crd::{RealtimeCluster, SecretKeyRef};

/// Key of the generated Secret that holds the HS256 key.
pub const JWT_SECRET_KEY: &str = "secret";

/// Name of the generated JWT Secret.
pub fn jwt_secret_name(rtc: &RealtimeCluster) -> String {
    format!("{}-jwt", rtc.name_any())
}

/// The generated Secret, when `spec.auth` names none of `jwtSecretRef`, `publicKeySecretRef`
/// and `jwksUrl`.
pub fn generated_secret_ref(rtc: &RealtimeCluster) -> Option<SecretKeyRef> {
    let configured = rtc
        .spec
        .auth
        .as_ref()
        .is_some_and(|a| a.jwt_secret_ref.is_some() || a.public_key_secret_ref.is_some() || a.jwks_url.is_some());
    (!configured).then(|| SecretKeyRef { name: jwt_secret_name(rtc), key: JWT_SECRET_KEY.into() })
}

/// A new `<name>-jwt` Secret when the spec names no way to verify tokens: 32 random bytes as
/// 64 hex characters (the server wants at least 32 bytes). Every call draws a new key, so the
/// controller only creates it, never applies it.
pub fn generated_secret(rtc: &RealtimeCluster) -> Option<Secret> {
    generated_secret_ref(rtc)?;
    let bytes: [u8; 32] = rand::random();
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(Secret {
        metadata: child_meta(rtc, jwt_secret_name(rtc), "auth"),
        string_data: Some(BTreeMap::from([(JWT_SECRET_KEY.to_string(), key)])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AuthSpec;
    use crate::fixtures::rtc;

    #[test]
    fn generated_only_when_the_spec_names_no_token_verification() {
        assert_eq!(
            generated_secret_ref(&rtc("chat")).map(|r| (r.name, r.key)),
            Some(("chat-jwt".into(), "secret".into()))
        );
        let mut issuer_only = rtc("chat");
        issuer_only.spec.auth = Some(AuthSpec { issuer: Some("id".into()), ..Default::default() });
        assert!(generated_secret_ref(&issuer_only).is_some(), "an issuer alone verifies nothing");
        let own = SecretKeyRef { name: "mine".into(), key: "k".into() };
        for auth in [
            AuthSpec { jwt_secret_ref: Some(own.clone()), ..Default::default() },
            AuthSpec { public_key_secret_ref: Some(own), ..Default::default() },
            AuthSpec { jwks_url: Some("https://id.example/jwks".into()), ..Default::default() },
        ] {
            let mut r = rtc("chat");
            r.spec.auth = Some(auth);
            assert_eq!(generated_secret_ref(&r), None);
        }
    }

    #[test]
    fn the_secret_is_random_owned_and_long_enough() {
        let (a, b) = (generated_secret(&rtc("chat")).unwrap(), generated_secret(&rtc("chat")).unwrap());
        let key = |s: &Secret| s.string_data.as_ref().unwrap()[JWT_SECRET_KEY].clone();
        assert_eq!(key(&a).len(), 64);
        assert!(key(&a).bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(key(&a), key(&b));
        assert_eq!(a.metadata.name.as_deref(), Some("chat-jwt"));
        assert_eq!(a.metadata.owner_references.as_ref().unwrap()[0].kind, "RealtimeCluster");
    }
}
