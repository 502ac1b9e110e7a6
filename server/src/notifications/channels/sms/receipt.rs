//! SMSC delivery receipts: the `deliver_sm` text of SMPP 3.4 Appendix B
//! (`id:… sub:… dlvr:… submit date:… done date:… stat:DELIVRD err:… text:…`).

/// What a receipt says about one submitted part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptState {
    /// `DELIVRD`.
    Delivered,
    /// `EXPIRED`: the validity period ran out.
    Expired,
    /// `UNDELIV`, `REJECTD`, `DELETED` or `UNKNOWN`: it will not arrive.
    Undeliverable,
    /// `ENROUTE` or `ACCEPTD`: an intermediate notification, nothing final yet.
    Pending,
}

impl ReceiptState {
    /// The `stat:` value's meaning; `None` for a value SMPP 3.4 does not define.
    fn parse(stat: &str) -> Option<Self> {
        Some(match stat {
            "DELIVRD" => Self::Delivered,
            "EXPIRED" => Self::Expired,
            "UNDELIV" | "REJECTD" | "DELETED" | "UNKNOWN" => Self::Undeliverable,
            "ENROUTE" | "ACCEPTD" => Self::Pending,
            _ => return None,
        })
    }
}

/// A parsed receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The `message_id` the SMSC answered the `submit_sm` with.
    pub message_id: String,
    /// Final (or intermediate) state.
    pub state: ReceiptState,
    /// The `err:` network error code, when given.
    pub error: Option<String>,
}

/// The receipt in `text`, or why it is not one.
pub fn parse(text: &str) -> Result<Receipt, String> {
    let field = |key: &str| {
        text.match_indices(key)
            .find(|(at, _)| *at == 0 || text.as_bytes()[at - 1] == b' ')
            .map(|(at, _)| text[at + key.len()..].split(' ').next().unwrap_or(""))
    };
    let message_id = field("id:").filter(|id| !id.is_empty()).ok_or("no id: field")?;
    let stat = field("stat:").ok_or("no stat: field")?;
    let state = ReceiptState::parse(stat).ok_or_else(|| format!("unknown stat: {stat:?}"))?;
    let error = field("err:").filter(|e| !e.is_empty() && e.bytes().any(|b| b != b'0')).map(str::to_owned);
    Ok(Receipt { message_id: message_id.to_owned(), state, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_of_appendix_b_parse() {
        let text = "id:0123456789 sub:001 dlvr:001 submit date:2612050745 done date:2612050746 stat:DELIVRD err:000 text:Hello";
        assert_eq!(
            parse(text),
            Ok(Receipt { message_id: "0123456789".into(), state: ReceiptState::Delivered, error: None })
        );
        let text = "id:a1b2 sub:001 dlvr:000 submit date:2612050745 done date:2612060745 stat:EXPIRED err:027 text:";
        assert_eq!(parse(text).unwrap().state, ReceiptState::Expired);
        assert_eq!(parse(text).unwrap().error.as_deref(), Some("027"));
        assert_eq!(parse("id:x stat:UNDELIV").unwrap().state, ReceiptState::Undeliverable);
        assert_eq!(parse("id:x stat:REJECTD").unwrap().state, ReceiptState::Undeliverable);
        assert_eq!(parse("id:x stat:ENROUTE").unwrap().state, ReceiptState::Pending);
        // `id:` inside the text is not the message id.
        assert_eq!(parse("id:real stat:DELIVRD text:my id:fake").unwrap().message_id, "real");
    }

    #[test]
    fn other_texts_are_not_receipts() {
        assert_eq!(parse("hello there").unwrap_err(), "no id: field");
        assert_eq!(parse("id:1 sub:001").unwrap_err(), "no stat: field");
        assert_eq!(parse("id:1 stat:WHATEVR").unwrap_err(), "unknown stat: \"WHATEVR\"");
    }
}
