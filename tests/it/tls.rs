//! TLS against the real binary (`--tls-cert`/`--tls-key`) with a certificate made in the test
//! (rcgen) and a rustls client: the page over https, every dialect over wss, and the peers
//! that must not hold the loop: stalled, garbage, plain HTTP, gone mid-handshake. And the
//! certificate rotation on `SIGHUP`.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

use crate::common::{Client, Socket, TIMEOUT, TestServer, heavy, raw_exchange, ws_handshake};

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Socket for TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// A command with a fixed reply in the command protocol.
const PROBE: &str = "getchatroomdetails(424242,424242)";
const PROBE_REPLY: &str = "error(27,That chatroom wasn't found.424242,)";

/// Every dialect: path, subprotocol offered, the first message's start (empty: none), a
/// message, and the reply it gets (empty: a JSON login reply). A new dialect is one more line.
const DIALECTS: &[(&str, Option<&str>, &str, &str, &str)] = &[
    (
        "/",
        Some("chatroom-protocol"),
        "yourchatclientid(",
        PROBE,
        PROBE_REPLY,
    ),
    (
        "/ws/chat/lobby/?nickname=ann",
        None,
        "ann joined lobby",
        "hello",
        "ann: hello",
    ),
    (
        "/json",
        Some("gtchat-json"),
        "",
        r#"{"cmd":"login","type":"tmp","usr":"ann","id":1}"#,
        "",
    ),
];

/// A self-signed certificate for `localhost` and its key as PEM files, in a directory of
/// their own (removed on drop).
struct CertFiles {
    dir: PathBuf,
    /// The certificate now in the files.
    cert: CertificateDer<'static>,
}

impl CertFiles {
    fn new(test: &str) -> CertFiles {
        let dir = std::env::temp_dir().join(format!("websocket-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut files = CertFiles {
            dir,
            cert: CertificateDer::from(Vec::new()),
        };
        files.rotate();
        files
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Replaces both files with a new certificate and key, each written aside and renamed
    /// into place, as ACME clients do.
    fn rotate(&mut self) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        write_atomically(&self.key_path(), &made.signing_key.serialize_pem());
        write_atomically(&self.cert_path(), &made.cert.pem());
        self.cert = made.cert.der().clone();
    }

    /// A server using these files, with `extra` flags.
    fn server(&self, extra: &[&str]) -> TestServer {
        let (cert, key) = (self.cert_path(), self.key_path());
        let mut args = vec![
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        TestServer::start_with(&args)
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn write_atomically(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    fs::write(&aside, contents).unwrap();
    fs::rename(&aside, path).unwrap();
}

/// A client config that trusts only `cert`, offering ALPN `http/1.1`.
fn trusting(cert: &CertificateDer<'static>) -> Arc<ClientConfig> {
    trusting_with(cert, rustls::DEFAULT_VERSIONS)
}

fn trusting_with(
    cert: &CertificateDer<'static>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS stream to the server (the handshake happens on first use or in [`handshake`]).
fn tls_connect(server: &TestServer, config: Arc<ClientConfig>) -> TlsStream {
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(
        ClientConnection::new(config, name).unwrap(),
        server.connect(),
    )
}

/// Completes the TLS handshake; fails if the server's certificate is not the trusted one.
fn handshake(s: &mut TlsStream) -> std::io::Result<()> {
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(())
}

fn wss_client(
    server: &TestServer,
    config: Arc<ClientConfig>,
    path: &str,
    subprotocol: Option<&str>,
) -> Client<TlsStream> {
    let url = format!("wss://localhost:{}{path}", server.port);
    ws_handshake(tls_connect(server, config), &url, subprotocol)
}

/// A greeted command-protocol client over wss.
fn wss_chat_client(server: &TestServer, config: Arc<ClientConfig>) -> Client<TlsStream> {
    let mut c = wss_client(server, config, "/", Some("chatroom-protocol"));
    c.client_id();
    c
}

/// Reads until the server closes the connection (EOF or reset) and returns what it sent;
/// fails if it is still open after [`TIMEOUT`].
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

/// The first bytes a real client sends: its ClientHello record.
fn client_hello(config: Arc<ClientConfig>) -> Vec<u8> {
    let mut conn =
        ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Waits (at most [`TIMEOUT`]) until `what` occurs `times` times in the server's log.
fn wait_for_log(server: &TestServer, what: &str, times: usize) {
    let start = Instant::now();
    while server.log().matches(what).count() < times {
        assert!(start.elapsed() < TIMEOUT, "{what:?} never logged");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Open file descriptors of the server process.
fn open_fds(server: &TestServer) -> usize {
    fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count()
}

/// Waits (at most [`TIMEOUT`]) until the server has exactly `want` descriptors open.
fn wait_for_fds(server: &TestServer, want: usize) {
    let start = Instant::now();
    while open_fds(server) != want {
        assert!(
            start.elapsed() < TIMEOUT,
            "{} descriptors open, expected {want}",
            open_fds(server)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serves_the_page_over_https_with_tls_1_2_and_1_3() {
    let files = CertFiles::new("page");
    let server = files.server(&[]);
    for (version, want) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let mut s = tls_connect(&server, trusting_with(&files.cert, &[version]));
        handshake(&mut s).expect("TLS handshake");
        assert_eq!(s.conn.protocol_version(), Some(want));
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        // Ends cleanly: the server sends close_notify (rustls reports a bare EOF as an error).
        let mut page = Vec::new();
        s.read_to_end(&mut page).expect("response and close_notify");
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("wss://"), "the page picks wss:// over https");
    }
}

#[test]
fn every_dialect_works_over_wss() {
    let files = CertFiles::new("dialects");
    let server = files.server(&[]);
    for &(path, subprotocol, greeting, say, reply) in DIALECTS {
        let mut c = wss_client(&server, trusting(&files.cert), path, subprotocol);
        assert_eq!(c.protocol.as_deref(), subprotocol, "{path}");
        // The JSON dialect sends no greeting and a login reply with a random session id.
        if !greeting.is_empty() {
            let first = c.recv();
            assert!(first.starts_with(greeting), "{path}: {first:?}");
        }
        c.send(say);
        let got = c.recv();
        if reply.is_empty() {
            assert!(
                got.starts_with(r#"{"cmd":"login","id":1,"ok":true,"#),
                "{got}"
            );
        } else {
            assert_eq!(got, reply, "{path}");
        }
        // The close handshake ends with the server's close_notify: a bare TCP EOF would be an
        // error here.
        c.ws.close(None).unwrap();
        loop {
            match c.ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("{path}: close over TLS: {e}"),
            }
        }
    }
}

#[test]
fn a_backlog_larger_than_the_tls_buffer_arrives_whole_and_in_order() {
    // Over a megabyte encrypted by a debug build: not alongside the load tests.
    let _serial = heavy();
    let files = CertFiles::new("backlog");
    let server = files.server(&["--rate-limit", "0"]);
    let room = "/ws/chat/big/?nickname=";
    let mut bob = wss_client(&server, trusting(&files.cert), &format!("{room}bob"), None);
    assert_eq!(bob.recv(), "bob joined big");
    let mut carol = wss_client(
        &server,
        trusting(&files.cert),
        &format!("{room}carol"),
        None,
    );
    assert_eq!(carol.recv(), "carol joined big");
    assert_eq!(bob.recv(), "carol joined big");
    // 300 × 2 KB: far past rustls's 64 KiB buffer, within the 1 MiB outbound cap; carol reads
    // only once everything is sent, so it piles up in the server.
    let pad = "x".repeat(2000);
    let sent: Vec<String> = (0..300).map(|i| format!("{i:03} {pad}")).collect();
    for m in &sent {
        bob.send(m);
    }
    for (who, c) in [("carol", &mut carol), ("bob", &mut bob)] {
        for m in &sent {
            assert_eq!(c.recv(), format!("bob: {m}"), "{who}");
        }
    }
}

#[test]
fn plain_http_to_the_tls_port_gets_400_with_a_hint() {
    let files = CertFiles::new("plain");
    let server = files.server(&[]);
    let reply = raw_exchange(&server.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(reply.ends_with("this port speaks TLS; use https:// or wss://\r\n"));
    // Still serving TLS.
    let mut c = wss_chat_client(&server, trusting(&files.cert));
    c.send(PROBE);
    assert_eq!(c.recv(), PROBE_REPLY);
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed() {
    let files = CertFiles::new("garbage");
    let server = files.server(&[]);
    // A handshake record header followed by nonsense: rustls rejects it with an alert.
    let mut s = server.connect();
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    garbage.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    s.write_all(&garbage).unwrap();
    let reply = read_until_closed(&mut s);
    assert!(
        reply.is_empty() || reply[0] == 0x15,
        "expected nothing or a TLS alert record, got {reply:02x?}"
    );
    let mut c = wss_chat_client(&server, trusting(&files.cert));
    c.send(PROBE);
    assert_eq!(c.recv(), PROBE_REPLY);
}

#[test]
fn a_stalled_handshake_times_out_without_blocking_others() {
    let files = CertFiles::new("stall");
    let server = files.server(&["--handshake-timeout", "1"]);
    let start = Instant::now();
    let mut silent = server.connect();
    let mut half = server.connect();
    let hello = client_hello(trusting(&files.cert));
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    // Both stall; others are served meanwhile.
    let mut c = wss_chat_client(&server, trusting(&files.cert));
    c.send(PROBE);
    assert_eq!(c.recv(), PROBE_REPLY);
    assert!(read_until_closed(&mut silent).is_empty());
    assert!(read_until_closed(&mut half).is_empty());
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "closed before the handshake timeout: {:?}",
        start.elapsed()
    );
}

#[test]
fn clients_leaving_mid_handshake_are_forgotten() {
    let files = CertFiles::new("leave");
    // A long handshake timeout: what frees these connections is noticing that they left.
    let server = files.server(&["--handshake-timeout", "60"]);
    let baseline = open_fds(&server);
    let hello = client_hello(trusting(&files.cert));
    let mut peers = Vec::new();
    for _ in 0..10 {
        // Gone in the middle of the TLS handshake...
        let mut s = server.connect();
        s.write_all(&hello[..hello.len() / 2]).unwrap();
        peers.push(s);
        // ... and after it, before sending an HTTP request.
        let mut t = tls_connect(&server, trusting(&files.cert));
        handshake(&mut t).expect("TLS handshake");
        peers.push(t.sock);
    }
    wait_for_fds(&server, baseline + peers.len());
    drop(peers);
    wait_for_fds(&server, baseline);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let mut files = CertFiles::new("reload");
    let server = files.server(&[]);
    let old_cert = files.cert.clone();
    let mut old = wss_chat_client(&server, trusting(&old_cert));

    files.rotate();
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    wait_for_log(&server, "reloaded TLS certificate", 1);
    let mut new = wss_chat_client(&server, trusting(&files.cert));
    let mut stale = tls_connect(&server, trusting(&old_cert));
    assert!(
        handshake(&mut stale).is_err(),
        "new connections get the new certificate"
    );
    for c in [&mut old, &mut new] {
        c.send(PROBE);
        assert_eq!(c.recv(), PROBE_REPLY);
    }

    // A broken file (as if caught mid-write) keeps the certificate in force.
    fs::write(files.cert_path(), "not a certificate").unwrap();
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    wait_for_log(&server, "TLS reload failed, keeping the old certificate", 1);
    let mut after = wss_chat_client(&server, trusting(&files.cert));
    for c in [&mut old, &mut new, &mut after] {
        c.send(PROBE);
        assert_eq!(c.recv(), PROBE_REPLY);
    }
}

#[test]
fn bad_certificate_files_exit_1_naming_the_file() {
    let files = CertFiles::new("bad");
    fs::write(files.key_path(), "not a key").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_websocket"))
        .args([
            "0",
            "pw",
            "--bind",
            "127.0.0.1",
            "--data",
            ":memory:",
            "--tls-cert",
        ])
        .arg(files.cert_path())
        .arg("--tls-key")
        .arg(files.key_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("key.pem"), "{stderr}");
}
