//! What the core produces, in no dialect's words: events for audiences, one reply per request,
//! and closes. The logic thread routes each [`Effect`] to its sink (today the renderers that
//! feed the net thread); a new sink is one more variant here and one more channel there.

use super::durable::{Change, HashJob};
use super::{ConnId, Field, Kind, Quota, Recipients, Tag};

/// How a connection talks. The core uses it to split audiences, so that each event is rendered
/// once per dialect present, never once per recipient; what each dialect shows is the
/// renderers' business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// The command protocol (`docs/protocol.md`).
    Protocol,
    /// The oat++-style room URL: raw text in one room.
    RoomUrl,
    /// The GTChat JSON dialect.
    Json,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::Protocol, Dialect::RoomUrl, Dialect::Json];

    /// Position in [`Dialect::ALL`], for per-dialect arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Something for the logic thread to carry out.
#[derive(Debug)]
pub enum Effect<'a> {
    /// Tell `to` (all speaking `dialect`) about `event`. `actor`, when set, is the connection
    /// whose request caused it, shown the event from its own side (the same, differently, or
    /// not at all: some dialects confirm an action by its reply alone). `mid` is the causing
    /// request's number (0 for none). `sequenced`: `to` are command-protocol connections that
    /// asked to see room messages with their sequence numbers (`sequenced`, §12).
    Tell {
        dialect: Dialect,
        sequenced: bool,
        to: Recipients,
        actor: Option<Actor>,
        mid: u64,
        event: &'a Event<'a>,
    },
    /// The answer to a request of `conn`, after every event the request caused for it.
    Reply {
        conn: ConnId,
        dialect: Dialect,
        mid: Option<u64>,
        kind: Kind,
        tag: &'a Tag,
        result: Result<Answer<'a>, ChatError>,
    },
    /// End the connection after what was already sent to it.
    Close { conn: ConnId, why: Farewell },
    /// Commit a change; the store answers `ticket` (see `Chat::stored`). Changes are committed
    /// in the order they are emitted.
    Persist { ticket: u64, change: Change },
    /// Hash or check a password; a hasher answers `ticket` (see `Chat::hashed`).
    Hash { ticket: u64, job: HashJob },
    /// Stop reading `conn` (`on`), or start again: its requests pile up behind one that waits
    /// for a worker, and the client should feel that as backpressure, not as memory use here.
    Hold { conn: ConnId, on: bool },
    /// The answer to an operator's API request (`conn` is its HTTP connection) that had to
    /// wait for the store.
    ApiDone {
        conn: ConnId,
        result: Result<super::ApiDone, ChatError>,
    },
    /// Tell whoever watches from outside (webhooks) that something happened.
    Notify(Notice<'a>),
    /// Tell the other nodes of the cluster what this node's connections did.
    Share(super::Shared),
    /// A room-URL connection's upgrade is decided: let it in (`Ok`, before anything is sent
    /// to it), or refuse it (the core has already forgotten it).
    Admit {
        conn: ConnId,
        result: Result<(), ChatError>,
    },
}

/// Something an outside observer (a webhook) is told about, in no format: who logged in or
/// out, what was said, which rooms came and went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// A connection logged in as `user`.
    Login {
        user: u64,
        name: &'a str,
    },
    /// A connection logged in as `user` logged out, or closed.
    Logout {
        user: u64,
        name: &'a str,
    },
    RoomMessage {
        room: u64,
        room_name: &'a str,
        from: Who<'a>,
        text: &'a str,
    },
    /// A private message delivered to the connections of `to_user` (0: to a client that is
    /// not logged in as a user).
    Private {
        from: Who<'a>,
        to_user: u64,
        text: &'a str,
    },
    RoomCreated {
        room: u64,
        name: &'a str,
    },
    RoomDeleted {
        room: u64,
        name: &'a str,
    },
}

/// The connection whose request caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub conn: ConnId,
    /// Whether it is also in the event's audience (a leaver no longer is).
    pub in_audience: bool,
}

/// Why the core closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Farewell {
    /// The client asked to (`logout` with disconnect).
    LoggedOut,
    /// The room a room-URL connection lives in was removed.
    RoomRemoved,
    /// It kept sending while its requests waited for the server, past any reasonable
    /// pipeline, or the server could not make it a room.
    TooManyWaiting,
    /// An operator disconnected the user (`DELETE /api/v1/users/{id}/connections`).
    Kicked,
}

/// Where the effects of one step go. Implemented by the logic thread's router, and by tests.
pub trait Sink {
    fn emit(&mut self, effect: Effect<'_>);
}

/// A sink for state changes nobody is there to be told about (before the server serves).
pub struct Discard;

impl Sink for Discard {
    fn emit(&mut self, _: Effect<'_>) {}
}

/// How a connection appears in what others are told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Who<'a> {
    /// The chatclientid.
    pub client: u64,
    /// The userid, 0 when not logged in as a user.
    pub user: u64,
    /// The username, the guest or room-URL nickname, or empty for an anonymous connection.
    pub name: &'a str,
}

/// A room as one viewer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomInfo<'a> {
    pub id: u64,
    pub name: &'a str,
    pub question: &'a str,
    /// The viewer is in the room.
    pub member: bool,
    /// Joining needs an answer.
    pub needs_answer: bool,
    /// Deleted when its last member leaves.
    pub temporary: bool,
    /// Members now.
    pub count: u64,
}

/// A user in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserInfo<'a> {
    pub id: u64,
    pub name: &'a str,
    pub online: bool,
}

/// A snap as its parties see it (`docs/protocol.md` §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapInfo<'a> {
    pub id: u64,
    pub to: u64,
    pub from: u64,
    pub sent: u64,
    /// 0 until the recipient read it.
    pub received: u64,
    pub readtime: u64,
    pub text: &'a str,
}

/// A kept room message (§12): the sender as it was when it spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub seq: u64,
    pub client: u64,
    pub user: u64,
    /// The username or nickname, empty for an anonymous sender.
    pub name: &'a str,
    /// Unix seconds.
    pub sent: u64,
    pub text: &'a str,
}

/// What a joiner missed since the sequence number it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed<'a> {
    pub epoch: u64,
    /// Everything missed is in `messages`; else the client reloads with a history page.
    pub complete: bool,
    pub messages: Vec<Message<'a>>,
}

/// Something that happened, for everyone it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A new connection's chatclientid.
    Welcome {
        client: u64,
    },
    RoomCreated {
        room: RoomInfo<'a>,
        by: Who<'a>,
    },
    RoomDeleted {
        room: u64,
        name: &'a str,
    },
    /// `count` is the number of members after the change.
    Joined {
        room: u64,
        name: &'a str,
        who: Who<'a>,
        count: u64,
    },
    /// A member logged in, so it goes by a new name.
    Renamed {
        room: u64,
        name: &'a str,
        who: Who<'a>,
        count: u64,
    },
    Left {
        room: u64,
        name: &'a str,
        who: Who<'a>,
        count: u64,
    },
    /// A room message, number `seq` of the room's history in `epoch` (§12).
    Said {
        room: u64,
        name: &'a str,
        who: Who<'a>,
        epoch: u64,
        seq: u64,
        text: &'a str,
    },
    Private {
        from: Who<'a>,
        text: &'a str,
    },
    Broadcast {
        from: Who<'a>,
        text: &'a str,
    },
    Invited {
        room: &'a str,
        by: Who<'a>,
    },
    /// The account these connections were logged in as is gone; they are logged out.
    AccountDeleted {
        user: u64,
    },
    Snap(SnapInfo<'a>),
    /// A message queued while the user was offline, handed over at login.
    Offline {
        from: u64,
        from_name: &'a str,
        sent: u64,
        text: &'a str,
    },
}

/// A successful answer. Variants that confirm something the requester was also told as an
/// event say so, so a dialect that shows its clients their own events need not repeat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<'a> {
    /// Done, and nothing else to say.
    Done,
    /// Done; the requester saw it happen as an event of its own (its message, its leave).
    Confirmed,
    /// A room message was said (the sender saw it as an event if its dialect shows it one):
    /// its number in the room's history.
    Said {
        epoch: u64,
        seq: u64,
    },
    /// Nothing (more) to answer: a no-op, a logout that ends the connection, or a request
    /// whose answer already went out before the events that followed it.
    Silent,
    /// A room created (the creator saw `RoomCreated`) or joined (the joiner saw `Joined`):
    /// the room's name and its members in join order.
    InRoom {
        name: &'a str,
        members: Vec<Who<'a>>,
        /// What the joiner missed, when it said where it was (§12).
        resumed: Option<Resumed<'a>>,
    },
    LoggedIn {
        user: u64,
        session: String,
        online: Vec<&'a str>,
        rooms: Vec<&'a str>,
    },
    Registered {
        user: u64,
    },
    RoomDetails(RoomInfo<'a>),
    RoomList(Vec<RoomInfo<'a>>),
    Members {
        room: u64,
        members: Vec<Who<'a>>,
    },
    Users(Vec<UserInfo<'a>>),
    /// `total` counts every match; `users` holds at most the first 1,000.
    Found {
        total: u64,
        users: Vec<UserInfo<'a>>,
    },
    SnapSent {
        snap: u64,
    },
    /// The recipient is offline: the message waits for them.
    Queued,
    /// Kept messages of a room, oldest first: a page, or one part of a resume.
    History {
        room: u64,
        name: &'a str,
        epoch: u64,
        messages: Vec<Message<'a>>,
    },
    /// The end of a resume: whether everything missed was sent (else the client reloads).
    Recovered {
        room: u64,
        name: &'a str,
        complete: bool,
    },
}

/// Why a request was refused. A value, not wording: each dialect words it (and some word it
/// differently per command, see [`Kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    /// No such command.
    Unknown,
    /// The message could not be read; `detail` says where, for dialects that explain.
    Malformed {
        detail: Box<str>,
    },
    /// Over the connection's message rate.
    RateLimited,
    /// The request names another user than the connection's login.
    NotYou,
    NotLoggedIn,
    WrongServerPassword,
    UseridInUse,
    UseridZero,
    NameTaken,
    BadName,
    BadPassword,
    PasswordsDiffer,
    /// Only registered users have a password to change.
    NotRegistered,
    IncorrectLogin,
    AlreadyLoggedOut,
    UserNotFound,
    UserLoggedIn,
    InvalidStatus,
    NotOnline,
    RoomNotFound,
    RoomExists,
    NotAMember,
    AlreadyMember,
    WrongAnswer,
    SnapNotFound,
    NotYourSnap,
    /// A resume from a sequence number the room has not reached (§12).
    BadHistoryRange,
    /// The server cannot take this on now (the password hashers are swamped); try again.
    Busy,
    /// The store could not commit the change, so it did not happen.
    StoreFailed,
    /// The recipient's offline queue is full.
    QueueFull,
    /// Over one of the configured quotas.
    QuotaExceeded(Quota),
    /// A name, question or answer longer than allowed.
    TooLong(Field),
    /// Too many failed guesses (server password, room answer, login): locked out for `secs`
    /// more seconds; the guess was not checked.
    TryLater {
        secs: u64,
    },
}
