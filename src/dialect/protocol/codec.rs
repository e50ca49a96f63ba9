//! The wire codec of the command protocol (`docs/protocol.md`): client messages in, server messages out. Pure, no I/O.
//!
//! [`parse`] runs on the net thread for every message a protocol client sends, so it must accept
//! any bytes without panicking; everything it cannot make sense of becomes a [`ParseError`] that
//! the logic thread turns into the matching error reply (keeping that reply in order with the
//! connection's other replies).
//!
//! Server messages are written by [`Reply::encode`] and the list writers straight into the
//! caller's buffer (in practice a `ws::FrameWriter`'s), so a reply is formatted exactly once, into
//! the frame that is sent, with no intermediate string per field.
//!
//! Wire format in short: `name(` fields `)`. A number field (server side) is decimal digits and a
//! `,`; a string field is its byte length as a number field, then the bytes, with nothing after.

pub use crate::chat::Secret;

/// The largest number a client may send (`i64::MAX`, what the original server could hold).
const MAX_NUMBER: u64 = i64::MAX as u64;

/// One parsed client message; field names follow `protocol.md` §4 (`mid` is the messageid `M`).
///
/// Numbers are `u64` holding 0..=`i64::MAX`; strings are valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    AddChatroom {
        mid: u64,
        name: String,
        question: String,
        answer: Secret,
        server_password: Secret,
    },
    AddUser {
        mid: u64,
        userid: u64,
        username: String,
        password: Secret,
        server_password: Secret,
    },
    GetChatroomDetails {
        mid: u64,
        room: u64,
    },
    GetChatroomList {
        mid: u64,
    },
    GetUsers {
        mid: u64,
        status: u64,
        server_password: Secret,
    },
    GetUsersInChatroom {
        mid: u64,
        room: u64,
    },
    JoinChatroom {
        mid: u64,
        room: u64,
        leave_others: bool,
        answer: Secret,
    },
    LeaveChatroom {
        mid: u64,
        room: u64,
    },
    Login {
        mid: u64,
        username: String,
        password: Secret,
    },
    Logout {
        mid: u64,
        disconnect: bool,
    },
    Nop,
    RemoveChatroom {
        mid: u64,
        room: u64,
        server_password: Secret,
    },
    RemoveUser {
        mid: u64,
        userid: u64,
        server_password: Secret,
    },
    Send {
        mid: u64,
        room: u64,
        message: String,
    },
    SendTo {
        mid: u64,
        client: u64,
        userid: u64,
        message: String,
    },
    SendToAll {
        server_password: Secret,
        mid: u64,
        message: String,
    },
    SendSnap {
        mid: u64,
        to_userid: u64,
        expire: u64,
        readtime: u64,
        message: String,
    },
    GetSnaps {
        mid: u64,
    },
    ReadSnap {
        mid: u64,
        snap: u64,
    },
    Register {
        mid: u64,
        username: String,
        password: Secret,
    },
    ChangePassword {
        mid: u64,
        old_password: Secret,
        new_password: Secret,
    },
    DeleteAccount {
        mid: u64,
        password: Secret,
    },
    FindUsers {
        mid: u64,
        pattern: String,
    },
    GetHistory {
        mid: u64,
        room: u64,
        before: u64,
        limit: u64,
    },
    Resume {
        mid: u64,
        room: u64,
        epoch: u64,
        seq: u64,
    },
    Sequenced {
        mid: u64,
        on: bool,
    },
}

/// Why a client message could not be parsed; each maps to one error reply (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No known command name followed by `(` (the empty message included):
    /// `error(32,That message was not understood.)`.
    UnknownCommand,
    /// A known command with unparsable fields: `error(27,Syntax error in parameters.M,)`, or
    /// without `M,` when `mid` is `None` (the messageid had not been read).
    Syntax { mid: Option<u64> },
}

/// Parses one client message (one whole WebSocket message). Never panics.
pub fn parse(msg: &[u8]) -> Result<Command, ParseError> {
    let Some(open) = msg.iter().position(|&b| b == b'(') else {
        return Err(ParseError::UnknownCommand);
    };
    let fields = fields_parser(&msg[..open]).ok_or(ParseError::UnknownCommand)?;
    // The closing `)` is checked before any field is read: a message cut short is malformed as a
    // whole, whatever its fields look like, so its error carries no messageid.
    let body = msg[open + 1..]
        .strip_suffix(b")")
        .ok_or(ParseError::Syntax { mid: None })?;
    fields(&mut Fields {
        rest: body,
        mid: None,
    })
}

type FieldsParser = fn(&mut Fields<'_>) -> Result<Command, ParseError>;

/// The field parser for a command name. Struct fields are evaluated in the order written, which
/// is the wire order.
fn fields_parser(name: &[u8]) -> Option<FieldsParser> {
    Some(match name {
        b"addchatroom" => |f| {
            Ok(Command::AddChatroom {
                mid: f.mid()?,
                name: f.string()?,
                question: f.string()?,
                answer: f.secret()?,
                server_password: f.secret()?,
            })
        },
        b"adduser" => |f| {
            Ok(Command::AddUser {
                mid: f.mid()?,
                userid: f.number()?,
                username: f.string()?,
                password: f.secret()?,
                server_password: f.secret()?,
            })
        },
        b"getchatroomdetails" => |f| {
            Ok(Command::GetChatroomDetails {
                mid: f.mid()?,
                room: f.number()?,
            })
        },
        b"getchatroomlist" => |f| Ok(Command::GetChatroomList { mid: f.mid()? }),
        b"getusers" => |f| {
            Ok(Command::GetUsers {
                mid: f.mid()?,
                status: f.number()?,
                server_password: f.secret()?,
            })
        },
        b"getusersinchatroom" => |f| {
            Ok(Command::GetUsersInChatroom {
                mid: f.mid()?,
                room: f.number()?,
            })
        },
        b"joinchatroom" => |f| {
            Ok(Command::JoinChatroom {
                mid: f.mid()?,
                room: f.number()?,
                leave_others: f.number()? != 0,
                answer: f.secret()?,
            })
        },
        b"leavechatroom" => |f| {
            Ok(Command::LeaveChatroom {
                mid: f.mid()?,
                room: f.number()?,
            })
        },
        b"login" => |f| {
            Ok(Command::Login {
                mid: f.mid()?,
                username: f.string()?,
                password: f.secret()?,
            })
        },
        b"logout" => |f| {
            Ok(Command::Logout {
                mid: f.mid()?,
                disconnect: f.number()? != 0,
            })
        },
        b"nop" => |_| Ok(Command::Nop),
        b"removechatroom" => |f| {
            Ok(Command::RemoveChatroom {
                mid: f.mid()?,
                room: f.number()?,
                server_password: f.secret()?,
            })
        },
        b"removeuser" => |f| {
            Ok(Command::RemoveUser {
                mid: f.mid()?,
                userid: f.number()?,
                server_password: f.secret()?,
            })
        },
        b"send" => |f| {
            Ok(Command::Send {
                mid: f.mid()?,
                room: f.number()?,
                message: f.string()?,
            })
        },
        b"sendto" => |f| {
            Ok(Command::SendTo {
                mid: f.mid()?,
                client: f.number()?,
                userid: f.number()?,
                message: f.string()?,
            })
        },
        b"sendtoall" => |f| {
            Ok(Command::SendToAll {
                server_password: f.secret()?,
                mid: f.mid()?,
                message: f.string()?,
            })
        },
        b"sendsnap" => |f| {
            Ok(Command::SendSnap {
                mid: f.mid()?,
                to_userid: f.number()?,
                expire: f.number()?,
                readtime: f.number()?,
                message: f.string()?,
            })
        },
        b"getsnaps" => |f| Ok(Command::GetSnaps { mid: f.mid()? }),
        b"readsnap" => |f| {
            Ok(Command::ReadSnap {
                mid: f.mid()?,
                snap: f.number()?,
            })
        },
        b"register" => |f| {
            Ok(Command::Register {
                mid: f.mid()?,
                username: f.string()?,
                password: f.secret()?,
            })
        },
        b"changepassword" => |f| {
            Ok(Command::ChangePassword {
                mid: f.mid()?,
                old_password: f.secret()?,
                new_password: f.secret()?,
            })
        },
        b"deleteaccount" => |f| {
            Ok(Command::DeleteAccount {
                mid: f.mid()?,
                password: f.secret()?,
            })
        },
        b"findusers" => |f| {
            Ok(Command::FindUsers {
                mid: f.mid()?,
                pattern: f.string()?,
            })
        },
        b"gethistory" => |f| {
            Ok(Command::GetHistory {
                mid: f.mid()?,
                room: f.number()?,
                before: f.number()?,
                limit: f.number()?,
            })
        },
        b"resume" => |f| {
            Ok(Command::Resume {
                mid: f.mid()?,
                room: f.number()?,
                epoch: f.number()?,
                seq: f.number()?,
            })
        },
        b"sequenced" => |f| {
            Ok(Command::Sequenced {
                mid: f.mid()?,
                on: f.number()? != 0,
            })
        },
        _ => return None,
    })
}

/// Reads the fields of a message body (between `(` and the final `)`), left to right.
///
/// When the body is used up, every further field is missing and takes its default (0 or the
/// empty string): that is how optional trailing fields work.
struct Fields<'a> {
    rest: &'a [u8],
    /// The messageid once read, for the syntax-error reply.
    mid: Option<u64>,
}

impl Fields<'_> {
    fn syntax_error(&self) -> ParseError {
        ParseError::Syntax { mid: self.mid }
    }

    fn mid(&mut self) -> Result<u64, ParseError> {
        let mid = self.number()?;
        self.mid = Some(mid);
        Ok(mid)
    }

    /// Digits ended by `,` or by the end of the body; no digits at all is 0.
    fn number(&mut self) -> Result<u64, ParseError> {
        let (digits, rest) = match self.rest.iter().position(|&b| b == b',') {
            Some(comma) => (&self.rest[..comma], &self.rest[comma + 1..]),
            None => (self.rest, &[][..]),
        };
        let mut value = 0u64;
        for &b in digits {
            value = match b {
                b'0'..=b'9' => value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .filter(|&v| v <= MAX_NUMBER)
                    .ok_or_else(|| self.syntax_error())?,
                _ => return Err(self.syntax_error()),
            };
        }
        self.rest = rest;
        Ok(value)
    }

    /// A length number, then exactly that many bytes of UTF-8.
    fn string(&mut self) -> Result<String, ParseError> {
        let len = self.number()?;
        let (bytes, rest) = usize::try_from(len)
            .ok()
            .and_then(|len| self.rest.split_at_checked(len))
            .ok_or_else(|| self.syntax_error())?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.syntax_error())?;
        self.rest = rest;
        Ok(s.to_owned())
    }

    fn secret(&mut self) -> Result<Secret, ParseError> {
        Ok(Secret::new(self.string()?.into_bytes()))
    }
}

/// Error texts, byte for byte as clients match them (§4, §6).
pub mod error_text {
    pub const NOT_UNDERSTOOD: &str = "That message was not understood.";
    pub const SYNTAX: &str = "Syntax error in parameters.";
    pub const WRONG_SERVER_PASSWORD: &str = "Incorrect server password.";
    pub const USERID_IN_USE: &str = "That userid is already in use.";
    pub const USERNAME_IN_USE: &str = "That user name is already in use.";
    pub const USERID_ZERO: &str = "Userid must not be 0.";
    pub const ROOM_NOT_FOUND: &str = "That chatroom wasn't found.";
    pub const INVALID_STATUS: &str = "Invalid status code.";
    /// `getusersinchatroom` by a non-member.
    pub const NOT_A_MEMBER: &str = "You are not in that chatroom.";
    pub const ALREADY_MEMBER: &str = "You're already in this chatroom.";
    pub const WRONG_ANSWER: &str = "Sorry. That answer was wrong.";
    /// `leavechatroom` by a non-member.
    pub const NOT_IN_THIS_ROOM: &str = "You're not in this chatroom.";
    /// `send` by a non-member.
    pub const NOT_IN_THAT_ROOM: &str = "You're not in that chatroom.";
    pub const INCORRECT_LOGIN: &str = "Incorrect login.";
    pub const ALREADY_LOGGED_OUT: &str = "You are already logged out.";
    pub const USER_NOT_FOUND: &str = "That user wasn't found.";
    pub const USER_LOGGED_IN: &str = "That user is still logged in.";
    pub const NOT_ONLINE: &str = "That person is not online.";
    pub const SENDSNAP_LOGIN: &str = "You must be logged in to send a snap.";
    pub const GETSNAPS_LOGIN: &str = "You need to be logged in to use getsnaps.";
    pub const READSNAP_LOGIN: &str = "You need to be logged in to readsnap.";
    pub const SNAP_NOT_FOUND: &str = "That snap wasn't found.";
    pub const NOT_YOUR_SNAP: &str = "That is not your snap.";
    pub const INVALID_USER_NAME: &str = "Invalid user name.";
    pub const BAD_PASSWORD: &str = "Password must be 8 to 1024 bytes.";
    /// `changepassword` and `deleteaccount` without a login.
    pub const LOGIN_NEEDED: &str = "You must be logged in to do that.";
    pub const RATE_LIMITED: &str = "Too many messages; slow down.";
    pub const BUSY: &str = "Server busy; try again.";
    pub const STORE_FAILED: &str = "Server storage failed; try again.";
    pub const QUEUE_FULL: &str = "That user's message queue is full.";
    /// `sendto` an offline user without a login.
    pub const OFFLINE_LOGIN: &str = "You must be logged in to message an offline user.";
    /// Refusals that only other dialects' requests can cause, worded for completeness.
    pub const NOT_YOU: &str = "That is not you.";
    pub const PASSWORDS_DIFFER: &str = "The new passwords differ.";
    pub const NOT_REGISTERED: &str = "Only registered users have a password.";
    pub const ROOM_EXISTS: &str = "A chatroom with that name exists.";
    /// Quotas (the server's configured limits).
    pub const TOO_MANY_ROOMS_OWNED: &str = "You have made too many chatrooms.";
    pub const TOO_MANY_ROOMS: &str = "The server has too many chatrooms.";
    pub const ROOM_FULL: &str = "That chatroom is full.";
    pub const TOO_MANY_SNAPS_SENT: &str = "You have too many snaps waiting.";
    pub const TOO_MANY_SNAPS_WAITING: &str = "That user has too many snaps waiting.";
    pub const SNAP_TOO_LONG_LIVED: &str = "That snap would live too long.";
    pub const NAME_TOO_LONG: &str = "That name is too long.";
    pub const QUESTION_TOO_LONG: &str = "That question is too long.";
    pub const ANSWER_TOO_LONG: &str = "That answer is too long.";
    /// `resume` from a sequence number the room has not reached (§12).
    pub const BAD_HISTORY_RANGE: &str = "Invalid history range.";

    /// After too many failed guesses of a password or answer.
    pub fn try_later(secs: u64) -> String {
        format!("Too many failed attempts; try again in {secs} s.")
    }
}

/// A server message of fixed shape (§5); the three list replies have their own writers
/// ([`ChatroomListWriter`], [`UsersWriter`], [`MembersWriter`]) because their length is open.
///
/// Field names follow the spec: `mid` = M, `room` = R, `client` = C, `user` = U, `snap` = S.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    YourChatClientId {
        client: u64,
    },
    Success {
        mid: u64,
    },
    /// `error(text,M,)`, or `error(text)` when `mid` is `None`.
    Error {
        text: &'a str,
        mid: Option<u64>,
    },
    ChatroomCreated {
        mid: u64,
        room: u64,
        name: &'a str,
        info: u64,
        count: u64,
    },
    ChatroomDetails {
        mid: u64,
        room: u64,
        name: &'a str,
        info: u64,
        count: u64,
        question: &'a str,
    },
    ChatroomWasDeleted {
        mid: u64,
        room: u64,
    },
    UserJoinedChatroom {
        mid: u64,
        room: u64,
        client: u64,
        user: u64,
        username: &'a str,
        count: u64,
    },
    UserLeftChatroom {
        mid: u64,
        room: u64,
        client: u64,
        user: u64,
        username: &'a str,
        count: u64,
    },
    Chat {
        mid: u64,
        room: u64,
        client: u64,
        user: u64,
        message: &'a str,
    },
    /// A room message for a connection that asked for `sequenced` (§12).
    ChatSeq {
        mid: u64,
        room: u64,
        client: u64,
        user: u64,
        epoch: u64,
        seq: u64,
        message: &'a str,
    },
    /// The end of a resume: `flag` 1 complete, 0 not recovered.
    Recovered {
        mid: u64,
        room: u64,
        flag: u64,
    },
    Msg {
        mid: u64,
        client: u64,
        user: u64,
        message: &'a str,
    },
    PrivateMessage {
        client: u64,
        user: u64,
        username: &'a str,
        message: &'a str,
    },
    SnapSent {
        mid: u64,
        snap: u64,
    },
    Registered {
        mid: u64,
        user: u64,
    },
    AccountDeleted {
        mid: u64,
        user: u64,
    },
    Queued {
        mid: u64,
    },
    OfflineMsg {
        user: u64,
        username: &'a str,
        sent: u64,
        message: &'a str,
    },
    Snap {
        snap: u64,
        to: u64,
        from: u64,
        sent: u64,
        received: u64,
        readtime: u64,
        message: &'a str,
    },
}

impl Reply<'_> {
    /// Appends the message to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match *self {
            Reply::YourChatClientId { client } => Enc::open(buf, "yourchatclientid").num(client),
            Reply::Success { mid } => Enc::open(buf, "success").num(mid),
            Reply::Error { text, mid } => {
                let e = Enc::open(buf, "error").str(text);
                match mid {
                    Some(mid) => e.num(mid),
                    None => e,
                }
            }
            Reply::ChatroomCreated {
                mid,
                room,
                name,
                info,
                count,
            } => Enc::open(buf, "chatroomcreated")
                .num(mid)
                .num(room)
                .str(name)
                .num(info)
                .num(count),
            Reply::ChatroomDetails {
                mid,
                room,
                name,
                info,
                count,
                question,
            } => Enc::open(buf, "chatroomdetails")
                .num(mid)
                .num(room)
                .str(name)
                .num(info)
                .num(count)
                .str(question),
            Reply::ChatroomWasDeleted { mid, room } => {
                Enc::open(buf, "chatroomwasdeleted").num(mid).num(room)
            }
            Reply::UserJoinedChatroom {
                mid,
                room,
                client,
                user,
                username,
                count,
            } => Enc::open(buf, "userjoinedchatroom")
                .num(mid)
                .num(room)
                .num(client)
                .num(user)
                .str(username)
                .num(count),
            Reply::UserLeftChatroom {
                mid,
                room,
                client,
                user,
                username,
                count,
            } => Enc::open(buf, "userleftchatroom")
                .num(mid)
                .num(room)
                .num(client)
                .num(user)
                .str(username)
                .num(count),
            Reply::Chat {
                mid,
                room,
                client,
                user,
                message,
            } => Enc::open(buf, "chat")
                .num(mid)
                .num(room)
                .num(client)
                .num(user)
                .str(message),
            Reply::ChatSeq {
                mid,
                room,
                client,
                user,
                epoch,
                seq,
                message,
            } => Enc::open(buf, "chatseq")
                .num(mid)
                .num(room)
                .num(client)
                .num(user)
                .num(epoch)
                .num(seq)
                .str(message),
            Reply::Recovered { mid, room, flag } => {
                Enc::open(buf, "recovered").num(mid).num(room).num(flag)
            }
            Reply::Msg {
                mid,
                client,
                user,
                message,
            } => Enc::open(buf, "msg")
                .num(mid)
                .num(client)
                .num(user)
                .str(message),
            Reply::PrivateMessage {
                client,
                user,
                username,
                message,
            } => Enc::open(buf, "privatemessage")
                .num(client)
                .num(user)
                .str(username)
                .str(message),
            Reply::SnapSent { mid, snap } => Enc::open(buf, "snap_sent").num(mid).num(snap),
            Reply::Registered { mid, user } => Enc::open(buf, "registered").num(mid).num(user),
            Reply::AccountDeleted { mid, user } => {
                Enc::open(buf, "accountdeleted").num(mid).num(user)
            }
            Reply::Queued { mid } => Enc::open(buf, "queued").num(mid),
            Reply::OfflineMsg {
                user,
                username,
                sent,
                message,
            } => Enc::open(buf, "offlinemsg")
                .num(user)
                .str(username)
                .num(sent)
                .str(message),
            Reply::Snap {
                snap,
                to,
                from,
                sent,
                received,
                readtime,
                message,
            } => Enc::open(buf, "snap")
                .num(snap)
                .num(to)
                .num(from)
                .num(sent)
                .num(received)
                .num(readtime)
                .str(message),
        };
        buf.push(b')');
    }
}

/// Appends fields to a message being written; the caller writes the closing `)`.
struct Enc<'b>(&'b mut Vec<u8>);

impl<'b> Enc<'b> {
    fn open(buf: &'b mut Vec<u8>, name: &str) -> Self {
        buf.extend_from_slice(name.as_bytes());
        buf.push(b'(');
        Enc(buf)
    }

    fn num(self, n: u64) -> Self {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.0.push(b',');
        self
    }

    fn str(self, s: &str) -> Self {
        let e = self.num(s.len() as u64);
        e.0.extend_from_slice(s.as_bytes());
        e
    }

    /// A shorter-lived `Enc` on the same buffer, for appending through `&mut self`.
    fn reborrow(&mut self) -> Enc<'_> {
        Enc(&mut *self.0)
    }
}

/// Writes `chatroomlist(M,` `[R,name,info,count,]…` `)`: [`room`](Self::room) per room, then
/// [`finish`](Self::finish).
pub struct ChatroomListWriter<'b>(Enc<'b>);

impl<'b> ChatroomListWriter<'b> {
    pub fn new(buf: &'b mut Vec<u8>, mid: u64) -> Self {
        ChatroomListWriter(Enc::open(buf, "chatroomlist").num(mid))
    }

    pub fn room(&mut self, room: u64, name: &str, info: u64, count: u64) {
        self.0.reborrow().num(room).str(name).num(info).num(count);
    }

    pub fn finish(self) {
        self.0.0.push(b')');
    }
}

/// Writes `users(M,` `[U,username,status,]…` `)`: [`user`](Self::user) per user, then
/// [`finish`](Self::finish).
pub struct UsersWriter<'b>(Enc<'b>);

impl<'b> UsersWriter<'b> {
    pub fn new(buf: &'b mut Vec<u8>, mid: u64) -> Self {
        UsersWriter(Enc::open(buf, "users").num(mid))
    }

    pub fn user(&mut self, user: u64, username: &str, status: u64) {
        self.0.reborrow().num(user).str(username).num(status);
    }

    pub fn finish(self) {
        self.0.0.push(b')');
    }
}

/// Writes `foundusers(M,total,` `[U,username,status,]…` `)`: [`user`](Self::user) per match,
/// then [`finish`](Self::finish).
pub struct FoundUsersWriter<'b>(Enc<'b>);

impl<'b> FoundUsersWriter<'b> {
    pub fn new(buf: &'b mut Vec<u8>, mid: u64, total: u64) -> Self {
        FoundUsersWriter(Enc::open(buf, "foundusers").num(mid).num(total))
    }

    pub fn user(&mut self, user: u64, username: &str, status: u64) {
        self.0.reborrow().num(user).str(username).num(status);
    }

    pub fn finish(self) {
        self.0.0.push(b')');
    }
}

/// Writes `history(M,R,epoch,` `[seq,C,U,username,datesent,message]…` `)`:
/// [`message`](Self::message) per kept message, then [`finish`](Self::finish).
pub struct HistoryWriter<'b>(Enc<'b>);

impl<'b> HistoryWriter<'b> {
    pub fn new(buf: &'b mut Vec<u8>, mid: u64, room: u64, epoch: u64) -> Self {
        HistoryWriter(Enc::open(buf, "history").num(mid).num(room).num(epoch))
    }

    pub fn message(
        &mut self,
        seq: u64,
        client: u64,
        user: u64,
        username: &str,
        sent: u64,
        message: &str,
    ) {
        self.0
            .reborrow()
            .num(seq)
            .num(client)
            .num(user)
            .str(username)
            .num(sent)
            .str(message);
    }

    pub fn finish(self) {
        self.0.0.push(b')');
    }
}

/// Writes `usersinchatroom(M,R,` `[C,U,username]…` `)`: [`member`](Self::member) per member,
/// then [`finish`](Self::finish).
pub struct MembersWriter<'b>(Enc<'b>);

impl<'b> MembersWriter<'b> {
    pub fn new(buf: &'b mut Vec<u8>, mid: u64, room: u64) -> Self {
        MembersWriter(Enc::open(buf, "usersinchatroom").num(mid).num(room))
    }

    pub fn member(&mut self, client: u64, user: u64, username: &str) {
        self.0.reborrow().num(client).num(user).str(username);
    }

    pub fn finish(self) {
        self.0.0.push(b')');
    }
}

pub mod vectors;

#[cfg(test)]
mod tests;
