//! How the nodes of a cluster write what they share, in Redis and on its channels: JSON
//! objects, one per record or message, so `redis-cli` shows an operator something readable.
//!
//! Every decoder answers `None` for anything it does not understand: a node never trusts what
//! it reads from Redis more than it trusts a client.

use serde_json::{Value, json};

use crate::chat::{
    Change, Dialect, Identity, Person, Presence, Relayed, StoredOffline, StoredRoom, StoredSnap,
    StoredUser, TempRoom,
};

fn u(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

fn s(v: &Value, key: &str) -> Option<String> {
    Some(v.get(key)?.as_str()?.to_owned())
}

fn opt_s(v: &Value, key: &str) -> Option<Option<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(x)) => Some(Some(x.clone())),
        Some(_) => None,
    }
}

fn opt_u(v: &Value, key: &str) -> Option<Option<u64>> {
    match v.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(x) => Some(Some(x.as_u64()?)),
    }
}

pub fn parse(text: &[u8]) -> Option<Value> {
    serde_json::from_slice(text).ok()
}

// ---- records ---------------------------------------------------------------------------------

/// A user without its password hash (kept apart, so a password change rewrites one field).
pub fn user(user: &StoredUser) -> String {
    json!({"id": user.id, "seq": user.seq, "name": user.name}).to_string()
}

pub fn user_from(v: &Value, hash: String) -> Option<StoredUser> {
    Some(StoredUser {
        id: u(v, "id")?,
        seq: u(v, "seq")?,
        name: s(v, "name")?,
        hash,
    })
}

pub fn room(id: u64, epoch: u64, name: &str, question: &str, answer: &Option<String>) -> String {
    json!({"id": id, "epoch": epoch, "name": name, "question": question, "answer": answer})
        .to_string()
}

pub fn room_from(v: &Value) -> Option<StoredRoom> {
    Some(StoredRoom {
        id: u(v, "id")?,
        epoch: u(v, "epoch")?,
        last_seq: 0,
        name: s(v, "name")?,
        question: s(v, "question")?,
        answer: opt_s(v, "answer")?,
    })
}

pub fn snap(s: &StoredSnap) -> Value {
    json!({"id": s.id, "from": s.from, "to": s.to, "sent": s.sent, "received": s.received,
           "readtime": s.readtime, "deadline": s.deadline, "text": s.text})
}

pub fn snap_from(v: &Value) -> Option<StoredSnap> {
    Some(StoredSnap {
        id: u(v, "id")?,
        from: u(v, "from")?,
        to: u(v, "to")?,
        sent: u(v, "sent")?,
        received: u(v, "received")?,
        readtime: u(v, "readtime")?,
        deadline: opt_u(v, "deadline")?,
        text: s(v, "text")?,
    })
}

pub fn offline(m: &StoredOffline) -> String {
    json!({"id": m.id, "to": m.to, "from": m.from, "from_name": m.from_name, "sent": m.sent,
           "text": m.text})
    .to_string()
}

pub fn offline_from(v: &Value) -> Option<StoredOffline> {
    Some(StoredOffline {
        id: u(v, "id")?,
        to: u(v, "to")?,
        from: u(v, "from")?,
        from_name: s(v, "from_name")?,
        sent: u(v, "sent")?,
        text: s(v, "text")?,
    })
}

pub fn temp_room(r: &TempRoom) -> Value {
    json!({"id": r.id, "name": r.name, "question": r.question, "answer": r.answer,
           "epoch": r.epoch, "by_url": r.by_url})
}

pub fn temp_room_from(v: &Value) -> Option<TempRoom> {
    Some(TempRoom {
        id: u(v, "id")?,
        name: s(v, "name")?,
        question: s(v, "question")?,
        answer: opt_s(v, "answer")?,
        epoch: u(v, "epoch")?,
        by_url: v.get("by_url")?.as_bool()?,
    })
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Protocol => "protocol",
        Dialect::RoomUrl => "room-url",
        Dialect::Json => "json",
    }
}

pub fn presence(p: &Presence) -> Value {
    let (kind, who) = match &p.identity {
        Identity::Anonymous => ("anonymous", Value::Null),
        Identity::Nick(nick) => ("nick", json!(nick)),
        Identity::User(id) => ("user", json!(id)),
    };
    json!({"dialect": dialect_name(p.dialect), "kind": kind, "who": who, "rooms": p.rooms})
}

pub fn presence_from(v: &Value) -> Option<Presence> {
    let dialect = match v.get("dialect")?.as_str()? {
        "protocol" => Dialect::Protocol,
        "room-url" => Dialect::RoomUrl,
        "json" => Dialect::Json,
        _ => return None,
    };
    let identity = match v.get("kind")?.as_str()? {
        "anonymous" => Identity::Anonymous,
        "nick" => Identity::Nick(s(v, "who")?),
        "user" => Identity::User(u(v, "who")?),
        _ => return None,
    };
    let rooms = v
        .get("rooms")?
        .as_array()?
        .iter()
        .map(Value::as_u64)
        .collect::<Option<Vec<u64>>>()?;
    Some(Presence {
        dialect,
        identity,
        rooms,
    })
}

fn person(p: &Person) -> Value {
    json!({"client": p.client, "user": p.user, "name": p.name})
}

fn person_from(v: &Value) -> Option<Person> {
    Some(Person {
        client: u(v, "client")?,
        user: u(v, "user")?,
        name: s(v, "name")?,
    })
}

pub fn relayed(r: &Relayed) -> Value {
    match r {
        Relayed::Private { from, text } => {
            json!({"e": "private", "from": person(from), "text": text})
        }
        Relayed::Broadcast { from, text } => {
            json!({"e": "broadcast", "from": person(from), "text": text})
        }
        Relayed::Invited { room, by } => json!({"e": "invited", "room": room, "by": person(by)}),
        Relayed::AccountDeleted { user } => json!({"e": "account-deleted", "user": user}),
        Relayed::Snap(s) => json!({"e": "snap", "snap": snap(s)}),
    }
}

pub fn relayed_from(v: &Value) -> Option<Relayed> {
    Some(match v.get("e")?.as_str()? {
        "private" => Relayed::Private {
            from: person_from(v.get("from")?)?,
            text: s(v, "text")?,
        },
        "broadcast" => Relayed::Broadcast {
            from: person_from(v.get("from")?)?,
            text: s(v, "text")?,
        },
        "invited" => Relayed::Invited {
            room: s(v, "room")?,
            by: person_from(v.get("by")?)?,
        },
        "account-deleted" => Relayed::AccountDeleted {
            user: u(v, "user")?,
        },
        "snap" => Relayed::Snap(snap_from(v.get("snap")?)?),
        _ => return None,
    })
}

/// A durable change as the other nodes receive it.
pub fn change(c: &Change) -> Value {
    match c {
        Change::PutUser(user) => {
            json!({"c": "put-user", "id": user.id, "seq": user.seq, "name": user.name,
                   "hash": user.hash})
        }
        Change::SetPassword { id, hash } => json!({"c": "set-password", "id": id, "hash": hash}),
        Change::DeleteUser { id } => json!({"c": "delete-user", "id": id}),
        Change::PutRoom {
            id,
            epoch,
            name,
            question,
            answer,
        } => json!({"c": "put-room", "id": id, "epoch": epoch, "name": name,
                    "question": question, "answer": answer}),
        Change::DeleteRoom { id } => json!({"c": "delete-room", "id": id}),
        Change::PutSnap(s) => json!({"c": "put-snap", "snap": snap(s)}),
        Change::ReadSnap {
            id,
            received,
            deadline,
        } => json!({"c": "read-snap", "id": id, "received": received, "deadline": deadline}),
        Change::DeleteSnap { id } => json!({"c": "delete-snap", "id": id}),
        Change::PutOffline(m) => json!({"c": "put-offline", "id": m.id, "to": m.to,
            "from": m.from, "from_name": m.from_name, "sent": m.sent, "text": m.text}),
        Change::DeleteOffline { ids } => json!({"c": "delete-offline", "ids": ids}),
        Change::AppendHistory(_) | Change::TrimHistory { .. } | Change::ReserveRooms { .. } => {
            json!({"c": "none"})
        }
    }
}

pub fn change_from(v: &Value) -> Option<Change> {
    Some(match v.get("c")?.as_str()? {
        "put-user" => Change::PutUser(StoredUser {
            id: u(v, "id")?,
            seq: u(v, "seq")?,
            name: s(v, "name")?,
            hash: s(v, "hash")?,
        }),
        "set-password" => Change::SetPassword {
            id: u(v, "id")?,
            hash: s(v, "hash")?,
        },
        "delete-user" => Change::DeleteUser { id: u(v, "id")? },
        "put-room" => Change::PutRoom {
            id: u(v, "id")?,
            epoch: u(v, "epoch")?,
            name: s(v, "name")?,
            question: s(v, "question")?,
            answer: opt_s(v, "answer")?,
        },
        "delete-room" => Change::DeleteRoom { id: u(v, "id")? },
        "put-snap" => Change::PutSnap(snap_from(v.get("snap")?)?),
        "read-snap" => Change::ReadSnap {
            id: u(v, "id")?,
            received: u(v, "received")?,
            deadline: opt_u(v, "deadline")?,
        },
        "delete-snap" => Change::DeleteSnap { id: u(v, "id")? },
        "put-offline" => Change::PutOffline(offline_from(v)?),
        "delete-offline" => Change::DeleteOffline {
            ids: v
                .get("ids")?
                .as_array()?
                .iter()
                .map(Value::as_u64)
                .collect::<Option<Vec<u64>>>()?,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_node_writes_the_others_read_back() {
        let p = Presence {
            dialect: Dialect::Json,
            identity: Identity::Nick("ann".into()),
            rooms: vec![3, 5],
        };
        assert_eq!(presence_from(&presence(&p)), Some(p));
        let changes = [
            Change::PutUser(StoredUser {
                id: 7,
                seq: 9,
                name: "bob".into(),
                hash: "$argon2id$x".into(),
            }),
            Change::DeleteOffline { ids: vec![1, 2] },
            Change::PutRoom {
                id: 1,
                epoch: 2,
                name: "r".into(),
                question: "q?".into(),
                answer: None,
            },
            Change::ReadSnap {
                id: 4,
                received: 10,
                deadline: Some(20),
            },
        ];
        for c in changes {
            assert_eq!(change_from(&change(&c)), Some(c));
        }
        let r = Relayed::Invited {
            room: "lobby".into(),
            by: Person {
                client: 1,
                user: 2,
                name: "ann".into(),
            },
        };
        assert_eq!(relayed_from(&relayed(&r)), Some(r));
        assert_eq!(presence_from(&json!({"dialect": "x"})), None);
        assert_eq!(change_from(&json!({"c": "put-user", "id": "1"})), None);
    }
}
