//! Session and socket ids.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A random 128-bit id, written as 22 URL-safe base64 characters. Stored as a number, so an
/// id costs 16 bytes, not a string allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(u128);

impl Sid {
    /// A new random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Some of its bits, to spread ids over buckets (they are random already).
    pub(crate) fn spread(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 22];
        let n = URL_SAFE_NO_PAD.encode_slice(self.0.to_be_bytes(), &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Sid {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 22 {
            return Err(());
        }
        let mut buf = [0u8; 18];
        let n = URL_SAFE_NO_PAD.decode_slice(s, &mut buf).map_err(|_| ())?;
        let bytes: [u8; 16] = buf[..n].try_into().map_err(|_| ())?;
        Ok(Self(u128::from_be_bytes(bytes)))
    }
}

impl serde::Serialize for Sid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_text() {
        for _ in 0..100 {
            let sid = Sid::random();
            let text = sid.to_string();
            assert_eq!(text.len(), 22);
            assert_eq!(text.parse::<Sid>(), Ok(sid));
        }
        assert!("short".parse::<Sid>().is_err());
        assert!("!!!!!!!!!!!!!!!!!!!!!!".parse::<Sid>().is_err());
    }
}
