//! `cluster-out`: carries what this node's connections do to the other nodes, in order, and
//! commits durable changes; beats; reconnects when Redis goes away.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use redis::{Client, Connection};
use serde_json::{Value, json};

use super::state::{Committer, Keys};
use super::{BACKOFF, BEAT, CONNECT_TIMEOUT, Control, DEAD_AFTER, Settings, ToCluster, beat, wire};
use crate::chat::{Replica, STORE_CONFLICT, STORE_UNAVAILABLE, Shared};
use crate::events::ToLogic;

pub(super) struct Outbound {
    pub(super) settings: Settings,
    pub(super) keys: Keys,
    pub(super) client: Client,
    /// `None` while Redis cannot be reached.
    pub(super) con: Option<Connection>,
    pub(super) slot: u64,
    pub(super) token: String,
    pub(super) committer: Committer,
    pub(super) to_logic: Sender<Vec<ToLogic>>,
    pub(super) control: Sender<Control>,
    /// This node's connections as last shared, to share again after Redis comes back.
    pub(super) local: HashMap<u64, Value>,
    /// Temporary rooms made here and not closed, to announce again after Redis comes back
    /// (a node that missed one would keep a room of the same name apart).
    pub(super) opened: HashMap<u64, Value>,
    /// Local members per room: a room's channel is listened to while it has some.
    pub(super) rooms: HashMap<u64, usize>,
}

impl Outbound {
    pub(super) fn run(mut self, rx: Receiver<ToCluster>) {
        let mut next_beat = Instant::now() + BEAT;
        let mut backoff = BACKOFF.0;
        loop {
            match rx.recv_timeout(next_beat.saturating_duration_since(Instant::now())) {
                Ok(first) => {
                    let batch: Vec<ToCluster> = std::iter::once(first)
                        .chain(rx.try_iter().take(255))
                        .collect();
                    self.handle(batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.leave(),
            }
            if Instant::now() >= next_beat {
                next_beat = Instant::now() + BEAT;
                if self.con.is_none() {
                    if self.reconnect() {
                        backoff = BACKOFF.0;
                    } else {
                        next_beat = Instant::now() + backoff;
                        backoff = (backoff * 2).min(BACKOFF.1);
                    }
                } else if let Err(e) = self.beat() {
                    self.lost(&e);
                }
            }
        }
    }

    /// Carries out a batch in order: publications are pipelined, and flushed before each
    /// commit, so the other nodes hear everything in the order this node did it.
    fn handle(&mut self, batch: Vec<ToCluster>) {
        let started = Instant::now();
        let mut stored = Vec::new();
        let mut pipe = redis::pipe();
        for msg in batch {
            match msg {
                ToCluster::Share(shared) => self.share(shared, &mut pipe),
                ToCluster::Persist(ticket, change) => {
                    self.flush(&mut pipe);
                    let result = match self.con.as_mut() {
                        None => Err(STORE_UNAVAILABLE.to_string()),
                        Some(con) => match self.committer.commit(con, &change) {
                            Ok(true) => Ok(()),
                            Ok(false) => Err(STORE_CONFLICT.to_string()),
                            Err(e) => {
                                self.lost(&e);
                                Err(STORE_UNAVAILABLE.to_string())
                            }
                        },
                    };
                    stored.push((ticket, result));
                }
            }
        }
        self.flush(&mut pipe);
        if !stored.is_empty() {
            let took = started.elapsed();
            let _ = self.to_logic.send(vec![ToLogic::Stored {
                results: stored,
                took,
            }]);
        }
    }

    /// Sends what `pipe` holds. A connection found dead (Redis restarted since the last
    /// beat) is replaced at once and the publications sent again: the messages in them were
    /// already confirmed to their senders. Only when Redis cannot be reached are they lost,
    /// and the node then refuses what needs the other nodes until it is back.
    fn flush(&mut self, pipe: &mut redis::Pipeline) {
        if pipe.is_empty() {
            return;
        }
        let sent = self.con.as_mut().map(|con| pipe.query::<()>(con));
        if let Some(Err(e)) = sent {
            self.lost(&e);
            if self.reconnect() {
                let con = self.con.as_mut().expect("reconnected");
                if let Err(e) = pipe.query::<()>(con) {
                    self.lost(&e);
                }
            }
        }
        pipe.clear();
    }

    /// Adds to `pipe` what tells the other nodes about `shared`. Presence and temporary rooms
    /// are also written to the shared state, so a node that starts later finds them.
    fn share(&mut self, shared: Shared, pipe: &mut redis::Pipeline) {
        let node = self.settings.node.clone();
        let all = self.keys.all();
        let message = match shared {
            Shared::Presence { client, state } => {
                let rooms = state.as_ref().map(|p| p.rooms.clone()).unwrap_or_default();
                self.follow_rooms(client, &rooms);
                let value = state.as_ref().map(wire::presence);
                let key = self.keys.presence(&node);
                match &value {
                    Some(v) => {
                        self.local.insert(client, v.clone());
                        pipe.hset(&key, client, v.to_string()).ignore();
                    }
                    None => {
                        self.local.remove(&client);
                        pipe.hdel(&key, client).ignore();
                    }
                }
                json!({"t": "presence", "node": node, "client": client, "state": value})
            }
            Shared::Said {
                room,
                client,
                mid,
                text,
            } => {
                let message = json!({"t": "said", "node": node, "room": room, "client": client,
                                     "mid": mid, "text": text});
                pipe.publish(self.keys.room(room), message.to_string())
                    .ignore();
                return;
            }
            Shared::Relay {
                node: to,
                clients,
                mid,
                event,
            } => {
                let message = json!({"t": "relay", "node": node, "clients": clients, "mid": mid,
                                     "event": wire::relayed(&event)});
                let channel = match to {
                    Some(to) => self.keys.node(&to),
                    None => all,
                };
                pipe.publish(channel, message.to_string()).ignore();
                return;
            }
            Shared::RoomOpened(room) => {
                let value = wire::temp_room(&room);
                pipe.hset(self.keys.key("temprooms"), room.id, value.to_string())
                    .ignore();
                self.opened.insert(room.id, value.clone());
                json!({"t": "room-opened", "node": node, "room": value})
            }
            Shared::RoomClosed { id } => {
                self.opened.remove(&id);
                pipe.hdel(self.keys.key("temprooms"), id).ignore();
                json!({"t": "room-closed", "node": node, "id": id})
            }
        };
        pipe.publish(all, message.to_string()).ignore();
    }

    /// Listens to a room's channel from its first local member on, until its last leaves.
    fn follow_rooms(&mut self, client: u64, now_in: &[u64]) {
        let before: Vec<u64> = self
            .local
            .get(&client)
            .and_then(wire::presence_from)
            .map(|p| p.rooms)
            .unwrap_or_default();
        for room in before.iter().filter(|r| !now_in.contains(r)) {
            if let Some(n) = self.rooms.get_mut(room) {
                *n -= 1;
                if *n == 0 {
                    self.rooms.remove(room);
                    let _ = self
                        .control
                        .send(Control::Unsubscribe(self.keys.room(*room)));
                }
            }
        }
        for &room in now_in.iter().filter(|r| !before.contains(r)) {
            let n = self.rooms.entry(room).or_insert(0);
            *n += 1;
            if *n == 1 {
                let (ack, done) = bounded(1);
                if self
                    .control
                    .send(Control::Subscribe(self.keys.room(room), ack))
                    .is_ok()
                {
                    let _ = done.recv_timeout(Duration::from_secs(1));
                }
            }
        }
    }

    fn beat(&mut self) -> redis::RedisResult<()> {
        let node = &self.settings.node;
        let con = self.con.as_mut().expect("connected");
        redis::pipe()
            .cmd("SET")
            .arg(self.keys.alive(node))
            .arg(&self.token)
            .arg("PX")
            .arg(DEAD_AFTER.as_millis() as u64)
            .ignore()
            .cmd("SET")
            .arg(self.keys.slot(self.slot))
            .arg(node)
            .arg("PX")
            .arg((DEAD_AFTER * 2).as_millis() as u64)
            .ignore()
            .hset(self.keys.key("nodes"), node, &self.token)
            .ignore()
            .publish(self.keys.all(), beat(node, &self.token))
            .ignore()
            .query(con)
    }

    /// Redis went away: say so once, refuse what needs it, and reconnect at the next beat.
    fn lost(&mut self, e: &redis::RedisError) {
        if self.con.take().is_some() {
            log::error!(
                "cluster: lost Redis at {}: {e}; retrying",
                self.settings.url
            );
            let _ = self.to_logic.send(vec![ToLogic::Cluster(Replica::Link {
                hearing: false,
                up: false,
            })]);
        }
    }

    /// Reconnects and shares this node's connections again (Redis may have lost them).
    fn reconnect(&mut self) -> bool {
        let Ok(mut con) = self.client.get_connection_with_timeout(CONNECT_TIMEOUT) else {
            return false;
        };
        let node = self.settings.node.clone();
        // One transaction with the beat's liveness key: a node loading the roster meanwhile
        // sees this node's connections together with its being alive, or neither.
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("SET")
            .arg(self.keys.alive(&node))
            .arg(&self.token)
            .arg("PX")
            .arg(DEAD_AFTER.as_millis() as u64)
            .ignore();
        pipe.del(self.keys.presence(&node)).ignore();
        // Rooms first: the presence below may name them.
        for (id, room) in &self.opened {
            pipe.hset(self.keys.key("temprooms"), id, room.to_string())
                .ignore();
            let message = json!({"t": "room-opened", "node": node, "room": room});
            pipe.publish(self.keys.all(), message.to_string()).ignore();
        }
        for (client, value) in &self.local {
            pipe.hset(self.keys.presence(&node), client, value.to_string())
                .ignore();
            let message = json!({"t": "presence", "node": node, "client": client, "state": value});
            pipe.publish(self.keys.all(), message.to_string()).ignore();
        }
        if pipe.query::<()>(&mut con).is_err() {
            return false;
        }
        self.con = Some(con);
        if self.beat().is_err() {
            self.con = None;
            return false;
        }
        log::info!("cluster: Redis at {} is back", self.settings.url);
        let _ = self.to_logic.send(vec![ToLogic::Cluster(Replica::Link {
            hearing: false,
            up: true,
        })]);
        true
    }

    /// The logic thread is gone (shutdown): this node's connections are gone too.
    fn leave(mut self) {
        let node = self.settings.node.clone();
        if let Some(con) = self.con.as_mut() {
            let _ = redis::pipe()
                .del(self.keys.presence(&node))
                .del(self.keys.alive(&node))
                .del(self.keys.slot(self.slot))
                .hdel(self.keys.key("nodes"), &node)
                .publish(
                    self.keys.all(),
                    json!({"t": "gone", "node": node}).to_string(),
                )
                .query::<()>(con);
        }
    }
}
