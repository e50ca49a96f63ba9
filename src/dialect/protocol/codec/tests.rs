//! Codec tests: every command shape, every §2 syntax rule, every server message, and property
//! tests (round trips through a strict test-only decoder; arbitrary bytes never panic).

use super::*;
use proptest::prelude::*;

fn secret(s: &str) -> Secret {
    Secret::new(s.as_bytes())
}

fn syntax(mid: Option<u64>) -> Result<Command, ParseError> {
    Err(ParseError::Syntax { mid })
}

fn p(msg: &str) -> Result<Command, ParseError> {
    parse(msg.as_bytes())
}

// ---- command shapes -------------------------------------------------------------------------

#[test]
fn parses_every_command() {
    use Command::*;
    let cases: Vec<(&str, Command)> = vec![
        (
            "addchatroom(1,5,lobby2,q?2,422,pw)",
            AddChatroom {
                mid: 1,
                name: "lobby".into(),
                question: "q?".into(),
                answer: secret("42"),
                server_password: secret("pw"),
            },
        ),
        (
            "adduser(3,42,5,alice6,secret2,pw)",
            AddUser {
                mid: 3,
                userid: 42,
                username: "alice".into(),
                password: secret("secret"),
                server_password: secret("pw"),
            },
        ),
        (
            "getchatroomdetails(9,1)",
            GetChatroomDetails { mid: 9, room: 1 },
        ),
        ("getchatroomlist(4)", GetChatroomList { mid: 4 }),
        (
            "getusers(5,3,2,pw)",
            GetUsers {
                mid: 5,
                status: 3,
                server_password: secret("pw"),
            },
        ),
        (
            "getusersinchatroom(6,2)",
            GetUsersInChatroom { mid: 6, room: 2 },
        ),
        (
            "joinchatroom(7,1,1,3,yes)",
            JoinChatroom {
                mid: 7,
                room: 1,
                leave_others: true,
                answer: secret("yes"),
            },
        ),
        ("leavechatroom(10,1)", LeaveChatroom { mid: 10, room: 1 }),
        (
            "login(4,5,alice6,secret)",
            Login {
                mid: 4,
                username: "alice".into(),
                password: secret("secret"),
            },
        ),
        (
            "logout(11,1)",
            Logout {
                mid: 11,
                disconnect: true,
            },
        ),
        ("nop()", Nop),
        (
            "removechatroom(12,3,2,pw)",
            RemoveChatroom {
                mid: 12,
                room: 3,
                server_password: secret("pw"),
            },
        ),
        (
            "removeuser(13,42,2,pw)",
            RemoveUser {
                mid: 13,
                userid: 42,
                server_password: secret("pw"),
            },
        ),
        (
            "send(2,1,6,hello!)",
            Send {
                mid: 2,
                room: 1,
                message: "hello!".into(),
            },
        ),
        (
            "sendto(8,0,42,2,hi)",
            SendTo {
                mid: 8,
                client: 0,
                userid: 42,
                message: "hi".into(),
            },
        ),
        (
            "sendtoall(2,pw14,3,all)",
            SendToAll {
                server_password: secret("pw"),
                mid: 14,
                message: "all".into(),
            },
        ),
        (
            "sendsnap(15,42,60,5,4,boo!)",
            SendSnap {
                mid: 15,
                to_userid: 42,
                expire: 60,
                readtime: 5,
                message: "boo!".into(),
            },
        ),
        ("getsnaps(16)", GetSnaps { mid: 16 }),
        ("readsnap(17,3)", ReadSnap { mid: 17, snap: 3 }),
    ];
    for (msg, want) in cases {
        assert_eq!(p(msg), Ok(want), "{msg}");
    }
}

#[test]
fn missing_trailing_fields_take_defaults() {
    assert_eq!(
        p("addchatroom(1,5,lobby)"),
        Ok(Command::AddChatroom {
            mid: 1,
            name: "lobby".into(),
            question: String::new(),
            answer: Secret::default(),
            server_password: Secret::default(),
        })
    );
    assert_eq!(
        p("getchatroomlist()"),
        Ok(Command::GetChatroomList { mid: 0 })
    );
    assert_eq!(
        p("logout(3)"),
        Ok(Command::Logout {
            mid: 3,
            disconnect: false
        })
    );
    assert_eq!(
        p("leavechatroom(3,)"),
        Ok(Command::LeaveChatroom { mid: 3, room: 0 })
    );
    assert_eq!(
        p("sendtoall()"),
        Ok(Command::SendToAll {
            server_password: Secret::default(),
            mid: 0,
            message: String::new(),
        })
    );
}

#[test]
fn the_spec_example_fields_parse_with_empty_strings() {
    assert_eq!(
        p("addchatroom(1,5,lobby0,0,0,)"),
        Ok(Command::AddChatroom {
            mid: 1,
            name: "lobby".into(),
            question: String::new(),
            answer: Secret::default(),
            server_password: Secret::default(),
        })
    );
    assert_eq!(
        p("joinchatroom(7,1,0,0,)"),
        Ok(Command::JoinChatroom {
            mid: 7,
            room: 1,
            leave_others: false,
            answer: Secret::default(),
        })
    );
}

#[test]
fn empty_number_is_zero() {
    assert_eq!(
        p("getchatroomdetails(,)"),
        Ok(Command::GetChatroomDetails { mid: 0, room: 0 })
    );
    assert_eq!(
        p("getchatroomdetails(5,,)"),
        Ok(Command::GetChatroomDetails { mid: 5, room: 0 })
    );
    // An empty string length is an empty string.
    assert_eq!(
        p("send(1,2,)"),
        Ok(Command::Send {
            mid: 1,
            room: 2,
            message: String::new()
        })
    );
}

#[test]
fn strings_may_hold_commas_and_parens() {
    assert_eq!(
        p("send(1,2,6,(a,b)))"),
        Ok(Command::Send {
            mid: 1,
            room: 2,
            message: "(a,b))".into()
        })
    );
}

#[test]
fn a_comma_after_a_string_starts_the_next_field() {
    // `,` after the name is the (empty, so 0) length of the question; the answer is `2,ok`.
    let Ok(Command::AddChatroom {
        question, answer, ..
    }) = p("addchatroom(1,1,x,2,ok)")
    else {
        panic!()
    };
    assert_eq!(question, "");
    assert_eq!(answer, secret("ok"));
    // For `send` the message is the last field, so the comma is an ignored extra field.
    assert_eq!(
        p("send(1,2,2,hi,)"),
        Ok(Command::Send {
            mid: 1,
            room: 2,
            message: "hi".into()
        })
    );
}

#[test]
fn extra_trailing_fields_are_ignored_even_if_malformed() {
    assert_eq!(
        p("getchatroomlist(4,junk-here,99)"),
        Ok(Command::GetChatroomList { mid: 4 })
    );
    assert_eq!(p("nop(anything at all)"), Ok(Command::Nop));
}

#[test]
fn strings_count_utf8_bytes() {
    assert_eq!(
        p("send(1,2,5,héé)"),
        Ok(Command::Send {
            mid: 1,
            room: 2,
            message: "héé".into()
        })
    );
}

#[test]
fn largest_number_is_accepted() {
    assert_eq!(
        p("getchatroomdetails(9223372036854775807,1)"),
        Ok(Command::GetChatroomDetails {
            mid: i64::MAX as u64,
            room: 1
        })
    );
}

// ---- §2 error cases -----------------------------------------------------------------------

#[test]
fn unknown_names_and_the_empty_message_are_not_understood() {
    for msg in [
        "",
        "hello",
        "nop",
        "Nop()",
        "NOP()",
        "sendx(1)",
        " send(1,1,1,x)",
        "(1)",
        ")",
    ] {
        assert_eq!(p(msg), Err(ParseError::UnknownCommand), "{msg:?}");
    }
}

#[test]
fn missing_closing_paren_is_a_syntax_error_without_mid() {
    assert_eq!(p("nop("), syntax(None));
    assert_eq!(p("getchatroomlist(5"), syntax(None));
    assert_eq!(p("send(1,2,2,hi"), syntax(None));
    assert_eq!(p("send(1,2,2,hi) "), syntax(None));
}

#[test]
fn signs_spaces_and_letters_are_syntax_errors() {
    for msg in [
        "getchatroomlist(-1)",
        "getchatroomlist(+1)",
        "getchatroomlist( 1)",
        "getchatroomlist(1 )",
        "getchatroomlist(x)",
        "getchatroomlist(0x1)",
    ] {
        assert_eq!(p(msg), syntax(None), "{msg}");
    }
    assert_eq!(p("leavechatroom(3,-1)"), syntax(Some(3)));
    assert_eq!(p("leavechatroom(3,1e3)"), syntax(Some(3)));
}

#[test]
fn overflow_is_a_syntax_error() {
    assert_eq!(p("getchatroomlist(9223372036854775808)"), syntax(None));
    assert_eq!(p("getchatroomlist(99999999999999999999999)"), syntax(None));
    assert_eq!(p("readsnap(1,9223372036854775808)"), syntax(Some(1)));
}

#[test]
fn string_length_past_the_end_is_a_syntax_error() {
    assert_eq!(p("send(1,2,3,hi)"), syntax(Some(1)));
    assert_eq!(p("send(1,2,9223372036854775807,hi)"), syntax(Some(1)));
    // A length ended by the closing `)` leaves no bytes for the string.
    assert_eq!(p("send(1,2,5)"), syntax(Some(1)));
}

#[test]
fn invalid_utf8_is_a_syntax_error() {
    assert_eq!(parse(b"send(1,2,2,\xff\xfe)"), syntax(Some(1)));
    // A multi-byte character cut by the length is invalid too.
    assert_eq!(p("send(1,2,1,é)"), syntax(Some(1)));
}

#[test]
fn sendtoall_reads_its_mid_after_the_password() {
    assert_eq!(p("sendtoall(9,pw)"), syntax(None));
    assert_eq!(p("sendtoall(2,pwx)"), syntax(None));
    assert_eq!(p("sendtoall(2,pw7,9,hi)"), syntax(Some(7)));
}

#[test]
fn secrets_are_redacted_and_compared_exactly() {
    let cmd = p("login(1,5,alice6,hunter)").unwrap();
    let shown = format!("{cmd:?}");
    assert!(!shown.contains("hunter"), "{shown}");
    assert!(shown.contains("alice"), "{shown}");
    assert!(secret("pw").matches(&secret("pw")));
    assert!(Secret::default().matches(&Secret::default()));
    for other in ["", "p", "pW", "pww", "wp"] {
        assert!(!secret("pw").matches(&secret(other)), "{other}");
    }
}

// ---- server messages ----------------------------------------------------------------------

fn enc(r: Reply<'_>) -> String {
    let mut buf = Vec::new();
    r.encode(&mut buf);
    String::from_utf8(buf).unwrap()
}

#[test]
fn encodes_every_fixed_shape_message() {
    use Reply::*;
    let cases = [
        (YourChatClientId { client: 7 }, "yourchatclientid(7,)"),
        (Success { mid: 3 }, "success(3,)"),
        (
            Error {
                text: error_text::NOT_UNDERSTOOD,
                mid: None,
            },
            "error(32,That message was not understood.)",
        ),
        (
            Error {
                text: error_text::SYNTAX,
                mid: Some(5),
            },
            "error(27,Syntax error in parameters.5,)",
        ),
        (
            ChatroomCreated {
                mid: 1,
                room: 1,
                name: "lobby",
                info: 9,
                count: 1,
            },
            "chatroomcreated(1,1,5,lobby9,1,)",
        ),
        (
            ChatroomDetails {
                mid: 9,
                room: 1,
                name: "lobby",
                info: 9,
                count: 2,
                question: "",
            },
            "chatroomdetails(9,1,5,lobby9,2,0,)",
        ),
        (
            ChatroomWasDeleted { mid: 0, room: 4 },
            "chatroomwasdeleted(0,4,)",
        ),
        (
            UserJoinedChatroom {
                mid: 4,
                room: 1,
                client: 1,
                user: 42,
                username: "alice",
                count: 2,
            },
            "userjoinedchatroom(4,1,1,42,5,alice2,)",
        ),
        (
            UserLeftChatroom {
                mid: 10,
                room: 1,
                client: 2,
                user: 0,
                username: "",
                count: 1,
            },
            "userleftchatroom(10,1,2,0,0,1,)",
        ),
        (
            Chat {
                mid: 5,
                room: 1,
                client: 3,
                user: 0,
                message: "hello",
            },
            "chat(5,1,3,0,5,hello)",
        ),
        (
            Msg {
                mid: 8,
                client: 2,
                user: 0,
                message: "hi",
            },
            "msg(8,2,0,2,hi)",
        ),
        (
            PrivateMessage {
                client: 1,
                user: 42,
                username: "alice",
                message: "hé",
            },
            "privatemessage(1,42,5,alice3,hé)",
        ),
        (SnapSent { mid: 6, snap: 2 }, "snap_sent(6,2,)"),
        (
            Snap {
                snap: 2,
                to: 42,
                from: 7,
                sent: 1000,
                received: 0,
                readtime: 5,
                message: "x",
            },
            "snap(2,42,7,1000,0,5,1,x)",
        ),
    ];
    for (reply, want) in cases {
        assert_eq!(enc(reply), want);
    }
}

#[test]
fn every_error_text_length_prefix_is_its_byte_length() {
    use error_text::*;
    let texts = [
        (NOT_UNDERSTOOD, 32),
        (SYNTAX, 27),
        (WRONG_SERVER_PASSWORD, 26),
        (USERID_IN_USE, 30),
        (USERNAME_IN_USE, 33),
        (USERID_ZERO, 21),
        (ROOM_NOT_FOUND, 27),
        (INVALID_STATUS, 20),
        (NOT_A_MEMBER, 29),
        (ALREADY_MEMBER, 32),
        (WRONG_ANSWER, 29),
        (NOT_IN_THIS_ROOM, 28),
        (NOT_IN_THAT_ROOM, 28),
        (INCORRECT_LOGIN, 16),
        (ALREADY_LOGGED_OUT, 27),
        (USER_NOT_FOUND, 23),
        (USER_LOGGED_IN, 29),
        (NOT_ONLINE, 26),
        (SENDSNAP_LOGIN, 37),
        (GETSNAPS_LOGIN, 41),
        (READSNAP_LOGIN, 37),
        (SNAP_NOT_FOUND, 23),
        (NOT_YOUR_SNAP, 22),
    ];
    for (text, spec_len) in texts {
        assert_eq!(text.len(), spec_len, "{text}");
        assert_eq!(
            enc(Reply::Error { text, mid: Some(1) }),
            format!("error({spec_len},{text}1,)")
        );
    }
}

#[test]
fn list_writers() {
    let mut buf = Vec::new();
    ChatroomListWriter::new(&mut buf, 3).finish();
    assert_eq!(buf, b"chatroomlist(3,)");
    buf.clear();
    let mut list = ChatroomListWriter::new(&mut buf, 3);
    list.room(1, "a", 9, 1);
    list.room(2, "b,c", 8, 0);
    list.finish();
    assert_eq!(buf, b"chatroomlist(3,1,1,a9,1,2,3,b,c8,0,)");
    buf.clear();
    let mut list = UsersWriter::new(&mut buf, 4);
    list.user(42, "alice", 1);
    list.user(7, "", 2);
    list.finish();
    assert_eq!(buf, b"users(4,42,5,alice1,7,0,2,)");
    buf.clear();
    let mut list = MembersWriter::new(&mut buf, 5, 1);
    list.member(1, 42, "alice");
    list.member(2, 0, "");
    list.finish();
    assert_eq!(buf, b"usersinchatroom(5,1,1,42,5,alice2,0,0,)");
}

// ---- a strict decoder for server messages (test-only) ---------------------------------------

/// A decoded server message: fixed shapes are [`Reply`] itself, so a round trip compares equal.
#[derive(Debug, PartialEq)]
enum Decoded<'a> {
    One(Reply<'a>),
    ChatroomList(u64, Vec<(u64, &'a str, u64, u64)>),
    Users(u64, Vec<(u64, &'a str, u64)>),
    Members(u64, u64, Vec<(u64, u64, &'a str)>),
}

/// Reads server-side fields: a number must have digits and its comma.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn num(&mut self) -> Option<u64> {
        let comma = self.0.iter().position(|&b| b == b',')?;
        let digits = std::str::from_utf8(&self.0[..comma]).ok()?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.0 = &self.0[comma + 1..];
        digits.parse().ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.num()?).ok()?;
        let (s, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        std::str::from_utf8(s).ok()
    }

    fn more(&self) -> bool {
        !self.0.is_empty()
    }
}

fn decode(msg: &[u8]) -> Option<Decoded<'_>> {
    use Reply::*;
    let open = msg.iter().position(|&b| b == b'(')?;
    let mut d = Dec(msg[open + 1..].strip_suffix(b")")?);
    let one = |r| Some(Decoded::One(r));
    let decoded = match &msg[..open] {
        b"yourchatclientid" => one(YourChatClientId { client: d.num()? }),
        b"success" => one(Success { mid: d.num()? }),
        b"error" => {
            let text = d.str()?;
            let mid = if d.more() { Some(d.num()?) } else { None };
            one(Error { text, mid })
        }
        b"chatroomcreated" => one(ChatroomCreated {
            mid: d.num()?,
            room: d.num()?,
            name: d.str()?,
            info: d.num()?,
            count: d.num()?,
        }),
        b"chatroomdetails" => one(ChatroomDetails {
            mid: d.num()?,
            room: d.num()?,
            name: d.str()?,
            info: d.num()?,
            count: d.num()?,
            question: d.str()?,
        }),
        b"chatroomwasdeleted" => one(ChatroomWasDeleted {
            mid: d.num()?,
            room: d.num()?,
        }),
        b"userjoinedchatroom" => one(UserJoinedChatroom {
            mid: d.num()?,
            room: d.num()?,
            client: d.num()?,
            user: d.num()?,
            username: d.str()?,
            count: d.num()?,
        }),
        b"userleftchatroom" => one(UserLeftChatroom {
            mid: d.num()?,
            room: d.num()?,
            client: d.num()?,
            user: d.num()?,
            username: d.str()?,
            count: d.num()?,
        }),
        b"chat" => one(Chat {
            mid: d.num()?,
            room: d.num()?,
            client: d.num()?,
            user: d.num()?,
            message: d.str()?,
        }),
        b"msg" => one(Msg {
            mid: d.num()?,
            client: d.num()?,
            user: d.num()?,
            message: d.str()?,
        }),
        b"privatemessage" => one(PrivateMessage {
            client: d.num()?,
            user: d.num()?,
            username: d.str()?,
            message: d.str()?,
        }),
        b"snap_sent" => one(SnapSent {
            mid: d.num()?,
            snap: d.num()?,
        }),
        b"snap" => one(Snap {
            snap: d.num()?,
            to: d.num()?,
            from: d.num()?,
            sent: d.num()?,
            received: d.num()?,
            readtime: d.num()?,
            message: d.str()?,
        }),
        b"chatroomlist" => {
            let mid = d.num()?;
            let mut rooms = Vec::new();
            while d.more() {
                rooms.push((d.num()?, d.str()?, d.num()?, d.num()?));
            }
            Some(Decoded::ChatroomList(mid, rooms))
        }
        b"users" => {
            let mid = d.num()?;
            let mut users = Vec::new();
            while d.more() {
                users.push((d.num()?, d.str()?, d.num()?));
            }
            Some(Decoded::Users(mid, users))
        }
        b"usersinchatroom" => {
            let (mid, room) = (d.num()?, d.num()?);
            let mut members = Vec::new();
            while d.more() {
                members.push((d.num()?, d.num()?, d.str()?));
            }
            Some(Decoded::Members(mid, room, members))
        }
        _ => None,
    };
    if d.more() { None } else { decoded }
}

/// One fixed-shape reply of kind `kind % 14`, its fields taken from `n` and `s`.
fn reply<'a>(kind: usize, n: &[u64; 7], s: &'a [String; 2], has_mid: bool) -> Reply<'a> {
    use Reply::*;
    let (a, b) = (s[0].as_str(), s[1].as_str());
    match kind % 14 {
        0 => YourChatClientId { client: n[0] },
        1 => Success { mid: n[0] },
        2 => Error {
            text: a,
            mid: has_mid.then_some(n[0]),
        },
        3 => ChatroomCreated {
            mid: n[0],
            room: n[1],
            name: a,
            info: n[2],
            count: n[3],
        },
        4 => ChatroomDetails {
            mid: n[0],
            room: n[1],
            name: a,
            info: n[2],
            count: n[3],
            question: b,
        },
        5 => ChatroomWasDeleted {
            mid: n[0],
            room: n[1],
        },
        6 => UserJoinedChatroom {
            mid: n[0],
            room: n[1],
            client: n[2],
            user: n[3],
            username: a,
            count: n[4],
        },
        7 => UserLeftChatroom {
            mid: n[0],
            room: n[1],
            client: n[2],
            user: n[3],
            username: a,
            count: n[4],
        },
        8 => Chat {
            mid: n[0],
            room: n[1],
            client: n[2],
            user: n[3],
            message: a,
        },
        9 => Msg {
            mid: n[0],
            client: n[1],
            user: n[2],
            message: a,
        },
        10 => PrivateMessage {
            client: n[0],
            user: n[1],
            username: a,
            message: b,
        },
        11 => SnapSent {
            mid: n[0],
            snap: n[1],
        },
        12 => Snap {
            snap: n[0],
            to: n[1],
            from: n[2],
            sent: n[3],
            received: n[4],
            readtime: n[5],
            message: a,
        },
        _ => Error { text: a, mid: None },
    }
}

/// A client message for command kind `kind % 19` in wire form, with the command it must parse to.
fn command(kind: usize, n: &[u64; 5], s: &[String; 4]) -> (String, Command) {
    use Command::*;
    let st = |i: usize| format!("{},{}", s[i].len(), s[i]);
    let sec = |i: usize| Secret::new(s[i].as_bytes());
    let [n0, n1, n2, n3, n4] = *n;
    match kind % 19 {
        0 => (
            format!("addchatroom({n0},{}{}{}{})", st(0), st(1), st(2), st(3)),
            AddChatroom {
                mid: n0,
                name: s[0].clone(),
                question: s[1].clone(),
                answer: sec(2),
                server_password: sec(3),
            },
        ),
        1 => (
            format!("adduser({n0},{n1},{}{}{})", st(0), st(1), st(2)),
            AddUser {
                mid: n0,
                userid: n1,
                username: s[0].clone(),
                password: sec(1),
                server_password: sec(2),
            },
        ),
        2 => (
            format!("getchatroomdetails({n0},{n1})"),
            GetChatroomDetails { mid: n0, room: n1 },
        ),
        3 => (
            format!("getchatroomlist({n0},)"),
            GetChatroomList { mid: n0 },
        ),
        4 => (
            format!("getusers({n0},{n1},{})", st(0)),
            GetUsers {
                mid: n0,
                status: n1,
                server_password: sec(0),
            },
        ),
        5 => (
            format!("getusersinchatroom({n0},{n1},)"),
            GetUsersInChatroom { mid: n0, room: n1 },
        ),
        6 => (
            format!("joinchatroom({n0},{n1},{n2},{})", st(0)),
            JoinChatroom {
                mid: n0,
                room: n1,
                leave_others: n2 != 0,
                answer: sec(0),
            },
        ),
        7 => (
            format!("leavechatroom({n0},{n1})"),
            LeaveChatroom { mid: n0, room: n1 },
        ),
        8 => (
            format!("login({n0},{}{})", st(0), st(1)),
            Login {
                mid: n0,
                username: s[0].clone(),
                password: sec(1),
            },
        ),
        9 => (
            format!("logout({n0},{n1})"),
            Logout {
                mid: n0,
                disconnect: n1 != 0,
            },
        ),
        10 => (format!("nop({n0},{})", st(0)), Nop),
        11 => (
            format!("removechatroom({n0},{n1},{})", st(0)),
            RemoveChatroom {
                mid: n0,
                room: n1,
                server_password: sec(0),
            },
        ),
        12 => (
            format!("removeuser({n0},{n1},{})", st(0)),
            RemoveUser {
                mid: n0,
                userid: n1,
                server_password: sec(0),
            },
        ),
        13 => (
            format!("send({n0},{n1},{})", st(0)),
            Send {
                mid: n0,
                room: n1,
                message: s[0].clone(),
            },
        ),
        14 => (
            format!("sendto({n0},{n1},{n2},{})", st(0)),
            SendTo {
                mid: n0,
                client: n1,
                userid: n2,
                message: s[0].clone(),
            },
        ),
        15 => (
            format!("sendtoall({}{n0},{})", st(0), st(1)),
            SendToAll {
                server_password: sec(0),
                mid: n0,
                message: s[1].clone(),
            },
        ),
        16 => (
            format!("sendsnap({n0},{n1},{n2},{n3},{})", st(0)),
            SendSnap {
                mid: n0,
                to_userid: n1,
                expire: n2,
                readtime: n3,
                message: s[0].clone(),
            },
        ),
        17 => (format!("getsnaps({n0})"), GetSnaps { mid: n0 }),
        _ => (
            format!("readsnap({n0},{n4})"),
            ReadSnap { mid: n0, snap: n4 },
        ),
    }
}

#[test]
fn decoder_rejects_what_the_encoder_never_writes() {
    for bad in [
        "success(3)",
        "success(,)",
        "chat(1,1,1,1,5,hi)",
        "success(3,)x",
        "nosuch(1,)",
        "success(3,4,)",
    ] {
        assert_eq!(decode(bad.as_bytes()), None, "{bad}");
    }
}

proptest! {
    #[test]
    fn fixed_replies_round_trip(
        kind in 0..14usize,
        n in proptest::array::uniform7(any::<u64>()),
        s in proptest::array::uniform2(".{0,40}"),
        has_mid in any::<bool>(),
    ) {
        let r = reply(kind, &n, &s, has_mid);
        let mut buf = Vec::new();
        r.encode(&mut buf);
        prop_assert_eq!(decode(&buf), Some(Decoded::One(r)));
    }

    #[test]
    fn list_replies_round_trip(
        mid in any::<u64>(),
        room in any::<u64>(),
        rooms in proptest::collection::vec((any::<u64>(), ".{0,12}", any::<u64>(), any::<u64>()), 0..20),
        users in proptest::collection::vec((any::<u64>(), ".{0,12}", any::<u64>()), 0..20),
        members in proptest::collection::vec((any::<u64>(), any::<u64>(), ".{0,12}"), 0..20),
    ) {
        let mut buf = Vec::new();
        let mut list = ChatroomListWriter::new(&mut buf, mid);
        for (r, name, info, count) in &rooms {
            list.room(*r, name, *info, *count);
        }
        list.finish();
        let want: Vec<_> = rooms.iter().map(|(r, name, i, c)| (*r, name.as_str(), *i, *c)).collect();
        prop_assert_eq!(decode(&buf), Some(Decoded::ChatroomList(mid, want)));

        let mut buf = Vec::new();
        let mut list = UsersWriter::new(&mut buf, mid);
        for (u, name, st) in &users {
            list.user(*u, name, *st);
        }
        list.finish();
        let want: Vec<_> = users.iter().map(|(u, name, st)| (*u, name.as_str(), *st)).collect();
        prop_assert_eq!(decode(&buf), Some(Decoded::Users(mid, want)));

        let mut buf = Vec::new();
        let mut list = MembersWriter::new(&mut buf, mid, room);
        for (c, u, name) in &members {
            list.member(*c, *u, name);
        }
        list.finish();
        let want: Vec<_> = members.iter().map(|(c, u, name)| (*c, *u, name.as_str())).collect();
        prop_assert_eq!(decode(&buf), Some(Decoded::Members(mid, room, want)));
    }

    #[test]
    fn commands_round_trip_through_the_parser(
        kind in 0..19usize,
        n in proptest::array::uniform5(0..=i64::MAX as u64),
        s in proptest::array::uniform4(".{0,20}"),
    ) {
        let (msg, want) = command(kind, &n, &s);
        prop_assert_eq!(parse(msg.as_bytes()), Ok(want));
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&msg);
    }

    #[test]
    fn parse_never_panics_on_near_valid_messages(
        name in prop::sample::select(vec!["addchatroom", "adduser", "send", "sendtoall", "sendsnap", "login", "nop"]),
        body in "[0-9,()a-z\u{e9}-]{0,40}",
        close in any::<bool>(),
    ) {
        let msg = format!("{name}({body}{}", if close { ")" } else { "" });
        let _ = parse(msg.as_bytes());
    }
}
