//! The closed set of messages that cross between the net thread and the logic thread.
//!
//! Everything one thread can ask of the other is a variant here, so every trigger is visible in
//! one `match` on each side.

use std::sync::Arc;

use bytes::Bytes;

use crate::proto::{Command, ParseError};

/// Identifies one connection across threads.
///
/// `slot` is the connection's key in the net thread's slab; `generation` is bumped every time a slot is
/// reused, so a message the logic thread addressed to a connection that has since closed is
/// dropped instead of reaching whoever got the slot next.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

/// Which dialect a WebSocket connection speaks, decided by the upgrade request's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The command protocol of `protocol.md` (any path not reserved for another dialect).
    Protocol,
    /// The oat++-compatible room URL `/ws/chat/{room}/?nickname={nickname}`: raw text in a room.
    Room { room: String, nickname: String },
}

/// Net thread -> logic thread. The channel carries a `Vec` of these per net-loop turn, so the
/// logic thread is woken once per turn, not once per message.
#[derive(Debug)]
pub enum ToLogic {
    /// A WebSocket handshake completed.
    Opened { conn: ConnId, endpoint: Endpoint },
    /// One command-protocol message, already parsed by the net thread (parse errors are
    /// forwarded too, so the error reply keeps its place in the reply order).
    Command {
        conn: ConnId,
        command: Result<Command, ParseError>,
    },
    /// One text message from a room-URL connection.
    RoomText { conn: ConnId, text: Bytes },
    /// The connection is gone (closed by either side, reset, timed out, or cut off).
    Closed { conn: ConnId },
    /// Something the net thread itself wants sent to a chat connection (a rate-limit error, a
    /// policy close). The logic thread passes it back unchanged after everything it already
    /// produced, so it keeps its place in that connection's reply order.
    Forward(ToNet),
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

/// The connections one broadcast goes to. Shared, so a room's audience is built once per change
/// of membership and reused by every broadcast until the next change.
pub type Recipients = Arc<[ConnId]>;

/// Logic thread -> net thread. The channel carries a `Vec` of these per batch of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToNet {
    /// Queue one frame for one connection.
    Send { to: ConnId, frame: Frame },
    /// Queue the same frame for many connections; each outbound queue holds a reference.
    SendMany { to: Recipients, frame: Frame },
    /// Send a close frame after everything already queued, then close the connection.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
}
