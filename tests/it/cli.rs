//! Starting the server: where the password comes from, what an empty one does, the listening
//! line, stray arguments, the reasons given for refused requests, and the trusted proxy.

use std::path::PathBuf;

use crate::common::{Finished, TIMEOUT, TempDir, TestServer, UPGRADE, raw_exchange, run_websocket};

/// Asserts the command failed with exit code 2 and exactly one line on stderr containing
/// `needle`; returns that line.
fn assert_refused(run: &Finished, needle: &str) -> String {
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{}", run.stderr);
    assert!(
        lines[0].contains(needle),
        "{needle:?} missing: {}",
        lines[0]
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    lines[0].to_string()
}

/// A file holding `contents`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("websocket-it-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `adduser` with `password` as the server password: true if the server accepted it.
fn admin_accepts(server: &TestServer, password: &str) -> bool {
    let (mut c, _) = server.chat_client();
    c.send(&format!(
        "adduser(1,7,5,alice6,secret{},{password})",
        password.len()
    ));
    match c.recv().as_str() {
        "success(1,)" => true,
        "error(26,Incorrect server password.1,)" => false,
        other => panic!("unexpected reply {other}"),
    }
}

#[test]
fn empty_password_is_refused_from_every_source() {
    let empty_file = TempFile::new("empty-password", "\n");
    let runs = [
        run_websocket(&["0", "", "--bind", "127.0.0.1"], &[], b""),
        run_websocket(
            &[
                "0",
                "--password-file",
                empty_file.path(),
                "--bind",
                "127.0.0.1",
            ],
            &[],
            b"",
        ),
        run_websocket(
            &["0", "--bind", "127.0.0.1"],
            &[("WEBSOCKET_PASSWORD", "")],
            b"",
        ),
    ];
    for run in &runs {
        assert_refused(run, "server password");
        assert!(run.stderr.contains("is empty"), "{}", run.stderr);
    }
    // None at all is a command-line error: one line, then the usage.
    let none = run_websocket(&["0", "--bind", "127.0.0.1"], &[], b"");
    assert_eq!(none.status.code(), Some(2), "{}", none.stderr);
    let first = none.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("no server password") && first.contains("WEBSOCKET_PASSWORD"),
        "{}",
        none.stderr
    );
    assert!(none.stderr.contains("Usage: websocket"), "{}", none.stderr);
    let missing = run_websocket(&["0", "--password-file", "/nonexistent/pw"], &[], b"");
    assert_refused(&missing, "cannot read the password file /nonexistent/pw");
}

#[test]
fn password_from_file_or_environment_enables_admin_commands() {
    let file = TempFile::new("password", "from-file\n");
    let server = TestServer::launch(
        &["0", "--password-file", file.path(), "--bind", "127.0.0.1"],
        &[],
    );
    assert!(!admin_accepts(&server, ""));
    assert!(admin_accepts(&server, "from-file"));
    server.wait_for_log(&format!("server password from {}", file.path()));

    let server = TestServer::launch(
        &["0", "--bind", "127.0.0.1"],
        &[("WEBSOCKET_PASSWORD", "from-env")],
    );
    assert!(!admin_accepts(&server, "from-file"));
    assert!(admin_accepts(&server, "from-env"));
    server.wait_for_log("server password from WEBSOCKET_PASSWORD");

    // The command line wins over the environment.
    let server = TestServer::launch(
        &["0", "from-args", "--bind", "127.0.0.1"],
        &[("WEBSOCKET_PASSWORD", "from-env")],
    );
    assert!(!admin_accepts(&server, "from-env"));
    assert!(admin_accepts(&server, "from-args"));

    // Both on the command line is ambiguous: refused.
    let both = run_websocket(&["0", "pw", "--password-file", file.path()], &[], b"");
    assert_eq!(both.status.code(), Some(2), "{}", both.stderr);
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
}

#[test]
fn listening_line_names_an_address_a_person_can_open() {
    let server = TestServer::launch(&["0", "pw", "--bind", "0.0.0.0"], &[]);
    assert_eq!(
        server.listening,
        format!("listening on http://localhost:{}/", server.port)
    );
    let page = raw_exchange(
        &format!("127.0.0.1:{}", server.port),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(page.starts_with(b"HTTP/1.1 200 OK\r\n"));
    // A specific address is printed as it is (see also common::TestServer::start_with).
    let server = TestServer::start();
    assert_eq!(
        server.listening,
        format!("listening on http://127.0.0.1:{}/", server.port)
    );
}

#[test]
fn stray_argument_reads_naturally() {
    let run = run_websocket(&["8000", "secret", "extra"], &[], b"");
    let line = assert_refused(&run, "unexpected argument 'extra'");
    assert!(!line.contains("subcommand"), "{line}");
}

/// Status code and body of the server's answer to `request`.
fn status_and_body(server: &TestServer, request: &str) -> (u16, String) {
    let response = String::from_utf8(raw_exchange(&server.addr(), request.as_bytes())).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    (head[9..12].parse().unwrap(), body.to_string())
}

#[test]
fn refusals_carry_a_one_line_reason_and_a_debug_log_line() {
    let server = TestServer::start();
    let upgrade = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{UPGRADE}\r\n");
    let long = "n".repeat(129);
    let cases = [
        (upgrade("/ws/chat/lobby/"), 400, "missing nickname"),
        (
            upgrade(&format!("/ws/chat/lobby/?nickname={long}")),
            400,
            "the nickname is 129 bytes long; at most 128 are allowed",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n{UPGRADE}\r\n"),
            403,
            "pages from origin 'http://evil.example' may not open WebSockets here",
        ),
        (
            "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            404,
            "no page at '/nope'",
        ),
    ];
    for (request, status, reason) in cases {
        let (got, body) = status_and_body(&server, &request);
        assert_eq!(got, status, "{body}");
        assert!(
            body.starts_with(reason),
            "{reason:?} expected, body {body:?}"
        );
        assert_eq!(body.lines().count(), 1, "{body:?}");
        server.wait_for_log(&format!("HTTP {status}: {reason}"));
    }
}

#[test]
fn trusted_proxy_supplies_the_client_address_others_cannot() {
    let request = "GET /via-proxy HTTP/1.1\r\nHost: x\r\n\
                   X-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n\r\n";
    let proxied = TestServer::start_with(&["--trusted-proxy", "127.0.0.1"]);
    assert_eq!(status_and_body(&proxied, request).0, 404);
    proxied.wait_for_log("203.0.113.7:0: HTTP 404: no page at '/via-proxy'");

    let direct = TestServer::start_with(&["--trusted-proxy", "192.0.2.1"]);
    assert_eq!(status_and_body(&direct, request).0, 404);
    let log = direct.wait_for_log("HTTP 404: no page at '/via-proxy'");
    assert!(!log.contains("203.0.113.7"), "{log}");
    assert!(log.contains("127.0.0.1:"), "{log}");
}

#[test]
fn a_config_file_holds_every_flag_and_the_command_line_overrides_it() {
    let dir = TempDir::new("config");
    let path = dir.0.join("websocket.toml");
    std::fs::write(
        &path,
        "port = 0\npassword = \"filepw\"\nbind = \"127.0.0.1\"\ndata = \":memory:\"\n\
         api-key = \"from-file\"\nmax_body_size = 10\nargon2-memory-kib = 8\n\
         argon2-iterations = 1\nlimit-loopback = false\n\
         [[webhook]]\nurl = \"http://127.0.0.1:9/hook\"\nauth = \"bearer:x\"\nevents = [\"login\"]\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let server = TestServer::launch(&["--config", path, "--max-body-size", "100"], &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into();
    let url = format!("http://{}/api/v1/send", server.addr());
    let post = |key: &str, body: &str| {
        agent
            .post(&url)
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap()
            .status()
            .as_u16()
    };
    // The key from the file; a 40-byte body over the file's 10 but under the flag's 100.
    let body = r#"{"to_users":[1],"text":"hello there"}"#;
    assert_eq!(post("from-file", body), 200);
    assert_eq!(post("filepw", body), 401);
    // The server password from the file gates admin commands.
    let (mut c, _) = server.chat_client();
    c.send("adduser(1,42,5,alice6,secret6,filepw)");
    assert_eq!(c.recv(), "success(1,)");

    // A file that is not TOML, or names no flag: one line, exit 2.
    std::fs::write(path, "port = \n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_websocket"))
        .args(["--config", path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config file"));
}
