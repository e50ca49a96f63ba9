//! The chat protocol over real WebSockets against the real binary: multi-client flows with the
//! exact messages every client receives, and that the others receive nothing.
//!
//! "Receives nothing" is checked without sleeping: [`Probe::quiet`] sends a command with a fixed
//! reply and asserts that reply is the very next message. Every action is awaited on the acting
//! client first, so by then the logic thread has queued whatever the action caused, and anything
//! queued for the probed client would arrive before the probe's reply.

use crate::common::{Client, TestServer, UPGRADE, raw_exchange};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use websocket::http::MAX_ROOM_URL_FIELD;

const PROBE: &str = "getchatroomdetails(424242,424242)";
const PROBE_REPLY: &str = "error(27,That chatroom wasn't found.424242,)";

trait Probe {
    /// Sends `msg` and asserts the next messages are exactly `want`.
    fn says(&mut self, msg: &str, want: &[&str]);
    /// Asserts the next messages are exactly `want`.
    fn gets(&mut self, want: &[&str]);
    /// Asserts nothing is waiting for this client.
    fn quiet(&mut self);
}

impl Probe for Client {
    fn says(&mut self, msg: &str, want: &[&str]) {
        self.send(msg);
        self.gets(want);
    }

    fn gets(&mut self, want: &[&str]) {
        assert_eq!(self.recv_n(want.len()), want);
    }

    fn quiet(&mut self) {
        self.send(PROBE);
        assert_eq!(self.recv(), PROBE_REPLY);
    }
}

/// `n` greeted protocol clients; the i-th (from 0) has chatclientid i + 1.
fn clients(server: &TestServer, n: usize) -> Vec<Client> {
    (1..=n as u64)
        .map(|want| {
            let (c, id) = server.chat_client();
            assert_eq!(id, want);
            c
        })
        .collect()
}

#[test]
fn protocol_md_section_8_example() {
    let server = TestServer::start();
    let (mut a, mut b) = (server.client(), server.client());
    a.gets(&["yourchatclientid(1,)"]);
    b.gets(&["yourchatclientid(2,)"]);
    a.says(
        "addchatroom(1,5,lobby0,0,0,)",
        &["chatroomcreated(1,1,5,lobby9,1,)"],
    );
    b.gets(&["chatroomcreated(1,1,5,lobby8,1,)"]);
    b.says(
        "joinchatroom(7,1,0,0,)",
        &["userjoinedchatroom(7,1,2,0,0,2,)"],
    );
    a.gets(&["userjoinedchatroom(7,1,2,0,0,2,)"]);
    a.says("send(2,1,6,hello!)", &["chat(2,1,1,0,6,hello!)"]);
    b.gets(&["chat(2,1,1,0,6,hello!)"]);
    a.says("adduser(3,42,5,alice6,secret2,pw)", &["success(3,)"]);
    a.says(
        "login(4,5,alice6,secret)",
        &["userjoinedchatroom(4,1,1,42,5,alice2,)", "success(4,)"],
    );
    b.gets(&["userjoinedchatroom(4,1,1,42,5,alice2,)"]);
    b.says("sendto(8,0,42,2,hi)", &["success(8,)"]);
    a.gets(&["msg(8,2,0,2,hi)"]);
    b.says(
        "getchatroomdetails(9,1)",
        &["chatroomdetails(9,1,5,lobby9,2,0,)"],
    );
    b.says("leavechatroom(10,1)", &["userleftchatroom(10,1,2,0,0,1,)"]);
    a.gets(&["userleftchatroom(10,1,2,0,0,1,)"]);
    b.says("hello", &["error(32,That message was not understood.)"]);
    a.quiet();
    b.quiet();
}

#[test]
fn create_join_send_leave_delete() {
    let server = TestServer::start();
    let mut c = clients(&server, 3);
    c[0].says(
        "addchatroom(1,5,lobby)",
        &["chatroomcreated(1,1,5,lobby9,1,)"],
    );
    c[1].gets(&["chatroomcreated(1,1,5,lobby8,1,)"]);
    c[2].gets(&["chatroomcreated(1,1,5,lobby8,1,)"]);

    c[1].says("joinchatroom(2,1)", &["userjoinedchatroom(2,1,2,0,0,2,)"]);
    c[0].gets(&["userjoinedchatroom(2,1,2,0,0,2,)"]);
    c[2].quiet();

    c[1].says("send(3,1,10,hi (there))", &["chat(3,1,2,0,10,hi (there))"]);
    c[0].gets(&["chat(3,1,2,0,10,hi (there))"]);
    c[2].quiet();
    c[2].says(
        "send(4,1,2,hi)",
        &["error(28,You're not in that chatroom.4,)"],
    );

    c[0].says(
        "getusersinchatroom(5,1)",
        &["usersinchatroom(5,1,1,0,0,2,0,0,)"],
    );
    c[2].says(
        "getusersinchatroom(6,1)",
        &["error(29,You are not in that chatroom.6,)"],
    );
    c[2].says("getchatroomlist(7)", &["chatroomlist(7,1,5,lobby8,2,)"]);

    c[1].says("leavechatroom(8,1)", &["userleftchatroom(8,1,2,0,0,1,)"]);
    c[0].gets(&["userleftchatroom(8,1,2,0,0,1,)"]);
    c[2].quiet();
    c[1].says(
        "leavechatroom(9,1)",
        &["error(28,You're not in this chatroom.9,)"],
    );

    // The last leaver hears of its own leaving, then everyone of the deletion.
    c[0].says(
        "leavechatroom(10,1)",
        &[
            "userleftchatroom(10,1,1,0,0,0,)",
            "chatroomwasdeleted(10,1,)",
        ],
    );
    c[1].gets(&["chatroomwasdeleted(10,1,)"]);
    c[2].gets(&["chatroomwasdeleted(10,1,)"]);
    c[2].says("getchatroomlist(11)", &["chatroomlist(11,)"]);
    for client in &mut c {
        client.quiet();
    }
}

#[test]
fn question_and_answer_rooms() {
    let server = TestServer::start();
    let mut c = clients(&server, 2);
    c[0].says(
        "addchatroom(1,6,secret12,What is 6x7?2,422,pw)",
        &["chatroomcreated(1,1,6,secret5,1,)"],
    );
    c[1].gets(&["chatroomcreated(1,1,6,secret4,1,)"]);
    c[1].says(
        "getchatroomdetails(2,1)",
        &["chatroomdetails(2,1,6,secret4,1,12,What is 6x7?)"],
    );
    c[1].says(
        "joinchatroom(3,1,0,2,41)",
        &["error(29,Sorry. That answer was wrong.3,)"],
    );
    c[1].says(
        "joinchatroom(4,1)",
        &["error(29,Sorry. That answer was wrong.4,)"],
    );
    c[0].quiet();
    c[1].says(
        "joinchatroom(5,1,0,2,42)",
        &["userjoinedchatroom(5,1,2,0,0,2,)"],
    );
    c[0].gets(&["userjoinedchatroom(5,1,2,0,0,2,)"]);
    c[1].says(
        "joinchatroom(6,1,0,2,42)",
        &["error(32,You're already in this chatroom.6,)"],
    );
    // Persistent: it stays when everyone has left.
    c[0].says("leavechatroom(7,1)", &["userleftchatroom(7,1,1,0,0,1,)"]);
    c[1].gets(&["userleftchatroom(7,1,1,0,0,1,)"]);
    c[1].says("leavechatroom(8,1)", &["userleftchatroom(8,1,2,0,0,0,)"]);
    c[0].says("getchatroomlist(9)", &["chatroomlist(9,1,6,secret4,0,)"]);
    c[1].quiet();
}

#[test]
fn join_leaving_other_chatrooms() {
    let server = TestServer::start();
    let mut c = clients(&server, 3);
    c[0].says("addchatroom(1,1,a)", &["chatroomcreated(1,1,1,a9,1,)"]);
    c[1].gets(&["chatroomcreated(1,1,1,a8,1,)"]);
    c[2].gets(&["chatroomcreated(1,1,1,a8,1,)"]);
    c[1].says("addchatroom(2,1,b)", &["chatroomcreated(2,2,1,b9,1,)"]);
    c[0].gets(&["chatroomcreated(2,2,1,b8,1,)"]);
    c[2].gets(&["chatroomcreated(2,2,1,b8,1,)"]);
    c[2].says("joinchatroom(3,1)", &["userjoinedchatroom(3,1,3,0,0,2,)"]);
    c[0].gets(&["userjoinedchatroom(3,1,3,0,0,2,)"]);

    c[0].says(
        "joinchatroom(4,2,1)",
        &[
            "userleftchatroom(4,1,1,0,0,1,)",
            "userjoinedchatroom(4,2,1,0,0,2,)",
        ],
    );
    c[2].gets(&["userleftchatroom(4,1,1,0,0,1,)"]);
    c[1].gets(&["userjoinedchatroom(4,2,1,0,0,2,)"]);

    // Leaving the last member's room deletes it (temporary), before the join.
    c[2].says(
        "joinchatroom(5,2,1)",
        &[
            "userleftchatroom(5,1,3,0,0,0,)",
            "chatroomwasdeleted(5,1,)",
            "userjoinedchatroom(5,2,3,0,0,3,)",
        ],
    );
    c[0].gets(&[
        "chatroomwasdeleted(5,1,)",
        "userjoinedchatroom(5,2,3,0,0,3,)",
    ]);
    c[1].gets(&[
        "chatroomwasdeleted(5,1,)",
        "userjoinedchatroom(5,2,3,0,0,3,)",
    ]);
    for client in &mut c {
        client.quiet();
    }
}

#[test]
fn login_and_logout_broadcasts() {
    let server = TestServer::start();
    let mut c = clients(&server, 3);
    c[0].says("adduser(1,42,5,alice6,secret2,pw)", &["success(1,)"]);
    c[0].says("login(2,5,alice5,wrong)", &["error(16,Incorrect login.2,)"]);
    c[0].says("logout(3,0)", &["error(27,You are already logged out.3,)"]);
    c[0].says("addchatroom(4,1,a)", &["chatroomcreated(4,1,1,a9,1,)"]);
    c[1].gets(&["chatroomcreated(4,1,1,a8,1,)"]);
    c[2].gets(&["chatroomcreated(4,1,1,a8,1,)"]);
    c[1].says("joinchatroom(5,1)", &["userjoinedchatroom(5,1,2,0,0,2,)"]);
    c[0].gets(&["userjoinedchatroom(5,1,2,0,0,2,)"]);

    c[0].says(
        "login(6,5,alice6,secret)",
        &["userjoinedchatroom(6,1,1,42,5,alice2,)", "success(6,)"],
    );
    c[1].gets(&["userjoinedchatroom(6,1,1,42,5,alice2,)"]);
    c[2].quiet();
    c[0].says("getusers(7,1,2,pw)", &["users(7,42,5,alice1,)"]);

    c[0].says(
        "logout(8,0)",
        &["userleftchatroom(8,1,1,42,5,alice1,)", "success(8,)"],
    );
    c[1].gets(&["userleftchatroom(8,1,1,42,5,alice1,)"]);
    c[0].says("getusers(9,2,2,pw)", &["users(9,42,5,alice2,)"]);

    // logout with disconnect: leave, then a clean close with 1000.
    c[1].says(
        "logout(10,1)",
        &[
            "userleftchatroom(10,1,2,0,0,0,)",
            "chatroomwasdeleted(10,1,)",
        ],
    );
    let close = c[1].expect_close().expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Normal);
    c[0].gets(&["chatroomwasdeleted(10,1,)"]);
    c[2].gets(&["chatroomwasdeleted(10,1,)"]);
    c[0].quiet();
    c[2].quiet();
}

#[test]
fn sendto_reaches_every_connection_of_a_user() {
    let server = TestServer::start();
    let mut c = clients(&server, 4);
    c[0].says("adduser(1,42,5,alice1,x2,pw)", &["success(1,)"]);
    c[0].says("login(2,5,alice1,x)", &["success(2,)"]);
    c[1].says("login(3,5,alice1,x)", &["success(3,)"]);
    c[2].says("sendto(4,0,42,5,psst!)", &["success(4,)"]);
    c[0].gets(&["msg(4,3,0,5,psst!)"]);
    c[1].gets(&["msg(4,3,0,5,psst!)"]);
    c[3].quiet();
    // By chatclientid, to one connection only.
    c[0].says("sendto(5,4,0,2,yo)", &["success(5,)"]);
    c[3].gets(&["msg(5,1,42,2,yo)"]);
    c[1].quiet();
    c[2].quiet();
    // A userid nobody has is not a person who is offline.
    c[2].says(
        "sendto(6,0,43,2,hi)",
        &["error(23,That user wasn't found.6,)"],
    );
    c[2].says(
        "sendto(7,99,0,2,hi)",
        &["error(26,That person is not online.7,)"],
    );
}

#[test]
fn admin_commands_need_the_server_password() {
    let server = TestServer::start();
    let mut c = clients(&server, 2);
    let wrong = |m: u32| format!("error(26,Incorrect server password.{m},)");
    c[0].says("adduser(1,42,5,alice1,x2,no)", &[&wrong(1)]);
    c[0].says("removeuser(2,42,2,no)", &[&wrong(2)]);
    c[0].says("getusers(3,3,2,no)", &[&wrong(3)]);
    c[0].says("sendtoall(2,no4,2,hi)", &[&wrong(4)]);
    c[0].says("addchatroom(5,1,a)", &["chatroomcreated(5,1,1,a9,1,)"]);
    c[1].gets(&["chatroomcreated(5,1,1,a8,1,)"]);
    c[1].says("removechatroom(6,1,2,no)", &[&wrong(6)]);
    c[0].quiet();

    c[0].says("adduser(7,42,5,alice1,x2,pw)", &["success(7,)"]);
    c[0].says(
        "adduser(8,42,3,bob1,x2,pw)",
        &["error(30,That userid is already in use.8,)"],
    );
    c[0].says(
        "adduser(9,43,5,alice1,x2,pw)",
        &["error(33,That user name is already in use.9,)"],
    );
    c[0].says(
        "adduser(10,0,3,bob1,x2,pw)",
        &["error(21,Userid must not be 0.10,)"],
    );
    c[0].says(
        "getusers(11,4,2,pw)",
        &["error(20,Invalid status code.11,)"],
    );
    c[0].says("getusers(12,3,2,pw)", &["users(12,42,5,alice2,)"]);
    c[1].says("login(13,5,alice1,x)", &["success(13,)"]);
    c[0].says(
        "removeuser(14,42,2,pw)",
        &["error(29,That user is still logged in.14,)"],
    );
    c[0].says(
        "removeuser(15,41,2,pw)",
        &["error(23,That user wasn't found.15,)"],
    );
    c[1].says("logout(16)", &["success(16,)"]);
    c[0].says("removeuser(17,42,2,pw)", &["success(17,)"]);
    c[0].says("getusers(18,3,2,pw)", &["users(18,)"]);

    c[1].says(
        "sendtoall(2,pw19,5,hello)",
        &["privatemessage(2,0,0,5,hello)", "success(19,)"],
    );
    c[0].gets(&["privatemessage(2,0,0,5,hello)"]);

    c[1].says(
        "removechatroom(20,9,2,pw)",
        &["error(27,That chatroom wasn't found.20,)"],
    );
    c[1].says(
        "removechatroom(21,1,2,pw)",
        &["chatroomwasdeleted(21,1,)", "success(21,)"],
    );
    c[0].gets(&["chatroomwasdeleted(21,1,)"]);
    c[0].quiet();
}

#[test]
fn disconnect_cleans_up() {
    let server = TestServer::start();
    let mut c = clients(&server, 3);
    c[0].says("adduser(1,42,5,alice1,x2,pw)", &["success(1,)"]);
    c[0].says("login(2,5,alice1,x)", &["success(2,)"]);
    c[0].says("addchatroom(3,1,a)", &["chatroomcreated(3,1,1,a9,1,)"]);
    c[1].gets(&["chatroomcreated(3,1,1,a8,1,)"]);
    c[2].gets(&["chatroomcreated(3,1,1,a8,1,)"]);
    c[1].says("addchatroom(4,1,b)", &["chatroomcreated(4,2,1,b9,1,)"]);
    c[0].gets(&["chatroomcreated(4,2,1,b8,1,)"]);
    c[2].gets(&["chatroomcreated(4,2,1,b8,1,)"]);
    c[0].says(
        "joinchatroom(5,2)",
        &["userjoinedchatroom(5,2,1,42,5,alice2,)"],
    );
    c[1].gets(&["userjoinedchatroom(5,2,1,42,5,alice2,)"]);

    // Drop the TCP connection without a close handshake.
    let gone = c.remove(0);
    drop(gone);
    c[0].gets(&[
        "chatroomwasdeleted(0,1,)",
        "userleftchatroom(0,2,1,42,5,alice1,)",
    ]);
    c[1].gets(&["chatroomwasdeleted(0,1,)"]);
    c[0].says("getusers(6,2,2,pw)", &["users(6,42,5,alice2,)"]);
    c[0].says(
        "sendto(7,1,0,1,x)",
        &["error(26,That person is not online.7,)"],
    );
    c[1].quiet();
}

#[test]
fn snaps_between_two_users() {
    let server = TestServer::start();
    let mut c = clients(&server, 3);
    c[0].says(
        "sendsnap(1,7,0,5,2,hi)",
        &["error(37,You must be logged in to send a snap.1,)"],
    );
    c[0].says("adduser(2,42,5,alice1,x2,pw)", &["success(2,)"]);
    c[0].says("adduser(3,7,3,bob1,x2,pw)", &["success(3,)"]);
    c[0].says("login(4,5,alice1,x)", &["success(4,)"]);
    c[1].says("login(5,3,bob1,x)", &["success(5,)"]);
    c[2].says("login(6,3,bob1,x)", &["success(6,)"]);
    c[1].says("getsnaps(7)", &["success(7,)"]);

    c[0].send("sendsnap(8,7,3600,30,4,boo!)");
    let sent = c[0].recv();
    assert_eq!(sent, "snap_sent(8,1,)");
    let snap = c[1].recv();
    let fields: Vec<&str> = snap
        .strip_prefix("snap(1,7,42,")
        .and_then(|r| r.strip_suffix(",0,30,4,boo!)"))
        .unwrap_or_else(|| panic!("{snap}"))
        .split(',')
        .collect();
    let sent_at: u64 = fields[0].parse().unwrap();
    c[2].quiet(); // snaps not enabled there

    c[0].says("readsnap(9,2)", &["error(23,That snap wasn't found.9,)"]);
    // The sender reads it: bob's snap-enabled connection is sent the (still unread) snap too.
    let unread = format!("snap(1,7,42,{sent_at},0,30,4,boo!)");
    c[0].says("readsnap(10,1)", &[&unread]);
    c[1].gets(&[&unread]);
    c[2].quiet();
    // The recipient reads it: stamped; alice has no snap-enabled connection to tell.
    c[1].send("readsnap(11,1)");
    let read = c[1].recv();
    let received: u64 = read
        .strip_prefix(&format!("snap(1,7,42,{sent_at},"))
        .and_then(|r| r.strip_suffix(",30,4,boo!)"))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{read}"));
    assert!(received >= sent_at);
    c[2].says("getsnaps(12)", &["success(12,)", &read]);
    c[0].says("getsnaps(13)", &["success(13,)", &read]);
}

#[test]
fn syntax_errors_keep_the_connection_open() {
    let server = TestServer::start();
    let mut c = clients(&server, 1);
    c[0].says("send(x)", &["error(27,Syntax error in parameters.)"]);
    c[0].says(
        "send(5,1,9,short)",
        &["error(27,Syntax error in parameters.5,)"],
    );
    c[0].says(
        "getchatroomlist(9223372036854775808)",
        &["error(27,Syntax error in parameters.)"],
    );
    c[0].says(
        "getchatroomlist(1",
        &["error(27,Syntax error in parameters.)"],
    );
    c[0].says("", &["error(32,That message was not understood.)"]);
    // A binary frame is a command too.
    c[0].ws
        .send(Message::binary(&b"getchatroomlist(2)"[..]))
        .unwrap();
    c[0].gets(&["chatroomlist(2,)"]);
    c[0].ws
        .send(Message::binary(&b"send(3,1,2,\xff\xfe)"[..]))
        .unwrap();
    c[0].gets(&["error(27,Syntax error in parameters.3,)"]);
}

#[test]
fn lists_with_1000_rooms_users_and_members() {
    // 2,000 commands in one burst: over the default per-client rate limit.
    let server = TestServer::start_with(&["--rate-limit", "0"]);
    let mut admin = clients(&server, 1).remove(0);
    let mut rooms = String::from("chatroomlist(1,");
    let mut users = String::from("users(2,");
    for i in 1..=1000 {
        let name = format!("n{i}");
        admin.send(&format!("addchatroom({i},{},{name}0,0,2,pw)", name.len()));
        admin.send(&format!("adduser({i},{i},{},{name}1,x2,pw)", name.len()));
        rooms += &format!("{i},{},{name}1,1,", name.len());
        users += &format!("{i},{},{name}2,", name.len());
    }
    rooms += ")";
    users += ")";
    for i in 1..=1000 {
        admin.gets(&[&format!(
            "chatroomcreated({i},{i},{},n{i}1,1,)",
            format!("n{i}").len()
        )]);
        admin.gets(&[&format!("success({i},)")]);
    }
    admin.says("getchatroomlist(1)", &[&rooms]);
    admin.says("getusers(2,3,2,pw)", &[&users]);

    // 999 more connections join room 1: 1,000 members, listed in join order.
    let mut members = String::from("usersinchatroom(3,1,1,0,0,");
    let mut others = Vec::new();
    for id in 2..=1000u64 {
        let (mut c, cid) = server.chat_client();
        assert_eq!(cid, id);
        c.send("joinchatroom(1,1)");
        others.push(c);
        members += &format!("{id},0,0,");
    }
    members += ")";
    for id in 2..=1000 {
        admin.gets(&[&format!("userjoinedchatroom(1,1,{id},0,0,{id},)")]);
    }
    admin.says("getusersinchatroom(3,1)", &[&members]);
    // And one message reaches all of them.
    admin.says("send(4,1,3,all)", &["chat(4,1,1,0,3,all)"]);
    for (i, c) in others.iter_mut().enumerate() {
        let id = i + 2;
        for joined in id..=1000 {
            c.gets(&[&format!("userjoinedchatroom(1,1,{joined},0,0,{joined},)")]);
        }
        c.gets(&["chat(4,1,1,0,3,all)"]);
    }
}

// ---- the room-URL dialect (issue 7) ---------------------------------------------------------

fn url_client(server: &TestServer, room: &str, nickname: &str) -> Client {
    server.client_at(&format!("/ws/chat/{room}/?nickname={nickname}"), None)
}

#[test]
fn url_clients_chat_in_their_room_only() {
    let server = TestServer::start();
    let mut bob = url_client(&server, "Room1", "bob");
    bob.gets(&["bob joined Room1"]);
    let mut carol = url_client(&server, "Room1", "carol");
    carol.gets(&["carol joined Room1"]);
    bob.gets(&["carol joined Room1"]);
    let mut dave = url_client(&server, "Room2", "dave");
    dave.gets(&["dave joined Room2"]);
    bob.send("hello, Room1");
    bob.gets(&["bob: hello, Room1"]);
    carol.gets(&["bob: hello, Room1"]);
    carol.send("hi bob");
    carol.gets(&["carol: hi bob"]);
    bob.gets(&["carol: hi bob"]);
    drop(carol);
    bob.gets(&["carol left Room1"]);
    dave.send("anyone?");
    dave.gets(&["dave: anyone?"]);
    bob.send("still here");
    bob.gets(&["bob: still here"]);
}

#[test]
fn url_and_protocol_clients_talk_both_ways() {
    let server = TestServer::start();
    let (mut p, _) = server.chat_client();
    p.says(
        "addchatroom(1,5,Room1)",
        &["chatroomcreated(1,1,5,Room19,1,)"],
    );
    let mut bob = url_client(&server, "Room1", "bob");
    bob.gets(&["bob joined Room1"]);
    p.gets(&["userjoinedchatroom(0,1,2,0,3,bob2,)"]);
    bob.send("hi protocol");
    bob.gets(&["bob: hi protocol"]);
    p.gets(&["chat(0,1,2,0,11,hi protocol)"]);
    p.says("send(2,1,6,hi url)", &["chat(2,1,1,0,6,hi url)"]);
    bob.gets(&["guest1: hi url"]);
    drop(bob);
    p.gets(&["userleftchatroom(0,1,2,0,3,bob1,)"]);
}

#[test]
fn url_names_are_percent_decoded_and_rooms_shared_by_name() {
    let server = TestServer::start();
    let (mut p, _) = server.chat_client();
    p.says(
        "addchatroom(1,5,café)",
        &["chatroomcreated(1,1,5,café9,1,)"],
    );
    let mut jorg = url_client(&server, "caf%C3%A9", "J%C3%B6rg");
    jorg.gets(&["Jörg joined café"]);
    p.gets(&["userjoinedchatroom(0,1,2,0,5,Jörg2,)"]);
    p.says("send(2,1,4,ça?)", &["chat(2,1,1,0,4,ça?)"]);
    jorg.gets(&["guest1: ça?"]);
}

/// The status line the server answers an upgrade request for `target` with. Only for refused
/// upgrades: it reads until the server closes the connection, which an accepted one never does.
fn refused_upgrade_status(server: &TestServer, target: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n");
    let response = raw_exchange(&server.addr(), request.as_bytes());
    let response = String::from_utf8_lossy(&response);
    response.lines().next().unwrap_or_default().to_string()
}

#[test]
fn bad_room_urls_get_400_at_the_handshake() {
    let server = TestServer::start();
    let long = "x".repeat(MAX_ROOM_URL_FIELD + 1);
    // The limit counts decoded bytes: 65 two-byte characters are 130 bytes.
    let long_encoded = "%C3%A9".repeat(MAX_ROOM_URL_FIELD / 2 + 1);
    let refused = [
        "/ws/chat/Room1/".to_string(),
        "/ws/chat/Room1".to_string(),
        "/ws/chat/Room1/?nickname=".to_string(),
        "/ws/chat/Room1/?nickname".to_string(),
        "/ws/chat/Room1/?nick=bob".to_string(),
        "/ws/chat//?nickname=bob".to_string(),
        format!("/ws/chat/{long}/?nickname=bob"),
        format!("/ws/chat/Room1/?nickname={long}"),
        format!("/ws/chat/Room1/?nickname={long_encoded}"),
        "/ws/chat/Room1/?nickname=%zzbob".to_string(),
        "/ws/chat/Room1/?nickname=bob%4".to_string(),
        "/ws/chat/Room%4/?nickname=bob".to_string(),
        "/ws/chat/%FF/?nickname=bob".to_string(),
    ];
    for target in &refused {
        assert_eq!(
            refused_upgrade_status(&server, target),
            "HTTP/1.1 400 Bad Request",
            "{target}"
        );
    }
    // None of them reached the chat state: the first chat connection is still client 1.
    let (_, id) = server.chat_client();
    assert_eq!(id, 1);
}

#[test]
fn room_url_fields_up_to_the_limit_and_without_the_trailing_slash_work() {
    let server = TestServer::start();
    let room = "r".repeat(MAX_ROOM_URL_FIELD);
    let nickname = "%C3%A9".repeat(MAX_ROOM_URL_FIELD / 2);
    let decoded = "é".repeat(MAX_ROOM_URL_FIELD / 2);
    let mut long = url_client(&server, &room, &nickname);
    long.gets(&[&format!("{decoded} joined {room}")]);

    let mut bob = url_client(&server, "Room1", "bob");
    bob.gets(&["bob joined Room1"]);
    let mut x = server.client_at("/ws/chat/Room1?nickname=x", None);
    x.gets(&["x joined Room1"]);
    bob.gets(&["x joined Room1"]);
    x.send("no slash");
    x.gets(&["x: no slash"]);
    bob.gets(&["x: no slash"]);
}

#[test]
fn a_message_reaches_1000_url_clients() {
    let server = TestServer::start();
    let mut clients: Vec<Client> = (0..1000)
        .map(|i| url_client(&server, "big", &format!("u{i}")))
        .collect();
    clients[999].send("hello, everyone");
    for (i, c) in clients.iter_mut().enumerate() {
        for j in i..1000 {
            c.gets(&[&format!("u{j} joined big")]);
        }
        c.gets(&["u999: hello, everyone"]);
    }
}
