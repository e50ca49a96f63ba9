//! The chat shared with the other nodes of a cluster (`docs/cluster.md`).
//!
//! Every node keeps the whole chat in memory: its own connections, and stand-ins for the
//! other nodes' connections (`ConnId::is_remote`) that are members, users' connections and
//! names in lists like any other, but are never sent anything by this node. What a node's own
//! connections do goes out as [`Shared`] (an [`Effect::Share`]); what the other nodes' did comes
//! in as [`Replica`] and is applied to the stand-ins with the same code as local requests, so a
//! join on another node is told to this node's members of the room, in their dialects, with
//! the room's cluster-wide count. Durable changes made by other nodes arrive as
//! [`Replica::Changed`].
//!
//! The core knows no Redis: the cluster bridge (`crate::cluster`) carries both enums.

use std::sync::Arc;

use super::conns::Identity;
use super::durable::{Change, StoredRoom, StoredSnap};
use super::history::History;
use super::rooms::{Key, Owner};
use super::{Chat, ConnId, Dialect, Effect, Event, Secret, Sink, SnapInfo, Who};

/// Where one connection of this node is: what the other nodes need to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub dialect: Dialect,
    pub identity: Identity,
    /// The rooms it is in, by id.
    pub rooms: Vec<u64>,
}

/// A room that lives only while it has members (a client's or a room URL's): other nodes
/// learn of it so their connections can find and join it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempRoom {
    pub id: u64,
    pub name: String,
    pub question: String,
    /// The answer members must give, in clear (temporary rooms never hash it).
    pub answer: Option<String>,
    pub epoch: u64,
    /// Made by a room URL: known by its name alone (see `Chat::merge_url_rooms`).
    pub by_url: bool,
}

/// Someone as shown in a relayed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub client: u64,
    pub user: u64,
    pub name: String,
}

impl Person {
    fn of(who: &Who<'_>) -> Person {
        Person {
            client: who.client,
            user: who.user,
            name: who.name.to_owned(),
        }
    }

    fn who(&self) -> Who<'_> {
        Who {
            client: self.client,
            user: self.user,
            name: &self.name,
        }
    }
}

/// An event for particular connections of another node (a private message, an invitation,
/// a snap), or for everyone (a broadcast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relayed {
    Private { from: Person, text: String },
    Broadcast { from: Person, text: String },
    Invited { room: String, by: Person },
    AccountDeleted { user: u64 },
    Snap(StoredSnap),
}

impl Relayed {
    /// The relayable form of `event`, if it is one that goes to particular people.
    pub fn of(event: &Event<'_>) -> Option<Relayed> {
        Some(match event {
            Event::Private { from, text } => Relayed::Private {
                from: Person::of(from),
                text: (*text).to_owned(),
            },
            Event::Broadcast { from, text } => Relayed::Broadcast {
                from: Person::of(from),
                text: (*text).to_owned(),
            },
            Event::Invited { room, by } => Relayed::Invited {
                room: (*room).to_owned(),
                by: Person::of(by),
            },
            Event::AccountDeleted { user } => Relayed::AccountDeleted { user: *user },
            Event::Snap(s) => Relayed::Snap(StoredSnap {
                id: s.id,
                from: s.from,
                to: s.to,
                sent: s.sent,
                received: s.received,
                readtime: s.readtime,
                deadline: None,
                text: s.text.to_owned(),
            }),
            _ => return None,
        })
    }

    pub fn event(&self) -> Event<'_> {
        match self {
            Relayed::Private { from, text } => Event::Private {
                from: from.who(),
                text,
            },
            Relayed::Broadcast { from, text } => Event::Broadcast {
                from: from.who(),
                text,
            },
            Relayed::Invited { room, by } => Event::Invited { room, by: by.who() },
            Relayed::AccountDeleted { user } => Event::AccountDeleted { user: *user },
            Relayed::Snap(s) => Event::Snap(SnapInfo {
                id: s.id,
                to: s.to,
                from: s.from,
                sent: s.sent,
                received: s.received,
                readtime: s.readtime,
                text: &s.text,
            }),
        }
    }
}

/// What this node's connections did that the other nodes must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// Connection `client` of this node is now so (`None`: it is gone).
    Presence {
        client: u64,
        state: Option<Presence>,
    },
    /// A member of this node said `text` in `room` (which has members on other nodes) in
    /// its request `mid`.
    Said {
        room: u64,
        client: u64,
        mid: u64,
        text: String,
    },
    /// `event` for connections `clients` of `node`, or (`node` `None`) for everyone; `mid`
    /// is the causing request's number.
    Relay {
        node: Option<String>,
        clients: Vec<u64>,
        mid: u64,
        event: Relayed,
    },
    RoomOpened(TempRoom),
    /// A temporary room was removed by an operator or left empty here.
    RoomClosed {
        id: u64,
    },
}

/// What other nodes did, and news of the cluster itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replica {
    Presence {
        node: String,
        client: u64,
        state: Option<Presence>,
    },
    Said {
        room: u64,
        client: u64,
        mid: u64,
        text: String,
    },
    /// `event` for this node's connections `clients` (none: everyone).
    Relayed {
        clients: Vec<u64>,
        mid: u64,
        event: Relayed,
    },
    RoomOpened(TempRoom),
    RoomClosed {
        id: u64,
    },
    /// A durable change another node committed.
    Changed(Change),
    /// Node `node` stopped (or restarted): its connections are gone.
    NodeGone {
        node: String,
    },
    /// The whole cluster as the shared state has it, after a start or a lost link: stand-ins
    /// that are not in `presence` are gone.
    Roster {
        rooms: Vec<TempRoom>,
        presence: Vec<(String, u64, Presence)>,
    },
    /// One direction of the link to the other nodes is up (or down: what needs them is
    /// refused meanwhile). `hearing`: the direction that listens, else the one that sends.
    Link {
        hearing: bool,
        up: bool,
    },
}

/// This node's place in a cluster.
pub(super) struct Membership {
    /// Whether this node can send to the other nodes now, and hear them.
    pub sending: bool,
    pub hearing: bool,
}

impl Chat {
    /// Makes this server a node of a cluster: it shares what its connections do and hands
    /// out only the ids of its slot.
    pub fn join_cluster(&mut self, ids: super::Ids) {
        self.conns.ids = ids;
        self.users.ids = ids;
        self.rooms.ids = ids;
        self.snaps.ids = ids;
        self.offline.ids = ids;
        self.cluster = Some(Membership {
            sending: true,
            hearing: true,
        });
    }

    /// Whether what involves other nodes must be refused now: the link to them is down.
    pub(super) fn cluster_down(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| !(c.sending && c.hearing))
    }

    /// On a cluster node, whether the other nodes can be reached both ways now.
    pub fn cluster_reachable(&self) -> Option<bool> {
        self.cluster.as_ref().map(|c| c.sending && c.hearing)
    }

    /// Tells the other nodes where local connection `conn` is now.
    pub(super) fn share_presence(&self, conn: ConnId, out: &mut dyn Sink) {
        if self.cluster.is_none() || conn.is_remote() {
            return;
        }
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if self.conns.by_client(c.client) != Some(conn) {
            // Closing: one last word when it is gone, not one per room it leaves.
            return;
        }
        let state = Presence {
            dialect: c.dialect,
            identity: c.identity.clone(),
            rooms: c.rooms.iter().copied().collect(),
        };
        out.emit(Effect::Share(Shared::Presence {
            client: c.client,
            state: Some(state),
        }));
    }

    /// Tells the other nodes that local connection `client` is gone.
    pub(super) fn share_gone(&self, conn: ConnId, client: u64, out: &mut dyn Sink) {
        if self.cluster.is_some() && !conn.is_remote() {
            out.emit(Effect::Share(Shared::Presence {
                client,
                state: None,
            }));
        }
    }

    /// Tells the other nodes about a temporary room made here.
    pub(super) fn share_room(&self, id: u64, out: &mut dyn Sink) {
        if self.cluster.is_none() {
            return;
        }
        let Some(r) = self.rooms.get(id) else {
            return;
        };
        let answer = match &r.answer {
            Key::Clear(secret) => Some(String::from_utf8_lossy(secret.expose()).into_owned()),
            _ => None,
        };
        out.emit(Effect::Share(Shared::RoomOpened(TempRoom {
            id,
            name: r.name.clone(),
            question: r.question.clone(),
            answer,
            epoch: r.history.epoch,
            by_url: r.owner.by_url(),
        })));
    }

    /// Sends `event` on to the other nodes' connections among `remote`, one relay per node.
    pub(super) fn relay(&self, remote: &[ConnId], mid: u64, event: &Event<'_>, out: &mut dyn Sink) {
        let Some(relayed) = Relayed::of(event) else {
            return;
        };
        let mut by_node: Vec<(&str, Vec<u64>)> = Vec::new();
        for c in remote.iter().filter_map(|&c| self.conns.get(c)) {
            let Some(node) = c.node.as_deref() else {
                continue;
            };
            match by_node.iter_mut().find(|(n, _)| *n == node) {
                Some((_, clients)) => clients.push(c.client),
                None => by_node.push((node, vec![c.client])),
            }
        }
        for (node, clients) in by_node {
            out.emit(Effect::Share(Shared::Relay {
                node: Some(node.to_owned()),
                clients,
                mid,
                event: relayed.clone(),
            }));
        }
    }

    /// Applies what another node did.
    pub fn replicate(&mut self, replica: Replica, now: u64, out: &mut dyn Sink) {
        match replica {
            Replica::Presence {
                node,
                client,
                state,
            } => self.place_remote(&node, client, state, out),
            Replica::Said {
                room,
                client,
                mid,
                text,
            } => {
                let Some(conn) = self.conns.by_client(client).filter(|c| c.is_remote()) else {
                    return;
                };
                if self
                    .rooms
                    .get(room)
                    .is_some_and(|r| r.members.contains(conn))
                {
                    self.said(conn, room, mid, &text, now, out);
                }
            }
            Replica::Relayed {
                clients,
                mid,
                event,
            } => {
                let event = event.event();
                if clients.is_empty() {
                    self.tell_everyone(false, None, mid, &event, out);
                } else {
                    let local = clients
                        .iter()
                        .filter_map(|&c| self.conns.by_client(c))
                        .filter(|c| !c.is_remote());
                    self.tell_conns(local, mid, &event, out);
                }
            }
            Replica::RoomOpened(room) => self.open_remote_room(room, out),
            Replica::RoomClosed { id } => {
                if self.rooms.get(id).is_some_and(|r| r.temporary) {
                    self.delete_room(id, 0, out);
                }
            }
            Replica::Changed(change) => self.apply_change(change, out),
            Replica::NodeGone { node } => {
                for conn in self.conns.of_node(&node) {
                    self.close(conn, out);
                }
            }
            Replica::Roster { rooms, presence } => {
                for room in rooms {
                    self.open_remote_room(room, out);
                }
                let listed: std::collections::HashSet<u64> =
                    presence.iter().map(|(_, client, _)| *client).collect();
                for conn in self.conns.remote() {
                    let client = self.conns.get(conn).map(|c| c.client);
                    if client.is_some_and(|c| !listed.contains(&c)) {
                        self.close(conn, out);
                    }
                }
                for (node, client, state) in presence {
                    self.place_remote(&node, client, Some(state), out);
                }
            }
            Replica::Link { hearing, up } => {
                if let Some(c) = &mut self.cluster {
                    match hearing {
                        true => c.hearing = up,
                        false => c.sending = up,
                    }
                }
            }
        }
    }

    fn open_remote_room(&mut self, room: TempRoom, out: &mut dyn Sink) {
        if room.by_url {
            let name = room.name.clone();
            self.add_remote_room(room, out);
            self.merge_url_rooms(&name, out);
        } else {
            self.add_remote_room(room, out);
        }
    }

    /// A room URL names a room, but two nodes may each have made the room of a name before
    /// hearing of the other's. Every node moves its own members of such rooms into the one
    /// with the smallest id (so all nodes agree without asking each other); the others empty
    /// and go.
    fn merge_url_rooms(&mut self, name: &str, out: &mut dyn Sink) {
        let ids: Vec<u64> = self
            .rooms
            .named(name)
            .filter(|&id| self.rooms.get(id).is_some_and(|r| r.owner.by_url()))
            .collect();
        let Some((&keep, others)) = ids.split_first() else {
            return;
        };
        for &other in others {
            let movers: Vec<ConnId> = self
                .rooms
                .get(other)
                .map(|r| r.members.iter().filter(|c| !c.is_remote()).collect())
                .unwrap_or_default();
            for conn in movers {
                self.exit(conn, other, 0, false, out);
                self.enter_if_absent(conn, keep, out);
            }
        }
    }

    fn add_remote_room(&mut self, room: TempRoom, out: &mut dyn Sink) {
        if self.rooms.get(room.id).is_some() {
            return;
        }
        let key = match room.answer {
            Some(answer) => Key::Clear(Secret::new(answer.as_bytes())),
            None => Key::None,
        };
        self.rooms.add(
            room.id,
            room.name,
            room.question,
            key,
            Owner::Remote { url: room.by_url },
            History::new(room.epoch),
        );
        self.announce_remote_room(room.id, out);
    }

    /// Makes the stand-in for `node`'s connection `client` be as `state` says (gone for
    /// `None`), telling this node's connections what changed as if it happened here.
    fn place_remote(
        &mut self,
        node: &str,
        client: u64,
        state: Option<Presence>,
        out: &mut dyn Sink,
    ) {
        let existing = self.conns.by_client(client);
        let Some(state) = state else {
            if let Some(conn) = existing.filter(|c| c.is_remote()) {
                self.close(conn, out);
            }
            return;
        };
        let conn = match existing {
            Some(conn) if conn.is_remote() => conn,
            // An id of ours cannot be another node's; a stale claim is ignored.
            Some(_) => return,
            None => {
                let identity = match &state.identity {
                    Identity::User(id) if self.users.get(*id).is_none() => Identity::Anonymous,
                    other => other.clone(),
                };
                let conn = self.conns.open_remote(
                    client,
                    state.dialect,
                    Identity::Anonymous,
                    Arc::from(node),
                );
                self.set_identity(conn, identity, out);
                conn
            }
        };
        let c = self.conns.get(conn).expect("just placed");
        if c.identity != state.identity {
            let rooms: Vec<u64> = c.rooms.iter().copied().collect();
            self.set_identity(conn, state.identity.clone(), out);
            for room in rooms {
                self.announce_login(conn, room, 0, out);
            }
        }
        let c = self.conns.get(conn).expect("just placed");
        let left: Vec<u64> = c
            .rooms
            .iter()
            .copied()
            .filter(|r| !state.rooms.contains(r))
            .collect();
        for room in left {
            self.exit(conn, room, 0, false, out);
        }
        for room in state.rooms {
            self.enter_if_absent(conn, room, out);
        }
    }

    /// Puts `conn` in `room` unless it is already there or the room is unknown here.
    fn enter_if_absent(&mut self, conn: ConnId, room: u64, out: &mut dyn Sink) {
        if self
            .rooms
            .get(room)
            .is_some_and(|r| !r.members.contains(conn))
        {
            self.enter(conn, room, 0, out);
        }
    }

    /// A durable change another node committed: the same state as if it were made here.
    fn apply_change(&mut self, change: Change, out: &mut dyn Sink) {
        match change {
            Change::PutUser(user) => {
                if self.users.get(user.id).is_none() && self.users.id_of(&user.name).is_none() {
                    self.users.restore(user);
                }
            }
            Change::SetPassword { id, hash } => {
                if let Some(u) = self.users.get_mut(id) {
                    u.hash = hash;
                }
            }
            Change::DeleteUser { id } => self.user_deleted(id, 0, out),
            Change::PutRoom {
                id,
                epoch,
                name,
                question,
                answer,
            } => {
                if self.rooms.get(id).is_some() {
                    return;
                }
                let stored = StoredRoom {
                    id,
                    epoch,
                    last_seq: 0,
                    name,
                    question,
                    answer,
                };
                self.rooms
                    .restore(stored, Vec::new(), self.limits.history_size);
                self.announce_remote_room(id, out);
            }
            Change::DeleteRoom { id } => self.delete_room(id, 0, out),
            Change::PutSnap(snap) => {
                let (id, to) = (snap.id, snap.to);
                if self.snaps.get(id).is_some() {
                    return;
                }
                self.snaps.restore(snap, None);
                let event = Event::Snap(self.snaps.get(id).expect("just added").info(id));
                let local: Vec<ConnId> = self
                    .snap_receivers(to, None)
                    .into_iter()
                    .filter(|c| !c.is_remote())
                    .collect();
                self.tell_conns(local, 0, &event, out);
            }
            Change::ReadSnap { id, received, .. } => self.snaps.mark_read(id, received),
            Change::DeleteSnap { id } => self.snaps.remove(id),
            Change::PutOffline(message) => self.offline.push(message),
            Change::DeleteOffline { ids } => self.offline.remove(&ids),
            // Each node keeps the history its members saw; ids of other nodes never clash.
            Change::AppendHistory(_) | Change::TrimHistory { .. } | Change::ReserveRooms { .. } => {
            }
        }
    }

    /// Tells this node's lobby about a room another node made.
    fn announce_remote_room(&self, room: u64, out: &mut dyn Sink) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let mut info = r.info(
            room,
            ConnId {
                slot: 0,
                generation: 0,
            },
        );
        info.member = false;
        let event = Event::RoomCreated {
            room: info,
            by: super::admin::SERVER,
        };
        self.tell_everyone(true, None, 0, &event, out);
    }

    /// Whether a room message must be refused: members elsewhere, and no way to reach them.
    pub(super) fn room_unreachable(&self, room: u64) -> bool {
        self.cluster_down() && self.rooms.get(room).is_some_and(|r| r.members.remote() > 0)
    }

    /// Sends a room message said here on to the room's members on other nodes.
    pub(super) fn share_said(
        &self,
        conn: ConnId,
        room: u64,
        mid: u64,
        text: &str,
        out: &mut dyn Sink,
    ) {
        if self.cluster.is_none()
            || conn.is_remote()
            || self.rooms.get(room).is_none_or(|r| r.members.remote() == 0)
        {
            return;
        }
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        out.emit(Effect::Share(Shared::Said {
            room,
            client: c.client,
            mid,
            text: text.to_owned(),
        }));
    }
}
