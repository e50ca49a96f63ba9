//! The client side of RFC 6455: the opening handshake and frame encoding/decoding.
//!
//! Written by hand instead of using tungstenite because the stress client must stay far cheaper
//! than the servers it measures: tungstenite allocates a `Message` (and copies the payload) per
//! frame and zero-fills its 128 KiB read buffer per connection on every read attempt, which at a
//! few million deliveries per second would make the load generator the bottleneck. Here frames
//! are parsed in place out of one read buffer per thread and written straight into a
//! per-connection output buffer whose capacity is reused, so the hot path never allocates.
//! The client needs only a small subset of the RFC: masked frames out, unmasked frames in.

use std::io::Write;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest server frame accepted; anything bigger is treated as a broken stream.
pub const MAX_FRAME: usize = 16 << 20;

/// The sample nonce from RFC 6455 section 1.3, used for every connection. The key only guards
/// against caching intermediaries, of which there are none on loopback; a fixed key lets the
/// expected `Sec-WebSocket-Accept` be a constant instead of a SHA-1 per connection.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `base64(sha1(KEY + GUID))`, as given in the same section of the RFC.
const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Appends the HTTP upgrade request for `path` to `out`.
pub fn write_request(out: &mut Vec<u8>, host: &str, path: &str, subprotocol: Option<&str>) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = subprotocol {
        let _ = write!(out, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Outcome of parsing the server's handshake response.
#[derive(Debug, PartialEq)]
pub enum Handshake {
    /// Upgrade accepted; the response head was this many bytes (frames may follow).
    Done(usize),
    /// The head is not complete yet.
    Partial,
    /// The server refused or answered nonsense.
    Failed(String),
}

/// Parses the response to [`write_request`].
pub fn parse_response(buf: &[u8]) -> Handshake {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Handshake::Partial,
        Err(e) => Handshake::Failed(format!("bad handshake response: {e}")),
        Ok(httparse::Status::Complete(n)) => {
            if resp.code != Some(101) {
                return Handshake::Failed(format!("handshake status {}", resp.code.unwrap_or(0)));
            }
            let accept = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"));
            match accept {
                Some(h) if h.value == ACCEPT => Handshake::Done(n),
                _ => Handshake::Failed("handshake: wrong Sec-WebSocket-Accept".to_string()),
            }
        }
    }
}

/// Appends one final, masked client frame carrying `payload`.
pub fn write_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `buf` with the repeating 4-byte `mask`, eight bytes at a time.
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // Chunks are multiples of 8 bytes, so the remainder starts at mask offset 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// One server frame, borrowed from the read buffer.
#[derive(Debug, PartialEq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
    /// Bytes of the buffer this frame took, header included.
    pub len: usize,
}

/// Result of [`parse`].
#[derive(Debug, PartialEq)]
pub enum Parsed<'a> {
    Frame(Frame<'a>),
    Incomplete,
    Invalid(&'static str),
}

/// Parses the server frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    if buf.len() < 2 {
        return Parsed::Incomplete;
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Parsed::Invalid("frame with reserved bits set");
    }
    if b1 & 0x80 != 0 {
        return Parsed::Invalid("masked frame from server");
    }
    let (len, header) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Parsed::Incomplete;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Parsed::Incomplete;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if len > MAX_FRAME as u64 {
        return Parsed::Invalid("frame larger than 16 MiB");
    }
    let end = header + len as usize;
    if buf.len() < end {
        return Parsed::Incomplete;
    }
    Parsed::Frame(Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        payload: &buf[header..end],
        len: end,
    })
}

/// The status code of a close frame's payload (1005 "no status" when it has none).
pub fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let (len, mut i) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert_eq!(frame[1] & 0x80, 0x80, "client frames are masked");
        let mask = &frame[i..i + 4];
        i += 4;
        assert_eq!(frame.len(), i + len);
        let data = frame[i..]
            .iter()
            .enumerate()
            .map(|(k, b)| b ^ mask[k % 4])
            .collect();
        (frame[0], data)
    }

    #[test]
    fn masked_frames_round_trip_at_every_length_class() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70001] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = Vec::new();
            write_masked(&mut out, OP_TEXT, &payload, [0x12, 0x34, 0x56, 0x78]);
            let (b0, data) = unmask(&out);
            assert_eq!(b0, 0x81);
            assert_eq!(data, payload, "length {len}");
        }
    }

    #[test]
    fn parses_server_frames_and_waits_for_the_rest() {
        let mut buf = vec![0x81, 5];
        buf.extend_from_slice(b"hello");
        let mut long = vec![0x82, 126, 0x01, 0x00];
        long.extend(std::iter::repeat_n(b'x', 256));
        buf.extend_from_slice(&long);
        let Parsed::Frame(f) = parse(&buf) else {
            panic!()
        };
        assert_eq!(
            (f.fin, f.opcode, f.payload, f.len),
            (true, OP_TEXT, &b"hello"[..], 7)
        );
        let Parsed::Frame(g) = parse(&buf[7..]) else {
            panic!()
        };
        assert_eq!((g.opcode, g.payload.len(), g.len), (OP_BINARY, 256, 260));
        for cut in 0..long.len() {
            assert_eq!(parse(&long[..cut]), Parsed::Incomplete);
        }
        assert!(matches!(
            parse(&[0x81, 0x85, 0, 0, 0, 0]),
            Parsed::Invalid(_)
        ));
        assert!(matches!(parse(&[0xC1, 0]), Parsed::Invalid(_)));
    }

    #[test]
    fn handshake_request_and_response() {
        let mut out = Vec::new();
        write_request(&mut out, "127.0.0.1:9", "/x?y=1", Some("chatroom-protocol"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: chatroom-protocol\r\n"));
        assert!(text.ends_with("\r\n\r\n"));

        let ok =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        assert_eq!(parse_response(ok), Handshake::Done(ok.len() - 2));
        assert_eq!(parse_response(&ok[..20]), Handshake::Partial);
        let bad = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(matches!(parse_response(bad), Handshake::Failed(_)));
        let refused = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(matches!(parse_response(refused), Handshake::Failed(_)));
    }
}
