//! One connection of the net thread: its socket, its queue, and where it is in its life.
//!
//! ```text
//! Head ──(page / error response)──────────────────────────> Draining ──> dropped
//!   └──(101 upgrade)──> Ws ──(close handshake or failure)──> Draining ──> dropped
//! ```
//! Every phase has a deadline or a liveness check, so no connection lives forever.

use std::io::{self, Read, Write};
use std::mem;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;
use tungstenite::protocol::WebSocketContext;

use super::outbox::Outbox;
use crate::events::ConnId;
use crate::http::Dialect;

/// The socket as tungstenite sees it.
///
/// Reads go to the TCP socket (counted, to bound fragment floods). Writes never touch the
/// socket: tungstenite's frames (pongs, close replies, echo) are collected in `ctrl` and moved
/// onto the connection's [`Outbox`] after each call, so every byte leaves through one ordered
/// queue and a frame from tungstenite can never be torn by a broadcast frame or vice versa.
pub struct Io {
    pub tcp: TcpStream,
    ctrl: Vec<u8>,
    /// Wire bytes read since the last complete message: a message built from endless tiny
    /// fragments (or a stream of pings) shows up here long before it reaches any size limit.
    pub wire_in: usize,
}

impl Io {
    /// Frames tungstenite wrote since the last call.
    pub fn take_ctrl(&mut self) -> Option<Bytes> {
        (!self.ctrl.is_empty()).then(|| Bytes::from(mem::take(&mut self.ctrl)))
    }
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.wire_in += n;
        Ok(n)
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ctrl.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a connection is in its life.
pub enum Phase {
    /// Reading the HTTP request head into the buffer.
    Head(Vec<u8>),
    /// Speaking WebSocket. `closing` once we have sent a close frame: nothing more is queued,
    /// and we only wait (until the deadline) for the peer's close.
    Ws {
        ctx: Box<WebSocketContext>,
        dialect: Dialect,
        closing: bool,
    },
    /// Finishing: write what is queued, shut down our side, and discard input until the peer
    /// closes or the deadline passes (closing with unread input would reset the connection and
    /// could destroy the last frames before the peer reads them).
    Draining { write_shut: bool },
}

pub struct Conn {
    pub id: ConnId,
    pub peer: SocketAddr,
    pub io: Io,
    pub outbox: Outbox,
    pub phase: Phase,
    /// When this connection is dropped regardless of anything else (`None` while open).
    pub deadline: Option<Instant>,
    /// Last time anything arrived from the peer (liveness).
    pub last_rx: Instant,
    /// A ping was sent since `last_rx`.
    pub pinged: bool,
    /// WRITABLE interest is registered (only while output is pending).
    pub writable: bool,
    /// Queued on the net loop's flush list.
    pub dirty: bool,
    /// The logic thread was told this connection opened, so it must be told it closed.
    pub known_to_logic: bool,
}

impl Conn {
    pub fn new(
        id: ConnId,
        tcp: TcpStream,
        peer: SocketAddr,
        now: Instant,
        deadline: Instant,
    ) -> Self {
        Conn {
            id,
            peer,
            io: Io {
                tcp,
                ctrl: Vec::new(),
                wire_in: 0,
            },
            outbox: Outbox::default(),
            phase: Phase::Head(Vec::new()),
            deadline: Some(deadline),
            last_rx: now,
            pinged: false,
            writable: false,
            dirty: false,
            known_to_logic: false,
        }
    }

    /// Moves frames tungstenite produced onto the outbox.
    pub fn collect_ctrl(&mut self) {
        if let Some(frames) = self.io.take_ctrl() {
            self.outbox.push(frames);
        }
    }

    /// True if application frames may still be queued.
    pub fn accepts_data(&self) -> bool {
        matches!(self.phase, Phase::Ws { closing: false, .. })
    }
}
