//! Text to short messages: GSM 03.38 7-bit when every character is in the default alphabet
//! (or its extension table), UCS-2 otherwise, split into concatenated parts behind a UDH
//! when one message cannot hold it. The alphabets and the splitting are rusmpp's; this
//! module picks the encoding and the sizes.

use rusmpp::extra::concatenation::{Concatenation, Concatenator};
use rusmpp::extra::encoding::gsm7bit::Gsm7BitUnpacked;
use rusmpp::extra::encoding::ucs2::Ucs2;
use rusmpp::udhs::concatenation::ConcatenatedShortMessageType;
use rusmpp::values::DataCoding;

/// Septets in one GSM 7-bit message.
const GSM7_SINGLE: usize = 160;
/// Septets a concatenation UDH takes in a GSM 7-bit part: its 6 octets are 48 bits, padded
/// to 7 septets, which leaves the well-known 153 for text.
const GSM7_UDH_SEPTETS: usize = 7;
/// Octets in one UCS-2 message (70 characters).
const UCS2_SINGLE: usize = 140;
/// Octets of the concatenation UDH (8-bit reference): 67 characters per UCS-2 part.
const UDH_OCTETS: usize = 6;

/// How the text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// GSM 03.38 default alphabet, one septet per octet (the SMSC packs them).
    Gsm7,
    /// UCS-2, big-endian.
    Ucs2,
}

impl Coding {
    /// The name recorded on the delivery status.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Gsm7 => "gsm7",
            Coding::Ucs2 => "ucs2",
        }
    }
}

/// A text ready for `submit_sm`: one short message per part, each starting with its UDH
/// when there are several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The encoding.
    pub coding: Coding,
    /// Its `data_coding` value.
    pub data_coding: DataCoding,
    /// Each part's `short_message`.
    pub parts: Vec<Vec<u8>>,
}

impl Encoded {
    /// True when the parts carry a concatenation UDH (`esm_class` UDHI).
    pub fn concatenated(&self) -> bool {
        self.parts.len() > 1
    }
}

/// Why a text cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Longer than `SMPP_MAX_PARTS` parts.
    #[error("the text needs {parts} {coding} parts; SMPP_MAX_PARTS allows {max}")]
    TooManyParts {
        /// Parts it would take.
        parts: usize,
        /// The encoding it would use.
        coding: &'static str,
        /// The limit.
        max: usize,
    },
    /// Not encodable at all (characters outside the Basic Multilingual Plane, or a text
    /// too long for the 255 parts a UDH can count).
    #[error("the text cannot be encoded as {coding}: {reason}")]
    Unencodable {
        /// The encoding tried last.
        coding: &'static str,
        /// rusmpp's reason.
        reason: String,
    },
}

/// Encodes `text` in at most `max_parts` parts; `reference` tells this message's parts apart
/// from another's on the handset.
pub fn encode(text: &str, max_parts: usize, reference: u8) -> Result<Encoded, EncodeError> {
    let (coding, result) = match Gsm7BitUnpacked::new().concatenate(text, GSM7_SINGLE, GSM7_UDH_SEPTETS) {
        Ok(done) => (Coding::Gsm7, done),
        Err(_) => {
            let done = Ucs2::new()
                .concatenate(text, UCS2_SINGLE, UDH_OCTETS)
                .map_err(|e| EncodeError::Unencodable { coding: Coding::Ucs2.as_str(), reason: e.to_string() })?;
            (Coding::Ucs2, done)
        }
    };
    let (concatenation, data_coding) = result;
    let parts = match concatenation {
        Concatenation::Single(bytes) => vec![bytes],
        Concatenation::Concatenated(parts) => {
            if parts.len() > max_parts {
                return Err(EncodeError::TooManyParts { parts: parts.len(), coding: coding.as_str(), max: max_parts });
            }
            let kind = ConcatenatedShortMessageType::u8(reference);
            let total = parts.len() as u8;
            parts
                .into_iter()
                .enumerate()
                .map(|(index, part)| {
                    // `parts.len()` is at most `max_parts` (at most 255, checked by the
                    // configuration), so the counts fit the UDH's octets.
                    let udh = kind.concatenated_short_message_unchecked(total, index as u8 + 1);
                    let mut message = udh.udh_bytes().as_bytes().to_vec();
                    message.extend_from_slice(&part);
                    message
                })
                .collect()
        }
    };
    Ok(Encoded { coding, data_coding, parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(parts: &[Vec<u8>], skip: usize) -> Vec<usize> {
        parts.iter().map(|p| p.len() - skip).collect()
    }

    #[test]
    fn gsm7_fits_160_then_splits_by_153() {
        let one = encode(&"a".repeat(160), 10, 1).unwrap();
        assert_eq!((one.coding, one.data_coding, one.parts.len()), (Coding::Gsm7, DataCoding::McSpecific, 1));
        assert_eq!(one.parts[0], vec![b'a'; 160]);
        let two = encode(&"a".repeat(161), 10, 7).unwrap();
        assert_eq!(text_of(&two.parts, 6), [153, 8]);
        assert_eq!(two.parts[0][..6], [0x05, 0x00, 0x03, 7, 2, 1]);
        assert_eq!(two.parts[1][..6], [0x05, 0x00, 0x03, 7, 2, 2]);
        assert_eq!(text_of(&encode(&"a".repeat(306), 10, 1).unwrap().parts, 6), [153, 153]);
        assert_eq!(encode(&"a".repeat(307), 10, 1).unwrap().parts.len(), 3);
    }

    #[test]
    fn gsm7_extension_characters_take_two_septets_and_are_not_split() {
        // `€` is ESC 0x65 in the extension table.
        let one = encode(&"€".repeat(80), 10, 1).unwrap();
        assert_eq!((one.coding, one.parts.len(), one.parts[0].len()), (Coding::Gsm7, 1, 160));
        let two = encode(&format!("{}€{}", "a".repeat(152), "a".repeat(10)), 10, 1).unwrap();
        assert_eq!(text_of(&two.parts, 6), [152, 12], "the escape stays with its character");
        assert_eq!(encode("Ä@£_ü", 1, 1).unwrap().coding, Coding::Gsm7);
    }

    #[test]
    fn ucs2_fits_70_then_splits_by_67() {
        let one = encode(&"Ж".repeat(70), 10, 1).unwrap();
        assert_eq!((one.coding, one.data_coding, one.parts.len()), (Coding::Ucs2, DataCoding::Ucs2, 1));
        assert_eq!(one.parts[0][..2], [0x04, 0x16]);
        let two = encode(&"Ж".repeat(71), 10, 1).unwrap();
        assert_eq!(text_of(&two.parts, 6), [134, 8]);
        // One character outside GSM 03.38 makes the whole text UCS-2.
        assert_eq!(encode(&format!("{}ł", "a".repeat(100)), 10, 1).unwrap().parts.len(), 2);
    }

    #[test]
    fn past_the_part_limit_is_a_clear_error() {
        assert_eq!(encode(&"a".repeat(459), 3, 1).unwrap().parts.len(), 3);
        let err = encode(&"a".repeat(460), 3, 1).unwrap_err();
        assert_eq!(err.to_string(), "the text needs 4 gsm7 parts; SMPP_MAX_PARTS allows 3");
        let err = encode(&"Ж".repeat(71), 1, 1).unwrap_err();
        assert_eq!(err.to_string(), "the text needs 2 ucs2 parts; SMPP_MAX_PARTS allows 1");
    }
}
