//! The transport foundation against the real binary: HTTP, handshake, ids, control frames,
//! graceful shutdown, and start-up errors.

use std::collections::HashSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{TestServer, raw_exchange};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

fn http(server: &TestServer, request: &str) -> String {
    String::from_utf8_lossy(&raw_exchange(&server.addr(), request.as_bytes())).into_owned()
}

#[test]
fn serves_the_page_and_http_errors() {
    let server = TestServer::start();
    let page = http(&server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("content-type: text/html; charset=utf-8\r\n"));
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"));
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), len);
    for path in ["/index.html", "/example.html"] {
        assert!(
            http(&server, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
                .starts_with("HTTP/1.1 200")
        );
    }

    let head_only = http(&server, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(
        head_only.ends_with("\r\n\r\n"),
        "HEAD must have no body: {head_only:?}"
    );

    assert!(http(&server, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(
        http(
            &server,
            "POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 3\r\n\r\nabc"
        )
        .starts_with("HTTP/1.1 405 ")
    );
    assert!(http(&server, "\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(http(&server, &huge).starts_with("HTTP/1.1 431 "));

    // Still serving after all of that.
    let (mut c, _) = server.chat_client();
    c.send("nop()");
    c.expect_silence(Duration::from_millis(200));
}

#[test]
fn greets_with_distinct_client_ids() {
    let server = TestServer::start();
    let (_first, id) = server.chat_client();
    assert_eq!(id, 1);

    // Concurrent handshakes from 200 threads, each through the harness's own greeting check.
    let ids: HashSet<u64> = thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|_| scope.spawn(|| server.chat_client().1))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids.len(), 200, "every concurrent client gets its own id");
    assert!(!ids.contains(&1));
}

#[test]
fn nop_ping_and_close() {
    let server = TestServer::start();
    let (mut c, _) = server.chat_client();
    c.send("nop()");
    c.expect_silence(Duration::from_millis(300));

    c.ws.send(Message::Ping("are you there".into())).unwrap();
    let pong = match c.ws.read().unwrap() {
        Message::Pong(p) => p,
        other => panic!("expected pong, got {other:?}"),
    };
    assert_eq!(&pong[..], b"are you there");

    c.ws.close(None).unwrap();
    loop {
        match c.ws.read() {
            Ok(Message::Close(_)) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close handshake failed: {e}"),
        }
    }
}

#[test]
fn selects_the_subprotocol_when_offered() {
    let server = TestServer::start();
    let offered = server.client_at("/", Some("chatroom-protocol"));
    assert_eq!(offered.protocol.as_deref(), Some("chatroom-protocol"));
    let plain = server.client_at("/", None);
    assert_eq!(plain.protocol, None);
    let mut other = server.client_at("/some/path", Some("other, chatroom-protocol"));
    assert_eq!(other.protocol.as_deref(), Some("chatroom-protocol"));
    assert_eq!(other.client_id(), 3);
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_zero() {
    let mut server = TestServer::start();
    let mut clients: Vec<_> = (0..100).map(|_| server.chat_client().0).collect();
    let start = Instant::now();
    let status = server
        .terminate(Duration::from_secs(5))
        .expect("server did not exit");
    let took = start.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    for c in &mut clients {
        let frame = c.expect_close().expect("close frame with a code");
        assert_eq!(frame.code, CloseCode::Away);
    }
}

#[test]
fn port_in_use_exits_1_naming_the_port() {
    let server = TestServer::start();
    let out = Command::new(env!("CARGO_BIN_EXE_websocket"))
        .args([&server.port.to_string(), "pw", "--bind", "127.0.0.1"])
        .args(["--data", ":memory:"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&server.port.to_string()), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for args in [
        &[][..],
        &["8000"][..],
        &["notaport", "pw"][..],
        &["8000", "pw", "--nope"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_websocket"))
            .args(args)
            .env_remove("WEBSOCKET_PASSWORD")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn listens_on_ipv6() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_websocket"))
        .args(["0", "pw", "--bind", "::1", "--data", ":memory:"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on http://[::1]:")
        .and_then(|p| p.strip_suffix('/'))
        .unwrap_or_else(|| panic!("{line:?}"));
    let reply = raw_exchange(
        &format!("[::1]:{port}"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn foreign_origins_get_403_unless_allowed() {
    let upgrade = |server: &TestServer, origin: &str| {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\n{}Origin: {origin}\r\n\r\n",
            server.addr(),
            crate::common::UPGRADE
        );
        let reply = raw_exchange_head(&server.addr(), req.as_bytes());
        reply.split(' ').nth(1).unwrap_or_default().to_string()
    };
    let server = TestServer::start();
    let own = format!("http://{}", server.addr());
    assert_eq!(upgrade(&server, &own), "101");
    assert_eq!(upgrade(&server, "http://evil.example"), "403");

    let open = TestServer::start_with(&["--allow-origin", "http://evil.example"]);
    assert_eq!(upgrade(&open, "http://evil.example"), "101");
    assert_eq!(upgrade(&open, "http://other.example"), "403");
}

/// The first line of the server's answer to `request` (without waiting for the connection to
/// close, which an upgraded one does not).
fn raw_exchange_head(addr: &str, request: &[u8]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(crate::common::TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}
