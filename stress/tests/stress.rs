//! End-to-end checks of the stress client against the real server binary: short bounded runs
//! in which every copy of every message must arrive, and the loopback-only guard.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;

const PASSWORD: &str = "stress-test-pw";

/// The server binary of this workspace. `cargo test --workspace` builds it next to the stress
/// binary; `cargo test -p stress` alone does not, and a nested cargo cannot use the same target
/// directory while the outer one holds its lock, so it is then built into a directory of its own.
fn server_binary() -> PathBuf {
    static BUILD: Once = Once::new();
    let stress = PathBuf::from(env!("CARGO_BIN_EXE_stress"));
    let sibling = stress.with_file_name("websocket");
    if sibling.exists() {
        return sibling;
    }
    let own_dir = stress
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory")
        .join("stress-test-server");
    BUILD.call_once(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "websocket",
                "--bin",
                "websocket",
                "--manifest-path",
                root,
            ])
            .arg("--target-dir")
            .arg(&own_dir)
            .status()
            .expect("run cargo build for the server");
        assert!(status.success(), "building the server failed");
    });
    own_dir.join("debug").join("websocket")
}

/// A server on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(server_binary())
            .args(["0", PASSWORD, "--bind", "127.0.0.1", "--rate-limit", "0"])
            .args(["--data", ":memory:"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let port = line
            .trim()
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"));
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the stress client with `args` and returns its JSON report.
fn stress(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_stress"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run stress");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stress failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

fn n(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {path} in {v}"))
}

/// Every connection joined, every copy arrived in order, nothing went wrong.
fn assert_clean(r: &Value, connections: u64, members_per_room: u64) {
    assert_eq!(n(r, "/connect/established"), connections, "{r}");
    assert_eq!(n(r, "/connect/failed"), 0, "{r}");
    let sent = n(r, "/run/sent");
    assert!(sent > 0, "nothing sent: {r}");
    assert_eq!(n(r, "/run/expected"), sent * members_per_room, "{r}");
    assert_eq!(n(r, "/run/delivered"), sent * members_per_room, "{r}");
    assert_eq!(n(r, "/run/lost"), 0, "{r}");
    for field in ["errors", "sequence_errors", "unexpected_closes"] {
        assert_eq!(n(r, &format!("/run/{field}")), 0, "{field}: {r}");
    }
    assert_eq!(n(r, "/errors"), 0, "{r}");
    assert_eq!(n(r, "/unexpected_closes"), 0, "{r}");
    assert!(r["run"]["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn protocol_mode_delivers_every_copy_as_fast_as_possible() {
    let server = Server::start();
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let pid = server.child.id().to_string();
    let r = stress(&[
        "--url",
        &url,
        "--password",
        PASSWORD,
        "-n",
        "50",
        "-r",
        "2",
        "-d",
        "2",
        "--warmup",
        "0.5",
        "--server-pid",
        &pid,
    ]);
    assert_clean(&r, 50, 25);
    assert!(n(&r, "/server/rss_connected_kib") > 0, "{r}");
}

#[test]
fn protocol_mode_with_login_at_a_fixed_rate() {
    let server = Server::start();
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let r = stress(&[
        "--url",
        &url,
        "--password",
        PASSWORD,
        "--login",
        "-n",
        "50",
        "-r",
        "5",
        "-s",
        "10",
        "--rate",
        "500",
        "-d",
        "2",
        "--warmup",
        "0.5",
    ]);
    assert_clean(&r, 50, 10);
    let sent = n(&r, "/run/sent");
    assert!((900..=1100).contains(&sent), "500/s for 2 s sent {sent}");
}

#[test]
fn raw_mode_through_the_room_url_endpoint() {
    let server = Server::start();
    let template = format!(
        "ws://127.0.0.1:{}/ws/chat/{{room}}/?nickname=u{{i}}",
        server.port
    );
    // With read batching on, as bench.sh runs its ramps: it must not lose or reorder anything.
    let r = stress(&[
        "--url-template",
        &template,
        "--read-batch-us",
        "200",
        "-n",
        "50",
        "-r",
        "2",
        "-d",
        "2",
        "--warmup",
        "0.5",
    ]);
    assert_clean(&r, 50, 25);
}

/// Connections spread round-robin over several URLs (for the nodes of a cluster): repeated
/// `--url-template`, or comma-separated.
#[test]
fn connections_spread_round_robin_over_several_urls() {
    let (a, b) = (Server::start(), Server::start());
    let template = |s: &Server| {
        format!(
            "ws://127.0.0.1:{}/ws/chat/{{room}}/?nickname=u{{i}}",
            s.port
        )
    };
    // Two rooms over two servers: connection i is in room i % 2 on server i % 2, so each room
    // lives whole on one server and every copy arrives.
    let (ta, tb) = (template(&a), template(&b));
    let r = stress(&[
        "--url-template",
        &ta,
        "--url-template",
        &tb,
        "-n",
        "20",
        "-r",
        "2",
        "-d",
        "1",
        "--warmup",
        "0.5",
    ]);
    assert_clean(&r, 20, 10);
    // One room over two servers that know nothing of each other: each member sees only the
    // members on its own server, so exactly half of the copies arrive. That can only be if the
    // connections were split evenly between the two URLs.
    let both = format!("{ta},{tb}");
    let r = stress(&[
        "--url-template",
        &both,
        "-n",
        "20",
        "-r",
        "1",
        "-d",
        "1",
        "--warmup",
        "0.5",
        "--drain",
        "0.5",
    ]);
    assert_eq!(n(&r, "/connect/established"), 20, "{r}");
    let sent = n(&r, "/run/sent");
    assert!(sent > 0, "nothing sent: {r}");
    assert_eq!(n(&r, "/run/expected"), sent * 20, "{r}");
    assert_eq!(n(&r, "/run/delivered"), sent * 10, "{r}");
}

#[test]
fn wrong_password_is_reported_not_hung() {
    let server = Server::start();
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let out = Command::new(env!("CARGO_BIN_EXE_stress"))
        .args(["--url", &url, "--password", "wrong", "-n", "5", "-d", "1"])
        .output()
        .expect("run stress");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("password"), "{err}");
}

#[test]
fn refuses_targets_that_are_not_loopback() {
    for args in [
        &["--url", "ws://10.1.2.3:80/", "--password", "x"][..],
        &["--url", "ws://example.com:80/", "--password", "x"][..],
        &[
            "--url-template",
            "ws://192.168.0.1:80/ws/chat/{room}/?nickname=u{i}",
        ][..],
        &[
            "--url-template",
            "ws://[2001:db8::1]:80/ws/chat/{room}/?nickname=u{i}",
        ][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_stress"))
            .args(args)
            .args(["-n", "1", "-d", "1"])
            .output()
            .expect("run stress");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing target"), "{args:?}: {err}");
    }
}
