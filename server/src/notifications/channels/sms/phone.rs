//! E.164 phone numbers: what a rule's `sms.to` must render to.

/// Most digits an E.164 number has (ITU-T E.164 §6: country code and national number).
const MAX_DIGITS: usize = 15;
/// Fewest digits accepted: a country code and a short national number.
const MIN_DIGITS: usize = 8;

/// The number's digits (without `+`) when `to` is `+` and 8 to 15 digits, the first not 0.
/// Spaces, dashes, dots and brackets are not accepted: a rule should render the number as
/// stored, and a number with stray characters is more often a wrong field than a format.
pub fn e164(to: &str) -> Result<&str, String> {
    let digits = to.strip_prefix('+').ok_or_else(|| format!("{to:?} is not an E.164 number: it must start with +"))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{to:?} is not an E.164 number: only digits may follow the +"));
    }
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
        return Err(format!("{to:?} is not an E.164 number: it needs {MIN_DIGITS} to {MAX_DIGITS} digits"));
    }
    if digits.starts_with('0') {
        return Err(format!("{to:?} is not an E.164 number: a country code does not start with 0"));
    }
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_pass_and_others_say_why() {
        assert_eq!(e164("+4915112345678"), Ok("4915112345678"));
        assert_eq!(e164("+12025550123"), Ok("12025550123"));
        assert_eq!(
            e164("4915112345678").unwrap_err(),
            "\"4915112345678\" is not an E.164 number: it must start with +"
        );
        assert_eq!(
            e164("+49 151 1234").unwrap_err(),
            "\"+49 151 1234\" is not an E.164 number: only digits may follow the +"
        );
        assert_eq!(e164("+1234567").unwrap_err(), "\"+1234567\" is not an E.164 number: it needs 8 to 15 digits");
        assert_eq!(
            e164("+1234567890123456").unwrap_err(),
            "\"+1234567890123456\" is not an E.164 number: it needs 8 to 15 digits"
        );
        assert_eq!(
            e164("+0123456789").unwrap_err(),
            "\"+0123456789\" is not an E.164 number: a country code does not start with 0"
        );
        assert!(e164("").is_err());
        assert!(e164("+").is_err());
    }
}
