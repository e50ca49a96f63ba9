//! Chat state, owned by the logic thread: connections, users, rooms and snaps (`protocol.md`
//! §3–§7), plus the room-URL dialect that shares the same rooms.
//!
//! [`Chat::handle`] applies one event at an injected time and appends what to send to a vector,
//! so the whole protocol is testable without sockets or clocks. Nothing here blocks or allocates
//! per recipient: a message to many connections is encoded once into one frame and sent as one
//! [`ToNet::SendMany`].
//!
//! Data structures are chosen so that work is proportional to the people involved, not to
//! everyone connected: a room keeps its members in join order with an O(1) membership index, a
//! user keeps the connections logged in as them, and snaps are indexed by user and by deadline.
//!
//! Invariants (kept by `join`, `leave`, `delete_room` and `close`): a connection lists room R in `Conn::rooms` exactly when R's `members` holds
//! it; every member, and every connection a user lists, is in `conns`; `User::conns` holds
//! exactly the connections whose `Conn::user` names that user.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::events::{ConnId, Endpoint, Frame, Recipients, ToLogic, ToNet};
use crate::proto::{
    ChatroomListWriter, Command, MembersWriter, ParseError, Reply, Secret, UsersWriter,
    error_text as err,
};
use crate::ws::FrameWriter;

/// `info` bit: the receiving connection is in the room.
const INFO_MEMBER: u64 = 1;
/// `info` bit: joining needs an answer.
const INFO_ANSWER: u64 = 4;
/// `info` bit: the room is deleted when its last member leaves.
const INFO_TEMPORARY: u64 = 8;

/// `getusers` status of a user with at least one connection logged in as them.
const LOGGED_IN: u64 = 1;
/// `getusers` status of a user nobody is logged in as.
const LOGGED_OUT: u64 = 2;

/// All chat state. Only the logic thread touches it, so it needs no locks.
pub struct Chat {
    server_password: Secret,
    conns: HashMap<ConnId, Conn>,
    /// Protocol connections by chatclientid: the audience of "every connection" broadcasts (in
    /// connection order), and the index `sendto` uses to find a chatclientid.
    by_client: BTreeMap<u64, ConnId>,
    last_client: u64,
    /// Rooms by chatroomid; ids only grow, so this iterates in creation order.
    rooms: BTreeMap<u64, Room>,
    /// Room ids by name, for room-URL connections, which name the room to join.
    rooms_by_name: HashMap<String, BTreeSet<u64>>,
    last_room: u64,
    users: Users,
    snaps: Snaps,
}

/// One open WebSocket connection.
struct Conn {
    /// The chatclientid.
    client: u64,
    /// `Some` for a room-URL connection, which speaks raw text under this name; `None` for a
    /// protocol connection.
    nickname: Option<String>,
    /// The userid this connection is logged in as.
    user: Option<u64>,
    /// Set by `getsnaps`; only such connections are sent snaps as they happen.
    snaps_enabled: bool,
    /// The rooms this connection is in; ordered by id, so leaving all of them goes in creation
    /// order.
    rooms: BTreeSet<u64>,
}

struct Room {
    name: String,
    question: String,
    /// Empty when the room needs no answer.
    answer: Secret,
    /// Deleted when its last member leaves (created without the server password).
    temporary: bool,
    members: Members,
}

impl Room {
    /// The `info` bits as seen by `conn`.
    fn info(&self, conn: ConnId) -> u64 {
        let mut info = 0;
        if self.members.contains(conn) {
            info |= INFO_MEMBER;
        }
        if !self.answer.is_empty() {
            info |= INFO_ANSWER;
        }
        if self.temporary {
            info |= INFO_TEMPORARY;
        }
        info
    }
}

/// A room's members in join order, with O(1) membership checks and O(log n) removal.
#[derive(Default)]
struct Members {
    /// Join sequence number -> member; iterates in join order.
    by_seq: BTreeMap<u64, Member>,
    /// Member -> its join sequence number.
    seq: HashMap<ConnId, u64>,
    last_seq: u64,
    /// The broadcast audiences (protocol members, room-URL members), built on first use after
    /// a change of membership and shared by every broadcast until the next change: a busy room
    /// sends many messages per join or leave, so a message costs no walk over the members and
    /// no allocation.
    protocol_audience: OnceCell<Recipients>,
    url_audience: OnceCell<Recipients>,
}

#[derive(Clone, Copy)]
struct Member {
    conn: ConnId,
    /// A room-URL connection, which is sent raw text instead of protocol messages; kept here
    /// so a broadcast splits its audience without looking every member up.
    url: bool,
}

impl Members {
    fn len(&self) -> u64 {
        self.by_seq.len() as u64
    }

    fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    fn contains(&self, conn: ConnId) -> bool {
        self.seq.contains_key(&conn)
    }

    fn insert(&mut self, conn: ConnId, url: bool) {
        self.last_seq += 1;
        self.seq.insert(conn, self.last_seq);
        self.by_seq.insert(self.last_seq, Member { conn, url });
        self.changed();
    }

    /// Returns whether `conn` was a member.
    fn remove(&mut self, conn: ConnId) -> bool {
        let removed = match self.seq.remove(&conn) {
            Some(seq) => self.by_seq.remove(&seq).is_some(),
            None => false,
        };
        self.changed();
        removed
    }

    fn changed(&mut self) {
        self.protocol_audience = OnceCell::new();
        self.url_audience = OnceCell::new();
    }

    fn iter(&self) -> impl Iterator<Item = Member> + '_ {
        self.by_seq.values().copied()
    }

    /// The protocol members, plus `extra` (a leaver who is told too).
    fn protocol(&self, extra: Option<ConnId>) -> Recipients {
        let members = || self.iter().filter(|m| !m.url).map(|m| m.conn);
        match extra {
            None => self
                .protocol_audience
                .get_or_init(|| members().collect())
                .clone(),
            Some(extra) => members().chain([extra]).collect(),
        }
    }

    fn url(&self) -> Recipients {
        let members = || self.iter().filter(|m| m.url).map(|m| m.conn).collect();
        self.url_audience.get_or_init(members).clone()
    }
}

#[derive(Default)]
struct Users {
    by_id: HashMap<u64, User>,
    /// Userids by when they were added (a sequence number), for `getusers`.
    order: BTreeMap<u64, u64>,
    by_name: HashMap<String, u64>,
    last_seq: u64,
}

struct User {
    name: String,
    password: Secret,
    /// Position in `Users::order`.
    seq: u64,
    /// The connections logged in as this user; empty means logged out.
    conns: BTreeSet<ConnId>,
}

/// A snap: a private message to a user that lives until it expires (§6).
struct Snap {
    from: u64,
    to: u64,
    sent: u64,
    /// When the recipient first read it; 0 until then.
    received: u64,
    readtime: u64,
    /// When it stops existing: `expirelength` after sending, or `readtime` after the first
    /// read, whichever comes first; `None` for never.
    deadline: Option<u64>,
    message: String,
}

impl Snap {
    fn reply(&self, id: u64) -> Reply<'_> {
        Reply::Snap {
            snap: id,
            to: self.to,
            from: self.from,
            sent: self.sent,
            received: self.received,
            readtime: self.readtime,
            message: &self.message,
        }
    }

    fn live(&self, now: u64) -> bool {
        self.deadline.is_none_or(|d| now < d)
    }
}

/// All snaps, indexed so that a user's snaps and the next ones to expire are found without
/// scanning every snap.
#[derive(Default)]
struct Snaps {
    by_id: BTreeMap<u64, Snap>,
    /// Snap ids by user, both sender and recipient.
    by_user: HashMap<u64, BTreeSet<u64>>,
    /// (deadline, snap id) of every snap that has one.
    deadlines: BTreeSet<(u64, u64)>,
    last_id: u64,
}

impl Snaps {
    fn add(&mut self, snap: Snap) -> u64 {
        self.last_id += 1;
        let id = self.last_id;
        self.by_user.entry(snap.from).or_default().insert(id);
        self.by_user.entry(snap.to).or_default().insert(id);
        if let Some(d) = snap.deadline {
            self.deadlines.insert((d, id));
        }
        self.by_id.insert(id, snap);
        id
    }

    /// The snap, unless it is unknown or past its deadline (a `Tick` may not have removed it
    /// yet).
    fn live(&self, id: u64, now: u64) -> Option<&Snap> {
        self.by_id.get(&id).filter(|s| s.live(now))
    }

    /// Stamps the recipient's first read at `now` and brings the deadline forward to `readtime`
    /// from now.
    fn mark_read(&mut self, id: u64, now: u64) {
        let Some(snap) = self.by_id.get_mut(&id) else {
            return;
        };
        snap.received = now;
        let deadline = now.saturating_add(snap.readtime);
        if snap.deadline.is_none_or(|d| deadline < d) {
            if let Some(old) = snap.deadline.replace(deadline) {
                self.deadlines.remove(&(old, id));
            }
            self.deadlines.insert((deadline, id));
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(snap) = self.by_id.remove(&id) else {
            return;
        };
        for user in [snap.from, snap.to] {
            if let Some(ids) = self.by_user.get_mut(&user) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_user.remove(&user);
                }
            }
        }
        if let Some(d) = snap.deadline {
            self.deadlines.remove(&(d, id));
        }
    }

    /// Removes every snap whose deadline has come.
    fn expire(&mut self, now: u64) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.remove(id);
        }
    }

    /// Removes every snap to or from `user`, so a later user given the same userid cannot
    /// read them.
    fn remove_user(&mut self, user: u64) {
        for id in self.by_user.get(&user).cloned().unwrap_or_default() {
            self.remove(id);
        }
    }

    /// The live snaps to or from `user`, oldest first.
    fn of_user(&self, user: u64, now: u64) -> impl Iterator<Item = (u64, &Snap)> {
        let ids = self.by_user.get(&user).into_iter().flatten();
        ids.filter_map(move |&id| Some((id, self.live(id, now)?)))
    }
}

/// How a connection appears in messages about it.
struct Who<'a> {
    client: u64,
    /// 0 when not logged in (always, for room-URL connections).
    user: u64,
    /// The username, the room-URL nickname, or empty for an anonymous protocol connection.
    name: &'a str,
}

impl Who<'_> {
    /// Writes the name room-URL clients see in `name: text` and `name joined room`. An
    /// anonymous protocol client is `guest{C}`, so its lines do not read as coming from nobody.
    fn write_url_name(&self, buf: &mut Vec<u8>) {
        if self.name.is_empty() {
            buf.extend_from_slice(b"guest");
            buf.extend_from_slice(itoa::Buffer::new().format(self.client).as_bytes());
        } else {
            buf.extend_from_slice(self.name.as_bytes());
        }
    }

    /// `{name}{verb}{room}`, e.g. `alice joined lobby`: how room-URL members see a join or leave.
    fn write_notice(&self, buf: &mut Vec<u8>, verb: &str, room: &str) {
        self.write_url_name(buf);
        buf.extend_from_slice(verb.as_bytes());
        buf.extend_from_slice(room.as_bytes());
    }
}

impl Chat {
    /// Empty state. `server_password` gates the admin commands (§3); it is only ever compared
    /// in constant time and never logged.
    pub fn new(server_password: &[u8]) -> Self {
        Chat {
            server_password: Secret::new(server_password),
            conns: HashMap::new(),
            by_client: BTreeMap::new(),
            last_client: 0,
            rooms: BTreeMap::new(),
            rooms_by_name: HashMap::new(),
            last_room: 0,
            users: Users::default(),
            snaps: Snaps::default(),
        }
    }

    /// Applies one event at unix time `now` (seconds), appending what to send to `out`.
    ///
    /// `Shutdown` and `InjectPanic` belong to the logic thread's runner and are ignored here.
    pub fn handle(&mut self, event: ToLogic, now: u64, out: &mut Vec<ToNet>) {
        match event {
            ToLogic::Opened { conn, endpoint } => self.open(conn, endpoint, out),
            ToLogic::Command {
                conn,
                command: Ok(command),
            } => self.command(conn, command, now, out),
            ToLogic::Command {
                conn,
                command: Err(e),
            } => {
                let (text, mid) = match e {
                    ParseError::UnknownCommand => (err::NOT_UNDERSTOOD, None),
                    ParseError::Syntax { mid } => (err::SYNTAX, mid),
                };
                send(out, conn, &Reply::Error { text, mid });
            }
            ToLogic::RoomText { conn, text } => self.room_text(conn, &text, out),
            ToLogic::Closed { conn } => self.close(conn, out),
            ToLogic::Tick => self.snaps.expire(now),
            // Handled by the logic thread's loop (`logic::run`), never passed in.
            ToLogic::Shutdown | ToLogic::InjectPanic | ToLogic::Forward(_) => {}
        }
    }

    fn open(&mut self, conn: ConnId, endpoint: Endpoint, out: &mut Vec<ToNet>) {
        self.last_client += 1;
        let client = self.last_client;
        let (nickname, room) = match endpoint {
            Endpoint::Protocol => (None, None),
            Endpoint::Room { room, nickname } => (Some(nickname), Some(room)),
        };
        self.conns.insert(
            conn,
            Conn {
                client,
                nickname,
                user: None,
                snaps_enabled: false,
                rooms: BTreeSet::new(),
            },
        );
        match room {
            None => {
                self.by_client.insert(client, conn);
                send(out, conn, &Reply::YourChatClientId { client });
            }
            Some(room) => self.open_url(conn, room, out),
        }
    }

    /// A room-URL connection joins the first room named `name` that needs no answer (a room
    /// with an answer cannot be entered without one), or creates a temporary room of that name.
    fn open_url(&mut self, conn: ConnId, name: String, out: &mut Vec<ToNet>) {
        let existing = self.rooms_by_name.get(&name).and_then(|ids| {
            ids.iter()
                .copied()
                .find(|id| self.rooms[id].answer.is_empty())
        });
        match existing {
            Some(room) => self.join(conn, room, 0, out),
            None => {
                let room = self.create_room(conn, name, String::new(), Secret::default(), true);
                self.announce_room(conn, room, 0, out);
                let name = &self.rooms[&room].name;
                send_text(out, vec![conn], |buf| {
                    self.who(conn).write_notice(buf, " joined ", name)
                });
            }
        }
    }

    fn command(&mut self, conn: ConnId, command: Command, now: u64, out: &mut Vec<ToNet>) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        match command {
            Command::AddChatroom {
                mid,
                name,
                question,
                answer,
                server_password,
            } => {
                let temporary = !self.server_password.matches(&server_password);
                let room = self.create_room(conn, name, question, answer, temporary);
                self.announce_room(conn, room, mid, out);
            }
            Command::AddUser {
                mid,
                userid,
                username,
                password,
                server_password,
            } => {
                let result = self
                    .check_server_password(&server_password)
                    .and_then(|()| self.add_user(userid, username, password));
                reply_result(out, conn, mid, result);
            }
            Command::GetChatroomDetails { mid, room } => match self.rooms.get(&room) {
                None => error(out, conn, err::ROOM_NOT_FOUND, mid),
                Some(r) => send(
                    out,
                    conn,
                    &Reply::ChatroomDetails {
                        mid,
                        room,
                        name: &r.name,
                        info: r.info(conn),
                        count: r.members.len(),
                        question: &r.question,
                    },
                ),
            },
            Command::GetChatroomList { mid } => {
                let mut w = FrameWriter::with_capacity(32 * self.rooms.len() + 32);
                let mut list = ChatroomListWriter::new(w.buf(), mid);
                for (&id, r) in &self.rooms {
                    list.room(id, &r.name, r.info(conn), r.members.len());
                }
                list.finish();
                out.push(ToNet::Send {
                    to: conn,
                    frame: w.finish(),
                });
            }
            Command::GetUsers {
                mid,
                status,
                server_password,
            } => match self.check_server_password(&server_password) {
                Err(text) => error(out, conn, text, mid),
                Ok(()) if !(1..=3).contains(&status) => error(out, conn, err::INVALID_STATUS, mid),
                Ok(()) => self.send_users(conn, mid, status, out),
            },
            Command::GetUsersInChatroom { mid, room } => match self.rooms.get(&room) {
                None => error(out, conn, err::ROOM_NOT_FOUND, mid),
                Some(r) if !r.members.contains(conn) => error(out, conn, err::NOT_A_MEMBER, mid),
                Some(r) => {
                    let mut w = FrameWriter::with_capacity(24 * r.members.len() as usize + 32);
                    let mut list = MembersWriter::new(w.buf(), mid, room);
                    for m in r.members.iter() {
                        let who = self.who(m.conn);
                        list.member(who.client, who.user, who.name);
                    }
                    list.finish();
                    out.push(ToNet::Send {
                        to: conn,
                        frame: w.finish(),
                    });
                }
            },
            Command::JoinChatroom {
                mid,
                room,
                leave_others,
                answer,
            } => match self.rooms.get(&room) {
                None => error(out, conn, err::ROOM_NOT_FOUND, mid),
                Some(r) if r.members.contains(conn) => error(out, conn, err::ALREADY_MEMBER, mid),
                Some(r) if !r.answer.is_empty() && !r.answer.matches(&answer) => {
                    error(out, conn, err::WRONG_ANSWER, mid)
                }
                Some(_) => {
                    if leave_others {
                        self.leave_all(conn, mid, true, out);
                    }
                    self.join(conn, room, mid, out);
                }
            },
            Command::LeaveChatroom { mid, room } => match self.rooms.get(&room) {
                None => error(out, conn, err::ROOM_NOT_FOUND, mid),
                Some(r) if !r.members.contains(conn) => {
                    error(out, conn, err::NOT_IN_THIS_ROOM, mid)
                }
                Some(_) => self.leave(conn, room, mid, true, out),
            },
            Command::Login {
                mid,
                username,
                password,
            } => self.login(conn, mid, &username, &password, out),
            Command::Logout { mid, disconnect } => {
                if !disconnect && self.conns[&conn].user.is_none() {
                    return error(out, conn, err::ALREADY_LOGGED_OUT, mid);
                }
                self.leave_all(conn, mid, true, out);
                self.set_user(conn, None);
                if disconnect {
                    out.push(ToNet::Close {
                        conn,
                        code: 1000,
                        reason: "logout",
                    });
                } else {
                    send(out, conn, &Reply::Success { mid });
                }
            }
            Command::Nop => {}
            Command::RemoveChatroom {
                mid,
                room,
                server_password,
            } => {
                let result = self.check_server_password(&server_password).and_then(|()| {
                    if self.rooms.contains_key(&room) {
                        self.delete_room(room, mid, out);
                        Ok(())
                    } else {
                        Err(err::ROOM_NOT_FOUND)
                    }
                });
                reply_result(out, conn, mid, result);
            }
            Command::RemoveUser {
                mid,
                userid,
                server_password,
            } => {
                let result = self
                    .check_server_password(&server_password)
                    .and_then(|()| self.remove_user(userid));
                reply_result(out, conn, mid, result);
            }
            Command::Send { mid, room, message } => match self.rooms.get(&room) {
                Some(r) if r.members.contains(conn) => self.chat(conn, room, mid, &message, out),
                _ => error(out, conn, err::NOT_IN_THAT_ROOM, mid),
            },
            Command::SendTo {
                mid,
                client,
                userid,
                message,
            } => {
                let targets: Vec<ConnId> = if userid != 0 {
                    let user = self.users.by_id.get(&userid);
                    user.into_iter()
                        .flat_map(|u| u.conns.iter().copied())
                        .collect()
                } else {
                    self.by_client.get(&client).copied().into_iter().collect()
                };
                if targets.is_empty() {
                    return error(out, conn, err::NOT_ONLINE, mid);
                }
                let who = self.who(conn);
                let msg = Reply::Msg {
                    mid,
                    client: who.client,
                    user: who.user,
                    message: &message,
                };
                send_many(out, targets, &msg);
                send(out, conn, &Reply::Success { mid });
            }
            Command::SendToAll {
                server_password,
                mid,
                message,
            } => {
                if let Err(text) = self.check_server_password(&server_password) {
                    return error(out, conn, text, mid);
                }
                let who = self.who(conn);
                let pm = Reply::PrivateMessage {
                    client: who.client,
                    user: who.user,
                    username: who.name,
                    message: &message,
                };
                send_many(
                    out,
                    self.by_client.values().copied().collect::<Recipients>(),
                    &pm,
                );
                send(out, conn, &Reply::Success { mid });
            }
            Command::SendSnap {
                mid,
                to_userid,
                expire,
                readtime,
                message,
            } => {
                let Some(from) = self.conns[&conn].user else {
                    return error(out, conn, err::SENDSNAP_LOGIN, mid);
                };
                let snap = self.snaps.add(Snap {
                    from,
                    to: to_userid,
                    sent: now,
                    received: 0,
                    readtime,
                    deadline: (expire != 0).then(|| now.saturating_add(expire)),
                    message,
                });
                send(out, conn, &Reply::SnapSent { mid, snap });
                let reply = self.snaps.by_id[&snap].reply(snap);
                send_many(out, self.snap_receivers(to_userid, None), &reply);
            }
            Command::GetSnaps { mid } => {
                let c = self.conns.get_mut(&conn).expect("checked on entry");
                let Some(user) = c.user else {
                    return error(out, conn, err::GETSNAPS_LOGIN, mid);
                };
                c.snaps_enabled = true;
                send(out, conn, &Reply::Success { mid });
                for (id, snap) in self.snaps.of_user(user, now) {
                    send(out, conn, &snap.reply(id));
                }
            }
            Command::ReadSnap { mid, snap } => self.read_snap(conn, mid, snap, now, out),
        }
    }

    fn check_server_password(&self, given: &Secret) -> Result<(), &'static str> {
        if self.server_password.matches(given) {
            Ok(())
        } else {
            Err(err::WRONG_SERVER_PASSWORD)
        }
    }

    /// How `conn` appears in messages about it. `conn` must be open.
    fn who(&self, conn: ConnId) -> Who<'_> {
        let c = &self.conns[&conn];
        let (user, name) = match (&c.nickname, c.user) {
            (Some(nickname), _) => (0, nickname.as_str()),
            (None, Some(user)) => (user, self.users.by_id[&user].name.as_str()),
            (None, None) => (0, ""),
        };
        Who {
            client: c.client,
            user,
            name,
        }
    }

    /// Creates a room with `creator` as its only member; returns its id.
    fn create_room(
        &mut self,
        creator: ConnId,
        name: String,
        question: String,
        answer: Secret,
        temporary: bool,
    ) -> u64 {
        self.last_room += 1;
        let id = self.last_room;
        let creator_is_url = self.conns[&creator].nickname.is_some();
        let mut members = Members::default();
        members.insert(creator, creator_is_url);
        self.conns.get_mut(&creator).expect("open").rooms.insert(id);
        self.rooms_by_name
            .entry(name.clone())
            .or_default()
            .insert(id);
        self.rooms.insert(
            id,
            Room {
                name,
                question,
                answer,
                temporary,
                members,
            },
        );
        id
    }

    /// Tells every protocol connection about a new room: the creator sees itself as a member
    /// (`info` bit 1), everyone else the same message without that bit.
    fn announce_room(&self, creator: ConnId, room: u64, mid: u64, out: &mut Vec<ToNet>) {
        let r = &self.rooms[&room];
        let created = |info| Reply::ChatroomCreated {
            mid,
            room,
            name: &r.name,
            info,
            count: r.members.len(),
        };
        let base = r.info(creator) & !INFO_MEMBER;
        if self.conns[&creator].nickname.is_none() {
            send(out, creator, &created(base | INFO_MEMBER));
        }
        let others = self.by_client.values().copied().filter(|&c| c != creator);
        send_many(out, others.collect::<Recipients>(), &created(base));
    }

    /// Adds `conn` to `room` and tells every member, the joiner included.
    fn join(&mut self, conn: ConnId, room: u64, mid: u64, out: &mut Vec<ToNet>) {
        let c = self.conns.get_mut(&conn).expect("open");
        c.rooms.insert(room);
        let is_url = c.nickname.is_some();
        let r = self.rooms.get_mut(&room).expect("checked by caller");
        r.members.insert(conn, is_url);
        let r = &self.rooms[&room];
        let who = self.who(conn);
        let reply = Reply::UserJoinedChatroom {
            mid,
            room,
            client: who.client,
            user: who.user,
            username: who.name,
            count: r.members.len(),
        };
        send_many(out, r.members.protocol(None), &reply);
        send_text(out, r.members.url(), |buf| {
            who.write_notice(buf, " joined ", &r.name)
        });
    }

    /// Takes `conn` out of `room` and tells the remaining members, and the leaver when
    /// `tell_leaver` (a disconnecting leaver is gone). A temporary room left empty is deleted.
    fn leave(
        &mut self,
        conn: ConnId,
        room: u64,
        mid: u64,
        tell_leaver: bool,
        out: &mut Vec<ToNet>,
    ) {
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        if !r.members.remove(conn) {
            return;
        }
        self.conns.get_mut(&conn).expect("open").rooms.remove(&room);
        let r = &self.rooms[&room];
        let who = self.who(conn);
        let reply = Reply::UserLeftChatroom {
            mid,
            room,
            client: who.client,
            user: who.user,
            username: who.name,
            count: r.members.len(),
        };
        send_many(out, r.members.protocol(tell_leaver.then_some(conn)), &reply);
        send_text(out, r.members.url(), |buf| {
            who.write_notice(buf, " left ", &r.name)
        });
        if r.temporary && r.members.is_empty() {
            self.delete_room(room, mid, out);
        }
    }

    /// Leaves every room `conn` is in, in creation order.
    fn leave_all(&mut self, conn: ConnId, mid: u64, tell_leaver: bool, out: &mut Vec<ToNet>) {
        let rooms: Vec<u64> = self.conns[&conn].rooms.iter().copied().collect();
        for room in rooms {
            self.leave(conn, room, mid, tell_leaver, out);
        }
    }

    /// Removes a room and tells every protocol connection. Members still inside (only when an
    /// admin removes it) are taken out silently; room-URL members, who have nowhere else to
    /// be, are disconnected.
    fn delete_room(&mut self, room: u64, mid: u64, out: &mut Vec<ToNet>) {
        let Some(r) = self.rooms.remove(&room) else {
            return;
        };
        if let Some(ids) = self.rooms_by_name.get_mut(&r.name) {
            ids.remove(&room);
            if ids.is_empty() {
                self.rooms_by_name.remove(&r.name);
            }
        }
        for m in r.members.iter() {
            self.conns
                .get_mut(&m.conn)
                .expect("open")
                .rooms
                .remove(&room);
            if m.url {
                out.push(ToNet::Close {
                    conn: m.conn,
                    code: 1000,
                    reason: "chatroom removed",
                });
            }
        }
        let everyone: Recipients = self.by_client.values().copied().collect();
        send_many(out, everyone, &Reply::ChatroomWasDeleted { mid, room });
    }

    /// A chat line from `conn` to a room it is in: `chat(...)` to protocol members, `name: text`
    /// to room-URL members.
    fn chat(&self, conn: ConnId, room: u64, mid: u64, message: &str, out: &mut Vec<ToNet>) {
        let r = &self.rooms[&room];
        let who = self.who(conn);
        let reply = Reply::Chat {
            mid,
            room,
            client: who.client,
            user: who.user,
            message,
        };
        send_many(out, r.members.protocol(None), &reply);
        send_text(out, r.members.url(), |buf| {
            who.write_url_name(buf);
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(message.as_bytes());
        });
    }

    /// A message from a room-URL connection: said in its room. Invalid UTF-8 (possible in a
    /// binary frame) is replaced, since protocol clients are promised UTF-8 strings.
    fn room_text(&self, conn: ConnId, text: &[u8], out: &mut Vec<ToNet>) {
        let Some(&room) = self.conns.get(&conn).and_then(|c| c.rooms.first()) else {
            return;
        };
        self.chat(conn, room, 0, &String::from_utf8_lossy(text), out);
    }

    fn add_user(&mut self, id: u64, name: String, password: Secret) -> Result<(), &'static str> {
        let users = &mut self.users;
        if users.by_id.contains_key(&id) {
            return Err(err::USERID_IN_USE);
        }
        if users.by_name.contains_key(&name) {
            return Err(err::USERNAME_IN_USE);
        }
        if id == 0 {
            return Err(err::USERID_ZERO);
        }
        users.last_seq += 1;
        users.order.insert(users.last_seq, id);
        users.by_name.insert(name.clone(), id);
        users.by_id.insert(
            id,
            User {
                name,
                password,
                seq: users.last_seq,
                conns: BTreeSet::new(),
            },
        );
        Ok(())
    }

    fn remove_user(&mut self, id: u64) -> Result<(), &'static str> {
        let user = self.users.by_id.get(&id).ok_or(err::USER_NOT_FOUND)?;
        if !user.conns.is_empty() {
            return Err(err::USER_LOGGED_IN);
        }
        let user = self.users.by_id.remove(&id).expect("just found");
        self.users.order.remove(&user.seq);
        self.users.by_name.remove(&user.name);
        self.snaps.remove_user(id);
        Ok(())
    }

    fn send_users(&self, conn: ConnId, mid: u64, status: u64, out: &mut Vec<ToNet>) {
        let mut w = FrameWriter::with_capacity(24 * self.users.order.len() + 32);
        let mut list = UsersWriter::new(w.buf(), mid);
        for id in self.users.order.values() {
            let u = &self.users.by_id[id];
            let st = if u.conns.is_empty() {
                LOGGED_OUT
            } else {
                LOGGED_IN
            };
            if status == 3 || status == st {
                list.user(*id, &u.name, st);
            }
        }
        list.finish();
        out.push(ToNet::Send {
            to: conn,
            frame: w.finish(),
        });
    }

    fn login(
        &mut self,
        conn: ConnId,
        mid: u64,
        name: &str,
        password: &Secret,
        out: &mut Vec<ToNet>,
    ) {
        let user = self.users.by_name.get(name).copied();
        let Some(user) = user.filter(|id| self.users.by_id[id].password.matches(password)) else {
            return error(out, conn, err::INCORRECT_LOGIN, mid);
        };
        self.set_user(conn, Some(user));
        let who = self.who(conn);
        for &room in &self.conns[&conn].rooms {
            let r = &self.rooms[&room];
            let reply = Reply::UserJoinedChatroom {
                mid,
                room,
                client: who.client,
                user: who.user,
                username: who.name,
                count: r.members.len(),
            };
            send_many(out, r.members.protocol(None), &reply);
        }
        send(out, conn, &Reply::Success { mid });
    }

    /// Makes `conn` logged in as `user` (or as nobody). Snap delivery is per login, so it is
    /// switched off when the identity changes.
    fn set_user(&mut self, conn: ConnId, user: Option<u64>) {
        let c = self.conns.get_mut(&conn).expect("open");
        if c.user == user {
            return;
        }
        if let Some(old) = c.user.and_then(|old| self.users.by_id.get_mut(&old)) {
            old.conns.remove(&conn);
        }
        if let Some(new) = user.and_then(|new| self.users.by_id.get_mut(&new)) {
            new.conns.insert(conn);
        }
        c.user = user;
        c.snaps_enabled = false;
    }

    /// The snap-enabled connections of `user`, except `except`.
    fn snap_receivers(&self, user: u64, except: Option<ConnId>) -> Vec<ConnId> {
        let conns = self
            .users
            .by_id
            .get(&user)
            .into_iter()
            .flat_map(|u| &u.conns);
        conns
            .copied()
            .filter(|&c| Some(c) != except && self.conns[&c].snaps_enabled)
            .collect()
    }

    fn read_snap(&mut self, conn: ConnId, mid: u64, id: u64, now: u64, out: &mut Vec<ToNet>) {
        let Some(reader) = self.conns[&conn].user else {
            return error(out, conn, err::READSNAP_LOGIN, mid);
        };
        let Some(snap) = self.snaps.live(id, now) else {
            return error(out, conn, err::SNAP_NOT_FOUND, mid);
        };
        if snap.from != reader && snap.to != reader {
            return error(out, conn, err::NOT_YOUR_SNAP, mid);
        }
        let other = if reader == snap.to {
            snap.from
        } else {
            snap.to
        };
        if reader == snap.to && snap.received == 0 {
            self.snaps.mark_read(id, now);
        }
        let mut to = vec![conn];
        to.extend(self.snap_receivers(other, Some(conn)));
        send_many(out, to, &self.snaps.by_id[&id].reply(id));
    }

    /// The §7 cleanup: leave every room (telling the others with messageid 0), log out, forget.
    fn close(&mut self, conn: ConnId, out: &mut Vec<ToNet>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        // Out of the broadcast audience first: the connection is gone, so it must not be
        // addressed by the deletions its leaving causes.
        self.by_client.remove(&c.client);
        self.leave_all(conn, 0, false, out);
        self.set_user(conn, None);
        self.conns.remove(&conn);
    }
}

fn frame(reply: &Reply<'_>) -> Frame {
    let mut w = FrameWriter::default();
    reply.encode(w.buf());
    w.finish()
}

fn send(out: &mut Vec<ToNet>, to: ConnId, reply: &Reply<'_>) {
    out.push(ToNet::Send {
        to,
        frame: frame(reply),
    });
}

/// One frame for all of `to`, encoded once; nothing when `to` is empty.
fn send_many(out: &mut Vec<ToNet>, to: impl Into<Recipients>, reply: &Reply<'_>) {
    let to = to.into();
    if !to.is_empty() {
        out.push(ToNet::SendMany {
            to,
            frame: frame(reply),
        });
    }
}

/// Raw text (the room-URL dialect), written by `write`, for all of `to`; nothing (and no
/// writing) when `to` is empty.
fn send_text(out: &mut Vec<ToNet>, to: impl Into<Recipients>, write: impl FnOnce(&mut Vec<u8>)) {
    let to = to.into();
    if !to.is_empty() {
        let mut w = FrameWriter::default();
        write(w.buf());
        out.push(ToNet::SendMany {
            to,
            frame: w.finish(),
        });
    }
}

fn error(out: &mut Vec<ToNet>, conn: ConnId, text: &str, mid: u64) {
    send(
        out,
        conn,
        &Reply::Error {
            text,
            mid: Some(mid),
        },
    );
}

/// `success(M,)`, or the error.
fn reply_result(out: &mut Vec<ToNet>, conn: ConnId, mid: u64, result: Result<(), &str>) {
    match result {
        Ok(()) => send(out, conn, &Reply::Success { mid }),
        Err(text) => error(out, conn, text, mid),
    }
}

#[cfg(test)]
mod tests;
