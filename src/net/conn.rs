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
use std::num::NonZeroUsize;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

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
    /// Bytes this connection may still read before yielding to others (a `u32`: a turn's
    /// budget is far below 4 GiB, and every connection has one).
    budget: u32,
    /// The budget ran out with input possibly still waiting: read again on the next turn.
    pub starved: bool,
    /// A read of the TCP socket came back shorter than asked, so the socket held no more
    /// data: until the next readiness event (edge-triggered, so any newer input raises one), a
    /// read would only say `WouldBlock`, and is answered so without a syscall.
    drained: bool,
    /// The peer's end or a reset was reported. It can have come with the last data, in the
    /// same readiness event, and only a read after that data reports it: so from then on
    /// every read goes to the socket.
    ended: bool,
    /// Where the bytes read so far stand in the frame stream.
    pub frames: FrameBounds,
}

impl Io {
    /// Grants a fresh read budget for one turn of the event loop.
    pub fn refill(&mut self, budget: usize) {
        self.budget = budget.try_into().unwrap_or(u32::MAX);
        self.starved = false;
        self.drained = false;
    }

    /// The poller reported the peer's end (or a reset): see `ended`.
    pub fn peer_ended(&mut self) {
        self.ended = true;
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
        if self.drained {
            return Err(ErrorKind::WouldBlock.into());
        }
        let len = buf.len().min(self.budget as usize);
        let n = self.transport.read(&mut buf[..len])?;
        // Not through TLS: a short read of plaintext says nothing about what the socket holds.
        self.drained =
            n > 0 && n < len && !self.ended && matches!(self.transport, Transport::Plain(_));
        self.budget -= n as u32;
        self.wire_in += n;
        self.frames.feed(&buf[..n]);
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
    ///
    /// `ctx` is tungstenite's state, read buffer included (most of what a connection holds).
    /// It is only held while a frame or a fragmented message is partly received, or once
    /// closing; between messages it goes back to the net thread's [`Contexts`] (see
    /// [`Conn::ctx_at_rest`]), so an idle connection holds none.
    Ws {
        ctx: Option<Box<WebSocketContext>>,
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
    /// What the chat core is told about `peer`; its `quota_key` is the key of the
    /// per-address limits (`None`: exempt).
    pub peer_key: crate::chat::Peer,
    /// A room-URL upgrade waiting for the logic thread's admission: the `101` to send if it
    /// is admitted. Nothing is read or queued meanwhile.
    pub held_upgrade: Option<Box<[u8]>>,
    /// What was waiting for the peer (queued here and unsent in the kernel) at the last
    /// sweep, if that was over the cap (see `Net::sweep`: over the cap twice in a row without
    /// shrinking is a slow consumer). Never 0, being over a cap.
    pub over_cap: Option<NonZeroUsize>,
    /// The open run of frames (see `Net::drain_logic`) this connection is a member of, 0 if
    /// none.
    pub run: u32,
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
pub struct TokenBucket {
    /// An `f32` (every connection has a bucket, and this keeps it at 24 bytes): the sums are
    /// done in `f64`, and a rounding error of a millionth of a token does not matter.
    tokens: f32,
    last: Instant,
    /// Messages refused in a row (reset by the next accepted one).
    pub refused_in_a_row: u32,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: burst as f32,
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
        let tokens = f64::from(self.tokens) + elapsed * f64::from(rate);
        self.tokens = tokens.min(f64::from(burst.max(1))) as f32;
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
                drained: false,
                ended: false,
                frames: FrameBounds::default(),
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
            peer_key,
            held_upgrade: None,
            over_cap: None,
            run: 0,
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

    /// Takes the connection's tungstenite context if it holds nothing that is not already
    /// handled: every byte read so far belongs to a complete frame, no fragmented message is
    /// under way, and we are not closing. Call it only right after tungstenite's `read` said
    /// `WouldBlock` from the socket (not from the read budget): tungstenite reads from the socket
    /// only when no complete frame is left in its buffer, and pending pongs are flushed before
    /// that, so together with the frame bounds its buffer is then empty and its state that of
    /// a new context.
    pub fn ctx_at_rest(&mut self) -> Option<Box<WebSocketContext>> {
        match &mut self.phase {
            Phase::Ws {
                ctx,
                closing: false,
                ..
            } if self.io.frames.at_rest() && !self.io.starved && self.io.ctrl.is_empty() => {
                ctx.take()
            }
            _ => None,
        }
    }
}

/// Follows the frame boundaries in the bytes a WebSocket connection reads (the same bytes
/// tungstenite parses), so the net thread knows when tungstenite holds no part of a frame or
/// message: only then can its context be given back while the connection is idle. Costs a few
/// byte operations per frame header; payload bytes are skipped by count.
#[derive(Debug, Default)]
pub struct FrameBounds {
    /// The header being read (at most 2 + 8 length + 4 mask bytes).
    head: [u8; 14],
    head_len: u8,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A data frame without FIN was seen, and not yet the final continuation frame.
    in_message: bool,
}

impl FrameBounds {
    /// Follows `bytes`, the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let want = self.head_size();
            let n = (want - usize::from(self.head_len)).min(bytes.len());
            let at = usize::from(self.head_len);
            self.head[at..at + n].copy_from_slice(&bytes[..n]);
            self.head_len += n as u8;
            bytes = &bytes[n..];
            if usize::from(self.head_len) == self.head_size() {
                self.end_head();
            }
        }
    }

    /// True at a frame boundary outside any fragmented message.
    pub fn at_rest(&self) -> bool {
        self.head_len == 0 && self.payload_left == 0 && !self.in_message
    }

    /// The size of the header being read, as far as its first two bytes tell.
    fn head_size(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let b1 = self.head[1];
        let ext = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    /// A header is complete: note its payload length and whether a message goes on.
    fn end_head(&mut self) {
        let (b0, b1) = (self.head[0], self.head[1]);
        self.payload_left = match b1 & 0x7F {
            126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            127 => u64::from_be_bytes(self.head[2..10].try_into().expect("8 bytes")),
            n => u64::from(n),
        };
        if b0 & 0x08 == 0 {
            // A data frame or a continuation (control frames, 0x8..=0xF, come in between).
            self.in_message = b0 & 0x80 == 0;
        }
        self.head_len = 0;
    }
}

/// Most contexts kept for reuse.
const SPARE_CONTEXTS: usize = 64;

/// The net thread's tungstenite contexts that no connection holds, for connections that start
/// receiving a frame. Reusing them spares a busy connection an allocation and a free of its
/// read buffer per read; at most [`SPARE_CONTEXTS`] are kept.
pub struct Contexts {
    cfg: WebSocketConfig,
    #[expect(
        clippy::vec_box,
        reason = "the boxes move between connections and this list as they are"
    )]
    spare: Vec<Box<WebSocketContext>>,
}

impl Contexts {
    pub fn new(cfg: WebSocketConfig) -> Self {
        Contexts {
            cfg,
            spare: Vec::new(),
        }
    }

    /// A context in the state of a new one.
    pub fn take(&mut self) -> Box<WebSocketContext> {
        self.spare
            .pop()
            .unwrap_or_else(|| Box::new(WebSocketContext::new(Role::Server, Some(self.cfg))))
    }

    /// Keeps `ctx` (from [`Conn::ctx_at_rest`]) for the next [`Contexts::take`].
    pub fn give(&mut self, ctx: Box<WebSocketContext>) {
        if self.spare.len() < SPARE_CONTEXTS {
            self.spare.push(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [7, 1, 2, 3];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn frame_bounds_are_found_however_the_bytes_are_split() {
        // (frame, at rest after it): a text message, a 300-byte and a 70,000-byte binary one,
        // then a fragmented message with a ping inside it.
        let frames = [
            (frame(true, 1, b"hello"), true),
            (frame(true, 2, &[9; 300]), true),
            (frame(true, 2, &vec![5; 70_000]), true),
            (frame(false, 1, b"frag"), false),
            (frame(true, 9, b"ping"), false),
            (frame(false, 0, b"men"), false),
            (frame(true, 0, b"ted"), true),
            (frame(true, 1, b""), true),
        ];
        let stream: Vec<u8> = frames.iter().flat_map(|(f, _)| f.clone()).collect();
        let mut ends = Vec::new();
        let mut at = 0;
        for (f, rest) in &frames {
            at += f.len();
            ends.push((at, *rest));
        }
        for chunk in [1, 2, 3, 7, 13, 100, 4096, stream.len()] {
            let mut fb = FrameBounds::default();
            assert!(fb.at_rest());
            let mut fed = 0;
            for piece in stream.chunks(chunk) {
                fb.feed(piece);
                fed += piece.len();
                let want = ends
                    .iter()
                    .find(|(end, _)| *end == fed)
                    .is_some_and(|e| e.1);
                assert_eq!(fb.at_rest(), want, "chunks of {chunk}, after {fed} bytes");
            }
            assert!(fb.at_rest());
        }
    }

    /// A connection in the WebSocket phase over a loopback socket, and the client's end.
    fn ws_conn(contexts: &mut Contexts) -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let now = Instant::now();
        let mut conn = Conn::new(
            ConnId {
                slot: 0,
                generation: 0,
            },
            Transport::Plain(mio::net::TcpStream::from_std(server)),
            peer,
            now,
            now,
            10,
            1 << 20,
            crate::chat::Peer::at(1),
        );
        conn.phase = Phase::Ws {
            ctx: Some(contexts.take()),
            speaks: Speaks::Echo,
            closing: false,
        };
        (conn, client)
    }

    /// Reads messages as the net thread does, until the socket would block; then what
    /// `ctx_at_rest` gives back goes to `contexts`. Returns the messages and whether it did.
    fn read_all(conn: &mut Conn, contexts: &mut Contexts) -> (usize, bool) {
        conn.io.refill(1 << 20);
        let mut messages = 0;
        loop {
            let Phase::Ws { ctx, .. } = &mut conn.phase else {
                panic!("not a WebSocket connection")
            };
            let ctx = ctx.get_or_insert_with(|| contexts.take());
            match ctx.read(&mut conn.io) {
                Ok(m) if m.is_text() || m.is_binary() => messages += 1,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            conn.collect_ctrl();
        }
        conn.collect_ctrl();
        let released = conn.ctx_at_rest().map(|c| contexts.give(c)).is_some();
        (messages, released)
    }

    #[test]
    fn an_idle_connection_holds_no_tungstenite_context() {
        let cfg = WebSocketConfig::default().read_buffer_size(2048);
        let mut contexts = Contexts::new(cfg);
        let (mut conn, mut client) = ws_conn(&mut contexts);
        let held = |c: &Conn| matches!(c.phase, Phase::Ws { ctx: Some(_), .. });

        // Half a frame: tungstenite holds it, so the context stays.
        let hello = frame(true, 1, b"hello there");
        client.write_all(&hello[..5]).unwrap();
        assert_eq!(read_all(&mut conn, &mut contexts), (0, false));
        assert!(held(&conn));
        // The rest, and one more whole message: both read, nothing partial left.
        client.write_all(&hello[5..]).unwrap();
        client.write_all(&frame(true, 2, &[1; 3000])).unwrap();
        assert_eq!(read_all(&mut conn, &mut contexts), (2, true));
        assert!(
            !held(&conn),
            "idle after a burst: the context was given back"
        );

        // A fragmented message under way keeps it, a ping in between too (its pong goes out).
        client.write_all(&frame(false, 1, b"part ")).unwrap();
        client.write_all(&frame(true, 9, b"p")).unwrap();
        assert_eq!(read_all(&mut conn, &mut contexts), (0, false));
        assert!(held(&conn));
        assert_eq!(conn.outbox.len(), 3, "the pong");
        client.write_all(&frame(true, 0, b"two")).unwrap();
        assert_eq!(read_all(&mut conn, &mut contexts), (1, true));
        assert!(!held(&conn));

        // A context taken back from the spares reads on as a new one would.
        client.write_all(&frame(true, 1, b"again")).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(read_all(&mut conn, &mut contexts), (1, true));
    }

    /// One slab entry per connection, open or idle: the largest part of what an idle
    /// connection costs the server (measured with `stress/bench.sh`, scenario S3).
    #[test]
    fn a_connection_stays_small() {
        assert!(size_of::<Conn>() <= 328, "{} bytes", size_of::<Conn>());
        assert_eq!(size_of::<crate::chat::Peer>(), 18);
    }

    #[test]
    fn after_a_short_read_the_socket_is_read_again_only_on_the_next_readiness() {
        let mut contexts = Contexts::new(WebSocketConfig::default());
        let (mut conn, mut client) = ws_conn(&mut contexts);
        let mut buf = [0; 64];
        conn.io.refill(1 << 20);
        client.write_all(b"abc").unwrap();
        assert_eq!(conn.io.read(&mut buf).unwrap(), 3);
        // More arrives: on a real socket that raises a new edge-triggered readiness event,
        // and only that (the refill before the next read) lets the socket be read again.
        client.write_all(b"defg").unwrap();
        let again = conn.io.read(&mut buf).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::WouldBlock);
        assert!(!conn.io.starved, "nothing left behind to read next turn");
        conn.io.refill(1 << 20);
        assert_eq!(conn.io.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"defg");
        // A read the budget cut short is not a sign the socket is empty.
        client.write_all(b"0123456789").unwrap();
        conn.io.refill(4);
        assert_eq!(conn.io.read(&mut buf).unwrap(), 4);
        let starved = conn.io.read(&mut buf).unwrap_err();
        assert_eq!(starved.kind(), ErrorKind::WouldBlock);
        assert!(conn.io.starved, "the rest is read next turn");
        conn.io.refill(1 << 20);
        assert_eq!(conn.io.read(&mut buf).unwrap(), 6);
        // The peer's end can come with the last data: once reported, reads go on to the socket.
        client.write_all(b"hi").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        conn.io.peer_ended();
        conn.io.refill(1 << 20);
        assert_eq!(conn.io.read(&mut buf).unwrap(), 2);
        assert_eq!(conn.io.read(&mut buf).unwrap(), 0, "the end of the stream");
    }

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
