//! The logic thread: applies events to the chat core and routes its effects to their sinks.
//!
//! The sinks: the net thread (events and replies rendered by their dialect, once per dialect
//! present in an audience, into frames sent as [`ToNet`] batches), the store thread (changes to
//! commit) and the password hashers. Their answers come back through the same inbox as client
//! messages.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use std::collections::VecDeque;

use crate::api::{self, LogicCounters};
use crate::auth::{self, Cost, Hasher};
use crate::chat::{
    Actor, Change, Chat, ChatError, Dialect, Effect, Event, Farewell, HashJob, Hashed, Limits,
    Recipients, Replica, Sink, Snapshot,
};
use crate::cluster::ToCluster;
use crate::dialect::{self, ActorView};
use crate::events::{Frame, ToLogic, ToNet};
use crate::net::Handoff;
use crate::store;
use crate::webhook::Webhooks;

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
    handoff: Arc<Handoff>,
) {
    let mut next_tick = Instant::now() + TICK;
    loop {
        let first = match events.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let started = Instant::now();
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
        logic.counters.batch.observe(started.elapsed());
        if !out.is_empty() {
            sent = true;
            if to_net.send(out).is_err() {
                return;
            }
        }
        if sent && handoff.output_sent().is_err() {
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

/// Where hash jobs and changes go.
pub enum Workers {
    /// To the hasher pool and the store thread.
    Threads {
        hashers: Sender<auth::Request>,
        /// `None` with `--data :memory:`: nothing is stored, every change counts as committed.
        store: Option<Sender<store::Request>>,
        /// `None` without `--webhook`.
        webhooks: Option<Webhooks>,
        /// The cluster bridge, with `--redis`: it takes the place of the store.
        cluster: Option<Sender<ToCluster>>,
    },
    /// Done on the spot, answers fed back before `handle` returns, nothing stored: for tests,
    /// benchmarks, the fuzzer and the self-test, which drive the logic one event at a time.
    Inline(Hasher),
}

/// A worker's answer, on its way back to the core.
enum Done {
    Hashed(u64, Hashed),
    Stored(u64, Result<(), String>),
}

/// The chat core with its effects routed to their sinks: what the logic thread runs, and what
/// tests, benchmarks and the fuzzer drive one event at a time.
pub struct Logic {
    chat: Chat,
    workers: Workers,
    /// Answers of inline work and of the no-op store, applied before `handle` returns.
    done: VecDeque<Done>,
    /// What this thread counts for `/metrics` and `/api/v1/stats`.
    pub counters: LogicCounters,
}

impl Logic {
    /// An empty server whose hashing runs inline at the cheapest cost and which stores
    /// nothing; `server_password` gates the admin commands.
    pub fn new(server_password: &[u8]) -> Logic {
        Logic::with_limits(server_password, Limits::default())
    }

    /// Like [`Logic::new`], with the given quotas.
    pub fn with_limits(server_password: &[u8], limits: Limits) -> Logic {
        let hasher = Hasher::new(Cost::TESTING).expect("the testing cost is valid");
        let chat = Chat::new(server_password, limits, Snapshot::default());
        Logic::with(chat, Workers::Inline(hasher))
    }

    pub fn with(chat: Chat, workers: Workers) -> Logic {
        let with_store = matches!(
            workers,
            Workers::Threads { store: Some(_), .. }
                | Workers::Threads {
                    cluster: Some(_),
                    ..
                }
        );
        let mut counters = LogicCounters::new(with_store);
        if matches!(
            workers,
            Workers::Threads {
                cluster: Some(_),
                ..
            }
        ) {
            counters.cluster = Some(api::ClusterCounters {
                link_up: true,
                ..Default::default()
            });
        }
        Logic {
            chat,
            workers,
            done: VecDeque::new(),
            counters,
        }
    }

    /// Applies one event at unix time `now` (seconds), appending what to send to `out`.
    ///
    /// `Shutdown` and `InjectPanic` belong to [`run`] and are ignored here.
    pub fn handle(&mut self, event: ToLogic, now: u64, out: &mut Vec<ToNet>) {
        let first = out.len();
        let mut router = Router {
            out,
            workers: &self.workers,
            done: &mut self.done,
            now,
        };
        match event {
            ToLogic::Opened { conn, entry, peer } => self.chat.open(conn, entry, peer, &mut router),
            ToLogic::Request { conn, request } => {
                self.counters.requests += 1;
                self.chat.request(conn, request, now, &mut router)
            }
            ToLogic::Api { conn, request } => {
                let hooks = match &self.workers {
                    Workers::Threads {
                        webhooks: Some(hooks),
                        ..
                    } => Some(&*hooks.counters),
                    _ => None,
                };
                let reply = api::answer(
                    &mut self.chat,
                    conn,
                    request,
                    now,
                    &self.counters,
                    hooks,
                    &mut router,
                );
                if let Some(reply) = reply {
                    router.out.push(ToNet::Http { conn, reply });
                }
            }
            ToLogic::Closed { conn } => self.chat.close(conn, &mut router),
            ToLogic::Hashed { ticket, result } => {
                self.chat.hashed(ticket, result, now, &mut router)
            }
            ToLogic::Stored { results, took } => {
                if let Some(commit) = &mut self.counters.commit {
                    commit.observe(took);
                }
                for (ticket, result) in results {
                    self.chat.stored(ticket, result, now, &mut router);
                }
            }
            ToLogic::Cluster(replica) => {
                let c = self.counters.cluster.get_or_insert_default();
                c.replicas_in += 1;
                if let Replica::Said { .. } = replica {
                    c.room_messages_in += 1;
                }
                self.chat.replicate(replica, now, &mut router);
                c.link_up = self.chat.cluster_reachable().unwrap_or(false);
            }
            ToLogic::Tick => self.chat.tick(now, &mut router),
            ToLogic::Forward(msg) => router.out.push(msg),
            ToLogic::Shutdown | ToLogic::InjectPanic => {}
        }
        while let Some(done) = self.done.pop_front() {
            let mut router = Router {
                out,
                workers: &self.workers,
                done: &mut self.done,
                now,
            };
            match done {
                Done::Hashed(ticket, result) => self.chat.hashed(ticket, result, now, &mut router),
                Done::Stored(ticket, result) => self.chat.stored(ticket, result, now, &mut router),
            }
        }
        self.count_deliveries(&out[first..]);
    }

    /// Counts the frames queued for connections: one pass over what this event produced,
    /// instead of a counter in every place that sends.
    fn count_deliveries(&mut self, produced: &[ToNet]) {
        for msg in produced {
            let (n, len) = match msg {
                ToNet::Send { frame, .. } => (1, frame.len()),
                ToNet::SendMany { to, except, frame } => {
                    let n = to.len() - usize::from(except.is_some_and(|e| to.contains(&e)));
                    (n, frame.len())
                }
                _ => continue,
            };
            self.counters.deliveries += n as u64;
            self.counters.bytes_out += (n * len) as u64;
        }
    }
}

/// Sends the core's effects where they go: rendered for the net thread, or to a worker.
struct Router<'o> {
    out: &'o mut Vec<ToNet>,
    workers: &'o Workers,
    done: &'o mut VecDeque<Done>,
    /// Unix time of the event being handled, for notices.
    now: u64,
}

impl Sink for Router<'_> {
    fn emit(&mut self, effect: Effect<'_>) {
        match effect {
            Effect::Tell {
                dialect,
                sequenced,
                to,
                actor,
                mid,
                event,
            } => self.tell(dialect, sequenced, to, actor, mid, event),
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
                let (code, reason) = match why {
                    Farewell::LoggedOut => (crate::net::close::NORMAL, "logout"),
                    Farewell::RoomRemoved => (crate::net::close::NORMAL, "chatroom removed"),
                    Farewell::TooManyWaiting => (crate::net::close::POLICY, "too many requests"),
                    Farewell::Kicked => (
                        crate::net::close::POLICY,
                        "disconnected by the server's operator",
                    ),
                };
                self.out.push(ToNet::Close { conn, code, reason });
            }
            Effect::Hash { ticket, job } => self.hash(ticket, job),
            Effect::Hold { conn, on } => self.out.push(ToNet::Hold { conn, on }),
            Effect::Persist { ticket, change } => self.persist(ticket, change),
            Effect::ApiDone { conn, result } => self.out.push(ToNet::Http {
                conn,
                reply: api::done(result),
            }),
            Effect::Share(shared) => {
                if let Workers::Threads {
                    cluster: Some(bridge),
                    ..
                } = self.workers
                {
                    // The bridge outlives the logic thread; a send fails only during shutdown.
                    let _ = bridge.send(ToCluster::Share(shared));
                }
            }
            Effect::Notify(notice) => {
                if let Workers::Threads {
                    webhooks: Some(hooks),
                    ..
                } = self.workers
                {
                    hooks.notify(&notice, self.now);
                }
            }
        }
    }
}

impl Router<'_> {
    fn hash(&mut self, ticket: u64, job: HashJob) {
        match self.workers {
            Workers::Threads { hashers, .. } => {
                // The pool outlives the logic thread; a send fails only during shutdown.
                let _ = hashers.send((ticket, job));
            }
            Workers::Inline(hasher) => self.done.push_back(Done::Hashed(ticket, hasher.run(job))),
        }
    }

    fn persist(&mut self, ticket: u64, change: Change) {
        match self.workers {
            Workers::Threads {
                cluster: Some(bridge),
                ..
            } => {
                if bridge.send(ToCluster::Persist(ticket, change)).is_err() {
                    let gone = Err("the cluster bridge has stopped".to_string());
                    self.done.push_back(Done::Stored(ticket, gone));
                }
            }
            Workers::Threads {
                store: Some(store), ..
            } => {
                if store.send((ticket, change)).is_err() {
                    let gone = Err("the store has stopped".to_string());
                    self.done.push_back(Done::Stored(ticket, gone));
                }
            }
            _ => self.done.push_back(Done::Stored(ticket, Ok(()))),
        }
    }

    /// One rendering for `to`, shared by all of them; the actor gets its own view.
    fn tell(
        &mut self,
        dialect: Dialect,
        sequenced: bool,
        to: Recipients,
        actor: Option<Actor>,
        mid: u64,
        event: &Event<'_>,
    ) {
        let render = |as_actor| dialect::render_event(dialect, sequenced, mid, event, as_actor);
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
