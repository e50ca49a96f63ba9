//! `websocket client URL`: a line-based WebSocket client in the spirit of `wscat`, so a newcomer
//! can try the protocol without writing code.
//!
//! Each line read from stdin goes out as one text message; each message received is printed as
//! one line on stdout (flushed at once, so it works in pipes); notes and errors go to stderr. At
//! the end of input the client closes the WebSocket and exits 0 once the server has answered the
//! close. The socket and stdin are watched with one `mio::Poll`: a thread reads stdin and wakes
//! the poll for each line, so neither side waits for the other.

use std::io::{self, BufRead, ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError, unbounded};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};

/// How long connecting, the handshake, and the server's answer to our close may each take.
const TIMEOUT: Duration = Duration::from_secs(10);

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);

/// Exit codes: a bad URL or argument is a usage error, anything that goes wrong on the way is 1.
const EXIT_OK: u8 = 0;
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// What the stdin thread hands over.
enum Input {
    Line(String),
    End,
}

/// Runs the client until the connection is closed; returns the process exit code. `wait` is how
/// long to keep printing messages after the end of input before closing.
pub fn run(url: &str, wait: Duration) -> u8 {
    let request = match parse_url(url) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let mut ws = match connect(url, request) {
        Ok(ws) => ws,
        Err(e) => return fail(EXIT_FAILED, &e),
    };
    eprintln!("connected to {url}; each line you type is sent, end of input (Ctrl-D) closes");
    match session(&mut ws, wait) {
        Ok(code) => code,
        Err(e) => fail(EXIT_FAILED, &e),
    }
}

fn fail(code: u8, message: &str) -> u8 {
    eprintln!("websocket client: {message}");
    code
}

/// Checks the URL and turns it into a handshake request (only `ws://`: no TLS in this client).
fn parse_url(url: &str) -> Result<Request, String> {
    let request = url
        .into_client_request()
        .map_err(|e| format!("invalid URL '{url}': {e}"))?;
    match request.uri().scheme_str() {
        Some("ws") => Ok(request),
        Some("wss") => Err(format!(
            "'{url}': wss:// is not supported by this client; use ws://"
        )),
        _ => Err(format!("invalid URL '{url}': expected ws://HOST:PORT/PATH")),
    }
}

/// Connects (bounded by [`TIMEOUT`]) and completes the WebSocket handshake.
fn connect(url: &str, request: Request) -> Result<WebSocket<TcpStream>, String> {
    let uri = request.uri();
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last_error = io::Error::new(ErrorKind::NotFound, "no address");
    let stream = addrs
        .iter()
        .find_map(|addr| match TcpStream::connect_timeout(addr, TIMEOUT) {
            Ok(s) => Some(s),
            Err(e) => {
                last_error = e;
                None
            }
        })
        .ok_or_else(|| format!("cannot connect to {host}:{port}: {last_error}"))?;
    let timeouts = stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(TIMEOUT)));
    timeouts.map_err(|e| format!("socket: {e}"))?;
    match tungstenite::client(request, stream) {
        Ok((ws, _response)) => Ok(ws),
        Err(HandshakeError::Failure(WsError::Http(response))) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            Err(format!(
                "{url} refused the WebSocket upgrade: HTTP {}: {}",
                response.status(),
                body.trim()
            ))
        }
        Err(HandshakeError::Failure(e)) => Err(format!("handshake with {url} failed: {e}")),
        Err(HandshakeError::Interrupted(_)) => {
            Err(format!("handshake with {url} timed out after {TIMEOUT:?}"))
        }
    }
}

/// Spawns the thread that reads stdin lines and wakes the poll for each.
fn read_stdin(waker: Arc<Waker>) -> Receiver<Input> {
    let (tx, rx) = unbounded();
    thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.strip_suffix('\r').map(str::to_owned).unwrap_or(line);
            if tx.send(Input::Line(line)).is_err() || waker.wake().is_err() {
                return;
            }
        }
        let _ = tx.send(Input::End);
        let _ = waker.wake();
    });
    rx
}

/// Moves lines out and messages in until the connection is closed.
fn session(ws: &mut WebSocket<TcpStream>, wait: Duration) -> Result<u8, String> {
    let socket = ws.get_ref();
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("socket: {e}"))?;
    let fd = socket.as_raw_fd();
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    poll.registry()
        .register(
            &mut SourceFd(&fd),
            SOCKET,
            Interest::READABLE | Interest::WRITABLE,
        )
        .map_err(|e| format!("poll: {e}"))?;
    // Kept here as well as in the stdin thread: closing the waker's descriptor when that thread
    // ends would take its pending wake-up out of the poll with it.
    let waker = Arc::new(Waker::new(poll.registry(), STDIN).map_err(|e| format!("poll: {e}"))?);
    let input = read_stdin(waker.clone());
    let mut events = Events::with_capacity(8);
    // After the end of input: when to send our close; after sending it: when to give up.
    let mut close_at: Option<Instant> = None;
    let mut give_up_at: Option<Instant> = None;
    let mut input_open = true;
    loop {
        let deadline = give_up_at.or(close_at);
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout)
            && e.kind() != ErrorKind::Interrupted
        {
            return Err(format!("poll: {e}"));
        }
        while input_open && give_up_at.is_none() {
            match input.try_recv() {
                Ok(Input::Line(line)) => ws.write(Message::text(line)).or_else(would_block)?,
                Ok(Input::End) | Err(TryRecvError::Disconnected) => {
                    input_open = false;
                    close_at = Some(Instant::now() + wait);
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        if give_up_at.is_some_and(|t| now >= t) {
            return Err(format!(
                "the server did not answer the close within {TIMEOUT:?}"
            ));
        }
        if give_up_at.is_none() && close_at.is_some_and(|t| now >= t) {
            ws.close(None).or_else(would_block)?;
            give_up_at = Some(now + TIMEOUT);
        }
        if let Some(code) = read_all(ws, give_up_at.is_some())? {
            return Ok(code);
        }
        ws.flush().or_else(would_block)?;
    }
}

/// Prints every message that can be read now. `Some(exit code)` once the connection is closed.
/// `we_closed`: we sent a close frame, so a close from the server is its answer, not news.
fn read_all(ws: &mut WebSocket<TcpStream>, we_closed: bool) -> Result<Option<u8>, String> {
    let mut out = io::stdout().lock();
    loop {
        let text = match ws.read() {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(Message::Close(Some(frame))) if !we_closed => {
                eprintln!(
                    "closed by the server: {} {}",
                    u16::from(frame.code),
                    frame.reason
                );
                if !matches!(frame.code, CloseCode::Normal | CloseCode::Away) {
                    return finish(ws, EXIT_FAILED);
                }
                continue;
            }
            Ok(_) => continue, // pings (answered by tungstenite), pongs, close frames
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return Ok(Some(EXIT_OK)),
            Err(e) => return Err(format!("connection lost: {e}")),
        };
        writeln!(out, "{text}")
            .and_then(|_| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
}

/// Answers the server's close (tungstenite queued the reply) and returns `code`.
fn finish(ws: &mut WebSocket<TcpStream>, code: u8) -> Result<Option<u8>, String> {
    let _ = ws.flush();
    Ok(Some(code))
}

/// Treats "the socket would block" as success: the data stays queued in tungstenite and is
/// written when the poll reports the socket writable.
fn would_block(e: WsError) -> Result<(), String> {
    match e {
        WsError::Io(io) if io.kind() == ErrorKind::WouldBlock => Ok(()),
        other => Err(format!("send failed: {other}")),
    }
}
