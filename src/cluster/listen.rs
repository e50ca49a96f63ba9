//! `cluster-in`: listens to the other nodes (the cluster channel, this node's channel, the
//! channels of rooms with members here) and turns what it hears into `Replica`s; notices
//! nodes that stopped beating.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use redis::Client;
use serde_json::Value;

use super::state::{self, Keys};
use super::{BACKOFF, BEAT, CONNECT_TIMEOUT, Control, DEAD_AFTER, POLL, wire};
use crate::chat::Replica;
use crate::events::ToLogic;

pub(super) struct Inbound {
    pub(super) node: String,
    pub(super) keys: Keys,
    pub(super) client: Client,
    pub(super) control: Receiver<Control>,
    pub(super) to_logic: Sender<Vec<ToLogic>>,
    pub(super) subscribed: HashSet<String>,
    /// Other nodes: their start token and when they were last heard.
    pub(super) nodes: HashMap<String, (String, Instant)>,
    /// The change stream id of the newest durable change heard (or loaded with the shared
    /// state): after a lost subscription, the changes after it are read from the stream.
    pub(super) last_change: Option<String>,
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
    pub(super) fn run(mut self, ready: Sender<Result<(), String>>) {
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
                // Back after a loss: what was said meanwhile was missed. Durable changes are
                // read from the change stream; presence is taken again whole.
                let mut command = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                let mut catch_up = Vec::new();
                if let Some(after) = self.last_change.clone() {
                    match state::changes_since(&mut command, &self.keys, &after)? {
                        Some((changes, last)) => {
                            catch_up.extend(
                                changes
                                    .into_iter()
                                    .map(|c| ToLogic::Cluster(Replica::Changed(c))),
                            );
                            self.last_change = Some(last);
                        }
                        None => log::error!(
                            "cluster: durable changes made while this node was cut off are no \
                             longer in the change stream; restart this node to reload them"
                        ),
                    }
                }
                if !catch_up.is_empty() {
                    log::info!("cluster: caught up on {} missed changes", catch_up.len());
                    let _ = self.to_logic.send(catch_up);
                }
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
                    Ok(Control::Since(id)) => {
                        self.last_change.get_or_insert(id);
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
                Ok(Control::Since(id)) => {
                    self.last_change.get_or_insert(id);
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
            "changed" => {
                let change = wire::change_from(v.get("change")?)?;
                if let Some(id) = v.get("id").and_then(Value::as_str) {
                    self.last_change = Some(id.to_owned());
                }
                Some(Replica::Changed(change))
            }
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
