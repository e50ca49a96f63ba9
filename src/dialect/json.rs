//! The GTChat JSON dialect (`docs/json-dialect.md`): one JSON object per message each way.
//!
//! Requests are read with `serde_json` into a `Value` first, so every way a message can be
//! wrong (not JSON, nested past serde_json's recursion limit, not an object, a field of the
//! wrong type) becomes a `bad request` reply with a detail, never a crash. Replies and events
//! are written field by field straight into the frame buffer, strings escaped by serde_json.

use serde_json::{Map, Value};

use super::ActorView;
use crate::chat::{
    Answer, ChatError, Event, Intent, Kind, Message, Request, Requires, RoomRef, Secret, Tag, Who,
};
use crate::dialect::protocol::display_name;

/// Parses one request. Never panics.
pub fn parse(msg: &[u8]) -> Request {
    let obj = match serde_json::from_slice::<Value>(msg) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => return bad(Tag::default(), "a request must be a JSON object".into()),
        Err(e) => return bad(Tag::default(), format!("not JSON: {e}")),
    };
    let id = match obj.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
        Some(_) => return bad(Tag::default(), "id must be a string or a number".into()),
    };
    let Some(Value::String(cmd)) = obj.get("cmd") else {
        return bad(tag(None, id), "cmd must be a string".into());
    };
    let tag = tag(Some(cmd), id);
    match command(cmd, &Fields(&obj)) {
        Ok((kind, requires, intent)) => Request {
            mid: None,
            kind,
            tag,
            requires,
            intent,
            over_rate: false,
        },
        Err(detail) => bad(tag, detail),
    }
}

/// What the core is asked, from a command and its fields; `Err` is a bad request's detail.
fn command(
    cmd: &str,
    f: &Fields<'_>,
) -> Result<(Kind, Requires, Result<Intent, ChatError>), String> {
    let user = || f.required("usr").map(Requires::LoginAs);
    let room = || f.required("room_name").map(RoomRef::Name);
    Ok(match cmd {
        "register" => (
            Kind::Register,
            Requires::Nothing,
            Ok(Intent::Register {
                name: f.required("usr")?,
                password: f.secret("pwd")?,
            }),
        ),
        "login" => match f.optional("type")?.as_deref() {
            None | Some("reg") => (
                Kind::Login,
                Requires::Nothing,
                Ok(Intent::Login {
                    name: f.required("usr")?,
                    password: f.secret("pwd")?,
                }),
            ),
            Some("tmp") => (
                Kind::GuestLogin,
                Requires::Nothing,
                Ok(Intent::GuestLogin {
                    name: f.required("usr")?,
                }),
            ),
            Some(_) => return Err("type must be \"reg\" or \"tmp\"".into()),
        },
        "update_pwd" => {
            let (old, new, again) = (
                f.secret("pwd")?,
                f.secret("new_pwd")?,
                f.secret("new_pwd2")?,
            );
            let intent = if new == again {
                Ok(Intent::ChangePassword { old, new })
            } else {
                Err(ChatError::PasswordsDiffer)
            };
            (Kind::ChangePassword, user()?, intent)
        }
        "create_room" => (
            Kind::CreateRoom,
            user()?,
            Ok(Intent::CreateRoom {
                name: f.required("room_name")?,
                question: String::new(),
                answer: Secret::default(),
                key: Secret::default(),
                unique: true,
            }),
        ),
        "invite" => (
            Kind::Invite,
            user()?,
            Ok(Intent::Invite {
                room: room()?,
                invitee: f.required("invitee")?,
            }),
        ),
        "join_room" => (
            Kind::Join,
            user()?,
            Ok(Intent::Join {
                room: room()?,
                leave_others: false,
                answer: Secret::new(f.optional("answer")?.unwrap_or_default().into_bytes()),
                since: f.since()?,
            }),
        ),
        "history" => (
            Kind::History,
            user()?,
            Ok(Intent::History {
                room: room()?,
                before: f.number("before")?.unwrap_or(0),
                limit: f.number("limit")?.unwrap_or(0),
            }),
        ),
        "leave_room" => (Kind::Leave, user()?, Ok(Intent::Leave { room: room()? })),
        "speak" => {
            let text = f.required("msg")?;
            let intent = match (f.optional("room_name")?, f.optional("broadcast_key")?) {
                (Some(name), _) => Intent::Say {
                    room: RoomRef::Name(name),
                    text,
                },
                (None, Some(key)) => Intent::Broadcast {
                    key: Secret::new(key.into_bytes()),
                    text,
                },
                (None, None) => return Err("speak needs room_name or broadcast_key".into()),
            };
            (Kind::Say, user()?, Ok(intent))
        }
        _ => (Kind::Unknown, Requires::Nothing, Err(ChatError::Unknown)),
    })
}

/// A request's fields, each a string when present.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn optional(&self, key: &str) -> Result<Option<String>, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{key} must be a string")),
        }
    }

    fn required(&self, key: &str) -> Result<String, String> {
        self.optional(key)?
            .ok_or_else(|| format!("{key} is missing"))
    }

    fn secret(&self, key: &str) -> Result<Secret, String> {
        Ok(Secret::new(self.required(key)?.into_bytes()))
    }

    /// A whole number 0..=2^53 (what every JSON implementation holds exactly), when present.
    fn number(&self, key: &str) -> Result<Option<u64>, String> {
        number(self.0.get(key), key)
    }

    /// `"since":{"epoch":E,"seq":N}` on `join_room` (§12 of the command protocol).
    fn since(&self) -> Result<Option<(u64, u64)>, String> {
        match self.0.get("since") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => {
                let epoch = number(o.get("epoch"), "since.epoch")?;
                let seq = number(o.get("seq"), "since.seq")?;
                match (epoch, seq) {
                    (Some(e), Some(s)) => Ok(Some((e, s))),
                    _ => Err("since needs epoch and seq".into()),
                }
            }
            Some(_) => Err("since must be an object".into()),
        }
    }
}

/// The largest number read from a request: 2^53, the largest every JSON reader holds exactly.
const MAX_NUMBER: u64 = 1 << 53;

fn number(value: Option<&Value>, key: &str) -> Result<Option<u64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if n <= MAX_NUMBER => Ok(Some(n)),
            _ => Err(format!("{key} must be a whole number from 0 to 2^53")),
        },
        Some(_) => Err(format!("{key} must be a number")),
    }
}

fn bad(tag: Tag, detail: String) -> Request {
    Request {
        mid: None,
        kind: Kind::Unknown,
        tag,
        requires: Requires::Nothing,
        intent: Err(ChatError::Malformed {
            detail: detail.into(),
        }),
        over_rate: false,
    }
}

/// The reply's leading fields: `"cmd":C` and `"id":I` as the request had them.
fn tag(cmd: Option<&String>, id: Option<&Value>) -> Tag {
    let mut fields = Vec::new();
    if let Some(cmd) = cmd {
        fields.push(format!("\"cmd\":{}", Value::from(cmd.as_str())));
    }
    if let Some(id) = id {
        fields.push(format!("\"id\":{id}"));
    }
    Tag((!fields.is_empty()).then(|| fields.join(",").into()))
}

/// A JSON client learns from its reply what its own request did.
pub fn actor_view(_: &Event<'_>) -> ActorView {
    ActorView::Nothing
}

pub fn event(buf: &mut Vec<u8>, event: &Event<'_>) -> bool {
    let o = Obj::open(buf);
    match event {
        Event::RoomCreated { room, by } => o
            .str("event", "room_created")
            .str("room_name", room.name)
            .str("by", &display_name(by)),
        Event::RoomDeleted { name, .. } => o.str("event", "room_deleted").str("room_name", name),
        Event::Joined { name, who, .. } | Event::Renamed { name, who, .. } => o
            .str("event", "joined")
            .str("room_name", name)
            .who("usr", who),
        Event::Left { name, who, .. } => o
            .str("event", "left")
            .str("room_name", name)
            .who("usr", who),
        Event::Said {
            name,
            who,
            text,
            epoch,
            seq,
            ..
        } => o
            .str("event", "message")
            .str("room_name", name)
            .who("usr", who)
            .str("msg", text)
            .num("epoch", *epoch)
            .num("seq", *seq),
        Event::Private { from, text } => o
            .str("event", "private_message")
            .who("from", from)
            .num("userid", from.user)
            .str("msg", text),
        Event::Broadcast { from, text } => o
            .str("event", "broadcast")
            .who("usr", from)
            .str("msg", text),
        Event::Invited { room, by } => o
            .str("event", "invited")
            .str("room_name", room)
            .who("inviter", by),
        Event::AccountDeleted { .. } => o.str("event", "account_deleted"),
        Event::Offline {
            from_name,
            sent,
            text,
            ..
        } => o
            .str("event", "offline_message")
            .str("from", from_name)
            .num("sent", *sent)
            .str("msg", text),
        Event::Welcome { .. } | Event::Snap(_) => return false,
    }
    .close();
    true
}

pub fn reply(buf: &mut Vec<u8>, tag: &Tag, result: &Result<Answer<'_>, ChatError>) -> bool {
    if let Ok(Answer::Silent) = result {
        return false;
    }
    let mut o = Obj::open(buf);
    if let Some(fields) = &tag.0 {
        o.0.extend_from_slice(fields.as_bytes());
        o.1 = true;
    }
    let o = match result {
        Err(ChatError::Malformed { detail }) => o
            .raw("ok", "false")
            .str("error", "bad request")
            .str("detail", detail),
        Err(ChatError::TryLater { secs }) => o
            .raw("ok", "false")
            .str("error", "try later")
            .num("retry_after", *secs),
        Err(e) => o.raw("ok", "false").str("error", error_code(e)),
        Ok(answer) => {
            let o = o.raw("ok", "true");
            match answer {
                Answer::InRoom {
                    name,
                    members,
                    resumed,
                } => {
                    let o = o.key("room");
                    let room = Obj::open(&mut *o.0).str("name", name);
                    let names = members.iter().map(display_name);
                    room.strs("users", names).close();
                    match resumed {
                        Some(r) => o
                            .num("epoch", r.epoch)
                            .messages(&r.messages)
                            .raw("recovered", if r.complete { "true" } else { "false" }),
                        None => o,
                    }
                }
                Answer::History {
                    name,
                    epoch,
                    messages,
                    ..
                } => o
                    .str("room_name", name)
                    .num("epoch", *epoch)
                    .messages(messages),
                Answer::LoggedIn {
                    user,
                    session,
                    online,
                    rooms,
                } => o
                    .str("session_id", session)
                    .num("userid", *user)
                    .strs("users", online.iter())
                    .strs("rooms", rooms.iter()),
                Answer::Registered { user } => o.num("userid", *user),
                Answer::Said { epoch, seq } => o.num("epoch", *epoch).num("seq", *seq),
                _ => o,
            }
        }
    };
    o.close();
    true
}

/// The stable error code clients match (`docs/json-dialect.md` §4).
fn error_code(error: &ChatError) -> &'static str {
    match error {
        ChatError::Unknown => "unknown command",
        ChatError::Malformed { .. } => "bad request",
        ChatError::RateLimited => "rate limited",
        ChatError::NotYou => "not you",
        ChatError::NotLoggedIn => "not logged in",
        ChatError::WrongServerPassword => "bad key",
        ChatError::NameTaken | ChatError::UseridInUse => "name taken",
        ChatError::BadName | ChatError::UseridZero => "bad name",
        ChatError::BadPassword => "bad password",
        ChatError::PasswordsDiffer => "passwords differ",
        ChatError::NotRegistered => "not registered",
        ChatError::IncorrectLogin => "bad login",
        ChatError::RoomNotFound => "no such room",
        ChatError::RoomExists => "room exists",
        ChatError::Busy | ChatError::StoreFailed => "busy",
        ChatError::QueueFull => "not online",
        ChatError::NotAMember => "not a member",
        ChatError::AlreadyMember => "already in room",
        ChatError::WrongAnswer => "wrong answer",
        ChatError::NotOnline | ChatError::UserNotFound => "not online",
        ChatError::AlreadyLoggedOut => "not logged in",
        ChatError::UserLoggedIn
        | ChatError::InvalidStatus
        | ChatError::SnapNotFound
        | ChatError::NotYourSnap => "bad request",
        ChatError::QuotaExceeded(_) => "quota exceeded",
        ChatError::TooLong(_) => "too long",
        ChatError::TryLater { .. } => "try later",
        ChatError::BadHistoryRange => "bad range",
    }
}

/// Writes one JSON object, field by field; the flag says whether a field was written (so the
/// next needs a comma).
struct Obj<'b>(&'b mut Vec<u8>, bool);

impl<'b> Obj<'b> {
    fn open(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        Obj(buf, false)
    }

    /// Starts a field; the caller writes its value.
    fn key(mut self, key: &str) -> Self {
        if self.1 {
            self.0.push(b',');
        }
        self.1 = true;
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
        self
    }

    fn raw(self, key: &str, value: &str) -> Self {
        let o = self.key(key);
        o.0.extend_from_slice(value.as_bytes());
        o
    }

    fn str(self, key: &str, value: &str) -> Self {
        let o = self.key(key);
        write_str(o.0, value);
        o
    }

    fn who(self, key: &str, who: &Who<'_>) -> Self {
        self.str(key, &display_name(who))
    }

    fn num(self, key: &str, value: u64) -> Self {
        let o = self.key(key);
        o.0.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        o
    }

    fn strs<S: AsRef<str>>(self, key: &str, values: impl Iterator<Item = S>) -> Self {
        let o = self.key(key);
        o.0.push(b'[');
        for (i, v) in values.enumerate() {
            if i > 0 {
                o.0.push(b',');
            }
            write_str(o.0, v.as_ref());
        }
        o.0.push(b']');
        o
    }

    /// `"messages":[{"seq":N,"usr":U,"sent":T,"msg":M},…]`, oldest first.
    fn messages(self, messages: &[Message<'_>]) -> Self {
        let o = self.key("messages");
        o.0.push(b'[');
        for (i, m) in messages.iter().enumerate() {
            if i > 0 {
                o.0.push(b',');
            }
            let who = Who {
                client: m.client,
                user: m.user,
                name: m.name,
            };
            Obj::open(&mut *o.0)
                .num("seq", m.seq)
                .who("usr", &who)
                .num("sent", m.sent)
                .str("msg", m.text)
                .close();
        }
        o.0.push(b']');
        o
    }

    fn close(self) {
        self.0.push(b'}');
    }
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *buf, s).expect("writing to a Vec cannot fail");
}
