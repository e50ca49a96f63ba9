//! The chat rules, as transcripts through the core and the renderers: events in, the decoded
//! frames out with their recipients.
//!
//! Each output line reads `RECIPIENTS < PAYLOAD` (recipient slots sorted, comma-separated) or
//! `SLOT close CODE`. A line lists everyone who gets that frame, so a connection missing from
//! it is a connection that must not receive it.

use super::Logic;
use crate::chat::{ConnId, Dialect, Entry, Limits, Peer};
use crate::dialect;
use crate::events::{Frame, ToLogic, ToNet};
use crate::ws::text_payload;

/// The server password of every test.
const PW: &[u8] = b"pw";
/// A plausible unix time.
const T0: u64 = 1_700_000_000;

fn c(slot: u32) -> ConnId {
    ConnId {
        slot,
        generation: 0,
    }
}

fn show(action: &ToNet) -> String {
    let payload = |frame: &Frame| {
        String::from_utf8(text_payload(frame).expect("a text frame").to_vec()).expect("UTF-8")
    };
    match action {
        ToNet::Send { to, frame } => format!("{} < {}", to.slot, payload(frame)),
        ToNet::SendMany { to, except, frame } => {
            let to = to.iter().filter(|&&c| Some(c) != *except);
            let mut slots: Vec<u32> = to.map(|c| c.slot).collect();
            slots.sort_unstable();
            let slots: Vec<String> = slots.iter().map(u32::to_string).collect();
            format!("{} < {}", slots.join(","), payload(frame))
        }
        ToNet::Close { conn, code, .. } => format!("{} close {code}", conn.slot),
        ToNet::Hold { conn, on } => format!("{} hold {on}", conn.slot),
        ToNet::Admit { conn, refused } => match refused {
            None => format!("{} admitted", conn.slot),
            Some((status, _)) => format!("{} refused {status}", conn.slot),
        },
        ToNet::Http { conn, reply } => format!("{} http {}", conn.slot, reply.status),
    }
}

struct T {
    logic: Logic,
    /// The dialect of each open slot.
    dialects: std::collections::HashMap<u32, Dialect>,
    now: u64,
}

impl T {
    fn new() -> Self {
        T {
            logic: Logic::new(PW),
            dialects: Default::default(),
            now: T0,
        }
    }

    /// Like [`T::with`], with other quotas.
    fn with_limits(n: u32, limits: Limits) -> Self {
        let mut t = T::new();
        t.logic = Logic::with_limits(PW, limits);
        for i in 1..=n {
            t.open(i);
        }
        t
    }

    /// A server with protocol connections 1..=n open (their greetings dropped).
    fn with(n: u32) -> Self {
        let mut t = T::new();
        for i in 1..=n {
            t.open(i);
        }
        t
    }

    fn raw(&mut self, event: ToLogic) -> Vec<ToNet> {
        let mut out = Vec::new();
        self.logic.handle(event, self.now, &mut out);
        out
    }

    /// The output, without the admission of a room-URL connection (every one is admitted
    /// unless a test says otherwise).
    fn event(&mut self, event: ToLogic) -> Vec<String> {
        let out = self.raw(event);
        let admitted = |a: &&ToNet| matches!(a, ToNet::Admit { refused: None, .. });
        out.iter().filter(|a| !admitted(a)).map(show).collect()
    }

    fn open_entry(&mut self, slot: u32, entry: Entry) -> Vec<String> {
        self.dialects.insert(slot, entry.dialect());
        self.event(ToLogic::Opened {
            conn: c(slot),
            entry,
            peer: Default::default(),
        })
    }

    /// Opens `slot` as if from address `peer`.
    fn open_entry_from(&mut self, slot: u32, entry: Entry, peer: Peer) -> Vec<String> {
        self.dialects.insert(slot, entry.dialect());
        self.event(ToLogic::Opened {
            conn: c(slot),
            entry,
            peer,
        })
    }

    fn open(&mut self, slot: u32) -> Vec<String> {
        self.open_entry(slot, Entry::Protocol)
    }

    fn open_json(&mut self, slot: u32) -> Vec<String> {
        self.open_entry(slot, Entry::Json)
    }

    fn open_url(&mut self, slot: u32, room: &str, nickname: &str) -> Vec<String> {
        let entry = Entry::RoomUrl {
            room: room.into(),
            nickname: nickname.into(),
            history: 0,
        };
        self.open_entry(slot, entry)
    }

    /// Client `slot` sends `msg` in its dialect.
    fn cmd(&mut self, slot: u32, msg: &str) -> Vec<String> {
        let dialect = self
            .dialects
            .get(&slot)
            .copied()
            .unwrap_or(Dialect::Protocol);
        self.event(ToLogic::Request {
            conn: c(slot),
            request: dialect::parse(dialect, msg.as_bytes()),
        })
    }

    /// A room-URL client's line.
    fn text(&mut self, slot: u32, text: &str) -> Vec<String> {
        self.cmd(slot, text)
    }

    fn close(&mut self, slot: u32) -> Vec<String> {
        self.event(ToLogic::Closed { conn: c(slot) })
    }

    fn tick(&mut self) -> Vec<String> {
        self.event(ToLogic::Tick)
    }
}

// ---- connections and parse errors ----------------------------------------------------------

#[test]
fn opening_sends_the_client_id_counting_from_one_never_reused() {
    let mut t = T::new();
    assert_eq!(t.open(1), ["1 < yourchatclientid(1,)"]);
    assert_eq!(t.open(2), ["2 < yourchatclientid(2,)"]);
    assert_eq!(t.close(1), Vec::<String>::new());
    // The same slot, reused by a new connection, gets a new chatclientid.
    let reused = ConnId {
        slot: 1,
        generation: 1,
    };
    let out = t.raw(ToLogic::Opened {
        conn: reused,
        entry: Entry::Protocol,
        peer: Default::default(),
    });
    assert_eq!(
        out.iter().map(show).collect::<Vec<_>>(),
        ["1 < yourchatclientid(3,)"]
    );
}

#[test]
fn parse_errors_are_answered_and_the_connection_stays() {
    let mut t = T::with(1);
    assert_eq!(
        t.cmd(1, "hello"),
        ["1 < error(32,That message was not understood.)"]
    );
    assert_eq!(
        t.cmd(1, ""),
        ["1 < error(32,That message was not understood.)"]
    );
    assert_eq!(
        t.cmd(1, "send(x)"),
        ["1 < error(27,Syntax error in parameters.)"]
    );
    assert_eq!(
        t.cmd(1, "send(5,-1)"),
        ["1 < error(27,Syntax error in parameters.5,)"]
    );
    assert_eq!(t.cmd(1, "getchatroomlist(6)"), ["1 < chatroomlist(6,)"]);
}

#[test]
fn nop_sends_nothing() {
    let mut t = T::with(2);
    assert_eq!(t.cmd(1, "nop()"), Vec::<String>::new());
}

#[test]
fn events_for_unknown_connections_are_ignored() {
    let mut t = T::with(1);
    assert_eq!(t.cmd(9, "addchatroom(1,1,x)"), Vec::<String>::new());
    assert_eq!(t.text(9, "hi"), Vec::<String>::new());
    assert_eq!(t.close(9), Vec::<String>::new());
    assert_eq!(t.cmd(1, "getchatroomlist(2)"), ["1 < chatroomlist(2,)"]);
}

// ---- rooms ---------------------------------------------------------------------------------

#[test]
fn addchatroom_temporary_by_default() {
    let mut t = T::with(3);
    assert_eq!(
        t.cmd(2, "addchatroom(1,5,lobby0,0,0,)"),
        [
            "2 < chatroomcreated(1,1,5,lobby9,1,)",
            "1,3 < chatroomcreated(1,1,5,lobby8,1,)"
        ]
    );
    // A wrong server password is not an error: the room is just temporary.
    assert_eq!(
        t.cmd(1, "addchatroom(2,1,b0,0,2,no)"),
        [
            "1 < chatroomcreated(2,2,1,b9,1,)",
            "2,3 < chatroomcreated(2,2,1,b8,1,)"
        ]
    );
}

#[test]
fn addchatroom_with_the_server_password_is_persistent_and_answers_set_bit_4() {
    let mut t = T::with(2);
    assert_eq!(
        t.cmd(1, "addchatroom(1,1,p0,0,2,pw)"),
        [
            "1 < chatroomcreated(1,1,1,p1,1,)",
            "2 < chatroomcreated(1,1,1,p0,1,)"
        ]
    );
    assert_eq!(
        t.cmd(1, "addchatroom(2,1,q3,why3,yes2,pw)"),
        [
            "1 < chatroomcreated(2,2,1,q5,1,)",
            "2 < chatroomcreated(2,2,1,q4,1,)"
        ]
    );
    assert_eq!(
        t.cmd(2, "addchatroom(3,1,r3,why3,yes0,)"),
        [
            "2 < chatroomcreated(3,3,1,r13,1,)",
            "1 < chatroomcreated(3,3,1,r12,1,)"
        ]
    );
    // A persistent room stays when its last member leaves.
    assert_eq!(
        t.cmd(1, "leavechatroom(4,1)"),
        ["1 < userleftchatroom(4,1,1,0,0,0,)"]
    );
    assert_eq!(
        t.cmd(2, "getchatroomdetails(5,1)"),
        ["2 < chatroomdetails(5,1,1,p0,0,0,)"]
    );
}

#[test]
fn getchatroomdetails() {
    let mut t = T::with(2);
    t.cmd(1, "addchatroom(1,1,q8,question6,secret0,)");
    assert_eq!(
        t.cmd(2, "getchatroomdetails(2,2)"),
        ["2 < error(27,That chatroom wasn't found.2,)"]
    );
    // The answer is never disclosed; info is per asker.
    assert_eq!(
        t.cmd(2, "getchatroomdetails(3,1)"),
        ["2 < chatroomdetails(3,1,1,q12,1,8,question)"]
    );
    assert_eq!(
        t.cmd(1, "getchatroomdetails(4,1)"),
        ["1 < chatroomdetails(4,1,1,q13,1,8,question)"]
    );
}

#[test]
fn getchatroomlist_in_creation_order_with_info_per_receiver() {
    let mut t = T::with(2);
    assert_eq!(t.cmd(1, "getchatroomlist(1)"), ["1 < chatroomlist(1,)"]);
    t.cmd(1, "addchatroom(2,1,a)");
    t.cmd(2, "addchatroom(3,1,b0,0,2,pw)");
    t.cmd(2, "addchatroom(4,1,c0,1,x)");
    assert_eq!(
        t.cmd(1, "getchatroomlist(5)"),
        ["1 < chatroomlist(5,1,1,a9,1,2,1,b0,1,3,1,c12,1,)"]
    );
    assert_eq!(
        t.cmd(2, "getchatroomlist(6)"),
        ["2 < chatroomlist(6,1,1,a8,1,2,1,b1,1,3,1,c13,1,)"]
    );
}

#[test]
fn getchatroomlist_with_1000_rooms() {
    let mut t = T::with_limits(
        2,
        Limits {
            rooms_per_owner: 1000,
            rooms_per_address: 1000,
            ..Limits::default()
        },
    );
    let mut want = String::from("2 < chatroomlist(7,");
    for i in 1..=1000 {
        let name = format!("room{i}");
        t.cmd(1, &format!("addchatroom({i},{},{name})", name.len()));
        want += &format!("{i},{},{name}8,1,", name.len());
    }
    want += ")";
    assert_eq!(t.cmd(2, "getchatroomlist(7)"), [want]);
}

#[test]
fn joinchatroom_errors() {
    let mut t = T::with(2);
    t.cmd(1, "addchatroom(1,1,q0,3,yes)");
    assert_eq!(
        t.cmd(2, "joinchatroom(2,9,0,3,yes)"),
        ["2 < error(27,That chatroom wasn't found.2,)"]
    );
    assert_eq!(
        t.cmd(1, "joinchatroom(3,1,0,3,yes)"),
        ["1 < error(32,You're already in this chatroom.3,)"]
    );
    for wrong in [
        "joinchatroom(4,1,0,3,Yes)",
        "joinchatroom(4,1,0,2,ye)",
        "joinchatroom(4,1,0,4,yess)",
        "joinchatroom(4,1)",
    ] {
        assert_eq!(
            t.cmd(2, wrong),
            ["2 < error(29,Sorry. That answer was wrong.4,)"],
            "{wrong}"
        );
    }
    assert_eq!(
        t.cmd(2, "joinchatroom(5,1,0,3,yes)"),
        ["1,2 < userjoinedchatroom(5,1,2,0,0,2,)"]
    );
}

#[test]
fn joinchatroom_tells_members_only() {
    let mut t = T::with(4);
    t.cmd(1, "addchatroom(1,1,a)");
    assert_eq!(
        t.cmd(2, "joinchatroom(2,1)"),
        ["1,2 < userjoinedchatroom(2,1,2,0,0,2,)"]
    );
    assert_eq!(
        t.cmd(3, "joinchatroom(3,1)"),
        ["1,2,3 < userjoinedchatroom(3,1,3,0,0,3,)"]
    );
}

#[test]
fn joinchatroom_leaving_other_rooms_first() {
    let mut t = T::with(3);
    t.cmd(1, "addchatroom(1,1,a)"); // room 1: temporary, 1 alone
    t.cmd(2, "addchatroom(2,1,b0,0,2,pw)"); // room 2: persistent, 2 and 1
    t.cmd(1, "joinchatroom(3,2)");
    t.cmd(3, "addchatroom(4,1,c)"); // room 3: 3 alone
    assert_eq!(
        t.cmd(1, "joinchatroom(5,3,1)"),
        [
            "1 < userleftchatroom(5,1,1,0,0,0,)",
            "1,2,3 < chatroomwasdeleted(5,1,)",
            "1,2 < userleftchatroom(5,2,1,0,0,1,)",
            "1,3 < userjoinedchatroom(5,3,1,0,0,2,)",
        ]
    );
    assert_eq!(
        t.cmd(1, "getchatroomlist(6)"),
        ["1 < chatroomlist(6,2,1,b0,1,3,1,c9,2,)"]
    );
}

#[test]
fn leavechatroom() {
    let mut t = T::with(3);
    t.cmd(1, "addchatroom(1,1,a)");
    t.cmd(2, "joinchatroom(2,1)");
    assert_eq!(
        t.cmd(3, "leavechatroom(3,9)"),
        ["3 < error(27,That chatroom wasn't found.3,)"]
    );
    assert_eq!(
        t.cmd(3, "leavechatroom(4,1)"),
        ["3 < error(28,You're not in this chatroom.4,)"]
    );
    assert_eq!(
        t.cmd(2, "leavechatroom(5,1)"),
        ["1,2 < userleftchatroom(5,1,2,0,0,1,)"]
    );
    // The last leaver is told too, then everyone learns the temporary room is gone.
    assert_eq!(
        t.cmd(1, "leavechatroom(6,1)"),
        [
            "1 < userleftchatroom(6,1,1,0,0,0,)",
            "1,2,3 < chatroomwasdeleted(6,1,)"
        ]
    );
    assert_eq!(
        t.cmd(1, "leavechatroom(7,1)"),
        ["1 < error(27,That chatroom wasn't found.7,)"]
    );
}

#[test]
fn getusersinchatroom() {
    let mut t = T::with(3);
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    t.cmd(2, "addchatroom(2,1,a)");
    t.cmd(1, "joinchatroom(3,1)");
    t.cmd(1, "login(4,5,alice1,x)");
    assert_eq!(
        t.cmd(3, "getusersinchatroom(5,9)"),
        ["3 < error(27,That chatroom wasn't found.5,)"]
    );
    assert_eq!(
        t.cmd(3, "getusersinchatroom(6,1)"),
        ["3 < error(29,You are not in that chatroom.6,)"]
    );
    assert_eq!(
        t.cmd(1, "getusersinchatroom(7,1)"),
        ["1 < usersinchatroom(7,1,2,0,0,1,42,5,alice)"]
    );
}

#[test]
fn getusersinchatroom_with_1000_members_in_join_order() {
    let mut t = T::new();
    t.open(1);
    t.cmd(1, "addchatroom(1,1,a)");
    let mut want = String::from("1 < usersinchatroom(2,1,1,0,0,");
    for slot in 2..=1000 {
        t.open(slot);
        t.cmd(slot, "joinchatroom(1,1)");
        want += &format!("{slot},0,0,");
    }
    want += ")";
    assert_eq!(t.cmd(1, "getusersinchatroom(2,1)"), [want]);
    // A broadcast to the room is one frame for all 1,000 members.
    let out = t.raw(ToLogic::Request {
        conn: c(5),
        request: dialect::parse(Dialect::Protocol, b"send(3,1,2,hi)"),
    });
    assert!(matches!(&out[..], [ToNet::SendMany { to, .. }] if to.len() == 1000));
}

// ---- users ---------------------------------------------------------------------------------

#[test]
fn adduser_errors_and_success() {
    let mut t = T::with(1);
    assert_eq!(
        t.cmd(1, "adduser(1,42,5,alice1,x2,no)"),
        ["1 < error(26,Incorrect server password.1,)"]
    );
    assert_eq!(
        t.cmd(1, "adduser(2,42,5,alice1,x)"),
        ["1 < error(26,Incorrect server password.2,)"]
    );
    assert_eq!(
        t.cmd(1, "adduser(3,42,5,alice1,x2,pw)"),
        ["1 < success(3,)"]
    );
    assert_eq!(
        t.cmd(1, "adduser(4,42,3,bob1,x2,pw)"),
        ["1 < error(30,That userid is already in use.4,)"]
    );
    assert_eq!(
        t.cmd(1, "adduser(5,43,5,alice1,x2,pw)"),
        ["1 < error(33,That user name is already in use.5,)"]
    );
    assert_eq!(
        t.cmd(1, "adduser(6,0,3,bob1,x2,pw)"),
        ["1 < error(21,Userid must not be 0.6,)"]
    );
    // Checks go in the spec's order: a taken name is reported before userid 0.
    assert_eq!(
        t.cmd(1, "adduser(7,0,5,alice1,x2,pw)"),
        ["1 < error(33,That user name is already in use.7,)"]
    );
    // Usernames are byte-exact.
    assert_eq!(
        t.cmd(1, "adduser(8,43,5,Alice1,x2,pw)"),
        ["1 < success(8,)"]
    );
}

#[test]
fn getusers_filters_by_status_in_added_order() {
    let mut t = T::with(2);
    t.cmd(1, "adduser(1,7,1,a1,x2,pw)");
    t.cmd(1, "adduser(2,3,1,b1,x2,pw)");
    t.cmd(1, "adduser(3,5,1,c1,x2,pw)");
    t.cmd(2, "login(4,1,b1,x)");
    assert_eq!(
        t.cmd(1, "getusers(5,3,2,no)"),
        ["1 < error(26,Incorrect server password.5,)"]
    );
    assert_eq!(
        t.cmd(1, "getusers(6,0,2,pw)"),
        ["1 < error(20,Invalid status code.6,)"]
    );
    assert_eq!(
        t.cmd(1, "getusers(7,4,2,pw)"),
        ["1 < error(20,Invalid status code.7,)"]
    );
    assert_eq!(t.cmd(1, "getusers(8,1,2,pw)"), ["1 < users(8,3,1,b1,)"]);
    assert_eq!(
        t.cmd(1, "getusers(9,2,2,pw)"),
        ["1 < users(9,7,1,a2,5,1,c2,)"]
    );
    assert_eq!(
        t.cmd(1, "getusers(10,3,2,pw)"),
        ["1 < users(10,7,1,a2,3,1,b1,5,1,c2,)"]
    );
    // A password check fails before the status check.
    assert_eq!(
        t.cmd(1, "getusers(11,9)"),
        ["1 < error(26,Incorrect server password.11,)"]
    );
}

#[test]
fn getusers_with_1000_users() {
    let mut t = T::with(1);
    let mut want = String::from("1 < users(2,");
    for u in 1..=1000 {
        let name = format!("user{u}");
        assert_eq!(
            t.cmd(1, &format!("adduser(1,{u},{},{name}1,x2,pw)", name.len())),
            ["1 < success(1,)"]
        );
        want += &format!("{u},{},{name}2,", name.len());
    }
    want += ")";
    assert_eq!(t.cmd(1, "getusers(2,3,2,pw)"), [want]);
}

#[test]
fn login_errors() {
    let mut t = T::with(1);
    t.cmd(1, "adduser(1,42,5,alice6,secret2,pw)");
    assert_eq!(
        t.cmd(1, "login(2,3,bob6,secret)"),
        ["1 < error(16,Incorrect login.2,)"]
    );
    assert_eq!(
        t.cmd(1, "login(3,5,alice6,Secret)"),
        ["1 < error(16,Incorrect login.3,)"]
    );
    assert_eq!(
        t.cmd(1, "login(4,5,alice)"),
        ["1 < error(16,Incorrect login.4,)"]
    );
    assert_eq!(t.cmd(1, "login(5,5,alice6,secret)"), ["1 < success(5,)"]);
}

#[test]
fn login_announces_in_every_room_then_succeeds() {
    let mut t = T::with(3);
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    t.cmd(1, "addchatroom(2,1,a)");
    t.cmd(2, "addchatroom(3,1,b)");
    t.cmd(1, "joinchatroom(4,2)");
    t.cmd(3, "addchatroom(5,1,c)");
    assert_eq!(
        t.cmd(1, "login(6,5,alice1,x)"),
        [
            "1 < userjoinedchatroom(6,1,1,42,5,alice1,)",
            "1,2 < userjoinedchatroom(6,2,1,42,5,alice2,)",
            "1 < success(6,)",
        ]
    );
    // Now alice appears by name.
    assert_eq!(t.cmd(1, "send(7,2,2,hi)"), ["1,2 < chat(7,2,1,42,2,hi)"]);
}

#[test]
fn logging_in_as_another_user_moves_the_connection() {
    let mut t = T::with(1);
    t.cmd(1, "adduser(1,1,1,a1,x2,pw)");
    t.cmd(1, "adduser(2,2,1,b1,x2,pw)");
    t.cmd(1, "login(3,1,a1,x)");
    t.cmd(1, "login(4,1,b1,x)");
    assert_eq!(t.cmd(1, "getusers(5,1,2,pw)"), ["1 < users(5,2,1,b1,)"]);
}

#[test]
fn logout() {
    let mut t = T::with(2);
    assert_eq!(
        t.cmd(1, "logout(1,0)"),
        ["1 < error(27,You are already logged out.1,)"]
    );
    t.cmd(1, "adduser(2,42,5,alice1,x2,pw)");
    t.cmd(1, "addchatroom(3,1,a)");
    t.cmd(2, "joinchatroom(4,1)");
    t.cmd(1, "login(5,5,alice1,x)");
    assert_eq!(
        t.cmd(1, "logout(6,0)"),
        [
            "1,2 < userleftchatroom(6,1,1,42,5,alice1,)",
            "1 < success(6,)"
        ]
    );
    assert_eq!(
        t.cmd(1, "getusers(7,2,2,pw)"),
        ["1 < users(7,42,5,alice2,)"]
    );
    assert_eq!(
        t.cmd(1, "logout(8)"),
        ["1 < error(27,You are already logged out.8,)"]
    );
}

#[test]
fn logout_with_disconnect_leaves_then_closes_with_1000() {
    let mut t = T::with(2);
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    t.cmd(1, "login(2,5,alice1,x)");
    t.cmd(2, "addchatroom(3,1,a)");
    t.cmd(1, "joinchatroom(4,1)");
    assert_eq!(
        t.cmd(1, "logout(5,1)"),
        ["1,2 < userleftchatroom(5,1,1,42,5,alice1,)", "1 close 1000"]
    );
    // The user counts as logged out at once, before the connection is gone.
    assert_eq!(t.cmd(2, "getusers(6,1,2,pw)"), ["2 < users(6,)"]);
    // The close then arrives as a normal disconnect, which has nothing left to do.
    assert_eq!(t.close(1), Vec::<String>::new());
    // Anonymous connections may disconnect this way too.
    assert_eq!(
        t.cmd(2, "logout(7,1)"),
        [
            "2 < userleftchatroom(7,1,2,0,0,0,)",
            "2 < chatroomwasdeleted(7,1,)",
            "2 close 1000"
        ]
    );
}

#[test]
fn removeuser() {
    let mut t = T::with(2);
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    assert_eq!(
        t.cmd(1, "removeuser(2,42,2,no)"),
        ["1 < error(26,Incorrect server password.2,)"]
    );
    assert_eq!(
        t.cmd(1, "removeuser(3,41,2,pw)"),
        ["1 < error(23,That user wasn't found.3,)"]
    );
    t.cmd(2, "login(4,5,alice1,x)");
    assert_eq!(
        t.cmd(1, "removeuser(5,42,2,pw)"),
        ["1 < error(29,That user is still logged in.5,)"]
    );
    t.cmd(2, "logout(6)");
    assert_eq!(t.cmd(1, "removeuser(7,42,2,pw)"), ["1 < success(7,)"]);
    assert_eq!(t.cmd(1, "getusers(8,3,2,pw)"), ["1 < users(8,)"]);
    assert_eq!(
        t.cmd(2, "login(9,5,alice1,x)"),
        ["2 < error(16,Incorrect login.9,)"]
    );
    // Both the userid and the name are free again.
    assert_eq!(
        t.cmd(1, "adduser(10,42,5,alice1,y2,pw)"),
        ["1 < success(10,)"]
    );
}

#[test]
fn removechatroom() {
    let mut t = T::with(3);
    t.cmd(1, "addchatroom(1,1,a)");
    t.cmd(2, "joinchatroom(2,1)");
    assert_eq!(
        t.cmd(3, "removechatroom(3,1,2,no)"),
        ["3 < error(26,Incorrect server password.3,)"]
    );
    assert_eq!(
        t.cmd(3, "removechatroom(4,9,2,pw)"),
        ["3 < error(27,That chatroom wasn't found.4,)"]
    );
    assert_eq!(
        t.cmd(3, "removechatroom(5,1,2,pw)"),
        ["1,2,3 < chatroomwasdeleted(5,1,)", "3 < success(5,)"]
    );
    // Its former members are in no room now: a disconnect tells nobody anything.
    assert_eq!(
        t.cmd(1, "send(6,1,1,x)"),
        ["1 < error(28,You're not in that chatroom.6,)"]
    );
    assert_eq!(t.close(2), Vec::<String>::new());
    assert_eq!(t.cmd(1, "getchatroomlist(7)"), ["1 < chatroomlist(7,)"]);
}

// ---- messages ------------------------------------------------------------------------------

#[test]
fn send_reaches_members_only_sender_included() {
    let mut t = T::with(3);
    t.cmd(1, "addchatroom(1,1,a)");
    t.cmd(2, "joinchatroom(2,1)");
    assert_eq!(
        t.cmd(2, "send(3,1,7,(hi, 1))"),
        ["1,2 < chat(3,1,2,0,7,(hi, 1))"]
    );
    assert_eq!(
        t.cmd(3, "send(4,1,2,hi)"),
        ["3 < error(28,You're not in that chatroom.4,)"]
    );
    assert_eq!(
        t.cmd(3, "send(5,9,2,hi)"),
        ["3 < error(28,You're not in that chatroom.5,)"]
    );
}

#[test]
fn sendto_a_user_reaches_every_connection_logged_in_as_them() {
    let mut t = T::with(4);
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    t.cmd(1, "login(2,5,alice1,x)");
    t.cmd(2, "login(3,5,alice1,x)");
    assert_eq!(
        t.cmd(3, "sendto(4,0,42,2,hi)"),
        ["1,2 < msg(4,3,0,2,hi)", "3 < success(4,)"]
    );
    // The userid wins over the chatclientid.
    assert_eq!(
        t.cmd(3, "sendto(5,4,42,2,hi)"),
        ["1,2 < msg(5,3,0,2,hi)", "3 < success(5,)"]
    );
    // A logged-in sender shows its userid.
    assert_eq!(
        t.cmd(1, "sendto(6,0,42,3,me!)"),
        ["1,2 < msg(6,1,42,3,me!)", "1 < success(6,)"]
    );
}

#[test]
fn sendto_a_chatclientid() {
    let mut t = T::with(3);
    assert_eq!(
        t.cmd(1, "sendto(1,3,0,2,hi)"),
        ["3 < msg(1,1,0,2,hi)", "1 < success(1,)"]
    );
    assert_eq!(
        t.cmd(1, "sendto(2,1,0,4,self)"),
        ["1 < msg(2,1,0,4,self)", "1 < success(2,)"]
    );
}

#[test]
fn sendto_nobody_online() {
    let mut t = T::with(2);
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    // An existing user who is offline gets the message queued, but only from a logged-in
    // sender (§10).
    assert_eq!(
        t.cmd(1, "sendto(2,0,42,2,hi)"),
        ["1 < error(49,You must be logged in to message an offline user.2,)"]
    );
    assert_eq!(
        t.cmd(1, "sendto(3,0,43,2,hi)"),
        ["1 < error(23,That user wasn't found.3,)"]
    );
    assert_eq!(
        t.cmd(1, "sendto(4,9,0,2,hi)"),
        ["1 < error(26,That person is not online.4,)"]
    );
    assert_eq!(
        t.cmd(1, "sendto(5)"),
        ["1 < error(26,That person is not online.5,)"]
    );
    t.close(2);
    assert_eq!(
        t.cmd(1, "sendto(6,2,0,2,hi)"),
        ["1 < error(26,That person is not online.6,)"]
    );
}

#[test]
fn sendtoall() {
    let mut t = T::with(3);
    assert_eq!(
        t.cmd(2, "sendtoall(2,no7,3,all)"),
        ["2 < error(26,Incorrect server password.7,)"]
    );
    assert_eq!(
        t.cmd(2, "sendtoall(2,pw8,3,all)"),
        ["1,2,3 < privatemessage(2,0,0,3,all)", "2 < success(8,)"]
    );
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    t.cmd(1, "login(2,5,alice1,x)");
    assert_eq!(
        t.cmd(1, "sendtoall(2,pw9,0,)"),
        ["1,2,3 < privatemessage(1,42,5,alice0,)", "1 < success(9,)"]
    );
}

// ---- snaps ---------------------------------------------------------------------------------

/// Connections 1 and 2 logged in as alice (42), 3 as bob (7), 4 anonymous.
fn snap_setup() -> T {
    let mut t = T::with(4);
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    t.cmd(1, "adduser(1,7,3,bob1,x2,pw)");
    t.cmd(1, "login(2,5,alice1,x)");
    t.cmd(2, "login(2,5,alice1,x)");
    t.cmd(3, "login(2,3,bob1,x)");
    t
}

#[test]
fn snaps_need_a_login() {
    let mut t = snap_setup();
    assert_eq!(
        t.cmd(4, "sendsnap(1,42,0,0,1,x)"),
        ["4 < error(37,You must be logged in to send a snap.1,)"]
    );
    assert_eq!(
        t.cmd(4, "getsnaps(2)"),
        ["4 < error(41,You need to be logged in to use getsnaps.2,)"]
    );
    assert_eq!(
        t.cmd(4, "readsnap(3,1)"),
        ["4 < error(37,You need to be logged in to readsnap.3,)"]
    );
}

#[test]
fn sendsnap_reaches_snap_enabled_connections_of_the_recipient() {
    let mut t = snap_setup();
    // Nobody has enabled snaps yet: only the sender hears back.
    assert_eq!(t.cmd(3, "sendsnap(1,42,0,5,2,s1)"), ["3 < snap_sent(1,1,)"]);
    assert_eq!(
        t.cmd(1, "getsnaps(2)"),
        ["1 < success(2,)", "1 < snap(1,42,7,1700000000,0,5,2,s1)"]
    );
    t.now += 3;
    assert_eq!(
        t.cmd(3, "sendsnap(3,42,60,5,2,s2)"),
        [
            "3 < snap_sent(3,2,)",
            "1 < snap(2,42,7,1700000003,0,5,2,s2)"
        ]
    );
    // A snap to a user that does not exist (or to userid 0) is refused: nobody could ever
    // read it, so it would only be storage for the sender.
    assert_eq!(
        t.cmd(3, "sendsnap(4,99,0,0,2,s3)"),
        ["3 < error(23,That user wasn't found.4,)"]
    );
    assert_eq!(
        t.cmd(3, "sendsnap(5,0,0,0,2,s3)"),
        ["3 < error(23,That user wasn't found.5,)"]
    );
}

#[test]
fn getsnaps_lists_live_snaps_to_and_from_the_user_oldest_first() {
    let mut t = snap_setup();
    t.cmd(3, "sendsnap(1,42,0,5,1,a)"); // 1: bob -> alice
    t.cmd(1, "sendsnap(2,7,0,5,1,b)"); // 2: alice -> bob
    t.cmd(3, "sendsnap(3,99,0,5,1,c)"); // 3: bob -> 99, not alice's
    t.cmd(3, "sendsnap(4,42,10,5,1,d)"); // 4: bob -> alice, expires at T0 + 10
    t.now += 10;
    assert_eq!(
        t.cmd(2, "getsnaps(5)"),
        [
            "2 < success(5,)",
            "2 < snap(1,42,7,1700000000,0,5,1,a)",
            "2 < snap(2,7,42,1700000000,0,5,1,b)",
        ]
    );
}

#[test]
fn readsnap_errors() {
    let mut t = snap_setup();
    t.cmd(1, "sendsnap(1,42,0,5,1,a)"); // alice -> alice
    assert_eq!(
        t.cmd(3, "readsnap(2,9)"),
        ["3 < error(23,That snap wasn't found.2,)"]
    );
    assert_eq!(
        t.cmd(3, "readsnap(3,1)"),
        ["3 < error(22,That is not your snap.3,)"]
    );
}

#[test]
fn readsnap_by_the_recipient_stamps_it_and_it_goes_readtime_later() {
    let mut t = snap_setup();
    t.cmd(3, "sendsnap(1,42,0,5,1,a)"); // bob -> alice, readtime 5
    t.cmd(3, "getsnaps(2)");
    t.cmd(2, "getsnaps(3)");
    t.now += 2;
    // The reader and bob's snap-enabled connection get the update once each; alice's other,
    // snap-enabled connection does not.
    assert_eq!(
        t.cmd(1, "readsnap(4,1)"),
        ["1,3 < snap(1,42,7,1700000000,1700000002,5,1,a)"]
    );
    t.now += 2;
    // A second read does not restamp; the reader's own enabled connection is not sent it twice.
    assert_eq!(
        t.cmd(2, "readsnap(5,1)"),
        ["2,3 < snap(1,42,7,1700000000,1700000002,5,1,a)"]
    );
    // The sender may read it too.
    assert_eq!(
        t.cmd(3, "readsnap(6,1)"),
        ["2,3 < snap(1,42,7,1700000000,1700000002,5,1,a)"]
    );
    t.now += 1;
    t.tick();
    assert_eq!(
        t.cmd(1, "readsnap(7,1)"),
        ["1,3 < snap(1,42,7,1700000000,1700000002,5,1,a)"]
    );
    t.now += 2; // readtime after the first read
    assert_eq!(t.tick(), Vec::<String>::new());
    assert_eq!(
        t.cmd(1, "readsnap(8,1)"),
        ["1 < error(23,That snap wasn't found.8,)"]
    );
    assert_eq!(t.cmd(2, "getsnaps(9)"), ["2 < success(9,)"]);
}

#[test]
fn snaps_expire_expirelength_after_sending() {
    let mut t = snap_setup();
    t.cmd(3, "sendsnap(1,42,10,100,1,a)");
    t.now += 9;
    t.tick();
    assert_eq!(
        t.cmd(1, "readsnap(2,1)"),
        ["1 < snap(1,42,7,1700000000,1700000009,100,1,a)"]
    );
    // Reading does not extend the life of a snap past its expiry.
    t.now += 1;
    t.tick();
    assert_eq!(
        t.cmd(1, "readsnap(3,1)"),
        ["1 < error(23,That snap wasn't found.3,)"]
    );
    // Expired but not yet swept by a tick is not found either.
    t.cmd(3, "sendsnap(4,42,1,0,1,b)");
    t.now += 1;
    assert_eq!(
        t.cmd(1, "readsnap(5,2)"),
        ["1 < error(23,That snap wasn't found.5,)"]
    );
}

#[test]
fn snap_delivery_is_switched_off_by_logout() {
    let mut t = snap_setup();
    t.cmd(1, "getsnaps(1)");
    t.cmd(1, "logout(2)");
    t.cmd(1, "login(3,5,alice1,x)");
    assert_eq!(t.cmd(3, "sendsnap(4,42,0,0,1,a)"), ["3 < snap_sent(4,1,)"]);
}

#[test]
fn removing_a_user_removes_their_snaps() {
    let mut t = snap_setup();
    t.cmd(3, "sendsnap(1,99,0,0,1,a)");
    t.cmd(1, "adduser(2,99,3,eve1,x2,pw)");
    t.cmd(1, "removeuser(3,99,2,pw)");
    t.cmd(1, "adduser(4,99,3,eve1,x2,pw)");
    t.cmd(4, "login(5,3,eve1,x)");
    assert_eq!(t.cmd(4, "getsnaps(6)"), ["4 < success(6,)"]);
}

// ---- disconnect ----------------------------------------------------------------------------

#[test]
fn disconnect_leaves_every_room_with_messageid_0() {
    let mut t = T::with(3);
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    t.cmd(1, "login(2,5,alice1,x)");
    t.cmd(1, "addchatroom(3,1,a)"); // 1 alone: deleted when 1 goes
    t.cmd(2, "addchatroom(4,1,b)");
    t.cmd(1, "joinchatroom(5,2)");
    t.cmd(1, "addchatroom(6,1,c0,0,2,pw)"); // persistent: stays
    assert_eq!(
        t.close(1),
        [
            "2,3 < chatroomwasdeleted(0,1,)",
            "2 < userleftchatroom(0,2,1,42,5,alice1,)",
        ]
    );
    assert_eq!(
        t.cmd(2, "getusers(7,3,2,pw)"),
        ["2 < users(7,42,5,alice2,)"]
    );
    assert_eq!(
        t.cmd(2, "getchatroomlist(8)"),
        ["2 < chatroomlist(8,2,1,b9,1,3,1,c0,0,)"]
    );
    // The closed connection no longer receives broadcasts.
    assert_eq!(
        t.cmd(2, "sendtoall(2,pw9,1,x)"),
        ["2,3 < privatemessage(2,0,0,1,x)", "2 < success(9,)"]
    );
}

// ---- fan-out -----------------------------------------------------------------------------

#[test]
fn broadcasts_are_one_frame_each() {
    let mut t = T::with(3);
    t.cmd(1, "addchatroom(1,1,a)");
    t.cmd(2, "joinchatroom(2,1)");
    t.cmd(3, "joinchatroom(3,1)");
    let out = t.raw(ToLogic::Request {
        conn: c(1),
        request: dialect::parse(Dialect::Protocol, b"send(4,1,2,hi)"),
    });
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], ToNet::SendMany { to, .. } if to.len() == 3));
}

#[test]
fn tick_alone_sends_nothing() {
    let mut t = T::with(1);
    assert_eq!(t.tick(), Vec::<String>::new());
}

// ---- the room-URL dialect ------------------------------------------------------------------

#[test]
fn url_clients_create_join_and_chat_in_a_room() {
    let mut t = T::with(1);
    assert_eq!(
        t.open_url(2, "Room1", "bob"),
        [
            "1 < chatroomcreated(0,1,5,Room18,1,)",
            "2 < bob joined Room1"
        ]
    );
    assert_eq!(
        t.open_url(3, "Room1", "carol"),
        ["2,3 < carol joined Room1"]
    );
    assert_eq!(
        t.open_url(4, "Room2", "dave"),
        [
            "1 < chatroomcreated(0,2,5,Room28,1,)",
            "4 < dave joined Room2"
        ]
    );
    assert_eq!(t.text(2, "hi, all"), ["2,3 < bob: hi, all"]);
    assert_eq!(t.close(2), ["3 < bob left Room1"]);
    assert_eq!(t.close(3), ["1 < chatroomwasdeleted(0,1,)"]);
}

#[test]
fn url_and_protocol_clients_share_rooms() {
    let mut t = T::with(1);
    t.cmd(1, "addchatroom(1,5,Room1)");
    assert_eq!(
        t.open_url(2, "Room1", "bob"),
        [
            "1 < userjoinedchatroom(0,1,2,0,3,bob2,)",
            "2 < bob joined Room1"
        ]
    );
    assert_eq!(t.text(2, "hé"), ["1 < chat(0,1,2,0,3,hé)", "2 < bob: hé"]);
    assert_eq!(
        t.cmd(1, "send(2,1,2,yo)"),
        ["1 < chat(2,1,1,0,2,yo)", "2 < guest1: yo"]
    );
    assert_eq!(
        t.cmd(1, "getusersinchatroom(3,1)"),
        ["1 < usersinchatroom(3,1,1,0,0,2,0,3,bob)"]
    );
    t.cmd(1, "adduser(4,42,5,alice1,x2,pw)");
    // A login is not a join: room-URL members hear nothing of it.
    assert_eq!(
        t.cmd(1, "login(5,5,alice1,x)"),
        [
            "1 < userjoinedchatroom(5,1,1,42,5,alice2,)",
            "1 < success(5,)"
        ]
    );
    assert_eq!(
        t.cmd(1, "send(6,1,2,yo)"),
        ["1 < chat(6,1,1,42,2,yo)", "2 < alice: yo"]
    );
    assert_eq!(t.open(3), ["3 < yourchatclientid(3,)"]);
    assert_eq!(
        t.cmd(3, "joinchatroom(7,1)"),
        [
            "1,3 < userjoinedchatroom(7,1,3,0,0,3,)",
            "2 < guest3 joined Room1"
        ]
    );
    assert_eq!(
        t.cmd(3, "leavechatroom(8,1)"),
        [
            "1,3 < userleftchatroom(8,1,3,0,0,2,)",
            "2 < guest3 left Room1"
        ]
    );
    assert_eq!(t.close(2), ["1 < userleftchatroom(0,1,2,0,3,bob1,)"]);
}

#[test]
fn url_clients_skip_rooms_that_need_an_answer() {
    let mut t = T::with(1);
    t.cmd(1, "addchatroom(1,5,Room10,3,yes)");
    assert_eq!(
        t.open_url(2, "Room1", "bob"),
        [
            "1 < chatroomcreated(0,2,5,Room18,1,)",
            "2 < bob joined Room1"
        ]
    );
    // Of several rooms with the name, the first one that can be entered is joined.
    t.cmd(1, "addchatroom(2,5,Room1)");
    assert_eq!(
        t.open_url(3, "Room1", "carol"),
        ["2,3 < carol joined Room1"]
    );
}

#[test]
fn removing_a_room_disconnects_its_url_clients() {
    let mut t = T::with(1);
    t.open_url(2, "Room1", "bob");
    assert_eq!(
        t.cmd(1, "removechatroom(1,1,2,pw)"),
        [
            "2 close 1000",
            "1 < chatroomwasdeleted(1,1,)",
            "1 < success(1,)"
        ]
    );
    assert_eq!(t.text(2, "anyone?"), Vec::<String>::new());
    assert_eq!(t.close(2), Vec::<String>::new());
}

// ---- accounts (§9) -------------------------------------------------------------------------

#[test]
fn register_checks_name_and_password_and_never_reuses_a_userid() {
    let mut t = T::with(1);
    assert_eq!(
        t.cmd(1, "register(1,5,alice8,password)"),
        ["1 < registered(1,1,)"]
    );
    // adduser's ids count too: register takes one more than the highest ever used.
    t.cmd(1, "adduser(2,41,3,bob8,password2,pw)");
    assert_eq!(
        t.cmd(1, "register(3,5,carol8,password)"),
        ["1 < registered(3,42,)"]
    );
    assert_eq!(
        t.cmd(1, "register(4,5,alice8,password)"),
        ["1 < error(33,That user name is already in use.4,)"]
    );
    assert_eq!(
        t.cmd(1, "register(5,0,8,password)"),
        ["1 < error(18,Invalid user name.5,)"]
    );
    let long = "x".repeat(65);
    assert_eq!(
        t.cmd(1, &format!("register(6,65,{long}8,password)")),
        ["1 < error(18,Invalid user name.6,)"]
    );
    assert_eq!(
        t.cmd(1, "register(7,3,a\tb8,password)"),
        ["1 < error(18,Invalid user name.7,)"]
    );
    assert_eq!(
        t.cmd(1, "register(8,4,dave7,passwor)"),
        ["1 < error(33,Password must be 8 to 1024 bytes.8,)"]
    );
    let huge = "p".repeat(1025);
    assert_eq!(
        t.cmd(1, &format!("register(9,4,dave1025,{huge})")),
        ["1 < error(33,Password must be 8 to 1024 bytes.9,)"]
    );
    // Registering does not log in; the new account works at once.
    assert_eq!(
        t.cmd(1, "changepassword(10,8,password8,newpass1)"),
        ["1 < error(33,You must be logged in to do that.10,)"]
    );
    assert_eq!(
        t.cmd(1, "login(11,5,alice8,password)"),
        ["1 < success(11,)"]
    );
    // A deleted user's id is not given out again.
    t.cmd(1, "deleteaccount(12,8,password)");
    assert_eq!(
        t.cmd(1, "register(13,5,alice8,password)"),
        ["1 < registered(13,43,)"]
    );
}

#[test]
fn changepassword_needs_the_old_one_and_keeps_other_logins() {
    let mut t = T::with(2);
    t.cmd(1, "register(1,5,alice8,password)");
    t.cmd(1, "login(2,5,alice8,password)");
    t.cmd(2, "login(3,5,alice8,password)");
    assert_eq!(
        t.cmd(1, "changepassword(4,5,wrong8,newpass1)"),
        ["1 < error(16,Incorrect login.4,)"]
    );
    assert_eq!(
        t.cmd(1, "changepassword(5,8,password3,new)"),
        ["1 < error(33,Password must be 8 to 1024 bytes.5,)"]
    );
    assert_eq!(
        t.cmd(1, "changepassword(6,8,password8,newpass1)"),
        ["1 < success(6,)"]
    );
    // The other connection is still alice; the old password no longer works.
    assert_eq!(t.cmd(2, "sendsnap(7,1,0,0,1,x)"), ["2 < snap_sent(7,1,)"]);
    t.open(3);
    assert_eq!(
        t.cmd(3, "login(8,5,alice8,password)"),
        ["3 < error(16,Incorrect login.8,)"]
    );
    assert_eq!(t.cmd(3, "login(9,5,alice8,newpass1)"), ["3 < success(9,)"]);
}

#[test]
fn deleteaccount_logs_out_everywhere_and_frees_the_name() {
    let mut t = T::with(3);
    t.cmd(1, "register(1,5,alice8,password)");
    t.cmd(1, "login(2,5,alice8,password)");
    t.cmd(2, "login(3,5,alice8,password)");
    t.cmd(1, "addchatroom(4,4,room0,0,2,pw)");
    t.cmd(3, "joinchatroom(5,1)");
    t.cmd(1, "sendsnap(6,1,0,0,2,me)");
    assert_eq!(
        t.cmd(1, "deleteaccount(7,5,wrong)"),
        ["1 < error(16,Incorrect login.7,)"]
    );
    assert_eq!(
        t.cmd(1, "deleteaccount(8,8,password)"),
        [
            "1,3 < userleftchatroom(8,1,1,1,5,alice1,)",
            "1 < accountdeleted(8,1,)",
            "2 < accountdeleted(8,1,)",
            "1 < success(8,)"
        ]
    );
    // Both connections are anonymous now; the name is free; the snaps are gone.
    assert_eq!(
        t.cmd(2, "logout(9,0)"),
        ["2 < error(27,You are already logged out.9,)"]
    );
    assert_eq!(
        t.cmd(3, "register(10,5,alice8,password)"),
        ["3 < registered(10,2,)"]
    );
    t.cmd(3, "login(11,5,alice8,password)");
    assert_eq!(t.cmd(3, "getsnaps(12)"), ["3 < success(12,)"]);
    assert_eq!(
        t.cmd(3, "deleteaccount(13,0,)"),
        ["3 < error(16,Incorrect login.13,)"]
    );
    t.open(4);
    assert_eq!(
        t.cmd(4, "deleteaccount(14,8,password)"),
        ["4 < error(33,You must be logged in to do that.14,)"]
    );
}

#[test]
fn findusers_matches_wildcards_in_creation_order_with_the_true_total() {
    let mut t = T::with(2);
    for (i, name) in ["alice", "Alfred", "bob", "al"].iter().enumerate() {
        t.cmd(1, &format!("register({i},{},{name}8,password)", name.len()));
    }
    t.cmd(2, "login(9,5,alice8,password)");
    assert_eq!(
        t.cmd(1, "findusers(10,3,al*)"),
        ["1 < foundusers(10,3,1,5,alice1,2,6,Alfred2,4,2,al2,)"]
    );
    assert_eq!(t.cmd(1, "findusers(11,3,?l?)"), ["1 < foundusers(11,0,)"]);
    assert_eq!(
        t.cmd(1, "findusers(12,4,B?B*)"),
        ["1 < foundusers(12,1,3,3,bob2,)"]
    );
    assert_eq!(
        t.cmd(1, "findusers(13,0,)"),
        ["1 < foundusers(13,4,1,5,alice1,2,6,Alfred2,3,3,bob2,4,2,al2,)"]
    );
    let long = "*".repeat(257);
    assert_eq!(
        t.cmd(1, &format!("findusers(14,257,{long})")),
        ["1 < error(18,Invalid user name.14,)"]
    );
}

#[test]
fn findusers_lists_at_most_1000_but_counts_all() {
    let mut t = T::with(1);
    for i in 0..1005 {
        let name = format!("user{i:04}");
        t.cmd(1, &format!("register(1,{},{name}8,password)", name.len()));
    }
    let out = t.cmd(1, "findusers(2,5,user*)");
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("1 < foundusers(2,1005,1,8,user00002,"));
    assert_eq!(out[0].matches(",user").count(), 1000);
    assert!(out[0].ends_with(",1000,8,user09992,)"));
}

// ---- the JSON dialect's rules ----------------------------------------------------------------

#[test]
fn json_requests_need_a_login_under_the_name_they_give() {
    let mut t = T::new();
    t.open_json(1);
    assert_eq!(
        t.cmd(1, r#"{"cmd":"create_room","room_name":"r","usr":"ann"}"#),
        [r#"1 < {"cmd":"create_room","ok":false,"error":"not logged in"}"#]
    );
    t.cmd(1, r#"{"cmd":"login","type":"tmp","usr":"ann"}"#);
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"create_room","room_name":"r","usr":"bob","id":"x"}"#
        ),
        [r#"1 < {"cmd":"create_room","id":"x","ok":false,"error":"not you"}"#]
    );
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"update_pwd","usr":"ann","pwd":"a","new_pwd":"b","new_pwd2":"b"}"#
        ),
        [r#"1 < {"cmd":"update_pwd","ok":false,"error":"not registered"}"#]
    );
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"update_pwd","usr":"ann","pwd":"a","new_pwd":"b","new_pwd2":"c"}"#
        ),
        [r#"1 < {"cmd":"update_pwd","ok":false,"error":"passwords differ"}"#]
    );
}

#[test]
fn json_guest_names_are_unique_and_not_a_users() {
    let mut t = T::new();
    t.open_json(1);
    t.open_json(2);
    t.cmd(1, r#"{"cmd":"register","usr":"ann","pwd":"password"}"#);
    assert_eq!(
        t.cmd(2, r#"{"cmd":"login","type":"tmp","usr":"ann"}"#),
        [r#"2 < {"cmd":"login","ok":false,"error":"name taken"}"#]
    );
    let ok = |out: Vec<String>| out.len() == 1 && out[0].contains(r#""ok":true"#);
    assert!(ok(t.cmd(1, r#"{"cmd":"login","type":"tmp","usr":"guest"}"#)));
    assert_eq!(
        t.cmd(2, r#"{"cmd":"login","type":"tmp","usr":"guest"}"#),
        [r#"2 < {"cmd":"login","ok":false,"error":"name taken"}"#]
    );
    // Logging in as someone else frees the guest name.
    assert!(ok(t.cmd(
        1,
        r#"{"cmd":"login","type":"reg","usr":"ann","pwd":"password"}"#
    )));
    assert!(ok(t.cmd(2, r#"{"cmd":"login","type":"tmp","usr":"guest"}"#)));
    assert_eq!(
        t.cmd(2, r#"{"cmd":"login","usr":"ann","pwd":"wrong"}"#),
        [r#"2 < {"cmd":"login","ok":false,"error":"bad login"}"#]
    );
}

#[test]
fn json_login_logs_out_first() {
    let mut t = T::new();
    t.open_json(1);
    t.open_json(2);
    t.cmd(1, r#"{"cmd":"login","type":"tmp","usr":"ann"}"#);
    t.cmd(2, r#"{"cmd":"login","type":"tmp","usr":"bob"}"#);
    t.cmd(1, r#"{"cmd":"create_room","room_name":"r","usr":"ann"}"#);
    t.cmd(2, r#"{"cmd":"join_room","room_name":"r","usr":"bob"}"#);
    let out = t.cmd(1, r#"{"cmd":"login","type":"tmp","usr":"cat"}"#);
    assert_eq!(
        out[0],
        r#"2 < {"event":"left","room_name":"r","usr":"ann"}"#
    );
    assert!(
        out[1].starts_with(r#"1 < {"cmd":"login","ok":true,"#),
        "{out:?}"
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn json_rooms_by_name_invitations_and_errors() {
    let mut t = T::new();
    t.open_json(1);
    t.open_json(2);
    t.open(3);
    t.cmd(1, r#"{"cmd":"login","type":"tmp","usr":"ann"}"#);
    t.cmd(2, r#"{"cmd":"login","type":"tmp","usr":"bob"}"#);
    t.cmd(3, "register(1,3,cat8,password)");
    t.cmd(3, "login(2,3,cat8,password)");
    assert_eq!(
        t.cmd(1, r#"{"cmd":"join_room","room_name":"r","usr":"ann"}"#),
        [r#"1 < {"cmd":"join_room","ok":false,"error":"no such room"}"#]
    );
    t.cmd(1, r#"{"cmd":"create_room","room_name":"r","usr":"ann"}"#);
    assert_eq!(
        t.cmd(2, r#"{"cmd":"create_room","room_name":"r","usr":"bob"}"#),
        [r#"2 < {"cmd":"create_room","ok":false,"error":"room exists"}"#]
    );
    assert_eq!(
        t.cmd(1, r#"{"cmd":"join_room","room_name":"r","usr":"ann"}"#),
        [r#"1 < {"cmd":"join_room","ok":false,"error":"already in room"}"#]
    );
    assert_eq!(
        t.cmd(
            2,
            r#"{"cmd":"speak","room_name":"r","usr":"bob","msg":"x"}"#
        ),
        [r#"2 < {"cmd":"speak","ok":false,"error":"not a member"}"#]
    );
    assert_eq!(
        t.cmd(2, r#"{"cmd":"leave_room","room_name":"r","usr":"bob"}"#),
        [r#"2 < {"cmd":"leave_room","ok":false,"error":"not a member"}"#]
    );
    assert_eq!(
        t.cmd(
            2,
            r#"{"cmd":"invite","room_name":"r","invitee":"ann","usr":"bob"}"#
        ),
        [r#"2 < {"cmd":"invite","ok":false,"error":"not a member"}"#]
    );
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"invite","room_name":"r","invitee":"zed","usr":"ann"}"#
        ),
        [r#"1 < {"cmd":"invite","ok":false,"error":"not online"}"#]
    );
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"invite","room_name":"r","invitee":"bob","usr":"ann"}"#
        ),
        [
            r#"2 < {"event":"invited","room_name":"r","inviter":"ann"}"#,
            r#"1 < {"cmd":"invite","ok":true}"#
        ]
    );
    // A command-protocol invitee gets a readable private message.
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"invite","room_name":"r","invitee":"cat","usr":"ann"}"#
        ),
        [
            "3 < msg(0,1,0,33,ann invites you to the chatroom r)",
            r#"1 < {"cmd":"invite","ok":true}"#
        ]
    );
    // A room with a question needs the answer.
    t.cmd(3, "addchatroom(3,1,q1,?1,a,)");
    assert_eq!(
        t.cmd(
            2,
            r#"{"cmd":"join_room","room_name":"q","usr":"bob","answer":"b"}"#
        ),
        [r#"2 < {"cmd":"join_room","ok":false,"error":"wrong answer"}"#]
    );
    let out = t.cmd(
        2,
        r#"{"cmd":"join_room","room_name":"q","usr":"bob","answer":"a"}"#,
    );
    assert_eq!(
        out,
        [
            "3 < userjoinedchatroom(0,2,2,0,3,bob2,)",
            r#"2 < {"cmd":"join_room","ok":true,"room":{"name":"q","users":["cat","bob"]}}"#
        ]
    );
}

#[test]
fn json_broadcast_needs_the_server_password_and_reaches_every_dialect() {
    let mut t = T::new();
    t.open_json(1);
    t.open_json(2);
    t.open(3);
    t.open_url(4, "lobby", "dora");
    t.cmd(1, r#"{"cmd":"login","type":"tmp","usr":"ann"}"#);
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"speak","usr":"ann","broadcast_key":"no","msg":"hi"}"#
        ),
        [r#"1 < {"cmd":"speak","ok":false,"error":"bad key"}"#]
    );
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"speak","usr":"ann","broadcast_key":"pw","msg":"hi"}"#
        ),
        [
            "3 < privatemessage(1,0,3,ann2,hi)",
            "4 < ann: hi",
            r#"2 < {"event":"broadcast","usr":"ann","msg":"hi"}"#,
            r#"1 < {"cmd":"speak","ok":true}"#
        ]
    );
    // sendtoall reaches JSON connections as a broadcast, and the sender too.
    assert_eq!(
        t.cmd(3, "sendtoall(2,pw5,3,all)"),
        [
            "3 < privatemessage(3,0,0,3,all)",
            "4 < guest3: all",
            r#"1,2 < {"event":"broadcast","usr":"guest3","msg":"all"}"#,
            "3 < success(5,)"
        ]
    );
}

#[test]
fn json_connections_hear_private_messages_and_account_deletion() {
    let mut t = T::new();
    t.open(1);
    t.open_json(2);
    t.cmd(1, "register(1,3,ann8,password)");
    t.cmd(2, r#"{"cmd":"login","usr":"ann","pwd":"password"}"#);
    t.cmd(1, "login(2,3,ann8,password)");
    t.open(3);
    assert_eq!(
        t.cmd(3, "sendto(3,0,1,2,hi)"),
        [
            "1 < msg(3,3,0,2,hi)",
            r#"2 < {"event":"private_message","from":"guest3","userid":0,"msg":"hi"}"#,
            "3 < success(3,)"
        ]
    );
    assert_eq!(
        t.cmd(1, "deleteaccount(4,8,password)"),
        [
            "1 < accountdeleted(4,1,)",
            r#"2 < {"event":"account_deleted"}"#,
            "1 < success(4,)"
        ]
    );
    assert_eq!(
        t.cmd(
            2,
            r#"{"cmd":"speak","room_name":"x","usr":"ann","msg":"x"}"#
        ),
        [r#"2 < {"cmd":"speak","ok":false,"error":"not logged in"}"#]
    );
}

#[test]
fn json_bad_requests_are_answered_and_harmless() {
    let mut t = T::new();
    t.open_json(1);
    let bad = |out: Vec<String>, detail: &str| {
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].contains(r#""ok":false,"error":"bad request","detail":"#),
            "{out:?}"
        );
        assert!(out[0].contains(detail), "{out:?} lacks {detail}");
    };
    bad(t.cmd(1, "not json"), "not JSON");
    bad(t.cmd(1, "[1,2]"), "object");
    bad(t.cmd(1, r#"{"usr":"x"}"#), "cmd must be a string");
    bad(t.cmd(1, r#"{"cmd":7}"#), "cmd must be a string");
    bad(
        t.cmd(1, r#"{"cmd":"login","usr":["x"],"pwd":"y"}"#),
        "usr must be a string",
    );
    bad(t.cmd(1, r#"{"cmd":"login","pwd":"y"}"#), "usr is missing");
    bad(
        t.cmd(1, r#"{"cmd":"login","type":"x","usr":"a"}"#),
        "type must be",
    );
    bad(
        t.cmd(1, r#"{"cmd":"speak","usr":"a","msg":"x"}"#),
        "room_name or broadcast_key",
    );
    bad(t.cmd(1, r#"{"cmd":"x","id":{"a":1}}"#), "id must be");
    let deep = "[".repeat(10_000);
    bad(t.cmd(1, &deep), "not JSON");
    // A number id is echoed exactly as given, however large.
    assert_eq!(
        t.cmd(1, r#"{"cmd":"nope","id":123456789012345678901234567890}"#),
        [
            r#"1 < {"cmd":"nope","id":123456789012345678901234567890,"ok":false,"error":"unknown command"}"#
        ]
    );
    assert_eq!(
        t.cmd(
            1,
            r#"{"cmd":"register","usr":"a\u0001","pwd":"password","extra":[1]}"#
        ),
        [r#"1 < {"cmd":"register","ok":false,"error":"bad name"}"#]
    );
}

// ---- offline messages (§10) ----------------------------------------------------------------

#[test]
fn offline_messages_are_queued_and_handed_over_once_at_login() {
    let mut t = T::with(3);
    t.cmd(1, "register(1,3,ann8,password)");
    t.cmd(1, "register(2,3,bob8,password)");
    t.cmd(1, "login(3,3,ann8,password)");
    assert_eq!(t.cmd(1, "sendto(4,0,2,5,first)"), ["1 < queued(4,)"]);
    t.now += 5;
    assert_eq!(t.cmd(1, "sendto(5,0,2,6,second)"), ["1 < queued(5,)"]);
    assert_eq!(
        t.cmd(2, "login(6,3,bob8,password)"),
        [
            "2 < success(6,)",
            &format!("2 < offlinemsg(1,3,ann{},5,first)", T0),
            &format!("2 < offlinemsg(1,3,ann{},6,second)", T0 + 5),
        ]
    );
    // Handed over once: another login of bob finds nothing.
    assert_eq!(t.cmd(3, "login(7,3,bob8,password)"), ["3 < success(7,)"]);
    // Bob is online now: messages go straight to him.
    assert_eq!(
        t.cmd(1, "sendto(8,0,2,3,now)"),
        ["2,3 < msg(8,1,1,3,now)", "1 < success(8,)"]
    );
}

#[test]
fn offline_queues_have_a_cap_and_a_time_to_live() {
    let mut t = T::new();
    t.logic = Logic::with(
        crate::chat::Chat::new(
            PW,
            crate::chat::Limits {
                offline_queue: 2,
                offline_ttl: 60,
                ..Default::default()
            },
            Default::default(),
        ),
        super::Workers::Inline(crate::auth::Hasher::new(crate::auth::Cost::TESTING).unwrap()),
    );
    t.open(1);
    t.open(2);
    t.cmd(1, "register(1,3,ann8,password)");
    t.cmd(1, "register(2,3,bob8,password)");
    t.cmd(1, "login(3,3,ann8,password)");
    assert_eq!(t.cmd(1, "sendto(4,0,2,1,a)"), ["1 < queued(4,)"]);
    assert_eq!(t.cmd(1, "sendto(5,0,2,1,b)"), ["1 < queued(5,)"]);
    assert_eq!(
        t.cmd(1, "sendto(6,0,2,1,c)"),
        ["1 < error(34,That user's message queue is full.6,)"]
    );
    t.now += 61;
    assert_eq!(t.tick(), Vec::<String>::new());
    assert_eq!(t.cmd(2, "login(7,3,bob8,password)"), ["2 < success(7,)"]);
}

#[test]
fn deleting_an_account_drops_what_waits_for_it_but_not_what_it_sent() {
    let mut t = T::with(2);
    t.cmd(1, "register(1,3,ann8,password)");
    t.cmd(1, "register(2,3,bob8,password)");
    t.cmd(1, "register(3,3,cat8,password)");
    t.cmd(1, "login(4,3,cat8,password)");
    t.cmd(1, "sendto(5,0,1,7,for ann)");
    t.cmd(1, "logout(6,0)");
    t.cmd(1, "login(7,3,ann8,password)");
    // ann reads hers (there is one), queues one for bob, and deletes her account.
    t.cmd(1, "sendto(8,0,2,7,for bob)");
    t.cmd(1, "deleteaccount(9,8,password)");
    assert_eq!(
        t.cmd(2, "login(10,3,bob8,password)"),
        [
            "2 < success(10,)",
            &format!("2 < offlinemsg(1,3,ann{T0},7,for bob)")
        ]
    );
}

// ---- requests that wait for a worker -------------------------------------------------------

#[test]
fn requests_behind_a_waiting_one_keep_their_order_and_hold_reads_past_a_backlog() {
    // Hash jobs go to a channel this test answers itself, one at a time, so requests really
    // wait behind each other; nothing is stored.
    let (jobs, pending) = crossbeam_channel::unbounded();
    let chat = crate::chat::Chat::new(PW, Default::default(), Default::default());
    let workers = super::Workers::Threads {
        webhooks: None,
        hashers: jobs,
        store: None,
        cluster: None,
    };
    let mut t = T::new();
    t.logic = Logic::with(chat, workers);
    t.open(1);
    let mut lines = Vec::new();
    for i in 1..=100 {
        let msg = format!("register({i},8,user{}8,password)", 1000 + i);
        lines.extend(t.cmd(1, &msg));
    }
    // One job handed out, the rest queued, and the connection held past 64 of them.
    assert_eq!(lines, ["1 hold true"]);
    let hasher = crate::auth::Hasher::new(crate::auth::Cost::TESTING).unwrap();
    while let Ok((ticket, job)) = pending.try_recv() {
        let result = hasher.run(job);
        lines.extend(t.event(ToLogic::Hashed { ticket, result }));
    }
    let mut want = vec!["1 hold true".to_string()];
    want.extend((1..=100).map(|i| format!("1 < registered({i},{i},)")));
    // Reads resume once the queue is empty.
    want.push("1 hold false".to_string());
    assert_eq!(lines, want);
}

// Quotas and brute force (one abuser cannot hurt anyone else).

/// `error(N,text M,)` as the command protocol words a refusal.
fn err(slot: u32, text: &str, mid: u64) -> String {
    format!("{slot} < error({},{text}{mid},)", text.len())
}

#[test]
fn rooms_per_owner_and_in_total_are_capped() {
    let limits = Limits {
        rooms_per_owner: 2,
        rooms: 4,
        ..Limits::default()
    };
    let mut t = T::with_limits(3, limits);
    t.cmd(1, "addchatroom(1,1,a0,0,0,)");
    t.cmd(1, "addchatroom(2,1,b0,0,0,)");
    assert_eq!(
        t.cmd(1, "addchatroom(3,1,c0,0,0,)"),
        [err(1, "You have made too many chatrooms.", 3)]
    );
    // A persistent room (the server password) is the admin's, not a quota's.
    assert!(t.cmd(1, "addchatroom(4,1,p0,0,2,pw)")[0].starts_with("1 < chatroomcreated(4,"));
    t.cmd(2, "addchatroom(5,1,d0,0,0,)");
    assert_eq!(
        t.cmd(2, "addchatroom(6,1,e0,0,0,)"),
        [err(2, "The server has too many chatrooms.", 6)]
    );
    // Leaving deletes the temporary rooms, which gives the quota back.
    t.cmd(1, "leavechatroom(7,1)");
    assert!(t.cmd(1, "addchatroom(8,1,c0,0,0,)")[0].starts_with("1 < chatroomcreated(8,"));
}

#[test]
fn long_names_questions_and_answers_are_refused() {
    let limits = Limits {
        name_len: 4,
        question_len: 3,
        ..Limits::default()
    };
    let mut t = T::with_limits(1, limits);
    assert_eq!(
        t.cmd(1, "addchatroom(1,5,abcde0,0,0,)"),
        [err(1, "That name is too long.", 1)]
    );
    assert_eq!(
        t.cmd(1, "addchatroom(2,1,a4,what0,0,)"),
        [err(1, "That question is too long.", 2)]
    );
    assert_eq!(
        t.cmd(1, "addchatroom(3,1,a1,q4,abcd0,)"),
        [err(1, "That answer is too long.", 3)]
    );
    assert_eq!(
        t.cmd(1, "adduser(4,9,5,abcde8,password2,pw)"),
        [err(1, "That name is too long.", 4)]
    );
    // adduser refuses what register refuses: empty names and control characters.
    for (m, name) in [(5, ""), (6, "a\nb"), (7, "a\0")] {
        assert_eq!(
            t.cmd(
                1,
                &format!("adduser({m},9,{},{name}8,password2,pw)", name.len())
            ),
            [err(1, "Invalid user name.", m)]
        );
    }
}

#[test]
fn a_full_room_refuses_joiners() {
    let limits = Limits {
        members: 2,
        ..Limits::default()
    };
    let mut t = T::with_limits(3, limits);
    t.cmd(1, "addchatroom(1,1,a0,0,0,)");
    t.cmd(2, "joinchatroom(2,1,0,0,)");
    assert_eq!(
        t.cmd(3, "joinchatroom(3,1,0,0,)"),
        [err(3, "That chatroom is full.", 3)]
    );
}

#[test]
fn snap_quotas_and_lifetimes() {
    let mut t = T::new();
    t.logic = Logic::with_limits(
        PW,
        Limits {
            snaps_per_sender: 2,
            snaps_per_recipient: 3,
            snap_lifetime: 100,
            ..Limits::default()
        },
    );
    for i in 1..=4 {
        t.open(i);
    }
    t.cmd(1, "adduser(1,42,5,alice1,x2,pw)");
    t.cmd(1, "adduser(1,7,3,bob1,x2,pw)");
    t.cmd(1, "adduser(1,8,3,eve1,x2,pw)");
    t.cmd(2, "login(2,5,alice1,x)");
    t.cmd(3, "login(2,3,bob1,x)");
    t.cmd(4, "login(2,3,eve1,x)");
    assert_eq!(
        t.cmd(3, "sendsnap(1,42,101,0,1,x)"),
        [err(3, "That snap would live too long.", 1)]
    );
    assert_eq!(
        t.cmd(3, "sendsnap(2,42,0,101,1,x)"),
        [err(3, "That snap would live too long.", 2)]
    );
    assert_eq!(t.cmd(3, "sendsnap(3,42,0,0,1,x)"), ["3 < snap_sent(3,1,)"]);
    assert_eq!(t.cmd(3, "sendsnap(4,42,50,0,1,x)"), ["3 < snap_sent(4,2,)"]);
    assert_eq!(
        t.cmd(3, "sendsnap(5,42,50,0,1,x)"),
        [err(3, "You have too many snaps waiting.", 5)]
    );
    assert_eq!(t.cmd(4, "sendsnap(6,42,50,0,1,x)"), ["4 < snap_sent(6,3,)"]);
    assert_eq!(
        t.cmd(4, "sendsnap(7,42,50,0,1,x)"),
        [err(4, "That user has too many snaps waiting.", 7)]
    );
    // "No expiry" lives as long as the server keeps snaps, then frees the quota.
    t.now += 100;
    t.event(ToLogic::Tick);
    assert_eq!(t.cmd(3, "sendsnap(8,42,50,0,1,x)"), ["3 < snap_sent(8,4,)"]);
}

#[test]
fn failed_guesses_lock_the_guesser_out_without_checking() {
    let mut t = T::new();
    t.open_entry_from(1, Entry::Protocol, Peer::at(1));
    t.open_entry_from(2, Entry::Protocol, Peer::at(1));
    t.open_entry_from(3, Entry::Protocol, Peer::at(2));
    let wrong = |t: &mut T, slot, m| t.cmd(slot, &format!("getusers({m},3,2,no)"));
    for m in 1..=6 {
        assert_eq!(
            wrong(&mut t, 1, m),
            [err(1, "Incorrect server password.", m)]
        );
    }
    // Six failures: locked out for 1 s, on every connection of the address, even for the
    // right password; another address is not affected.
    let locked = "Too many failed attempts; try again in 1 s.";
    assert_eq!(wrong(&mut t, 2, 7), [err(2, locked, 7)]);
    assert_eq!(t.cmd(1, "getusers(8,3,2,pw)"), [err(1, locked, 8)]);
    assert_eq!(t.cmd(3, "getusers(9,3,2,pw)"), ["3 < users(9,)"]);
    // Lockouts double: 1 s, 2 s, 4 s…
    t.now += 1;
    assert_eq!(
        wrong(&mut t, 1, 10),
        [err(1, "Incorrect server password.", 10)]
    );
    assert_eq!(
        wrong(&mut t, 1, 11),
        [err(1, "Too many failed attempts; try again in 2 s.", 11)]
    );
    t.now += 2;
    assert_eq!(t.cmd(1, "getusers(12,3,2,pw)"), ["1 < users(12,)"]);
    // Room answers count too.
    t.cmd(3, "addchatroom(13,1,r1,q1,a0,)");
    t.now += 10;
    wrong(&mut t, 1, 14);
    assert_eq!(
        t.cmd(1, "joinchatroom(15,1,0,1,b)"),
        [err(1, "Too many failed attempts; try again in 4 s.", 15)]
    );
}

#[test]
fn failed_logins_lock_the_account_from_every_address() {
    let mut t = T::new();
    for slot in 1..=8 {
        t.open_entry_from(slot, Entry::Protocol, Peer::at(u128::from(slot)));
    }
    t.cmd(1, "adduser(1,42,5,alice8,password2,pw)");
    // Each guess from another address: the account still locks after five failures.
    for slot in 2..=7 {
        assert_eq!(
            t.cmd(slot, "login(1,5,alice5,guess)"),
            [err(slot, "Incorrect login.", 1)]
        );
    }
    assert_eq!(
        t.cmd(8, "login(2,5,alice8,password)"),
        [err(8, "Too many failed attempts; try again in 1 s.", 2)]
    );
    t.now += 1;
    assert_eq!(t.cmd(8, "login(3,5,alice8,password)"), ["8 < success(3,)"]);
}

#[test]
fn admin_commands_over_the_rate_limit_pass_with_the_right_password() {
    let mut t = T::with(1);
    let over = |t: &mut T, msg: &str| {
        let mut request = dialect::parse(Dialect::Protocol, msg.as_bytes());
        request.over_rate = true;
        t.event(ToLogic::Request {
            conn: c(1),
            request,
        })
    };
    assert_eq!(over(&mut t, "getusers(1,3,2,pw)"), ["1 < users(1,)"]);
    let limited = "Too many messages; slow down.";
    assert_eq!(over(&mut t, "getusers(2,3,2,no)"), [err(1, limited, 2)]);
    assert_eq!(over(&mut t, "getchatroomlist(3)"), [err(1, limited, 3)]);
}

#[test]
fn room_url_nicknames_cannot_pose_as_someone_else() {
    let mut t = T::with(1);
    t.cmd(1, "adduser(1,42,5,alice8,password2,pw)");
    assert_eq!(t.open_url(2, "lobby", "alice"), ["2 refused 409"]);
    assert_eq!(t.open_url(3, "lobby", "guest1"), ["3 refused 409"]);
    assert_eq!(
        t.open_url(4, "lobby", "ann"),
        [
            "1 < chatroomcreated(0,1,5,lobby8,1,)",
            "4 < ann joined lobby"
        ]
    );
    assert_eq!(t.open_url(5, "lobby", "ann"), ["5 refused 409"]);
    // Same nickname, another room: fine.
    assert!(
        t.open_url(6, "hall", "ann")
            .contains(&"6 < ann joined hall".to_string())
    );
    // A refused connection is unknown to the core: what it sends goes nowhere.
    assert!(t.text(5, "hi").is_empty());
}

#[test]
fn room_url_lines_escape_control_characters() {
    let mut t = T::with(1);
    t.open_url(2, "lobby", "ann");
    t.cmd(1, "joinchatroom(1,1,0,0,)");
    let out = t.cmd(1, "send(2,1,28,hi\nalice: send me a password)");
    assert!(
        out.contains(&r"2 < guest1: hi\nalice: send me a password".to_string()),
        "{out:?}"
    );
    let out = t.text(2, "a\tb\r\x1b[2J");
    assert!(
        out.contains(&r"2 < ann: a	b\r\u{1b}[2J".to_string()),
        "{out:?}"
    );
}

// ---- history and resume (§12) --------------------------------------------------------------

/// The output with the room's epoch (random per room) shown as `E`.
fn epoch_as_e(lines: Vec<String>, epoch: u64) -> Vec<String> {
    let e = epoch.to_string();
    lines.into_iter().map(|l| l.replace(&e, "E")).collect()
}

/// Room 1 made by 1 with 2 in it; returns its epoch, read from a `chatseq`.
fn room_with_sequenced_reader(t: &mut T) -> u64 {
    t.cmd(1, "addchatroom(1,1,r0,0,0,)");
    t.cmd(2, "joinchatroom(2,1,0,0,)");
    assert_eq!(t.cmd(2, "sequenced(3,1)"), ["2 < success(3,)"]);
    let out = t.cmd(1, "send(4,1,1,a)");
    let seq_line = out
        .iter()
        .find(|l| l.starts_with("2 < chatseq"))
        .expect("chatseq");
    // chatseq(M,R,C,U,epoch,seq,message)
    let fields: Vec<&str> = seq_line["2 < chatseq(".len()..].split(',').collect();
    fields[4].parse().expect("epoch")
}

#[test]
fn sequenced_members_see_chatseq_and_the_others_chat_unchanged() {
    let mut t = T::with(3);
    t.cmd(1, "addchatroom(1,1,r0,0,0,)");
    t.cmd(2, "joinchatroom(2,1,0,0,)");
    t.cmd(3, "joinchatroom(3,1,0,0,)");
    assert_eq!(t.cmd(2, "sequenced(4,1)"), ["2 < success(4,)"]);
    let out = t.cmd(1, "send(5,1,1,a)");
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0], "1,3 < chat(5,1,1,0,1,a)");
    let epoch: u64 = out[1]["2 < chatseq(5,1,1,0,".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        epoch_as_e(out, epoch),
        ["1,3 < chat(5,1,1,0,1,a)", "2 < chatseq(5,1,1,0,E,1,1,a)"]
    );
    // The sender itself sequenced: it gets the chatseq frame with the others who asked.
    t.cmd(1, "sequenced(6,1)");
    assert_eq!(
        epoch_as_e(t.cmd(1, "send(7,1,1,b)"), epoch),
        ["3 < chat(7,1,1,0,1,b)", "1,2 < chatseq(7,1,1,0,E,2,1,b)"]
    );
    // Off again: everyone sees chat.
    t.cmd(1, "sequenced(8,0)");
    t.cmd(2, "sequenced(9,0)");
    assert_eq!(t.cmd(1, "send(10,1,1,c)"), ["1,2,3 < chat(10,1,1,0,1,c)"]);
}

#[test]
fn gethistory_pages_backwards_and_resume_recovers_what_was_missed() {
    let mut t = T::with(2);
    let epoch = room_with_sequenced_reader(&mut t);
    for i in 2..=5 {
        t.cmd(1, &format!("send(1,1,1,{i})"));
    }
    let h = |t: &mut T, cmd: &str| epoch_as_e(t.cmd(2, cmd), epoch);
    let s = T0.to_string();
    assert_eq!(
        h(&mut t, "gethistory(5,1,0,2)"),
        [format!("2 < history(5,1,E,4,1,0,0,{s},1,45,1,0,0,{s},1,5)")]
    );
    assert_eq!(
        h(&mut t, "gethistory(6,1,4,2)"),
        [format!("2 < history(6,1,E,2,1,0,0,{s},1,23,1,0,0,{s},1,3)")]
    );
    assert_eq!(h(&mut t, "gethistory(7,1,1,0)"), ["2 < history(7,1,E,)"]);
    // Resume from 3: messages 4 and 5, then complete.
    assert_eq!(
        h(&mut t, &format!("resume(8,1,{epoch},3)")),
        [
            format!("2 < history(8,1,E,4,1,0,0,{s},1,45,1,0,0,{s},1,5)"),
            "2 < recovered(8,1,1,)".to_string()
        ]
    );
    // Up to date: nothing to send, complete.
    assert_eq!(
        h(&mut t, &format!("resume(9,1,{epoch},5)")),
        ["2 < recovered(9,1,1,)"]
    );
    // Another epoch: not recovered, whatever the number.
    assert_eq!(
        h(&mut t, &format!("resume(10,1,{},999)", epoch ^ 1)),
        ["2 < recovered(10,1,0,)"]
    );
    // From the future: an error.
    assert_eq!(
        h(&mut t, &format!("resume(11,1,{epoch},6)")),
        ["2 < error(22,Invalid history range.11,)"]
    );
}

#[test]
fn history_needs_membership_and_a_room() {
    let mut t = T::with(3);
    room_with_sequenced_reader(&mut t);
    assert_eq!(
        t.cmd(3, "gethistory(1,1,0,0)"),
        ["3 < error(28,You're not in that chatroom.1,)"]
    );
    assert_eq!(
        t.cmd(3, "resume(2,1,1,1)"),
        ["3 < error(28,You're not in that chatroom.2,)"]
    );
    assert_eq!(
        t.cmd(3, "gethistory(3,9,0,0)"),
        ["3 < error(27,That chatroom wasn't found.3,)"]
    );
    assert_eq!(
        t.cmd(3, "gethistory(4,1,-1,0)"),
        ["3 < error(27,Syntax error in parameters.4,)"]
    );
    assert_eq!(
        t.cmd(3, "gethistory(5,1,0,99999999999999999999)"),
        ["3 < error(27,Syntax error in parameters.5,)"]
    );
}

#[test]
fn history_keeps_at_most_its_size_and_its_age() {
    let limits = Limits {
        history_size: 3,
        history_ttl: 60,
        ..Default::default()
    };
    let mut t = T::with_limits(2, limits);
    let epoch = room_with_sequenced_reader(&mut t);
    for i in 2..=5 {
        t.cmd(1, &format!("send(1,1,1,{i})"));
    }
    // Messages 3..=5 are kept: resuming from 1 lost message 2.
    assert_eq!(
        t.cmd(2, &format!("resume(2,1,{epoch},1)")),
        ["2 < recovered(2,1,0,)"]
    );
    assert_eq!(t.cmd(2, &format!("resume(3,1,{epoch},2)")).len(), 2);
    t.now += 61;
    t.tick();
    assert_eq!(
        epoch_as_e(t.cmd(2, "gethistory(4,1,0,0)"), epoch),
        ["2 < history(4,1,E,)"]
    );
    assert_eq!(
        t.cmd(2, &format!("resume(5,1,{epoch},4)")),
        ["2 < recovered(5,1,0,)"]
    );
    assert_eq!(
        t.cmd(2, &format!("resume(6,1,{epoch},5)")),
        ["2 < recovered(6,1,1,)"]
    );
}

#[test]
fn json_messages_carry_their_number_and_history_and_since_work() {
    let mut t = T::new();
    t.open_json(1);
    t.open_json(2);
    t.cmd(1, r#"{"cmd":"login","type":"tmp","usr":"ann"}"#);
    t.cmd(2, r#"{"cmd":"login","type":"tmp","usr":"bob"}"#);
    t.cmd(1, r#"{"cmd":"create_room","room_name":"r","usr":"ann"}"#);
    t.cmd(2, r#"{"cmd":"join_room","room_name":"r","usr":"bob"}"#);
    let out = t.cmd(
        1,
        r#"{"cmd":"speak","room_name":"r","usr":"ann","msg":"hi"}"#,
    );
    let event = &out[0];
    let epoch: u64 = event
        .split("\"epoch\":")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        epoch_as_e(out, epoch),
        [
            r#"2 < {"event":"message","room_name":"r","usr":"ann","msg":"hi","epoch":E,"seq":1}"#,
            r#"1 < {"cmd":"speak","ok":true,"epoch":E,"seq":1}"#
        ]
    );
    t.cmd(
        1,
        r#"{"cmd":"speak","room_name":"r","usr":"ann","msg":"again"}"#,
    );
    let s = T0;
    assert_eq!(
        epoch_as_e(
            t.cmd(
                2,
                r#"{"cmd":"history","room_name":"r","usr":"bob","before":2,"limit":10}"#
            ),
            epoch
        ),
        [format!(
            r#"2 < {{"cmd":"history","ok":true,"room_name":"r","epoch":E,"messages":[{{"seq":1,"usr":"ann","sent":{s},"msg":"hi"}}]}}"#
        )]
    );
    assert_eq!(
        t.cmd(
            2,
            r#"{"cmd":"history","room_name":"r","usr":"bob","limit":-1}"#
        ),
        [
            r#"2 < {"cmd":"history","ok":false,"error":"bad request","detail":"limit must be a whole number from 0 to 2^53"}"#
        ]
    );
    t.cmd(2, r#"{"cmd":"leave_room","room_name":"r","usr":"bob"}"#);
    t.cmd(
        1,
        r#"{"cmd":"speak","room_name":"r","usr":"ann","msg":"missed"}"#,
    );
    let join = format!(
        r#"{{"cmd":"join_room","room_name":"r","usr":"bob","since":{{"epoch":{epoch},"seq":2}}}}"#
    );
    assert_eq!(
        epoch_as_e(t.cmd(2, &join), epoch),
        [
            r#"1 < {"event":"joined","room_name":"r","usr":"bob"}"#.to_string(),
            format!(
                r#"2 < {{"cmd":"join_room","ok":true,"room":{{"name":"r","users":["ann","bob"]}},"epoch":E,"messages":[{{"seq":3,"usr":"ann","sent":{s},"msg":"missed"}}],"recovered":true}}"#
            )
        ]
    );
}

#[test]
fn a_room_url_joiner_can_ask_for_the_last_messages_first() {
    let mut t = T::with(1);
    t.cmd(1, "addchatroom(1,4,room,0,0,)");
    t.cmd(1, "send(2,1,1,a)");
    t.cmd(1, "send(3,1,1,b)");
    t.cmd(1, "send(4,1,1,c)");
    t.dialects.insert(2, Dialect::RoomUrl);
    let entry = Entry::RoomUrl {
        room: "room".into(),
        nickname: "ann".into(),
        history: 2,
    };
    assert_eq!(
        t.open_entry(2, entry),
        [
            "2 < guest1: b",
            "2 < guest1: c",
            "1 < userjoinedchatroom(0,1,2,0,3,ann2,)",
            "2 < ann joined room"
        ]
    );
}

// ---- a node of a cluster -------------------------------------------------------------------

/// A node holding id slot 0 of 4, with protocol connection 1 open.
fn node() -> T {
    use crate::chat::{Chat, Ids};
    let mut chat = Chat::new(PW, Limits::default(), Default::default());
    chat.join_cluster(Ids::slot(0, 4));
    let hasher = crate::auth::Hasher::new(crate::auth::Cost::TESTING).expect("valid cost");
    let mut t = T::new();
    t.logic = Logic::with(chat, super::Workers::Inline(hasher));
    assert_eq!(
        t.open(1),
        ["1 < yourchatclientid(4,)"],
        "ids of slot 0 of 4"
    );
    t
}

fn bob_in(rooms: Vec<u64>) -> ToLogic {
    use crate::chat::{Identity, Presence, Replica};
    ToLogic::Cluster(Replica::Presence {
        node: "b".into(),
        client: 1,
        state: Some(Presence {
            dialect: Dialect::Json,
            identity: Identity::Nick("bob".into()),
            rooms,
        }),
    })
}

#[test]
fn another_nodes_connections_are_members_here_told_in_local_dialects() {
    use crate::chat::Replica;
    let mut t = node();
    assert_eq!(
        t.cmd(1, "addchatroom(1,5,lobby0,0,0,)"),
        ["1 < chatroomcreated(1,4,5,lobby9,1,)"]
    );
    // Bob, on node b, joins: member here, counted, shown in this node's dialect.
    assert_eq!(
        t.event(bob_in(vec![4])),
        ["1 < userjoinedchatroom(0,4,1,0,3,bob2,)"]
    );
    assert_eq!(
        t.cmd(1, "getusersinchatroom(2,4,)"),
        ["1 < usersinchatroom(2,4,4,0,0,1,0,3,bob)"]
    );
    // What bob says there is told here with his request's id; he is told nothing here.
    let said = ToLogic::Cluster(Replica::Said {
        room: 4,
        client: 1,
        mid: 7,
        text: "hi".into(),
    });
    assert_eq!(t.event(said), ["1 < chat(7,4,1,0,2,hi)"]);
    assert_eq!(t.cmd(1, "send(3,4,5,hello)"), ["1 < chat(3,4,4,0,5,hello)"]);
    // Without Redis, a message for members elsewhere is refused, not lost.
    let down = ToLogic::Cluster(Replica::Link {
        hearing: false,
        up: false,
    });
    assert_eq!(t.event(down), Vec::<String>::new());
    assert_eq!(
        t.cmd(1, "send(4,4,5,hello)"),
        ["1 < error(23,Server busy; try again.4,)"]
    );
    // His node dies: he leaves as on a disconnect.
    let gone = ToLogic::Cluster(Replica::NodeGone { node: "b".into() });
    assert_eq!(t.event(gone), ["1 < userleftchatroom(0,4,1,0,3,bob1,)"]);
    assert_eq!(t.cmd(1, "send(5,4,2,ok)"), ["1 < chat(5,4,4,0,2,ok)"]);
}

#[test]
fn a_rooms_members_on_other_nodes_follow_their_presence() {
    let mut t = node();
    t.cmd(1, "addchatroom(1,5,lobby0,0,0,)");
    t.event(bob_in(vec![4]));
    // A presence without the room is a leave; a room unknown here is skipped.
    assert_eq!(
        t.event(bob_in(vec![999])),
        ["1 < userleftchatroom(0,4,1,0,3,bob1,)"]
    );
    assert_eq!(
        t.event(bob_in(vec![4])),
        ["1 < userjoinedchatroom(0,4,1,0,3,bob2,)"]
    );
    // Gone (no state): he leaves; a second word of it changes nothing.
    let gone = || {
        ToLogic::Cluster(crate::chat::Replica::Presence {
            node: "b".into(),
            client: 1,
            state: None,
        })
    };
    assert_eq!(t.event(gone()), ["1 < userleftchatroom(0,4,1,0,3,bob1,)"]);
    assert_eq!(t.event(gone()), Vec::<String>::new());
}
