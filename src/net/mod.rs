//! The net thread: one mio event loop owning every socket.
//!
//! It accepts connections, reads HTTP heads, serves the page, upgrades to WebSocket and moves
//! frames with tungstenite. Chat messages are parsed here (so the logic thread only applies
//! them) and forwarded as [`ToLogic`]; what the logic thread wants sent arrives as [`ToNet`]
//! with a [`mio::Waker`] nudge, or, on one CPU, while this thread waits for it ([`Handoff`]).
//! This thread never looks at chat state.

mod conn;
mod handoff;
mod outbox;
mod transport;

pub use handoff::Handoff;

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Message, Role, WebSocketConfig, WebSocketContext};

use crate::api::{self, ApiRequest, NetCounters, Reply};
use crate::chat::Recipients;
use crate::chat::{ChatError, Dialect, Entry, Peer, Secret};
use crate::config::Config;
use crate::dialect;
use crate::events::{ConnId, Frame, ToLogic, ToNet};
use crate::http::{self, Head, Route, Service};
use crate::tls::Tls;
use conn::{Conn, Contexts, Phase, Speaks, TokenBucket};
use outbox::SharedFrame;
use transport::Transport;

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);

/// How often deadlines, pings and idle timeouts are checked.
const SWEEP: Duration = Duration::from_secs(1);
/// Deliveries (frame × recipient) queued per turn at most, so a turn stays short under load.
const MAX_TURN_DELIVERIES: usize = 32 * 1024;
/// Client messages forwarded to the logic thread per turn at most: bounds the output one turn's
/// input can cause, so backpressure (see `drain_logic`) acts in small steps.
const MAX_TURN_EVENTS: usize = 1024;
/// On one CPU, how long the loop waits for the logic thread's answer to a batch before going
/// on without it (the answer then comes through the waker as usual).
const HANDOFF_WAIT: Duration = Duration::from_millis(2);
/// Bytes one connection may read per turn of the loop before others get theirs.
const READ_BUDGET: usize = 256 * 1024;
/// A slow consumer's queue may grow to this many times `max_outbound` before the sweep
/// decides (see `Net::sweep`); past it the connection is cut at once, for memory's sake.
const HARD_CEILING: usize = 8;
/// How long an API request may wait for the logic thread's answer before it gets 503: the
/// deadline `/healthz` holds the logic thread to (it answers in microseconds when alive).
const API_DEADLINE: Duration = Duration::from_secs(2);
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// WebSocket close codes we send (RFC 6455 §7.4.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// What the net thread needs from the outside.
pub struct NetParts {
    pub poll: Poll,
    pub listener: TcpListener,
    pub to_logic: Sender<Vec<ToLogic>>,
    pub from_logic: Receiver<Vec<ToNet>>,
    pub stop: Arc<AtomicBool>,
    pub handoff: Arc<Handoff>,
    /// With TLS, every connection speaks it (`--tls-cert`/`--tls-key`).
    pub tls: Option<Tls>,
}

pub struct Net {
    poll: Poll,
    listener: Option<TcpListener>,
    signals: Signals,
    conns: Slab<Conn>,
    next_gen: u32,
    to_logic: Sender<Vec<ToLogic>>,
    from_logic: Receiver<Vec<ToNet>>,
    handoff: Arc<Handoff>,
    /// Events for the logic thread, sent as one batch per loop turn: one wake-up of the logic
    /// thread per turn instead of one per message (on a shared core, a wake-up per message
    /// would mean a context switch per message).
    for_logic: Vec<ToLogic>,
    cfg: Arc<Config>,
    ws_cfg: WebSocketConfig,
    /// tungstenite contexts no connection holds (see [`Phase::Ws`]).
    contexts: Contexts,
    routes: http::Routes,
    /// The TLS config new connections get; rebuilt from its files on `SIGHUP`.
    tls: Option<Tls>,
    stop: Arc<AtomicBool>,
    /// Set once shutdown began: the moment by which the loop exits regardless.
    stop_deadline: Option<Instant>,
    accept_paused_until: Option<Instant>,
    /// Connections with output queued since the last flush.
    dirty: Vec<usize>,
    /// Connections to read on the next turn: they used up their read budget, or their input
    /// was deferred while output was backlogged.
    reread: Vec<usize>,
    /// The logic thread's output was not all queued last turn: read nobody until it is.
    output_backlog: bool,
    /// What the loop had to do about misbehaving peers, and what it carried: logged at
    /// shutdown, reported by `/metrics` and `/api/v1/stats` (copied into the request).
    stats: NetCounters,
    /// Connections and the shared message budget of each address that has connections.
    addrs: HashMap<u128, AddrState>,
    /// Connections accepted plus messages read, at the last sweep and at the last time free
    /// memory was given back to the system (see `sweep`).
    activity_at_sweep: u64,
    activity_at_trim: u64,
    /// The number of the last run of frames opened (see `drain_logic`).
    next_run: u32,
    /// The process may use one CPU only (affinity or quota): this thread and the logic thread
    /// take turns on it, so after handing the logic thread a batch this one waits for the
    /// answer. With more CPUs they work side by side instead.
    one_core: bool,
}

/// The one connection `msg` is for (`None` for a message to many).
fn addressee(msg: &ToNet) -> Option<ConnId> {
    match msg {
        ToNet::Send { to, .. } => Some(*to),
        ToNet::SendMany { .. } => None,
        ToNet::Admit { conn, .. }
        | ToNet::Close { conn, .. }
        | ToNet::Http { conn, .. }
        | ToNet::Hold { conn, .. } => Some(*conn),
    }
}

/// Frames for one audience, joined into one buffer while `Net::drain_logic` runs.
struct Run {
    /// Its number, in the `run` field of each member's `Conn`.
    seq: u32,
    to: Recipients,
    except: Option<ConnId>,
    /// The first frame as it came (a run of one is not copied).
    first: Frame,
    /// The frames joined so far, once there are two.
    joined: Vec<u8>,
}

/// Most bytes joined into one buffer: a longer run starts a new one, so a slow reader's
/// partly written front buffer stays small.
const MAX_RUN: usize = 256 * 1024;
/// Most runs open at once; the oldest is queued when another one starts.
const MAX_OPEN_RUNS: usize = 64;

impl Run {
    fn is_for(&self, to: &Recipients, except: Option<ConnId>) -> bool {
        Arc::ptr_eq(&self.to, to) && self.except == except
    }

    /// Adds `frame` if the run has room for it; else hands it back.
    fn join(&mut self, frame: Frame) -> Option<Frame> {
        if self.first.len() + self.joined.len() + frame.len() > MAX_RUN {
            return Some(frame);
        }
        if self.joined.is_empty() {
            self.joined.extend_from_slice(&self.first);
        }
        self.joined.extend_from_slice(&frame);
        None
    }

    /// The run's frames as one buffer.
    fn into_frame(self) -> Frame {
        if self.joined.is_empty() {
            self.first
        } else {
            Frame::from(self.joined)
        }
    }
}

/// What one client address holds: its connections, and their common message budget.
struct AddrState {
    conns: usize,
    bucket: TokenBucket,
}

/// The per-address key of `ip`: an IPv4 address, or the /64 of an IPv6 one (a single host
/// usually has a whole /64). Quotas do not apply to loopback unless `limit_loopback`.
pub fn address_key(ip: IpAddr, limit_loopback: bool) -> Peer {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let addr = match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !u128::from(u64::MAX),
    };
    Peer::new(addr, limit_loopback || !ip.is_loopback())
}

impl Net {
    pub fn new(parts: NetParts, cfg: Arc<Config>) -> io::Result<Net> {
        let NetParts {
            poll,
            mut listener,
            to_logic,
            from_logic,
            stop,
            handoff,
            tls,
        } = parts;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        // SIGHUP reloads the certificate; without TLS it keeps its default (terminate).
        let mut signals = if tls.is_some() {
            Signals::new([SIGINT, SIGTERM, SIGHUP])?
        } else {
            Signals::new([SIGINT, SIGTERM])?
        };
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let ws_cfg = WebSocketConfig::default()
            .read_buffer_size(cfg.read_buffer_size)
            .write_buffer_size(0)
            .max_message_size(Some(cfg.max_message_size))
            .max_frame_size(Some(cfg.max_message_size))
            .accept_unmasked_frames(false);
        Ok(Net {
            poll,
            listener: Some(listener),
            signals,
            conns: Slab::new(),
            next_gen: 0,
            to_logic,
            from_logic,
            handoff,
            for_logic: Vec::new(),
            routes: http::Routes {
                max_head: cfg.max_head_size,
                echo_path: cfg.echo_path.clone(),
                allowed_origins: cfg.allowed_origins.clone(),
                public_origins: cfg.public_origins.clone(),
                api_key: Secret::new(
                    cfg.api_key
                        .as_deref()
                        .unwrap_or(&cfg.server_password)
                        .as_bytes(),
                ),
                max_body: cfg.max_body_size,
            },
            cfg,
            ws_cfg,
            contexts: Contexts::new(ws_cfg),
            tls,
            stop,
            stop_deadline: None,
            accept_paused_until: None,
            dirty: Vec::new(),
            reread: Vec::new(),
            output_backlog: false,
            stats: NetCounters::default(),
            addrs: HashMap::new(),
            activity_at_sweep: 0,
            activity_at_trim: 0,
            next_run: 0,
            one_core: std::thread::available_parallelism().is_ok_and(|n| n.get() == 1),
        })
    }

    /// Runs until shutdown completes (all connections closed, or the shutdown deadline).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let now = Instant::now();
            let wake_at = [
                Some(next_sweep),
                self.accept_paused_until,
                self.stop_deadline,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_sweep);
            let timeout = if self.reread.is_empty() && !self.output_backlog {
                wake_at.saturating_duration_since(now)
            } else {
                Duration::ZERO // work is waiting: just check for new events
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                error!("poll failed: {e}");
                break;
            }
            let now = Instant::now();
            // Output before input (see `drain_logic`).
            self.drain_logic(now, MAX_TURN_DELIVERIES);
            for key in std::mem::take(&mut self.reread) {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.read_deferred = false; // off the list now: may go back on it
                }
                self.read_or_defer(key, now);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(now),
                    WAKER => {} // the logic thread's output is drained at the top of every turn
                    SIGNALS => self.on_signals(now),
                    Token(key) => {
                        if ev.is_writable() {
                            self.mark_dirty(key);
                        }
                        if (ev.is_read_closed() || ev.is_error())
                            && let Some(conn) = self.conns.get_mut(key)
                        {
                            conn.io.peer_ended();
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read_or_defer(key, now);
                        }
                    }
                }
            }
            if self.stop.load(Ordering::Relaxed) && self.stop_deadline.is_none() {
                self.begin_shutdown(now);
            }
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                self.accept_all(now);
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP;
            }
            if self.one_core && !self.for_logic.is_empty() {
                // The logic thread can only run while this one waits: wait for its answer and
                // send it this turn, instead of going round the loop and being woken for it.
                self.handoff.expect_output();
                self.send_to_logic();
                let answer = self.handoff.wait_for_output(&self.from_logic, HANDOFF_WAIT);
                self.drain_logic_from(answer, now, MAX_TURN_DELIVERIES);
            } else {
                self.send_to_logic();
            }
            self.flush_dirty();
            if let Some(deadline) = self.stop_deadline
                && (self.conns.is_empty() || now >= deadline)
            {
                break;
            }
        }
        info!(
            "net thread stopped ({} connections left open); {:?}",
            self.conns.len(),
            self.stats
        );
    }

    /// Hands this turn's events (if any) to the logic thread in one batch.
    fn send_to_logic(&mut self) {
        if !self.for_logic.is_empty() {
            let _ = self.to_logic.send(std::mem::take(&mut self.for_logic));
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            if self.accept_paused_until.is_some() {
                return;
            }
            let (mut tcp, peer) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if is_resource_exhaustion(&e) => {
                    warn!("accept paused for {ACCEPT_BACKOFF:?}: {e}");
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                Err(e) => {
                    debug!("accept: {e}");
                    continue;
                }
            };
            if self.conns.len() >= self.cfg.max_connections {
                // Accept-and-close keeps the listen queue moving: refused clients learn at
                // once instead of timing out, and the listener never stays readable.
                self.stats.refused_over_limit += 1;
                if self.stats.refused_over_limit.is_power_of_two() {
                    warn!(
                        "connection limit {} reached; refused {} so far",
                        self.cfg.max_connections, self.stats.refused_over_limit
                    );
                }
                continue;
            }
            let peer_key = address_key(peer.ip(), self.cfg.limit_loopback);
            let addr = peer_key.quota_key();
            if let Some(a) = addr
                && self.addrs.get(&a).map_or(0, |s| s.conns) >= self.cfg.max_connections_per_address
            {
                {
                    self.stats.refused_per_address += 1;
                    if self.stats.refused_per_address.is_power_of_two() {
                        warn!(
                            "{}: over {} connections from one address; refused {} so far",
                            peer.ip(),
                            self.cfg.max_connections_per_address,
                            self.stats.refused_per_address
                        );
                    }
                    continue;
                }
            }
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut tcp, Token(key), Interest::READABLE)
            {
                warn!("register {peer}: {e}");
                continue;
            }
            let _ = tcp.set_nodelay(true);
            let transport = match &self.tls {
                None => Transport::Plain(tcp),
                Some(tls) => match tls.session() {
                    Ok(session) => Transport::tls(session, tcp),
                    Err(e) => {
                        error!("TLS session for {peer}: {e}");
                        let _ = self.poll.registry().deregister(&mut tcp);
                        continue;
                    }
                },
            };
            // Never `u32::MAX`: that generation marks another cluster node's connections.
            self.next_gen = (self.next_gen + 1) % u32::MAX;
            let id = ConnId {
                slot: key as u32,
                generation: self.next_gen,
            };
            let deadline = now + self.cfg.handshake_timeout;
            let wire_limit = 2 * self.cfg.max_message_size + 64 * 1024;
            let conn = Conn::new(
                id,
                transport,
                peer,
                now,
                deadline,
                self.cfg.rate_burst,
                wire_limit,
                peer_key,
            );
            entry.insert(conn);
            if let Some(a) = addr {
                let burst = self.cfg.address_rate_burst;
                let state = self.addrs.entry(a).or_insert_with(|| AddrState {
                    conns: 0,
                    bucket: TokenBucket::full(burst, now),
                });
                state.conns += 1;
            }
            self.stats.accepted += 1;
        }
    }

    fn on_signals(&mut self, now: Instant) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for sig in signals {
            if sig == SIGHUP {
                self.reload_tls();
                continue;
            }
            if self.stop_deadline.is_some() {
                warn!("second signal {sig} during shutdown: exiting now");
                std::process::exit(1);
            }
            info!("signal {sig}: shutting down");
            self.begin_shutdown(now);
        }
    }

    /// Rebuilds the TLS config from its files (certificate rotation). Connections already open
    /// keep their sessions; a bad file keeps the old config.
    fn reload_tls(&mut self) {
        let Some(tls) = &mut self.tls else { return };
        let files = tls.files().clone();
        let (cert, key) = (files.cert.display(), files.key.display());
        match tls.reload() {
            Ok(()) => info!("SIGHUP: reloaded TLS certificate {cert} and key {key}"),
            Err(e) => error!("SIGHUP: TLS reload failed, keeping the old certificate: {e}"),
        }
    }

    /// Stops accepting, sends every WebSocket client a 1001 close, and sets the exit deadline.
    fn begin_shutdown(&mut self, now: Instant) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        // Whatever the logic thread already produced goes out before the close frames.
        self.drain_logic(now, usize::MAX);
        self.for_logic.push(ToLogic::Shutdown);
        self.stop_deadline = Some(now + self.cfg.shutdown_timeout);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.conns[key].phase {
                Phase::Head(_) | Phase::Api { .. } => self.remove(key),
                Phase::Ws { .. } => {
                    self.close_ws(key, close::GOING_AWAY, "server shutting down", now)
                }
                Phase::Draining { .. } => {}
            }
        }
    }

    /// Queues what the logic thread produced, up to about `limit` deliveries.
    ///
    /// This is the server's backpressure: while produced output is still waiting here, no
    /// client is read (`read_or_defer`), so the logic thread gets no new work until the sockets
    /// have taken what it already made. An overloaded server thus slows its senders down through
    /// TCP, with bounded turns and bounded queues, instead of reading everything, falling ever
    /// further behind, and finally cutting every member off as a slow consumer.
    ///
    /// Frames for the same audience (a room's chat, say) are joined into one buffer (a run) that
    /// each member's queue gets once: a member costs one `writev` slot, one reference and one
    /// queue entry per turn instead of per frame, and the kernel copies one contiguous buffer.
    /// Runs for several audiences (rooms) stay open side by side as long as no connection is
    /// in two of them, and anything else for a member of an open run (a reply, a close) queues
    /// that run first, so every connection still sees its frames in the order the logic
    /// thread made them.
    fn drain_logic(&mut self, now: Instant, limit: usize) {
        self.drain_logic_from(None, now, limit);
    }

    /// [`Net::drain_logic`], starting with `first`, a batch already taken from the channel.
    fn drain_logic_from(&mut self, mut first: Option<Vec<ToNet>>, now: Instant, limit: usize) {
        let mut delivered = 0;
        let mut runs: Vec<Run> = Vec::new();
        while delivered < limit
            && let Some(batch) = first.take().or_else(|| self.from_logic.try_recv().ok())
        {
            for msg in batch {
                match msg {
                    ToNet::SendMany { to, except, frame } => {
                        delivered += to.len();
                        let frame = match runs.iter_mut().find(|r| r.is_for(&to, except)) {
                            Some(run) => match run.join(frame) {
                                None => continue,
                                Some(frame) => {
                                    let seq = run.seq;
                                    self.end_run(&mut runs, seq, now);
                                    frame
                                }
                            },
                            None => frame,
                        };
                        self.start_run(&mut runs, to, except, frame, now);
                    }
                    other => {
                        // A frame or a close for a member of an open run goes after the run.
                        if let Some(seq) = addressee(&other)
                            .and_then(|id| self.key_of(id))
                            .map(|key| self.conns[key].run)
                            .filter(|&seq| seq != 0)
                        {
                            self.end_run(&mut runs, seq, now);
                        }
                        delivered += self.apply(other, now);
                    }
                }
            }
        }
        for run in runs {
            self.send_run(run, now);
        }
        self.output_backlog = !self.from_logic.is_empty();
    }

    /// Carries out one message of the logic thread; returns the deliveries it queued.
    fn apply(&mut self, msg: ToNet, now: Instant) -> usize {
        match msg {
            ToNet::Send { to, frame } => {
                self.queue_data(to, Rc::new(frame), now);
                1
            }
            ToNet::SendMany { to, except, frame } => {
                let frame = Rc::new(frame);
                for &id in to.iter().filter(|&&id| Some(id) != except) {
                    self.queue_data(id, Rc::clone(&frame), now);
                }
                to.len()
            }
            ToNet::Close { conn, code, reason } => {
                if let Some(key) = self.key_of(conn) {
                    self.close_ws(key, code, reason, now);
                }
                0
            }
            ToNet::Hold { conn, on } => {
                if let Some(key) = self.key_of(conn) {
                    self.conns[key].held = on;
                    if !on {
                        // Whatever arrived meanwhile raised no new readiness event.
                        self.defer_read(key);
                    }
                }
                0
            }
            ToNet::Admit { conn, refused } => {
                if let Some(key) = self.key_of(conn) {
                    self.admit(key, refused, now);
                }
                0
            }
            ToNet::Http { conn, reply } => {
                if let Some(key) = self.key_of(conn)
                    && matches!(self.conns[key].phase, Phase::Api { .. })
                {
                    self.respond(key, &reply, now);
                }
                0
            }
        }
    }

    /// Opens a run for `to` (but `except`) with `frame`. A member of another open run ends
    /// that run first (queues it), so no connection is in two open runs and the order in
    /// which runs are queued at the end cannot reorder any connection's frames.
    fn start_run(
        &mut self,
        runs: &mut Vec<Run>,
        to: Recipients,
        except: Option<ConnId>,
        frame: Frame,
        now: Instant,
    ) {
        if runs.len() >= MAX_OPEN_RUNS {
            let oldest = runs.remove(0);
            self.send_run(oldest, now);
        }
        self.next_run = self.next_run.wrapping_add(1).max(1);
        let seq = self.next_run;
        for &id in to.iter().filter(|&&id| Some(id) != except) {
            let Some(key) = self.key_of(id) else { continue };
            let other = self.conns[key].run;
            if other != 0 {
                self.end_run(runs, other, now);
            }
            self.conns[key].run = seq;
        }
        runs.push(Run {
            seq,
            to,
            except,
            first: frame,
            joined: Vec::new(),
        });
    }

    /// Queues the open run `seq`.
    fn end_run(&mut self, runs: &mut Vec<Run>, seq: u32, now: Instant) {
        if let Some(i) = runs.iter().position(|r| r.seq == seq) {
            let run = runs.remove(i);
            self.send_run(run, now);
        }
    }

    /// Queues the frames of `run` for its audience, as one buffer.
    fn send_run(&mut self, run: Run, now: Instant) {
        let (to, except, seq) = (run.to.clone(), run.except, run.seq);
        let frame = Rc::new(run.into_frame());
        for &id in to.iter().filter(|&&id| Some(id) != except) {
            if let Some(key) = self.key_of(id)
                && self.conns[key].run == seq
            {
                self.conns[key].run = 0;
            }
            self.queue_data(id, Rc::clone(&frame), now);
        }
    }

    fn key_of(&self, id: ConnId) -> Option<usize> {
        let key = id.slot as usize;
        self.conns.get(key).filter(|c| c.id == id).map(|_| key)
    }

    /// Queues an application frame, cutting the connection off if its queue is over the cap.
    fn queue_data(&mut self, id: ConnId, frame: SharedFrame, now: Instant) {
        let Some(key) = self.key_of(id) else { return };
        let conn = &mut self.conns[key];
        if !conn.accepts_data() {
            return; // already closing: the peer has been told it is going away
        }
        conn.outbox.push(frame);
        self.after_push(key, now);
    }

    /// Marks the connection for flushing and enforces the hard ceiling on its queue. The
    /// outbound cap itself is judged by the sweep: a queue is only a slow consumer if it does
    /// not drain (see `sweep`), so a burst the server made does not cut a reader off.
    fn after_push(&mut self, key: usize, now: Instant) {
        let conn = &self.conns[key];
        let queued = conn.outbox.len();
        if queued > self.cfg.max_outbound.saturating_mul(HARD_CEILING) && conn.accepts_data() {
            self.cut_slow_consumer(key, "over the hard ceiling", now);
        }
        self.mark_dirty(key);
    }

    /// Closes a connection that does not take what is queued for it, discarding its unsent
    /// frames (a torn front frame is finished first).
    fn cut_slow_consumer(&mut self, key: usize, why: &str, now: Instant) {
        let conn = &mut self.conns[key];
        self.stats.slow_consumers_cut += 1;
        warn!(
            "{} ({}): {} bytes queued, over the {} byte cap ({why}): closing as a slow consumer",
            conn.peer,
            conn.id.slot,
            conn.outbox.len(),
            self.cfg.max_outbound
        );
        conn.outbox.discard_unsent();
        self.close_ws(
            key,
            close::POLICY,
            "slow consumer: outbound queue full",
            now,
        );
    }

    /// The logic thread's answer to a held room-URL upgrade.
    fn admit(&mut self, key: usize, refused: Option<(u16, &'static str)>, now: Instant) {
        let conn = &mut self.conns[key];
        let Some(response) = conn.held_upgrade.take() else {
            return;
        };
        match refused {
            None => {
                conn.outbox.push(Rc::new(Bytes::from(response)));
                self.mark_dirty(key);
                // Frames that came with or after the upgrade are waiting: read them now.
                self.defer_read(key);
            }
            Some((status, reason)) => {
                debug!("{}: upgrade refused with {status}", conn.peer);
                conn.known_to_logic = false; // the core forgot it when it refused
                conn.outbox
                    .push(Rc::new(Bytes::from(http::error(status, reason).0)));
                conn.phase = Phase::Draining { write_shut: false };
                conn.deadline = Some(now + self.cfg.close_timeout);
                self.mark_dirty(key);
            }
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Starts a close handshake: a close frame after whatever is queued, then a deadline.
    fn close_ws(&mut self, key: usize, code: u16, reason: &'static str, now: Instant) {
        let conn = &mut self.conns[key];
        if conn.held_upgrade.take().is_some() {
            // Not upgraded yet: no close frame, just go.
            conn.phase = Phase::Draining { write_shut: false };
            conn.deadline = Some(now + self.cfg.close_timeout);
            self.mark_dirty(key);
            return;
        }
        let Phase::Ws { ctx, closing, .. } = &mut conn.phase else {
            return;
        };
        if *closing {
            return;
        }
        *closing = true;
        let ctx = ctx.get_or_insert_with(|| self.contexts.take());
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        if ctx.close(&mut conn.io, Some(frame)).is_err() {
            conn.phase = Phase::Draining { write_shut: false };
        }
        conn.collect_ctrl();
        conn.deadline = Some(now + self.cfg.close_timeout);
        self.mark_dirty(key);
    }

    /// Fails the connection after a protocol violation: close frame, then no more input.
    fn fail_ws(&mut self, key: usize, code: u16, reason: &'static str, now: Instant) {
        self.stats.protocol_failures += 1;
        debug!(
            "{}: failing connection with {code}: {reason}",
            self.conns[key].peer
        );
        self.close_ws(key, code, reason, now);
        let conn = &mut self.conns[key];
        conn.phase = Phase::Draining { write_shut: false };
        conn.deadline = Some(now + self.cfg.close_timeout);
    }

    /// Reads from `key` now, or after the logic thread's output has been queued (see
    /// `drain_logic`).
    fn read_or_defer(&mut self, key: usize, now: Instant) {
        if self.conns.get(key).is_some_and(|c| c.held) {
            // Read once released (`ToNet::Hold`).
        } else if self.output_backlog || self.for_logic.len() >= MAX_TURN_EVENTS {
            self.defer_read(key);
        } else {
            self.on_readable(key, now);
        }
    }

    /// Puts `key` on the list of connections to read on the next turn (once).
    fn defer_read(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.read_deferred
        {
            conn.read_deferred = true;
            self.reread.push(key);
        }
    }

    fn on_readable(&mut self, key: usize, now: Instant) {
        if !self.conns.contains(key) {
            return;
        }
        let keep = match self.conns[key].phase {
            Phase::Head(_) => self.read_head(key, now),
            Phase::Ws { .. } => self.read_ws(key, now),
            Phase::Draining { .. } => discard_input(&mut self.conns[key]),
            // Read after the answer: the next request waits in the socket meanwhile.
            Phase::Api { .. } => true,
        };
        if !keep {
            self.remove(key);
        } else if self.conns[key].io.transport.wants_write() {
            self.mark_dirty(key); // TLS handshake replies, or a key update
        }
    }

    /// Reads the HTTP head (and an API request's body); on completion answers it, forwards it
    /// to the logic thread, or upgrades. Returns false to drop.
    fn read_head(&mut self, key: usize, now: Instant) -> bool {
        let conn = &mut self.conns[key];
        let Phase::Head(buf) = &mut conn.phase else {
            return true;
        };
        let mut chunk = [0u8; 4096];
        // A head, then at most a body's worth (the head's own limit is `http::parse`'s).
        let limit = self.cfg.max_head_size + self.cfg.max_body_size + 1;
        let head = loop {
            // Bytes may be waiting already: pipelined behind a kept-alive request.
            if !buf.is_empty()
                && let Some(head) = complete(buf, &self.routes)
            {
                break head;
            }
            let room = limit.saturating_sub(buf.len()).min(chunk.len());
            match conn.io.transport.read(&mut chunk[..room.max(1)]) {
                Ok(0) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if transport::is_not_tls(&e) => {
                    debug!("{}: {e}", conn.peer);
                    conn.io.transport.fall_back_to_cleartext();
                    break Head::Reject(http::tls_required());
                }
                Err(e) => {
                    debug!("{}: {e}", conn.peer);
                    return false;
                }
            }
        };
        let leftover = match &head {
            Head::Complete { len, .. } => {
                if let Some(client) = forwarded_client(&self.cfg, conn.peer, &buf[..*len]) {
                    debug!("{}: trusted proxy, forwarding for {client}", conn.peer);
                    conn.peer = client;
                }
                buf[*len..].to_vec()
            }
            _ => Vec::new(),
        };
        match head {
            Head::Partial => unreachable!("the loop only breaks on a complete or rejected head"),
            Head::Reject(resp)
            | Head::Complete {
                route: Route::Respond(resp),
                ..
            } => {
                self.stats.http_requests += 1;
                if let Some((status, why)) = resp.error_summary() {
                    debug!("{}: HTTP {status}: {why}", conn.peer);
                    if status == 401 {
                        self.stats.unauthorized += 1;
                    }
                }
                conn.outbox.push(Rc::new(Bytes::from(resp.0)));
                conn.phase = Phase::Draining { write_shut: false };
                conn.deadline = Some(now + self.cfg.close_timeout);
                self.mark_dirty(key);
                true
            }
            Head::Complete {
                route: Route::Api(head),
                ..
            } => {
                self.stats.http_requests += 1;
                let (body, rest) = leftover.split_at(head.body_len);
                let keep_alive = head.keep_alive;
                conn.phase = Phase::Api {
                    keep_alive,
                    leftover: rest.to_vec(),
                };
                conn.deadline = Some(now + API_DEADLINE);
                match api::parse(&head, body) {
                    Ok(mut request) => {
                        if let ApiRequest::Stats { net } | ApiRequest::Metrics { net } =
                            &mut request
                        {
                            *net = self.stats;
                        }
                        let id = conn.id;
                        self.for_logic.push(ToLogic::Api { conn: id, request });
                    }
                    Err(reply) => self.respond(key, &reply, now),
                }
                true
            }
            Head::Complete {
                route: Route::Upgrade { response, service },
                ..
            } => {
                let peer = conn.peer_key;
                if matches!(service, Service::Chat(Entry::RoomUrl { .. })) {
                    // The logic thread decides whether the nickname may enter (`admit`).
                    conn.held_upgrade = Some(response.into());
                } else {
                    conn.outbox.push(Rc::new(Bytes::from(response)));
                }
                conn.io.frames.feed(&leftover);
                // Usually nothing came behind the head: then a spare context does.
                let ctx = if leftover.is_empty() {
                    self.contexts.take()
                } else {
                    Box::new(WebSocketContext::from_partially_read(
                        leftover,
                        Role::Server,
                        Some(self.ws_cfg),
                    ))
                };
                let speaks = match service {
                    Service::Chat(entry) => {
                        conn.known_to_logic = true;
                        let speaks = Speaks::Chat(entry.dialect());
                        self.for_logic.push(ToLogic::Opened {
                            conn: conn.id,
                            entry,
                            peer,
                        });
                        speaks
                    }
                    Service::Echo => Speaks::Echo,
                };
                conn.phase = Phase::Ws {
                    ctx: Some(ctx),
                    speaks,
                    closing: false,
                };
                conn.deadline = None;
                conn.last_rx = now;
                self.mark_dirty(key);
                // Frames pipelined behind the head are already buffered: parse them now.
                self.read_ws(key, now)
            }
        }
    }

    /// Sends the answer to the API request `key` is waiting on; a kept-alive connection goes
    /// back to reading a head (and parses what was pipelined behind), others close.
    fn respond(&mut self, key: usize, reply: &Reply, now: Instant) {
        let conn = &mut self.conns[key];
        let Phase::Api {
            keep_alive,
            leftover,
        } = std::mem::replace(&mut conn.phase, Phase::Draining { write_shut: false })
        else {
            return;
        };
        if reply.status >= 400 {
            debug!("{}: HTTP {}", conn.peer, reply.status);
        }
        conn.outbox
            .push(Rc::new(Bytes::from(reply.to_http(keep_alive))));
        if keep_alive {
            conn.phase = Phase::Head(leftover);
            // The next request (head and body) has as long as a first one.
            conn.deadline = Some(now + self.cfg.handshake_timeout);
            self.defer_read(key);
        } else {
            conn.deadline = Some(now + self.cfg.close_timeout);
        }
        self.mark_dirty(key);
    }

    /// Reads frames until the socket would block. Returns false to drop the connection.
    fn read_ws(&mut self, key: usize, now: Instant) -> bool {
        if self.conns[key].held_upgrade.is_some() {
            return true; // read once admitted (`admit` puts it on the reread list)
        }
        self.conns[key].io.refill(READ_BUDGET);
        loop {
            if self.for_logic.len() >= MAX_TURN_EVENTS {
                // Enough work for the logic thread this turn; the rest (possibly already
                // buffered by tungstenite) is read next turn.
                self.defer_read(key);
                return true;
            }
            let conn = &mut self.conns[key];
            if conn.held {
                return true; // the rest waits in the socket until released
            }
            let Phase::Ws { ctx, closing, .. } = &mut conn.phase else {
                return true;
            };
            let ctx = ctx.get_or_insert_with(|| self.contexts.take());
            let result = ctx.read(&mut conn.io);
            let closing = *closing;
            conn.collect_ctrl();
            if !conn.outbox.is_empty() {
                self.mark_dirty(key);
            }
            let conn = &mut self.conns[key];
            match result {
                Ok(msg) => {
                    conn.last_rx = now;
                    conn.pinged = false;
                    if !matches!(msg, Message::Text(_) | Message::Binary(_)) {
                        continue; // control frames: tungstenite already answered them
                    }
                    conn.io.wire_in = 0;
                    if !closing {
                        self.deliver(key, msg, now);
                    }
                }
                Err(WsError::Io(_)) if conn.io.flooded() => {
                    self.fail_ws(key, close::TOO_BIG, "too many fragments", now);
                    return true;
                }
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    if conn.io.starved {
                        self.defer_read(key);
                    } else if let Some(ctx) = conn.ctx_at_rest() {
                        self.contexts.give(ctx);
                    }
                    return true;
                }
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    conn.phase = Phase::Draining { write_shut: false };
                    conn.deadline = Some(now + self.cfg.close_timeout);
                    self.mark_dirty(key);
                    return true;
                }
                Err(
                    WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) | WsError::Io(_),
                ) => {
                    return false;
                }
                Err(e) => {
                    let (code, reason) = close_for(&e);
                    self.fail_ws(key, code, reason, now);
                    return true;
                }
            }
        }
    }

    /// Hands one complete data message to whoever handles its dialect.
    fn deliver(&mut self, key: usize, msg: Message, now: Instant) {
        let conn = &mut self.conns[key];
        let Phase::Ws { ctx, speaks, .. } = &mut conn.phase else {
            return;
        };
        let dialect = match *speaks {
            Speaks::Chat(dialect) => dialect,
            Speaks::Echo => {
                let ctx = ctx.get_or_insert_with(|| self.contexts.take());
                let _ = ctx
                    .write(&mut conn.io, msg)
                    .and_then(|_| ctx.flush(&mut conn.io));
                conn.collect_ctrl();
                self.after_push(key, now);
                return;
            }
        };
        let data = match msg {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            _ => return,
        };
        if dialect != Dialect::Protocol && std::str::from_utf8(&data).is_err() {
            self.fail_ws(key, close::INVALID_DATA, "messages must be UTF-8", now);
            return;
        }
        let mut request = dialect::parse(dialect, &data);
        self.stats.messages_in += 1;
        self.stats.bytes_in += data.len() as u64;
        let conn = &mut self.conns[key];
        let mut allowed = conn
            .bucket
            .take(self.cfg.rate_limit, self.cfg.rate_burst, now);
        // All connections of one address share a second budget.
        if allowed
            && self.cfg.address_rate_limit != 0
            && let Some(state) = conn
                .peer_key
                .quota_key()
                .and_then(|a| self.addrs.get_mut(&a))
            && !state.bucket.take(
                self.cfg.address_rate_limit,
                self.cfg.address_rate_burst,
                now,
            )
        {
            self.stats.address_rate_refusals += 1;
            conn.bucket.refuse();
            allowed = false;
        }
        if !allowed {
            self.stats.rate_limited += 1;
            if request
                .intent
                .as_ref()
                .is_ok_and(|i| i.server_key().is_some())
            {
                // An admin command: the core lets it through if its server password is
                // right (a wrong one counts as a failed guess), so an admin's pipelined batch
                // is not cut short; it never counts towards the flood close.
                conn.bucket.refused_in_a_row = conn.bucket.refused_in_a_row.saturating_sub(1);
                request.over_rate = true;
            } else {
                if !self.over_rate(key) {
                    return;
                }
                request.intent = Err(ChatError::RateLimited);
            }
        }
        let conn = self.conns[key].id;
        self.for_logic.push(ToLogic::Request { conn, request });
    }

    /// Counts a message over the rate limit. Returns whether it is still answered (with a
    /// refusal, through the logic thread so it keeps its place among the replies); a client
    /// that keeps flooding after a burst's worth of refusals is closed instead.
    fn over_rate(&mut self, key: usize) -> bool {
        let conn = &mut self.conns[key];
        let burst = self.cfg.rate_burst.max(1);
        let refused = conn.bucket.refused_in_a_row;
        if refused <= burst {
            return true;
        }
        if refused == burst + 1 {
            self.stats.rate_limited_cut += 1;
            warn!(
                "{}: still flooding after {burst} refusals: closing",
                conn.peer
            );
            self.for_logic.push(ToLogic::Forward(ToNet::Close {
                conn: conn.id,
                code: close::POLICY,
                reason: "rate limit exceeded",
            }));
        }
        false
    }

    /// Writes every connection with pending output.
    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !conn.dirty {
                continue;
            }
            conn.dirty = false;
            if !self.flush(key) {
                self.remove(key);
            }
        }
        self.dirty = dirty;
    }

    /// Writes one connection's queue. Returns false to drop the connection.
    fn flush(&mut self, key: usize) -> bool {
        let conn = &mut self.conns[key];
        let mut drained = match conn.io.transport.write_from(&mut conn.outbox) {
            Ok(d) => d,
            Err(e) => {
                debug!("{}: write failed: {e}", conn.peer);
                return false;
            }
        };
        if drained
            && let Phase::Draining {
                write_shut: write_shut @ false,
            } = &mut conn.phase
        {
            match conn.io.transport.shutdown_write() {
                Ok(shut) => {
                    *write_shut = shut;
                    drained = shut; // else TLS's close_notify waits for the socket
                }
                Err(_) => return false,
            }
        }
        if drained == conn.writable {
            // Interest changes: WRITABLE only while output is pending.
            conn.writable = !drained;
            let interest = if drained {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if self
                .poll
                .registry()
                .reregister(conn.io.transport.tcp(), Token(key), interest)
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Enforces deadlines and liveness: handshake timeouts, close timeouts, pings, idle cut-off.
    fn sweep(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut idle = Vec::new();
        let mut slow = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            if conn.deadline.is_some_and(|d| now >= d) {
                expired.push(key);
                continue;
            }
            let Phase::Ws {
                ctx,
                closing: false,
                ..
            } = &mut conn.phase
            else {
                continue;
            };
            if conn.held_upgrade.is_some() {
                continue;
            }
            conn.outbox.release_if_empty();
            // Slowness is judged by draining, not by size at one instant: a client with more
            // than the cap waiting for it (our queue plus what the kernel holds unsent) at two
            // sweeps in a row, and no less at the second, is not reading. A reader the server
            // flooded (a mass deletion, a broadcast) has taken it down by the next sweep.
            let waiting = conn.outbox.len() + conn.io.transport.kernel_unsent();
            if waiting > self.cfg.max_outbound {
                match conn.over_cap {
                    Some(before) if waiting >= before.get() => {
                        slow.push(key);
                        continue;
                    }
                    _ => conn.over_cap = std::num::NonZeroUsize::new(waiting),
                }
            } else {
                conn.over_cap = None;
            }
            let silent = now.saturating_duration_since(conn.last_rx);
            // Never close without a ping first: the sweep runs once a second, so with a short
            // gap between the ping interval and the idle timeout it could skip the ping.
            if silent >= self.cfg.idle_timeout && conn.pinged {
                debug!("{}: silent for {silent:?}: closing as idle", conn.peer);
                idle.push(key);
            } else if silent >= self.cfg.ping_interval && !conn.pinged {
                debug!("{}: silent for {silent:?}: ping", conn.peer);
                conn.pinged = true;
                // A silent connection holds no context (see `Phase::Ws`): borrow one for the
                // ping and give it back.
                let borrowed = ctx.is_none();
                let held = ctx.get_or_insert_with(|| self.contexts.take());
                let _ = held.write(&mut conn.io, Message::Ping(Bytes::new()));
                if borrowed && let Some(c) = ctx.take() {
                    self.contexts.give(c);
                }
                conn.collect_ctrl();
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(key);
                }
            }
        }
        for key in expired {
            self.stats.timed_out += 1;
            if let Phase::Api { keep_alive, .. } = &mut self.conns[key].phase {
                // Closed after the 503: a late answer must not pass for the answer to a
                // next request on the same connection.
                *keep_alive = false;
                let late = Reply::error(
                    503,
                    "unavailable",
                    "the logic thread did not answer in time",
                );
                self.respond(key, &late, now);
                continue;
            }
            debug!("{}: deadline passed, dropping", self.conns[key].peer);
            self.remove(key);
        }
        for key in idle {
            self.stats.timed_out += 1;
            self.close_ws(key, close::GOING_AWAY, "idle timeout", now);
        }
        for key in slow {
            self.cut_slow_consumer(key, "not draining", now);
        }
        // Once things have been quiet for a sweep after activity (a burst of connections or
        // messages), give the allocator's free memory back to the system: what a burst
        // allocated and freed (handshakes, contexts, frames, batches) otherwise stays in the
        // process's RSS, scattered between the connections' long-lived allocations.
        let activity = self.stats.accepted + self.stats.messages_in;
        if activity == self.activity_at_sweep && activity != self.activity_at_trim {
            self.activity_at_trim = activity;
            give_back_free_memory();
        }
        self.activity_at_sweep = activity;
    }

    /// Forgets a connection, telling the logic thread if it knew it.
    fn remove(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(conn.io.transport.tcp());
        if let Some(a) = conn.peer_key.quota_key()
            && let Some(state) = self.addrs.get_mut(&a)
        {
            state.conns -= 1;
            if state.conns == 0 {
                self.addrs.remove(&a);
            }
        }
        if conn.known_to_logic {
            self.for_logic.push(ToLogic::Closed { conn: conn.id });
        }
    }
}

/// Returns the allocator's free memory to the system (glibc's `malloc_trim`: free pages inside
/// the heap too, not only at its top). Takes about a millisecond with tens of thousands of
/// connections, so it runs only when the server has been quiet for a sweep.
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reorganises the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The request in `buf` if it is complete: a head, and for an API request its whole body.
fn complete(buf: &[u8], routes: &http::Routes) -> Option<Head> {
    match http::parse(buf, routes) {
        Head::Partial => None,
        Head::Complete {
            len,
            route: Route::Api(api),
        } if buf.len() < len + api.body_len => None,
        other => Some(other),
    }
}

/// The real client behind a trusted reverse proxy: `X-Forwarded-For`'s last entry when `peer`
/// is one of `--trusted-proxy` (IPv4-mapped IPv6 peers compare as IPv4, as a dual-stack
/// listener reports them). Its port is unknown, so it is 0.
fn forwarded_client(cfg: &Config, peer: SocketAddr, head: &[u8]) -> Option<SocketAddr> {
    let peer_ip = peer.ip().to_canonical();
    if !cfg
        .trusted_proxies
        .iter()
        .any(|p| p.to_canonical() == peer_ip)
    {
        return None;
    }
    http::forwarded_for(head).map(|ip| SocketAddr::new(ip.to_canonical(), 0))
}

/// Reads and throws away input while draining. Returns false once the peer has closed, or if
/// it keeps sending more than a turn's budget: a peer we are leaving gets no more of our time.
fn discard_input(conn: &mut Conn) -> bool {
    let mut scratch = [0u8; 4096];
    let mut budget = READ_BUDGET;
    loop {
        // Straight from the socket, past any TLS session: what a peer we are leaving sends is
        // of no interest, decrypted or not.
        match conn.io.transport.tcp().read(&mut scratch) {
            Ok(0) => return false,
            Ok(n) if n >= budget => return false,
            Ok(n) => budget -= n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// The close code and reason for a WebSocket error that fails the connection.
fn close_for(e: &WsError) -> (u16, &'static str) {
    match e {
        WsError::Capacity(_) => (close::TOO_BIG, "message too big"),
        WsError::Utf8(_) => (close::INVALID_DATA, "invalid UTF-8"),
        _ => (close::PROTOCOL, "protocol error"),
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32) -> ConnId {
        ConnId {
            slot,
            generation: 0,
        }
    }

    /// A net thread with no connections, fed by the returned sender.
    fn net() -> (Net, Sender<Vec<ToNet>>) {
        let (to_logic, _) = crossbeam_channel::unbounded();
        let (to_net, from_logic) = crossbeam_channel::unbounded();
        let poll = Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER).unwrap());
        let parts = NetParts {
            poll,
            listener: TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
            to_logic,
            from_logic,
            stop: Arc::new(AtomicBool::new(false)),
            handoff: Arc::new(Handoff::new(waker)),
            tls: None,
        };
        let net = Net::new(parts, Arc::new(Config::new(0, "pw"))).unwrap();
        (net, to_net)
    }

    /// Adds a WebSocket connection over a loopback socket (the client end is dropped: nothing
    /// is written in these tests).
    fn add_conn(net: &mut Net) -> ConnId {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let entry = net.conns.vacant_entry();
        let id = ConnId {
            slot: entry.key() as u32,
            generation: 0,
        };
        let now = Instant::now();
        let mut conn = Conn::new(
            id,
            Transport::Plain(mio::net::TcpStream::from_std(server)),
            peer,
            now,
            now,
            1,
            1 << 20,
            Peer::at(1),
        );
        conn.phase = Phase::Ws {
            ctx: None,
            speaks: Speaks::Echo,
            closing: false,
        };
        conn.deadline = None;
        entry.insert(conn);
        id
    }

    /// What `id` has queued, and in how many buffers.
    fn queued(net: &mut Net, id: ConnId) -> (String, usize) {
        let outbox = &mut net.conns[id.slot as usize].outbox;
        let buffers = outbox.buffers();
        let mut out = Vec::new();
        assert!(outbox.write_to(&mut out).unwrap());
        (String::from_utf8(out).unwrap(), buffers)
    }

    #[test]
    fn joined_runs_keep_every_connections_order() {
        let (mut net, to_net) = net();
        let (u, v, c) = (add_conn(&mut net), add_conn(&mut net), add_conn(&mut net));
        let room_a: Recipients = Arc::from(vec![u, c]);
        let room_b: Recipients = Arc::from(vec![v, c]);
        let room_u: Recipients = Arc::from(vec![u]);
        let room_v: Recipients = Arc::from(vec![v]);
        let many = |to: &Recipients, text: &'static str| ToNet::SendMany {
            to: to.clone(),
            except: None,
            frame: Frame::from_static(text.as_bytes()),
        };
        // c is in both rooms: their frames must reach it interleaved as made, and a frame for
        // u alone must come after the room frames made before it.
        to_net
            .send(vec![
                many(&room_a, "a1 "),
                many(&room_b, "b1 "),
                many(&room_a, "a2 "),
                ToNet::Send {
                    to: u,
                    frame: Frame::from_static(b"u "),
                },
                many(&room_a, "a3 "),
            ])
            .unwrap();
        net.drain_logic(Instant::now(), usize::MAX);
        assert_eq!(queued(&mut net, c).0, "a1 b1 a2 a3 ");
        assert_eq!(queued(&mut net, u).0, "a1 a2 u a3 ");
        assert_eq!(queued(&mut net, v).0, "b1 ");

        // Rooms with no member in common are joined side by side: one buffer each.
        to_net
            .send(vec![
                many(&room_u, "x1 "),
                many(&room_v, "y1 "),
                many(&room_u, "x2 "),
            ])
            .unwrap();
        to_net.send(vec![many(&room_v, "y2 ")]).unwrap();
        net.drain_logic(Instant::now(), usize::MAX);
        assert_eq!(queued(&mut net, u), ("x1 x2 ".to_string(), 1));
        assert_eq!(queued(&mut net, v), ("y1 y2 ".to_string(), 1));
        assert!(
            net.conns.iter().all(|(_, c)| c.run == 0),
            "no run left open"
        );
    }

    #[test]
    fn a_run_joins_frames_up_to_its_limit_and_copies_a_single_one_not_at_all() {
        let room: Recipients = Arc::from(vec![id(1), id(2)]);
        let same_members: Recipients = Arc::from(vec![id(1), id(2)]);
        let one = Frame::from_static(b"one");
        let run = |frame: Frame| Run {
            seq: 1,
            to: room.clone(),
            except: None,
            first: frame,
            joined: Vec::new(),
        };
        assert_eq!(run(one.clone()).into_frame().as_ptr(), one.as_ptr());

        let mut r = run(Frame::from_static(b"a"));
        assert!(r.join(Frame::from_static(b"b")).is_none());
        assert!(r.join(Frame::from_static(b"c")).is_none());
        // A new list means the membership changed: another audience, even if equal.
        assert!(r.is_for(&room, None));
        assert!(!r.is_for(&same_members, None));
        assert!(!r.is_for(&room, Some(id(1))));
        assert_eq!(&r.into_frame()[..], b"abc");

        let mut r = run(Frame::from(vec![0; MAX_RUN - 10]));
        assert!(r.join(Frame::from(vec![1; 10])).is_none());
        assert!(r.join(Frame::from_static(b"!")).is_some());
        assert_eq!(r.into_frame().len(), MAX_RUN);
    }
}
