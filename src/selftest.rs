//! The built-in self-tests: `websocket test list | all | N | NAME | debug [VARIANT]`.
//!
//! They run in-process against the components compiled into this very binary (the codec, the
//! chat state, the HTTP head parser, the whole server over loopback), so an operator can check a
//! deployed binary on its own machine without the source tree or a test harness. `debug` is
//! different: it crashes the process on purpose, to show what a crash report looks like.
//!
//! Each self-test returns `Err(explanation)` on the first failed check. A panic inside one (a bug
//! in the component under test) is caught by [`crash::catch_panic`], reported with its trace and
//! counted as a failure, so one bug does not hide the other results.

use std::fmt::Debug;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::chat::Entry;
use crate::config::Config;
use crate::crash;
use crate::dialect::protocol::codec::{self as proto, Command, Reply, vectors};
use crate::http::{self, Head, Response, Route, Service};
use crate::server::Server;
use crate::{transcript, ws};

/// What a self-test returns: `Err` explains the first check that failed.
type Outcome = Result<(), String>;

struct SelfTest {
    name: &'static str,
    about: &'static str,
    kind: Kind,
}

enum Kind {
    /// A check: `all` runs it, and it reports pass or fail.
    Check(fn() -> Outcome),
    /// `debug`: crashes the process on purpose; takes an optional [`Variant`] name.
    Debug,
}

/// Every self-test, numbered from 1 in this order.
const TESTS: &[SelfTest] = &[
    SelfTest {
        name: "codec",
        about: "wire codec: every command shape, the error cases, replies, round trips",
        kind: Kind::Check(codec),
    },
    SelfTest {
        name: "frames",
        about: "WebSocket frame encoding, checked against tungstenite's parser",
        kind: Kind::Check(frames),
    },
    SelfTest {
        name: "chat",
        about: "chat logic: the protocol documents' examples in every dialect and across dialects",
        kind: Kind::Check(chat),
    },
    SelfTest {
        name: "http",
        about: "HTTP head parser: page, errors, limits, upgrade (RFC 6455 accept-key vector)",
        kind: Kind::Check(http_heads),
    },
    SelfTest {
        name: "loopback",
        about: "the whole server on 127.0.0.1: page, room-URL and protocol clients chatting, shutdown",
        kind: Kind::Check(loopback),
    },
    SelfTest {
        name: "debug",
        about: "crash on purpose to show the crash report (not in `all`): \
                debug [segv|bus|ill|fpe|abort|overflow|panic]",
        kind: Kind::Debug,
    },
];

/// Runs the self-test selection named by `args`; returns the process exit code: the number of
/// failed tests, or 2 for a usage error.
pub fn run(args: &[String]) -> i32 {
    let Some((selector, rest)) = args.split_first() else {
        eprintln!("usage: websocket test list | all | N | NAME | debug [VARIANT]");
        return 2;
    };
    let selector = selector.as_str();
    match (selector, rest) {
        ("list", []) => {
            for (i, t) in TESTS.iter().enumerate() {
                println!("{:>3}  {:<9} {}", i + 1, t.name, t.about);
            }
            0
        }
        ("all", []) => run_checks(TESTS.iter().enumerate().filter_map(|(i, t)| match t.kind {
            Kind::Check(check) => Some((i + 1, t.name, check)),
            Kind::Debug => None,
        })),
        ("list" | "all", [arg, ..]) => {
            usage_error(&format!("`test {selector}` takes no argument, got {arg:?}"))
        }
        _ => {
            let found = match selector.parse::<usize>() {
                Ok(n) => n
                    .checked_sub(1)
                    .and_then(|i| TESTS.get(i).map(|t| (i + 1, t))),
                Err(_) => TESTS
                    .iter()
                    .enumerate()
                    .find(|(_, t)| t.name == selector)
                    .map(|(i, t)| (i + 1, t)),
            };
            let Some((number, test)) = found else {
                return usage_error(&format!("no self-test {selector:?}"));
            };
            match (&test.kind, rest) {
                (&Kind::Check(check), []) => {
                    run_checks(std::iter::once((number, test.name, check)))
                }
                (Kind::Debug, []) => debug(Variant::Demo(Fault::Segv)),
                (Kind::Debug, [variant]) => match Variant::named(variant) {
                    Some(variant) => debug(variant),
                    None => usage_error(&format!("unknown debug variant {variant:?}")),
                },
                (_, args) => usage_error(&format!("`test {selector}` does not take {args:?}")),
            }
        }
    }
}

/// Prints a usage error; returns the exit code for it.
fn usage_error(message: &str) -> i32 {
    eprintln!("error: {message}; `websocket test list` shows the self-tests");
    2
}

/// Runs `checks` (number, name, function), printing one line each and the totals last; returns
/// the number of failures.
fn run_checks(checks: impl Iterator<Item = (usize, &'static str, fn() -> Outcome)>) -> i32 {
    let (mut passed, mut failed) = (0, 0);
    for (number, name, check) in checks {
        let started = Instant::now();
        let outcome =
            crash::catch_panic(check).unwrap_or_else(|panic| Err(format!("panicked: {panic}")));
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("test {number} {name} ... ok ({ms} ms)");
            }
            Err(why) => {
                failed += 1;
                println!("test {number} {name} ... FAILED ({ms} ms)\n    {why}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    failed
}

/// `Err` describing the mismatch unless `got == want`.
fn expect_eq<T: PartialEq + Debug>(what: impl std::fmt::Display, got: T, want: T) -> Outcome {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: expected {want:?}, got {got:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// codec

/// Runs the codec's shared example tables ([`vectors`]), the same ones the unit tests run.
fn codec() -> Outcome {
    for (input, want) in vectors::commands() {
        expect_eq(show(input), proto::parse(input), Ok(want))?;
    }
    for (input, want) in vectors::parse_errors() {
        expect_eq(show(input), proto::parse(input), Err(want))?;
    }
    for (reply, want) in vectors::replies() {
        let mut buf = Vec::new();
        reply.encode(&mut buf);
        expect_eq(format!("{reply:?}"), show(&buf), want.to_string())?;
    }
    for (what, got, want) in vectors::lists() {
        expect_eq(what, show(&got), want.to_string())?;
    }
    // Whatever a client sends in `send` comes out byte for byte in `chat`.
    for message in vectors::texts() {
        let wire = format!("send(5,3,{},{message})", message.len());
        let want = Command::Send {
            mid: 5,
            room: 3,
            message: message.clone(),
        };
        if proto::parse(wire.as_bytes()) != Ok(want) {
            return Err(format!(
                "send with a {}-byte message does not round-trip",
                message.len()
            ));
        }
        let mut buf = Vec::new();
        Reply::Chat {
            mid: 5,
            room: 3,
            client: 1,
            user: 0,
            message: &message,
        }
        .encode(&mut buf);
        let want = format!("chat(5,3,1,0,{},{message})", message.len());
        if buf != want.as_bytes() {
            return Err(format!(
                "chat reply for a {}-byte message: got {}",
                message.len(),
                show(&buf)
            ));
        }
    }
    Ok(())
}

/// Bytes as text for messages (lossy: invalid UTF-8 shows as U+FFFD).
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// frames

fn frames() -> Outcome {
    use tungstenite::protocol::frame::FrameHeader;
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let frame = ws::text_frame(&payload);
        let mut cursor = std::io::Cursor::new(&frame[..]);
        let (header, declared) = FrameHeader::parse(&mut cursor)
            .map_err(|e| format!("{len}-byte frame: tungstenite rejects the header: {e}"))?
            .ok_or_else(|| format!("{len}-byte frame: header incomplete"))?;
        let at = format!("{len}-byte frame");
        expect_eq(&at, (header.is_final, header.mask), (true, None))?;
        expect_eq(&at, declared as usize, len)?;
        expect_eq(&at, cursor.position() as usize + len, frame.len())?;
        expect_eq(&at, ws::text_payload(&frame), Some(&payload[..]))?;
        expect_eq(&at, ws::text_payload(&frame[..frame.len() - 1]), None)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// chat

/// The scripted conversations of `transcript`: the protocol documents' examples, in each
/// dialect and across dialects.
fn chat() -> Outcome {
    transcript::run(transcript::PROTOCOL_EXAMPLE)?;
    transcript::run(transcript::ROOM_URL_EXAMPLE)?;
    transcript::run(transcript::JSON_EXAMPLE)
}

// ---------------------------------------------------------------------------------------------
// http

fn http_heads() -> Outcome {
    const MAX_HEAD: usize = 8 * 1024;
    let routes = http::Routes {
        max_head: MAX_HEAD,
        ..Default::default()
    };
    let parse = |req: &[u8]| http::parse(req, &routes);

    let get = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    let Head::Complete {
        len,
        route: Route::Respond(Response(page)),
    } = parse(get)
    else {
        return Err(format!("GET /: {:?}", parse(get)));
    };
    expect_eq("GET / head length", len, get.len())?;
    expect_eq("GET / status", status(&page), 200)?;
    if !page.ends_with(http::PAGE.as_bytes()) || !contains(&page, "text/html; charset=utf-8") {
        return Err("GET / does not serve the chat page as text/html".into());
    }
    let head = parse(b"HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    let Head::Complete {
        route: Route::Respond(Response(headers)),
        ..
    } = head
    else {
        return Err(format!("HEAD /index.html: {head:?}"));
    };
    expect_eq("HEAD status", status(&headers), 200)?;
    if contains(&headers, http::PAGE)
        || !contains(&headers, &format!("content-length: {}", http::PAGE.len()))
    {
        return Err("HEAD must send the page's headers without the page".into());
    }

    for (req, want) in [
        (&b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"[..], 404),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n",
            405,
        ),
        (b"\x00\x01 nonsense\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
              sec-websocket-version: 13\r\n\r\n",
            400,
        ),
    ] {
        let got = match parse(req) {
            Head::Reject(Response(r))
            | Head::Complete {
                route: Route::Respond(Response(r)),
                ..
            } => status(&r),
            other => return Err(format!("{}: {other:?}", show(req))),
        };
        expect_eq(format!("status for {:?}", show(req)), got, want)?;
    }
    expect_eq(
        "an unfinished head",
        parse(b"GET / HTTP/1.1\r\nHost: x"),
        Head::Partial,
    )?;
    let mut huge = b"GET / HTTP/1.1\r\nx-filler: ".to_vec();
    huge.resize(MAX_HEAD + 100, b'a');
    match parse(&huge) {
        Head::Reject(Response(r)) => expect_eq("status for an oversized head", status(&r), 431)?,
        other => return Err(format!("an oversized head: {other:?}")),
    }

    // RFC 6455 §1.3: this key must be answered with this accept value (SHA-1 + base64).
    let upgrade = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: chatroom-protocol\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut pipelined = upgrade.to_vec();
    pipelined.extend_from_slice(&ws::text_frame(b"nop()"));
    let Head::Complete {
        len,
        route: Route::Upgrade { response, service },
    } = parse(&pipelined)
    else {
        return Err(format!("upgrade: {:?}", parse(upgrade)));
    };
    expect_eq(
        "upgrade head length (bytes after it are frames)",
        len,
        upgrade.len(),
    )?;
    expect_eq("upgrade status", status(&response), 101)?;
    expect_eq("upgrade service", service, Service::Chat(Entry::Protocol))?;
    if !contains(
        &response,
        "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
    ) {
        return Err(format!(
            "upgrade: wrong or missing accept key in {}",
            show(&response)
        ));
    }
    if !contains(&response, "sec-websocket-protocol: chatroom-protocol\r\n") {
        return Err("upgrade: the offered chatroom-protocol was not selected".into());
    }
    let old = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let Head::Complete {
        route: Route::Respond(Response(r)),
        ..
    } = parse(old)
    else {
        return Err(format!("upgrade with version 8: {:?}", parse(old)));
    };
    expect_eq("status for websocket version 8", status(&r), 426)?;
    if !contains(&r, "sec-websocket-version: 13") {
        return Err("426 must name the supported version".into());
    }
    let room =
        b"GET /ws/chat/my%20room/?nickname=ann HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";
    let Head::Complete {
        route: Route::Upgrade { service, .. },
        ..
    } = parse(room)
    else {
        return Err(format!("room URL upgrade: {:?}", parse(room)));
    };
    let want = Entry::RoomUrl {
        room: "my room".into(),
        nickname: "ann".into(),
        history: 0,
    };
    expect_eq("room URL service", service, Service::Chat(want))
}

/// The status code of an HTTP response, 0 if the status line is malformed.
fn status(response: &[u8]) -> u16 {
    response
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|code| std::str::from_utf8(code).ok()?.parse().ok())
        .unwrap_or(0)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// loopback

/// How long any one network step of the loopback test may take.
const NET_TIMEOUT: Duration = Duration::from_secs(5);

fn loopback() -> Outcome {
    let mut config = Config::new(0, "pw");
    config.data = None; // a self-test leaves no data file behind
    config.bind = Ipv4Addr::LOCALHOST.into();
    let server = Server::start(config).map_err(|e| format!("cannot start the server: {e}"))?;
    let addr = server.local_addr();
    let session = chat_over_loopback(addr);
    // The clients still connected answer the server's goodbye while it shuts down.
    let goodbyes = session.map(|clients| {
        clients
            .into_iter()
            .map(|client| std::thread::spawn(move || client.expect_goodbye()))
            .collect::<Vec<_>>()
    });
    // Shut down whatever happened, but never wait forever for it.
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        server.shutdown();
        let _ = done.send(());
    });
    let shut_down = finished.recv_timeout(Duration::from_secs(10));
    for goodbye in goodbyes? {
        goodbye
            .join()
            .unwrap_or_else(|_| Err("a goodbye reader panicked".into()))?;
    }
    shut_down.map_err(|_| "the server did not shut down within 10 s".into())
}

/// The client side of the loopback test; returns the clients still connected.
fn chat_over_loopback(addr: SocketAddr) -> Result<Vec<Client>, String> {
    let mut http = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    http.set_read_timeout(Some(NET_TIMEOUT))
        .map_err(|e| e.to_string())?;
    http.write_all(b"GET / HTTP/1.1\r\nHost: selftest\r\n\r\n")
        .map_err(|e| format!("send GET /: {e}"))?;
    let mut page = Vec::new();
    http.read_to_end(&mut page)
        .map_err(|e| format!("read the page: {e}"))?;
    expect_eq("GET / over TCP", status(&page), 200)?;

    // The room-URL dialect: chatclientids 1 and 2, chatroomid 1.
    let mut carol = Client::connect(addr, "/ws/chat/garden/?nickname=carol", false)?;
    carol.expect("carol joined garden")?;
    let mut dave = Client::connect(addr, "/ws/chat/garden/?nickname=dave", false)?;
    carol.expect("dave joined garden")?;
    dave.expect("dave joined garden")?;
    carol.send("hi, dave")?;
    carol.expect("carol: hi, dave")?;
    dave.expect("carol: hi, dave")?;
    dave.close()?;
    carol.expect("dave left garden")?;

    // The command protocol: chatclientids 3 and 4, chatroomid 2.
    let mut alice = Client::connect(addr, "/", true)?;
    let mut bob = Client::connect(addr, "/", false)?;
    alice.expect("yourchatclientid(3,)")?;
    bob.expect("yourchatclientid(4,)")?;
    alice.send("addchatroom(1,5,lobby0,0,0,)")?;
    alice.expect("chatroomcreated(1,2,5,lobby9,1,)")?;
    bob.expect("chatroomcreated(1,2,5,lobby8,1,)")?;
    bob.send("joinchatroom(2,2,0,0,)")?;
    alice.expect("userjoinedchatroom(2,2,4,0,0,2,)")?;
    bob.expect("userjoinedchatroom(2,2,4,0,0,2,)")?;
    alice.send("send(3,2,6,hello!)")?;
    alice.expect("chat(3,2,3,0,6,hello!)")?;
    bob.expect("chat(3,2,3,0,6,hello!)")?;
    bob.send("hello")?;
    bob.expect("error(32,That message was not understood.)")?;
    bob.close()?;
    alice.expect("userleftchatroom(0,2,4,0,0,1,)")?;
    Ok(vec![alice, carol])
}

/// A blocking WebSocket client with timeouts.
struct Client {
    name: String,
    ws: WebSocket<TcpStream>,
}

impl Client {
    /// Connects to `path`, optionally offering the `chatroom-protocol` subprotocol (which the
    /// server must then select).
    fn connect(addr: SocketAddr, path: &str, subprotocol: bool) -> Result<Client, String> {
        use tungstenite::client::IntoClientRequest;
        let name = format!("client on {path} (subprotocol {subprotocol})");
        let stream = TcpStream::connect(addr).map_err(|e| format!("{name}: connect: {e}"))?;
        stream
            .set_read_timeout(Some(NET_TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(NET_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut request = format!("ws://{addr}{path}")
            .into_client_request()
            .map_err(|e| format!("{name}: {e}"))?;
        if subprotocol {
            let value = http::SUBPROTOCOL.parse().map_err(|e| format!("{e}"))?;
            request
                .headers_mut()
                .insert("sec-websocket-protocol", value);
        }
        let (ws, response) =
            tungstenite::client(request, stream).map_err(|e| format!("{name}: handshake: {e}"))?;
        let selected = response.headers().get("sec-websocket-protocol");
        expect_eq(
            format!("{name}: selected subprotocol"),
            selected.map(|v| v.as_bytes()),
            subprotocol.then_some(http::SUBPROTOCOL.as_bytes()),
        )?;
        Ok(Client { name, ws })
    }

    fn send(&mut self, text: &str) -> Outcome {
        self.ws
            .send(Message::text(text))
            .map_err(|e| format!("{}: send {text:?}: {e}", self.name))
    }

    /// Closes the connection properly: close frame, then wait for the server's.
    fn close(mut self) -> Outcome {
        self.ws
            .close(None)
            .map_err(|e| format!("{}: close: {e}", self.name))?;
        self.read_until_closed()
    }

    /// A graceful shutdown says goodbye with 1001 (going away) to clients still connected.
    fn expect_goodbye(mut self) -> Outcome {
        match self.ws.read() {
            Ok(Message::Close(Some(CloseFrame {
                code: CloseCode::Away,
                ..
            }))) => self.read_until_closed(),
            other => Err(format!(
                "{}: at shutdown, expected close 1001, got {other:?}",
                self.name
            )),
        }
    }

    /// Reads (which also sends tungstenite's reply to a close) until the close handshake is done.
    fn read_until_closed(&mut self) -> Outcome {
        loop {
            match self.ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(format!("{}: while closing: {e}", self.name)),
            }
        }
    }

    fn expect(&mut self, want: &str) -> Outcome {
        match self.ws.read() {
            Ok(Message::Text(got)) if got.as_str() == want => Ok(()),
            other => Err(format!("{}: expected {want:?}, got {other:?}", self.name)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// debug: crash on purpose

/// The ways `websocket test debug` can crash.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Read through a null pointer (plus a field offset).
    Segv,
    /// Read a mapped file past its end after it was truncated.
    Bus,
    /// Execute an undefined instruction.
    Ill,
    /// Integer division by zero in machine code (Rust's own `/` would panic instead).
    Fpe,
    /// `std::process::abort()`.
    Abort,
    /// Unbounded recursion.
    Overflow,
}

/// What `websocket test debug VARIANT` does.
#[derive(Clone, Copy, Debug)]
enum Variant {
    /// Crash the demo thread with a fault.
    Demo(Fault),
    /// Make the logic thread of a real server panic.
    LogicPanic,
}

impl Variant {
    fn named(name: &str) -> Option<Variant> {
        Some(Variant::Demo(match name {
            "segv" => Fault::Segv,
            "bus" => Fault::Bus,
            "ill" => Fault::Ill,
            "fpe" => Fault::Fpe,
            "abort" => Fault::Abort,
            "overflow" => Fault::Overflow,
            "panic" => return Some(Variant::LogicPanic),
            _ => return None,
        }))
    }
}

/// Crashes as `variant` says; returns (exit code 1) only if the process unexpectedly survived.
fn debug(variant: Variant) -> i32 {
    let survived = match variant {
        Variant::Demo(fault) => crash_demo_thread(fault),
        Variant::LogicPanic => panic_logic_thread(),
    };
    eprintln!("error: the deliberate {variant:?} did not end the process: {survived}");
    1
}

/// Runs the three named demo functions on a thread called 'crash-demo' until they crash.
fn crash_demo_thread(fault: Fault) -> String {
    eprintln!(
        "websocket test debug: crashing on purpose ({}) in thread 'crash-demo'",
        format!("{fault:?}").to_lowercase()
    );
    // A user record that is not there: a dangling pointer, the classic bug.
    let user = match fault {
        Fault::Bus => match truncated_mapping() {
            Ok(page) => page,
            Err(e) => return format!("cannot set up the bus error: {e}"),
        },
        _ => std::ptr::null(),
    };
    let user = user as usize; // raw pointers are not Send
    let demo = std::thread::Builder::new()
        .name("crash-demo".into())
        .spawn(move || {
            crash::thread_started();
            handle_request(fault, user as *const User)
        });
    match demo {
        Ok(thread) => format!("the thread returned {:?}", thread.join()),
        Err(e) => format!("cannot start the crash-demo thread: {e}"),
    }
}

/// What `lookup_user` believes it points at.
#[repr(C)]
struct User {
    id: u64,
    name_len: u64,
}

/// The first of three named frames the crash report must show.
#[inline(never)]
fn handle_request(fault: Fault, user: *const User) -> u64 {
    black_box(lookup_user(black_box(fault), black_box(user))) + 1
}

#[inline(never)]
fn lookup_user(fault: Fault, user: *const User) -> u64 {
    black_box(read_user_record(black_box(fault), black_box(user), 0)) + 1
}

/// Where it goes wrong: the innermost named frame of every `debug` variant.
#[inline(never)]
fn read_user_record(fault: Fault, user: *const User, depth: u64) -> u64 {
    match fault {
        Fault::Segv | Fault::Bus => {
            // `wrapping_byte_add`: computing the field address is fine even for a dangling
            // pointer; the volatile read is the genuine invalid access, which no compiler removes.
            let name_len = user.wrapping_byte_add(std::mem::offset_of!(User, name_len));
            // SAFETY: none: reading through a dangling pointer is the bug being demonstrated.
            unsafe { std::ptr::read_volatile(name_len.cast::<u64>()) }
        }
        Fault::Fpe => divide(black_box(depth + 7), black_box(depth)),
        Fault::Ill => illegal_instruction(),
        Fault::Abort => std::process::abort(),
        Fault::Overflow => {
            // A big frame, kept alive across the call so the recursion cannot become a loop.
            let scratch = black_box([depth; 64]);
            black_box(read_user_record(fault, user, scratch[1] + 1)) + scratch[7]
        }
    }
}

/// `a / b` with the CPU's divide instruction, which traps on zero.
#[cfg(target_arch = "x86_64")]
fn divide(a: u64, b: u64) -> u64 {
    let quotient: u64;
    // SAFETY: `div` only reads and writes the named registers; it traps (SIGFPE) if `b` is 0.
    unsafe {
        std::arch::asm!("div {b}", b = in(reg) b, inout("rax") a => quotient,
            inout("rdx") 0u64 => _, options(nomem, nostack));
    }
    quotient
}

/// On CPUs whose division does not trap (e.g. ARM returns 0), raise the signal it would send.
#[cfg(not(target_arch = "x86_64"))]
fn divide(a: u64, b: u64) -> u64 {
    if b == 0 {
        // SAFETY: `raise` has no preconditions.
        unsafe { libc::raise(libc::SIGFPE) };
    }
    a.checked_div(b).unwrap_or(0)
}

#[cfg(target_arch = "x86_64")]
fn illegal_instruction() -> u64 {
    // SAFETY: `ud2` raises SIGILL and touches nothing.
    unsafe { std::arch::asm!("ud2", options(nomem, nostack)) };
    0
}

#[cfg(target_arch = "aarch64")]
fn illegal_instruction() -> u64 {
    // SAFETY: `udf` raises SIGILL and touches nothing.
    unsafe { std::arch::asm!("udf #0", options(nomem, nostack)) };
    0
}

/// On other CPUs, raise the signal an undefined instruction would send.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn illegal_instruction() -> u64 {
    // SAFETY: `raise` has no preconditions.
    unsafe { libc::raise(libc::SIGILL) };
    0
}

/// Maps a page of a temporary file, then truncates the file: reading the page raises SIGBUS.
fn truncated_mapping() -> Result<*const User, String> {
    let path = std::env::temp_dir().join(format!("websocket-debug-bus-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    let len = 4096;
    file.set_len(len as u64).map_err(|e| e.to_string())?;
    // SAFETY: a fresh shared read-only mapping of our own file; only ever read volatile.
    let page = unsafe {
        use std::os::fd::AsRawFd;
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    file.set_len(0).map_err(|e| e.to_string())?;
    Ok(page.cast())
}

/// Starts a real server and makes its logic thread panic: the process must die with a report
/// naming thread 'logic', never keep serving without it.
fn panic_logic_thread() -> String {
    let mut config = Config::new(0, "pw");
    config.data = None; // a self-test leaves no data file behind
    config.bind = Ipv4Addr::LOCALHOST.into();
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(e) => return format!("cannot start the server: {e}"),
    };
    eprintln!(
        "websocket test debug: server on {}; making its logic thread panic",
        server.local_addr()
    );
    server.inject_logic_panic();
    std::thread::sleep(Duration::from_secs(10));
    "the server still runs 10 s after its logic thread panicked".into()
}
