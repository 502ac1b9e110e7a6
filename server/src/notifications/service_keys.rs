//! The backend credential of `POST /api/events` and the dead-letter routes: one of the keys
//! in `SERVICE_API_KEYS`, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The configured service keys, kept as SHA-256 digests.
pub struct ServiceKeys(Vec<[u8; 32]>);

impl ServiceKeys {
    /// The non-empty keys of `keys`.
    pub fn new(keys: &[String]) -> Self {
        Self(keys.iter().filter(|k| !k.is_empty()).map(|k| digest(k)).collect())
    }

    /// True without keys (the service routes are then closed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `presented` is one of the keys. Comparing fixed-size digests, and every
    /// one of them, keeps the time independent of where or whether the key matches and of
    /// its length.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let mut found = Choice::from(0);
        for key in &self.0 {
            found |= key.ct_eq(&presented);
        }
        found.into()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_the_configured_keys() {
        let keys = ServiceKeys::new(&["first-key-0123456".into(), String::new(), "second-key-012345".into()]);
        assert!(keys.accepts("first-key-0123456"));
        assert!(keys.accepts("second-key-012345"));
        assert!(!keys.accepts("first-key-012345"));
        assert!(!keys.accepts(""));
        assert!(ServiceKeys::new(&[String::new()]).is_empty());
    }
}
