//! What the core asks of the slow workers (the store, the password hashers) and what comes
//! back, as plain values: the core decides *what* must be durable or hashed; the workers know
//! SQLite and argon2.
//!
//! A request that needs one of them parks its connection (see `pending.rs`) until the answer
//! arrives, so its reply is sent only once the change is committed, and the connection's later
//! requests wait their turn behind it.

use super::Secret;

/// A store's failure meaning the change conflicts with one another cluster node made first
/// (the name is taken): refused as such, not as a storage failure.
pub const STORE_CONFLICT: &str = "conflict";
/// A store's failure meaning the shared state cannot be reached now (a cluster's Redis is
/// down): refused as "busy", try again.
pub const STORE_UNAVAILABLE: &str = "unavailable";

/// One durable change, committed by the store in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new user.
    PutUser(StoredUser),
    SetPassword {
        id: u64,
        hash: String,
    },
    /// Removes the user, the snaps to or from them and the messages queued for them.
    DeleteUser {
        id: u64,
    },
    /// A persistent room; its answer only as a hash.
    PutRoom {
        id: u64,
        epoch: u64,
        name: String,
        question: String,
        answer: Option<String>,
    },
    DeleteRoom {
        id: u64,
    },
    PutSnap(StoredSnap),
    /// The recipient's first read, and the deadline it brings.
    ReadSnap {
        id: u64,
        received: u64,
        deadline: Option<u64>,
    },
    DeleteSnap {
        id: u64,
    },
    PutOffline(StoredOffline),
    DeleteOffline {
        ids: Vec<u64>,
    },
    /// A persistent room's message, written behind (nothing waits for it).
    AppendHistory(StoredMessage),
    /// A persistent room keeps no messages before `from` any more.
    TrimHistory {
        room: u64,
        from: u64,
    },
    /// Chatroomids below `up_to` may be handed out: temporary rooms are not stored, but their
    /// ids must not be given out again after a restart.
    ReserveRooms {
        up_to: u64,
    },
}

/// A user as stored; `seq` orders users as they were added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub id: u64,
    pub seq: u64,
    pub name: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    pub id: u64,
    /// The history's epoch (§12); the store draws a new one when a crash may have lost the
    /// newest messages.
    pub epoch: u64,
    /// The newest sequence number handed out that the store knows of.
    pub last_seq: u64,
    pub name: String,
    pub question: String,
    pub answer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnap {
    pub id: u64,
    pub from: u64,
    pub to: u64,
    pub sent: u64,
    pub received: u64,
    pub readtime: u64,
    pub deadline: Option<u64>,
    pub text: String,
}

/// A kept room message as stored (§12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub room: u64,
    pub seq: u64,
    pub client: u64,
    pub user: u64,
    /// The sender's name as it was when sent.
    pub name: String,
    pub sent: u64,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOffline {
    pub id: u64,
    pub to: u64,
    pub from: u64,
    /// The sender's name as it was when sent.
    pub from_name: String,
    pub sent: u64,
    pub text: String,
}

/// Everything that survives a restart (`docs/protocol.md` §11), as loaded at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// In the order they were added.
    pub users: Vec<StoredUser>,
    /// By id.
    pub rooms: Vec<StoredRoom>,
    pub snaps: Vec<StoredSnap>,
    /// Oldest first.
    pub offline: Vec<StoredOffline>,
    /// Persistent rooms' kept messages, by room and sequence number.
    pub history: Vec<StoredMessage>,
    /// The highest ids ever handed out (rooms: up to the last run's reservation), so none is
    /// given out again.
    pub last_user: u64,
    pub last_room: u64,
    pub last_snap: u64,
    pub last_offline: u64,
}

/// Work for the password hashers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashJob {
    /// A new PHC string for a password.
    Hash(Secret),
    /// Whether a password matches a PHC string.
    Verify { password: Secret, hash: String },
    /// As much work as a `Verify`, answered `Verified(false)`: for a name that does not exist,
    /// so that a login's timing does not tell which names do.
    Decoy(Secret),
    /// Ask the login backend (`--auth-url`) about a name this server does not know; if it
    /// accepts, hash the password for the local account it becomes.
    Backend { name: String, password: Secret },
}

/// A hasher's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hashed {
    Hash(String),
    Verified(bool),
    /// The job could not be done (a malformed stored hash); treated as a failed check.
    Failed,
    /// The login backend accepted the name as `user`; `hash` is the password's hash.
    Accepted {
        user: u64,
        hash: String,
    },
    /// The login backend did not answer in time (or could not be reached).
    Unavailable,
}
