//! Requests that wait for a worker: a password hash, or a commit to the store.
//!
//! Such a request *parks* its connection: the connection's later requests queue behind it (so
//! its replies keep request order), everyone else goes on. When the worker answers, the
//! request's continuation ([`Then`]) runs: it may park again (hash, then commit), or finish
//! with the reply, after which the connection's queue is served. State changes only once the
//! worker said yes, so a failed commit leaves nothing half done in memory.

use std::collections::{HashMap, VecDeque};

use super::durable::{Change, HashJob, Hashed, StoredOffline, StoredSnap};
use super::{
    Answer, Chat, ChatError, ConnId, Dialect, Effect, Kind, ReplyTo, Request, Secret, Sink, Tag,
};

/// Requests waiting behind a parked one at which the connection stops being read (TCP then
/// pushes back on the client), until its queue is empty again.
pub const HOLD_AT: usize = 64;
/// Requests a connection may have waiting at most: only what the net thread had already read
/// when the hold began can get past `HOLD_AT`, so a connection that gets here anyway is
/// closed.
pub const MAX_QUEUED: usize = 4096;

/// The ticket of a change nobody waits for: real tickets count from 1.
const NO_TICKET: u64 = 0;

/// What to do when the worker answers.
pub(super) enum Then {
    RegisterHashed {
        name: String,
    },
    RegisterStored {
        user: u64,
    },
    AddUserHashed {
        id: u64,
        name: String,
    },
    AddUserStored {
        user: u64,
    },
    LoginVerified {
        user: Option<u64>,
        hash: String,
    },
    LoginDelivered {
        user: u64,
        messages: Vec<StoredOffline>,
    },
    BackendChecked {
        name: String,
    },
    BackendStored {
        user: u64,
    },
    ChangeVerified {
        user: u64,
        hash: String,
        new: Secret,
    },
    ChangeHashed {
        user: u64,
    },
    ChangeStored {
        user: u64,
        hash: String,
    },
    DeleteVerified {
        user: u64,
        hash: String,
    },
    UserDeleted {
        user: u64,
    },
    RoomHashed(NewRoom),
    RoomStored(NewRoom),
    RoomDeleted {
        room: u64,
    },
    JoinVerified {
        room: u64,
        leave_others: bool,
        since: Option<(u64, u64)>,
    },
    SnapStored(StoredSnap, Option<u128>),
    SnapRead {
        snap: u64,
    },
    Queued(StoredOffline),
    /// No request waits: a change made on the server's own account (an expiry).
    Nothing,
    /// An operator's API request waits on its HTTP connection `http`.
    ApiRoomStored {
        http: ConnId,
        room: NewRoom,
    },
    ApiRoomDeleted {
        http: ConnId,
        room: u64,
    },
    /// A message from the server to an offline user (`POST /api/v1/send`).
    /// One of the offline messages of an API send (`batch`) was committed, or not.
    ServerQueued {
        message: StoredOffline,
        batch: u64,
    },
    RoomsReserved {
        up_to: u64,
    },
}

/// A persistent room on its way to the store.
pub(super) struct NewRoom {
    pub id: u64,
    pub epoch: u64,
    pub name: String,
    pub question: String,
    pub answer: Secret,
    pub answer_hash: Option<String>,
}

/// Who waits for an answer, and how to reply once it comes.
pub(super) struct Parked {
    conn: Option<(ConnId, Replier)>,
    then: Then,
}

/// A [`ReplyTo`] that outlives the request.
pub(super) struct Replier {
    dialect: Dialect,
    mid: Option<u64>,
    kind: Kind,
    tag: Tag,
}

impl Replier {
    pub fn mid(&self) -> u64 {
        self.mid.unwrap_or(0)
    }
}

/// The work asked of a worker.
pub(super) enum Work {
    Hash(HashJob),
    Store(Change),
}

#[derive(Default)]
pub(super) struct Pending {
    last_ticket: u64,
    waiting: HashMap<u64, Parked>,
    /// Hash jobs handed out and not answered yet.
    hashing: usize,
    /// API sends waiting for their offline messages' commits: the HTTP connection, the answer
    /// so far, and the commits still to come.
    api_sends: HashMap<u64, (ConnId, super::Sent, u64)>,
    last_api_send: u64,
    /// How the change being continued failed, for its refusal.
    failure: Option<ChatError>,
}

impl Pending {
    /// Registers an API send with `commits` offline messages on their way to the store.
    pub fn api_send(&mut self, http: ConnId, sent: super::Sent, commits: u64) -> u64 {
        self.last_api_send += 1;
        self.api_sends
            .insert(self.last_api_send, (http, sent, commits));
        self.last_api_send
    }
}

impl Chat {
    /// Hands `work` to its worker and parks `conn` until it answers with `then`.
    pub(super) fn park(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        then: Then,
        work: Work,
        out: &mut dyn Sink,
    ) -> Result<Answer<'static>, ChatError> {
        let replier = Replier {
            dialect: re.dialect,
            mid: re.mid,
            kind: re.kind,
            tag: re.tag.clone(),
        };
        self.park_replier(Some((conn, replier)), then, work, out)
    }

    /// Hands `work` to its worker on the server's own account (nobody waits for it).
    pub(super) fn background(&mut self, then: Then, change: Change, out: &mut dyn Sink) {
        let _ = self.park_replier(None, then, Work::Store(change), out);
    }

    /// Hands `change` to the store with nothing to do once it is committed (room history):
    /// [`NO_TICKET`] is never parked, so its answer is dropped, and a message costs no entry
    /// in the table of waiting requests.
    pub(super) fn write_behind(&self, change: Change, out: &mut dyn Sink) {
        out.emit(Effect::Persist {
            ticket: NO_TICKET,
            change,
        });
    }

    fn park_replier(
        &mut self,
        conn: Option<(ConnId, Replier)>,
        then: Then,
        work: Work,
        out: &mut dyn Sink,
    ) -> Result<Answer<'static>, ChatError> {
        if let Work::Hash(_) = work {
            if self.pending.hashing >= self.limits.hash_queue {
                return Err(ChatError::Busy);
            }
            self.pending.hashing += 1;
        }
        self.pending.last_ticket += 1;
        let ticket = self.pending.last_ticket;
        if let Some((c, _)) = &conn
            && let Some(c) = self.conns.get_mut(*c)
        {
            c.busy = true;
        }
        self.pending.waiting.insert(ticket, Parked { conn, then });
        out.emit(match work {
            Work::Hash(job) => Effect::Hash { ticket, job },
            Work::Store(change) => Effect::Persist { ticket, change },
        });
        // Parked: the reply comes with the continuation.
        Ok(Answer::Silent)
    }

    /// A request of a connection that is waiting: it queues, to be served in order.
    pub(super) fn enqueue(&mut self, conn: ConnId, request: Request, out: &mut dyn Sink) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let queue = c.queue.get_or_insert_default();
        if queue.len() >= MAX_QUEUED {
            c.queue = None;
            out.emit(Effect::Close {
                conn,
                why: super::Farewell::TooManyWaiting,
            });
            return;
        }
        queue.push_back(request);
        if queue.len() == HOLD_AT && !c.held {
            c.held = true;
            out.emit(Effect::Hold { conn, on: true });
        }
    }

    /// A password hasher answered.
    pub fn hashed(&mut self, ticket: u64, result: Hashed, now: u64, out: &mut dyn Sink) {
        self.pending.hashing = self.pending.hashing.saturating_sub(1);
        self.resume(ticket, Ok(result), now, out);
    }

    /// The store committed (or failed to commit) a change.
    pub fn stored(
        &mut self,
        ticket: u64,
        result: Result<(), String>,
        now: u64,
        out: &mut dyn Sink,
    ) {
        let result = result.map(|()| Hashed::Verified(true));
        self.resume(ticket, result, now, out);
    }

    /// Runs the continuation of `ticket`. `Err` is a store failure.
    fn resume(
        &mut self,
        ticket: u64,
        result: Result<Hashed, String>,
        now: u64,
        out: &mut dyn Sink,
    ) {
        let Some(Parked { conn, then }) = self.pending.waiting.remove(&ticket) else {
            return;
        };
        let (conn, replier) = match conn {
            Some((c, r)) => (Some(c), Some(r)),
            None => (None, None),
        };
        // A connection that closed meanwhile still gets its durable change applied (it is on
        // disk now); only the replies and its own part are skipped.
        let conn = conn.filter(|&c| self.conns.get(c).is_some());
        let step = Step { conn, replier, now };
        self.continue_with(then, result, step, out);
    }

    /// Why the change just continued was not made: the store failed, another node of the
    /// cluster took the name first, or the other nodes cannot be reached.
    pub(super) fn store_failed(&self) -> ChatError {
        self.pending
            .failure
            .clone()
            .unwrap_or(ChatError::StoreFailed)
    }

    /// Replies to a finished request and serves what its connection queued meanwhile.
    pub(super) fn finish(
        &mut self,
        step: Step,
        result: Result<Answer<'_>, ChatError>,
        out: &mut dyn Sink,
    ) {
        reply(&step, result, out);
        self.served(step, out);
    }

    /// After the reply of a finished request: serves what its connection queued meanwhile.
    /// (Split from [`Chat::finish`] for answers that borrow the chat state.)
    pub(super) fn served(&mut self, step: Step, out: &mut dyn Sink) {
        if let Some(conn) = step.conn {
            self.unpark(conn, step.now, out);
        }
    }

    /// Parks the step's connection again for the next part of the work.
    pub(super) fn repark(&mut self, step: Step, then: Then, work: Work, out: &mut dyn Sink) {
        let now = step.now;
        let conn = step.conn;
        let parked = match (step.conn, step.replier) {
            (Some(c), Some(r)) => Some((c, r)),
            _ => None,
        };
        if let Err(e) = self.park_replier(parked, then, work, out) {
            // Only hashing can be refused, and only when the hashers are swamped.
            let replier = None;
            let step = Step { conn, replier, now };
            self.finish(step, Err(e), out);
        }
    }

    /// Serves the connection's queued requests until one parks it again.
    fn unpark(&mut self, conn: ConnId, now: u64, out: &mut dyn Sink) {
        loop {
            let Some(c) = self.conns.get_mut(conn) else {
                return;
            };
            c.busy = false;
            let Some(request) = c.queue.as_mut().and_then(|q| q.pop_front()) else {
                c.queue = None;
                if c.held {
                    c.held = false;
                    out.emit(Effect::Hold { conn, on: false });
                }
                return;
            };
            self.serve(conn, request, now, out);
            if self.conns.get(conn).is_none_or(|c| c.busy) {
                return;
            }
        }
    }

    fn continue_with(
        &mut self,
        then: Then,
        result: Result<Hashed, String>,
        step: Step,
        out: &mut dyn Sink,
    ) {
        let stored = result.is_ok();
        let hashed = result.as_ref().ok().cloned();
        self.pending.failure = match &result {
            Ok(_) => None,
            Err(e) if e == super::durable::STORE_CONFLICT => Some(ChatError::NameTaken),
            Err(e) if e == super::durable::STORE_UNAVAILABLE => Some(ChatError::Busy),
            Err(e) => {
                log::error!("store: {e}");
                Some(ChatError::StoreFailed)
            }
        };
        match then {
            Then::RegisterHashed { name } => match hashed {
                Some(Hashed::Hash(hash)) => self.register_hashed(step, name, hash, out),
                _ => {
                    self.users.release(&name);
                    self.finish(step, Err(ChatError::Busy), out);
                }
            },
            Then::RegisterStored { user } | Then::AddUserStored { user } => {
                let kind_registered = matches!(then, Then::RegisterStored { .. });
                let result = self.user_stored(user, stored);
                let result = result.map(|()| match kind_registered {
                    true => Answer::Registered { user },
                    false => Answer::Done,
                });
                self.finish(step, result, out);
            }
            Then::AddUserHashed { id, name } => match hashed {
                Some(Hashed::Hash(hash)) => self.add_user_hashed(step, id, name, hash, out),
                _ => {
                    self.users.release(&name);
                    self.users.release_id(id);
                    self.finish(step, Err(ChatError::Busy), out);
                }
            },
            Then::LoginVerified { user, hash } => {
                let ok = matches!(hashed, Some(Hashed::Verified(true)));
                self.login_verified(step, user, ok, &hash, out);
            }
            Then::LoginDelivered { user, messages } => {
                self.login_delivered(step, user, messages, stored, out)
            }
            Then::BackendChecked { name } => self.backend_checked(step, name, hashed, out),
            Then::BackendStored { user } => match self.user_stored(user, stored) {
                Ok(()) => {
                    let hash = self.users.get(user).map(|u| u.hash.clone());
                    self.login_verified(step, Some(user), true, &hash.unwrap_or_default(), out);
                }
                Err(e) => self.finish(step, Err(e), out),
            },
            Then::ChangeVerified { user, hash, new } => {
                let ok = matches!(hashed, Some(Hashed::Verified(true)))
                    && self.users.get(user).is_some_and(|u| u.hash == hash);
                self.guessed(step.conn, Some(user), step.now, ok);
                self.change_verified(step, user, ok, new, out);
            }
            Then::ChangeHashed { user } => match hashed {
                Some(Hashed::Hash(hash)) => {
                    let work = Work::Store(Change::SetPassword {
                        id: user,
                        hash: hash.clone(),
                    });
                    self.repark(step, Then::ChangeStored { user, hash }, work, out);
                }
                _ => self.finish(step, Err(ChatError::Busy), out),
            },
            Then::ChangeStored { user, hash } => {
                let result = if stored {
                    if let Some(u) = self.users.get_mut(user) {
                        u.hash = hash;
                    }
                    Ok(Answer::Done)
                } else {
                    Err(self.store_failed())
                };
                self.finish(step, result, out);
            }
            Then::DeleteVerified { user, hash } => {
                let ok = matches!(hashed, Some(Hashed::Verified(true)))
                    && self.users.get(user).is_some_and(|u| u.hash == hash);
                self.guessed(step.conn, Some(user), step.now, ok);
                if ok {
                    let work = Work::Store(Change::DeleteUser { id: user });
                    self.repark(step, Then::UserDeleted { user }, work, out);
                } else {
                    self.finish(step, Err(ChatError::IncorrectLogin), out);
                }
            }
            Then::UserDeleted { user } => {
                let result = if stored {
                    let mid = step.replier.as_ref().map_or(0, Replier::mid);
                    self.user_deleted(user, mid, out);
                    Ok(Answer::Done)
                } else {
                    Err(self.store_failed())
                };
                self.finish(step, result, out);
            }
            Then::RoomHashed(mut room) => match hashed {
                Some(Hashed::Hash(hash)) => {
                    room.answer_hash = Some(hash);
                    self.store_room(step, room, out);
                }
                _ => self.finish(step, Err(ChatError::Busy), out),
            },
            Then::RoomStored(room) => self.room_stored(step, room, stored, out),
            Then::RoomDeleted { room } => {
                let result = if stored {
                    let mid = step.replier.as_ref().map_or(0, Replier::mid);
                    self.delete_room(room, mid, out);
                    Ok(Answer::Done)
                } else {
                    Err(self.store_failed())
                };
                self.finish(step, result, out);
            }
            Then::JoinVerified {
                room,
                leave_others,
                since,
            } => {
                let ok = matches!(hashed, Some(Hashed::Verified(true)));
                self.join_verified(step, room, leave_others, since, ok, out);
            }
            Then::SnapStored(snap, addr) => self.snap_stored(step, snap, addr, stored, out),
            Then::SnapRead { snap } => self.snap_read(step, snap, stored, out),
            Then::Queued(message) => {
                let result = if stored {
                    self.offline.push(message);
                    Ok(Answer::Queued)
                } else {
                    Err(self.store_failed())
                };
                self.finish(step, result, out);
            }
            Then::RoomsReserved { up_to } => {
                if stored {
                    self.rooms.reserved(up_to);
                }
            }
            Then::Nothing => {}
            Then::ApiRoomStored { http, room } => self.api_room_stored(http, room, stored, out),
            Then::ApiRoomDeleted { http, room } => self.api_room_deleted(http, room, stored, out),
            Then::ServerQueued { message, batch } => {
                let Some((http, sent, left)) = self.pending.api_sends.get_mut(&batch) else {
                    return;
                };
                if stored {
                    self.offline.push(message);
                    sent.queued += 1;
                } else {
                    sent.failed += 1;
                }
                *left -= 1;
                if *left == 0 {
                    let (http, sent) = (*http, *sent);
                    self.pending.api_sends.remove(&batch);
                    let result = Ok(super::ApiDone::Sent(sent));
                    out.emit(Effect::ApiDone { conn: http, result });
                }
            }
        }
    }
}

/// The reply to a finished request, if its connection is still there.
pub(super) fn reply(step: &Step, result: Result<Answer<'_>, ChatError>, out: &mut dyn Sink) {
    if let (Some(conn), Some(r)) = (step.conn, &step.replier) {
        out.emit(Effect::Reply {
            conn,
            dialect: r.dialect,
            mid: r.mid,
            kind: r.kind,
            tag: &r.tag,
            result,
        });
    }
}

/// A continuation's context: the connection that waits (if still open) and how to reply.
pub(super) struct Step {
    pub conn: Option<ConnId>,
    pub replier: Option<Replier>,
    pub now: u64,
}

/// Requests a connection sent while it waited, kept on the connection itself.
pub(super) type Queue = VecDeque<Request>;
