//! Scripted conversations with the chat logic, written as clients speak on the wire: each
//! step is what one client does and exactly what every client then receives. The same scripts
//! run as unit tests and as `websocket test chat`, so a deployed binary checks itself against
//! the examples of the protocol documents.

use crate::chat::{ConnId, Entry};
use crate::dialect;
use crate::events::{ToLogic, ToNet};
use crate::logic::Logic;
use crate::ws;

/// The server password of every script.
pub const PASSWORD: &[u8] = b"pw";
/// The unix time every script runs at.
pub const NOW: u64 = 1_700_000_000;

/// What a client does.
#[derive(Debug, Clone, Copy)]
pub enum Act {
    /// Connects with the command protocol.
    OpenProtocol,
    /// Connects with the JSON dialect.
    OpenJson,
    /// Connects to the room URL of `room` as `nickname`.
    OpenRoom {
        room: &'static str,
        nickname: &'static str,
    },
    /// Sends one message in the client's dialect.
    Send(&'static str),
    /// Disconnects.
    Close,
}

/// Client `client` does `act`; then client `c` must receive exactly the messages `(c, _)` of
/// `want`, in order, and nobody anything else. A JSON `session_id` reads as `"..."`.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub client: usize,
    pub act: Act,
    pub want: &'static [(usize, &'static str)],
}

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// `docs/protocol.md` §8, then a few errors and a disconnect (§7).
pub const PROTOCOL_EXAMPLE: &[Step] = &[
    step(A, Act::OpenProtocol, &[(A, "yourchatclientid(1,)")]),
    step(B, Act::OpenProtocol, &[(B, "yourchatclientid(2,)")]),
    send(
        A,
        "addchatroom(1,5,lobby0,0,0,)",
        &[
            (A, "chatroomcreated(1,1,5,lobby9,1,)"),
            (B, "chatroomcreated(1,1,5,lobby8,1,)"),
        ],
    ),
    send(
        B,
        "joinchatroom(7,1,0,0,)",
        &[
            (A, "userjoinedchatroom(7,1,2,0,0,2,)"),
            (B, "userjoinedchatroom(7,1,2,0,0,2,)"),
        ],
    ),
    send(
        A,
        "send(2,1,6,hello!)",
        &[(A, "chat(2,1,1,0,6,hello!)"), (B, "chat(2,1,1,0,6,hello!)")],
    ),
    send(
        A,
        "adduser(3,42,5,alice6,secret2,pw)",
        &[(A, "success(3,)")],
    ),
    send(
        A,
        "login(4,5,alice6,secret)",
        &[
            (A, "userjoinedchatroom(4,1,1,42,5,alice2,)"),
            (A, "success(4,)"),
            (B, "userjoinedchatroom(4,1,1,42,5,alice2,)"),
        ],
    ),
    send(
        B,
        "sendto(8,0,42,2,hi)",
        &[(A, "msg(8,2,0,2,hi)"), (B, "success(8,)")],
    ),
    send(
        B,
        "getchatroomdetails(9,1)",
        &[(B, "chatroomdetails(9,1,5,lobby9,2,0,)")],
    ),
    send(
        B,
        "leavechatroom(10,1)",
        &[
            (A, "userleftchatroom(10,1,2,0,0,1,)"),
            (B, "userleftchatroom(10,1,2,0,0,1,)"),
        ],
    ),
    send(
        B,
        "hello",
        &[(B, "error(32,That message was not understood.)")],
    ),
    send(
        B,
        "send(11,1,2,hi)",
        &[(B, "error(28,You're not in that chatroom.11,)")],
    ),
    send(
        B,
        "send(12,1,9,hi)",
        &[(B, "error(27,Syntax error in parameters.12,)")],
    ),
    send(
        A,
        "getchatroomlist(13)",
        &[(A, "chatroomlist(13,1,5,lobby9,1,)")],
    ),
    // A was the last member of the temporary room: it goes, and everyone hears.
    step(A, Act::Close, &[(B, "chatroomwasdeleted(0,1,)")]),
    send(B, "getchatroomlist(14)", &[(B, "chatroomlist(14,)")]),
];

/// The room URL: plain lines in one room.
pub const ROOM_URL_EXAMPLE: &[Step] = &[
    step(A, room("lobby", "ann"), &[(A, "ann joined lobby")]),
    step(
        B,
        room("lobby", "bob"),
        &[(A, "bob joined lobby"), (B, "bob joined lobby")],
    ),
    send(A, "hi, bob", &[(A, "ann: hi, bob"), (B, "ann: hi, bob")]),
    step(B, Act::Close, &[(A, "bob left lobby")]),
];

/// `docs/json-dialect.md` §5, then a command-protocol client and a room-URL client in the
/// same room: each sees the others in its own words.
pub const JSON_EXAMPLE: &[Step] = &[
    step(A, Act::OpenJson, &[]),
    step(B, Act::OpenJson, &[]),
    send(
        A,
        r#"{"cmd":"register","usr":"user1","pwd":"pwd1abcd"}"#,
        &[(A, r#"{"cmd":"register","ok":true,"userid":1}"#)],
    ),
    send(
        A,
        r#"{"cmd":"login","type":"reg","usr":"user1","pwd":"pwd1abcd"}"#,
        &[(
            A,
            r#"{"cmd":"login","ok":true,"session_id":"...","userid":1,"users":["user1"],"rooms":[]}"#,
        )],
    ),
    send(
        B,
        r#"{"cmd":"login","type":"tmp","usr":"anonymous"}"#,
        &[(
            B,
            r#"{"cmd":"login","ok":true,"session_id":"...","userid":0,"users":["user1","anonymous"],"rooms":[]}"#,
        )],
    ),
    send(
        A,
        r#"{"cmd":"create_room","room_name":"nerdhaus","usr":"user1","id":7}"#,
        &[
            (
                A,
                r#"{"cmd":"create_room","id":7,"ok":true,"room":{"name":"nerdhaus","users":["user1"]}}"#,
            ),
            (
                B,
                r#"{"event":"room_created","room_name":"nerdhaus","by":"user1"}"#,
            ),
        ],
    ),
    send(
        B,
        r#"{"cmd":"join_room","room_name":"nerdhaus","usr":"anonymous"}"#,
        &[
            (
                A,
                r#"{"event":"joined","room_name":"nerdhaus","usr":"anonymous"}"#,
            ),
            (
                B,
                r#"{"cmd":"join_room","ok":true,"room":{"name":"nerdhaus","users":["user1","anonymous"]}}"#,
            ),
        ],
    ),
    send(
        A,
        r#"{"cmd":"speak","room_name":"nerdhaus","usr":"user1","msg":"to nerdhaus only"}"#,
        &[
            (A, r#"{"cmd":"speak","ok":true,"epoch":E,"seq":1}"#),
            (
                B,
                r#"{"event":"message","room_name":"nerdhaus","usr":"user1","msg":"to nerdhaus only","epoch":E,"seq":1}"#,
            ),
        ],
    ),
    send(
        B,
        r#"{"cmd":"speak","room_name":"nerdhaus","usr":"user1","msg":"spoof"}"#,
        &[(B, r#"{"cmd":"speak","ok":false,"error":"not you"}"#)],
    ),
    // The same room from the other two dialects.
    step(C, Act::OpenProtocol, &[(C, "yourchatclientid(3,)")]),
    send(
        C,
        "joinchatroom(1,1,0,0,)",
        &[
            (
                A,
                r#"{"event":"joined","room_name":"nerdhaus","usr":"guest3"}"#,
            ),
            (
                B,
                r#"{"event":"joined","room_name":"nerdhaus","usr":"guest3"}"#,
            ),
            (C, "userjoinedchatroom(1,1,3,0,0,3,)"),
        ],
    ),
    step(
        3,
        room("nerdhaus", "dora"),
        &[
            (
                A,
                r#"{"event":"joined","room_name":"nerdhaus","usr":"dora"}"#,
            ),
            (
                B,
                r#"{"event":"joined","room_name":"nerdhaus","usr":"dora"}"#,
            ),
            (C, "userjoinedchatroom(0,1,4,0,4,dora4,)"),
            (3, "dora joined nerdhaus"),
        ],
    ),
    send(
        3,
        "hi all",
        &[
            (
                A,
                r#"{"event":"message","room_name":"nerdhaus","usr":"dora","msg":"hi all","epoch":E,"seq":2}"#,
            ),
            (
                B,
                r#"{"event":"message","room_name":"nerdhaus","usr":"dora","msg":"hi all","epoch":E,"seq":2}"#,
            ),
            (C, "chat(0,1,4,0,6,hi all)"),
            (3, "dora: hi all"),
        ],
    ),
    send(
        C,
        "send(2,1,5,hello)",
        &[
            (
                A,
                r#"{"event":"message","room_name":"nerdhaus","usr":"guest3","msg":"hello","epoch":E,"seq":3}"#,
            ),
            (
                B,
                r#"{"event":"message","room_name":"nerdhaus","usr":"guest3","msg":"hello","epoch":E,"seq":3}"#,
            ),
            (C, "chat(2,1,3,0,5,hello)"),
            (3, "guest3: hello"),
        ],
    ),
    send(
        B,
        r#"{"cmd":"leave_room","room_name":"nerdhaus","usr":"anonymous"}"#,
        &[
            (
                A,
                r#"{"event":"left","room_name":"nerdhaus","usr":"anonymous"}"#,
            ),
            (B, r#"{"cmd":"leave_room","ok":true}"#),
            (C, "userleftchatroom(0,1,2,0,9,anonymous3,)"),
            (3, "anonymous left nerdhaus"),
        ],
    ),
];

const fn step(client: usize, act: Act, want: &'static [(usize, &'static str)]) -> Step {
    Step { client, act, want }
}

const fn send(client: usize, msg: &'static str, want: &'static [(usize, &'static str)]) -> Step {
    step(client, Act::Send(msg), want)
}

const fn room(room: &'static str, nickname: &'static str) -> Act {
    Act::OpenRoom { room, nickname }
}

/// Runs a script against fresh chat logic; `Err` describes the first step whose output
/// differs.
pub fn run(steps: &[Step]) -> Result<(), String> {
    let mut logic = Logic::new(PASSWORD);
    // Per client: its connection and dialect, once opened; and whether it has closed.
    let mut clients: Vec<Option<(ConnId, Entry)>> = Vec::new();
    let mut closed: Vec<ConnId> = Vec::new();
    for (n, s) in steps.iter().enumerate() {
        if clients.len() <= s.client {
            clients.resize(s.client + 1, None);
        }
        let conn = ConnId {
            slot: s.client as u32,
            generation: 1,
        };
        let event = match s.act {
            Act::OpenProtocol | Act::OpenJson | Act::OpenRoom { .. } => {
                let entry = match s.act {
                    Act::OpenProtocol => Entry::Protocol,
                    Act::OpenJson => Entry::Json,
                    Act::OpenRoom { room, nickname } => Entry::RoomUrl {
                        room: room.into(),
                        nickname: nickname.into(),
                        history: 0,
                    },
                    _ => unreachable!(),
                };
                clients[s.client] = Some((conn, entry.clone()));
                ToLogic::Opened {
                    conn,
                    entry,
                    peer: Default::default(),
                }
            }
            Act::Send(msg) => {
                let (conn, entry) = clients[s.client]
                    .clone()
                    .ok_or_else(|| format!("step {n}: client {} is not open", s.client))?;
                let request = dialect::parse(entry.dialect(), msg.as_bytes());
                ToLogic::Request { conn, request }
            }
            Act::Close => {
                closed.push(conn);
                ToLogic::Closed { conn }
            }
        };
        let mut out = Vec::new();
        logic.handle(event, NOW, &mut out);
        let mut got: Vec<(usize, String)> = Vec::new();
        for action in out {
            let (to, except, text) = match action {
                ToNet::Send { to, frame } => (vec![to], None, decode(&frame)?),
                ToNet::SendMany { to, except, frame } => (to.to_vec(), except, decode(&frame)?),
                ToNet::Close { conn, code, .. } => (vec![conn], None, format!("<close {code}>")),
                ToNet::Hold { conn, on } => (vec![conn], None, format!("<hold {on}>")),
                ToNet::Admit { refused: None, .. } | ToNet::Http { .. } => continue,
                ToNet::Admit {
                    conn,
                    refused: Some((status, _)),
                } => (vec![conn], None, format!("<refused {status}>")),
            };
            for conn in to {
                if Some(conn) == except || closed.contains(&conn) {
                    continue;
                }
                let client = clients
                    .iter()
                    .position(|c| c.as_ref().is_some_and(|(id, _)| *id == conn))
                    .ok_or_else(|| format!("step {n}: output for unknown {conn:?}: {text}"))?;
                got.push((client, text.clone()));
            }
        }
        // Each client's messages in order; clients in order.
        got.sort_by_key(|(c, _)| *c);
        let mut want: Vec<(usize, String)> = s.want.iter().map(|&(c, t)| (c, t.into())).collect();
        want.sort_by_key(|(c, _)| *c);
        if got != want {
            return Err(format!(
                "step {n} (client {} {:?}): expected {want:?}, got {got:?}",
                s.client, s.act
            ));
        }
    }
    Ok(())
}

/// A frame's text, with JSON session ids shown as `...` and history epochs as `E` (both
/// random by design).
fn decode(frame: &[u8]) -> Result<String, String> {
    let text = ws::text_payload(frame).ok_or_else(|| format!("not a text frame: {frame:?}"))?;
    let mut text = String::from_utf8(text.to_vec()).map_err(|e| format!("not UTF-8: {e}"))?;
    const EPOCH: &str = "\"epoch\":";
    if let Some(at) = text.find(EPOCH) {
        let start = at + EPOCH.len();
        let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
        text.replace_range(start..start + digits, "E");
    }
    const KEY: &str = "\"session_id\":\"";
    Ok(match text.find(KEY) {
        Some(at) => {
            let start = at + KEY.len();
            let end = text[start..].find('"').map_or(text.len(), |e| start + e);
            format!("{}...{}", &text[..start], &text[end..])
        }
        None => text,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn protocol_example() {
        super::run(super::PROTOCOL_EXAMPLE).unwrap();
    }

    #[test]
    fn room_url_example() {
        super::run(super::ROOM_URL_EXAMPLE).unwrap();
    }

    #[test]
    fn json_example_and_mixed_dialects() {
        super::run(super::JSON_EXAMPLE).unwrap();
    }
}
