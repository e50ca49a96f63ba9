//! The cluster bridge (`--redis`): several nodes share rooms, users and messages through
//! Redis (`docs/cluster.md`).
//!
//! Two threads, talking to the logic thread over channels like the store does: `cluster-out`
//! owns the command connection (it commits durable changes with `state::Committer`,
//! publishes what this node's connections do, and beats), `cluster-in` owns the pub/sub
//! connection (the cluster-wide channel, this node's channel and one channel per room that has
//! members here) and turns what it hears into [`Replica`]s. Neither ever blocks the logic
//! thread: a lost Redis turns into `Replica::Link { up: false, .. }`, refusals with "busy", and a
//! reconnect with backoff that ends in a fresh roster.

mod listen;
mod send;
mod state;
mod wire;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded, unbounded};
use redis::{Client, Connection};
use serde_json::json;

use crate::chat::{Change, Ids, Replica, Shared, Snapshot};
use crate::events::ToLogic;
use listen::Inbound;
use send::Outbound;
use state::{Committer, Keys};

/// How many id slots (and so nodes at once) a cluster has.
pub const SLOTS: u64 = 64;
/// How often a node says it is alive.
pub(super) const BEAT: Duration = Duration::from_secs(1);
/// A node not heard for this long is gone: its connections leave their rooms everywhere.
pub const DEAD_AFTER: Duration = Duration::from_secs(4);
/// How long the pub/sub thread waits for a message before it looks at its other work
/// (subscriptions to make, nodes gone quiet).
pub(super) const POLL: Duration = Duration::from_millis(5);
/// Reconnect backoff bounds.
pub(super) const BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(2));
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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
        last_change: None,
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
    let since = state::last_change(&mut command, &keys).map_err(fail)?;
    let snapshot = state::load_snapshot(&mut command, &keys).map_err(fail)?;
    let _ = control.send(Control::Since(since));
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

pub(super) fn beat(node: &str, token: &str) -> String {
    json!({"t": "beat", "node": node, "token": token}).to_string()
}

impl Joined {
    /// Starts the thread that carries what this node does to the others; answers its
    /// channel, the thread (it ends, telling the others this node is gone, once the logic
    /// thread has dropped the channel) and what the node starts with.
    pub fn spawn(self) -> std::io::Result<(Sender<ToCluster>, JoinHandle<()>, Found)> {
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
            opened: HashMap::new(),
            rooms: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("cluster-out".into())
            .spawn(move || {
                crate::crash::thread_started();
                outbound.run(rx);
            })?;
        Ok((tx, thread, self.found))
    }
}

/// Requests from `cluster-out` to `cluster-in`.
pub(super) enum Control {
    /// Subscribe, then say so on the sender (a member's first message must find its node
    /// listening).
    Subscribe(String, Sender<()>),
    Unsubscribe(String),
    /// The change stream's newest entry when the node loaded the shared state: where to
    /// catch up from if the subscription is lost before any change is heard.
    Since(String),
}
