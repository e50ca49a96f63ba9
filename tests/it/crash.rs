//! Crash reporting and the `websocket test` command, checked on the real binary.
//!
//! Each test runs `websocket test ...` as a child process with a deadline, then looks at how it
//! ended (exit code or killing signal) and at what it printed.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Longest any child may run: generous, since the machine may be busy compiling.
const DEADLINE: Duration = Duration::from_secs(60);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `websocket test ARGS...`, killing it (and failing the test) past [`DEADLINE`].
fn websocket_test(args: &[&str]) -> Run {
    websocket_test_with(args, None)
}

/// [`websocket_test`] with `RUST_BACKTRACE` set to `backtrace` (unset if `None`).
fn websocket_test_with(args: &[&str], backtrace: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_websocket"));
    match backtrace {
        Some(value) => command.env("RUST_BACKTRACE", value),
        None => command.env_remove("RUST_BACKTRACE"),
    };
    let mut child = command
        .arg("test")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the websocket binary");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_with_deadline(&mut child, args);
    Run {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Reads a pipe to the end on its own thread, so a chatty child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_with_deadline(child: &mut Child, args: &[&str]) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`websocket test {}` still ran after {DEADLINE:?}",
                args.join(" ")
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that `needles` occur in `haystack` in this order.
fn assert_in_order(haystack: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match haystack[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => panic!("{needle:?} missing (or out of order) in:\n{haystack}"),
        }
    }
}

/// Runs a `debug` variant and checks it died by `signal` with a report naming the signal, the
/// demo thread, and the three demo functions innermost first.
fn assert_demo_crash(variant: &str, signal: i32, first_line: &str) -> Run {
    let run = websocket_test(&["debug", variant]);
    assert_eq!(
        run.status.signal(),
        Some(signal),
        "`test debug {variant}` should die by signal {signal}: {:?}\n{}",
        run.status,
        run.stderr
    );
    assert_in_order(
        &run.stderr,
        &[
            first_line,
            "stack backtrace:",
            "read_user_record",
            "lookup_user",
            "handle_request",
        ],
    );
    run
}

#[test]
fn debug_segfault_reports_signal_thread_and_functions() {
    let run = assert_demo_crash(
        "segv",
        libc::SIGSEGV,
        "fatal signal SIGSEGV (invalid memory access) in thread 'crash-demo'",
    );
    assert!(run.stderr.contains("fault address 0x8"), "{}", run.stderr);
    // The frames carry file:line, relative to the source tree, and each appears once.
    assert!(
        run.stderr.contains(" at src/selftest.rs:"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(env!("CARGO_MANIFEST_DIR")),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("lookup_user").count(),
        1,
        "{}",
        run.stderr
    );
    // `debug` with no variant is the segfault.
    assert_eq!(
        websocket_test(&["debug"]).status.signal(),
        Some(libc::SIGSEGV)
    );
}

#[test]
fn rust_backtrace_full_shows_every_frame_with_addresses() {
    let run = websocket_test_with(&["debug"], Some("full"));
    assert_eq!(run.status.signal(), Some(libc::SIGSEGV));
    // The handler's own frames and the thread start are shown too, each with its address.
    assert_in_order(
        &run.stderr,
        &[
            "on_fatal_signal",
            "read_user_record",
            "__rust_begin_short_backtrace",
        ],
    );
    assert!(run.stderr.contains(": 0x"), "{}", run.stderr);
    assert!(!run.stderr.contains("frames are omitted"), "{}", run.stderr);
}

#[test]
fn debug_stack_overflow_is_named_and_folded() {
    let run = assert_demo_crash(
        "overflow",
        libc::SIGSEGV,
        "fatal signal SIGSEGV (stack overflow) in thread 'crash-demo'",
    );
    assert!(
        run.stderr.contains("more times"),
        "recursion not folded:\n{}",
        run.stderr
    );
}

#[test]
fn debug_other_fatal_signals() {
    assert_demo_crash("bus", libc::SIGBUS, "fatal signal SIGBUS");
    assert_demo_crash(
        "ill",
        libc::SIGILL,
        "fatal signal SIGILL (illegal instruction)",
    );
    assert_demo_crash(
        "fpe",
        libc::SIGFPE,
        "fatal signal SIGFPE (arithmetic exception)",
    );
    let run = assert_demo_crash("abort", libc::SIGABRT, "fatal signal SIGABRT (abort)");
    // libc's raise/abort frames are trimmed: the trace starts where Rust called abort.
    assert!(!run.stderr.contains("pthread_kill"), "{}", run.stderr);
}

#[test]
fn logic_thread_panic_kills_the_process_with_one_report() {
    let run = websocket_test(&["debug", "panic"]);
    assert_eq!(
        run.status.signal(),
        Some(libc::SIGABRT),
        "{:?}\n{}",
        run.status,
        run.stderr
    );
    assert_in_order(
        &run.stderr,
        &[
            "thread 'logic' panicked at ",
            "injected panic",
            "stack backtrace:",
            "websocket::logic::run",
            // The thread's closure, inlined into std's thread-start frame in a release build.
            "websocket::server::Server::start",
            "aborting",
        ],
    );
    // The abort after the panic report does not add a second report.
    assert!(!run.stderr.contains("fatal signal"), "{}", run.stderr);
}

#[test]
fn all_self_tests_pass() {
    let run = websocket_test(&["all"]);
    assert_eq!(run.status.code(), Some(0), "{}\n{}", run.stdout, run.stderr);
    let last = run.stdout.lines().last().unwrap_or_default();
    let (passed, failed) = last
        .strip_suffix(" failed")
        .and_then(|l| l.split_once(" passed, "))
        .unwrap_or_else(|| panic!("last line {last:?} is not `N passed, M failed`"));
    assert_eq!(failed, "0");
    let listed = websocket_test(&["list"]);
    assert_eq!(listed.status.code(), Some(0));
    // Every listed test but `debug` ran.
    let runnable = listed
        .stdout
        .lines()
        .filter(|l| !l.contains(" debug "))
        .count();
    assert_eq!(passed, runnable.to_string(), "{}", run.stdout);
}

#[test]
fn list_is_numbered_and_one_test_runs_by_number_or_name() {
    let run = websocket_test(&["list"]);
    assert_eq!(run.status.code(), Some(0));
    let first = run.stdout.lines().next().unwrap_or_default();
    assert!(first.trim_start().starts_with("1  codec"), "{}", run.stdout);
    assert!(run.stdout.contains("debug"), "{}", run.stdout);
    for selector in ["1", "codec"] {
        let run = websocket_test(&[selector]);
        assert_eq!(run.status.code(), Some(0), "{}{}", run.stdout, run.stderr);
        assert_eq!(run.stdout.lines().last(), Some("1 passed, 0 failed"));
    }
}

#[test]
fn unknown_selections_exit_2() {
    for args in [
        &["nosuch"][..],
        &["99"],
        &["0"],
        &[],
        &["debug", "nosuch"],
        &["all", "extra"],
        &["codec", "extra"],
    ] {
        let run = websocket_test(args);
        assert_eq!(run.status.code(), Some(2), "test {args:?}: {}", run.stderr);
        assert!(!run.stderr.is_empty(), "test {args:?} printed no error");
    }
}
