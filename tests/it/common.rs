//! Test harness: runs the real `websocket` binary on an ephemeral loopback port and talks
//! WebSocket to it with blocking tungstenite clients. Every wait has a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// How long any single expected event may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub const PASSWORD: &str = "pw";

/// The cheapest argon2 cost: for tests, never for real passwords.
pub const CHEAP_HASHES: [&str; 4] = ["--argon2-memory-kib", "8", "--argon2-iterations", "1"];

/// The server's stderr so far, and a condition variable signalled for every line added.
type Log = Arc<(Mutex<String>, Condvar)>;

/// A server process; killed on drop. Its stderr is kept and printed if the test fails.
pub struct TestServer {
    child: Child,
    pub port: u16,
    /// The first line the server printed (`listening on http://HOST:PORT/`).
    pub listening: String,
    log: Log,
}

impl TestServer {
    /// `websocket 0 pw --bind 127.0.0.1`.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Like [`TestServer::start`], with extra command-line flags. Unless they say otherwise
    /// the server keeps no data file (`--data :memory:`) and hashes passwords at the cheapest
    /// argon2 cost, so tests that log in many times stay fast; the tests of durability and of
    /// hashing under load set both.
    pub fn start_with(extra: &[&str]) -> TestServer {
        let mut args = vec!["0", PASSWORD, "--bind", "127.0.0.1"];
        if !extra.contains(&"--data") {
            args.extend(["--data", ":memory:"]);
        }
        if !extra.contains(&"--argon2-memory-kib") {
            args.extend(CHEAP_HASHES);
        }
        args.extend_from_slice(extra);
        let server = TestServer::launch(&args, &[]);
        let specific = |scheme: &str| {
            let line = format!("listening on {scheme}://127.0.0.1:");
            server.listening.starts_with(&line)
        };
        // `https://` with `--tls-cert`.
        assert!(
            specific("http") || specific("https"),
            "{:?}",
            server.listening
        );
        server
    }

    /// `websocket ARGS...` with extra environment variables (and `WEBSOCKET_PASSWORD` unset
    /// unless given), once it has printed its listening line.
    pub fn launch(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        TestServer::launch_configured(args, env, |_| {})
    }

    /// Like [`TestServer::launch`], with the command adjusted first (limits, user).
    pub fn launch_configured(
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_websocket"));
        command
            .args(without_data_file(args))
            .env_remove("WEBSOCKET_PASSWORD")
            .envs(env.iter().copied())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("spawn websocket");
        let log: Log = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.0.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
                sink.1.notify_all();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let Ok(line) = rx.recv_timeout(TIMEOUT) else {
            let _ = child.kill();
            let log = log.0.lock().unwrap().clone();
            panic!("server printed no listening line; its log:\n{log}");
        };
        let listening = line.trim().to_string();
        // `https://` with `--tls-cert`.
        let port = listening
            .strip_prefix("listening on http://")
            .or_else(|| listening.strip_prefix("listening on https://"))
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|host_port| host_port.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        TestServer {
            child,
            port,
            listening,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    /// Waits (at most [`TIMEOUT`]) until the server's log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let (log, added) = &*self.log;
        let (log, _) = added
            .wait_timeout_while(log.lock().unwrap(), TIMEOUT, |log| !log.contains(needle))
            .unwrap();
        assert!(
            log.contains(needle),
            "{needle:?} not logged within {TIMEOUT:?}"
        );
        log.clone()
    }

    /// A command-protocol client offering the `chatroom-protocol` subprotocol.
    pub fn client(&self) -> Client {
        self.client_at("/", Some("chatroom-protocol"))
    }

    /// A protocol client that has read its `yourchatclientid(C,)` greeting; returns C too.
    pub fn chat_client(&self) -> (Client, u64) {
        let mut c = self.client();
        let id = c.client_id();
        (c, id)
    }

    /// A WebSocket client on `path`, optionally offering a subprotocol.
    pub fn client_at(&self, path: &str, subprotocol: Option<&str>) -> Client {
        let stream = self.connect();
        ws_handshake(stream, &format!("ws://{}{path}", self.addr()), subprotocol)
    }

    /// A TCP connection to the server, with the harness's read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr()).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream
    }

    /// SIGKILL: the process dies at once, mid-write if it was writing.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_exit(limit)
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

/// What a test client's WebSocket runs over: a TCP socket, or a TLS stream over one.
pub trait Socket: Read + Write {
    /// The TCP socket underneath, for read timeouts.
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// The WebSocket handshake for `url` over an already connected `stream`, optionally offering
/// a subprotocol.
pub fn ws_handshake<S: Socket>(stream: S, url: &str, subprotocol: Option<&str>) -> Client<S> {
    let mut req = url.into_client_request().unwrap();
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let (ws, resp) = tungstenite::client(req, stream).expect("websocket handshake");
    let protocol = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    Client { ws, protocol }
}

impl Client {
    /// A command-protocol client past its greeting, or `None` if the server is not there
    /// (for clients of a server that is about to be killed).
    pub fn try_connect(addr: &str) -> Option<Client> {
        let stream = TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(TIMEOUT)).ok()?;
        let url = format!("ws://{addr}/");
        let (ws, _) = tungstenite::client(url.into_client_request().ok()?, stream).ok()?;
        let mut c = Client { ws, protocol: None };
        c.try_recv()?;
        Some(c)
    }

    /// Sends `text` and returns the first message that carries messageid `mid` first, skipping
    /// what others caused meanwhile; `None` once the connection broke.
    pub fn try_reply(&mut self, text: &str, mid: u64) -> Option<String> {
        self.ws.send(Message::text(text)).ok()?;
        let tag = format!("({mid},");
        loop {
            let m = self.try_recv()?;
            if m.contains(&tag) {
                return Some(m);
            }
        }
    }

    fn try_recv(&mut self) -> Option<String> {
        loop {
            match self.ws.read().ok()? {
                Message::Text(t) => return Some(t.to_string()),
                Message::Ping(_) | Message::Pong(_) => continue,
                _ => return None,
            }
        }
    }
}

/// A blocking WebSocket client.
pub struct Client<S: Socket = TcpStream> {
    pub ws: WebSocket<S>,
    /// The subprotocol the server selected, if any.
    pub protocol: Option<String>,
}

impl<S: Socket> Client<S> {
    pub fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    /// The next data message as text (control frames are skipped).
    pub fn recv(&mut self) -> String {
        match self.next_message() {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8(b.to_vec()).expect("utf-8 binary"),
            other => panic!("expected a data message, got {other:?}"),
        }
    }

    /// Receives `n` messages.
    pub fn recv_n(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.recv()).collect()
    }

    /// The next message that is not a ping or pong.
    pub fn next_message(&mut self) -> Message {
        loop {
            match self.ws.read() {
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(m) => return m,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Reads the greeting and returns the chatclientid it carries.
    pub fn client_id(&mut self) -> u64 {
        let greeting = self.recv();
        greeting
            .strip_prefix("yourchatclientid(")
            .and_then(|r| r.strip_suffix(",)"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad greeting {greeting:?}"))
    }

    /// Asserts that no data message arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        self.ws
            .get_ref()
            .tcp()
            .set_read_timeout(Some(wait))
            .unwrap();
        let result = self.ws.read();
        self.ws
            .get_ref()
            .tcp()
            .set_read_timeout(Some(TIMEOUT))
            .unwrap();
        match result {
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Reads until the server's close frame arrives; returns its code and reason.
    pub fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => continue,
                Err(e) => panic!("expected a close frame, got error {e}"),
            }
        }
    }
}

/// Sends raw bytes on a fresh TCP connection and returns everything the server sends back
/// until it closes the connection (or the timeout).
pub fn raw_exchange(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// `GET path` on a fresh connection (`Connection: close`): the whole response as text.
pub fn http_get(addr: &str, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    String::from_utf8_lossy(&raw_exchange(addr, request.as_bytes())).into_owned()
}

/// A hand-rolled WebSocket client over a raw socket, for sending what well-behaved libraries
/// refuse to: unmasked frames, lying length headers, fragment floods, garbage.
pub struct RawWs {
    pub stream: TcpStream,
}

/// A frame as the server sent it.
#[derive(Debug)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code, if this is a close frame that carries one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

pub const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

impl RawWs {
    /// Connects and completes the handshake on `path`.
    pub fn connect(addr: &str, path: &str) -> RawWs {
        RawWs::connect_with(addr, path, b"")
    }

    /// Like [`RawWs::connect`], with bytes sent in the same write as the request head.
    pub fn connect_with(addr: &str, path: &str, pipelined: &[u8]) -> RawWs {
        let stream = TcpStream::connect(addr).unwrap();
        RawWs::handshake(stream, path, pipelined)
    }

    /// Completes the handshake on an already connected socket.
    pub fn handshake(mut stream: TcpStream, path: &str, pipelined: &[u8]) -> RawWs {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n").into_bytes();
        req.extend_from_slice(pipelined);
        stream.write_all(&req).unwrap();
        // Read the response head byte by byte so no frame after it is consumed.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("handshake response");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101 "),
            "{}",
            String::from_utf8_lossy(&head)
        );
        RawWs { stream }
    }

    /// Encodes one client frame; `mask` false produces an (illegal) unmasked frame.
    pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        let m = if mask { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => f.push(m | n as u8),
            n @ 126..=0xFFFF => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x37, 0xfa, 0x21, 0x3d];
        if mask {
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        f
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.send_raw(&RawWs::frame(true, 0x1, text.as_bytes(), true));
    }

    /// Reads one server frame; `None` on EOF or error.
    pub fn read_frame(&mut self) -> Option<RawFrame> {
        read_frame_from(&mut self.stream)
    }

    /// Reads one data frame's payload as text (skipping pings).
    pub fn read_text(&mut self) -> String {
        loop {
            let f = self.read_frame().expect("a frame");
            if f.opcode == 0x9 {
                continue;
            }
            assert_eq!(f.opcode, 0x1, "expected text, got {f:?}");
            return String::from_utf8(f.payload).unwrap();
        }
    }

    /// Reads frames until a close frame; returns its code.
    pub fn expect_close_code(&mut self) -> Option<u16> {
        loop {
            match self.read_frame() {
                Some(f) if f.opcode == 0x8 => return f.close_code(),
                Some(_) => continue,
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// True if the server has closed the TCP connection (EOF or reset) within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {
                    if start.elapsed() > wait {
                        return false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Reads one server frame from `r` (a socket, or a buffered reader for fast consumers).
pub fn read_frame_from(r: &mut impl Read) -> Option<RawFrame> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).ok()?;
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l).ok()?;
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            r.read_exact(&mut l).ok()?;
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).ok()?;
    Some(RawFrame {
        opcode: h[0] & 0x0f,
        payload,
    })
}

/// Held by the tests that load the machine (thousands of sockets, full-speed rooms), so they do
/// not run at the same time and starve each other's clients into looking like slow consumers.
static HEAVY: Mutex<()> = Mutex::new(());

pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a finished command printed and how it ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `websocket` binary to completion with `stdin` as its input, killing it (and failing
/// the test) if it takes longer than [`TIMEOUT`]. `WEBSOCKET_PASSWORD` is unset unless in `env`.
pub fn run_websocket(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Finished {
    let mut child = Command::new(env!("CARGO_BIN_EXE_websocket"))
        .args(without_data_file(args))
        .env_remove("WEBSOCKET_PASSWORD")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn websocket");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    thread::spawn(move || input.write_all(&stdin)); // dropped when written: end of input
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`websocket {}` still ran after {TIMEOUT:?}; stdout:\n{}\nstderr:\n{}",
                args.join(" "),
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// `args` for the server (they start with a port) plus `--data :memory:` unless they name a
/// data file: test servers must not share (and lock) one `websocket.db` in the working
/// directory.
pub fn without_data_file<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut args = args.to_vec();
    let serves = args.first().is_some_and(|a| a.parse::<u16>().is_ok());
    if serves && !args.contains(&"--data") {
        args.extend(["--data", ":memory:"]);
    }
    args
}

/// A fresh directory under the system's temp dir, removed (with what is in it) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("websocket-it-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// `name` inside the directory, as a string for the command line.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
