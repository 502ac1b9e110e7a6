//! The server side of RFC 6455 framing: the handshake key, frame headers for what the server
//! writes (never masked) and a parser for what clients write (always masked), unmasking in
//! place so a frame's payload is read without a copy.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::error::WsError;

/// Opcode of a continuation frame.
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const PONG: u8 = 0xA;

/// Close code: going away (the server is stopping).
pub const GOING_AWAY: u16 = 1001;
/// Close code: protocol error.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Close code: a text message (or a close reason) that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Close code: policy violation (the client does not read its replies).
pub const POLICY_VIOLATION: u16 = 1008;
/// Close code: message too big.
pub const TOO_BIG: u16 = 1009;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Appends a final frame of `opcode` carrying `payload` to `out`.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    write_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends the header of a final, unmasked frame of `opcode` with a `len`-byte payload.
pub fn write_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Appends a close frame with `code`.
pub fn write_close(out: &mut Vec<u8>, code: u16) {
    write_frame(out, CLOSE, &code.to_be_bytes());
}

/// True for a `Sec-WebSocket-Key` RFC 6455 allows: 16 bytes in base64.
pub fn valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

/// The code a client's close frame carries (`None` for an empty body), checked as RFC 6455
/// section 7.4 requires: a one-byte body, a code no endpoint may send (1005 and 1006
/// among them, which only stand for "no code") or a reason that is not UTF-8 is an error.
pub fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(WsError::BadClose),
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    // Those defined by RFC 6455 that may be sent, and the ranges for libraries and
    // applications.
    if !matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) {
        return Err(WsError::BadClose);
    }
    std::str::from_utf8(reason).map_err(|_| WsError::Utf8)?;
    Ok(Some(code))
}

/// A complete frame found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The last frame of its message.
    pub fin: bool,
    /// Its opcode.
    pub opcode: u8,
    /// Where its (unmasked) payload lies in the buffer.
    pub payload: (usize, usize),
    /// Its whole length: header and payload.
    pub len: usize,
}

/// Parses the frame at the start of `buf` and unmasks its payload in place. `Ok(None)` when
/// the buffer does not hold all of it yet. Frames over `max` bytes, unmasked frames,
/// reserved bits (no extension is negotiated) and malformed control frames are errors.
pub fn parse(buf: &mut [u8], max: usize) -> Result<Option<Frame>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Unmasked);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let is_control = opcode & 0x8 != 0;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(WsError::Opcode(opcode));
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else { return Ok(None) };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else { return Ok(None) };
            (u64::from_be_bytes(b.try_into().expect("eight bytes")), 10)
        }
        n => (u64::from(n), 2),
    };
    if is_control && (!fin || len > 125) {
        return Err(WsError::BadControl);
    }
    if len > max as u64 {
        return Err(WsError::TooBig);
    }
    let len = len as usize;
    let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
    let mask: [u8; 4] = mask.try_into().expect("four bytes");
    at += 4;
    let Some(payload) = buf.get_mut(at..at + len) else { return Ok(None) };
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
    Ok(Some(Frame { fin, opcode, payload: (at, at + len), len: at + len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn the_rfc_example_key() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn parses_and_unmasks_every_length_form() {
        for size in [0, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut buf = masked(TEXT, true, &payload);
            let whole = buf.len();
            // Every prefix is incomplete, never an error.
            for cut in [0, 1, 2, 3, 5, 9, 13, whole - 1] {
                if cut < whole {
                    assert_eq!(parse(&mut buf.clone()[..cut], usize::MAX).unwrap(), None, "size {size} cut {cut}");
                }
            }
            let frame = parse(&mut buf, usize::MAX).unwrap().unwrap();
            assert_eq!((frame.fin, frame.opcode, frame.len), (true, TEXT, whole));
            assert_eq!(&buf[frame.payload.0..frame.payload.1], &payload[..]);
        }
    }

    #[test]
    fn refuses_what_a_client_must_not_send() {
        let mut unmasked = vec![0x81, 0x01, b'x'];
        assert_eq!(parse(&mut unmasked, 100), Err(WsError::Unmasked));
        let mut reserved = masked(TEXT, true, b"x");
        reserved[0] |= 0x40;
        assert_eq!(parse(&mut reserved, 100), Err(WsError::ReservedBits));
        assert_eq!(parse(&mut masked(0x3, true, b"x"), 100), Err(WsError::Opcode(3)));
        assert_eq!(parse(&mut masked(PING, false, b"x"), 100), Err(WsError::BadControl));
        assert_eq!(parse(&mut masked(PING, true, &[0; 126]), 1000), Err(WsError::BadControl));
        assert_eq!(parse(&mut masked(BINARY, true, &[0; 101]), 100), Err(WsError::TooBig));
        // The size is refused from the header alone, before the payload arrives.
        assert_eq!(parse(&mut masked(BINARY, true, &[0; 70_000])[..10], 100), Err(WsError::TooBig));
    }

    #[test]
    fn checks_close_bodies() {
        assert_eq!(close_code(b""), Ok(None));
        assert_eq!(close_code(&[3, 232]), Ok(Some(1000)));
        assert_eq!(close_code(&[0x0F, 0x9F, b'o', b'k']), Ok(Some(3999)));
        assert_eq!(close_code(&[3]), Err(WsError::BadClose));
        for code in [0u16, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535] {
            assert_eq!(close_code(&code.to_be_bytes()), Err(WsError::BadClose), "{code}");
        }
        assert_eq!(close_code(&[3, 232, 0xff]), Err(WsError::Utf8));
    }

    #[test]
    fn checks_handshake_keys() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25j",
            b"!!!!!!!!!!!!!!!!!!!!!!==",
            b"dGhlIHNhbXBsZSBub25jZXg=",
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn writes_every_length_form() {
        for (size, header) in [(5, 2), (126, 4), (65_536, 10)] {
            let mut out = Vec::new();
            write_frame(&mut out, BINARY, &vec![7; size]);
            assert_eq!(out.len(), header + size);
            assert_eq!(out[0], 0x82);
        }
    }
}
