//! The command protocol (`docs/protocol.md`): `name(fields)` messages, parsed by [`codec`]
//! into commands, mapped here onto the core's intents, and the core's events and answers
//! rendered back into replies.

pub mod codec;

use codec::{
    ChatroomListWriter, Command, FoundUsersWriter, HistoryWriter, MembersWriter, ParseError, Reply,
    UsersWriter, error_text as text,
};

use super::ActorView;
use std::borrow::Cow;

use crate::chat::{
    Answer, ChatError, Event, Field, Intent, Kind, Quota, Request, RoomInfo, RoomRef, Target,
    UserInfo,
};

/// `info` bit: the receiving connection is in the room.
const INFO_MEMBER: u64 = 1;
/// `info` bit: joining needs an answer.
const INFO_ANSWER: u64 = 4;
/// `info` bit: the room is deleted when its last member leaves.
const INFO_TEMPORARY: u64 = 8;

/// Status of a user with at least one connection logged in as them.
const LOGGED_IN: u64 = 1;
/// Status of a user nobody is logged in as.
const LOGGED_OUT: u64 = 2;

/// Parses one message. Never panics.
pub fn parse(msg: &[u8]) -> Request {
    match codec::parse(msg) {
        Ok(command) => request(command),
        Err(ParseError::UnknownCommand) => {
            Request::plain(None, Kind::Unknown, Err(ChatError::Unknown))
        }
        Err(ParseError::Syntax { mid }) => Request::plain(
            mid,
            Kind::Unknown,
            Err(ChatError::Malformed { detail: "".into() }),
        ),
    }
}

/// The core's view of a parsed command.
pub fn request(command: Command) -> Request {
    use Command as C;
    let (mid, kind, intent) = match command {
        C::AddChatroom {
            mid,
            name,
            question,
            answer,
            server_password,
        } => (
            mid,
            Kind::CreateRoom,
            Intent::CreateRoom {
                name,
                question,
                answer,
                key: server_password,
                unique: false,
            },
        ),
        C::AddUser {
            mid,
            userid,
            username,
            password,
            server_password,
        } => (
            mid,
            Kind::AddUser,
            Intent::AddUser {
                id: userid,
                name: username,
                password,
                key: server_password,
            },
        ),
        C::GetChatroomDetails { mid, room } => {
            (mid, Kind::RoomDetails, Intent::RoomDetails { room })
        }
        C::GetChatroomList { mid } => (mid, Kind::ListRooms, Intent::ListRooms),
        C::GetUsers {
            mid,
            status,
            server_password,
        } => (
            mid,
            Kind::ListUsers,
            Intent::ListUsers {
                status,
                key: server_password,
            },
        ),
        C::GetUsersInChatroom { mid, room } => {
            (mid, Kind::RoomMembers, Intent::RoomMembers { room })
        }
        C::JoinChatroom {
            mid,
            room,
            leave_others,
            answer,
        } => (
            mid,
            Kind::Join,
            Intent::Join {
                room: RoomRef::Id(room),
                leave_others,
                answer,
                since: None,
            },
        ),
        C::LeaveChatroom { mid, room } => (
            mid,
            Kind::Leave,
            Intent::Leave {
                room: RoomRef::Id(room),
            },
        ),
        C::Login {
            mid,
            username,
            password,
        } => (
            mid,
            Kind::Login,
            Intent::Login {
                name: username,
                password,
            },
        ),
        C::Logout { mid, disconnect } => (mid, Kind::Logout, Intent::Logout { disconnect }),
        C::Nop => return Request::plain(None, Kind::Nop, Ok(Intent::Nop)),
        C::RemoveChatroom {
            mid,
            room,
            server_password,
        } => (
            mid,
            Kind::RemoveRoom,
            Intent::RemoveRoom {
                room,
                key: server_password,
            },
        ),
        C::RemoveUser {
            mid,
            userid,
            server_password,
        } => (
            mid,
            Kind::RemoveUser,
            Intent::RemoveUser {
                id: userid,
                key: server_password,
            },
        ),
        C::Send { mid, room, message } => (
            mid,
            Kind::Say,
            Intent::Say {
                room: RoomRef::Id(room),
                text: message,
            },
        ),
        C::SendTo {
            mid,
            client,
            userid,
            message,
        } => {
            let to = if userid != 0 {
                Target::User(userid)
            } else {
                Target::Client(client)
            };
            (mid, Kind::SendTo, Intent::SendTo { to, text: message })
        }
        C::SendToAll {
            server_password,
            mid,
            message,
        } => (
            mid,
            Kind::Broadcast,
            Intent::Broadcast {
                key: server_password,
                text: message,
            },
        ),
        C::SendSnap {
            mid,
            to_userid,
            expire,
            readtime,
            message,
        } => (
            mid,
            Kind::SendSnap,
            Intent::SendSnap {
                to: to_userid,
                expire,
                readtime,
                text: message,
            },
        ),
        C::GetSnaps { mid } => (mid, Kind::GetSnaps, Intent::GetSnaps),
        C::ReadSnap { mid, snap } => (mid, Kind::ReadSnap, Intent::ReadSnap { snap }),
        C::Register {
            mid,
            username,
            password,
        } => (
            mid,
            Kind::Register,
            Intent::Register {
                name: username,
                password,
            },
        ),
        C::ChangePassword {
            mid,
            old_password,
            new_password,
        } => (
            mid,
            Kind::ChangePassword,
            Intent::ChangePassword {
                old: old_password,
                new: new_password,
            },
        ),
        C::DeleteAccount { mid, password } => {
            (mid, Kind::DeleteAccount, Intent::DeleteAccount { password })
        }
        C::FindUsers { mid, pattern } => (mid, Kind::FindUsers, Intent::FindUsers { pattern }),
        C::GetHistory {
            mid,
            room,
            before,
            limit,
        } => (
            mid,
            Kind::History,
            Intent::History {
                room: RoomRef::Id(room),
                before,
                limit,
            },
        ),
        C::Resume {
            mid,
            room,
            epoch,
            seq,
        } => (
            mid,
            Kind::Resume,
            Intent::Resume {
                room: RoomRef::Id(room),
                epoch,
                seq,
            },
        ),
        C::Sequenced { mid, on } => (mid, Kind::Sequenced, Intent::Sequenced { on }),
    };
    Request::plain(Some(mid), kind, Ok(intent))
}

/// A command-protocol client sees its own events as everyone does, except that a room it
/// created is marked as its own (`info` bit 1).
pub fn actor_view(event: &Event<'_>) -> ActorView {
    match event {
        Event::RoomCreated { .. } => ActorView::Own,
        _ => ActorView::Same,
    }
}

/// Writes `event` as seen by its actor (`as_actor`) or by everyone else; room messages as
/// `chatseq` for `sequenced` connections. Every event has a command-protocol form.
pub fn event(
    buf: &mut Vec<u8>,
    mid: u64,
    event: &Event<'_>,
    as_actor: bool,
    sequenced: bool,
) -> bool {
    let invitation;
    let reply = match *event {
        Event::Welcome { client } => Reply::YourChatClientId { client },
        Event::RoomCreated { room, .. } => Reply::ChatroomCreated {
            mid,
            room: room.id,
            name: room.name,
            info: info(&room) | if as_actor { INFO_MEMBER } else { 0 },
            count: room.count,
        },
        Event::RoomDeleted { room, .. } => Reply::ChatroomWasDeleted { mid, room },
        Event::Joined {
            room, who, count, ..
        }
        | Event::Renamed {
            room, who, count, ..
        } => Reply::UserJoinedChatroom {
            mid,
            room,
            client: who.client,
            user: who.user,
            username: who.name,
            count,
        },
        Event::Left {
            room, who, count, ..
        } => Reply::UserLeftChatroom {
            mid,
            room,
            client: who.client,
            user: who.user,
            username: who.name,
            count,
        },
        Event::Said {
            room,
            who,
            epoch,
            seq,
            text,
            ..
        } if sequenced => Reply::ChatSeq {
            mid,
            room,
            client: who.client,
            user: who.user,
            epoch,
            seq,
            message: text,
        },
        Event::Said {
            room, who, text, ..
        } => Reply::Chat {
            mid,
            room,
            client: who.client,
            user: who.user,
            message: text,
        },
        Event::Private { from, text } => Reply::Msg {
            mid,
            client: from.client,
            user: from.user,
            message: text,
        },
        Event::Broadcast { from, text } => Reply::PrivateMessage {
            client: from.client,
            user: from.user,
            username: from.name,
            message: text,
        },
        Event::Invited { room, by } => {
            invitation = format!("{} invites you to the chatroom {room}", display_name(&by));
            Reply::Msg {
                mid: 0,
                client: by.client,
                user: by.user,
                message: &invitation,
            }
        }
        Event::AccountDeleted { user } => Reply::AccountDeleted { mid, user },
        Event::Offline {
            from,
            from_name,
            sent,
            text,
        } => Reply::OfflineMsg {
            user: from,
            username: from_name,
            sent,
            message: text,
        },
        Event::Snap(s) => Reply::Snap {
            snap: s.id,
            to: s.to,
            from: s.from,
            sent: s.sent,
            received: s.received,
            readtime: s.readtime,
            message: s.text,
        },
    };
    reply.encode(buf);
    true
}

/// Writes the answer to a request; false when the protocol has nothing to say (the requester
/// already saw the event that confirms it).
pub fn reply(
    buf: &mut Vec<u8>,
    mid: Option<u64>,
    kind: Kind,
    result: &Result<Answer<'_>, ChatError>,
) -> bool {
    let m = mid.unwrap_or(0);
    match result {
        Err(e) => Reply::Error {
            text: &error_text(e, kind),
            mid,
        }
        .encode(buf),
        Ok(Answer::Done | Answer::LoggedIn { .. }) => Reply::Success { mid: m }.encode(buf),
        Ok(Answer::Confirmed | Answer::Said { .. } | Answer::Silent | Answer::InRoom { .. }) => {
            return false;
        }
        Ok(Answer::Registered { user }) => Reply::Registered {
            mid: m,
            user: *user,
        }
        .encode(buf),
        Ok(Answer::SnapSent { snap }) => Reply::SnapSent {
            mid: m,
            snap: *snap,
        }
        .encode(buf),
        Ok(Answer::Queued) => Reply::Queued { mid: m }.encode(buf),
        Ok(Answer::RoomDetails(r)) => Reply::ChatroomDetails {
            mid: m,
            room: r.id,
            name: r.name,
            info: info(r),
            count: r.count,
            question: r.question,
        }
        .encode(buf),
        Ok(Answer::RoomList(rooms)) => {
            let mut list = ChatroomListWriter::new(buf, m);
            for r in rooms {
                list.room(r.id, r.name, info(r), r.count);
            }
            list.finish();
        }
        Ok(Answer::Members { room, members }) => {
            let mut list = MembersWriter::new(buf, m, *room);
            for who in members {
                list.member(who.client, who.user, who.name);
            }
            list.finish();
        }
        Ok(Answer::Users(users)) => {
            let mut list = UsersWriter::new(buf, m);
            for u in users {
                list.user(u.id, u.name, status(u));
            }
            list.finish();
        }
        Ok(Answer::History {
            room,
            epoch,
            messages,
            ..
        }) => {
            let mut list = HistoryWriter::new(buf, m, *room, *epoch);
            for h in messages {
                list.message(h.seq, h.client, h.user, h.name, h.sent, h.text);
            }
            list.finish();
        }
        Ok(Answer::Recovered { room, complete, .. }) => Reply::Recovered {
            mid: m,
            room: *room,
            flag: u64::from(*complete),
        }
        .encode(buf),
        Ok(Answer::Found { total, users }) => {
            let mut list = FoundUsersWriter::new(buf, m, *total);
            for u in users {
                list.user(u.id, u.name, status(u));
            }
            list.finish();
        }
    }
    true
}

/// The `info` bits of a room as its viewer sees it.
fn info(room: &RoomInfo<'_>) -> u64 {
    let mut info = 0;
    if room.member {
        info |= INFO_MEMBER;
    }
    if room.needs_answer {
        info |= INFO_ANSWER;
    }
    if room.temporary {
        info |= INFO_TEMPORARY;
    }
    info
}

fn status(user: &UserInfo<'_>) -> u64 {
    if user.online { LOGGED_IN } else { LOGGED_OUT }
}

/// A name for prose: the username or nickname, or `guest{C}` for an anonymous connection.
pub fn display_name(who: &crate::chat::Who<'_>) -> String {
    if who.name.is_empty() {
        format!("guest{}", who.client)
    } else {
        who.name.to_owned()
    }
}

/// The error text clients match byte for byte; a few errors read differently per command.
fn error_text(error: &ChatError, kind: Kind) -> Cow<'static, str> {
    let fixed = match error {
        ChatError::TryLater { secs } => return Cow::Owned(text::try_later(*secs)),
        ChatError::QuotaExceeded(q) => match q {
            Quota::RoomsPerOwner => text::TOO_MANY_ROOMS_OWNED,
            Quota::Rooms => text::TOO_MANY_ROOMS,
            Quota::Members => text::ROOM_FULL,
            Quota::SnapsPerSender => text::TOO_MANY_SNAPS_SENT,
            Quota::SnapsPerRecipient => text::TOO_MANY_SNAPS_WAITING,
            Quota::SnapLifetime => text::SNAP_TOO_LONG_LIVED,
        },
        ChatError::TooLong(f) => match f {
            Field::Name => text::NAME_TOO_LONG,
            Field::Question => text::QUESTION_TOO_LONG,
            Field::Answer => text::ANSWER_TOO_LONG,
        },
        ChatError::Unknown => text::NOT_UNDERSTOOD,
        ChatError::Malformed { .. } => text::SYNTAX,
        ChatError::RateLimited => text::RATE_LIMITED,
        ChatError::WrongServerPassword => text::WRONG_SERVER_PASSWORD,
        ChatError::UseridInUse => text::USERID_IN_USE,
        ChatError::UseridZero => text::USERID_ZERO,
        ChatError::NameTaken => text::USERNAME_IN_USE,
        ChatError::BadName => text::INVALID_USER_NAME,
        ChatError::BadPassword => text::BAD_PASSWORD,
        ChatError::IncorrectLogin => text::INCORRECT_LOGIN,
        ChatError::AlreadyLoggedOut => text::ALREADY_LOGGED_OUT,
        ChatError::UserNotFound => text::USER_NOT_FOUND,
        ChatError::UserLoggedIn => text::USER_LOGGED_IN,
        ChatError::InvalidStatus => text::INVALID_STATUS,
        ChatError::NotOnline => text::NOT_ONLINE,
        ChatError::RoomNotFound => text::ROOM_NOT_FOUND,
        ChatError::AlreadyMember => text::ALREADY_MEMBER,
        ChatError::WrongAnswer => text::WRONG_ANSWER,
        ChatError::SnapNotFound => text::SNAP_NOT_FOUND,
        ChatError::NotYourSnap => text::NOT_YOUR_SNAP,
        ChatError::BadHistoryRange => text::BAD_HISTORY_RANGE,
        ChatError::NotAMember => match kind {
            Kind::RoomMembers => text::NOT_A_MEMBER,
            Kind::Leave => text::NOT_IN_THIS_ROOM,
            _ => text::NOT_IN_THAT_ROOM,
        },
        ChatError::NotLoggedIn => match kind {
            Kind::SendSnap => text::SENDSNAP_LOGIN,
            Kind::GetSnaps => text::GETSNAPS_LOGIN,
            Kind::ReadSnap => text::READSNAP_LOGIN,
            Kind::SendTo => text::OFFLINE_LOGIN,
            _ => text::LOGIN_NEEDED,
        },
        ChatError::NotYou => text::NOT_YOU,
        ChatError::PasswordsDiffer => text::PASSWORDS_DIFFER,
        ChatError::NotRegistered => text::NOT_REGISTERED,
        ChatError::RoomExists => text::ROOM_EXISTS,
        ChatError::Busy => text::BUSY,
        ChatError::StoreFailed => text::STORE_FAILED,
        ChatError::QueueFull => text::QUEUE_FULL,
    };
    Cow::Borrowed(fixed)
}
