//! The three dialects over real sockets: the protocol documents' example exchanges (the same
//! scripts the unit tests and `websocket test chat` run, see `websocket::transcript`) replayed
//! step by step through real clients, every JSON error code, the §9 account commands, and
//! hostile JSON.
//!
//! After each step every client that is not a room-URL client is probed: it sends a request
//! with a known reply and must get that reply next, so "receives nothing else" is checked
//! without sleeping.

use crate::common::{Client, RawWs, TestServer};
use serde_json::{Value, json};
use websocket::transcript::{self, Act, Step};

const PROTOCOL_PROBE: &str = "getchatroomdetails(424242,424242)";
const PROTOCOL_PROBE_REPLY: &str = "error(27,That chatroom wasn't found.424242,)";
const JSON_PROBE: &str = r#"{"cmd":"probe","id":"probe"}"#;
const JSON_PROBE_REPLY: &str =
    r#"{"cmd":"probe","id":"probe","ok":false,"error":"unknown command"}"#;

/// One scripted client and how to probe it.
struct Scripted {
    client: Client,
    probe: Option<(&'static str, &'static str)>,
}

/// Replays a transcript through real connections to a real server.
fn replay(steps: &[Step]) {
    let server = TestServer::start();
    let mut clients: Vec<Option<Scripted>> = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        if clients.len() <= step.client {
            clients.resize_with(step.client + 1, || None);
        }
        match step.act {
            Act::OpenProtocol => {
                clients[step.client] = Some(Scripted {
                    client: server.client(),
                    probe: Some((PROTOCOL_PROBE, PROTOCOL_PROBE_REPLY)),
                });
            }
            Act::OpenJson => {
                clients[step.client] = Some(Scripted {
                    client: server.client_at("/json", None),
                    probe: Some((JSON_PROBE, JSON_PROBE_REPLY)),
                });
            }
            Act::OpenRoom { room, nickname } => {
                let path = format!("/ws/chat/{room}/?nickname={nickname}");
                clients[step.client] = Some(Scripted {
                    client: server.client_at(&path, None),
                    probe: None,
                });
            }
            Act::Send(msg) => clients[step.client].as_mut().unwrap().client.send(msg),
            Act::Close => {
                let mut gone = clients[step.client].take().unwrap();
                gone.client.ws.close(None).unwrap();
                let _ = gone.client.expect_close();
            }
        }
        for (i, scripted) in clients.iter_mut().enumerate() {
            let Some(s) = scripted else { continue };
            for &(_, want) in step.want.iter().filter(|(c, _)| *c == i) {
                let got = without_random_ids(s.client.recv());
                assert_eq!(got, want, "step {n}: client {i}");
            }
            if let Some((probe, reply)) = s.probe {
                s.client.send(probe);
                assert_eq!(s.client.recv(), reply, "step {n}: client {i} got more");
            }
        }
    }
}

/// JSON session ids and history epochs are random: shown as `...` and `E`, as the scripts
/// write them.
fn without_random_ids(mut text: String) -> String {
    const EPOCH: &str = "\"epoch\":";
    if let Some(at) = text.find(EPOCH) {
        let start = at + EPOCH.len();
        let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
        text.replace_range(start..start + digits, "E");
    }
    const KEY: &str = "\"session_id\":\"";
    match text.find(KEY) {
        Some(at) => {
            let start = at + KEY.len();
            let end = start + text[start..].find('"').unwrap();
            format!("{}...{}", &text[..start], &text[end..])
        }
        None => text,
    }
}

#[test]
fn protocol_example_over_sockets() {
    replay(transcript::PROTOCOL_EXAMPLE);
}

#[test]
fn room_url_example_over_sockets() {
    replay(transcript::ROOM_URL_EXAMPLE);
}

#[test]
fn json_example_and_mixed_dialects_over_sockets() {
    replay(transcript::JSON_EXAMPLE);
}

/// A JSON client, reached through the `gtchat-json` subprotocol on any path or on `/json`.
fn json_client(server: &TestServer) -> Client {
    server.client_at("/json", None)
}

/// Sends a request and returns the parsed reply.
fn ask(c: &mut Client, request: Value) -> Value {
    c.send(&request.to_string());
    serde_json::from_str(&c.recv()).expect("a JSON reply")
}

/// Asserts that `request` fails with `error`.
fn refused(c: &mut Client, request: Value, error: &str) {
    let reply = ask(c, request.clone());
    assert_eq!(reply["ok"], false, "{request} -> {reply}");
    assert_eq!(reply["error"], error, "{request} -> {reply}");
}

#[test]
fn the_json_subprotocol_selects_the_dialect_on_any_path() {
    let server = TestServer::start();
    let mut c = server.client_at("/anything", Some("gtchat-json"));
    assert_eq!(c.protocol.as_deref(), Some("gtchat-json"));
    let reply = ask(
        &mut c,
        json!({"cmd": "login", "type": "tmp", "usr": "x", "id": 1}),
    );
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["id"], 1);
    // Without it, "/" still speaks the command protocol.
    let (_, id) = server.chat_client();
    assert_eq!(id, 2);
}

#[test]
fn every_json_error_code() {
    let server = TestServer::start_with(&["--rate-limit", "1", "--rate-burst", "60"]);
    let mut a = json_client(&server);
    let mut b = json_client(&server);
    // bad request, unknown command
    a.send("{not json");
    let reply: Value = serde_json::from_str(&a.recv()).unwrap();
    assert_eq!(reply["error"], "bad request");
    assert!(reply["detail"].as_str().unwrap().starts_with("not JSON"));
    refused(&mut a, json!({"cmd": "fly"}), "unknown command");
    // not logged in, bad name, bad password, name taken, bad login
    refused(
        &mut a,
        json!({"cmd": "create_room", "room_name": "r", "usr": "ann"}),
        "not logged in",
    );
    refused(
        &mut a,
        json!({"cmd": "register", "usr": "", "pwd": "password"}),
        "bad name",
    );
    refused(
        &mut a,
        json!({"cmd": "register", "usr": "ann", "pwd": "short"}),
        "bad password",
    );
    let reply = ask(
        &mut a,
        json!({"cmd": "register", "usr": "ann", "pwd": "password"}),
    );
    assert_eq!(reply, json!({"cmd": "register", "ok": true, "userid": 1}));
    refused(
        &mut b,
        json!({"cmd": "register", "usr": "ann", "pwd": "password"}),
        "name taken",
    );
    refused(
        &mut a,
        json!({"cmd": "login", "type": "reg", "usr": "ann", "pwd": "wrong"}),
        "bad login",
    );
    refused(
        &mut b,
        json!({"cmd": "login", "type": "tmp", "usr": "ann"}),
        "name taken",
    );
    assert_eq!(
        ask(
            &mut a,
            json!({"cmd": "login", "usr": "ann", "pwd": "password"})
        )["ok"],
        true
    );
    assert_eq!(
        ask(&mut b, json!({"cmd": "login", "type": "tmp", "usr": "bob"}))["ok"],
        true
    );
    // not you, passwords differ, not registered
    refused(
        &mut b,
        json!({"cmd": "create_room", "room_name": "r", "usr": "ann"}),
        "not you",
    );
    let change = |usr: &str, new2: &str| json!({"cmd": "update_pwd", "usr": usr, "pwd": "password", "new_pwd": "password2", "new_pwd2": new2});
    refused(&mut a, change("ann", "password3"), "passwords differ");
    refused(&mut b, change("bob", "password2"), "not registered");
    assert_eq!(ask(&mut a, change("ann", "password2"))["ok"], true);
    // room exists, no such room, not a member, already in room, wrong answer
    assert_eq!(
        ask(
            &mut a,
            json!({"cmd": "create_room", "room_name": "r", "usr": "ann"})
        )["ok"],
        true
    );
    let event: Value = serde_json::from_str(&b.recv()).unwrap();
    assert_eq!(
        event,
        json!({"event": "room_created", "room_name": "r", "by": "ann"})
    );
    refused(
        &mut b,
        json!({"cmd": "create_room", "room_name": "r", "usr": "bob"}),
        "room exists",
    );
    refused(
        &mut b,
        json!({"cmd": "join_room", "room_name": "nowhere", "usr": "bob"}),
        "no such room",
    );
    refused(
        &mut b,
        json!({"cmd": "speak", "room_name": "r", "usr": "bob", "msg": "x"}),
        "not a member",
    );
    refused(
        &mut a,
        json!({"cmd": "join_room", "room_name": "r", "usr": "ann"}),
        "already in room",
    );
    let mut p = server.client();
    p.recv();
    p.send("addchatroom(1,6,secret4,what1,a,)");
    assert!(p.recv().starts_with("chatroomcreated(1,2,6,secret"));
    let _ = a.recv(); // the room_created event
    let _ = b.recv();
    refused(
        &mut b,
        json!({"cmd": "join_room", "room_name": "secret", "usr": "bob", "answer": "b"}),
        "wrong answer",
    );
    // not online, bad key
    refused(
        &mut a,
        json!({"cmd": "invite", "room_name": "r", "invitee": "zed", "usr": "ann"}),
        "not online",
    );
    refused(
        &mut a,
        json!({"cmd": "speak", "usr": "ann", "broadcast_key": "nope", "msg": "x"}),
        "bad key",
    );
    // rate limited: a burst past the limit is refused, each refusal still answering its id.
    let mut c = json_client(&server);
    for i in 0..70 {
        c.send(&json!({"cmd": "fly", "id": i}).to_string());
    }
    let replies: Vec<Value> = (0..70)
        .map(|_| serde_json::from_str(&c.recv()).unwrap())
        .collect();
    let limited: Vec<&Value> = replies
        .iter()
        .filter(|r| r["error"] == "rate limited")
        .collect();
    assert!(!limited.is_empty(), "no refusal in {replies:?}");
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["id"], i, "replies keep request order");
    }
}

#[test]
fn hostile_json_gets_clear_errors_and_the_connection_stays() {
    let server = TestServer::start();
    let mut c = json_client(&server);
    let bad = [
        "[1,2,3]".to_string(),
        "\"just a string\"".to_string(),
        "null".to_string(),
        r#"{"cmd":["login"]}"#.to_string(),
        r#"{"cmd":"login","usr":1,"pwd":"x"}"#.to_string(),
        r#"{"cmd":"register","usr":"x","pwd":{"deep":true}}"#.to_string(),
        "[".repeat(60_000),
        format!("{}1{}", "[".repeat(200), "]".repeat(200)),
        r#"{"cmd":"login","usr":"x","pwd":"y","id":[1]}"#.to_string(),
    ];
    for msg in &bad {
        c.send(msg);
        let reply: Value = serde_json::from_str(&c.recv()).expect("a JSON reply");
        assert_eq!(reply["ok"], false, "{msg:.50}");
        assert_eq!(reply["error"], "bad request", "{msg:.50}");
        assert!(reply["detail"].is_string());
    }
    // Still served.
    assert_eq!(
        ask(&mut c, json!({"cmd": "login", "type": "tmp", "usr": "x"}))["ok"],
        true
    );

    // Invalid UTF-8: in a text frame the framing layer closes with 1007; in a binary frame
    // the dialect does the same, since JSON is text.
    for opcode in [0x1, 0x2] {
        let mut raw = RawWs::connect(&server.addr(), "/json");
        raw.send_raw(&RawWs::frame(true, opcode, b"{\"cmd\":\"\xff\"}", true));
        let close = loop {
            let f = raw.read_frame().expect("a close frame");
            if f.opcode == 0x8 {
                break f;
            }
        };
        assert_eq!(close.close_code(), Some(1007), "opcode {opcode}");
    }
}

#[test]
fn self_service_accounts_over_the_command_protocol() {
    let server = TestServer::start();
    let (mut a, _) = server.chat_client();
    let (mut b, _) = server.chat_client();
    a.send("register(1,5,alice8,password)");
    assert_eq!(a.recv(), "registered(1,1,)");
    a.send("register(2,5,alice8,password)");
    assert_eq!(a.recv(), "error(33,That user name is already in use.2,)");
    a.send("login(3,5,alice8,password)");
    assert_eq!(a.recv(), "success(3,)");
    b.send("login(4,5,alice8,password)");
    assert_eq!(b.recv(), "success(4,)");
    a.send("changepassword(5,8,password9,password2)");
    assert_eq!(a.recv(), "success(5,)");
    b.send("findusers(6,2,A*)");
    assert_eq!(b.recv(), "foundusers(6,1,1,5,alice1,)");
    a.send("deleteaccount(7,9,password2)");
    assert_eq!(a.recv(), "accountdeleted(7,1,)");
    assert_eq!(a.recv(), "success(7,)");
    assert_eq!(b.recv(), "accountdeleted(7,1,)");
    b.send("findusers(8,0,)");
    assert_eq!(b.recv(), "foundusers(8,0,)");
    b.send("register(9,5,alice8,password)");
    assert_eq!(b.recv(), "registered(9,2,)", "the userid is never reused");
}
