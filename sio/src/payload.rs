//! The arguments of an event or an acknowledgement, binary attachments included, as
//! Socket.IO carries them: JSON values in which each binary argument stands as a
//! placeholder `{"_placeholder":true,"num":n}` for the `n`th attachment.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::packet::DataError;

/// Every argument of an event or an acknowledgement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    /// The arguments, binary ones as placeholders (see [`Payload::attach`]).
    pub args: Vec<Value>,
    /// The binary attachments the placeholders stand for, in order.
    pub attachments: Vec<Bytes>,
}

impl Payload {
    /// JSON arguments, without attachments.
    pub fn new(args: Vec<Value>) -> Self {
        Self { args, attachments: Vec::new() }
    }

    /// Adds `bytes` as the next attachment and returns its placeholder, to put where the
    /// binary argument goes: `payload.args.push(payload.attach(bytes))`.
    pub fn attach(&mut self, bytes: impl Into<Bytes>) -> Value {
        self.attachments.push(bytes.into());
        json!({ "_placeholder": true, "num": self.attachments.len() - 1 })
    }

    /// The attachment a placeholder stands for.
    pub fn attachment(&self, placeholder: &Value) -> Option<&Bytes> {
        let num = placeholder_num(placeholder)?;
        self.attachments.get(usize::try_from(num).ok()?)
    }

    /// The first argument, for handlers that take one: [`DataError::Missing`] when there
    /// is none, [`DataError::Binary`] when it is an attachment.
    pub fn first(self) -> Result<Value, DataError> {
        let first = self.args.into_iter().next().ok_or(DataError::Missing)?;
        if placeholder_num(&first).is_some() {
            return Err(DataError::Binary);
        }
        Ok(first)
    }
}

/// The attachment number of a placeholder.
fn placeholder_num(value: &Value) -> Option<u64> {
    if value.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    value.get("num")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_stand_for_attachments() {
        let mut payload = Payload::new(vec![json!("text")]);
        let placeholder = payload.attach(vec![1, 2]);
        assert_eq!(placeholder, json!({ "_placeholder": true, "num": 0 }));
        assert_eq!(payload.attachment(&placeholder), Some(&Bytes::from_static(&[1, 2])));
        assert_eq!(payload.attachment(&json!({ "_placeholder": true, "num": 1 })), None);
        assert_eq!(payload.clone().first(), Ok(json!("text")));
        assert_eq!(Payload::new(vec![placeholder]).first(), Err(DataError::Binary));
        assert_eq!(Payload::default().first(), Err(DataError::Missing));
    }
}
