//! The closed set of messages that cross between the net thread and the logic thread.
//!
//! Everything one thread can ask of the other is a variant here, so every trigger is visible in
//! one `match` on each side.

use bytes::Bytes;

use crate::api::{ApiRequest, Reply};
pub use crate::chat::{ConnId, Recipients};
use crate::chat::{Entry, Hashed, Peer, Replica, Request};

/// Into the logic thread, from the net thread, the store and the password hashers. The channel
/// carries a `Vec` of these per batch (a net-loop turn, a group commit), so the logic thread is
/// woken once per batch, not once per message.
#[derive(Debug)]
pub enum ToLogic {
    /// A WebSocket handshake completed (for a room-URL connection: the upgrade waits for the
    /// logic thread's [`ToNet::Admit`]). `peer` keys per-address limits.
    Opened {
        conn: ConnId,
        entry: Entry,
        peer: Peer,
    },
    /// One client message, already parsed by its dialect on the net thread (refusals such as
    /// a parse error or the rate limit are requests too, so their replies keep their place in
    /// the connection's reply order).
    Request { conn: ConnId, request: Request },
    /// An authorized, well-formed request of the operator's API (`api`), to be answered with
    /// [`ToNet::Http`]. The connection is not a chat connection: the core never hears of it.
    Api { conn: ConnId, request: ApiRequest },
    /// The connection is gone (closed by either side, reset, timed out, or cut off).
    Closed { conn: ConnId },
    /// A close the net thread itself decided on (a client flooding past the rate limit). The
    /// logic thread passes it back after everything it already produced, so the replies to
    /// the messages accepted before still go out first.
    Forward(ToNet),
    /// A password hasher finished job `ticket`.
    Hashed { ticket: u64, result: Hashed },
    /// The store committed (or failed to commit) these tickets, in order, in `took`.
    Stored {
        results: Vec<(u64, Result<(), String>)>,
        took: std::time::Duration,
    },
    /// What another node of the cluster did (from the cluster bridge).
    Cluster(Replica),
    /// Periodic clock tick (once a second) for time-driven state such as snap expiry.
    Tick,
    /// The process is shutting down; the logic thread finishes and exits.
    Shutdown,
    /// Fault injection for `websocket test debug panic`: the logic thread panics on receipt, to
    /// prove that a dead logic thread takes the whole process down with a trace.
    InjectPanic,
}

/// An encoded server WebSocket frame (header and payload), shared by every recipient.
pub type Frame = Bytes;

/// Logic thread -> net thread. The channel carries a `Vec` of these per batch of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToNet {
    /// Queue one frame for one connection.
    Send { to: ConnId, frame: Frame },
    /// Queue the same frame for many connections (all of `to` but `except`); each outbound
    /// queue holds a reference.
    SendMany {
        to: Recipients,
        except: Option<ConnId>,
        frame: Frame,
    },
    /// Answer a held upgrade (room URL): `None` sends the `101` and lets the connection in;
    /// `Some((status, reason))` refuses it with that HTTP status instead.
    Admit {
        conn: ConnId,
        refused: Option<(u16, &'static str)>,
    },
    /// Send a close frame after everything already queued, then close the connection.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// The response to a [`ToLogic::Api`] request.
    Http { conn: ConnId, reply: Reply },
    /// Stop reading the connection (`on`) or start again: its requests are piling up behind
    /// one that waits for a worker.
    Hold { conn: ConnId, on: bool },
}
