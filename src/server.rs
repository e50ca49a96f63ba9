//! Starting and stopping a server: opens the store, binds the listener, spawns the threads (net,
//! logic, store, password hashers).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Sender, unbounded};
use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::auth::{self, Hasher};
use crate::chat::{Chat, Snapshot};
use crate::config::Config;
use crate::crash;
use crate::events::ToLogic;
use crate::logic::{Logic, Workers};
use crate::net::{Handoff, Net, NetParts, WAKER};
use crate::store::Store;
use crate::tls::Tls;
use crate::webhook::Webhooks;

/// Pending connections the kernel holds for us: deep enough to absorb a reconnect storm.
const LISTEN_BACKLOG: i32 = 4096;

/// A running server. Dropping it does not stop it; call [`Server::shutdown`] or [`Server::wait`].
pub struct Server {
    addr: SocketAddr,
    net: JoinHandle<()>,
    logic: JoinHandle<()>,
    /// Ends once the logic thread is gone and everything it sent is committed.
    store: Option<JoinHandle<()>>,
    /// The cluster bridge's sending thread: joined like the store, so the other nodes hear
    /// this node leave.
    cluster: Option<JoinHandle<()>>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    to_logic: Sender<Vec<ToLogic>>,
}

impl Server {
    /// Opens the store, binds the port and starts the threads. Fails (without starting
    /// anything) if the address cannot be bound, e.g. because the port is in use, or with
    /// `ErrorKind::InvalidInput` and a one-line message naming the file if the TLS certificate
    /// or key cannot be loaded, or the data file cannot be used (corrupt, unreadable, locked by
    /// another server, read-only, disk full) or the argon2 cost is invalid.
    pub fn start(config: Config) -> io::Result<Server> {
        let config = Arc::new(config);
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let tls = config
            .tls
            .clone()
            .map(Tls::load)
            .transpose()
            .map_err(invalid)?;
        let mut hasher = Hasher::new(config.argon2).map_err(invalid)?;
        if let Some(url) = &config.auth_url {
            hasher = hasher.with_backend(url.clone(), config.auth_timeout);
        }
        let (to_logic, logic_rx) = unbounded();
        let joined = config
            .cluster
            .clone()
            .map(|settings| crate::cluster::join(settings, to_logic.clone()))
            .transpose()
            .map_err(invalid)?;
        let (store, snapshot) = match &config.data {
            _ if joined.is_some() => (None, Snapshot::default()),
            Some(path) => {
                let (store, snapshot) = Store::open(path).map_err(|e| invalid(e.0))?;
                (Some(store), snapshot)
            }
            None => (None, Snapshot::default()),
        };
        let listener = bind(SocketAddr::new(config.bind, config.port))?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let handoff = Arc::new(Handoff::new(waker.clone()));
        let (to_net, net_rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let parts = NetParts {
            poll,
            listener: mio::net::TcpListener::from_std(listener),
            to_logic: to_logic.clone(),
            from_logic: net_rx,
            stop: stop.clone(),
            handoff: handoff.clone(),
            tls,
        };
        // The net thread's state is built on that thread (it holds `Rc`s, so it cannot move
        // between threads); set-up errors come back through this channel.
        let (started_tx, started) = std::sync::mpsc::sync_channel(1);
        let net_config = config.clone();
        let net = thread::Builder::new().name("net".into()).spawn(move || {
            crash::thread_started();
            match Net::new(parts, net_config) {
                Ok(net) => {
                    let _ = started_tx.send(Ok(()));
                    net.run();
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            }
        })?;
        started
            .recv()
            .map_err(|_| io::Error::other("net thread died while starting"))??;
        let (hash_tx, hash_rx) = unbounded();
        auth::spawn_pool(config.hash_workers, hasher, hash_rx, to_logic.clone())?;
        let (store_tx, store_thread) = match store {
            Some(store) => {
                let (tx, rx) = unbounded();
                (Some(tx), Some(store.spawn(rx, to_logic.clone())?))
            }
            None => (None, None),
        };
        let mut cluster_thread = None;
        let (mut chat, cluster) = match joined {
            Some(joined) => {
                let (bridge, thread, cluster) = joined.spawn()?;
                cluster_thread = Some(thread);
                let mut chat = Chat::new(
                    config.server_password.as_bytes(),
                    config.limits.clone(),
                    cluster.snapshot,
                );
                chat.join_cluster(cluster.ids);
                (chat, Some((bridge, cluster.roster)))
            }
            None => {
                let chat = Chat::new(
                    config.server_password.as_bytes(),
                    config.limits.clone(),
                    snapshot,
                );
                (chat, None)
            }
        };
        let webhooks = if config.webhooks.is_empty() {
            None
        } else {
            Some(Webhooks::start(&config.webhooks)?)
        };
        let (bridge, roster) = cluster.unzip();
        let workers = Workers::Threads {
            webhooks,
            hashers: hash_tx,
            store: store_tx,
            cluster: bridge,
        };
        if let Some(roster) = roster {
            chat.replicate(roster, 0, &mut crate::chat::Discard);
        }
        let logic = Logic::with(chat, workers);
        let logic_handoff = handoff.clone();
        let logic = thread::Builder::new().name("logic".into()).spawn(move || {
            crash::thread_started();
            crate::logic::run(logic, logic_rx, to_net, logic_handoff)
        })?;
        Ok(Server {
            addr,
            net,
            logic,
            store: store_thread,
            cluster: cluster_thread,
            waker,
            stop,
            to_logic,
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the server has shut down (after SIGINT/SIGTERM or [`Server::shutdown`]).
    pub fn wait(self) {
        let _ = self.net.join();
        // The net thread told the logic thread to stop; if it died instead, its channel closed.
        let _ = self.to_logic.send(vec![ToLogic::Shutdown]);
        let _ = self.logic.join();
        // The logic thread dropped its end of the store's channel: the store commits what it
        // was sent, then ends.
        if let Some(store) = self.store {
            let _ = store.join();
        }
        if let Some(cluster) = self.cluster {
            let _ = cluster.join();
        }
    }

    /// Graceful shutdown, as on SIGTERM: close 1001 to every client, then stop the threads.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        self.wait();
    }

    /// Makes the logic thread panic (for `websocket test debug panic` only).
    #[doc(hidden)]
    pub fn inject_logic_panic(&self) {
        let _ = self.to_logic.send(vec![ToLogic::InjectPanic]);
    }
}

/// A non-blocking listener with address reuse and a deep backlog.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
