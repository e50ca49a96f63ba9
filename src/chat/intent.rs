//! What clients ask for, in no dialect's words: each dialect parses its wire format into a
//! [`Request`], and the core answers it without knowing which dialect that was.

use super::{ChatError, Secret};

/// One client request, as its dialect parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The request's number (the command protocol's messageid): echoed in the reply and in the
    /// events the request causes. `None` when the dialect could not read one.
    pub mid: Option<u64>,
    /// Which command this was, also when it could not be parsed further: some dialects word
    /// the same error differently per command.
    pub kind: Kind,
    /// Words the dialect wants back on the reply (the JSON dialect's command name and `id`);
    /// the core never looks inside.
    pub tag: Tag,
    /// Who the request must come from.
    pub requires: Requires,
    /// The intent, or why the dialect refused the message (malformed, over the rate limit).
    pub intent: Result<Intent, ChatError>,
    /// The message came over the connection's rate limit. The core refuses it with
    /// [`ChatError::RateLimited`] unless it is an admin command with the right server password.
    pub over_rate: bool,
}

impl Request {
    /// A request that needs no login and carries no tag: how the command protocol and the
    /// room URL send everything.
    pub fn plain(mid: Option<u64>, kind: Kind, intent: Result<Intent, ChatError>) -> Request {
        Request {
            mid,
            kind,
            tag: Tag::default(),
            requires: Requires::Nothing,
            intent,
            over_rate: false,
        }
    }
}

impl Intent {
    /// The server password an admin command carries (not `addchatroom`'s: a wrong one there
    /// is no refusal, so it is never throttled either).
    pub fn server_key(&self) -> Option<&Secret> {
        match self {
            Intent::AddUser { key, .. }
            | Intent::RemoveUser { key, .. }
            | Intent::ListUsers { key, .. }
            | Intent::RemoveRoom { key, .. }
            | Intent::Broadcast { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Opaque bytes a dialect attaches to a request and renders back into its reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tag(pub Option<Box<str>>);

/// Who may make a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requires {
    /// Anyone, logged in or not.
    Nothing,
    /// A connection logged in (as a user or a guest) under exactly this name; else
    /// [`ChatError::NotLoggedIn`] or [`ChatError::NotYou`].
    LoginAs(String),
}

/// A room, by id (the command protocol) or by name (the JSON dialect: the first room, in
/// creation order, with exactly that name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomRef {
    Id(u64),
    Name(String),
}

/// Whom a private message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One connection, by chatclientid.
    Client(u64),
    /// Every connection logged in as this userid.
    User(u64),
}

/// The command a request was, for error wording and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unknown,
    CreateRoom,
    RoomDetails,
    ListRooms,
    RoomMembers,
    Join,
    Leave,
    Say,
    RemoveRoom,
    Login,
    GuestLogin,
    Logout,
    Register,
    ChangePassword,
    DeleteAccount,
    FindUsers,
    AddUser,
    RemoveUser,
    ListUsers,
    SendTo,
    Broadcast,
    Invite,
    SendSnap,
    GetSnaps,
    ReadSnap,
    History,
    Resume,
    Sequenced,
    Nop,
}

/// What a client asks for. Numbers are 0..=`i64::MAX`; strings are UTF-8.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// A room with the creator as its first member; persistent when `key` is the server
    /// password. With `unique`, a name already used by a room is refused.
    CreateRoom {
        name: String,
        question: String,
        answer: Secret,
        key: Secret,
        unique: bool,
    },
    RoomDetails {
        room: u64,
    },
    ListRooms,
    RoomMembers {
        room: u64,
    },
    Join {
        room: RoomRef,
        leave_others: bool,
        answer: Secret,
        /// (epoch, seq) the joiner saw the room up to: it is answered what it missed (§12).
        since: Option<(u64, u64)>,
    },
    Leave {
        room: RoomRef,
    },
    /// A message to a room the sender is in.
    Say {
        room: RoomRef,
        text: String,
    },
    /// A message to the room a room-URL connection lives in.
    SayHere {
        text: String,
    },
    RemoveRoom {
        room: u64,
        key: Secret,
    },
    Login {
        name: String,
        password: Secret,
    },
    /// A name without an account, for this connection only.
    GuestLogin {
        name: String,
    },
    Logout {
        disconnect: bool,
    },
    Register {
        name: String,
        password: Secret,
    },
    ChangePassword {
        old: Secret,
        new: Secret,
    },
    DeleteAccount {
        password: Secret,
    },
    FindUsers {
        pattern: String,
    },
    AddUser {
        id: u64,
        name: String,
        password: Secret,
        key: Secret,
    },
    RemoveUser {
        id: u64,
        key: Secret,
    },
    /// `status`: 1 logged in, 2 logged out, 3 all.
    ListUsers {
        status: u64,
        key: Secret,
    },
    SendTo {
        to: Target,
        text: String,
    },
    /// To every connection; `key` must be the server password.
    Broadcast {
        key: Secret,
        text: String,
    },
    Invite {
        room: RoomRef,
        invitee: String,
    },
    SendSnap {
        to: u64,
        expire: u64,
        readtime: u64,
        text: String,
    },
    GetSnaps,
    ReadSnap {
        snap: u64,
    },
    /// A member's page of the room's kept messages: the newest `limit` (0 or over
    /// [`super::MAX_PAGE`]: that many) with a sequence number below `before` (0: any).
    History {
        room: RoomRef,
        before: u64,
        limit: u64,
    },
    /// What a member missed since `seq` in `epoch` (§12).
    Resume {
        room: RoomRef,
        epoch: u64,
        seq: u64,
    },
    /// Room messages with their sequence numbers (`chatseq`), or not.
    Sequenced {
        on: bool,
    },
    Nop,
}
