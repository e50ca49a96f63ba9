//! The chat core: connections, users, rooms and snaps (`docs/protocol.md` §3–§9), shared by
//! every dialect.
//!
//! It knows no wire format. Each dialect parses its messages into a [`Request`] (an
//! [`Intent`] plus the words the dialect wants echoed), the core applies it at an injected
//! time, and everything that follows is an [`Effect`] handed to a [`Sink`]: [`Event`]s for
//! audiences split by [`Dialect`], one reply per request, closes. The logic thread's sink
//! renders each event once per dialect present in its audience and shares that frame among
//! the dialect's recipients. This module must not import a codec, framing, or I/O; the integration test
//! `architecture::core_imports_no_wire_format` enforces it (the rules are unit-tested through
//! the renderers, as wire transcripts, in `logic::tests`).
//!
//! Data structures are chosen so that work is proportional to the people involved, not to
//! everyone connected: a room keeps its members in join order with an O(1) membership index
//! and cached per-dialect audiences, a user keeps the connections logged in as them, and snaps
//! are indexed by user and by deadline.
//!
//! Invariants (kept by `enter`, `exit`, `delete_room`, `set_identity` and `close`): a
//! connection lists room R in `Conn::rooms` exactly when R's members hold it; every member, and
//! every connection a user lists, is open; `User::conns` holds exactly the connections whose
//! identity is that user; `Conns::guests` holds exactly the JSON guest names in use.

mod accounts;
mod admin;
mod cluster;
mod conns;
mod durable;
mod history;
mod ids;
mod intent;
mod limits;
mod messages;
mod offline;
mod output;
mod pending;
mod rooms;
mod secret;
mod snaps;

use std::sync::Arc;

pub use accounts::{MAX_FOUND, NAME_LEN, PASSWORD_LEN, wildcard_match};
pub use admin::{ApiDone, Census, RoomView, Sent, UserView};
pub use cluster::{Person, Presence, Relayed, Replica, Shared, TempRoom};
pub use conns::Identity;
pub use durable::{
    Change, HashJob, Hashed, STORE_CONFLICT, STORE_UNAVAILABLE, Snapshot, StoredMessage,
    StoredOffline, StoredRoom, StoredSnap, StoredUser,
};
pub use history::MAX_PAGE;
pub use ids::Ids;
pub use intent::{Intent, Kind, Request, Requires, RoomRef, Tag, Target};
pub use limits::{Field, Limits, Peer, Quota};
pub use output::{
    Actor, Answer, ChatError, Dialect, Discard, Effect, Event, Farewell, Message, Notice, Resumed,
    RoomInfo, Sink, SnapInfo, UserInfo, Who,
};
pub use pending::MAX_QUEUED;
pub use rooms::ROOM_ID_BLOCK;
pub use secret::Secret;

use accounts::Users;
use conns::Conns;
use history::Epochs;
use limits::{Guard, Guesser};
use offline::Offline;
use pending::Pending;
use rooms::Rooms;
use snaps::Snaps;

/// Identifies one connection across threads.
///
/// `slot` is the connection's key in the net thread's slab; `generation` is bumped every time
/// a slot is reused, so a message the logic thread addressed to a connection that has since
/// closed is dropped instead of reaching whoever got the slot next.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

impl ConnId {
    /// The generation that marks a connection held by another node of a cluster: the net
    /// thread never reaches it (a slot is recycled long before its generation gets there).
    const REMOTE: u32 = u32::MAX;

    /// Whether this stands for a connection on another node.
    pub fn is_remote(self) -> bool {
        self.generation == Self::REMOTE
    }
}

/// Hashes a [`ConnId`] with one multiplication instead of SipHash: every message looks its
/// sender and room members up by connection, and connection ids are the server's own (no
/// client can choose them to collide), so a keyed hash buys nothing there.
#[derive(Default, Clone, Copy)]
pub(crate) struct ConnIdHasher(u64);

impl std::hash::Hasher for ConnIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(32) ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by connection.
pub(crate) type ConnMap<V> =
    std::collections::HashMap<ConnId, V, std::hash::BuildHasherDefault<ConnIdHasher>>;

/// The connections one event goes to. Shared, so a room's audience is built once per change
/// of membership and reused by every event until the next change.
pub type Recipients = Arc<[ConnId]>;

/// How a new connection arrives, decided by its upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The command protocol.
    Protocol,
    /// The JSON dialect.
    Json,
    /// The room URL: straight into the room `room` under `nickname`, first shown its last
    /// `history` kept messages (at most [`MAX_PAGE`]).
    RoomUrl {
        room: String,
        nickname: String,
        history: usize,
    },
}

impl Entry {
    pub fn dialect(&self) -> Dialect {
        match self {
            Entry::Protocol => Dialect::Protocol,
            Entry::Json => Dialect::Json,
            Entry::RoomUrl { .. } => Dialect::RoomUrl,
        }
    }
}

/// Where the answer to one request goes. Most requests are answered after everything they
/// caused; a few answer first (a snap's id before the snap is delivered) and then answer
/// [`Answer::Silent`].
struct ReplyTo<'t> {
    conn: ConnId,
    dialect: Dialect,
    mid: Option<u64>,
    kind: Kind,
    tag: &'t Tag,
}

impl ReplyTo<'_> {
    fn send(&self, out: &mut dyn Sink, result: Result<Answer<'_>, ChatError>) {
        out.emit(Effect::Reply {
            conn: self.conn,
            dialect: self.dialect,
            mid: self.mid,
            kind: self.kind,
            tag: self.tag,
            result,
        });
    }
}

/// All chat state. Only the logic thread touches it, so it needs no locks.
pub struct Chat {
    server_password: Secret,
    limits: Limits,
    conns: Conns,
    rooms: Rooms,
    users: Users,
    snaps: Snaps,
    offline: Offline,
    pending: Pending,
    /// Keys the session ids handed out at login, so they cannot be guessed from each other.
    sessions: std::hash::RandomState,
    last_session: u64,
    /// Failed guesses of secrets, per address and per account.
    guard: Guard,
    /// Draws each new room's history epoch.
    epochs: Epochs,
    /// Set on a node of a cluster.
    cluster: Option<cluster::Membership>,
}

impl Chat {
    /// The state `snapshot` holds (empty for a fresh server). `server_password` gates the
    /// admin commands (§3); it is only ever compared in constant time and never logged.
    pub fn new(server_password: &[u8], limits: Limits, snapshot: Snapshot) -> Self {
        let mut chat = Chat {
            server_password: Secret::new(server_password),
            limits,
            conns: Conns::default(),
            rooms: Rooms::default(),
            users: Users::default(),
            snaps: Snaps::default(),
            offline: Offline::default(),
            pending: Pending::default(),
            sessions: std::hash::RandomState::new(),
            last_session: 0,
            guard: Guard::default(),
            epochs: Epochs::default(),
            cluster: None,
        };
        chat.restore(snapshot);
        chat
    }

    fn restore(&mut self, snapshot: Snapshot) {
        for user in snapshot.users {
            self.users.restore(user);
        }
        self.users.restore_highest(snapshot.last_user);
        let mut history = snapshot.history.into_iter().peekable();
        for room in snapshot.rooms {
            // Messages of rooms that no longer exist (written behind a deletion) are skipped.
            while history.next_if(|m| m.room < room.id).is_some() {}
            let mut messages = Vec::new();
            while let Some(m) = history.next_if(|m| m.room == room.id) {
                messages.push(m);
            }
            self.rooms.restore(room, messages, self.limits.history_size);
        }
        self.rooms.restore_last(snapshot.last_room);
        for snap in snapshot.snaps {
            self.snaps.restore(snap, None);
        }
        self.snaps.restore_last(snapshot.last_snap);
        for message in snapshot.offline {
            self.offline.push(message);
        }
        self.offline.restore_last(snapshot.last_offline);
    }

    /// Failed guesses so far, and guesses refused during lockouts.
    pub fn guess_stats(&self) -> (u64, u64) {
        (self.guard.failed, self.guard.refused)
    }

    /// A connection completed its handshake, from `peer`. A room-URL connection is first
    /// admitted or refused ([`Effect::Admit`]).
    pub fn open(&mut self, conn: ConnId, entry: Entry, peer: Peer, out: &mut dyn Sink) {
        let dialect = entry.dialect();
        match entry {
            Entry::Protocol | Entry::Json => {
                let client = self.conns.open(conn, dialect, Identity::Anonymous, peer);
                self.tell_conns([conn], 0, &Event::Welcome { client }, out);
            }
            Entry::RoomUrl {
                room,
                nickname,
                history,
            } => {
                if let Err(e) = self.admit_by_url(&room, &nickname) {
                    out.emit(Effect::Admit {
                        conn,
                        result: Err(e),
                    });
                    return;
                }
                out.emit(Effect::Admit {
                    conn,
                    result: Ok(()),
                });
                self.conns
                    .open(conn, dialect, Identity::Nick(nickname), peer);
                self.enter_by_url(conn, room, history, out);
            }
        }
    }

    /// Applies one request of `conn` at unix time `now` (seconds): its events, then its reply.
    /// While an earlier request of `conn` waits for a worker, this one waits behind it.
    pub fn request(&mut self, conn: ConnId, request: Request, now: u64, out: &mut dyn Sink) {
        match self.conns.get(conn) {
            None => {}
            Some(c) if c.busy => self.enqueue(conn, request, out),
            Some(_) => self.serve(conn, request, now, out),
        }
    }

    fn serve(&mut self, conn: ConnId, request: Request, now: u64, out: &mut dyn Sink) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let dialect = c.dialect;
        let Request {
            mid,
            kind,
            tag,
            requires,
            intent,
            over_rate,
        } = request;
        let re = ReplyTo {
            conn,
            dialect,
            mid,
            kind,
            tag: &tag,
        };
        let intent = intent.and_then(|i| self.check(conn, &requires).map(|()| i));
        // Over the connection's message rate, only an admin command with the right server
        // password goes through (an admin's pipelined batch is not cut short); a wrong one
        // still counts as a failed guess.
        let intent = match intent {
            Ok(i) if over_rate => match i.server_key() {
                Some(key) => self
                    .check_server_password(conn, key, now)
                    .map(|()| i)
                    .map_err(|_| ChatError::RateLimited),
                None => Err(ChatError::RateLimited),
            },
            other => other,
        };
        let result = match intent {
            Ok(intent) => self.apply(conn, intent, now, &re, out),
            Err(e) => Err(e),
        };
        // A parked request answers `Silent` now (nothing is sent) and for real later.
        re.send(out, result);
    }

    /// The connection is gone (§7): it leaves every room (telling the others with messageid
    /// 0), is logged out, and is forgotten.
    pub fn close(&mut self, conn: ConnId, out: &mut dyn Sink) {
        let Some(client) = self.conns.get(conn).map(|c| c.client) else {
            return;
        };
        self.conns.retire(conn);
        self.leave_all(conn, 0, false, out);
        self.set_identity(conn, Identity::Anonymous, out);
        self.conns.remove(conn);
        self.share_gone(conn, client, out);
        self.guard.forget_conn(conn);
    }

    /// Time-driven state: snaps and queued messages past their time disappear, old failed
    /// guesses are forgotten.
    pub fn tick(&mut self, now: u64, out: &mut dyn Sink) {
        self.expire_snaps(now, out);
        self.expire_offline(now, out);
        self.expire_history(now, out);
        self.guard.prune(now);
    }

    fn check(&self, conn: ConnId, requires: &Requires) -> Result<(), ChatError> {
        match requires {
            Requires::Nothing => Ok(()),
            Requires::LoginAs(name) => match self.login_name(conn) {
                None => Err(ChatError::NotLoggedIn),
                Some(login) if login == name => Ok(()),
                Some(_) => Err(ChatError::NotYou),
            },
        }
    }

    fn apply(
        &mut self,
        conn: ConnId,
        intent: Intent,
        now: u64,
        re: &ReplyTo<'_>,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let mid = re.mid.unwrap_or(0);
        match intent {
            Intent::CreateRoom {
                name,
                question,
                answer,
                key,
                unique,
            } => self.create_room(conn, re, name, question, answer, &key, unique, now, out),
            Intent::RoomDetails { room } => self.room_details(conn, room),
            Intent::ListRooms => Ok(self.room_list(conn)),
            Intent::RoomMembers { room } => self.room_members(conn, room),
            Intent::Join {
                room,
                leave_others,
                answer,
                since,
            } => self.join(conn, re, &room, leave_others, answer, since, now, out),
            Intent::Leave { room } => self.leave(conn, mid, &room, out),
            Intent::Say { room, text } => self.say(conn, mid, &room, &text, now, out),
            Intent::SayHere { text } => self.say_here(conn, &text, now, out),
            Intent::History {
                room,
                before,
                limit,
            } => {
                let room = self.resolve(&room)?;
                self.history(conn, room, before, limit)
            }
            Intent::Resume { room, epoch, seq } => {
                let room = self.resolve(&room)?;
                self.resume_history(conn, re, room, epoch, seq, out)
            }
            Intent::Sequenced { on } => {
                self.set_sequenced(conn, on);
                Ok(Answer::Done)
            }
            Intent::RemoveRoom { room, key } => self.remove_room(conn, re, room, &key, now, out),
            Intent::Login { name, password } => self.login(conn, re, &name, password, now, out),
            Intent::GuestLogin { name } => self.guest_login(conn, mid, name, out),
            Intent::Logout { disconnect } => self.logout(conn, mid, disconnect, out),
            Intent::Register { name, password } => self.register(conn, re, name, password, out),
            Intent::ChangePassword { old, new } => {
                self.change_password(conn, re, old, new, now, out)
            }
            Intent::DeleteAccount { password } => self.delete_account(conn, re, password, now, out),
            Intent::FindUsers { pattern } => self.find_users(&pattern),
            Intent::AddUser {
                id,
                name,
                password,
                key,
            } => self.add_user(conn, re, id, name, password, &key, now, out),
            Intent::RemoveUser { id, key } => self.remove_user(conn, re, id, &key, now, out),
            Intent::ListUsers { status, key } => self.list_users(conn, status, &key, now),
            Intent::SendTo { to, text } => self.send_to(conn, re, to, &text, now, out),
            Intent::Broadcast { key, text } => self.broadcast(conn, mid, &key, &text, now, out),
            Intent::Invite { room, invitee } => self.invite(conn, &room, &invitee, out),
            Intent::SendSnap {
                to,
                expire,
                readtime,
                text,
            } => self.send_snap(conn, re, to, expire, readtime, text, now, out),
            Intent::GetSnaps => self.get_snaps(conn, now, re, out),
            Intent::ReadSnap { snap } => self.read_snap(conn, re, snap, now, out),
            Intent::Nop => Ok(Answer::Silent),
        }
    }

    /// Checks a guess of the server password by `conn`, counting failures against its
    /// address; a locked-out guesser is refused without the guess being checked.
    fn check_server_password(
        &mut self,
        conn: ConnId,
        given: &Secret,
        now: u64,
    ) -> Result<(), ChatError> {
        let who = self.guesser(conn);
        self.guard.check(who, now)?;
        if self.server_password.matches(given) {
            Ok(())
        } else {
            self.guard.failed(who, now, &self.limits);
            Err(ChatError::WrongServerPassword)
        }
    }

    /// Whose failed guesses a guess by `conn` counts against.
    fn guesser(&self, conn: ConnId) -> Guesser {
        let peer = self.conns.get(conn).map_or(Peer::default(), |c| c.peer);
        Guesser::of(peer, conn)
    }

    /// How `conn` appears in what others are told. `conn` must be open.
    fn who(&self, conn: ConnId) -> Who<'_> {
        self.who_of(self.conns.get(conn).expect("open connection"))
    }

    fn who_of<'a>(&'a self, c: &'a conns::Conn) -> Who<'a> {
        let (user, name) = match &c.identity {
            Identity::Anonymous => (0, ""),
            Identity::Nick(nick) => (0, nick.as_str()),
            Identity::User(id) => (*id, self.users.get(*id).map_or("", |u| u.name.as_str())),
        };
        Who {
            client: c.client,
            user,
            name,
        }
    }

    /// The name `conn` is logged in under (a user's or a guest's), if any.
    fn login_name(&self, conn: ConnId) -> Option<&str> {
        let c = self.conns.get(conn)?;
        match &c.identity {
            Identity::Anonymous => None,
            Identity::Nick(nick) => Some(nick),
            Identity::User(id) => self.users.get(*id).map(|u| u.name.as_str()),
        }
    }

    /// Tells every member of room `room`, and `actor` its own side.
    fn tell_room(
        &self,
        room: u64,
        actor: Option<ConnId>,
        mid: u64,
        event: &Event<'_>,
        out: &mut dyn Sink,
    ) {
        if let Some(r) = self.rooms.get(room) {
            let actor = actor.map(|conn| Actor {
                conn,
                in_audience: r.members.contains(conn),
            });
            self.tell_groups(|d| r.members.audience(d), actor, mid, event, out);
        }
    }

    /// Tells every connection (with `lobby_only`, every connection that sees the server's
    /// room list: room-URL connections live in their one room), and `actor` its own side.
    fn tell_everyone(
        &self,
        lobby_only: bool,
        actor: Option<ConnId>,
        mid: u64,
        event: &Event<'_>,
        out: &mut dyn Sink,
    ) {
        let in_lobby = |d| !lobby_only || d != Dialect::RoomUrl;
        let actor = actor.and_then(|conn| {
            let dialect = self.conns.get(conn)?.dialect;
            Some(Actor {
                conn,
                in_audience: in_lobby(dialect),
            })
        });
        let audience = |d| in_lobby(d).then(|| self.conns.everyone(d)).flatten();
        self.tell_groups(audience, actor, mid, event, out);
    }

    /// One [`Effect::Tell`] per dialect that has an audience (or the actor).
    fn tell_groups(
        &self,
        audience: impl Fn(Dialect) -> Option<Recipients>,
        actor: Option<Actor>,
        mid: u64,
        event: &Event<'_>,
        out: &mut dyn Sink,
    ) {
        let actor_dialect = actor
            .and_then(|a| self.conns.get(a.conn))
            .map(|c| c.dialect);
        self.tell_groups_of(audience, actor, actor_dialect, mid, event, out);
    }

    /// [`Chat::tell_groups`] when the actor's dialect is known.
    fn tell_groups_of(
        &self,
        audience: impl Fn(Dialect) -> Option<Recipients>,
        actor: Option<Actor>,
        actor_dialect: Option<Dialect>,
        mid: u64,
        event: &Event<'_>,
        out: &mut dyn Sink,
    ) {
        for dialect in Dialect::ALL {
            let actor = actor.filter(|_| actor_dialect == Some(dialect));
            tell_group(dialect, false, audience(dialect), actor, mid, event, out);
        }
    }

    /// Tells a room about a message said by `actor`, a member: like [`Chat::tell_room`], but
    /// command-protocol members that asked for `sequenced` form their own audience, shown
    /// `chatseq` (each audience is still rendered once).
    fn tell_said(&self, room: u64, actor: ConnId, mid: u64, event: &Event<'_>, out: &mut dyn Sink) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        if !r.members.any_sequenced() {
            return self.tell_room(room, Some(actor), mid, event, out);
        }
        let (actor_dialect, actor_sequenced) = self
            .conns
            .get(actor)
            .map_or((None, false), |c| (Some(c.dialect), c.sequenced));
        let me = Actor {
            conn: actor,
            in_audience: true,
        };
        for dialect in Dialect::ALL {
            if dialect == Dialect::Protocol {
                for sequenced in [false, true] {
                    let mine = actor_dialect == Some(dialect) && actor_sequenced == sequenced;
                    let to = r.members.protocol_audience(sequenced);
                    tell_group(dialect, sequenced, to, mine.then_some(me), mid, event, out);
                }
            } else {
                let mine = actor_dialect == Some(dialect);
                let to = r.members.audience(dialect);
                tell_group(dialect, false, to, mine.then_some(me), mid, event, out);
            }
        }
    }

    /// Tells a few connections (one, or a user's), grouped by dialect.
    fn tell_conns(
        &self,
        conns: impl IntoIterator<Item = ConnId>,
        mid: u64,
        event: &Event<'_>,
        out: &mut dyn Sink,
    ) {
        let mut groups: [Vec<ConnId>; 3] = Default::default();
        let mut remote = Vec::new();
        for conn in conns {
            if conn.is_remote() {
                remote.push(conn);
            } else if let Some(c) = self.conns.get(conn) {
                groups[c.dialect.index()].push(conn);
            }
        }
        if !remote.is_empty() {
            self.relay(&remote, mid, event, out);
        }
        for (dialect, group) in Dialect::ALL.into_iter().zip(groups) {
            if !group.is_empty() {
                out.emit(Effect::Tell {
                    dialect,
                    sequenced: false,
                    to: group.into(),
                    actor: None,
                    mid,
                    event,
                });
            }
        }
    }
}

/// One [`Effect::Tell`] for an audience, or for the actor alone when the audience is empty.
fn tell_group(
    dialect: Dialect,
    sequenced: bool,
    to: Option<Recipients>,
    actor: Option<Actor>,
    mid: u64,
    event: &Event<'_>,
    out: &mut dyn Sink,
) {
    let to = match (to, actor) {
        (Some(to), _) => to,
        (None, Some(_)) => Recipients::from([]),
        (None, None) => return,
    };
    out.emit(Effect::Tell {
        dialect,
        sequenced,
        to,
        actor,
        mid,
        event,
    });
}
