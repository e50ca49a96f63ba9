//! Every limit and knob of the server, in one place.
//!
//! Each field is also a command-line flag (see `main.rs`); the defaults below are what a small
//! team gets without thinking about it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::chat::Limits;

/// Server configuration. Build it with [`Config::new`] and adjust fields as needed.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on. Default `0.0.0.0` (all IPv4 interfaces).
    pub bind: IpAddr,
    /// TCP port; 0 picks a free one (the chosen port is printed).
    pub port: u16,
    /// The server password gating admin commands. Never logged.
    pub server_password: String,
    /// Largest WebSocket message (and frame) accepted, in bytes. Default 64 KiB; a larger one
    /// closes the connection with 1009. Bigger allows longer chat messages, costs memory per
    /// connection while a message is being received.
    pub max_message_size: usize,
    /// Largest HTTP request head, in bytes. Default 8 KiB; larger gets 431.
    pub max_head_size: usize,
    /// Time allowed from TCP accept to a complete HTTP request head (slowloris defence); with
    /// TLS the TLS handshake counts against it too. Default 10 s.
    pub handshake_timeout: Duration,
    /// Bytes that may wait in one connection's outbound queue. Default 1 MiB; a client that lets
    /// more pile up (it does not read) is closed with 1008. Larger tolerates slower readers and
    /// bigger bursts, and costs that much memory per slow client.
    pub max_outbound: usize,
    /// A connection that has sent nothing for this long is pinged. Default 30 s.
    pub ping_interval: Duration,
    /// A connection that has sent nothing (not even a pong) for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
    /// How long a close handshake or a graceful shutdown may take before sockets are dropped.
    /// Default 2 s.
    pub close_timeout: Duration,
    /// Most simultaneous connections (HTTP and WebSocket). Default: the process's open-file
    /// limit minus a margin for the listener, the poller and logs. Past it new connections are
    /// accepted and closed at once, so the listen queue never fills and the loop never spins.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for clients to answer the close frame. Default 1.5 s,
    /// so the process is gone within 2 s of SIGTERM.
    pub shutdown_timeout: Duration,
    /// Browser origins (`scheme://host[:port]`) besides the server's own that may open
    /// WebSockets; `*` allows any. Default none: a page on another site gets 403, so it cannot
    /// use its visitors' browsers to talk to the server (cross-site WebSocket hijacking).
    /// Clients that send no `Origin` (not browsers) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Peers (reverse proxies) whose `X-Forwarded-For` names the real client: for a connection
    /// from one of them, the last address in that header replaces the peer address in the logs.
    /// Default none: from anyone else the header could be forged, so it is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// Path of the WebSocket echo endpoint (conformance testing only). Default: none.
    pub echo_path: Option<String>,
    /// Messages per second one connection may send, sustained (token bucket). Default 100; 0
    /// turns the limit off (benchmarks). Messages over it are dropped with an error reply.
    pub rate_limit: u32,
    /// Messages one connection may send in a burst above `rate_limit`. Default 200. A client
    /// that keeps sending after this many consecutive refusals is closed with 1008.
    pub rate_burst: u32,
    /// Per-connection read buffer given to tungstenite, and the most one read syscall takes.
    /// Default 2 KiB: it is allocated (and touched) for every idle connection too, so it is most
    /// of an idle connection's memory; a bigger message just takes several reads.
    pub read_buffer_size: usize,
    /// Certificate and key for TLS. Default none: the port speaks plain HTTP and `ws://`. With
    /// them it speaks only TLS 1.2/1.3 (`https://`, `wss://`): browsers refuse `ws://` from an
    /// https page, and a chat server on the open internet needs encryption. `SIGHUP` reloads
    /// both files (certificate rotation) without dropping connections.
    pub tls: Option<TlsFiles>,
    /// The database file (SQLite) that keeps users, persistent rooms, snaps, queued messages and
    /// the id counters across restarts. Default `websocket.db` in the working directory; `None`
    /// (`--data :memory:`) keeps nothing.
    pub data: Option<PathBuf>,
    /// Run as a node of a cluster sharing everything through Redis (`--redis`); then Redis,
    /// not `data`, keeps the durable state. Default none: a single server.
    pub cluster: Option<crate::cluster::Settings>,
    /// The argon2id cost of password hashes. Default 19 MiB and 2 passes (OWASP's first
    /// choice): about 20–40 ms of one core per hash. Cheaper makes stolen hashes cheaper to
    /// crack; dearer makes logins slower and each running hash take that much memory.
    pub argon2: crate::auth::Cost,
    /// Threads hashing passwords. Default 2: a login storm then takes at most two cores' worth
    /// of hashing, and chat (on the net and logic threads) keeps its own.
    pub hash_workers: usize,
    /// The origins (`scheme://host[:port]`) the server is reached at, e.g.
    /// `https://chat.example`: pages from them may open WebSockets. Default none: then only a
    /// page whose origin names the server by an IP address or `localhost` (as `Host` does) is
    /// the server's own. A page from any other host name is refused even when `Host` agrees,
    /// because under DNS rebinding an attacker's page controls both.
    pub public_origins: Vec<String>,
    /// Most simultaneous connections from one address (an IPv4 address or an IPv6 /64).
    /// Default 256; over it a new connection is accepted and closed at once.
    pub max_connections_per_address: usize,
    /// Messages per second all connections of one address may send together (a token bucket
    /// beside each connection's). Default 1000, burst 2000; 0 turns it off. Messages over it
    /// are refused like the per-connection limit's.
    pub address_rate_limit: u32,
    pub address_rate_burst: u32,
    /// Apply the per-address limits (connections, messages, rooms, snaps, failed guesses) to
    /// loopback clients too. Default off: behind a reverse proxy on the same machine every
    /// client arrives from 127.0.0.1 and would share one budget; such clients are limited
    /// per connection instead.
    pub limit_loopback: bool,
    /// The bearer token of the admin API (`Authorization: Bearer <key>`). Default none: the
    /// server password is the key. A separate key lets scripts and dashboards use the API
    /// without being able to run admin chat commands.
    pub api_key: Option<String>,
    /// Largest HTTP request body (admin API), in bytes. Default 64 KiB; larger gets 413.
    pub max_body_size: usize,
    /// Receivers of chat events as JSON POSTs (`--webhook`). Default none.
    pub webhooks: Vec<crate::webhook::Hook>,
    /// The login backend: a login for a name this server does not know is POSTed there
    /// (`{"username":..,"password":..}`) from a hasher thread; 200 with `{"userid":N}` logs the
    /// user in and creates the account here. Default none: unknown names are refused.
    pub auth_url: Option<String>,
    /// How long the login backend may take; past it the login gets "Server busy". Default 3 s.
    pub auth_timeout: Duration,
    /// The chat core's quotas (rooms, members, name lengths, snaps, failed guesses); see
    /// [`Limits`] for each one and its default.
    pub limits: Limits,
}

/// Where the TLS certificate and key live; read at start and again on every `SIGHUP`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (what ACME clients write as `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM private key of the leaf certificate: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

impl Config {
    /// The defaults, with the two values every server needs.
    pub fn new(port: u16, server_password: impl Into<String>) -> Self {
        Config {
            bind: IpAddr::from([0, 0, 0, 0]),
            port,
            server_password: server_password.into(),
            max_message_size: 64 * 1024,
            max_head_size: 8 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_outbound: 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(2),
            read_buffer_size: 2048,
            max_connections: default_max_connections(),
            shutdown_timeout: Duration::from_millis(1500),
            echo_path: None,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            data: Some(PathBuf::from("websocket.db")),
            cluster: None,
            argon2: crate::auth::Cost::DEFAULT,
            hash_workers: 2,
            rate_limit: 100,
            rate_burst: 200,
            tls: None,
            public_origins: Vec::new(),
            max_connections_per_address: 256,
            address_rate_limit: 1000,
            address_rate_burst: 2000,
            limit_loopback: false,
            api_key: None,
            max_body_size: 64 * 1024,
            auth_url: None,
            auth_timeout: Duration::from_secs(3),
            webhooks: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// File descriptors kept free for the listener, the poller, the waker, signals and logging.
const FD_MARGIN: usize = 32;

/// Raises the soft open-file limit to the hard limit and returns what the connection cap can
/// safely be: a chat server's scale is bounded by descriptors, and the soft default (often
/// 1024) is far below what the machine allows.
fn default_max_connections() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024 - FD_MARGIN;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    (lim.rlim_cur.min(1 << 20) as usize)
        .saturating_sub(FD_MARGIN)
        .max(1)
}
