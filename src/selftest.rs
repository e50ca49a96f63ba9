//! The built-in `websocket test ...` self-tests (placeholder until the crash issue lands).

/// Runs the self-test selection named by `args`; returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    eprintln!("no self-tests yet: {args:?}");
    2
}
