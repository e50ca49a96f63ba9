//! Drives the chat logic (`logic::Logic`: the core and its renderers) the way the net thread does, with a transcript decoded from the input,
//! and checks every action it asks of the net thread. The chat state is the only place that
//! interprets commands, so hostile command sequences must never panic it (a logic-thread panic
//! aborts the server), and what it sends must be deliverable.
//!
//! Input: lines `OP SLOT PAYLOAD` (no separators: the first byte is the operation, the second
//! picks one of four connection slots, the rest of the line is the payload):
//!
//! - `o` opens a protocol connection on the slot, `j` a JSON one, `r` a room-URL connection
//!   whose request target is `/ws/chat/PAYLOAD` (through `http::parse`, so only URLs the server
//!   accepts);
//! - `c` sends PAYLOAD as a message in the slot's dialect (parsed by `dialect::parse`, like the
//!   net thread does; only UTF-8 for the JSON and room-URL dialects, as the net thread enforces);
//! - `x` closes the slot's connection; `k` is a clock tick, PAYLOAD's first byte the seconds
//!   elapsed.
//!
//! Events the net thread would never send (a message on a closed slot) are skipped. A reopened slot gets a new generation, as a reused slab key does.
//!
//! Checked for every action: it is addressed to open connections only (never to one that has
//! closed, never twice in one broadcast), each frame is one complete text frame of UTF-8 (a
//! client closes on invalid UTF-8 with 1007), a protocol connection only ever receives
//! protocol messages (`name(...)`) and a JSON connection only JSON objects.

#![no_main]

use libfuzzer_sys::fuzz_target;
use websocket::chat::{Dialect, Entry};
use websocket::dialect;
use websocket::events::{ConnId, ToLogic, ToNet};
use websocket::http::{self, Head, Route, Service};
use websocket::logic::Logic;
use websocket::ws::text_payload;

/// Connection slots; few, so the same connections meet in rooms and conversations.
const SLOTS: usize = 4;
/// The server password (short, so the fuzzer can reach the admin commands).
const PASSWORD: &[u8] = b"pw";
/// A plausible unix time to start from.
const T0: u64 = 1_700_000_000;

#[derive(Clone, Copy, Default)]
struct Slot {
    generation: u32,
    open: Option<Dialect>,
}

fuzz_target!(|data: &[u8]| {
    let mut chat = Logic::new(PASSWORD);
    let mut slots = [Slot::default(); SLOTS];
    let mut now = T0;
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let [op, slot, payload @ ..] = line else {
            continue;
        };
        let i = usize::from(*slot) % SLOTS;
        let conn = ConnId {
            slot: i as u32,
            generation: slots[i].generation,
        };
        let event = match (op, slots[i].open) {
            (b'o' | b'j' | b'r', None) => {
                let entry = match op {
                    b'o' => Entry::Protocol,
                    b'j' => Entry::Json,
                    _ => match room_url(payload) {
                        Some(entry) => entry,
                        None => continue,
                    },
                };
                slots[i].open = Some(entry.dialect());
                ToLogic::Opened {
                    conn,
                    entry,
                    // Every connection from one address, so per-address quotas are fuzzed too.
                    peer: websocket::chat::Peer::at(1),
                }
            }
            (b'c', Some(d)) if d == Dialect::Protocol || std::str::from_utf8(payload).is_ok() => {
                ToLogic::Request {
                    conn,
                    request: dialect::parse(d, payload),
                }
            }
            (b'x', Some(_)) => {
                slots[i] = Slot {
                    generation: slots[i].generation + 1,
                    open: None,
                };
                ToLogic::Closed { conn }
            }
            (b'k', _) => {
                now += payload.first().map_or(1, |&s| u64::from(s));
                ToLogic::Tick
            }
            _ => continue,
        };
        chat.handle(event, now, &mut out);
        check(&slots, &mut out);
    }
    // Everyone leaves, as at shutdown: the departures are broadcast to those still there.
    for i in 0..SLOTS {
        if slots[i].open.is_some() {
            let conn = ConnId {
                slot: i as u32,
                generation: slots[i].generation,
            };
            slots[i].open = None;
            chat.handle(ToLogic::Closed { conn }, now, &mut out);
            check(&slots, &mut out);
        }
    }
});

/// The entry the net thread would open for an upgrade to `/ws/chat/{target}`, if it accepts it.
fn room_url(target: &[u8]) -> Option<Entry> {
    let mut req = b"GET /ws/chat/".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(
        b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    let routes = http::Routes {
        max_head: 8192,
        ..Default::default()
    };
    match http::parse(&req, &routes) {
        Head::Complete {
            route:
                Route::Upgrade {
                    service: Service::Chat(entry),
                    ..
                },
            ..
        } => Some(entry),
        _ => None,
    }
}

/// Checks and drains the actions of one event (see the module docs for what must hold).
fn check(slots: &[Slot; SLOTS], out: &mut Vec<ToNet>) {
    let kind = |conn: &ConnId| {
        let slot = &slots[conn.slot as usize];
        assert!(
            slot.generation == conn.generation && slot.open.is_some(),
            "action for {conn:?}, which is not open"
        );
        slot.open.unwrap()
    };
    let frame_to = |to: &[ConnId], frame: &[u8]| {
        let payload = text_payload(frame).expect("one complete text frame");
        let text = std::str::from_utf8(payload).expect("text frames carry UTF-8");
        for conn in to {
            match kind(conn) {
                Dialect::Protocol => {
                    let name = text.split('(').next().unwrap();
                    assert!(
                        !name.is_empty()
                            && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                            && text.ends_with(')'),
                        "protocol connection {conn:?} sent {text:?}"
                    );
                }
                Dialect::Json => {
                    let value: Result<serde_json::Value, _> = serde_json::from_str(text);
                    assert!(
                        matches!(value, Ok(serde_json::Value::Object(_))),
                        "JSON connection {conn:?} sent {text:?}"
                    );
                }
                Dialect::RoomUrl => {}
            }
        }
    };
    for action in out.drain(..) {
        match action {
            ToNet::Send { to, frame } => frame_to(&[to], &frame),
            ToNet::SendMany { to, except, frame } => {
                let to: Vec<ConnId> = to.iter().copied().filter(|&c| Some(c) != except).collect();
                assert!(!to.is_empty(), "a broadcast to nobody");
                let mut sorted = to.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), to.len(), "a recipient listed twice: {to:?}");
                frame_to(&to, &frame);
            }
            ToNet::Close { conn, code, .. } => {
                kind(&conn);
                assert!((1000..5000).contains(&code), "close code {code}");
            }
            ToNet::Hold { conn, .. } | ToNet::Admit { conn, .. } | ToNet::Http { conn, .. } => {
                kind(&conn);
            }
        }
    }
}
