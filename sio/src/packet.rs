//! Engine.IO v4 and Socket.IO v5 packets as text: parsing what clients send and encoding what
//! the server sends. Event payloads stay JSON text until a handler asks for them.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::error::PacketError;
use crate::payload::Payload;

/// The record separator between packets of a long-polling payload.
pub const SEPARATOR: char = '\x1e';

/// An Engine.IO packet from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `1`: the client closes the session.
    Close,
    /// `2probe`: a WebSocket upgrade probe.
    Ping(&'a str),
    /// `3`: the answer to the server's ping.
    Pong,
    /// `4…`: a Socket.IO packet.
    Message(&'a str),
    /// `5`: the upgrade is complete.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

impl<'a> EnginePacket<'a> {
    /// Parses a text packet.
    pub fn parse(text: &'a str) -> Result<Self, PacketError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(PacketError::Empty)?;
        let rest = &text[1..];
        Ok(match kind {
            '1' => Self::Close,
            '2' => Self::Ping(rest),
            '3' => Self::Pong,
            '4' => Self::Message(rest),
            '5' => Self::Upgrade,
            '6' => Self::Noop,
            other => return Err(PacketError::EngineType(other)),
        })
    }
}

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`: join a namespace.
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event.
    Event,
    /// `3`: an acknowledgement.
    Ack,
    /// `4`: a refused namespace join (server to client only).
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

/// A Socket.IO packet from a client, borrowing its text.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its type.
    pub kind: Kind,
    /// How many binary attachments follow it.
    pub attachments: usize,
    /// The namespace (`/` when absent).
    pub ns: &'a str,
    /// The acknowledgement id the client waits on.
    pub ack: Option<u64>,
    /// The JSON payload text (may be empty).
    pub data: &'a str,
}

impl<'a> Packet<'a> {
    /// Parses `<type>[<attachments>-][<namespace>,][<ack id>][<data>]`.
    pub fn parse(text: &'a str) -> Result<Self, PacketError> {
        let bytes = text.as_bytes();
        let kind = match bytes.first() {
            Some(b'0') => Kind::Connect,
            Some(b'1') => Kind::Disconnect,
            Some(b'2') => Kind::Event,
            Some(b'3') => Kind::Ack,
            Some(b'4') => Kind::ConnectError,
            Some(b'5') => Kind::BinaryEvent,
            Some(b'6') => Kind::BinaryAck,
            Some(&other) => return Err(PacketError::SocketType(other as char)),
            None => return Err(PacketError::Empty),
        };
        let mut at = 1;
        let mut attachments = 0;
        if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
            let digits = bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || bytes.get(at + digits) != Some(&b'-') {
                return Err(PacketError::Attachments);
            }
            attachments = text[at..at + digits].parse().map_err(|_| PacketError::Attachments)?;
            at += digits + 1;
        }
        let mut ns = "/";
        if bytes.get(at) == Some(&b'/') {
            let end = text[at..].find(',').map_or(text.len(), |i| at + i);
            ns = &text[at..end];
            at = (end + 1).min(text.len());
        }
        let digits = bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let ack = if digits > 0 {
            let id = text[at..at + digits].parse().map_err(|_| PacketError::AckId)?;
            at += digits;
            Some(id)
        } else {
            None
        };
        Ok(Packet { kind, attachments, ns, ack, data: &text[at..] })
    }
}

/// Why an event's payload could not be given to its handler as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The event had no argument after its name.
    #[error("the event has no argument")]
    Missing,
    /// The arguments nest deeper than the parser allows (a packet that is not valid JSON
    /// closes the connection instead, as Node's server does).
    #[error("the argument nests too deep")]
    Malformed,
    /// The argument came as binary attachments.
    #[error("the argument is binary")]
    Binary,
}

/// How deep arguments may nest: below serde_json's recursion limit (128), which would
/// report a deeper value as a syntax error.
const MAX_DEPTH: usize = 120;

/// An event's name and its arguments. A payload that is not a JSON array starting with a
/// string is an error (the session closes); arguments nested deeper than [`MAX_DEPTH`]
/// still yield the name, so the handler can answer the client's ack with an error instead
/// of leaving it waiting.
pub fn event(data: &str) -> Result<(String, Result<Vec<Value>, DataError>), PacketError> {
    let rest = data.trim_start().strip_prefix('[').ok_or(PacketError::EventShape)?;
    let mut names = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    let name = names.next().ok_or(PacketError::EventShape)?.map_err(|_| PacketError::EventShape)?;
    let rest = &rest[names.byte_offset()..];
    if too_deep(rest) {
        return Ok((name, Err(DataError::Malformed)));
    }
    Ok((name, Ok(array_rest(rest)?)))
}

/// The elements of a JSON array whose opening bracket (and perhaps some elements) came
/// before `rest`: `, 1, "2"]` gives `[1, "2"]`. Nothing but whitespace may follow it.
fn array_rest(mut rest: &str) -> Result<Vec<Value>, PacketError> {
    let mut values = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix(']') {
            return if after.trim_end().is_empty() { Ok(values) } else { Err(PacketError::EventShape) };
        }
        rest = rest.strip_prefix(',').ok_or(PacketError::EventShape)?;
        let mut next = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        values.push(next.next().ok_or(PacketError::EventShape)?.map_err(|_| PacketError::EventShape)?);
        rest = &rest[next.byte_offset()..];
    }
}

/// True when `json` nests brackets deeper than [`MAX_DEPTH`] (outside strings).
fn too_deep(json: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A namespace join's auth payload: nothing, or a JSON object.
pub fn connect_auth(data: &str) -> Result<Option<Value>, PacketError> {
    if data.is_empty() {
        return Ok(None);
    }
    match serde_json::from_str(data) {
        Ok(auth @ Value::Object(_)) => Ok(Some(auth)),
        _ => Err(PacketError::ConnectPayload),
    }
}

/// The prefix every packet of namespace `ns` starts with after its type: `/chat,` (nothing
/// for the main namespace `/`).
fn ns_prefix(out: &mut String, ns: &str) {
    if ns != "/" {
        out.push_str(ns);
        out.push(',');
    }
}

/// `4` (Engine.IO message) + `2<ns>,["event",data]`.
pub fn encode_event(ns: &str, event: &str, data: &impl Serialize) -> Result<String, serde_json::Error> {
    let mut out = String::with_capacity(64);
    out.push_str("42");
    ns_prefix(&mut out, ns);
    out.push('[');
    out.push_str(&serde_json::to_string(event)?);
    out.push(',');
    out.push_str(&serde_json::to_string(data)?);
    out.push(']');
    Ok(out)
}

/// `4` + `2<ns>,["event",args…]`, or `5<n>-<ns>,[…]` when it has `n` attachments (which
/// follow it as binary messages).
pub fn encode_event_payload(ns: &str, event: &str, payload: &Payload) -> String {
    let mut out = String::with_capacity(64);
    out.push('4');
    match payload.attachments.len() {
        0 => out.push('2'),
        n => {
            let _ = write!(out, "5{n}-");
        }
    }
    ns_prefix(&mut out, ns);
    out.push('[');
    out.push_str(&Value::from(event).to_string());
    for arg in &payload.args {
        out.push(',');
        out.push_str(&arg.to_string());
    }
    out.push(']');
    out
}

/// `4` + `3<ns>,<id>[args…]`, or `6<n>-<ns>,<id>[…]` with `n` attachments.
pub fn encode_ack_payload(ns: &str, id: u64, payload: &Payload) -> String {
    let mut out = String::with_capacity(64);
    out.push('4');
    match payload.attachments.len() {
        0 => out.push('3'),
        n => {
            let _ = write!(out, "6{n}-");
        }
    }
    ns_prefix(&mut out, ns);
    let _ = write!(out, "{id}");
    out.push_str(&Value::from(payload.args.clone()).to_string());
    out
}

/// `4` + `3<ns>,<id>[data]`.
pub fn encode_ack(ns: &str, id: u64, data: &impl Serialize) -> Result<String, serde_json::Error> {
    let mut out = String::with_capacity(64);
    out.push_str("43");
    ns_prefix(&mut out, ns);
    let _ = write!(out, "{id}[");
    out.push_str(&serde_json::to_string(data)?);
    out.push(']');
    Ok(out)
}

/// `4` + `0<ns>,{"sid":…}`: the namespace join succeeded (with the recovery session id
/// `pid` when connection state recovery is on).
pub fn encode_connect(ns: &str, sid: &str, pid: Option<&str>) -> String {
    let mut out = String::from("40");
    ns_prefix(&mut out, ns);
    let answer = match pid {
        Some(pid) => serde_json::json!({ "sid": sid, "pid": pid }),
        None => serde_json::json!({ "sid": sid }),
    };
    out.push_str(&answer.to_string());
    out
}

/// `4` + `1<ns>,`: the server removed the client from the namespace.
pub fn encode_disconnect(ns: &str) -> String {
    let mut out = String::from("41");
    ns_prefix(&mut out, ns);
    out
}

/// `4` + `4<ns>,{"message":…}`: the namespace join was refused.
pub fn encode_connect_error(ns: &str, message: &str) -> String {
    let mut out = String::from("44");
    ns_prefix(&mut out, ns);
    out.push_str(&serde_json::json!({ "message": message }).to_string());
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_packets_of_every_shape() {
        let cases = [
            ("0", Kind::Connect, 0, "/", None, ""),
            ("0/chat,{\"token\":\"t\"}", Kind::Connect, 0, "/chat", None, "{\"token\":\"t\"}"),
            ("1/chat,", Kind::Disconnect, 0, "/chat", None, ""),
            ("1/chat", Kind::Disconnect, 0, "/chat", None, ""),
            ("2[\"a\"]", Kind::Event, 0, "/", None, "[\"a\"]"),
            ("2/chat,12[\"a\",1]", Kind::Event, 0, "/chat", Some(12), "[\"a\",1]"),
            ("212[\"a\"]", Kind::Event, 0, "/", Some(12), "[\"a\"]"),
            ("3/chat,7[{}]", Kind::Ack, 0, "/chat", Some(7), "[{}]"),
            (
                "51-/chat,3[\"a\",{\"_placeholder\":true,\"num\":0}]",
                Kind::BinaryEvent,
                1,
                "/chat",
                Some(3),
                "[\"a\",{\"_placeholder\":true,\"num\":0}]",
            ),
        ];
        for (text, kind, attachments, ns, ack, data) in cases {
            assert_eq!(Packet::parse(text).unwrap(), Packet { kind, attachments, ns, ack, data }, "{text}");
        }
    }

    #[test]
    fn refuses_broken_packets() {
        assert_eq!(Packet::parse(""), Err(PacketError::Empty));
        assert_eq!(Packet::parse("9"), Err(PacketError::SocketType('9')));
        assert_eq!(Packet::parse("5/chat,[]"), Err(PacketError::Attachments));
        assert_eq!(Packet::parse("51/chat,[]"), Err(PacketError::Attachments));
        assert_eq!(Packet::parse("2/chat,99999999999999999999999[]"), Err(PacketError::AckId));
        assert_eq!(EnginePacket::parse("7"), Err(PacketError::EngineType('7')));
        assert_eq!(EnginePacket::parse("2probe"), Ok(EnginePacket::Ping("probe")));
    }

    #[test]
    fn an_event_gives_its_name_and_every_argument() {
        assert_eq!(event(r#"["a",{"x":1}]"#).unwrap(), ("a".into(), Ok(vec![json!({ "x": 1 })])));
        assert_eq!(
            event(r#" [ "a" , 1 , {"y":[2]} , "more" ] "#).unwrap(),
            ("a".into(), Ok(vec![json!(1), json!({ "y": [2] }), json!("more")]))
        );
        assert_eq!(event(r#"["a"]"#).unwrap(), ("a".into(), Ok(vec![])));
        let deep = format!(r#"["a",{}1{}]"#, "[".repeat(2000), "]".repeat(2000));
        assert_eq!(event(&deep).unwrap(), ("a".into(), Err(DataError::Malformed)));
        // Brackets inside strings do not count.
        let flat = format!(r#"["a","{}\"{}"]"#, "[".repeat(2000), "{".repeat(10));
        assert_eq!(event(&flat).unwrap().1.unwrap().len(), 1);
        for broken in
            [r#"["a",{"x":}]"#, r#"["a",1,}]"#, r#"["a",1"#, r#"["a" 1]"#, r#"["a",1]x"#, "[1,2]", r#"{"a":1}"#, ""]
        {
            assert_eq!(event(broken), Err(PacketError::EventShape), "{broken}");
        }
    }

    #[test]
    fn a_join_takes_an_object_or_nothing() {
        assert_eq!(connect_auth(""), Ok(None));
        assert_eq!(connect_auth(r#"{"token":"t"}"#), Ok(Some(json!({ "token": "t" }))));
        for broken in ["1", "[]", r#""t""#, "{", "null"] {
            assert_eq!(connect_auth(broken), Err(PacketError::ConnectPayload), "{broken}");
        }
    }

    #[test]
    fn encodes_what_the_client_parses() {
        assert_eq!(
            encode_event("/chat", "newMessage", &json!({ "a": 1 })).unwrap(),
            r#"42/chat,["newMessage",{"a":1}]"#
        );
        assert_eq!(encode_event("/", "x", &1).unwrap(), r#"42["x",1]"#);
        assert_eq!(encode_ack("/chat", 4, &json!({ "ok": true })).unwrap(), r#"43/chat,4[{"ok":true}]"#);
        assert_eq!(encode_connect("/chat", "abc", None), r#"40/chat,{"sid":"abc"}"#);
        let with_pid: Value = serde_json::from_str(&encode_connect("/", "abc", Some("p")).split_off(2)).unwrap();
        assert_eq!(with_pid, json!({ "sid": "abc", "pid": "p" }));
        assert_eq!(encode_connect_error("/chat", "no"), r#"44/chat,{"message":"no"}"#);
        assert_eq!(encode_disconnect("/chat"), "41/chat,");
        assert_eq!(encode_disconnect("/"), "41");
        let mut payload = Payload::new(vec![json!(1), json!("2"), json!({ "3": [true] })]);
        assert_eq!(encode_event_payload("/", "m", &payload), r#"42["m",1,"2",{"3":[true]}]"#);
        assert_eq!(encode_ack_payload("/chat", 7, &payload), r#"43/chat,7[1,"2",{"3":[true]}]"#);
        let placeholder = payload.attach(vec![1]);
        payload.args = vec![placeholder];
        assert_eq!(encode_event_payload("/", "m", &payload), r#"451-["m",{"_placeholder":true,"num":0}]"#);
        assert_eq!(encode_ack_payload("/", 7, &payload), r#"461-7[{"_placeholder":true,"num":0}]"#);
        assert_eq!(encode_ack_payload("/", 7, &Payload::default()), "437[]");
    }
}
