//! What the operator's API asks of the core: read-only views of the state, and disconnecting a
//! user. The API module on the logic thread renders these as JSON; the core knows no format.

use super::durable::{Change, StoredOffline};
use super::limits::{Field, Quota};
use super::pending::{NewRoom, Then};
use super::rooms::{Key, Owner, stored_room};
use super::{
    Chat, ChatError, ConnId, Dialect, Effect, Event, Farewell, Notice, RoomInfo, Secret, Sink,
    UserInfo, Who, wildcard_match,
};

/// How the server itself appears as a sender.
pub(super) const SERVER: Who<'static> = Who {
    client: 0,
    user: 0,
    name: "server",
};

/// An operator's request the store committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiDone {
    RoomCreated {
        id: u64,
    },
    RoomDeleted {
        id: u64,
    },
    /// A send whose offline messages are all committed (or failed to be).
    Sent(Sent),
}

/// How many of what the core holds, for `/api/v1/stats` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Open chat connections per dialect, indexed like [`Dialect::ALL`].
    pub conns: [u64; 3],
    /// Users with at least one connection logged in as them.
    pub users_online: u64,
    /// Registered users.
    pub users: u64,
    pub rooms: u64,
}

/// One user as an operator sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView<'a> {
    pub id: u64,
    pub name: &'a str,
    /// Connections logged in as the user now.
    pub connections: u64,
    /// Messages the user sent (to rooms and privately), and private messages it received,
    /// since the server started.
    pub sent: u64,
    pub received: u64,
    /// The rooms those connections are in: id and name, by id.
    pub rooms: Vec<(u64, &'a str)>,
}

/// One room as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView<'a> {
    pub id: u64,
    pub name: &'a str,
    pub temporary: bool,
    /// Joining needs an answer (the answer itself is never shown).
    pub needs_answer: bool,
    pub members: u64,
}

impl Chat {
    pub fn census(&self) -> Census {
        let mut census = Census {
            users_online: self
                .users
                .iter()
                .filter(|(_, u)| !u.conns.is_empty())
                .count() as u64,
            users: self.users.iter().count() as u64,
            rooms: self.rooms.len() as u64,
            ..Census::default()
        };
        for dialect in Dialect::ALL {
            census.conns[dialect.index()] =
                self.conns.everyone(dialect).map_or(0, |c| c.len() as u64);
        }
        census
    }

    /// Users in the order they were added, those matching `pattern` (`*`, `?` wildcards) and,
    /// with `online_only`, only those logged in now.
    pub fn user_list(&self, online_only: bool, pattern: Option<&str>) -> Vec<UserInfo<'_>> {
        self.users
            .iter()
            .filter(|(_, u)| !online_only || !u.conns.is_empty())
            .filter(|(_, u)| pattern.is_none_or(|p| wildcard_match(p, &u.name)))
            .map(|(id, u)| UserInfo {
                id,
                name: &u.name,
                online: !u.conns.is_empty(),
            })
            .collect()
    }

    pub fn user_view(&self, id: u64) -> Option<UserView<'_>> {
        let user = self.users.get(id)?;
        let mut rooms: Vec<(u64, &str)> = user
            .conns
            .iter()
            .filter_map(|&c| self.conns.get(c))
            .flat_map(|c| c.rooms.iter().copied())
            .filter_map(|r| Some((r, self.rooms.get(r)?.name.as_str())))
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        Some(UserView {
            id,
            name: &user.name,
            connections: user.conns.len() as u64,
            sent: user.sent.get(),
            received: user.received.get(),
            rooms,
        })
    }

    /// Every room, by id.
    pub fn room_views(&self) -> Vec<RoomView<'_>> {
        let mut rooms: Vec<RoomView<'_>> = self
            .rooms
            .iter()
            .filter_map(|(id, _)| self.room_view(id))
            .collect();
        rooms.sort_unstable_by_key(|r| r.id);
        rooms
    }

    pub fn room_view(&self, id: u64) -> Option<RoomView<'_>> {
        let room = self.rooms.get(id)?;
        Some(RoomView {
            id,
            name: &room.name,
            temporary: room.temporary,
            needs_answer: !matches!(room.answer, super::rooms::Key::None),
            members: room.members.len(),
        })
    }

    /// The members of room `id` in join order, as others see them.
    pub fn room_member_list(&self, id: u64) -> Option<Vec<Who<'_>>> {
        let room = self.rooms.get(id)?;
        Some(room.members.iter().map(|m| self.who(m)).collect())
    }

    /// Closes every connection logged in as user `id` (the operator's kick). Returns how many,
    /// or `None` for no such user. The connections leave their rooms when the net thread
    /// reports them closed, as for any other close.
    pub fn disconnect_user(&self, id: u64, out: &mut dyn Sink) -> Option<u64> {
        let user = self.users.get(id)?;
        for &conn in &user.conns {
            out.emit(Effect::Close {
                conn,
                why: Farewell::Kicked,
            });
        }
        Some(user.conns.len() as u64)
    }
}

/// What `POST /api/v1/send` reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Connections the message went to.
    pub connections: u64,
    /// Offline users it was queued for (committed; delivered at their next login).
    pub queued: u64,
    /// Offline users it could not be queued for: the store failed to commit it.
    pub failed: u64,
    /// Offline users whose queue is full: not queued.
    pub queue_full: u64,
    /// Users and rooms named that do not exist.
    pub unknown: u64,
}

impl Chat {
    /// A message from the server itself (userid 0): privately to every connection of each user
    /// in `users` (queued as an offline message for those not online), and said in each room
    /// of `rooms`, rendered by every recipient's dialect. The answer for `http` is `Some` at
    /// once, or, when messages were queued, `None` and an [`Effect::ApiDone`] once they are
    /// committed: a reply that says "queued" means stored.
    #[allow(clippy::too_many_arguments)]
    pub fn server_send(
        &mut self,
        http: ConnId,
        users: &[u64],
        rooms: &[u64],
        text: &str,
        now: u64,
        out: &mut dyn Sink,
    ) -> Option<Sent> {
        let server = SERVER;
        let mut sent = Sent::default();
        let mut queued = Vec::new();
        let mut targets: Vec<ConnId> = Vec::new();
        for &id in users {
            match self.users.get(id) {
                None => sent.unknown += 1,
                Some(u) if u.conns.is_empty() => {
                    if self.offline.len(id) >= self.limits.offline_queue {
                        sent.queue_full += 1;
                        continue;
                    }
                    let message = StoredOffline {
                        id: self.offline.next_id(),
                        to: id,
                        from: 0,
                        from_name: SERVER.name.to_string(),
                        sent: now,
                        text: text.to_string(),
                    };
                    queued.push(message);
                }
                Some(u) => targets.extend(u.conns.iter().copied()),
            }
        }
        targets.sort_unstable();
        targets.dedup();
        sent.connections += targets.len() as u64;
        if !targets.is_empty() {
            let event = Event::Private { from: server, text };
            self.tell_conns(targets, 0, &event, out);
        }
        for &id in rooms {
            if self.rooms.get(id).is_none() {
                sent.unknown += 1;
                continue;
            }
            // Numbered and kept like every room message, so resuming clients get it too.
            let name = server.name.into();
            let (epoch, seq) = self.keep_from(id, 0, 0, name, text, now, out);
            let room = self.rooms.get(id).expect("checked");
            sent.connections += room.members.len();
            let event = super::Event::Said {
                room: id,
                name: &room.name,
                who: server,
                epoch,
                seq,
                text,
            };
            self.tell_room(id, None, 0, &event, out);
        }
        if queued.is_empty() {
            return Some(sent);
        }
        let batch = self.pending.api_send(http, sent, queued.len() as u64);
        for message in queued {
            let change = Change::PutOffline(message.clone());
            self.background(Then::ServerQueued { message, batch }, change, out);
        }
        None
    }
}

impl Chat {
    /// `POST /api/v1/rooms`: a persistent room without a question, committed first; the
    /// answer comes as [`Effect::ApiDone`] to `http`.
    pub fn api_create_room(
        &mut self,
        http: ConnId,
        name: String,
        out: &mut dyn Sink,
    ) -> Result<(), ChatError> {
        if name.len() > self.limits.name_len {
            return Err(ChatError::TooLong(Field::Name));
        }
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(ChatError::BadName);
        }
        if self.rooms.first_named(&name, |_| true).is_some() {
            return Err(ChatError::RoomExists);
        }
        if self.rooms.len() >= self.limits.rooms {
            return Err(ChatError::QuotaExceeded(Quota::Rooms));
        }
        let room = NewRoom {
            id: self.room_id(out)?,
            name,
            question: String::new(),
            answer: Secret::default(),
            answer_hash: None,
            epoch: self.epochs.draw(),
        };
        let change = stored_room(&room);
        self.background(Then::ApiRoomStored { http, room }, change, out);
        Ok(())
    }

    pub(super) fn api_room_stored(
        &mut self,
        http: ConnId,
        room: NewRoom,
        stored: bool,
        out: &mut dyn Sink,
    ) {
        if !stored {
            let result = Err(self.store_failed());
            return out.emit(Effect::ApiDone { conn: http, result });
        }
        let id = room.id;
        let history = super::history::History::new(room.epoch);
        self.rooms.add(
            id,
            room.name,
            room.question,
            Key::None,
            Owner::Server,
            history,
        );
        let r = self.rooms.get(id).expect("just added");
        let info = RoomInfo {
            id,
            name: &r.name,
            question: &r.question,
            member: false,
            needs_answer: false,
            temporary: false,
            count: 0,
        };
        let event = Event::RoomCreated {
            room: info,
            by: SERVER,
        };
        self.tell_everyone(true, None, 0, &event, out);
        out.emit(Effect::Notify(Notice::RoomCreated {
            room: id,
            name: &r.name,
        }));
        let result = Ok(ApiDone::RoomCreated { id });
        out.emit(Effect::ApiDone { conn: http, result });
    }

    /// `DELETE /api/v1/rooms/{id}`: members are taken out (room-URL members disconnected) and
    /// everyone is told, as for `removechatroom`; a persistent room's removal is committed
    /// first. The answer comes as [`Effect::ApiDone`] to `http`.
    pub fn api_delete_room(
        &mut self,
        http: ConnId,
        id: u64,
        out: &mut dyn Sink,
    ) -> Result<(), ChatError> {
        let room = self.rooms.get(id).ok_or(ChatError::RoomNotFound)?;
        if room.temporary {
            self.delete_room(id, 0, out);
            let result = Ok(ApiDone::RoomDeleted { id });
            out.emit(Effect::ApiDone { conn: http, result });
        } else {
            let change = Change::DeleteRoom { id };
            self.background(Then::ApiRoomDeleted { http, room: id }, change, out);
        }
        Ok(())
    }

    pub(super) fn api_room_deleted(
        &mut self,
        http: ConnId,
        room: u64,
        stored: bool,
        out: &mut dyn Sink,
    ) {
        let result = if stored {
            self.delete_room(room, 0, out);
            Ok(ApiDone::RoomDeleted { id: room })
        } else {
            Err(self.store_failed())
        };
        out.emit(Effect::ApiDone { conn: http, result });
    }
}
