//! One load-generating thread: a mio event loop owning a slice of the connections.
//!
//! Connection `i` of the run lives on thread `i % threads`, is in room `i % rooms`, and sends
//! iff `i < senders` (so senders are spread evenly over rooms and threads). Each thread connects
//! its connections (a bounded number at a time), walks them through the handshake and the room
//! join, then sends on command of the controller (the main thread) and counts what comes back.
//!
//! Hot path: reads go into one buffer per thread and frames are parsed in place; only a partial
//! frame at the end of a read is copied into the connection's carry-over buffer. Sends stamp
//! the sequence number and time into a per-sender message template and mask it straight into
//! the connection's output buffer. Nothing on that path allocates once buffers have grown.

use crate::frame::{
    self, Handshake, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Parsed,
};
use crate::payload;
use crate::sock::{Sock, TlsClient};
use crate::sys;
use crate::target::Target;
use crate::wire::{self, Fields};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Token of the waker the controller uses to hand over a new command at once.
pub const WAKE: Token = Token(usize::MAX);
/// Bytes read per `read()` call; big enough to take thousands of small frames at once.
const READ_CHUNK: usize = 256 * 1024;
/// Most messages one thread sends per loop turn before it polls again, so a sender that fell
/// behind its schedule still reads (and lets the server drain) between bursts.
const SEND_BATCH: u64 = 4096;
/// How long to wait for the server to answer our close frames at the end.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Frames handled in one loop turn from which the next turn waits `Plan::read_batch` first.
const BUSY_FRAMES: u64 = 64;
/// A response head longer than this is not a WebSocket server talking.
const MAX_HEAD: usize = 16 * 1024;
/// Message ids used by each connection's own setup commands (they must match the replies).
const M_LOGIN: u64 = 1;
const M_JOIN: u64 = 2;

/// Which dialect the target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The chat command protocol: `send(M,R,message)`, replies `chat(M,R,C,U,message)`.
    Protocol,
    /// The room URL endpoint and the peers: raw text in, `nick: text` out.
    Raw,
}

/// Logging in as generated users (protocol mode).
#[derive(Clone, Debug)]
pub struct Login {
    /// Connection `i` logs in as `s{uid_base + i}`.
    pub uid_base: u64,
    pub password: String,
}

/// Everything the workers need to know about the run, fixed before they start.
#[derive(Debug)]
pub struct Plan {
    pub mode: Mode,
    /// Where to connect: connection `i` uses `targets[i % targets.len()]`. In raw mode the
    /// paths still hold `{room}` and `{i}`.
    pub targets: Vec<Target>,
    pub connections: usize,
    pub rooms: usize,
    pub senders: usize,
    pub payload: usize,
    pub threads: usize,
    /// Closed-loop mode: messages each sender keeps in flight.
    pub window: u32,
    /// Handshakes (and joins) in progress per thread at most.
    pub connect_concurrency: usize,
    /// Protocol mode: the chatroomid of each room, by room index.
    pub room_ids: Vec<u64>,
    pub login: Option<Login>,
    /// Whether each receiver tracks the next sequence number per sender (memory permitting).
    pub order_check: bool,
    /// Workers give up by themselves after this, whatever the controller says.
    pub hard_deadline: Instant,
    /// Under heavy load, the least time between two rounds of reads (0: read at once).
    pub read_batch: Duration,
    /// `wss://`: every connection speaks TLS.
    pub tls: Option<TlsClient>,
}

impl Plan {
    /// Name of room `k` in raw mode.
    pub fn room_name(k: usize) -> String {
        format!("r{k}")
    }

    /// The URL connection `i` uses: round-robin over the targets.
    pub fn target(&self, i: usize) -> &Target {
        &self.targets[i % self.targets.len()]
    }

    /// Senders in room `r` (they are the connections `i < senders` with `i % rooms == r`).
    pub fn senders_in_room(&self, r: usize) -> usize {
        self.senders / self.rooms + usize::from(r < self.senders % self.rooms)
    }
}

/// What to send: set by the controller for each measured window.
#[derive(Clone, Copy, Debug)]
pub struct SendSpec {
    /// Messages per second per ready sender; 0 sends as fast as possible, each sender keeping
    /// `Plan::window` messages in flight (it sends the next when its own copy comes back).
    pub per_sender_rate: f64,
    /// Messages stamped in `[window_start, window_end)` (ns since the origin) are measured;
    /// sending stops at `window_end`.
    pub window_start: u64,
    pub window_end: u64,
}

/// The controller's instructions; workers copy it whenever `Shared::epoch` changes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Command {
    /// Open connections (until all are settled); turning it off fails the unfinished ones.
    pub connect: bool,
    /// The current send window, if any.
    pub send: Option<SendSpec>,
    /// Bumped to ask every worker for a [`WindowReport`] of the current window.
    pub report: u64,
    pub stop: bool,
}

/// Counters a worker publishes every loop turn so the controller can watch without locking.
#[derive(Default)]
#[repr(align(128))]
pub struct Progress {
    pub ready: AtomicU64,
    pub ready_senders: AtomicU64,
    pub failed: AtomicU64,
    /// Copies owed for messages sent in the current window (sum of room sizes at send time).
    pub expected: AtomicU64,
    /// Copies of current-window messages received.
    pub delivered: AtomicU64,
    /// Every frame received, for spotting when the server has gone quiet.
    pub frames: AtomicU64,
    /// When these figures were published (ns since the origin).
    pub published: AtomicU64,
}

/// State shared between the controller and the workers.
pub struct Shared {
    pub origin: Instant,
    pub epoch: AtomicU64,
    pub command: Mutex<Command>,
    pub wakers: Vec<Waker>,
    pub progress: Vec<Progress>,
    /// Ready connections per room: the number of copies a message sent there is owed.
    pub members: Vec<AtomicU32>,
}

impl Shared {
    /// Nanoseconds since the run's origin.
    pub fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Publishes a new command and wakes every worker.
    pub fn set(&self, f: impl FnOnce(&mut Command)) {
        f(&mut self.command.lock().unwrap());
        self.epoch.fetch_add(1, Relaxed);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// What one worker saw during one measured window.
pub struct WindowReport {
    /// End-to-end latency in microseconds.
    pub latency: Histogram<u64>,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    /// Copies of messages sent outside the window (warm-up, earlier windows).
    pub stale: u64,
    /// Frames that were not stress messages (join/leave notices and the like).
    pub other: u64,
    pub errors: u64,
    /// Copies out of order, duplicated, missing in between, or delivered to the wrong room.
    pub seq_errors: u64,
    pub closes: u64,
}

impl WindowReport {
    fn new() -> Self {
        WindowReport {
            latency: latency_histogram(),
            sent: 0,
            expected: 0,
            delivered: 0,
            stale: 0,
            other: 0,
            errors: 0,
            seq_errors: 0,
            closes: 0,
        }
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes at 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// What one worker saw over the whole run.
pub struct FinalReport {
    /// Time from starting to connect until ready (joined), microseconds.
    pub connect: Histogram<u64>,
    pub established: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub unexpected_closes: u64,
    pub close_reasons: BTreeMap<String, u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub sent: u64,
    pub frames: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Idle,
    Connecting,
    Handshaking,
    /// Raw mode: ready once the first frame (our own join notice) arrives.
    AwaitFirst,
    AwaitId,
    AwaitLogin,
    AwaitJoin,
    Ready,
    Closed,
}

impl St {
    fn in_setup(self) -> bool {
        !matches!(self, St::Idle | St::Ready | St::Closed)
    }
}

/// The sending half of a connection that sends.
struct Sender {
    /// The whole message as sent before masking (`send(0,R,P,payload)` or the bare payload).
    msg: Vec<u8>,
    /// Where the payload starts in `msg`.
    at: usize,
    seq: u32,
}

struct Conn {
    sock: Option<Sock>,
    idx: u32,
    room: u32,
    st: St,
    started: Instant,
    /// Bytes queued for the socket; `wpos` of them are already written.
    wbuf: Vec<u8>,
    wpos: usize,
    dirty: bool,
    /// An incomplete frame carried over to the next read.
    carry: Vec<u8>,
    /// A fragmented message being reassembled, and its opcode (0 when none).
    frag: Vec<u8>,
    frag_op: u8,
    /// Protocol mode: the join reply that makes us ready (`userjoinedchatroom(2,R,C,`).
    expect_join: Vec<u8>,
    /// Next expected sequence number per sender of our room (empty when not checking).
    seen: Vec<u32>,
    sender: Option<Box<Sender>>,
}

/// One event-loop thread.
pub struct Worker {
    id: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Vec<Conn>,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    cmd: Command,
    epoch: u64,
    reports: mpsc::Sender<WindowReport>,
    /// The window deliveries are counted against; cleared once reported so stragglers of a
    /// reported window do not leak into the next one.
    window: Option<(u64, u64)>,
    stopping: bool,
    connect_done: bool,
    next_connect: usize,
    pending: usize,
    ready: u64,
    ready_senders: u64,
    failed: u64,
    /// Senders sending in the current window, and the schedule for fixed-rate mode.
    active: Vec<usize>,
    rr: usize,
    rate: f64,
    rate_origin: Instant,
    scheduled: u64,
    rng: u64,
    win: WindowReport,
    total: FinalReport,
}

impl Worker {
    pub fn new(
        id: usize,
        plan: Arc<Plan>,
        shared: Arc<Shared>,
        poll: Poll,
        reports: mpsc::Sender<WindowReport>,
    ) -> Self {
        let now = Instant::now();
        let conns = (id..plan.connections)
            .step_by(plan.threads)
            .map(|i| Conn {
                sock: None,
                idx: i as u32,
                room: (i % plan.rooms) as u32,
                st: St::Idle,
                started: now,
                wbuf: Vec::new(),
                wpos: 0,
                dirty: false,
                carry: Vec::new(),
                frag: Vec::new(),
                frag_op: 0,
                expect_join: Vec::new(),
                seen: Vec::new(),
                sender: None,
            })
            .collect();
        Worker {
            id,
            plan,
            shared,
            poll,
            conns,
            scratch: vec![0; READ_CHUNK],
            dirty: Vec::new(),
            cmd: Command::default(),
            epoch: u64::MAX,
            reports,
            window: None,
            stopping: false,
            connect_done: false,
            next_connect: 0,
            pending: 0,
            ready: 0,
            ready_senders: 0,
            failed: 0,
            active: Vec::new(),
            rr: 0,
            rate: 0.0,
            rate_origin: now,
            scheduled: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
            win: WindowReport::new(),
            total: FinalReport {
                connect: latency_histogram(),
                established: 0,
                failed: 0,
                failures: BTreeMap::new(),
                unexpected_closes: 0,
                close_reasons: BTreeMap::new(),
                errors: 0,
                first_error: None,
                sent: 0,
                frames: 0,
            },
        }
    }

    /// Runs until the controller says stop (or the hard deadline passes), then closes
    /// everything and returns the totals.
    pub fn run(mut self) -> FinalReport {
        let mut events = Events::with_capacity(1024);
        let mut pause_until: Option<Instant> = None;
        loop {
            if let Some(t) = pause_until.take() {
                let d = t.saturating_duration_since(Instant::now());
                if !d.is_zero() {
                    std::thread::sleep(d);
                }
            }
            self.sync_command();
            if self.cmd.stop || Instant::now() >= self.plan.hard_deadline {
                break;
            }
            if self.cmd.connect {
                self.start_connects();
            } else if !self.connect_done {
                self.connect_done = true;
                self.fail_unsettled();
            }
            let now = Instant::now();
            self.pump(now);
            self.flush_dirty();
            self.publish(now);
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.note_error(format!("poll: {e}"));
                break;
            }
            let polled = Instant::now();
            let frames_before = self.total.frames;
            for ev in events.iter() {
                if ev.token() == WAKE {
                    continue;
                }
                let k = ev.token().0;
                if self.conns[k].st == St::Connecting {
                    self.on_connected(k);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(k);
                }
                if ev.is_writable() && self.conns[k].sock.is_some() {
                    self.mark_dirty(k);
                }
            }
            // Under heavy load, let data pile up in the sockets for a moment before the next
            // round of reads: fewer, larger reads cost far less than one read (and one loopback
            // ACK) per message, which otherwise makes the client the bottleneck against servers
            // that send every message in its own TCP segment. Light load is read at once.
            if !self.plan.read_batch.is_zero() && self.total.frames - frames_before >= BUSY_FRAMES {
                pause_until = Some(polled + self.plan.read_batch);
            }
        }
        self.shutdown(&mut events);
        let mut total = self.total;
        total.failed = self.failed;
        total
    }

    fn sync_command(&mut self) {
        let epoch = self.shared.epoch.load(Relaxed);
        if epoch == self.epoch {
            return;
        }
        self.epoch = epoch;
        let cmd = *self.shared.command.lock().unwrap();
        if cmd.report != self.cmd.report {
            let report = std::mem::replace(&mut self.win, WindowReport::new());
            self.window = None;
            let _ = self.reports.send(report);
        }
        let new_window = match (cmd.send, self.cmd.send) {
            (Some(a), Some(b)) => a.window_start != b.window_start || a.window_end != b.window_end,
            (Some(_), None) => true,
            _ => false,
        };
        self.cmd = cmd;
        if new_window {
            self.start_window(Instant::now());
        }
    }

    /// Picks this thread's ready senders for a new window and starts sending.
    fn start_window(&mut self, now: Instant) {
        let Some(spec) = self.cmd.send else { return };
        self.window = Some((spec.window_start, spec.window_end));
        self.active.clear();
        for (k, c) in self.conns.iter().enumerate() {
            if c.st == St::Ready && c.sender.is_some() {
                self.active.push(k);
            }
        }
        self.rate = spec.per_sender_rate * self.active.len() as f64;
        self.rate_origin = now;
        self.scheduled = 0;
        self.rr = 0;
        if spec.per_sender_rate <= 0.0 {
            let now_ns = self.shared.ns(now);
            for i in 0..self.active.len() {
                let k = self.active[i];
                for _ in 0..self.plan.window {
                    self.send_one(k, now_ns);
                }
            }
        }
    }

    /// Fixed-rate mode: sends every message whose time has come, round-robin over senders.
    fn pump(&mut self, now: Instant) {
        let Some(spec) = self.cmd.send else { return };
        if spec.per_sender_rate <= 0.0 || self.active.is_empty() {
            return;
        }
        let now_ns = self.shared.ns(now);
        if now_ns >= spec.window_end {
            return;
        }
        let due = (now.duration_since(self.rate_origin).as_secs_f64() * self.rate) as u64 + 1;
        let mut budget = SEND_BATCH;
        while self.scheduled < due && budget > 0 {
            let k = self.active[self.rr % self.active.len()];
            self.rr = self.rr.wrapping_add(1);
            self.send_one(k, now_ns);
            self.scheduled += 1;
            budget -= 1;
        }
    }

    /// How long to sleep in `poll`: until the next scheduled send, at most 100 ms.
    fn timeout(&self, now: Instant) -> Duration {
        let idle = Duration::from_millis(100);
        match self.cmd.send {
            Some(spec) if spec.per_sender_rate > 0.0 && !self.active.is_empty() => {
                if self.shared.ns(now) >= spec.window_end {
                    return idle;
                }
                let next =
                    self.rate_origin + Duration::from_secs_f64(self.scheduled as f64 / self.rate);
                next.saturating_duration_since(now).min(idle)
            }
            _ => idle,
        }
    }

    fn publish(&self, now: Instant) {
        let p = &self.shared.progress[self.id];
        p.ready.store(self.ready, Relaxed);
        p.ready_senders.store(self.ready_senders, Relaxed);
        p.failed.store(self.failed, Relaxed);
        p.expected.store(self.win.expected, Relaxed);
        p.delivered.store(self.win.delivered, Relaxed);
        p.frames.store(self.total.frames, Relaxed);
        p.published.store(self.shared.ns(now), Relaxed);
    }

    fn start_connects(&mut self) {
        while self.pending < self.plan.connect_concurrency && self.next_connect < self.conns.len() {
            let k = self.next_connect;
            self.next_connect += 1;
            self.conns[k].started = Instant::now();
            let target = self.plan.target(self.conns[k].idx as usize);
            let connected = TcpStream::connect(target.addr)
                .and_then(|tcp| Sock::new(tcp, self.plan.tls.as_ref()));
            match connected {
                Ok(mut sock) => {
                    let _ = sock.tcp().set_nodelay(true);
                    let reg = self.poll.registry().register(
                        sock.tcp_mut(),
                        Token(k),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    self.conns[k].sock = Some(sock);
                    self.conns[k].st = St::Connecting;
                    self.pending += 1;
                    if let Err(e) = reg {
                        self.drop_conn(k, format!("register: {e}"));
                    }
                }
                Err(e) => {
                    // Counted as pending for a moment so drop_conn settles it like the others.
                    self.conns[k].st = St::Connecting;
                    self.pending += 1;
                    self.drop_conn(k, format!("connect: {}", io_kind(&e)));
                }
            }
        }
    }

    /// The controller ended the connect phase: whatever is not ready by now has failed.
    fn fail_unsettled(&mut self) {
        for k in 0..self.conns.len() {
            match self.conns[k].st {
                St::Idle => {
                    self.conns[k].st = St::Connecting;
                    self.pending += 1;
                    self.drop_conn(k, "not attempted before the connect timeout".to_string());
                }
                st if st.in_setup() => self.drop_conn(k, "connect timeout".to_string()),
                _ => {}
            }
        }
    }

    /// A connecting socket became writable (or failed): send the upgrade request.
    fn on_connected(&mut self, k: usize) {
        let Some(sock) = self.conns[k].sock.as_ref().map(Sock::tcp) else {
            return;
        };
        match sock.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return self.drop_conn(k, format!("connect: {}", io_kind(&e))),
        }
        match sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.drop_conn(k, format!("connect: {}", io_kind(&e))),
        }
        let c = &mut self.conns[k];
        c.st = St::Handshaking;
        let target = self.plan.target(c.idx as usize);
        let path = match self.plan.mode {
            Mode::Protocol => target.path.clone(),
            Mode::Raw => target
                .path
                .replace("{room}", &Plan::room_name(c.room as usize))
                .replace("{i}", &c.idx.to_string()),
        };
        let sub = (self.plan.mode == Mode::Protocol).then_some("chatroom-protocol");
        frame::write_request(&mut c.wbuf, &target.host_header, &path, sub);
        self.mark_dirty(k);
    }

    fn mark_dirty(&mut self, k: usize) {
        let c = &mut self.conns[k];
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(k);
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &k in &dirty {
            self.conns[k].dirty = false;
            self.flush(k);
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn flush(&mut self, k: usize) {
        let c = &mut self.conns[k];
        let Some(sock) = c.sock.as_mut() else { return };
        while c.wpos < c.wbuf.len() {
            match sock.write(&c.wbuf[c.wpos..]) {
                Ok(0) => return self.drop_conn(k, "write: connection closed".to_string()),
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.drop_conn(k, format!("write: {}", io_kind(&e))),
            }
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
            // TLS: records the socket did not take yet, or handshake messages.
            if let Err(e) = sock.flush_tls() {
                self.drop_conn(k, format!("write: {}", io_kind(&e)));
            }
        } else if c.wpos > 1 << 20 {
            c.wbuf.drain(..c.wpos);
            c.wpos = 0;
        }
    }

    /// Reads until the socket is drained, handling every complete frame. The receive time of
    /// every frame is taken right after the read() that brought it, so a long batch of events
    /// does not make later connections' copies look faster than they were.
    fn read(&mut self, k: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            let c = &mut self.conns[k];
            let Some(sock) = c.sock.as_mut() else { break };
            let carried = c.carry.len();
            if scratch.len() < carried + READ_CHUNK {
                scratch.resize(carried + READ_CHUNK, 0);
            }
            scratch[..carried].copy_from_slice(&c.carry);
            let room = scratch.len() - carried;
            match sock.read(&mut scratch[carried..]) {
                Ok(0) => {
                    let why = if c.st.in_setup() {
                        "closed during setup"
                    } else {
                        "eof"
                    };
                    self.drop_conn(k, why.to_string());
                    break;
                }
                Ok(n) => {
                    let now_ns = self.shared.ns(Instant::now());
                    let end = carried + n;
                    let Some(used) = self.process(k, &scratch[..end], now_ns) else {
                        break;
                    };
                    let c = &mut self.conns[k];
                    c.carry.clear();
                    c.carry.extend_from_slice(&scratch[used..end]);
                    // A short read means the socket is empty; edge-triggered readiness will
                    // report new data, so the extra read() that would return EAGAIN is skipped.
                    if n < room && c.sock.as_ref().is_some_and(Sock::short_read_means_empty) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_conn(k, format!("read: {}", io_kind(&e)));
                    break;
                }
            }
        }
        self.scratch = scratch;
        // Messages this read queued (closed-loop sends, pongs) go out now rather than after the
        // whole batch of events, so their timestamps do not include that wait. With TLS the read
        // may also have produced handshake messages to send.
        if self.conns[k].sock.as_ref().is_some_and(Sock::wants_write) {
            self.mark_dirty(k);
        }
        if self.conns[k].dirty {
            self.flush(k);
        }
    }

    /// Handles the complete frames at the start of `buf`; returns the bytes used, or `None`
    /// if the connection was dropped.
    fn process(&mut self, k: usize, buf: &[u8], now_ns: u64) -> Option<usize> {
        let mut at = 0;
        if self.conns[k].st == St::Handshaking {
            match frame::parse_response(buf) {
                Handshake::Done(n) => {
                    at = n;
                    self.conns[k].st = match self.plan.mode {
                        Mode::Raw => St::AwaitFirst,
                        Mode::Protocol => St::AwaitId,
                    };
                }
                Handshake::Partial if buf.len() <= MAX_HEAD => return Some(0),
                Handshake::Partial => {
                    self.drop_conn(k, "handshake: response head too long".to_string());
                    return None;
                }
                Handshake::Failed(why) => {
                    self.drop_conn(k, why);
                    return None;
                }
            }
        }
        loop {
            match frame::parse(&buf[at..]) {
                Parsed::Incomplete => return Some(at),
                Parsed::Invalid(why) => {
                    self.drop_conn(k, why.to_string());
                    return None;
                }
                Parsed::Frame(f) => {
                    at += f.len;
                    if !self.on_frame(k, f.fin, f.opcode, f.payload, now_ns) {
                        return None;
                    }
                }
            }
        }
    }

    /// Returns false if the connection was dropped.
    fn on_frame(&mut self, k: usize, fin: bool, opcode: u8, payload: &[u8], now_ns: u64) -> bool {
        match opcode {
            OP_TEXT | OP_BINARY if self.conns[k].frag_op == 0 => {
                if fin {
                    return self.on_message(k, payload, now_ns);
                }
                let c = &mut self.conns[k];
                c.frag_op = opcode;
                c.frag.clear();
                c.frag.extend_from_slice(payload);
                true
            }
            OP_CONT if self.conns[k].frag_op != 0 => {
                self.conns[k].frag.extend_from_slice(payload);
                if !fin {
                    return true;
                }
                let msg = std::mem::take(&mut self.conns[k].frag);
                let alive = self.on_message(k, &msg, now_ns);
                let c = &mut self.conns[k];
                c.frag = msg;
                c.frag.clear();
                c.frag_op = 0;
                alive
            }
            OP_CLOSE => {
                self.drop_conn(k, format!("close {}", frame::close_code(payload)));
                false
            }
            OP_PING => {
                let mask = self.next_mask();
                frame::write_masked(&mut self.conns[k].wbuf, OP_PONG, payload, mask);
                self.mark_dirty(k);
                true
            }
            OP_PONG => true,
            _ => {
                self.drop_conn(k, "unexpected opcode or fragment".to_string());
                false
            }
        }
    }

    /// One whole message from the server. Returns false if the connection was dropped.
    fn on_message(&mut self, k: usize, msg: &[u8], now_ns: u64) -> bool {
        self.total.frames += 1;
        if self.stopping {
            return true;
        }
        match self.conns[k].st {
            St::Ready => {
                if let Some(d) = self.ours(msg) {
                    self.on_delivery(k, d, now_ns);
                } else if self.plan.mode == Mode::Protocol && msg.starts_with(b"error(") {
                    self.win.errors += 1;
                    self.note_error(String::from_utf8_lossy(msg).into_owned());
                } else {
                    self.win.other += 1;
                }
                true
            }
            St::AwaitFirst => {
                self.win.other += 1;
                self.become_ready(k);
                true
            }
            St::AwaitId => {
                let Some(id) = Fields::after(msg, b"yourchatclientid(").and_then(|mut f| f.num())
                else {
                    return self.setup_reply(k, msg, "yourchatclientid");
                };
                let c = &mut self.conns[k];
                let r = self.plan.room_ids[c.room as usize];
                c.expect_join = format!("userjoinedchatroom({M_JOIN},{r},{id},").into_bytes();
                if let Some(login) = &self.plan.login {
                    let name = format!("s{}", login.uid_base + c.idx as u64);
                    let cmd = wire::login(M_LOGIN, &name, &login.password);
                    c.st = St::AwaitLogin;
                    self.send_text(k, cmd.as_bytes());
                } else {
                    c.st = St::AwaitJoin;
                    self.send_text(k, wire::joinchatroom(M_JOIN, r).as_bytes());
                }
                true
            }
            St::AwaitLogin => {
                if msg != format!("success({M_LOGIN},)").as_bytes() {
                    return self.setup_reply(k, msg, "login");
                }
                let c = &mut self.conns[k];
                c.st = St::AwaitJoin;
                let r = self.plan.room_ids[c.room as usize];
                self.send_text(k, wire::joinchatroom(M_JOIN, r).as_bytes());
                true
            }
            St::AwaitJoin => {
                if msg.starts_with(&self.conns[k].expect_join) {
                    self.become_ready(k);
                    true
                } else {
                    self.setup_reply(k, msg, "joinchatroom")
                }
            }
            St::Idle | St::Connecting | St::Handshaking | St::Closed => true,
        }
    }

    /// A message during setup that is not the awaited reply: an error fails the connection,
    /// anything else (other clients' notices) is ignored.
    fn setup_reply(&mut self, k: usize, msg: &[u8], step: &str) -> bool {
        if msg.starts_with(b"error(") {
            let text = String::from_utf8_lossy(msg);
            self.drop_conn(k, format!("{step}: {text}"));
            false
        } else {
            true
        }
    }

    /// Queues one setup command (setup only: this allocates nothing per message but is not
    /// on the hot path anyway).
    fn send_text(&mut self, k: usize, text: &[u8]) {
        let mask = self.next_mask();
        frame::write_masked(&mut self.conns[k].wbuf, OP_TEXT, text, mask);
        self.mark_dirty(k);
    }

    fn become_ready(&mut self, k: usize) {
        let plan = &self.plan;
        let c = &mut self.conns[k];
        c.st = St::Ready;
        c.expect_join = Vec::new();
        self.pending -= 1;
        self.ready += 1;
        self.total.established += 1;
        let us = c.started.elapsed().as_micros() as u64;
        self.total.connect.saturating_record(us.max(1));
        self.shared.members[c.room as usize].fetch_add(1, Relaxed);
        if plan.order_check {
            c.seen = vec![0; plan.senders_in_room(c.room as usize)];
        }
        if (c.idx as usize) < plan.senders {
            let mut msg = match plan.mode {
                Mode::Raw => Vec::new(),
                Mode::Protocol => format!(
                    "send(0,{},{},",
                    plan.room_ids[c.room as usize], plan.payload
                )
                .into_bytes(),
            };
            let at = msg.len();
            msg.resize(at + plan.payload, 0);
            payload::init(&mut msg[at..], c.idx);
            if plan.mode == Mode::Protocol {
                msg.push(b')');
            }
            c.sender = Some(Box::new(Sender { msg, at, seq: 0 }));
            self.ready_senders += 1;
        }
    }

    /// Decodes the stress payload in a server message, if it is one.
    #[inline]
    fn ours(&self, msg: &[u8]) -> Option<(u32, u32, u64)> {
        let p = self.plan.payload;
        let n = msg.len();
        match self.plan.mode {
            Mode::Raw if n >= p => payload::decode(&msg[n - p..]),
            Mode::Protocol if n > p && msg.starts_with(b"chat(") && msg[n - 1] == b')' => {
                payload::decode(&msg[n - 1 - p..n - 1])
            }
            _ => None,
        }
    }

    #[inline]
    fn on_delivery(&mut self, k: usize, (sender, seq, ts): (u32, u32, u64), now_ns: u64) {
        let plan = &*self.plan;
        let c = &mut self.conns[k];
        let s = sender as usize;
        if s >= plan.senders || s % plan.rooms != c.room as usize {
            self.win.seq_errors += 1;
            return;
        }
        match self.window {
            Some((start, end)) if ts >= start && ts < end => {
                self.win.delivered += 1;
                self.win
                    .latency
                    .saturating_record((now_ns.saturating_sub(ts) / 1000).max(1));
            }
            _ => self.win.stale += 1,
        }
        if let Some(next) = c.seen.get_mut(s / plan.rooms) {
            if seq != *next {
                self.win.seq_errors += 1;
            }
            if seq >= *next {
                *next = seq.wrapping_add(1);
            }
        }
        // Closed loop: our own copy is back, so the next message may go.
        if sender == c.idx
            && let Some(spec) = self.cmd.send
            && spec.per_sender_rate <= 0.0
            && now_ns < spec.window_end
        {
            self.send_one(k, now_ns);
        }
    }

    /// Stamps and queues the next message of sender connection `k`.
    #[inline]
    fn send_one(&mut self, k: usize, now_ns: u64) {
        let mask = self.next_mask();
        let c = &mut self.conns[k];
        if c.st != St::Ready {
            return;
        }
        let Some(s) = c.sender.as_mut() else { return };
        let p = self.plan.payload;
        payload::stamp(&mut s.msg[s.at..s.at + p], s.seq, now_ns);
        frame::write_masked(&mut c.wbuf, OP_TEXT, &s.msg, mask);
        s.seq = s.seq.wrapping_add(1);
        self.total.sent += 1;
        if let Some((start, end)) = self.window
            && now_ns >= start
            && now_ns < end
        {
            self.win.sent += 1;
            self.win.expected += self.shared.members[c.room as usize].load(Relaxed) as u64;
        }
        self.mark_dirty(k);
    }

    /// A fresh masking key (xorshift64; masks need not be secret against our own server).
    #[inline]
    fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x as u32).to_ne_bytes()
    }

    fn note_error(&mut self, text: String) {
        self.total.errors += 1;
        if self.total.first_error.is_none() {
            self.total.first_error = Some(text);
        }
    }

    /// Closes connection `k` and books it as failed (during setup) or closed (once ready).
    fn drop_conn(&mut self, k: usize, why: String) {
        let c = &mut self.conns[k];
        let prev = c.st;
        if let Some(mut sock) = c.sock.take() {
            let _ = self.poll.registry().deregister(sock.tcp_mut());
            sys::set_linger_zero(sock.tcp());
        }
        c.st = St::Closed;
        c.wbuf = Vec::new();
        c.wpos = 0;
        c.carry = Vec::new();
        c.frag = Vec::new();
        c.seen = Vec::new();
        if prev.in_setup() {
            self.pending -= 1;
            self.failed += 1;
            *self.total.failures.entry(why).or_default() += 1;
        } else if prev == St::Ready {
            self.ready -= 1;
            self.shared.members[c.room as usize].fetch_sub(1, Relaxed);
            if c.sender.take().is_some() {
                self.ready_senders -= 1;
            }
            if !self.stopping {
                self.total.unexpected_closes += 1;
                self.win.closes += 1;
                *self.total.close_reasons.entry(why).or_default() += 1;
            }
        }
    }

    /// Sends a close frame on every open connection, waits briefly for the server to close
    /// its side, then drops whatever is left.
    fn shutdown(&mut self, events: &mut Events) {
        self.stopping = true;
        let mut open = 0;
        for k in 0..self.conns.len() {
            if self.conns[k].sock.is_some() {
                let mask = self.next_mask();
                frame::write_masked(
                    &mut self.conns[k].wbuf,
                    OP_CLOSE,
                    &1000u16.to_be_bytes(),
                    mask,
                );
                self.mark_dirty(k);
                open += 1;
            }
        }
        self.flush_dirty();
        let until = Instant::now() + CLOSE_GRACE;
        while open > 0 && Instant::now() < until {
            if self
                .poll
                .poll(events, Some(Duration::from_millis(50)))
                .is_err()
            {
                break;
            }
            for ev in events.iter() {
                let k = ev.token().0;
                if ev.token() != WAKE && self.conns[k].sock.is_some() {
                    self.read(k);
                }
            }
            open = self.conns.iter().filter(|c| c.sock.is_some()).count();
        }
        for k in 0..self.conns.len() {
            if self.conns[k].sock.is_some() {
                self.drop_conn(k, "shutdown".to_string());
            }
        }
    }
}

/// A short, stable description of an I/O error for grouping failures.
fn io_kind(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{} (errno {code})", e.kind()),
        None => e.kind().to_string(),
    }
}
