//! The room URL (`/ws/chat/{room}/?nickname={nickname}`, as oat++'s async-rooms example): each
//! text message is a line said in the connection's one room; what happens in the room comes
//! back as plain lines.

use super::ActorView;
use crate::chat::{Answer, ChatError, Event, Intent, Kind, Request, Who};
use crate::dialect::protocol::codec::error_text;

/// A message is a line in the room. The net thread only forwards valid UTF-8.
pub fn parse(msg: &[u8]) -> Request {
    let text = String::from_utf8_lossy(msg).into_owned();
    Request::plain(None, Kind::Say, Ok(Intent::SayHere { text }))
}

/// Everyone in the room, the actor included, sees the same line.
pub fn actor_view(_: &Event<'_>) -> ActorView {
    ActorView::Same
}

/// `alice joined lobby`, `alice: hi`, `alice left lobby`; other events have no room-URL form.
pub fn event(buf: &mut Vec<u8>, event: &Event<'_>) -> bool {
    let (who, rest): (&Who<'_>, [&[u8]; 2]) = match event {
        Event::Joined { name, who, .. } => (who, [b" joined ", name.as_bytes()]),
        Event::Left { name, who, .. } => (who, [b" left ", name.as_bytes()]),
        Event::Said { who, text, .. } => (who, [b": ", text.as_bytes()]),
        Event::Broadcast { from, text } => (from, [b": ", text.as_bytes()]),
        _ => return false,
    };
    write_name(buf, who);
    for part in rest {
        escape_controls(buf, part);
    }
    true
}

/// Copies `text`, writing each control character but tab as a visible escape (`\n`, `\r`,
/// `\u{1b}`): room-URL clients print lines, and a raw newline in a message would let its
/// sender print a forged line under someone else's name.
fn escape_controls(buf: &mut Vec<u8>, text: &[u8]) {
    // Every line passes here: a byte scan finds the (rare) candidates first. Control
    // characters are C0 and DEL, or C1, which UTF-8 writes with the lead byte 0xC2.
    let candidate = |&b: &u8| (b < 0x20 && b != b'\t') || b == 0x7F || b == 0xC2;
    if !text.iter().any(candidate) {
        buf.extend_from_slice(text);
        return;
    }
    let Ok(text) = std::str::from_utf8(text) else {
        buf.extend_from_slice(text);
        return;
    };
    for c in text.chars() {
        match c {
            '\t' => buf.push(b'\t'),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            c if c.is_control() => buf.extend_from_slice(c.escape_unicode().to_string().as_bytes()),
            c => buf.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

/// Only a refusal for sending too fast is worth a line; a line is otherwise answered by being
/// seen in the room.
pub fn reply(buf: &mut Vec<u8>, result: &Result<Answer<'_>, ChatError>) -> bool {
    match result {
        Err(ChatError::RateLimited) => {
            buf.extend_from_slice(error_text::RATE_LIMITED.as_bytes());
            true
        }
        _ => false,
    }
}

/// The name room-URL clients see: the username or nickname, or `guest{C}` for an anonymous
/// command-protocol connection, so its lines do not read as coming from nobody.
fn write_name(buf: &mut Vec<u8>, who: &Who<'_>) {
    if who.name.is_empty() {
        buf.extend_from_slice(b"guest");
        buf.extend_from_slice(itoa::Buffer::new().format(who.client).as_bytes());
    } else {
        escape_controls(buf, who.name.as_bytes());
    }
}
