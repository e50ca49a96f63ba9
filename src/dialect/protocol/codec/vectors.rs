//! The codec's examples, one table each: what a client message parses to, which messages are
//! refused and how, and what each server message looks like on the wire.
//!
//! They are compiled into the binary (not only into the test build) because two checkers read
//! them: the unit tests (`codec/tests.rs`) and the self-test `websocket test codec`, which checks
//! a deployed binary against the same contract without the source tree. Keeping them here means
//! a new command or reply gets its example once and both checks see it.

use super::{
    ChatroomListWriter, Command, FoundUsersWriter, HistoryWriter, MembersWriter, ParseError, Reply,
    Secret, UsersWriter, error_text,
};

fn secret(s: &str) -> Secret {
    Secret::new(s.as_bytes())
}

/// Client messages that parse, with the command each must become: every command shape, then
/// the §2 field rules (defaults, empty numbers, strings holding separators, byte lengths).
pub fn commands() -> Vec<(&'static [u8], Command)> {
    use Command::*;
    vec![
        // One of each command.
        (
            b"addchatroom(1,5,lobby2,q?2,422,pw)",
            AddChatroom {
                mid: 1,
                name: "lobby".into(),
                question: "q?".into(),
                answer: secret("42"),
                server_password: secret("pw"),
            },
        ),
        (
            b"adduser(3,42,5,alice6,secret2,pw)",
            AddUser {
                mid: 3,
                userid: 42,
                username: "alice".into(),
                password: secret("secret"),
                server_password: secret("pw"),
            },
        ),
        (
            b"getchatroomdetails(9,1)",
            GetChatroomDetails { mid: 9, room: 1 },
        ),
        (b"getchatroomlist(4)", GetChatroomList { mid: 4 }),
        (
            b"getusers(5,3,2,pw)",
            GetUsers {
                mid: 5,
                status: 3,
                server_password: secret("pw"),
            },
        ),
        (
            b"getusersinchatroom(6,2)",
            GetUsersInChatroom { mid: 6, room: 2 },
        ),
        (
            b"joinchatroom(7,1,1,3,yes)",
            JoinChatroom {
                mid: 7,
                room: 1,
                leave_others: true,
                answer: secret("yes"),
            },
        ),
        (b"leavechatroom(10,1)", LeaveChatroom { mid: 10, room: 1 }),
        (
            b"login(4,5,alice6,secret)",
            Login {
                mid: 4,
                username: "alice".into(),
                password: secret("secret"),
            },
        ),
        (
            b"logout(11,1)",
            Logout {
                mid: 11,
                disconnect: true,
            },
        ),
        (b"nop()", Nop),
        (
            b"removechatroom(12,3,2,pw)",
            RemoveChatroom {
                mid: 12,
                room: 3,
                server_password: secret("pw"),
            },
        ),
        (
            b"removeuser(13,42,2,pw)",
            RemoveUser {
                mid: 13,
                userid: 42,
                server_password: secret("pw"),
            },
        ),
        (
            b"send(2,1,6,hello!)",
            Send {
                mid: 2,
                room: 1,
                message: "hello!".into(),
            },
        ),
        (
            b"sendto(8,0,42,2,hi)",
            SendTo {
                mid: 8,
                client: 0,
                userid: 42,
                message: "hi".into(),
            },
        ),
        // The server password comes first in sendtoall, the messageid second.
        (
            b"sendtoall(2,pw14,3,all)",
            SendToAll {
                server_password: secret("pw"),
                mid: 14,
                message: "all".into(),
            },
        ),
        (
            b"sendsnap(15,42,60,5,4,boo!)",
            SendSnap {
                mid: 15,
                to_userid: 42,
                expire: 60,
                readtime: 5,
                message: "boo!".into(),
            },
        ),
        (b"getsnaps(16)", GetSnaps { mid: 16 }),
        (b"readsnap(17,3)", ReadSnap { mid: 17, snap: 3 }),
        // §9: the self-service account commands.
        (
            b"register(18,5,carol8,password)",
            Register {
                mid: 18,
                username: "carol".into(),
                password: secret("password"),
            },
        ),
        (
            "register(19,4,zo\u{eb}8,p\u{e4}sswrd)".as_bytes(),
            Register {
                mid: 19,
                username: "zo\u{eb}".into(),
                password: secret("p\u{e4}sswrd"),
            },
        ),
        (
            b"changepassword(20,8,password9,password2)",
            ChangePassword {
                mid: 20,
                old_password: secret("password"),
                new_password: secret("password2"),
            },
        ),
        (
            b"deleteaccount(21,8,password)",
            DeleteAccount {
                mid: 21,
                password: secret("password"),
            },
        ),
        (
            b"findusers(22,4,a*?c)",
            FindUsers {
                mid: 22,
                pattern: "a*?c".into(),
            },
        ),
        (
            b"gethistory(24,1,500,50)",
            GetHistory {
                mid: 24,
                room: 1,
                before: 500,
                limit: 50,
            },
        ),
        (
            b"resume(25,1,4242,17)",
            Resume {
                mid: 25,
                room: 1,
                epoch: 4242,
                seq: 17,
            },
        ),
        (b"sequenced(26,1)", Sequenced { mid: 26, on: true }),
        // Missing trailing fields take their defaults: 0 and the empty string.
        (
            b"addchatroom(1,5,lobby)",
            AddChatroom {
                mid: 1,
                name: "lobby".into(),
                question: String::new(),
                answer: Secret::default(),
                server_password: Secret::default(),
            },
        ),
        (b"getchatroomlist()", GetChatroomList { mid: 0 }),
        (
            b"logout(3)",
            Logout {
                mid: 3,
                disconnect: false,
            },
        ),
        (b"leavechatroom(3,)", LeaveChatroom { mid: 3, room: 0 }),
        (
            b"sendtoall()",
            SendToAll {
                server_password: Secret::default(),
                mid: 0,
                message: String::new(),
            },
        ),
        (
            b"findusers(23,)",
            FindUsers {
                mid: 23,
                pattern: String::new(),
            },
        ),
        // The spec example's fields: empty strings written as `0,`.
        (
            b"addchatroom(1,5,lobby0,0,0,)",
            AddChatroom {
                mid: 1,
                name: "lobby".into(),
                question: String::new(),
                answer: Secret::default(),
                server_password: Secret::default(),
            },
        ),
        (
            b"joinchatroom(7,1,0,0,)",
            JoinChatroom {
                mid: 7,
                room: 1,
                leave_others: false,
                answer: Secret::default(),
            },
        ),
        // An empty number is 0, an empty length the empty string.
        (b"getchatroomlist(,)", GetChatroomList { mid: 0 }),
        (
            b"getchatroomdetails(,)",
            GetChatroomDetails { mid: 0, room: 0 },
        ),
        (
            b"getchatroomdetails(5,,)",
            GetChatroomDetails { mid: 5, room: 0 },
        ),
        (
            b"send(1,2,)",
            Send {
                mid: 1,
                room: 2,
                message: String::new(),
            },
        ),
        // A string's bytes may hold `,` `(` `)`.
        (
            b"send(1,2,6,(a,b)))",
            Send {
                mid: 1,
                room: 2,
                message: "(a,b))".into(),
            },
        ),
        // A `,` right after a string is the next field: here the question's empty length, so the
        // answer is `2,ok`.
        (
            b"addchatroom(1,1,x,2,ok)",
            AddChatroom {
                mid: 1,
                name: "x".into(),
                question: String::new(),
                answer: secret("ok"),
                server_password: Secret::default(),
            },
        ),
        // After the last field it is an ignored extra field, as is anything malformed there.
        (
            b"send(1,2,2,hi,)",
            Send {
                mid: 1,
                room: 2,
                message: "hi".into(),
            },
        ),
        (
            b"getchatroomlist(4,junk-here,99)",
            GetChatroomList { mid: 4 },
        ),
        (b"nop(anything at all)", Nop),
        // Lengths count UTF-8 bytes, not characters.
        (
            "send(1,2,5,h\u{e9}\u{e9})".as_bytes(),
            Send {
                mid: 1,
                room: 2,
                message: "h\u{e9}\u{e9}".into(),
            },
        ),
        // The largest number a client may send.
        (
            b"getchatroomdetails(9223372036854775807,1)",
            GetChatroomDetails {
                mid: i64::MAX as u64,
                room: 1,
            },
        ),
    ]
}

/// Client messages that are refused, with the error each must produce (§2).
pub fn parse_errors() -> Vec<(&'static [u8], ParseError)> {
    let unknown = ParseError::UnknownCommand;
    let syntax = |mid| ParseError::Syntax { mid };
    vec![
        // No known command name followed by `(`: names are case-sensitive and exact.
        (b"", unknown),
        (b"hello", unknown),
        (b"nop", unknown),
        (b"Nop()", unknown),
        (b"NOP()", unknown),
        (b"Send(1,1,1,x)", unknown),
        (b"sendx(1)", unknown),
        (b"bogus(1)", unknown),
        (b" send(1,1,1,x)", unknown),
        (b"(1)", unknown),
        (b")", unknown),
        // No closing `)` (or bytes after it): malformed as a whole, so no messageid.
        (b"nop(", syntax(None)),
        (b"getchatroomlist(5", syntax(None)),
        (b"send(1,2,2,hi", syntax(None)),
        (b"send(1,2,2,hi) ", syntax(None)),
        // A number is digits only: no sign, space, letter or hex.
        (b"getchatroomlist(-1)", syntax(None)),
        (b"getchatroomlist(+1)", syntax(None)),
        (b"getchatroomlist( 1)", syntax(None)),
        (b"getchatroomlist(1 )", syntax(None)),
        (b"getchatroomlist(x)", syntax(None)),
        (b"getchatroomlist(0x1)", syntax(None)),
        (b"send(x,1,1,a)", syntax(None)),
        (b"findusers(x,1,a)", syntax(None)),
        (b"gethistory(3,1,-1,10)", syntax(Some(3))),
        (b"resume(4,1,1,99999999999999999999)", syntax(Some(4))),
        // Once the messageid is read, the error carries it.
        (b"leavechatroom(3,-1)", syntax(Some(3))),
        (b"leavechatroom(3,1e3)", syntax(Some(3))),
        // Over i64::MAX.
        (b"getchatroomlist(9223372036854775808)", syntax(None)),
        (b"getchatroomlist(99999999999999999999999)", syntax(None)),
        (b"readsnap(1,9223372036854775808)", syntax(Some(1))),
        (b"send(2,1,18446744073709551616,a)", syntax(Some(2))),
        // A string length past the end of the message.
        (b"send(1,2,3,hi)", syntax(Some(1))),
        (b"send(1,2,9223372036854775807,hi)", syntax(Some(1))),
        (b"send(1,2,5)", syntax(Some(1))),
        (b"register(4,9,carol)", syntax(Some(4))),
        (b"deleteaccount(5,9,password)", syntax(Some(5))),
        // Strings must be UTF-8, also where the length cuts a character.
        (b"send(1,2,2,\xff\xfe)", syntax(Some(1))),
        ("send(1,2,1,\u{e9})".as_bytes(), syntax(Some(1))),
        (b"changepassword(6,2,\xe9x)", syntax(Some(6))),
        // sendtoall reads its messageid after the password.
        (b"sendtoall(9,pw)", syntax(None)),
        (b"sendtoall(2,pwx)", syntax(None)),
        (b"sendtoall(2,pw7,9,hi)", syntax(Some(7))),
    ]
}

/// Server messages of fixed shape, with their exact wire text.
pub fn replies() -> Vec<(Reply<'static>, &'static str)> {
    use Reply::*;
    vec![
        (YourChatClientId { client: 7 }, "yourchatclientid(7,)"),
        (Success { mid: 3 }, "success(3,)"),
        (
            ChatSeq {
                mid: 2,
                room: 1,
                client: 1,
                user: 0,
                epoch: 4242,
                seq: 3,
                message: "hello",
            },
            "chatseq(2,1,1,0,4242,3,5,hello)",
        ),
        (
            Recovered {
                mid: 3,
                room: 1,
                flag: 1,
            },
            "recovered(3,1,1,)",
        ),
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
                message: "h\u{e9}",
            },
            "privatemessage(1,42,5,alice3,h\u{e9})",
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
        // §9, with its error texts byte for byte.
        (Registered { mid: 18, user: 43 }, "registered(18,43,)"),
        (
            AccountDeleted { mid: 21, user: 43 },
            "accountdeleted(21,43,)",
        ),
        // §10.
        (Queued { mid: 22 }, "queued(22,)"),
        (
            OfflineMsg {
                user: 7,
                username: "ann",
                sent: 1000,
                message: "later",
            },
            "offlinemsg(7,3,ann1000,5,later)",
        ),
        (
            Error {
                text: error_text::QUEUE_FULL,
                mid: Some(23),
            },
            "error(34,That user's message queue is full.23,)",
        ),
        (
            Error {
                text: error_text::OFFLINE_LOGIN,
                mid: Some(24),
            },
            "error(49,You must be logged in to message an offline user.24,)",
        ),
        (
            Error {
                text: error_text::BUSY,
                mid: Some(25),
            },
            "error(23,Server busy; try again.25,)",
        ),
        (
            Error {
                text: error_text::INVALID_USER_NAME,
                mid: Some(18),
            },
            "error(18,Invalid user name.18,)",
        ),
        (
            Error {
                text: error_text::BAD_PASSWORD,
                mid: Some(18),
            },
            "error(33,Password must be 8 to 1024 bytes.18,)",
        ),
        (
            Error {
                text: error_text::USERNAME_IN_USE,
                mid: Some(18),
            },
            "error(33,That user name is already in use.18,)",
        ),
        (
            Error {
                text: error_text::LOGIN_NEEDED,
                mid: Some(20),
            },
            "error(33,You must be logged in to do that.20,)",
        ),
    ]
}

/// The list replies, written through their writers: (what, bytes written, exact wire text).
pub fn lists() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut out = Vec::new();

    let mut buf = Vec::new();
    ChatroomListWriter::new(&mut buf, 3).finish();
    out.push(("an empty chatroomlist", buf, "chatroomlist(3,)"));

    let mut buf = Vec::new();
    let mut list = ChatroomListWriter::new(&mut buf, 3);
    list.room(1, "a", 9, 1);
    list.room(2, "b,c", 8, 0);
    list.finish();
    out.push(("chatroomlist", buf, "chatroomlist(3,1,1,a9,1,2,3,b,c8,0,)"));

    let mut buf = Vec::new();
    let mut list = UsersWriter::new(&mut buf, 4);
    list.user(42, "alice", 1);
    list.user(7, "", 2);
    list.finish();
    out.push(("users", buf, "users(4,42,5,alice1,7,0,2,)"));

    let mut buf = Vec::new();
    let mut list = MembersWriter::new(&mut buf, 5, 1);
    list.member(1, 42, "alice");
    list.member(2, 0, "");
    list.finish();
    out.push((
        "usersinchatroom",
        buf,
        "usersinchatroom(5,1,1,42,5,alice2,0,0,)",
    ));

    let mut buf = Vec::new();
    HistoryWriter::new(&mut buf, 6, 1, 4242).finish();
    out.push(("an empty history", buf, "history(6,1,4242,)"));

    let mut buf = Vec::new();
    let mut list = HistoryWriter::new(&mut buf, 7, 1, 4242);
    list.message(3, 1, 42, "alice", 1_700_000_000, "hi, (all)");
    list.message(4, 2, 0, "", 1_700_000_001, "");
    list.finish();
    out.push((
        "history",
        buf,
        "history(7,1,4242,3,1,42,5,alice1700000000,9,hi, (all)4,2,0,0,1700000001,0,)",
    ));

    let mut buf = Vec::new();
    FoundUsersWriter::new(&mut buf, 22, 0).finish();
    out.push(("foundusers without a match", buf, "foundusers(22,0,)"));

    // `total` counts every match, also those past the listed ones.
    let mut buf = Vec::new();
    let mut list = FoundUsersWriter::new(&mut buf, 23, 1500);
    list.user(42, "alice", 1);
    list.user(43, "zo\u{eb}", 2);
    list.finish();
    out.push((
        "foundusers",
        buf,
        "foundusers(23,1500,42,5,alice1,43,4,zo\u{eb}2,)",
    ));

    out
}

/// Texts that must cross `send` and come back in `chat` byte for byte: empty, separators, a
/// trailing `)`, non-ASCII, a line break, and one longer than a 16-bit length.
pub fn texts() -> Vec<String> {
    vec![
        String::new(),
        "a".into(),
        "a,(b)c)".into(),
        "gr\u{fc}\u{df}e \u{1f600}".into(),
        "line\nbreak".into(),
        "x".repeat(70_000),
    ]
}
