//! Starting and stopping a server: binds the listener, spawns the net and logic threads.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Sender, unbounded};
use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::crash;
use crate::events::ToLogic;
use crate::net::{Net, NetParts, WAKER};
use crate::tls::Tls;

/// Pending connections the kernel holds for us: deep enough to absorb a reconnect storm.
const LISTEN_BACKLOG: i32 = 4096;

/// A running server. Dropping it does not stop it; call [`Server::shutdown`] or [`Server::wait`].
pub struct Server {
    addr: SocketAddr,
    net: JoinHandle<()>,
    logic: JoinHandle<()>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    to_logic: Sender<Vec<ToLogic>>,
}

impl Server {
    /// Binds the port and starts the threads. Fails (without starting anything) if the address
    /// cannot be bound, e.g. because the port is in use, or if the TLS certificate or key
    /// cannot be loaded (`ErrorKind::InvalidInput`, naming the file).
    pub fn start(config: Config) -> io::Result<Server> {
        let config = Arc::new(config);
        let tls = config
            .tls
            .clone()
            .map(Tls::load)
            .transpose()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = bind(SocketAddr::new(config.bind, config.port))?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (to_logic, logic_rx) = unbounded();
        let (to_net, net_rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let parts = NetParts {
            poll,
            listener: mio::net::TcpListener::from_std(listener),
            to_logic: to_logic.clone(),
            from_logic: net_rx,
            stop: stop.clone(),
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
        let logic = crate::logic::Logic::with_limits(
            config.server_password.as_bytes(),
            config.limits.clone(),
        );
        let logic_waker = waker.clone();
        let logic = thread::Builder::new().name("logic".into()).spawn(move || {
            crash::thread_started();
            crate::logic::run(logic, logic_rx, to_net, logic_waker)
        })?;
        Ok(Server {
            addr,
            net,
            logic,
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
