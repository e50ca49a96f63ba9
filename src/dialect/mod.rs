//! The three ways clients talk, each one module that parses its wire format into the core's
//! [`Request`]s and renders the core's events and answers: [`protocol`] (the command protocol),
//! [`room_url`] (raw lines in one room) and [`json`] (the GTChat JSON dialect).
//!
//! Parsing runs on the net thread; rendering on the logic thread, once per dialect present in
//! an event's audience, straight into a WebSocket frame that every recipient then shares.

pub mod json;
pub mod protocol;
pub mod room_url;

use crate::chat::{Answer, ChatError, Dialect, Event, Kind, Request, Tag};
use crate::events::Frame;
use crate::ws::FrameWriter;

/// How the connection that caused an event is shown it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorView {
    /// Exactly as everyone else.
    Same,
    /// Its own way (a command-protocol creator sees the new room as its own).
    Own,
    /// Not at all: its reply says it happened.
    Nothing,
}

/// Parses one client message of `dialect`. Never panics.
pub fn parse(dialect: Dialect, msg: &[u8]) -> Request {
    match dialect {
        Dialect::Protocol => protocol::parse(msg),
        Dialect::RoomUrl => room_url::parse(msg),
        Dialect::Json => json::parse(msg),
    }
}

pub fn actor_view(dialect: Dialect, event: &Event<'_>) -> ActorView {
    match dialect {
        Dialect::Protocol => protocol::actor_view(event),
        Dialect::RoomUrl => room_url::actor_view(event),
        Dialect::Json => json::actor_view(event),
    }
}

/// `event` as one frame for connections of `dialect` (command-protocol ones that asked for
/// `sequenced`, with `sequenced`), or `None` if the dialect does not show it.
pub fn render_event(
    dialect: Dialect,
    sequenced: bool,
    mid: u64,
    event: &Event<'_>,
    as_actor: bool,
) -> Option<Frame> {
    let mut w = FrameWriter::default();
    let wrote = match dialect {
        Dialect::Protocol => protocol::event(w.buf(), mid, event, as_actor, sequenced),
        Dialect::RoomUrl => room_url::event(w.buf(), event),
        Dialect::Json => json::event(w.buf(), event),
    };
    wrote.then(|| w.finish())
}

/// The answer to a request as one frame, or `None` if the dialect says nothing.
pub fn render_reply(
    dialect: Dialect,
    mid: Option<u64>,
    kind: Kind,
    tag: &Tag,
    result: &Result<Answer<'_>, ChatError>,
) -> Option<Frame> {
    // Most messages are answered by the event they cause (a chat line comes back as itself):
    // no frame, and no buffer for one.
    if let Ok(Answer::Silent) = result {
        return None;
    }
    if dialect != Dialect::Json && matches!(result, Ok(Answer::Confirmed)) {
        return None;
    }
    let mut w = FrameWriter::default();
    let wrote = match dialect {
        Dialect::Protocol => protocol::reply(w.buf(), mid, kind, result),
        Dialect::RoomUrl => room_url::reply(w.buf(), result),
        Dialect::Json => json::reply(w.buf(), tag, result),
    };
    wrote.then(|| w.finish())
}
