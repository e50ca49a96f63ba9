//! The stress payload: who sent it, its sequence number and when, in a fixed-size text header.
//!
//! Layout (all ASCII, so it is valid UTF-8 in a text frame and in a protocol string):
//! `~` + sender (8 hex digits) + seq (8 hex) + send time in ns since the run's origin (16 hex),
//! padded with `.` to the payload size. Both dialects put the payload at a known place in what
//! the server sends back (the raw endpoint ends with it, `chat(...)` ends with it plus `)`), so a
//! receiver finds it without scanning. Fixed-width hex is decoded with a few word operations.

/// Bytes taken by the header; the smallest payload size.
pub const HEADER_LEN: usize = 33;
const MARK: u8 = b'~';
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes the constant part of a payload for `sender` into `buf` (`buf.len()` is the payload size).
pub fn init(buf: &mut [u8], sender: u32) {
    debug_assert!(buf.len() >= HEADER_LEN);
    buf[0] = MARK;
    put_hex(&mut buf[1..9], sender as u64);
    buf[HEADER_LEN..].fill(b'.');
}

/// Stamps the per-message fields into a payload prepared by [`init`].
#[inline]
pub fn stamp(buf: &mut [u8], seq: u32, ts_ns: u64) {
    put_hex(&mut buf[9..17], seq as u64);
    put_hex(&mut buf[17..33], ts_ns);
}

/// Decodes `(sender, seq, ts_ns)` from a payload, or `None` if it is not one of ours.
#[inline]
pub fn decode(buf: &[u8]) -> Option<(u32, u32, u64)> {
    if buf.len() < HEADER_LEN || buf[0] != MARK {
        return None;
    }
    let sender = hex8(&buf[1..9]);
    let seq = hex8(&buf[9..17]);
    let ts = ((hex8(&buf[17..25]) as u64) << 32) | hex8(&buf[25..33]) as u64;
    Some((sender, seq, ts))
}

fn put_hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 15) as usize];
        v >>= 4;
    }
}

/// Eight hex digits to a number, without branches. Digits outside `0-9a-fA-F` give garbage
/// rather than an error; a corrupted payload then shows up as a sequence or routing error.
#[inline]
fn hex8(b: &[u8]) -> u32 {
    let v = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    // Letters have bit 6 set and their low nibble is value - 9; digits have the value as nibble.
    let letters = (v >> 6) & 0x0101_0101_0101_0101;
    let nibbles = (v & 0x0F0F_0F0F_0F0F_0F0F) + letters * 9;
    // Pack adjacent nibbles into bytes, bytes into 16-bit lanes, lanes into the result.
    let v = ((nibbles >> 4) | nibbles) & 0x00FF_00FF_00FF_00FF;
    let v = ((v >> 8) | v) & 0x0000_FFFF_0000_FFFF;
    (((v >> 16) | v) & 0xFFFF_FFFF) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut buf = vec![0u8; 64];
        init(&mut buf, 0xabc);
        for (seq, ts) in [
            (0, 0),
            (1, 1),
            (u32::MAX, u64::MAX),
            (0x1234_5678, 0x9abc_def0_1234_5678),
        ] {
            stamp(&mut buf, seq, ts);
            assert_eq!(decode(&buf), Some((0xabc, seq, ts)));
        }
        assert!(std::str::from_utf8(&buf).is_ok());
        assert!(buf[HEADER_LEN..].iter().all(|&b| b == b'.'));
        assert_eq!(decode(&buf[..32]), None);
        assert_eq!(decode(b"u1 joined room0 and some more text"), None);
    }

    #[test]
    fn hex8_matches_a_plain_parse() {
        for v in [0u32, 9, 10, 15, 16, 0xdead_beef, 0x0123_4567, u32::MAX] {
            let s = format!("{v:08x}");
            assert_eq!(hex8(s.as_bytes()), v);
            assert_eq!(hex8(s.to_uppercase().as_bytes()), v);
        }
    }
}
