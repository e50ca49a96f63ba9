//! The logic thread: applies events to the chat core and routes its effects to their sinks.
//!
//! Today there is one sink, the net thread: events and replies are rendered by their dialect
//! (once per dialect present in an audience) into frames, and sent as [`ToNet`] batches.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use mio::Waker;

use crate::chat::{
    Actor, Chat, ChatError, Dialect, Effect, Event, Farewell, Limits, Recipients, Sink,
};
use crate::dialect::{self, ActorView};
use crate::events::{Frame, ToLogic, ToNet};

/// How often `Tick` drives time-based state (snap expiry).
const TICK: Duration = Duration::from_secs(1);

/// Most event batches applied before results are handed over and the net thread is woken:
/// enough to amortise the wake-up under load, few enough to keep latency low.
const MAX_BATCHES: usize = 16;

/// Runs until `Shutdown` arrives or the net thread goes away.
///
/// Waits on the event channel with a timeout instead of a second (ticker) channel: a
/// single-channel wait is much cheaper than a `select!`, which registers and unregisters with
/// both channels on every wake-up.
pub fn run(
    mut logic: Logic,
    events: Receiver<Vec<ToLogic>>,
    to_net: Sender<Vec<ToNet>>,
    waker: Arc<Waker>,
) {
    let mut next_tick = Instant::now() + TICK;
    loop {
        let first = match events.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = unix_now();
        let mut out = Vec::new();
        let mut stop = false;
        let batches = std::iter::once(first).chain(events.try_iter().take(MAX_BATCHES - 1));
        let mut sent = false;
        'batches: for batch in batches {
            for event in batch {
                match event {
                    ToLogic::Shutdown => {
                        stop = true;
                        break 'batches;
                    }
                    ToLogic::InjectPanic => panic!("injected panic (websocket test debug panic)"),
                    ToLogic::Forward(msg) => out.push(msg),
                    event => logic.handle(event, now, &mut out),
                }
            }
            // One output batch per input batch keeps output batches as small as the net
            // thread's turns, so its per-turn limit can pace them.
            if !out.is_empty() {
                sent = true;
                if to_net.send(std::mem::take(&mut out)).is_err() {
                    return;
                }
            }
        }
        if Instant::now() >= next_tick {
            logic.handle(ToLogic::Tick, now, &mut out);
            next_tick = Instant::now() + TICK;
        }
        if !out.is_empty() {
            sent = true;
            if to_net.send(out).is_err() {
                return;
            }
        }
        if sent && waker.wake().is_err() {
            return;
        }
        if stop {
            return;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The chat core with its effects routed to the net thread: what the logic thread runs, and
/// what tests, benchmarks and the fuzzer drive one event at a time.
pub struct Logic {
    chat: Chat,
}

impl Logic {
    /// Empty state; `server_password` gates the admin commands.
    pub fn new(server_password: &[u8]) -> Logic {
        Logic::with_limits(server_password, Limits::default())
    }

    /// Empty state with the given quotas.
    pub fn with_limits(server_password: &[u8], limits: Limits) -> Logic {
        Logic {
            chat: Chat::with_limits(server_password, limits),
        }
    }

    /// Applies one event at unix time `now` (seconds), appending what to send to `out`.
    ///
    /// `Shutdown` and `InjectPanic` belong to [`run`] and are ignored here.
    pub fn handle(&mut self, event: ToLogic, now: u64, out: &mut Vec<ToNet>) {
        let mut router = Router { out };
        match event {
            ToLogic::Opened { conn, entry, peer } => self.chat.open(conn, entry, peer, &mut router),
            ToLogic::Request { conn, request } => {
                self.chat.request(conn, request, now, &mut router)
            }
            ToLogic::Closed { conn } => self.chat.close(conn, &mut router),
            ToLogic::Tick => self.chat.tick(now),
            ToLogic::Forward(msg) => out.push(msg),
            ToLogic::Shutdown | ToLogic::InjectPanic => {}
        }
    }
}

/// Renders the core's effects for the net thread.
struct Router<'o> {
    out: &'o mut Vec<ToNet>,
}

impl Sink for Router<'_> {
    fn emit(&mut self, effect: Effect<'_>) {
        match effect {
            Effect::Tell {
                dialect,
                to,
                actor,
                mid,
                event,
            } => self.tell(dialect, to, actor, mid, event),
            Effect::Reply {
                conn,
                dialect,
                mid,
                kind,
                tag,
                result,
            } => {
                if let Some(frame) = dialect::render_reply(dialect, mid, kind, tag, &result) {
                    self.out.push(ToNet::Send { to: conn, frame });
                }
            }
            Effect::Admit { conn, result } => {
                let refused = result.err().map(|e| match e {
                    ChatError::NameTaken => (409, "Conflict: that nickname is taken"),
                    ChatError::QuotaExceeded(_) => (503, "Service Unavailable: room full"),
                    _ => (400, "Bad Request"),
                });
                self.out.push(ToNet::Admit { conn, refused });
            }
            Effect::Close { conn, why } => {
                let reason = match why {
                    Farewell::LoggedOut => "logout",
                    Farewell::RoomRemoved => "chatroom removed",
                };
                self.out.push(ToNet::Close {
                    conn,
                    code: crate::net::close::NORMAL,
                    reason,
                });
            }
        }
    }
}

impl Router<'_> {
    /// One rendering for `to`, shared by all of them; the actor gets its own view.
    fn tell(
        &mut self,
        dialect: Dialect,
        to: Recipients,
        actor: Option<Actor>,
        mid: u64,
        event: &Event<'_>,
    ) {
        let render = |as_actor| dialect::render_event(dialect, mid, event, as_actor);
        let Some(actor) = actor else {
            if let Some(frame) = render(false) {
                self.send(to, None, frame);
            }
            return;
        };
        let except = actor.in_audience.then_some(actor.conn);
        match dialect::actor_view(dialect, event) {
            ActorView::Same => {
                let Some(frame) = render(false) else { return };
                let to = if actor.in_audience {
                    to
                } else {
                    to.iter().copied().chain([actor.conn]).collect()
                };
                self.send(to, None, frame);
            }
            ActorView::Own => {
                if let Some(frame) = render(true) {
                    self.out.push(ToNet::Send {
                        to: actor.conn,
                        frame,
                    });
                }
                if let Some(frame) = render(false) {
                    self.send(to, except, frame);
                }
            }
            ActorView::Nothing => {
                if let Some(frame) = render(false) {
                    self.send(to, except, frame);
                }
            }
        }
    }

    /// Queues `frame` for `to` but `except`: nothing when that leaves nobody, a plain send for
    /// one recipient.
    fn send(&mut self, to: Recipients, except: Option<crate::events::ConnId>, frame: Frame) {
        let msg = match (&*to, except) {
            ([], _) => return,
            ([one], Some(ex)) if *one == ex => return,
            ([one], _) => ToNet::Send { to: *one, frame },
            _ => ToNet::SendMany { to, except, frame },
        };
        self.out.push(msg);
    }
}

#[cfg(test)]
mod tests;
