//! `websocket PORT PASSWORD` runs the chat server; `websocket client URL` is a line-based
//! WebSocket client for trying it; `websocket test ...` runs the self-tests.

use std::io::{ErrorKind, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind as ClapErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use log::{error, info};

use websocket::config::{Config, Limits, TlsFiles};
use websocket::server::Server;
use websocket::{client, crash, selftest};

/// The environment variable the server password is read from when the command line gives none.
const PASSWORD_ENV: &str = "WEBSOCKET_PASSWORD";

/// A multithreaded WebSocket chat server.
///
/// Open http://HOST:PORT/ (https:// with --tls-cert) in a browser for the chat page; WebSocket
/// clients speak the command protocol on any other path, or the room dialect on
/// /ws/chat/{room}/?nickname={nick}.
#[derive(Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    // A flag given twice takes its last value: the config file's flags come first, so the
    // command line overrides them.
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the built-in self-tests: `test list`, `test all`, `test N`, `test NAME`, `test debug`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Connect to a WebSocket URL (e.g. ws://localhost:8000/): each line typed is sent as one
    /// text message, each message received is printed as one line; end of input closes.
    Client {
        /// The WebSocket URL (`ws://HOST:PORT/PATH`).
        url: String,
        /// After the end of input, keep printing what arrives for this many seconds before
        /// closing (for piped input, whose replies would otherwise be cut off by the close).
        #[arg(long, value_name = "SECS", default_value_t = 0.0)]
        wait: f64,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TCP port to listen on (0 picks a free one).
    #[arg(required_unless_present = "config")]
    port: Option<u16>,
    /// Read settings from this TOML file: every flag as a key (`max-rooms = 100`,
    /// `webhook = [...]`), plus `port`, `password` and `[[webhook]]` tables with their own
    /// `url`, `auth`, `events`, `timeout`, `retries`, `queue`. Flags override the file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Server password for admin commands and persistent rooms (or use --password-file, or the
    /// WEBSOCKET_PASSWORD environment variable, which keep it out of `ps`).
    #[arg(conflicts_with = "password_file")]
    password: Option<String>,
    /// Read the server password from this file (its first line; a trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Anything after PORT and PASSWORD that is not an option: refused with a clear message.
    #[arg(hide = true)]
    stray: Vec<String>,
    /// Address to listen on (`::` for IPv6 and IPv4).
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Largest WebSocket message accepted, in bytes (larger: close 1009).
    #[arg(long, default_value_t = 64 * 1024)]
    max_message_size: usize,
    /// Largest HTTP request head, in bytes (larger: 431).
    #[arg(long, default_value_t = 8 * 1024)]
    max_head_size: usize,
    /// Seconds allowed to send a complete HTTP request head (TLS handshake included).
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Bytes that may queue for one client before it is closed as a slow consumer (1008).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_outbound: usize,
    /// Seconds of silence before the server pings a client.
    #[arg(long, default_value_t = 30)]
    ping_interval: u64,
    /// Seconds of silence (no pong either) before a client is closed.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Most simultaneous connections [default: open-file limit minus a margin].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Messages per second one client may send, sustained (0 = unlimited).
    #[arg(long, default_value_t = 100)]
    rate_limit: u32,
    /// Messages one client may send in a burst above the rate limit.
    #[arg(long, default_value_t = 200)]
    rate_burst: u32,
    /// Per-connection read buffer in bytes (most of an idle connection's memory).
    #[arg(long, default_value_t = 2048)]
    read_buffer_size: usize,
    /// Also accept WebSockets from pages on this origin (e.g. https://chat.example; `*` for any;
    /// repeatable). The server's own origin and non-browser clients are always accepted.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// The server's public origin (e.g. https://chat.example; repeatable): pages from it may
    /// open WebSockets. Without it only pages naming the server by IP address or localhost do.
    #[arg(long = "public-url", value_name = "URL")]
    public_url: Vec<String>,
    /// Most simultaneous connections from one address (IPv4, or IPv6 /64).
    #[arg(long, default_value_t = 256)]
    max_connections_per_address: usize,
    /// Messages per second all connections of one address may send together (0 = unlimited).
    #[arg(long, default_value_t = 1000)]
    address_rate_limit: u32,
    /// Messages one address may send in a burst above --address-rate-limit.
    #[arg(long, default_value_t = 2000)]
    address_rate_burst: u32,
    /// Apply per-address limits to loopback clients too (off: a local reverse proxy would make
    /// every client share one address).
    #[arg(long)]
    limit_loopback: bool,
    /// Most chatrooms on the server.
    #[arg(long, default_value_t = Limits::default().rooms)]
    max_rooms: usize,
    /// Most temporary chatrooms one connection, and one user, may have made.
    #[arg(long, default_value_t = Limits::default().rooms_per_owner)]
    max_rooms_per_owner: usize,
    /// Most temporary chatrooms made from one address.
    #[arg(long, default_value_t = Limits::default().rooms_per_address)]
    max_rooms_per_address: usize,
    /// Most members in one chatroom.
    #[arg(long, default_value_t = Limits::default().members)]
    max_members: usize,
    /// Longest chatroom name and adduser username, in bytes.
    #[arg(long, default_value_t = Limits::default().name_len)]
    max_name_len: usize,
    /// Longest chatroom question, and answer, in bytes.
    #[arg(long, default_value_t = Limits::default().question_len)]
    max_question_len: usize,
    /// Most live snaps one user (or address) may have sent.
    #[arg(long, default_value_t = Limits::default().snaps_per_sender)]
    max_snaps_per_sender: usize,
    /// Most live snaps waiting for one user.
    #[arg(long, default_value_t = Limits::default().snaps_per_recipient)]
    max_snaps_per_recipient: usize,
    /// Most live snaps sent from one address.
    #[arg(long, default_value_t = Limits::default().snaps_per_address)]
    max_snaps_per_address: usize,
    /// Longest snap life and read time, in seconds (a snap without expiry lives this long).
    #[arg(long, default_value_t = Limits::default().snap_lifetime)]
    max_snap_lifetime: u64,
    /// Failed guesses (server password, room answer, login) per address or account before
    /// lockouts start.
    #[arg(long, default_value_t = Limits::default().free_failures)]
    free_failures: u32,
    /// Longest lockout after a failed guess, in seconds (lockouts double from 1 s).
    #[arg(long, default_value_t = Limits::default().max_lockout)]
    max_lockout: u64,
    /// Serve a WebSocket echo endpoint at this path (for conformance testing only).
    #[arg(long)]
    echo_path: Option<String>,
    /// PEM certificate chain: the port then speaks only TLS (https://, wss://). SIGHUP reloads
    /// it and the key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The database file that keeps users, persistent rooms, snaps and queued messages across
    /// restarts (`:memory:` keeps nothing).
    #[arg(long, value_name = "PATH", default_value = "websocket.db")]
    data: String,
    /// Run as a node of a cluster: rooms, users and messages are shared with the other nodes
    /// through this Redis server, which then keeps the durable state instead of --data
    /// (docs/cluster.md).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// This node's name in the cluster, unique among the nodes running (default: host,
    /// process id and a random part). A node restarted under the same name replaces its
    /// previous run at once.
    #[arg(long, value_name = "NAME", requires = "redis")]
    node_id: Option<String>,
    /// Prefix of every Redis key and channel of this cluster, so clusters can share a Redis.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "websocket",
        requires = "redis"
    )]
    redis_prefix: String,
    /// Memory per password hash, KiB (argon2id; more is slower to brute-force, and costs that
    /// much RAM per hash running).
    #[arg(long, value_name = "KIB", default_value_t = websocket::auth::Cost::DEFAULT.memory_kib)]
    argon2_memory_kib: u32,
    /// Passes over that memory per password hash.
    #[arg(long, value_name = "N", default_value_t = websocket::auth::Cost::DEFAULT.iterations)]
    argon2_iterations: u32,
    /// Threads hashing passwords.
    #[arg(long, value_name = "N", default_value_t = 2)]
    hash_workers: usize,
    /// Password hashes waiting or running at most; past it logins and registrations get
    /// "Server busy; try again."
    #[arg(long, value_name = "N", default_value_t = 256)]
    hash_queue: usize,
    /// Messages queued for one offline user at most.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    offline_queue: usize,
    /// Seconds a message queued for an offline user is kept.
    #[arg(long, value_name = "SECS", default_value_t = 7 * 24 * 3600)]
    offline_ttl: u64,
    /// Messages each room keeps for history and resume (0: none).
    #[arg(long, value_name = "N", default_value_t = Limits::default().history_size)]
    history_size: usize,
    /// Seconds a room keeps a message for history and resume.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().history_ttl)]
    history_ttl: u64,
    /// A reverse proxy whose `X-Forwarded-For` header names the real client address in the
    /// logs (repeatable). The header is ignored from every other peer, which could forge it.
    #[arg(long = "trusted-proxy", value_name = "ADDR")]
    trusted_proxy: Vec<IpAddr>,
    /// Bearer token of the admin API under /api/v1/. Without it the server password is the
    /// API's key.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Check logins for names this server does not know at this URL (POST
    /// {"username","password"}; 200 with {"userid":N} accepts and creates the account here).
    #[arg(long, value_name = "URL")]
    auth_url: Option<String>,
    /// Seconds the login backend may take before the login gets "Server busy".
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    auth_timeout: u64,
    /// Largest HTTP request body (admin API), in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    max_body_size: usize,
    /// POST every chat event as JSON to this URL (repeatable): logins, logouts, room messages,
    /// private messages, rooms created and deleted.
    #[arg(long = "webhook", value_name = "URL")]
    webhook: Vec<String>,
    /// How the webhooks authenticate: basic:USER:PASSWORD, bearer:TOKEN, header:NAME:VALUE or
    /// cookie:NAME=VALUE.
    #[arg(long, value_name = "SPEC")]
    webhook_auth: Option<String>,
    /// Only these events go to the webhooks (comma-separated: login, logout, room_message,
    /// private_message, room_created, room_deleted).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    webhook_events: Vec<String>,
    /// Seconds one webhook request may take.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    webhook_timeout: u64,
    /// Retries of a failed webhook request (with a doubling backoff from 200 ms).
    #[arg(long, value_name = "N", default_value_t = 3)]
    webhook_retries: u32,
    /// Events waiting per webhook at most; more are dropped (and counted) while it is slow.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    webhook_queue: usize,
}

impl ServeArgs {
    fn config(self, password: String) -> Config {
        let mut c = Config::new(self.port.unwrap_or_default(), password);
        c.bind = self.bind;
        c.max_message_size = self.max_message_size;
        c.max_head_size = self.max_head_size;
        c.handshake_timeout = Duration::from_secs(self.handshake_timeout);
        c.max_outbound = self.max_outbound;
        c.ping_interval = Duration::from_secs(self.ping_interval);
        c.idle_timeout = Duration::from_secs(self.idle_timeout);
        if let Some(n) = self.max_connections {
            c.max_connections = n;
        }
        c.echo_path = self.echo_path;
        c.allowed_origins = self.allow_origin;
        c.rate_limit = self.rate_limit;
        c.rate_burst = self.rate_burst;
        c.read_buffer_size = self.read_buffer_size.max(256);
        c.public_origins = self.public_url;
        c.max_connections_per_address = self.max_connections_per_address;
        c.address_rate_limit = self.address_rate_limit;
        c.address_rate_burst = self.address_rate_burst;
        c.limit_loopback = self.limit_loopback;
        c.limits = Limits {
            rooms: self.max_rooms,
            rooms_per_owner: self.max_rooms_per_owner,
            rooms_per_address: self.max_rooms_per_address,
            members: self.max_members,
            name_len: self.max_name_len,
            question_len: self.max_question_len,
            snaps_per_sender: self.max_snaps_per_sender,
            snaps_per_recipient: self.max_snaps_per_recipient,
            snaps_per_address: self.max_snaps_per_address,
            snap_lifetime: self.max_snap_lifetime,
            free_failures: self.free_failures,
            max_lockout: self.max_lockout,
            hash_queue: self.hash_queue.max(1),
            offline_queue: self.offline_queue,
            offline_ttl: self.offline_ttl,
            login_backend: self.auth_url.is_some(),
            history_size: self.history_size,
            history_ttl: self.history_ttl,
        };
        c.auth_url = self.auth_url;
        c.auth_timeout = Duration::from_secs(self.auth_timeout.max(1));
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            c.tls = Some(TlsFiles { cert, key });
        }
        c.trusted_proxies = self.trusted_proxy;
        c.data = match self.data.as_str() {
            ":memory:" => None,
            path => Some(PathBuf::from(path)),
        };
        if let Some(url) = self.redis {
            let node = self
                .node_id
                .unwrap_or_else(websocket::cluster::default_node_id);
            let safe = |s: &str| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            };
            if !safe(&node) || !safe(&self.redis_prefix) {
                startup_error("--node-id and --redis-prefix: 1 to 64 of A-Z a-z 0-9 - _ .");
            }
            c.data = None;
            c.cluster = Some(websocket::cluster::Settings {
                url,
                node,
                prefix: self.redis_prefix,
            });
        }
        c.argon2 = websocket::auth::Cost {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: 1,
        };
        c.hash_workers = self.hash_workers.max(1);
        c.api_key = self.api_key.filter(|k| !k.is_empty());
        c.max_body_size = self.max_body_size;
        let auth = self
            .webhook_auth
            .as_deref()
            .map(websocket::webhook::Auth::parse)
            .transpose()
            .unwrap_or_else(|e| startup_error(&e));
        if let Some(bad) = self
            .webhook_events
            .iter()
            .find(|e| !websocket::webhook::EVENTS.contains(&e.as_str()))
        {
            startup_error(&format!(
                "unknown webhook event '{bad}'; the events are {}",
                websocket::webhook::EVENTS.join(", ")
            ));
        }
        c.webhooks = self
            .webhook
            .into_iter()
            .map(|url| websocket::webhook::Hook {
                url,
                auth: auth.clone(),
                events: self.webhook_events.clone(),
                timeout: Duration::from_secs(self.webhook_timeout.max(1)),
                retries: self.webhook_retries,
                queue: self.webhook_queue.max(1),
            })
            .collect();
        c
    }

    /// The server password from the command line, the password file or the environment (in
    /// that order), and where it came from; `None` if none was given. An empty one is refused:
    /// every admin check would pass for a client that sends an empty password field, or none.
    fn password(&self) -> Result<Option<(String, String)>, String> {
        let (password, source) = if let Some(p) = &self.password {
            (p.clone(), "the command line".to_string())
        } else if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the password file {}: {e}", file.display()))?;
            let first = text.lines().next().unwrap_or_default().to_string();
            (first, format!("{}", file.display()))
        } else if let Some(p) = std::env::var_os(PASSWORD_ENV) {
            let p = p
                .into_string()
                .map_err(|_| format!("{PASSWORD_ENV} is not valid UTF-8"))?;
            (p, PASSWORD_ENV.to_string())
        } else {
            return Ok(None);
        };
        if password.is_empty() {
            return Err(format!(
                "the server password (from {source}) is empty; an empty password would make \
                 every client an admin"
            ));
        }
        Ok(Some((password, source)))
    }
}

/// The address to print: an unspecified bind address (`0.0.0.0`, `::`) is not something a
/// person can open, so it is shown as `localhost`.
fn display_url(scheme: &str, addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{scheme}://localhost:{}/", addr.port())
    } else {
        format!("{scheme}://{addr}/")
    }
}

/// Prints one line about a bad start-up setting and exits 2, like a command-line error.
fn startup_error(message: &str) -> ! {
    eprintln!("websocket: {message}");
    std::process::exit(2);
}

/// Prints a command-line error with the usage line (clap omits it for some errors) and exits 2.
fn usage_error(e: clap::Error) -> ! {
    if matches!(
        e.kind(),
        ClapErrorKind::DisplayHelp | ClapErrorKind::DisplayVersion
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    eprint!("{text}");
    if !text.contains("Usage:") {
        eprintln!("\n{}", Cli::command().render_usage());
    }
    std::process::exit(2);
}

/// What a config file holds besides flags.
#[derive(Default)]
struct FileSettings {
    port: Option<u16>,
    password: Option<String>,
    webhooks: Vec<websocket::webhook::Hook>,
}

/// The command line with the config file's settings (`--config FILE`) put in front of it as
/// flags, so the command line overrides them; and what the file holds that is not a flag.
fn with_config_file(
    args: Vec<std::ffi::OsString>,
) -> Result<(Vec<std::ffi::OsString>, FileSettings), String> {
    let path = args
        .windows(2)
        .find_map(|w| (w[0] == "--config").then(|| w[1].clone()))
        .or_else(|| {
            args.iter()
                .find_map(|a| a.to_str()?.strip_prefix("--config=").map(Into::into))
        });
    let Some(path) = path else {
        return Ok((args, FileSettings::default()));
    };
    let shown = PathBuf::from(&path).display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the config file {shown}: {e}"))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("config file {shown}: {e}"))?;
    let mut settings = FileSettings::default();
    let mut flags: Vec<std::ffi::OsString> = Vec::new();
    let scalar = |key: &str, v: &toml::Value| -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            _ => Err(format!(
                "config file {shown}: `{key}` must be a string or a number"
            )),
        }
    };
    for (key, value) in &table {
        match (key.as_str(), value) {
            ("port", v) => {
                let port = scalar(key, v)?;
                settings.port = Some(
                    port.parse()
                        .map_err(|_| format!("config file {shown}: bad port {port}"))?,
                );
            }
            ("password", v) => settings.password = Some(scalar(key, v)?),
            ("config", _) => return Err(format!("config file {shown}: `config` cannot nest")),
            ("webhook", toml::Value::Array(hooks)) if hooks.iter().all(toml::Value::is_table) => {
                for hook in hooks {
                    settings.webhooks.push(file_webhook(&shown, hook)?);
                }
            }
            (_, toml::Value::Boolean(on)) => {
                if *on {
                    flags.push(format!("--{}", key.replace('_', "-")).into());
                }
            }
            (_, toml::Value::Array(values)) => {
                for v in values {
                    flags.push(format!("--{}", key.replace('_', "-")).into());
                    flags.push(scalar(key, v)?.into());
                }
            }
            (_, v) => {
                flags.push(format!("--{}", key.replace('_', "-")).into());
                flags.push(scalar(key, v)?.into());
            }
        }
    }
    let mut out = Vec::with_capacity(args.len() + flags.len());
    out.extend(args.first().cloned());
    out.extend(flags);
    out.extend(args.into_iter().skip(1));
    Ok((out, settings))
}

/// One `[[webhook]]` table of the config file.
fn file_webhook(shown: &str, hook: &toml::Value) -> Result<websocket::webhook::Hook, String> {
    let bad = |what: &str| format!("config file {shown}: [[webhook]] {what}");
    let field = |name: &str| hook.get(name);
    let url = field("url")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| bad("needs a url"))?
        .to_string();
    let auth = match field("auth") {
        None => None,
        Some(v) => Some(
            websocket::webhook::Auth::parse(v.as_str().ok_or_else(|| bad("auth is a string"))?)
                .map_err(|e| bad(&e))?,
        ),
    };
    let events: Vec<String> = match field("events") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or_else(|| bad("events is a list"))?
            .iter()
            .map(|e| {
                e.as_str()
                    .filter(|e| websocket::webhook::EVENTS.contains(e))
                    .map(str::to_string)
                    .ok_or_else(|| bad(&format!("unknown event {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    let number = |name: &str, default: u64| -> Result<u64, String> {
        match field(name) {
            None => Ok(default),
            Some(v) => v
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| bad(&format!("{name} is a number"))),
        }
    };
    Ok(websocket::webhook::Hook {
        url,
        auth,
        events,
        timeout: Duration::from_secs(number("timeout", 5)?.max(1)),
        retries: u32::try_from(number("retries", 3)?).map_err(|_| bad("retries is too big"))?,
        queue: usize::try_from(number("queue", 1000)?.max(1))
            .map_err(|_| bad("queue is too big"))?,
    })
}

fn main() -> ExitCode {
    crash::install();
    let (args, file) =
        with_config_file(std::env::args_os().collect()).unwrap_or_else(|e| startup_error(&e));
    let mut cli = Cli::try_parse_from(args).unwrap_or_else(|e| usage_error(e));
    if cli.serve.port.is_none() {
        cli.serve.port = file.port;
    }
    if cli.serve.port.is_none() && cli.command.is_none() {
        startup_error("no port: give PORT on the command line or `port` in the config file");
    }
    // The file's password is the last resort: the command line, a password file and the
    // environment all come first.
    if cli.serve.password.is_none()
        && cli.serve.password_file.is_none()
        && std::env::var_os(PASSWORD_ENV).is_none()
    {
        cli.serve.password = file.password;
    }
    match cli.command {
        Some(Command::Test { args }) => {
            return ExitCode::from(selftest::run(&args).clamp(0, 255) as u8);
        }
        Some(Command::Client { url, wait }) => {
            if !(wait.is_finite() && wait >= 0.0) {
                startup_error("--wait must be a number of seconds, 0 or more");
            }
            return ExitCode::from(client::run(&url, Duration::from_secs_f64(wait)));
        }
        None => {}
    }
    if let Some(stray) = cli.serve.stray.first() {
        startup_error(&format!(
            "unexpected argument '{stray}': the server takes PORT and PASSWORD, then options \
             (see websocket --help)"
        ));
    }
    let (password, source) = match cli.serve.password() {
        Ok(Some(found)) => found,
        Ok(None) => {
            eprintln!(
                "websocket: no server password: give PASSWORD after the port, --password-file \
                 FILE, or set {PASSWORD_ENV}\n\n{}",
                Cli::command().render_usage()
            );
            std::process::exit(2);
        }
        Err(e) => startup_error(&e),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut config = cli.serve.config(password);
    config.webhooks.extend(file.webhooks);
    let (bind, port) = (config.bind, config.port);
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = match Server::start(config) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            error!("cannot listen on port {port}: it is already in use ({bind}:{port})");
            return ExitCode::from(1);
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput => {
            error!("{e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            error!("cannot listen on {bind}:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = server.local_addr();
    println!("listening on {}", display_url(scheme, addr));
    let _ = std::io::stdout().flush();
    info!("server password from {source}; admin commands enabled");
    server.wait();
    info!("bye");
    ExitCode::SUCCESS
}
