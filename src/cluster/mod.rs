//! The cluster bridge (`--redis`): several nodes share rooms, users and messages through
//! Redis (`docs/cluster.md`).
//!
//! Two threads, talking to the logic thread over channels like the store does: `cluster-out`
//! owns the command connection (it commits durable changes with [`state::Committer`],
//! publishes what this node's connections do, and beats), `cluster-in` owns the pub/sub
//! connection (the cluster-wide channel, this node's channel and one channel per room that has
//! members here) and turns what it hears into [`Replica`]s. Neither ever blocks the logic
//! thread: a lost Redis turns into `Replica::Link { up: false, .. }`, refusals with "busy", and a
//! reconnect with backoff that ends in a fresh roster.

mod state;
mod wire;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use redis::{Client, Connection};
use serde_json::{Value, json};

use crate::chat::{Change, Ids, Replica, STORE_CONFLICT, STORE_UNAVAILABLE, Shared, Snapshot};
use crate::events::ToLogic;
use state::{Committer, Keys};

/// How many id slots (and so nodes at once) a cluster has.
pub const SLOTS: u64 = 64;
/// How often a node says it is alive.
const BEAT: Duration = Duration::from_secs(1);
/// A node not heard for this long is gone: its connections leave their rooms everywhere.
pub const DEAD_AFTER: Duration = Duration::from_secs(4);
/// How long the pub/sub thread waits for a message before it looks at its other work
/// (subscriptions to make, nodes gone quiet).
const POLL: Duration = Duration::from_millis(5);
/// Reconnect backoff bounds.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the logic thread sends the bridge.
#[derive(Debug)]
pub enum ToCluster {
    Share(Shared),
    /// Commit `Change` as ticket `u64` (answered with `ToLogic::Stored`).
    Persist(u64, Change),
}

/// Where to find the cluster and who this node is.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub node: String,
    pub prefix: String,
}

/// A name for a node started without `--node-id`: host, process and a random part.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}-{}-{:04x}",
        host.trim(),
        std::process::id(),
        random() & 0xffff
    )
}

fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A node that has joined the cluster, its outgoing thread not started yet.
pub struct Joined {
    found: Found,
    bridge: Bridge,
}

/// What a node starts with: its id slot and the shared state as it found it.
pub struct Found {
    pub ids: Ids,
    pub snapshot: Snapshot,
    /// The other nodes' connections and temporary rooms.
    pub roster: Replica,
}

struct Bridge {
    settings: Settings,
    keys: Keys,
    client: Client,
    command: Connection,
    slot: u64,
    token: String,
    control: Sender<Control>,
    to_logic: Sender<Vec<ToLogic>>,
}

/// Connects, takes an id slot, starts listening (what it hears goes to `to_logic`),
/// announces this node (so others forget its previous run's connections), and loads the
/// shared state. An error is one line for the operator.
pub fn join(settings: Settings, to_logic: Sender<Vec<ToLogic>>) -> Result<Joined, String> {
    let url = &settings.url;
    let fail = |e: redis::RedisError| format!("cluster: Redis at {url}: {e}");
    let client = Client::open(url.as_str()).map_err(fail)?;
    let mut command = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(fail)?;
    let keys = Keys::new(&settings.prefix);
    let node = settings.node.as_str();
    let slot = claim_slot(&mut command, &keys, node).map_err(fail)?.ok_or_else(|| {
        format!("cluster: all {SLOTS} node slots at {url} are taken (at most {SLOTS} nodes run at once)")
    })?;
    let token = format!("{:016x}", random());
    let (control, control_rx) = unbounded();
    let inbound = Inbound {
        node: node.to_owned(),
        keys: keys.clone(),
        client: client.clone(),
        control: control_rx,
        to_logic: to_logic.clone(),
        subscribed: [keys.all(), keys.node(node)].into(),
        nodes: HashMap::new(),
    };
    let (ready_tx, ready) = bounded(1);
    std::thread::Builder::new()
        .name("cluster-in".into())
        .spawn(move || {
            crate::crash::thread_started();
            inbound.run(ready_tx);
        })
        .map_err(|e| format!("cluster: cannot start a thread: {e}"))?;
    match ready.recv_timeout(CONNECT_TIMEOUT * 2) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("cluster: Redis at {url}: {e}")),
        Err(_) => {
            return Err(format!(
                "cluster: Redis at {url} did not confirm the subscription"
            ));
        }
    }
    // A previous run of this node left its connections behind: they are gone.
    redis::pipe()
        .del(keys.presence(node))
        .hset(keys.key("nodes"), node, &token)
        .cmd("SET")
        .arg(keys.alive(node))
        .arg(&token)
        .arg("PX")
        .arg(DEAD_AFTER.as_millis() as u64)
        .publish(keys.all(), beat(node, &token))
        .query::<()>(&mut command)
        .map_err(fail)?;
    let snapshot = state::load_snapshot(&mut command, &keys).map_err(fail)?;
    let (rooms, presence) = state::load_roster(&mut command, &keys, node).map_err(fail)?;
    Ok(Joined {
        found: Found {
            ids: Ids::slot(slot, SLOTS),
            snapshot,
            roster: Replica::Roster { rooms, presence },
        },
        bridge: Bridge {
            settings,
            keys,
            client,
            command,
            slot,
            token,
            control,
            to_logic,
        },
    })
}

/// The first free id slot (or the one this node held before), held while the node beats.
fn claim_slot(con: &mut Connection, keys: &Keys, node: &str) -> redis::RedisResult<Option<u64>> {
    let hold = (DEAD_AFTER * 2).as_millis() as u64;
    for slot in 0..SLOTS {
        let holder: Option<String> = redis::cmd("GET").arg(keys.slot(slot)).query(con)?;
        if holder.as_deref() == Some(node) {
            redis::cmd("PEXPIRE")
                .arg(keys.slot(slot))
                .arg(hold)
                .query::<()>(con)?;
            return Ok(Some(slot));
        }
    }
    for slot in 0..SLOTS {
        let set: Option<String> = redis::cmd("SET")
            .arg(keys.slot(slot))
            .arg(node)
            .arg("NX")
            .arg("PX")
            .arg(hold)
            .query(con)?;
        if set.is_some() {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

fn beat(node: &str, token: &str) -> String {
    json!({"t": "beat", "node": node, "token": token}).to_string()
}

impl Joined {
    /// Starts the thread that carries what this node does to the others; answers its
    /// channel and what the node starts with.
    pub fn spawn(self) -> std::io::Result<(Sender<ToCluster>, Found)> {
        let Bridge {
            settings,
            keys,
            client,
            command,
            slot,
            token,
            control,
            to_logic,
        } = self.bridge;
        let (tx, rx) = unbounded();
        let outbound = Outbound {
            committer: Committer::new(keys.clone(), settings.node.clone()),
            settings,
            keys,
            client,
            con: Some(command),
            slot,
            token,
            to_logic,
            control,
            local: HashMap::new(),
            rooms: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("cluster-out".into())
            .spawn(move || {
                crate::crash::thread_started();
                outbound.run(rx);
            })?;
        Ok((tx, self.found))
    }
}

/// Requests from `cluster-out` to `cluster-in`.
enum Control {
    /// Subscribe, then say so on the sender (a member's first message must find its node
    /// listening).
    Subscribe(String, Sender<()>),
    Unsubscribe(String),
}

struct Outbound {
    settings: Settings,
    keys: Keys,
    client: Client,
    /// `None` while Redis cannot be reached.
    con: Option<Connection>,
    slot: u64,
    token: String,
    committer: Committer,
    to_logic: Sender<Vec<ToLogic>>,
    control: Sender<Control>,
    /// This node's connections as last shared, to share again after Redis comes back.
    local: HashMap<u64, Value>,
    /// Local members per room: a room's channel is listened to while it has some.
    rooms: HashMap<u64, usize>,
}

impl Outbound {
    fn run(mut self, rx: Receiver<ToCluster>) {
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
                json!({"t": "room-opened", "node": node, "room": value})
            }
            Shared::RoomClosed { id } => {
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

struct Inbound {
    node: String,
    keys: Keys,
    client: Client,
    control: Receiver<Control>,
    to_logic: Sender<Vec<ToLogic>>,
    subscribed: HashSet<String>,
    /// Other nodes: their start token and when they were last heard.
    nodes: HashMap<String, (String, Instant)>,
}

/// How a pub/sub session ended.
enum Ended {
    /// Redis went away: reconnect.
    Lost,
    /// The node is shutting down.
    Stop,
}

impl Inbound {
    /// Listens until shutdown. The first session's subscriptions are confirmed on `ready`
    /// (or its failure reported there), so the node loads the shared state only once it hears
    /// every change made after.
    fn run(mut self, ready: Sender<Result<(), String>>) {
        let mut ready = Some(ready);
        let mut backoff = BACKOFF.0;
        loop {
            match self.session(&mut ready) {
                Ok(Ended::Stop) => return,
                Ok(Ended::Lost) => backoff = BACKOFF.0,
                Err(e) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                }
            }
            let _ = self.to_logic.send(vec![ToLogic::Cluster(Replica::Link {
                hearing: true,
                up: false,
            })]);
            loop {
                if self.control_gone() {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF.1);
                if self
                    .client
                    .get_connection_with_timeout(CONNECT_TIMEOUT)
                    .is_ok()
                {
                    break;
                }
            }
        }
    }

    /// One pub/sub connection, from subscribing to losing it.
    fn session(
        &mut self,
        ready: &mut Option<Sender<Result<(), String>>>,
    ) -> redis::RedisResult<Ended> {
        let mut con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(POLL))?;
        let mut sub = con.as_pubsub();
        for channel in &self.subscribed {
            sub.subscribe(channel)?;
        }
        match ready.take() {
            Some(ready) => {
                let _ = ready.send(Ok(()));
            }
            None => {
                // Back after a loss: what was said meanwhile was missed, so take the roster
                // again.
                let mut command = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                let (rooms, presence) = state::load_roster(&mut command, &self.keys, &self.node)?;
                let now = Instant::now();
                self.nodes = presence
                    .iter()
                    .map(|(node, _, _)| (node.clone(), (String::new(), now)))
                    .collect();
                log::info!("cluster: listening to Redis again");
                let _ = self.to_logic.send(vec![
                    ToLogic::Cluster(Replica::Roster { rooms, presence }),
                    ToLogic::Cluster(Replica::Link {
                        hearing: true,
                        up: true,
                    }),
                ]);
            }
        }
        let mut next_check = Instant::now() + BEAT;
        loop {
            loop {
                match self.control.try_recv() {
                    Ok(Control::Subscribe(channel, ack)) => {
                        let done = sub.subscribe(&channel);
                        self.subscribed.insert(channel);
                        let _ = ack.send(());
                        done?;
                    }
                    Ok(Control::Unsubscribe(channel)) => {
                        self.subscribed.remove(&channel);
                        sub.unsubscribe(&channel)?;
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return Ok(Ended::Stop),
                }
            }
            match sub.get_message() {
                Ok(msg) => {
                    let replica = wire::parse(msg.get_payload_bytes()).and_then(|v| self.hear(&v));
                    if let Some(replica) = replica
                        && self.to_logic.send(vec![ToLogic::Cluster(replica)]).is_err()
                    {
                        return Ok(Ended::Stop);
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    log::error!("cluster: lost the Redis subscription: {e}; retrying");
                    return Ok(Ended::Lost);
                }
            }
            if Instant::now() >= next_check {
                next_check = Instant::now() + BEAT;
                self.bury_silent();
            }
        }
    }

    /// Carries out what `cluster-out` asked while Redis was away; `true` once it is gone.
    fn control_gone(&mut self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok(Control::Subscribe(channel, ack)) => {
                    self.subscribed.insert(channel);
                    let _ = ack.send(());
                }
                Ok(Control::Unsubscribe(channel)) => {
                    self.subscribed.remove(&channel);
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return false,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return true,
            }
        }
    }
    /// Turns a message from another node into what the logic thread applies.
    fn hear(&mut self, v: &Value) -> Option<Replica> {
        let node = v.get("node")?.as_str()?;
        if node == self.node {
            return None;
        }
        let u = |key: &str| v.get(key).and_then(Value::as_u64);
        let kind = v.get("t")?.as_str()?;
        if kind != "beat" && kind != "gone" && !self.nodes.contains_key(node) {
            // Something from a node not heard beating yet: it counts as alive from now.
            self.nodes
                .insert(node.to_owned(), (String::new(), Instant::now()));
        }
        match kind {
            "beat" => {
                let token = v.get("token")?.as_str()?.to_owned();
                let previous = self
                    .nodes
                    .insert(node.to_owned(), (token.clone(), Instant::now()));
                match previous {
                    Some((old, _)) if !old.is_empty() && old != token => Some(Replica::NodeGone {
                        node: node.to_owned(),
                    }),
                    _ => None,
                }
            }
            "gone" => {
                self.nodes.remove(node);
                Some(Replica::NodeGone {
                    node: node.to_owned(),
                })
            }
            "presence" => {
                let state = match v.get("state")? {
                    Value::Null => None,
                    s => Some(wire::presence_from(s)?),
                };
                Some(Replica::Presence {
                    node: node.to_owned(),
                    client: u("client")?,
                    state,
                })
            }
            "said" => Some(Replica::Said {
                room: u("room")?,
                client: u("client")?,
                mid: u("mid")?,
                text: v.get("text")?.as_str()?.to_owned(),
            }),
            "relay" => Some(Replica::Relayed {
                clients: v
                    .get("clients")?
                    .as_array()?
                    .iter()
                    .map(Value::as_u64)
                    .collect::<Option<Vec<u64>>>()?,
                mid: u("mid")?,
                event: wire::relayed_from(v.get("event")?)?,
            }),
            "room-opened" => Some(Replica::RoomOpened(wire::temp_room_from(v.get("room")?)?)),
            "room-closed" => Some(Replica::RoomClosed { id: u("id")? }),
            "changed" => Some(Replica::Changed(wire::change_from(v.get("change")?)?)),
            _ => None,
        }
    }

    /// Nodes not heard for [`DEAD_AFTER`] are gone: their connections leave everywhere, and
    /// the shared state forgets them.
    fn bury_silent(&mut self) {
        let silent: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, (_, seen))| seen.elapsed() > DEAD_AFTER)
            .map(|(node, _)| node.clone())
            .collect();
        for node in silent {
            self.nodes.remove(&node);
            log::warn!("cluster: node {node} went quiet; its connections are gone");
            let _ = self.to_logic.send(vec![ToLogic::Cluster(Replica::NodeGone {
                node: node.clone(),
            })]);
            if let Ok(mut con) = self.client.get_connection_with_timeout(CONNECT_TIMEOUT) {
                let alive: bool = redis::cmd("EXISTS")
                    .arg(self.keys.alive(&node))
                    .query(&mut con)
                    .unwrap_or(true);
                if !alive {
                    let _ = redis::pipe()
                        .del(self.keys.presence(&node))
                        .hdel(self.keys.key("nodes"), &node)
                        .query::<()>(&mut con);
                }
            }
        }
    }
}
