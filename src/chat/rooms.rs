//! Rooms and their members: creating, joining, leaving, speaking, listing, deleting.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};

use super::durable::{Change, HashJob, StoredMessage, StoredRoom};
use super::history::{History, Since};
use super::limits::{Counts, Field, Quota};
use super::pending::{NewRoom, Step, Then, Work};
use super::{
    Answer, Chat, ChatError, ConnId, ConnMap, Dialect, Event, Farewell, Recipients, ReplyTo,
    Resumed, RoomInfo, RoomRef, Secret, Sink, Who,
};

/// Chatroomids reserved in the store at a time. Temporary rooms are not stored, but their ids
/// must not come back after a restart: ids are handed out only below a committed reservation,
/// which is renewed well before it runs out.
pub const ROOM_ID_BLOCK: u64 = 1024;

/// A few room ids, in order: the rooms a connection is in (so leaving all of them goes in
/// creation order), the rooms of one name.
///
/// Usually there is one (every room-URL connection is in one room; names are rarely shared),
/// held inline; more are a sorted vector sized to fit. A `BTreeSet` would allocate a node of
/// over 100 bytes for the first, for every connection and every room.
#[derive(Default)]
pub(super) enum RoomSet {
    #[default]
    None,
    One(u64),
    Many(Vec<u64>),
}

impl RoomSet {
    pub fn insert(&mut self, room: u64) {
        match self {
            RoomSet::None => *self = RoomSet::One(room),
            RoomSet::One(one) if *one != room => {
                *self = RoomSet::Many(vec![room.min(*one), room.max(*one)]);
            }
            RoomSet::One(_) => {}
            RoomSet::Many(rooms) => {
                if let Err(at) = rooms.binary_search(&room) {
                    rooms.reserve_exact(1);
                    rooms.insert(at, room);
                }
            }
        }
    }

    pub fn remove(&mut self, room: u64) {
        match self {
            RoomSet::One(one) if *one == room => *self = RoomSet::None,
            RoomSet::Many(rooms) => {
                if let Ok(at) = rooms.binary_search(&room) {
                    rooms.remove(at);
                    match rooms[..] {
                        [one] => *self = RoomSet::One(one),
                        _ => rooms.shrink_to_fit(),
                    }
                }
            }
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, RoomSet::None)
    }

    pub fn first(&self) -> Option<&u64> {
        self.iter().next()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, u64> {
        self.into_iter()
    }
}

impl<'a> IntoIterator for &'a RoomSet {
    type Item = &'a u64;
    type IntoIter = std::slice::Iter<'a, u64>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            RoomSet::None => [].iter(),
            RoomSet::One(one) => std::slice::from_ref(one).iter(),
            RoomSet::Many(rooms) => rooms.iter(),
        }
    }
}

/// Who made a room, for the per-owner quotas.
#[derive(Debug, Clone, Copy)]
pub(super) enum Owner {
    /// The admin (with the server password): a persistent room, under no quota.
    Server,
    /// A room-URL connection's room: temporary, counted against no one (the connection lives
    /// in this one room and takes it with it when it goes).
    Url,
    /// A client: a temporary room, counted against its connection, user and address while it
    /// exists.
    Client {
        conn: ConnId,
        /// The creator's userid, 0 when it was not logged in as a user.
        user: u64,
        addr: Option<u128>,
    },
    /// Another node of a cluster: a temporary room counted against its creator there; `url`
    /// when a room URL made it.
    Remote { url: bool },
}

impl Owner {
    /// Whether a room URL made the room: such rooms are known by name alone.
    pub fn by_url(&self) -> bool {
        matches!(self, Owner::Url | Owner::Remote { url: true })
    }
}

pub(super) struct Room {
    pub name: String,
    pub question: String,
    pub answer: Key,
    /// Deleted when its last member leaves (created without the server password).
    pub temporary: bool,
    pub members: Members,
    /// Who made it, for the quotas.
    pub owner: Owner,
    /// Its numbered, kept messages (§12).
    pub history: History,
}

impl Room {
    /// The room as `viewer` sees it.
    pub fn info(&self, id: u64, viewer: ConnId) -> RoomInfo<'_> {
        RoomInfo {
            id,
            name: &self.name,
            question: &self.question,
            member: self.members.contains(viewer),
            needs_answer: !matches!(self.answer, Key::None),
            temporary: self.temporary,
            count: self.members.len(),
        }
    }
}

/// What joining a room takes.
pub(super) enum Key {
    None,
    /// The answer, held in memory since the room was made in this run.
    Clear(Secret),
    /// Only the answer's argon2id hash, as stored: a hasher checks it.
    Hashed(String),
}

impl Key {
    fn new(answer: Secret) -> Key {
        if answer.is_empty() {
            Key::None
        } else {
            Key::Clear(answer)
        }
    }
}

/// A room's members in join order, with O(1) membership checks and O(log n) removal.
#[derive(Default)]
pub(super) struct Members {
    /// Join sequence number -> member, its dialect and whether it asked for `sequenced`;
    /// iterates in join order.
    by_seq: BTreeMap<u64, (ConnId, Dialect, bool)>,
    /// Member -> its join sequence number.
    seq: ConnMap<u64>,
    last_seq: u64,
    /// Members per dialect.
    counts: [usize; 3],
    /// The broadcast audience per dialect, built on first use after a change of membership
    /// and shared by every broadcast until the next change: a busy room sends many messages
    /// per join or leave, so a message costs no walk over the members and no allocation.
    audiences: [OnceCell<Recipients>; 3],
    /// Command-protocol members that asked for `sequenced`.
    sequenced: usize,
    /// The command-protocol audience split by `sequenced` (plain, sequenced), for room
    /// messages; built like `audiences`, and only while some member is sequenced.
    split: [OnceCell<Recipients>; 2],
    /// Members on other nodes (a cluster's), in no audience.
    remote: usize,
}

impl Members {
    pub fn len(&self) -> u64 {
        self.by_seq.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.seq.contains_key(&conn)
    }

    pub fn insert(&mut self, conn: ConnId, dialect: Dialect, sequenced: bool) {
        self.last_seq += 1;
        self.seq.insert(conn, self.last_seq);
        if conn.is_remote() {
            // Counted and listed, but told nothing here: its own node tells it.
            self.by_seq.insert(self.last_seq, (conn, dialect, false));
            self.remote += 1;
            return;
        }
        self.by_seq
            .insert(self.last_seq, (conn, dialect, sequenced));
        self.counts[dialect.index()] += 1;
        self.changed(dialect, sequenced, true);
    }

    /// Members on other nodes of a cluster.
    pub fn remote(&self) -> usize {
        self.remote
    }

    /// Forgets the audiences a member's arrival or departure changes.
    fn changed(&mut self, dialect: Dialect, sequenced: bool, arrived: bool) {
        self.audiences[dialect.index()] = OnceCell::new();
        if dialect == Dialect::Protocol {
            self.split = Default::default();
            if sequenced && arrived {
                self.sequenced += 1;
            } else if sequenced {
                self.sequenced -= 1;
            }
        }
    }

    /// A member asked for (or stopped asking for) `sequenced`.
    pub fn set_sequenced(&mut self, conn: ConnId, on: bool) {
        let Some(entry) = self.seq.get(&conn).and_then(|s| self.by_seq.get_mut(s)) else {
            return;
        };
        if entry.2 == on {
            return;
        }
        entry.2 = on;
        let dialect = entry.1;
        self.changed(dialect, !on, false);
        self.changed(dialect, on, true);
    }

    /// Whether a room message needs [`Members::protocol_audience`] rather than the plain
    /// command-protocol audience.
    pub fn any_sequenced(&self) -> bool {
        self.sequenced > 0
    }

    /// The command-protocol members that asked for `sequenced` (or did not), or `None`.
    pub fn protocol_audience(&self, sequenced: bool) -> Option<Recipients> {
        let count = if sequenced {
            self.sequenced
        } else {
            self.counts[Dialect::Protocol.index()] - self.sequenced
        };
        if count == 0 {
            return None;
        }
        let build = || {
            self.by_seq
                .values()
                .filter(|&&(c, d, s)| d == Dialect::Protocol && s == sequenced && !c.is_remote())
                .map(|&(conn, _, _)| conn)
                .collect()
        };
        Some(
            self.split[usize::from(sequenced)]
                .get_or_init(build)
                .clone(),
        )
    }

    /// Returns whether `conn` was a member.
    pub fn remove(&mut self, conn: ConnId) -> bool {
        let Some((_, dialect, sequenced)) = self
            .seq
            .remove(&conn)
            .and_then(|seq| self.by_seq.remove(&seq))
        else {
            return false;
        };
        if conn.is_remote() {
            self.remote -= 1;
            return true;
        }
        self.counts[dialect.index()] -= 1;
        self.changed(dialect, sequenced, false);
        true
    }

    /// Members in join order.
    pub fn iter(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.by_seq.values().map(|&(conn, _, _)| conn)
    }

    /// The members speaking `dialect`, or `None` when there are none.
    pub fn audience(&self, dialect: Dialect) -> Option<Recipients> {
        let i = dialect.index();
        if self.counts[i] == 0 {
            return None;
        }
        let build = || {
            self.by_seq
                .values()
                .filter(|&&(c, d, _)| d == dialect && !c.is_remote())
                .map(|&(conn, _, _)| conn)
                .collect()
        };
        Some(self.audiences[i].get_or_init(build).clone())
    }
}

/// Every room, by id and by name.
#[derive(Default)]
pub(super) struct Rooms {
    /// Ids only grow, so this iterates in creation order. Boxed: nodes filled in id order are
    /// about half full, and an empty slot takes 16 bytes this way instead of a whole `Room`
    /// (hundreds).
    by_id: BTreeMap<u64, Box<Room>>,
    by_name: HashMap<String, RoomSet>,
    last_id: u64,
    pub ids: super::Ids,
    /// Ids up to this one are reserved in the store and may be handed out.
    reserved: u64,
    /// A renewal of the reservation is on its way to the store.
    renewing: bool,
    /// Existing temporary rooms per creating connection, user and address.
    by_conn: Counts<ConnId>,
    by_user: Counts<u64>,
    by_addr: Counts<u128>,
}

impl Rooms {
    pub fn get(&self, id: u64) -> Option<&Room> {
        self.by_id.get(&id).map(Box::as_ref)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Room> {
        self.by_id.get_mut(&id).map(Box::as_mut)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Room)> {
        self.by_id.iter().map(|(&id, r)| (id, r.as_ref()))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Room)> {
        self.by_id.iter_mut().map(|(&id, r)| (id, r.as_mut()))
    }

    /// The first room, in creation order, named exactly `name` that `accept` takes.
    /// The ids of the rooms named `name`, smallest first.
    pub fn named(&self, name: &str) -> impl Iterator<Item = u64> + '_ {
        self.by_name.get(name).into_iter().flatten().copied()
    }

    pub fn first_named(&self, name: &str, accept: impl Fn(&Room) -> bool) -> Option<u64> {
        let ids = self.by_name.get(name)?;
        ids.iter().copied().find(|id| accept(&self.by_id[id]))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether `owner` may create one more temporary room.
    pub fn may_own_another(&self, owner: &Owner, limits: &super::Limits) -> bool {
        let Owner::Client { conn, user, addr } = *owner else {
            return true;
        };
        self.by_conn.get(&conn) < limits.rooms_per_owner
            && (user == 0 || self.by_user.get(&user) < limits.rooms_per_owner)
            && addr.is_none_or(|a| self.by_addr.get(&a) < limits.rooms_per_address)
    }

    /// Hands out the next chatroomid, if it is below the committed reservation.
    pub fn next_id(&mut self) -> Result<u64, ChatError> {
        let id = self.ids.after(self.last_id);
        if id > self.reserved {
            return Err(ChatError::Busy);
        }
        self.last_id = id;
        Ok(id)
    }

    /// The reservation to ask the store for, when the current one is half used.
    pub fn renewal(&mut self) -> Option<u64> {
        if self.renewing || self.reserved - self.last_id > ROOM_ID_BLOCK / 2 {
            return None;
        }
        self.renewing = true;
        Some(self.reserved + ROOM_ID_BLOCK)
    }

    /// The store committed a reservation.
    pub fn reserved(&mut self, up_to: u64) {
        self.reserved = self.reserved.max(up_to);
        self.renewing = false;
    }

    /// At start: ids up to `last` may have been handed out before, and the store has
    /// reserved the next [`ROOM_ID_BLOCK`] for this run (`Store::open` commits that before the
    /// server starts; without a store nothing outlives the process anyway).
    pub fn restore_last(&mut self, last: u64) {
        self.last_id = self.last_id.max(last);
        self.reserved = self.last_id + ROOM_ID_BLOCK;
    }

    /// Adds a room with id `id` (from [`Rooms::next_id`]), with no members yet; a temporary
    /// room made by a client counts against its `owner`'s quotas while it exists.
    pub fn add(
        &mut self,
        id: u64,
        name: String,
        question: String,
        answer: Key,
        owner: Owner,
        history: History,
    ) {
        let temporary = !matches!(owner, Owner::Server);
        if let Owner::Client { conn, user, addr } = owner {
            self.by_conn.add(conn);
            if user != 0 {
                self.by_user.add(user);
            }
            if let Some(a) = addr {
                self.by_addr.add(a);
            }
        }
        self.last_id = self.last_id.max(id);
        self.by_name.entry(name.clone()).or_default().insert(id);
        let room = Box::new(Room {
            name,
            question,
            answer,
            temporary,
            members: Members::default(),
            owner,
            history,
        });
        self.by_id.insert(id, room);
    }

    /// A persistent room loaded from the store, with its kept messages (at most the newest
    /// `history_size` of them).
    pub fn restore(&mut self, stored: StoredRoom, messages: Vec<StoredMessage>, size: usize) {
        let answer = match stored.answer {
            Some(hash) => Key::Hashed(hash),
            None => Key::None,
        };
        let mut history = History::restore(stored.epoch, stored.last_seq, messages);
        history.shrink(size);
        self.add(
            stored.id,
            stored.name,
            stored.question,
            answer,
            Owner::Server,
            history,
        );
    }

    pub fn remove(&mut self, id: u64) -> Option<Room> {
        let room = self.by_id.remove(&id)?;
        if let Owner::Client { conn, user, addr } = room.owner {
            self.by_conn.sub(conn);
            if user != 0 {
                self.by_user.sub(user);
            }
            if let Some(a) = addr {
                self.by_addr.sub(a);
            }
        }
        if let Some(ids) = self.by_name.get_mut(&room.name) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_name.remove(&room.name);
            }
        }
        Some(*room)
    }
}

impl Chat {
    /// The room a request names.
    pub(super) fn resolve(&self, room: &RoomRef) -> Result<u64, ChatError> {
        match room {
            RoomRef::Id(id) => self.rooms.get(*id).map(|_| *id),
            RoomRef::Name(name) => self.rooms.first_named(name, |_| true),
        }
        .ok_or(ChatError::RoomNotFound)
    }

    /// A room's name and members, as a creator or joiner is answered, with what the joiner
    /// missed `since` (epoch, seq) if it said.
    fn in_room(&self, room: u64, since: Option<(u64, u64)>) -> Answer<'_> {
        let r = self.rooms.get(room).expect("caller checked");
        let resumed = since.map(|(epoch, seq)| {
            let (complete, messages) = match r.history.since(epoch, seq) {
                Ok(Since::Complete(range)) => (true, r.history.slice(range).collect()),
                // A sequence number from the future cannot be trusted either.
                Ok(Since::Lost) | Err(_) => (false, Vec::new()),
            };
            Resumed {
                epoch: r.history.epoch,
                complete,
                messages,
            }
        });
        Answer::InRoom {
            name: &r.name,
            members: r.members.iter().map(|m| self.who(m)).collect(),
            resumed,
        }
    }

    /// `addchatroom` and JSON `create_room`. A temporary room is made at once; a persistent
    /// one (the server password given) is committed first, its answer only as a hash.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_room(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        name: String,
        question: String,
        answer: Secret,
        key: &Secret,
        unique: bool,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let limits = &self.limits;
        if name.len() > limits.name_len {
            return Err(ChatError::TooLong(Field::Name));
        }
        if question.len() > limits.question_len {
            return Err(ChatError::TooLong(Field::Question));
        }
        if answer.len() > limits.question_len {
            return Err(ChatError::TooLong(Field::Answer));
        }
        if unique && self.rooms.first_named(&name, |_| true).is_some() {
            return Err(ChatError::RoomExists);
        }
        // A key makes the room persistent when it is the server password, so it is a guess
        // like any other (a wrong one is still no refusal: the room is just temporary).
        let temporary = if key.is_empty() {
            !self.server_password.matches(key)
        } else {
            match self.check_server_password(conn, key, now) {
                Ok(()) => false,
                Err(e @ ChatError::TryLater { .. }) => return Err(e),
                Err(_) => true,
            }
        };
        if self.rooms.len() >= self.limits.rooms {
            return Err(ChatError::QuotaExceeded(Quota::Rooms));
        }
        if !temporary {
            let room = NewRoom {
                id: self.room_id(out)?,
                epoch: self.epochs.draw(),
                name,
                question,
                answer,
                answer_hash: None,
            };
            if room.answer.is_empty() {
                let work = Work::Store(stored_room(&room));
                return self.park(conn, re, Then::RoomStored(room), work, out);
            }
            let work = Work::Hash(HashJob::Hash(room.answer.clone()));
            return self.park(conn, re, Then::RoomHashed(room), work, out);
        }
        let owner = self.owner(conn);
        if !self.rooms.may_own_another(&owner, &self.limits) {
            return Err(ChatError::QuotaExceeded(Quota::RoomsPerOwner));
        }
        let id = self.room_id(out)?;
        let history = History::new(self.epochs.draw());
        self.rooms
            .add(id, name, question, Key::new(answer), owner, history);
        self.share_room(id, out);
        self.add_member(conn, id, out);
        self.announce_room(conn, id, re.mid.unwrap_or(0), out);
        Ok(self.in_room(id, None))
    }

    /// The next chatroomid, renewing the reservation in the store when it runs low.
    pub(super) fn room_id(&mut self, out: &mut dyn Sink) -> Result<u64, ChatError> {
        if let Some(up_to) = self.rooms.renewal() {
            self.background(
                Then::RoomsReserved { up_to },
                Change::ReserveRooms { up_to },
                out,
            );
        }
        self.rooms.next_id()
    }

    /// A persistent room's answer is hashed: commit the room.
    pub(super) fn store_room(&mut self, step: Step, room: NewRoom, out: &mut dyn Sink) {
        let work = Work::Store(stored_room(&room));
        self.repark(step, Then::RoomStored(room), work, out);
    }

    /// A persistent room is committed: it exists, with its creator in it if still connected.
    pub(super) fn room_stored(
        &mut self,
        step: Step,
        room: NewRoom,
        stored: bool,
        out: &mut dyn Sink,
    ) {
        if !stored {
            return self.finish(step, Err(self.store_failed()), out);
        }
        let id = room.id;
        let answer = Key::new(room.answer);
        let history = History::new(room.epoch);
        self.rooms
            .add(id, room.name, room.question, answer, Owner::Server, history);
        let Some(conn) = step.conn else {
            return self.finish(step, Ok(Answer::Silent), out);
        };
        self.add_member(conn, id, out);
        let mid = step.replier.as_ref().map_or(0, |r| r.mid());
        self.announce_room(conn, id, mid, out);
        self.finish_in_room(step, id, None, out);
    }

    /// Tells every connection that sees the room list about a new room; the creator sees it
    /// as its member.
    fn announce_room(&self, creator: ConnId, room: u64, mid: u64, out: &mut dyn Sink) {
        let r = self.rooms.get(room).expect("just created");
        let mut info = r.info(room, creator);
        info.member = false;
        let event = Event::RoomCreated {
            room: info,
            by: self.who(creator),
        };
        self.tell_everyone(true, Some(creator), mid, &event, out);
        out.emit(super::Effect::Notify(super::Notice::RoomCreated {
            room,
            name: &r.name,
        }));
    }

    /// `conn` as the creator of a temporary room made now.
    fn owner(&self, conn: ConnId) -> Owner {
        let c = self.conns.get(conn).expect("open");
        Owner::Client {
            conn,
            user: c.user().unwrap_or(0),
            addr: c.peer.quota_key(),
        }
    }

    /// Whether a room-URL connection named `nickname` may enter room `name`: the nickname
    /// must not be a registered username, nor a name already in that room (the connection
    /// would read as that person), and the room must have space (or be creatable).
    pub(super) fn admit_by_url(&self, name: &str, nickname: &str) -> Result<(), ChatError> {
        if self.users.id_of(nickname).is_some() || looks_like_guest(nickname) {
            return Err(ChatError::NameTaken);
        }
        match self
            .rooms
            .first_named(name, |r| matches!(r.answer, Key::None))
        {
            Some(room) => {
                let r = self.rooms.get(room).expect("found");
                if r.members.iter().any(|m| self.who(m).name == nickname) {
                    return Err(ChatError::NameTaken);
                }
                if r.members.len() >= self.limits.members as u64 {
                    return Err(ChatError::QuotaExceeded(Quota::Members));
                }
            }
            None if name.len() > self.limits.name_len => {
                return Err(ChatError::TooLong(Field::Name));
            }
            None if self.rooms.len() >= self.limits.rooms => {
                return Err(ChatError::QuotaExceeded(Quota::Rooms));
            }
            None => {}
        }
        Ok(())
    }

    /// A room-URL connection joins the first room named `name` that needs no answer (it
    /// cannot give one), or creates a temporary room of that name. `admit_by_url` said yes.
    /// It is first shown the room's last `history` messages.
    pub(super) fn enter_by_url(
        &mut self,
        conn: ConnId,
        name: String,
        history: usize,
        out: &mut dyn Sink,
    ) {
        match self
            .rooms
            .first_named(&name, |r| matches!(r.answer, Key::None))
        {
            Some(room) => {
                self.replay(conn, room, history, out);
                self.enter(conn, room, 0, out);
            }
            None => {
                let Ok(room) = self.room_id(out) else {
                    out.emit(super::Effect::Close {
                        conn,
                        why: Farewell::TooManyWaiting,
                    });
                    return;
                };
                let history = History::new(self.epochs.draw());
                self.rooms
                    .add(room, name, String::new(), Key::None, Owner::Url, history);
                self.share_room(room, out);
                self.add_member(conn, room, out);
                self.announce_room(conn, room, 0, out);
                self.announce_member(conn, room, 0, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn join(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        room: &RoomRef,
        leave_others: bool,
        answer: Secret,
        since: Option<(u64, u64)>,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let room = self.resolve(room)?;
        let r = self.rooms.get(room).expect("resolved");
        if r.members.contains(conn) {
            return Err(ChatError::AlreadyMember);
        }
        if r.members.len() >= self.limits.members as u64 {
            return Err(ChatError::QuotaExceeded(Quota::Members));
        }
        if !matches!(r.answer, Key::None) {
            // An answer is a guess: counted, and refused unchecked during a lockout.
            let who = self.guesser(conn);
            self.guard.check(who, now)?;
            let r = self.rooms.get(room).expect("resolved");
            match &r.answer {
                Key::None => {}
                Key::Clear(secret) if secret.matches(&answer) => {}
                Key::Clear(_) => {
                    self.guard.failed(who, now, &self.limits);
                    return Err(ChatError::WrongAnswer);
                }
                Key::Hashed(hash) => {
                    let work = Work::Hash(HashJob::Verify {
                        password: answer,
                        hash: hash.clone(),
                    });
                    let then = Then::JoinVerified {
                        room,
                        leave_others,
                        since,
                    };
                    return self.park(conn, re, then, work, out);
                }
            }
        }
        let mid = re.mid.unwrap_or(0);
        if leave_others {
            self.leave_all(conn, mid, true, out);
        }
        self.enter(conn, room, mid, out);
        Ok(self.in_room(room, since))
    }

    /// A stored room's answer was checked.
    pub(super) fn join_verified(
        &mut self,
        step: Step,
        room: u64,
        leave_others: bool,
        since: Option<(u64, u64)>,
        ok: bool,
        out: &mut dyn Sink,
    ) {
        let Some(conn) = step.conn else {
            return self.finish(step, Ok(Answer::Silent), out);
        };
        if !ok {
            let who = self.guesser(conn);
            self.guard.failed(who, step.now, &self.limits);
        }
        // The room may have gone, or the connection joined it another way, meanwhile.
        let result = match self.rooms.get(room) {
            None => Err(ChatError::RoomNotFound),
            Some(r) if r.members.contains(conn) => Err(ChatError::AlreadyMember),
            Some(_) if !ok => Err(ChatError::WrongAnswer),
            Some(_) => Ok(()),
        };
        if let Err(e) = result {
            return self.finish(step, Err(e), out);
        }
        let mid = step.replier.as_ref().map_or(0, |r| r.mid());
        if leave_others {
            self.leave_all(conn, mid, true, out);
        }
        self.enter(conn, room, mid, out);
        self.finish_in_room(step, room, since, out);
    }

    /// Finishes with the room's name and members as the answer.
    fn finish_in_room(
        &mut self,
        step: Step,
        room: u64,
        since: Option<(u64, u64)>,
        out: &mut dyn Sink,
    ) {
        let answer = self.in_room(room, since);
        super::pending::reply(&step, Ok(answer), out);
        self.served(step, out);
    }

    pub(super) fn leave(
        &mut self,
        conn: ConnId,
        mid: u64,
        room: &RoomRef,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let room = self.resolve(room)?;
        if !self.is_member(conn, room) {
            return Err(ChatError::NotAMember);
        }
        self.exit(conn, room, mid, true, out);
        Ok(Answer::Confirmed)
    }

    pub(super) fn say(
        &mut self,
        conn: ConnId,
        mid: u64,
        room: &RoomRef,
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        // An unknown room is one the sender is not in.
        let room = self.resolve(room).map_err(|_| ChatError::NotAMember)?;
        if !self.is_member(conn, room) {
            return Err(ChatError::NotAMember);
        }
        if self.room_unreachable(room) {
            return Err(ChatError::Busy);
        }
        Ok(self.said(conn, room, mid, text, now, out))
    }

    /// A room-URL connection speaks in its room.
    pub(super) fn say_here(
        &mut self,
        conn: ConnId,
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        let room = self.conns.get(conn).and_then(|c| c.rooms.first().copied());
        let room = room.ok_or(ChatError::NotAMember)?;
        if self.room_unreachable(room) {
            return Err(ChatError::Busy);
        }
        Ok(self.said(conn, room, 0, text, now, out))
    }

    /// A member's message, the busiest path of the server: numbered and kept, then told to
    /// the room (and sent on to its members on other nodes). A message said on another node
    /// comes here too, for this node's members.
    pub(super) fn said(
        &mut self,
        conn: ConnId,
        room: u64,
        mid: u64,
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> Answer<'static> {
        let (epoch, seq) = self.keep(room, conn, text, now, out);
        let r = self.rooms.get(room).expect("member of it");
        let c = self.conns.get(conn).expect("open");
        let event = Event::Said {
            room,
            name: &r.name,
            who: self.who_of(c),
            epoch,
            seq,
            text,
        };
        self.tell_said(room, conn, mid, &event, out);
        if conn.is_remote() {
            return Answer::Silent;
        }
        self.share_said(conn, room, mid, text, out);
        let from = self.who_of(c);
        if from.user != 0 {
            self.users.count_message(from.user, None);
        }
        out.emit(super::Effect::Notify(super::Notice::RoomMessage {
            room,
            room_name: &r.name,
            from,
            text,
        }));
        Answer::Said { epoch, seq }
    }
    /// Shows `conn` the last `count` kept messages of `room` (at most a page), as they were
    /// said, oldest first.
    fn replay(&self, conn: ConnId, room: u64, count: usize, out: &mut dyn Sink) {
        let r = self.rooms.get(room).expect("exists");
        for m in r.history.page(0, count.min(super::MAX_PAGE)) {
            let event = Event::Said {
                room,
                name: &r.name,
                who: Who {
                    client: m.client,
                    user: m.user,
                    name: m.name,
                },
                epoch: r.history.epoch,
                seq: m.seq,
                text: m.text,
            };
            self.tell_conns([conn], 0, &event, out);
        }
    }

    /// `sequenced`: whether `conn` sees room messages with their sequence numbers.
    pub(super) fn set_sequenced(&mut self, conn: ConnId, on: bool) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.sequenced = on;
        for &room in &c.rooms {
            if let Some(r) = self.rooms.get_mut(room) {
                r.members.set_sequenced(conn, on);
            }
        }
    }

    pub(super) fn room_details(&self, conn: ConnId, room: u64) -> Result<Answer<'_>, ChatError> {
        let r = self.rooms.get(room).ok_or(ChatError::RoomNotFound)?;
        Ok(Answer::RoomDetails(r.info(room, conn)))
    }

    pub(super) fn room_list(&self, conn: ConnId) -> Answer<'_> {
        Answer::RoomList(self.rooms.iter().map(|(id, r)| r.info(id, conn)).collect())
    }

    pub(super) fn room_members(&self, conn: ConnId, room: u64) -> Result<Answer<'_>, ChatError> {
        let r = self.rooms.get(room).ok_or(ChatError::RoomNotFound)?;
        if !r.members.contains(conn) {
            return Err(ChatError::NotAMember);
        }
        let members: Vec<Who<'_>> = r.members.iter().map(|m| self.who(m)).collect();
        Ok(Answer::Members { room, members })
    }

    /// `removechatroom`: a persistent room's removal is committed first.
    pub(super) fn remove_room(
        &mut self,
        conn: ConnId,
        re: &ReplyTo<'_>,
        room: u64,
        key: &Secret,
        now: u64,
        out: &mut dyn Sink,
    ) -> Result<Answer<'_>, ChatError> {
        self.check_server_password(conn, key, now)?;
        let r = self.rooms.get(room).ok_or(ChatError::RoomNotFound)?;
        if !r.temporary {
            let work = Work::Store(Change::DeleteRoom { id: room });
            return self.park(conn, re, Then::RoomDeleted { room }, work, out);
        }
        self.delete_room(room, re.mid.unwrap_or(0), out);
        Ok(Answer::Done)
    }

    fn is_member(&self, conn: ConnId, room: u64) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.members.contains(conn))
    }

    fn add_member(&mut self, conn: ConnId, room: u64, out: &mut dyn Sink) {
        let c = self.conns.get_mut(conn).expect("open");
        c.rooms.insert(room);
        let (dialect, sequenced) = (c.dialect, c.sequenced);
        let r = self.rooms.get_mut(room).expect("exists");
        r.members.insert(conn, dialect, sequenced);
        self.share_presence(conn, out);
    }

    /// Adds `conn` to `room` and tells every member, the joiner included.
    pub(super) fn enter(&mut self, conn: ConnId, room: u64, mid: u64, out: &mut dyn Sink) {
        self.add_member(conn, room, out);
        self.announce_member(conn, room, mid, out);
    }

    /// Tells a room's members that `conn` is in it.
    fn announce_member(&self, conn: ConnId, room: u64, mid: u64, out: &mut dyn Sink) {
        let r = self.rooms.get(room).expect("member of it");
        let event = Event::Joined {
            room,
            name: &r.name,
            who: self.who(conn),
            count: r.members.len(),
        };
        self.tell_room(room, Some(conn), mid, &event, out);
    }

    /// Tells a room's members that `conn`, a member, now goes by a new login.
    pub(super) fn announce_login(&self, conn: ConnId, room: u64, mid: u64, out: &mut dyn Sink) {
        let r = self.rooms.get(room).expect("member of it");
        let event = Event::Renamed {
            room,
            name: &r.name,
            who: self.who(conn),
            count: r.members.len(),
        };
        self.tell_room(room, Some(conn), mid, &event, out);
    }

    /// Takes `conn` out of `room` and tells the remaining members, and the leaver when
    /// `tell_leaver` (a disconnecting leaver is gone). A temporary room left empty is deleted.
    pub(super) fn exit(
        &mut self,
        conn: ConnId,
        room: u64,
        mid: u64,
        tell_leaver: bool,
        out: &mut dyn Sink,
    ) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if !r.members.remove(conn) {
            return;
        }
        let empty_temporary = r.temporary && r.members.is_empty();
        self.conns.get_mut(conn).expect("open").rooms.remove(room);
        self.share_presence(conn, out);
        let r = self.rooms.get(room).expect("still there");
        let event = Event::Left {
            room,
            name: &r.name,
            who: self.who(conn),
            count: r.members.len(),
        };
        self.tell_room(room, tell_leaver.then_some(conn), mid, &event, out);
        if empty_temporary {
            if self.cluster.is_some() && !conn.is_remote() {
                out.emit(super::Effect::Share(super::Shared::RoomClosed { id: room }));
            }
            self.delete_room(room, mid, out);
        }
    }

    /// Leaves every room `conn` is in, in creation order.
    pub(super) fn leave_all(
        &mut self,
        conn: ConnId,
        mid: u64,
        tell_leaver: bool,
        out: &mut dyn Sink,
    ) {
        let rooms: Vec<u64> = match self.conns.get(conn) {
            Some(c) => c.rooms.iter().copied().collect(),
            None => return,
        };
        for room in rooms {
            self.exit(conn, room, mid, tell_leaver, out);
        }
    }

    /// Removes a room and tells everyone who sees the room list. Members still inside (only
    /// when an admin removes it) are taken out silently; room-URL members, who have nowhere
    /// else to be, are disconnected.
    pub(super) fn delete_room(&mut self, room: u64, mid: u64, out: &mut dyn Sink) {
        let Some(r) = self.rooms.remove(room) else {
            return;
        };
        for member in r.members.iter() {
            let c = self.conns.get_mut(member).expect("open");
            c.rooms.remove(room);
            if member.is_remote() {
                continue;
            }
            if c.dialect == Dialect::RoomUrl {
                out.emit(super::Effect::Close {
                    conn: member,
                    why: Farewell::RoomRemoved,
                });
            }
            self.share_presence(member, out);
        }
        let event = Event::RoomDeleted {
            room,
            name: &r.name,
        };
        self.tell_everyone(true, None, mid, &event, out);
        out.emit(super::Effect::Notify(super::Notice::RoomDeleted {
            room,
            name: &r.name,
        }));
    }
}

/// How the store keeps a persistent room.
pub(super) fn stored_room(room: &NewRoom) -> Change {
    Change::PutRoom {
        id: room.id,
        epoch: room.epoch,
        name: room.name.clone(),
        question: room.question.clone(),
        answer: room.answer_hash.clone(),
    }
}

/// `guest{N}`: how dialects show an anonymous connection, so no nickname may look like it.
fn looks_like_guest(nickname: &str) -> bool {
    nickname
        .strip_prefix("guest")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::RoomSet;

    fn ids(set: &RoomSet) -> Vec<u64> {
        set.iter().copied().collect()
    }

    #[test]
    fn room_sets_stay_ordered_and_go_back_inline() {
        let mut set = RoomSet::default();
        assert!(set.is_empty() && set.first().is_none());
        set.insert(7);
        set.insert(7);
        assert!(matches!(set, RoomSet::One(7)));
        for room in [3, 9, 5, 3] {
            set.insert(room);
        }
        assert_eq!(ids(&set), [3, 5, 7, 9]);
        assert_eq!(set.first(), Some(&3));
        set.remove(4);
        set.remove(3);
        set.remove(9);
        assert_eq!(ids(&set), [5, 7]);
        set.remove(5);
        assert!(matches!(set, RoomSet::One(7)), "one left: inline again");
        set.remove(5);
        set.remove(7);
        assert!(set.is_empty());
    }
}
