//! Codec tests: the shared example tables of [`vectors`] (every command shape, every §2 syntax
//! rule, every server message), checks that they cover every variant, and property tests (round
//! trips through a strict test-only decoder; arbitrary bytes never panic).

use super::*;
use proptest::prelude::*;

fn secret(s: &str) -> Secret {
    Secret::new(s.as_bytes())
}

fn p(msg: &str) -> Result<Command, ParseError> {
    parse(msg.as_bytes())
}

fn enc(r: Reply<'_>) -> String {
    let mut buf = Vec::new();
    r.encode(&mut buf);
    String::from_utf8(buf).unwrap()
}

// ---- the shared vectors (also run by `websocket test codec`) ------------------------------

#[test]
fn parses_every_command_vector() {
    for (msg, want) in vectors::commands() {
        assert_eq!(parse(msg), Ok(want), "{}", String::from_utf8_lossy(msg));
    }
}

#[test]
fn refuses_every_bad_vector() {
    for (msg, want) in vectors::parse_errors() {
        assert_eq!(parse(msg), Err(want), "{}", String::from_utf8_lossy(msg));
    }
}

#[test]
fn encodes_every_reply_vector() {
    for (reply, want) in vectors::replies() {
        assert_eq!(enc(reply), want);
    }
}

#[test]
fn list_writers_write_every_list_vector() {
    for (what, got, want) in vectors::lists() {
        assert_eq!(String::from_utf8(got).unwrap(), want, "{what}");
    }
}

#[test]
fn send_and_chat_carry_every_text_vector() {
    for text in vectors::texts() {
        let wire = format!("send(5,3,{},{text})", text.len());
        assert_eq!(
            parse(wire.as_bytes()),
            Ok(Command::Send {
                mid: 5,
                room: 3,
                message: text.clone(),
            })
        );
        let chat = Reply::Chat {
            mid: 5,
            room: 3,
            client: 1,
            user: 0,
            message: &text,
        };
        assert_eq!(enc(chat), format!("chat(5,3,1,0,{},{text})", text.len()));
    }
}

/// Which `Command` variant, by an exhaustive match: a new variant does not compile until it is
/// listed here, and then [`the_vectors_cover_every_variant`] fails until it has a vector.
fn command_kind(c: &Command) -> usize {
    use Command::*;
    match c {
        AddChatroom { .. } => 0,
        AddUser { .. } => 1,
        GetChatroomDetails { .. } => 2,
        GetChatroomList { .. } => 3,
        GetUsers { .. } => 4,
        GetUsersInChatroom { .. } => 5,
        JoinChatroom { .. } => 6,
        LeaveChatroom { .. } => 7,
        Login { .. } => 8,
        Logout { .. } => 9,
        Nop => 10,
        RemoveChatroom { .. } => 11,
        RemoveUser { .. } => 12,
        Send { .. } => 13,
        SendTo { .. } => 14,
        SendToAll { .. } => 15,
        SendSnap { .. } => 16,
        GetSnaps { .. } => 17,
        ReadSnap { .. } => 18,
        Register { .. } => 19,
        ChangePassword { .. } => 20,
        DeleteAccount { .. } => 21,
        FindUsers { .. } => 22,
        GetHistory { .. } => 23,
        Resume { .. } => 24,
        Sequenced { .. } => 25,
    }
}
const COMMAND_KINDS: usize = 26;

/// Which `Reply` variant; exhaustive for the same reason as [`command_kind`].
fn reply_kind(r: &Reply<'_>) -> usize {
    use Reply::*;
    match r {
        YourChatClientId { .. } => 0,
        Success { .. } => 1,
        Error { .. } => 2,
        ChatroomCreated { .. } => 3,
        ChatroomDetails { .. } => 4,
        ChatroomWasDeleted { .. } => 5,
        UserJoinedChatroom { .. } => 6,
        UserLeftChatroom { .. } => 7,
        Chat { .. } => 8,
        Msg { .. } => 9,
        PrivateMessage { .. } => 10,
        SnapSent { .. } => 11,
        Registered { .. } => 12,
        AccountDeleted { .. } => 13,
        Snap { .. } => 14,
        Queued { .. } => 15,
        OfflineMsg { .. } => 16,
        ChatSeq { .. } => 17,
        Recovered { .. } => 18,
    }
}
const REPLY_KINDS: usize = 19;

#[test]
fn the_vectors_cover_every_variant() {
    let mut commands = [false; COMMAND_KINDS];
    for (_, c) in vectors::commands() {
        commands[command_kind(&c)] = true;
    }
    let missing: Vec<_> = (0..COMMAND_KINDS).filter(|&k| !commands[k]).collect();
    assert!(missing.is_empty(), "commands without a vector: {missing:?}");
    let mut replies = [false; REPLY_KINDS];
    for (r, _) in vectors::replies() {
        replies[reply_kind(&r)] = true;
    }
    let missing: Vec<_> = (0..REPLY_KINDS).filter(|&k| !replies[k]).collect();
    assert!(missing.is_empty(), "replies without a vector: {missing:?}");
}

// ---- properties the tables cannot show --------------------------------------------------

#[test]
fn secrets_are_redacted_and_compared_exactly() {
    for msg in [
        "login(1,5,alice6,hunter)",
        "register(1,5,alice6,hunter)",
        "changepassword(1,6,hunter6,sesame)",
        "deleteaccount(1,6,hunter)",
    ] {
        let shown = format!("{:?}", p(msg).unwrap());
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(!shown.contains("sesame"), "{shown}");
    }
    assert!(format!("{:?}", p("login(1,5,alice6,hunter)")).contains("alice"));
    assert!(secret("pw").matches(&secret("pw")));
    assert!(Secret::default().matches(&Secret::default()));
    for other in ["", "p", "pW", "pww", "wp"] {
        assert!(!secret("pw").matches(&secret(other)), "{other}");
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
        (INVALID_USER_NAME, 18),
        (BAD_PASSWORD, 33),
        (LOGIN_NEEDED, 33),
    ];
    for (text, spec_len) in texts {
        assert_eq!(text.len(), spec_len, "{text}");
        assert_eq!(
            enc(Reply::Error { text, mid: Some(1) }),
            format!("error({spec_len},{text}1,)")
        );
    }
}

// ---- a strict decoder for server messages (test-only) ---------------------------------------

/// A decoded server message: fixed shapes are [`Reply`] itself, so a round trip compares equal.
#[derive(Debug, PartialEq)]
enum Decoded<'a> {
    One(Reply<'a>),
    ChatroomList(u64, Vec<(u64, &'a str, u64, u64)>),
    Users(u64, Vec<(u64, &'a str, u64)>),
    Members(u64, u64, Vec<(u64, u64, &'a str)>),
    FoundUsers(u64, u64, Vec<(u64, &'a str, u64)>),
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
        b"registered" => one(Registered {
            mid: d.num()?,
            user: d.num()?,
        }),
        b"accountdeleted" => one(AccountDeleted {
            mid: d.num()?,
            user: d.num()?,
        }),
        b"queued" => one(Queued { mid: d.num()? }),
        b"offlinemsg" => one(OfflineMsg {
            user: d.num()?,
            username: d.str()?,
            sent: d.num()?,
            message: d.str()?,
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
        b"foundusers" => {
            let (mid, total) = (d.num()?, d.num()?);
            let mut users = Vec::new();
            while d.more() {
                users.push((d.num()?, d.str()?, d.num()?));
            }
            Some(Decoded::FoundUsers(mid, total, users))
        }
        _ => None,
    };
    if d.more() { None } else { decoded }
}

/// One fixed-shape reply of kind `kind % 18`, its fields taken from `n` and `s`.
fn reply<'a>(kind: usize, n: &[u64; 7], s: &'a [String; 2], has_mid: bool) -> Reply<'a> {
    use Reply::*;
    let (a, b) = (s[0].as_str(), s[1].as_str());
    match kind % 18 {
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
        13 => Registered {
            mid: n[0],
            user: n[1],
        },
        14 => AccountDeleted {
            mid: n[0],
            user: n[1],
        },
        15 => Queued { mid: n[0] },
        16 => OfflineMsg {
            user: n[0],
            username: a,
            sent: n[1],
            message: b,
        },
        _ => Error { text: a, mid: None },
    }
}

/// A client message for command kind `kind % 23` in wire form, with the command it must parse to.
fn command(kind: usize, n: &[u64; 5], s: &[String; 4]) -> (String, Command) {
    use Command::*;
    let st = |i: usize| format!("{},{}", s[i].len(), s[i]);
    let sec = |i: usize| Secret::new(s[i].as_bytes());
    let [n0, n1, n2, n3, n4] = *n;
    match kind % 23 {
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
        18 => (
            format!("register({n0},{}{})", st(0), st(1)),
            Register {
                mid: n0,
                username: s[0].clone(),
                password: sec(1),
            },
        ),
        19 => (
            format!("changepassword({n0},{}{})", st(0), st(1)),
            ChangePassword {
                mid: n0,
                old_password: sec(0),
                new_password: sec(1),
            },
        ),
        20 => (
            format!("deleteaccount({n0},{})", st(0)),
            DeleteAccount {
                mid: n0,
                password: sec(0),
            },
        ),
        21 => (
            format!("findusers({n0},{})", st(0)),
            FindUsers {
                mid: n0,
                pattern: s[0].clone(),
            },
        ),
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
        kind in 0..16usize,
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

        let total = room; // any number: it counts matches, listed or not
        let mut buf = Vec::new();
        let mut list = FoundUsersWriter::new(&mut buf, mid, total);
        for (u, name, st) in &users {
            list.user(*u, name, *st);
        }
        list.finish();
        let want: Vec<_> = users.iter().map(|(u, name, st)| (*u, name.as_str(), *st)).collect();
        prop_assert_eq!(decode(&buf), Some(Decoded::FoundUsers(mid, total, want)));
    }

    #[test]
    fn commands_round_trip_through_the_parser(
        kind in 0..23usize,
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
        name in prop::sample::select(vec!["addchatroom", "adduser", "send", "sendtoall", "sendsnap", "login", "nop", "register", "changepassword", "findusers"]),
        body in "[0-9,()a-z\u{e9}-]{0,40}",
        close in any::<bool>(),
    ) {
        let msg = format!("{name}({body}{}", if close { ")" } else { "" });
        let _ = parse(msg.as_bytes());
    }
}
