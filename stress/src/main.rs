//! `stress`: the bundled load generator for the chat server (and its benchmark peers).
//!
//! Two dialects:
//! - protocol mode (`--url`): the chat command protocol. Rooms are created first with
//!   `addchatroom` and the server password (so they are persistent), optionally users with
//!   `adduser`; then every connection (optionally `login`s and) `joinchatroom`s its room and the
//!   senders `send(...)`.
//! - raw mode (`--url-template`): the room URL endpoint, also spoken by the peer servers.
//!   Connecting joins the room named in the URL; each text frame sent comes back to every member
//!   as `nick: text`.
//!
//! Every payload carries its sender, sequence number and send time, so each copy received gives
//! a latency sample and is checked for order and routing. Only loopback targets are accepted and
//! every phase has a time limit, so a run always ends.
//!
//! The main thread is the controller: it prepares the run, hands commands to the worker threads
//! (see [`worker`]) and collects their figures.

mod frame;
mod payload;
mod report;
mod setup;
mod sock;
mod sys;
mod target;
mod wire;
mod worker;

use clap::Parser;
use report::{Connect, Latency, Ramp, Report, Server, Window};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use worker::{Command, Login, Mode, Plan, Progress, SendSpec, Shared, WAKE, WindowReport, Worker};

/// Receivers × senders-per-room entries above which per-sender order tracking is skipped
/// (it costs 4 bytes each).
const ORDER_CHECK_LIMIT: usize = 16 << 20;
/// Longest any one phase may be asked to last, so a typo cannot make an unbounded run.
const MAX_SECONDS: f64 = 3600.0;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Load generator for the chat server and its peers (loopback targets only)",
    after_help = "Examples:\n  \
      stress --url ws://127.0.0.1:9000/ --password pw -n 1000 -r 10 -p 64 -d 10\n  \
      stress --url-template 'ws://127.0.0.1:9001/ws/chat/{room}/?nickname=u{i}' -n 100 --ramp\n  \
      stress --url-template 'ws://127.0.0.1:9001/ws/chat/{room}/?nickname=u{i}' -n 10000 -r 100 -s 0 --server-pid 1234"
)]
struct Cli {
    /// Protocol mode: the server's WebSocket URL. Several (repeated or comma-separated, e.g. the
    /// nodes of a cluster): connection i uses URL i % count; rooms and users are set up through
    /// the first.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080/",
        conflicts_with = "url_template"
    )]
    url: Vec<String>,
    /// Raw mode: a room URL with `{room}` (replaced by r0, r1, ...) and `{i}` (the connection
    /// number), e.g. ws://127.0.0.1:PORT/ws/chat/{room}/?nickname=u{i}. Several (repeated or
    /// comma-separated): connection i uses template i % count.
    #[arg(long, value_delimiter = ',')]
    url_template: Vec<String>,
    /// The server password (protocol mode: needed to create persistent rooms and users).
    #[arg(long)]
    password: Option<String>,
    /// Protocol mode: create one user per connection with `adduser` and log in as it.
    #[arg(long)]
    login: bool,
    /// Number of connections.
    #[arg(short = 'n', long, default_value_t = 1000)]
    connections: usize,
    /// Number of rooms; connection i joins room i % rooms.
    #[arg(short = 'r', long, default_value_t = 1)]
    rooms: usize,
    /// Number of sending connections (the first ones, spread evenly over rooms); default all.
    #[arg(short = 's', long)]
    senders: Option<usize>,
    /// Total send rate in messages/s; without it each sender sends as fast as the server echoes.
    #[arg(long)]
    rate: Option<f64>,
    /// Without --rate: messages each sender keeps in flight.
    #[arg(long, default_value_t = 4)]
    window: u32,
    /// Payload size in bytes (at least 33).
    #[arg(short = 'p', long, default_value_t = 64)]
    payload: usize,
    /// Seconds measured after the warm-up.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of sending before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds to wait, after sending stops, for the last copies to arrive.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Seconds allowed for setup and for all connections to connect and join.
    #[arg(long, default_value_t = 60.0)]
    connect_timeout: f64,
    /// Handshakes in progress at once, per thread.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Event-loop threads.
    #[arg(short = 't', long, default_value_t = 1)]
    threads: usize,
    /// Under heavy load (64 or more messages in one turn) wait this many microseconds between
    /// rounds of reads, so that each read takes many messages; adds at most that much to the
    /// measured latency under such load. 0 reads at once.
    #[arg(long, default_value_t = 0)]
    read_batch_us: u64,
    /// Report this process's memory (VmRSS) and CPU use: the server under test.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Ramp mode: raise the rate step by step; report the highest rate sustained with p99 under
    /// --p99-max-ms and no loss.
    #[arg(long)]
    ramp: bool,
    /// Ramp: first total rate (messages/s).
    #[arg(long, default_value_t = 1000.0)]
    ramp_start: f64,
    /// Ramp: rate multiplier between steps until one fails.
    #[arg(long, default_value_t = 1.5)]
    ramp_factor: f64,
    /// Ramp: bisection steps between the last good and the first bad rate.
    #[arg(long, default_value_t = 3)]
    ramp_refine: u32,
    /// Ramp: seconds measured per step.
    #[arg(long, default_value_t = 2.0)]
    step: f64,
    /// Ramp: warm-up seconds per step.
    #[arg(long, default_value_t = 0.5)]
    step_warmup: f64,
    /// Ramp: most rates tried in all.
    #[arg(long, default_value_t = 20)]
    max_steps: u32,
    /// Ramp: times a failed step is repeated before its rate counts as failed, so that one
    /// hiccup (another process taking the server's core for a moment) does not end the ramp.
    #[arg(long, default_value_t = 1)]
    ramp_retries: u32,
    /// Ramp: p99 latency bound in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    p99_max_ms: f64,
    /// `wss://` (raw mode): the PEM certificate(s) to trust, e.g. the server's self-signed one.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(report) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("serializable report")
                );
            } else {
                print!("{}", report.table());
            }
            if report.connect.established > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("stress: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_seconds(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && (0.0..=MAX_SECONDS).contains(&v) {
        Ok(())
    } else {
        Err(format!(
            "--{name} must be between 0 and {MAX_SECONDS} seconds"
        ))
    }
}

fn validate(cli: &Cli) -> Result<(), String> {
    if cli.connections == 0 || cli.connections > 1_000_000 {
        return Err("--connections must be between 1 and 1000000".into());
    }
    if cli.rooms == 0 || cli.rooms > cli.connections {
        return Err("--rooms must be between 1 and --connections".into());
    }
    if cli.senders.is_some_and(|s| s > cli.connections) {
        return Err("--senders cannot exceed --connections".into());
    }
    if cli.payload < payload::HEADER_LEN || cli.payload > 1 << 20 {
        return Err(format!(
            "--payload must be between {} and 1048576",
            payload::HEADER_LEN
        ));
    }
    if cli.threads == 0 || cli.threads > 64 {
        return Err("--threads must be between 1 and 64".into());
    }
    if cli.connect_concurrency == 0 {
        return Err("--connect-concurrency must be at least 1".into());
    }
    if cli.read_batch_us > 100_000 {
        return Err("--read-batch-us must be at most 100000".into());
    }
    if cli.window == 0 || cli.window > 1_000_000 {
        return Err("--window must be between 1 and 1000000".into());
    }
    if cli.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err("--rate must be a positive number".into());
    }
    for (name, v) in [
        ("duration", cli.duration),
        ("warmup", cli.warmup),
        ("drain", cli.drain),
        ("connect-timeout", cli.connect_timeout),
        ("step", cli.step),
        ("step-warmup", cli.step_warmup),
    ] {
        check_seconds(name, v)?;
    }
    if cli.ramp {
        if !(cli.ramp_start.is_finite() && cli.ramp_start > 0.0) {
            return Err("--ramp-start must be positive".into());
        }
        if !(cli.ramp_factor.is_finite() && cli.ramp_factor > 1.0) {
            return Err("--ramp-factor must be above 1".into());
        }
        if cli.max_steps == 0 || cli.max_steps > 100 || cli.step <= 0.0 {
            return Err("--max-steps must be 1..100 and --step positive".into());
        }
        if cli.ramp_retries > 5 {
            return Err("--ramp-retries must be 0..5".into());
        }
    }
    Ok(())
}

/// Sums one counter over all workers.
fn sum(shared: &Shared, f: impl Fn(&Progress) -> &AtomicU64) -> u64 {
    shared.progress.iter().map(|p| f(p).load(Relaxed)).sum()
}

/// Waits until every worker has published figures from after `ns` (or `limit` passes).
fn wait_published(shared: &Shared, ns: u64, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until
        && shared
            .progress
            .iter()
            .any(|p| p.published.load(Relaxed) <= ns)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Runs everything the controller does between setup and the final report.
struct Controller {
    shared: Arc<Shared>,
    reports: mpsc::Receiver<WindowReport>,
    threads: usize,
    server_pid: Option<u32>,
    /// The CPUs the client and the server may run on, to see how much other processes took.
    watched_cpus: Option<Vec<usize>>,
    drain: Duration,
}

impl Controller {
    /// Sends for one window and returns what the workers saw.
    fn window(&self, rate: Option<f64>, warmup: f64, seconds: f64) -> Window {
        let shared = &*self.shared;
        let senders = sum(shared, |p| &p.ready_senders);
        if senders == 0 {
            return Window {
                target_rate: rate,
                ..Window::default()
            };
        }
        let t0 = Instant::now();
        let start = t0 + Duration::from_secs_f64(warmup);
        let end = start + Duration::from_secs_f64(seconds);
        let spec = SendSpec {
            per_sender_rate: rate.map_or(0.0, |r| r / senders as f64),
            window_start: shared.ns(start),
            window_end: shared.ns(end),
        };
        shared.set(|c| c.send = Some(spec));
        sleep_until(start);
        let sample = || {
            let busy = self.watched_cpus.as_deref().and_then(sys::cpus_busy);
            let server = self.server_pid.and_then(sys::process_cpu);
            (sys::own_cpu(), server, busy)
        };
        let (cpu0, server0, busy0) = sample();
        sleep_until(end);
        let (cpu1, server1, busy1) = sample();
        let measured = (Instant::now() - start).as_secs_f64().max(1e-9);

        // Drain: wait until every copy owed for the window has arrived.
        let drain_until = Instant::now() + self.drain;
        loop {
            let fresh = shared
                .progress
                .iter()
                .all(|p| p.published.load(Relaxed) > spec.window_end);
            if fresh && sum(shared, |p| &p.delivered) >= sum(shared, |p| &p.expected) {
                break;
            }
            if Instant::now() >= drain_until {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let drained = Instant::now().saturating_duration_since(end).as_secs_f64();

        shared.set(|c| c.report += 1);
        let reports: Vec<WindowReport> = (0..self.threads)
            .filter_map(|_| self.reports.recv_timeout(Duration::from_secs(10)).ok())
            .collect();
        let mut w = Window::merge(rate, seconds, &reports);
        w.drain_seconds = drained;
        w.client_cpu_percent = (cpu1 - cpu0).as_secs_f64() / measured * 100.0;
        w.server_cpu_percent = match (server0, server1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / measured * 100.0),
            _ => None,
        };
        w.other_cpu_percent = match (server0, server1, busy0, busy1) {
            (Some(s0), Some(s1), Some(b0), Some(b1)) => {
                let ours = (s1.saturating_sub(s0) + (cpu1 - cpu0)).as_secs_f64();
                let busy = b1.saturating_sub(b0).as_secs_f64();
                Some(((busy - ours) / measured * 100.0).max(0.0))
            }
            _ => None,
        };
        w
    }

    /// Waits until no frame has arrived for a little while (an overloaded server catching up
    /// on an earlier step would otherwise spoil the next one), at most `limit`.
    fn quiesce(&self, limit: Duration) {
        let until = Instant::now() + limit;
        let mut last = sum(&self.shared, |p| &p.frames);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(250));
            let now = sum(&self.shared, |p| &p.frames);
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Ramp mode: geometric steps until a step fails, then bisection.
    fn ramp(&self, cli: &Cli) -> Ramp {
        let mut ramp = Ramp {
            p99_bound_ms: cli.p99_max_ms,
            ..Ramp::default()
        };
        let mut rate = cli.ramp_start;
        let (mut good, mut bad): (Option<f64>, Option<f64>) = (None, None);
        let mut refined = 0;
        'rates: for _ in 0..cli.max_steps {
            let mut pass = false;
            for attempt in 0..=cli.ramp_retries {
                if attempt > 0 {
                    self.quiesce(Duration::from_secs(10));
                }
                let mut w = self.window(Some(rate), cli.step_warmup, cli.step);
                pass = w.clean()
                    && w.sent > 0
                    && w.latency_ms.p99 <= cli.p99_max_ms
                    && w.sent_per_sec >= 0.95 * rate;
                w.passed = Some(pass);
                let closes = w.unexpected_closes;
                ramp.steps.push(w);
                if closes > 0 {
                    // Lost connections (a server cutting slow consumers, say) would make every
                    // later step measure a smaller room; the ramp ends here instead.
                    ramp.stopped = Some(format!(
                        "{closes} connections closed by the server at {rate:.0} msgs/s"
                    ));
                    break 'rates;
                }
                if pass {
                    break;
                }
            }
            if pass {
                good = Some(good.map_or(rate, |g| g.max(rate)));
            } else {
                bad = Some(bad.map_or(rate, |b| b.min(rate)));
                self.quiesce(Duration::from_secs(10));
            }
            rate = match bad {
                None => rate * cli.ramp_factor,
                Some(b) => {
                    let g = good.unwrap_or(0.0);
                    if refined >= cli.ramp_refine || b - g < 0.02 * b {
                        break;
                    }
                    refined += 1;
                    (g + b) / 2.0
                }
            };
        }
        ramp.best = ramp
            .steps
            .iter()
            .filter(|s| s.passed == Some(true))
            .max_by(|a, b| a.delivered_per_sec.total_cmp(&b.delivered_per_sec))
            .cloned();
        ramp
    }
}

/// The TLS client for a `wss://` run: trusts the certificates in `ca` and checks the server's
/// against `name`.
fn tls_client(name: &str, ca: Option<&std::path::Path>) -> Result<sock::TlsClient, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let ca = ca.ok_or("wss:// needs --tls-ca FILE (the certificate to trust)")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_string()).map_err(|e| format!("{name}: {e}"))?;
    Ok(sock::TlsClient {
        config: Arc::new(config),
        name,
    })
}

fn run(cli: &Cli) -> Result<Report, String> {
    validate(cli)?;
    let origin = Instant::now();
    let (mode, urls) = if cli.url_template.is_empty() {
        (Mode::Protocol, &cli.url)
    } else {
        (Mode::Raw, &cli.url_template)
    };
    let targets = urls
        .iter()
        .map(|u| target::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    let target = targets.first().ok_or("no URL given")?;
    if mode == Mode::Raw && cli.rooms > 1 && targets.iter().any(|t| !t.path.contains("{room}")) {
        return Err("--url-template needs {room} when --rooms is more than 1".into());
    }
    // One TLS client configuration serves every connection, so every URL must name one host.
    if targets.iter().any(|t| t.tls_name != target.tls_name) {
        return Err("all URLs must be ws://, or all wss:// with the same host name".into());
    }
    let tls = match &target.tls_name {
        None => None,
        Some(_) if mode == Mode::Protocol => {
            return Err("wss:// is supported in raw mode (--url-template) only".into());
        }
        Some(name) => Some(tls_client(name, cli.tls_ca.as_deref())?),
    };
    if mode == Mode::Raw && cli.login {
        return Err("--login only applies to protocol mode".into());
    }
    let nofile = sys::raise_nofile();
    if (nofile as usize) < cli.connections + 64 {
        return Err(format!(
            "{} connections need more file descriptors than the limit of {nofile}",
            cli.connections
        ));
    }
    let senders = cli.senders.unwrap_or(cli.connections);
    let connect_limit = Duration::from_secs_f64(cli.connect_timeout);
    let run_limit = if cli.ramp {
        // Per step: warm-up, measuring, draining, collecting and (after a failure) quiescing.
        (cli.step_warmup + cli.step + cli.drain + 10.0 + 10.0)
            * cli.max_steps as f64
            * (1.0 + cli.ramp_retries as f64)
    } else {
        cli.warmup + cli.duration + cli.drain + 10.0
    };
    let hard_deadline = origin + connect_limit * 2 + Duration::from_secs_f64(run_limit + 10.0);

    // Protocol-mode preparation: rooms and users.
    let mut room_ids = Vec::new();
    let mut login = None;
    if mode == Mode::Protocol {
        let password = cli
            .password
            .as_deref()
            .ok_or("protocol mode needs --password (rooms are created persistent with it)")?;
        let mut ctl = setup::Control::connect(target, origin + connect_limit)?;
        let names: Vec<String> = (0..cli.rooms).map(|k| format!("stress{k}")).collect();
        room_ids = ctl.create_rooms(&names, password)?;
        if cli.login {
            // Fresh user ids every run (the server keeps users while it lives): ms since the
            // epoch × 10^6 stays below 2^63 and does not collide across runs a ms apart.
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as u64);
            let uid_base = ms * 1_000_000;
            let pass = "stress".to_string();
            ctl.create_users(uid_base, cli.connections as u64, &pass, password)?;
            login = Some(Login {
                uid_base,
                password: pass,
            });
        }
        ctl.close();
    }

    let rss = |field: &str| cli.server_pid.and_then(|pid| sys::status_kib(pid, field));
    let rss_before = rss("VmRSS");

    let plan = Plan {
        mode,
        targets: targets.clone(),
        connections: cli.connections,
        rooms: cli.rooms,
        senders,
        payload: cli.payload,
        threads: cli.threads.min(cli.connections),
        window: cli.window,
        connect_concurrency: cli.connect_concurrency,
        room_ids,
        login,
        order_check: false,
        hard_deadline,
        read_batch: Duration::from_micros(cli.read_batch_us),
        tls,
    };
    let order_entries: usize = (0..plan.rooms)
        .map(|r| (plan.connections / plan.rooms + 1) * plan.senders_in_room(r))
        .sum();
    let plan = Arc::new(Plan {
        order_check: order_entries <= ORDER_CHECK_LIMIT,
        ..plan
    });

    let mut polls = Vec::new();
    let mut wakers = Vec::new();
    for _ in 0..plan.threads {
        let poll = mio::Poll::new().map_err(|e| format!("poll: {e}"))?;
        wakers.push(mio::Waker::new(poll.registry(), WAKE).map_err(|e| format!("waker: {e}"))?);
        polls.push(poll);
    }
    let shared = Arc::new(Shared {
        origin,
        epoch: AtomicU64::new(0),
        command: Mutex::new(Command {
            connect: true,
            ..Command::default()
        }),
        wakers,
        progress: (0..plan.threads).map(|_| Progress::default()).collect(),
        members: (0..plan.rooms).map(|_| AtomicU32::new(0)).collect(),
    });
    let (report_tx, report_rx) = mpsc::channel();
    let handles: Vec<_> = polls
        .into_iter()
        .enumerate()
        .map(|(id, poll)| {
            let w = Worker::new(id, plan.clone(), shared.clone(), poll, report_tx.clone());
            std::thread::Builder::new()
                .name(format!("stress-{id}"))
                .spawn(move || w.run())
                .expect("spawn worker thread")
        })
        .collect();

    // Connect phase.
    let connect_start = Instant::now();
    let connect_until = connect_start + connect_limit;
    while Instant::now() < connect_until
        && sum(&shared, |p| &p.ready) + sum(&shared, |p| &p.failed) < plan.connections as u64
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    let connect_end_ns = shared.ns(Instant::now());
    shared.set(|c| c.connect = false);
    wait_published(&shared, connect_end_ns, Duration::from_secs(5));
    let rss_connected = rss("VmRSS");

    let ctl = Controller {
        shared: shared.clone(),
        reports: report_rx,
        threads: plan.threads,
        server_pid: cli.server_pid,
        watched_cpus: cli.server_pid.and_then(|pid| {
            let mut cpus = sys::allowed_cpus(pid)?;
            cpus.extend(sys::allowed_cpus(std::process::id())?);
            cpus.sort_unstable();
            cpus.dedup();
            Some(cpus)
        }),
        drain: Duration::from_secs_f64(cli.drain),
    };
    let mut run_window = None;
    let mut ramp = None;
    if sum(&shared, |p| &p.ready_senders) > 0 {
        if cli.ramp {
            ramp = Some(ctl.ramp(cli));
        } else {
            run_window = Some(ctl.window(cli.rate, cli.warmup, cli.duration));
        }
    } else {
        // Nothing to send (for example idle-connection runs): hold the connections open.
        std::thread::sleep(Duration::from_secs_f64(cli.duration));
    }
    let rss_end = rss("VmRSS");
    let rss_peak = rss("VmHWM");

    shared.set(|c| c.stop = true);
    let finals: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("worker thread panicked"))
        .collect();

    let mut connect_hist = worker::latency_histogram();
    let mut report = Report {
        mode: match mode {
            Mode::Protocol => "protocol",
            Mode::Raw => "raw",
        },
        url: urls.join(","),
        connections: plan.connections,
        rooms: plan.rooms,
        senders: plan.senders,
        payload_bytes: plan.payload,
        threads: plan.threads,
        login: plan.login.is_some(),
        order_check: plan.order_check,
        run: run_window,
        ramp,
        ..Report::default()
    };
    let mut connect = Connect {
        requested: plan.connections,
        seconds: connect_seconds,
        ..Connect::default()
    };
    for f in finals {
        connect_hist.add(&f.connect).expect("same histogram bounds");
        connect.established += f.established;
        connect.failed += f.failed;
        for (why, n) in f.failures {
            *connect.failures.entry(why).or_default() += n;
        }
        for (why, n) in f.close_reasons {
            *report.close_reasons.entry(why).or_default() += n;
        }
        report.errors += f.errors;
        report.unexpected_closes += f.unexpected_closes;
        report.sent_total += f.sent;
        report.frames_total += f.frames;
        if report.first_error.is_none() {
            report.first_error = f.first_error;
        }
    }
    connect.per_sec = connect.established as f64 / connect_seconds.max(1e-9);
    connect.latency_ms = Latency::of(&connect_hist);
    report.connect = connect;
    report.server = cli.server_pid.map(|pid| Server {
        pid,
        rss_before_kib: rss_before,
        rss_connected_kib: rss_connected,
        rss_end_kib: rss_end,
        rss_peak_kib: rss_peak,
        rss_per_connection_bytes: match (rss_before, rss_connected) {
            (Some(a), Some(b)) if report.connect.established > 0 => {
                Some((b as f64 - a as f64) * 1024.0 / report.connect.established as f64)
            }
            _ => None,
        },
    });
    Ok(report)
}
