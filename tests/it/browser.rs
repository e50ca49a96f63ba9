//! End-to-end test of the browser chat page in headless Chromium.
//!
//! Starts the real server binary on 127.0.0.1 (`common::TestServer`), then runs the Node driver
//! `tests/browser/e2e.mjs` (playwright-core pointed at `/usr/bin/chromium`; no browser download)
//! against it. Screenshots land in `target/browser-artifacts/`.
//!
//! Needs `/usr/bin/chromium`, `node`, and the npm packages of `tests/browser`; the test runs
//! `npm ci` there itself when they are missing. Without Chromium or Node.js, or when `npm ci`
//! fails (no registry), the test is skipped with one line saying what to install, so that
//! `cargo test --workspace` passes on a machine with only Rust; when the `CI` environment
//! variable is set every missing piece is a failure instead.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{PASSWORD, TestServer};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser run; the driver bounds each of its steps at 10 s and itself at 150 s.
const E2E_TIMEOUT: Duration = Duration::from_secs(180);
/// `npm ci` downloads a few MB once; generous for a slow registry.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);
const TEST: &str = "chat_page_end_to_end_in_headless_chromium";

/// Kills the child process when dropped, so a failing assertion never leaks the driver.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn chat_page_end_to_end_in_headless_chromium() {
    let _serial = crate::common::heavy();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let driver_dir = root.join("tests/browser");
    if let Err(missing) = prerequisites(&driver_dir) {
        assert!(
            std::env::var_os("CI").is_none(),
            "{TEST}: {missing}, and CI is set"
        );
        notice(&format!(
            "SKIPPED {TEST}: {missing} (set CI=1 to make this a failure)"
        ));
        return;
    }

    // The artifacts go next to the build output: <target>/browser-artifacts.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_websocket"));
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("binary is in <target>/<profile>/");
    let artifacts = target.join("browser-artifacts");
    std::fs::create_dir_all(&artifacts).expect("create artifacts dir");

    let server = TestServer::start(); // killed on drop; prints its log if the test fails
    let url = format!("http://{}/", server.addr());

    let mut node = Command::new("node");
    node.arg("e2e.mjs")
        .current_dir(&driver_dir)
        .env("CHAT_URL", &url)
        .env("CHAT_PASSWORD", PASSWORD)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", CHROMIUM);
    let (ok, output) = run_with_timeout(node, E2E_TIMEOUT);
    println!("{output}");
    assert!(
        ok,
        "the browser end-to-end test failed (output above; screenshots in {})",
        artifacts.display()
    );
    for shot in ["page-a.png", "page-b.png", "page-register.png"] {
        let meta =
            std::fs::metadata(artifacts.join(shot)).unwrap_or_else(|e| panic!("{shot}: {e}"));
        assert!(meta.len() > 1000, "{shot} is suspiciously small");
    }
}

/// Prints a line the person running `cargo test` sees even though the harness captures test
/// output (the capture only covers the print macros, not writes to the stderr handle).
fn notice(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Checks for Chromium and Node.js and installs the driver's npm packages if they are missing.
/// The error says what to install.
fn prerequisites(driver_dir: &Path) -> Result<(), String> {
    if !Path::new(CHROMIUM).exists() {
        return Err(format!(
            "{CHROMIUM} not found: apt-get install chromium chromium-driver"
        ));
    }
    let has = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has("node") || !has("npm") {
        return Err("node or npm not found: apt-get install nodejs npm".into());
    }
    if driver_dir.join("node_modules/playwright-core").is_dir() {
        return Ok(());
    }
    notice(&format!("{TEST}: running `npm ci` in tests/browser (once)"));
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(driver_dir);
    match run_with_timeout(npm, NPM_TIMEOUT) {
        (true, _) => Ok(()),
        (false, output) => Err(format!(
            "`npm ci` in tests/browser failed ({}): run it there by hand",
            output
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no output")
        )),
    }
}

/// Runs `cmd`, collecting stdout and stderr; kills it after `timeout`. Returns (success, output).
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> (bool, String) {
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => KillOnDrop(c),
        Err(e) => return (false, format!("could not start {cmd:?}: {e}")),
    };
    let collect = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = collect(Box::new(child.0.stdout.take().unwrap()));
    let err = collect(Box::new(child.0.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    drop(child); // kills it if it is still running, which closes the pipes
    let mut text = out.join().unwrap_or_default();
    text.push_str(&err.join().unwrap_or_default());
    match status {
        Some(s) => (s.success(), text),
        None => (
            false,
            format!("{text}\n{cmd:?} did not finish within {timeout:?}; killed"),
        ),
    }
}
