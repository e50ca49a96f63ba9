//! Open connections: who each one is, and the audiences of server-wide events.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::pending::Queue;
use super::rooms::RoomSet;
use super::{ConnId, ConnMap, Dialect, Ids, Peer, Recipients};

/// Who a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    /// A name without an account: a room-URL nickname or a JSON guest login.
    Nick(String),
    /// Logged in as this userid.
    User(u64),
}

/// One open WebSocket connection.
pub(super) struct Conn {
    /// The chatclientid.
    pub client: u64,
    pub dialect: Dialect,
    pub identity: Identity,
    /// Set by `getsnaps`; only such connections are sent snaps as they happen.
    pub snaps_enabled: bool,
    /// Set by `sequenced` (§12): room messages come as `chatseq`, with their numbers.
    pub sequenced: bool,
    /// The rooms this connection is in.
    pub rooms: RoomSet,
    /// A request of this connection waits for a worker; later ones wait in `queue`.
    pub busy: bool,
    /// Boxed, and only while requests wait: almost no connection ever has any.
    pub queue: Option<Box<Queue>>,
    /// The net thread was told to stop reading this connection until `queue` is empty.
    pub held: bool,
    /// Where it comes from, for per-address quotas and guess counting.
    pub peer: Peer,
    /// The cluster node that holds it, for a connection of another node.
    pub node: Option<Arc<str>>,
}

impl Conn {
    fn new(client: u64, dialect: Dialect, identity: Identity, peer: Peer) -> Conn {
        Conn {
            client,
            dialect,
            identity,
            snaps_enabled: false,
            sequenced: false,
            rooms: RoomSet::default(),
            busy: false,
            queue: None,
            held: false,
            peer,
            node: None,
        }
    }

    pub fn user(&self) -> Option<u64> {
        match self.identity {
            Identity::User(id) => Some(id),
            _ => None,
        }
    }
}

#[derive(Default)]
pub(super) struct Conns {
    /// Boxed: the table has a power of two of slots (16,384 for 10,000 connections), each
    /// 16 bytes this way instead of the size of a `Conn`.
    by_id: ConnMap<Box<Conn>>,
    /// By chatclientid, so in connection order.
    by_client: BTreeMap<u64, ConnId>,
    last_client: u64,
    pub ids: Ids,
    /// Slots of the stand-ins for other nodes' connections.
    last_remote: u32,
    /// Every connection per dialect, in connection order, built on first use after a
    /// connection came or went.
    everyone: [OnceCell<Recipients>; 3],
    /// JSON guest names in use, which must be unique while they are.
    pub guests: HashMap<String, ConnId>,
}

impl Conns {
    /// Registers a new connection and returns its chatclientid (counting from 1, never
    /// reused).
    pub fn open(&mut self, conn: ConnId, dialect: Dialect, identity: Identity, peer: Peer) -> u64 {
        self.last_client = self.ids.after(self.last_client);
        let client = self.last_client;
        self.by_id
            .insert(conn, Box::new(Conn::new(client, dialect, identity, peer)));
        self.by_client.insert(client, conn);
        self.everyone[dialect.index()] = OnceCell::new();
        client
    }

    /// Stands in for connection `client` of cluster node `node`: it can be a member, a user's
    /// connection, a name in lists; what it is told goes to its node.
    pub fn open_remote(
        &mut self,
        client: u64,
        dialect: Dialect,
        identity: Identity,
        node: Arc<str>,
    ) -> ConnId {
        self.last_remote = self.last_remote.wrapping_add(1);
        let conn = ConnId {
            slot: self.last_remote,
            generation: ConnId::REMOTE,
        };
        let c = Box::new(Conn {
            node: Some(node),
            ..Conn::new(client, dialect, identity, Peer::default())
        });
        self.by_id.insert(conn, c);
        self.by_client.insert(client, conn);
        conn
    }

    /// The connections held by node `node`.
    pub fn of_node(&self, node: &str) -> Vec<ConnId> {
        let on = |c: &Conn| c.node.as_deref() == Some(node);
        self.by_id
            .iter()
            .filter(|(_, c)| on(c))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Every connection held by another node.
    pub fn remote(&self) -> Vec<ConnId> {
        self.by_id
            .keys()
            .copied()
            .filter(|c| c.is_remote())
            .collect()
    }

    /// Takes a closing connection out of the server-wide audiences, so that what its leaving
    /// causes (a room deleted) is not addressed to it; [`Conns::remove`] forgets it after.
    pub fn retire(&mut self, conn: ConnId) {
        if let Some(c) = self.by_id.get(&conn) {
            if self.by_client.get(&c.client) == Some(&conn) {
                self.by_client.remove(&c.client);
            }
            self.everyone[c.dialect.index()] = OnceCell::new();
        }
    }

    /// Forgets a connection; the caller has already taken it out of rooms and logins.
    pub fn remove(&mut self, conn: ConnId) {
        self.retire(conn);
        self.by_id.remove(&conn);
    }

    pub fn get(&self, conn: ConnId) -> Option<&Conn> {
        self.by_id.get(&conn).map(Box::as_ref)
    }

    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.by_id.get_mut(&conn).map(Box::as_mut)
    }

    /// The connection with this chatclientid.
    pub fn by_client(&self, client: u64) -> Option<ConnId> {
        self.by_client.get(&client).copied()
    }

    /// Every connection speaking `dialect`, or `None` when there is none.
    pub fn everyone(&self, dialect: Dialect) -> Option<Recipients> {
        let all = self.everyone[dialect.index()].get_or_init(|| {
            self.by_client
                .values()
                .filter(|c| !c.is_remote() && self.by_id[c].dialect == dialect)
                .copied()
                .collect()
        });
        (!all.is_empty()).then(|| all.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::Conn;

    /// Every open connection has one, boxed: up to 104 bytes it fits glibc's 112-byte chunk
    /// size (one more byte and it takes 128).
    #[test]
    fn a_connection_fits_its_allocation() {
        assert!(size_of::<Conn>() <= 104, "{} bytes", size_of::<Conn>());
    }
}
