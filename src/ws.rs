//! Server-side WebSocket frame encoding for outbound data.
//!
//! Server frames are never masked, so one encoded frame is byte-identical for every recipient: a
//! broadcast is encoded here once and shared as [`Bytes`]. [`FrameWriter`] reserves room for the
//! longest header in front of the payload, so the payload is written once, straight into the
//! final buffer, and the header is filled in afterwards without moving it.

use bytes::Bytes;

/// Longest header of an unmasked frame: 2 bytes plus an 8-byte extended length.
const MAX_HEADER: usize = 10;

const OP_TEXT: u8 = 0x1;
const FIN: u8 = 0x80;

/// Builds one final text frame; write the payload into it with [`FrameWriter::buf`].
pub struct FrameWriter {
    buf: Vec<u8>,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::with_capacity(64)
    }
}

impl FrameWriter {
    /// A writer with room for `payload` bytes of payload before it reallocates.
    pub fn with_capacity(payload: usize) -> Self {
        let mut buf = Vec::with_capacity(MAX_HEADER + payload);
        buf.resize(MAX_HEADER, 0);
        FrameWriter { buf }
    }

    /// The buffer to append payload bytes to (everything past the reserved header space).
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The payload written so far.
    pub fn payload(&self) -> &[u8] {
        &self.buf[MAX_HEADER..]
    }

    /// Writes the header in front of the payload and returns the finished frame.
    pub fn finish(self) -> Bytes {
        let mut buf = self.buf;
        let len = buf.len() - MAX_HEADER;
        let start = match len {
            0..=125 => {
                buf[MAX_HEADER - 1] = len as u8;
                MAX_HEADER - 2
            }
            126..=0xFFFF => {
                buf[MAX_HEADER - 3] = 126;
                buf[MAX_HEADER - 2..MAX_HEADER].copy_from_slice(&(len as u16).to_be_bytes());
                MAX_HEADER - 4
            }
            _ => {
                buf[1] = 127;
                buf[2..MAX_HEADER].copy_from_slice(&(len as u64).to_be_bytes());
                0
            }
        };
        buf[start] = FIN | OP_TEXT;
        Bytes::from(buf).slice(start..)
    }
}

/// Encodes `payload` as one final text frame.
pub fn text_frame(payload: &[u8]) -> Bytes {
    let mut w = FrameWriter::with_capacity(payload.len());
    w.buf().extend_from_slice(payload);
    w.finish()
}

/// The payload of a frame produced by this module (for tests and tools reading logic output).
///
/// Returns `None` if `frame` is not a complete, unmasked, final text frame.
pub fn text_payload(frame: &[u8]) -> Option<&[u8]> {
    let (&b0, rest) = frame.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    if b0 != FIN | OP_TEXT || b1 & 0x80 != 0 {
        return None;
    }
    let (len, rest) = match b1 {
        126 => {
            let (l, r) = rest.split_at_checked(2)?;
            (u16::from_be_bytes([l[0], l[1]]) as usize, r)
        }
        127 => {
            let (l, r) = rest.split_at_checked(8)?;
            (u64::from_be_bytes(l.try_into().ok()?) as usize, r)
        }
        n => (n as usize, rest),
    };
    (rest.len() == len).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tungstenite::protocol::frame::FrameHeader;

    #[test]
    fn header_lengths_match_tungstenite() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 200_000] {
            let payload = vec![b'x'; len];
            let frame = text_frame(&payload);
            let mut cur = Cursor::new(&frame[..]);
            let (hdr, plen) = FrameHeader::parse(&mut cur).unwrap().unwrap();
            assert!(hdr.is_final);
            assert_eq!(hdr.mask, None);
            assert_eq!(plen as usize, len);
            assert_eq!(cur.position() as usize + len, frame.len());
            assert_eq!(text_payload(&frame), Some(&payload[..]));
        }
    }

    #[test]
    fn rejects_truncated_frames() {
        let frame = text_frame(b"hello");
        assert_eq!(text_payload(&frame[..frame.len() - 1]), None);
        assert_eq!(text_payload(&[]), None);
    }
}
