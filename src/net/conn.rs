//! One connection of the net thread: its socket, its queue, and where it is in its life.
//!
//! ```text
//! Head ──(page / error response)──────────────────────────> Draining ──> dropped
//!   ├──(API request)──> Api ──(answer, keep-alive)──> Head
//!   │                      └──(answer, close)─────────────> Draining
//!   └──(101 upgrade)──> Ws ──(close handshake or failure)──> Draining ──> dropped
//! ```
//! Every phase has a deadline or a liveness check, so no connection lives forever.

use std::io::{self, ErrorKind, Read, Write};
use std::mem;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use tungstenite::protocol::WebSocketContext;

use super::outbox::Outbox;
use super::transport::Transport;
use crate::chat::Dialect;
use crate::events::ConnId;

/// The socket as tungstenite sees it.
///
/// Reads go to the transport (the TCP socket, or the TLS session over it: plaintext either
/// way), metered twice: a per-wake-up budget, so one fast sender cannot
/// hold the loop while others wait, and a count of wire bytes since the last complete message,
/// so a message built from endless tiny fragments (or a stream of pings) is caught long before
/// it reaches any size limit. Writes never touch the
/// socket: tungstenite's frames (pongs, close replies, echo) are collected in `ctrl` and moved
/// onto the connection's [`Outbox`] after each call, so every byte leaves through one ordered
/// queue and a frame from tungstenite can never be torn by a broadcast frame or vice versa.
pub struct Io {
    pub transport: Transport,
    ctrl: Vec<u8>,
    /// Wire bytes read since the last complete message.
    pub wire_in: usize,
    /// `wire_in` at which reading stops and the connection is failed as a fragment flood.
    wire_limit: usize,
    /// Bytes this connection may still read before yielding to others.
    budget: usize,
    /// The budget ran out with input possibly still waiting: read again on the next turn.
    pub starved: bool,
}

impl Io {
    /// Grants a fresh read budget for one turn of the event loop.
    pub fn refill(&mut self, budget: usize) {
        self.budget = budget;
        self.starved = false;
    }

    /// True once the fragment-flood limit is reached.
    pub fn flooded(&self) -> bool {
        self.wire_in >= self.wire_limit
    }

    /// Frames tungstenite wrote since the last call.
    pub fn take_ctrl(&mut self) -> Option<Bytes> {
        (!self.ctrl.is_empty()).then(|| Bytes::from(mem::take(&mut self.ctrl)))
    }
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.flooded() {
            return Err(io::Error::new(ErrorKind::InvalidData, "fragment flood"));
        }
        if self.budget == 0 {
            self.starved = true;
            return Err(ErrorKind::WouldBlock.into());
        }
        let len = buf.len().min(self.budget);
        let n = self.transport.read(&mut buf[..len])?;
        self.budget -= n;
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

/// What a WebSocket connection's messages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// Requests in a chat dialect, parsed here and applied by the logic thread.
    Chat(Dialect),
    /// Anything, echoed back (the conformance-test endpoint).
    Echo,
}

/// Where a connection is in its life.
pub enum Phase {
    /// Reading the HTTP request head into the buffer.
    Head(Vec<u8>),
    /// Speaking WebSocket. `closing` once we have sent a close frame: nothing more is queued,
    /// and we only wait (until the deadline) for the peer's close.
    Ws {
        ctx: Box<WebSocketContext>,
        speaks: Speaks,
        closing: bool,
    },
    /// An API request is with the logic thread: waiting for its answer (`leftover` is what
    /// the client pipelined behind it). Then back to `Head` if `keep_alive`, else `Draining`.
    Api { keep_alive: bool, leftover: Vec<u8> },
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
    /// Queued on the net loop's list of reads put off while output is backlogged.
    pub read_deferred: bool,
    /// The logic thread was told this connection opened, so it must be told it closed.
    pub known_to_logic: bool,
    /// The logic thread has a backlog of this connection's requests (they wait behind one
    /// that needs a worker): it is not read until released, so TCP pushes back on the client.
    pub held: bool,
    /// Rate limit of incoming messages.
    pub bucket: TokenBucket,
    /// The per-address key of `peer` (`None`: exempt from per-address limits).
    pub addr: Option<u128>,
    /// What the chat core is told about `peer`.
    pub peer_key: crate::chat::Peer,
    /// A room-URL upgrade waiting for the logic thread's admission: the `101` to send if it
    /// is admitted. Nothing is read or queued meanwhile.
    pub held_upgrade: Option<Vec<u8>>,
    /// What was waiting for the peer (queued here and unsent in the kernel) at the last
    /// sweep, if that was over the cap (see `Net::sweep`: over the cap twice in a row without
    /// shrinking is a slow consumer).
    pub over_cap: Option<usize>,
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    /// Messages refused in a row (reset by the next accepted one).
    pub refused_in_a_row: u32,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            last: now,
            refused_in_a_row: 0,
        }
    }

    /// Takes a token if there is one. A `rate` of 0 means unlimited.
    pub fn take(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst.max(1)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            true
        } else {
            self.refused_in_a_row += 1;
            false
        }
    }

    /// Counts a refusal decided elsewhere (the address's bucket).
    pub fn refuse(&mut self) {
        self.refused_in_a_row += 1;
    }
}

impl Conn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ConnId,
        transport: Transport,
        peer: SocketAddr,
        now: Instant,
        deadline: Instant,
        burst: u32,
        wire_limit: usize,
        peer_key: crate::chat::Peer,
    ) -> Self {
        Conn {
            id,
            peer,
            io: Io {
                transport,
                ctrl: Vec::new(),
                wire_in: 0,
                wire_limit,
                budget: 0,
                starved: false,
            },
            outbox: Outbox::default(),
            phase: Phase::Head(Vec::new()),
            deadline: Some(deadline),
            last_rx: now,
            pinged: false,
            writable: false,
            dirty: false,
            read_deferred: false,
            known_to_logic: false,
            held: false,
            bucket: TokenBucket::full(burst, now),
            addr: peer_key.quota_key(),
            peer_key,
            held_upgrade: None,
            over_cap: None,
        }
    }

    /// Moves frames tungstenite produced onto the outbox.
    pub fn collect_ctrl(&mut self) {
        if let Some(frames) = self.io.take_ctrl() {
            self.outbox.push(Rc::new(frames));
        }
    }

    /// True if application frames may still be queued.
    pub fn accepts_data(&self) -> bool {
        matches!(self.phase, Phase::Ws { closing: false, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use std::time::{Duration, Instant};

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(3, t0);
        assert!((0..3).all(|_| b.take(10, 3, t0)));
        assert!(!b.take(10, 3, t0));
        assert!(!b.take(10, 3, t0));
        assert_eq!(b.refused_in_a_row, 2);
        // 10 a second: one token back after 100 ms, and never more than the burst.
        assert!(b.take(10, 3, t0 + Duration::from_millis(100)));
        assert_eq!(b.refused_in_a_row, 0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(10, 3, later)).count(), 3);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(0, t0);
        assert!((0..10_000).all(|_| b.take(0, 0, t0)));
    }
}
