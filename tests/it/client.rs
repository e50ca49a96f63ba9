//! `websocket client URL` against the real server: lines typed go out, messages come back as
//! lines, end of input closes cleanly, and failures are one line each.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;

use crate::common::{TIMEOUT, TestServer, run_websocket};

/// A running `websocket client`, fed through its stdin; its stdout lines arrive on `lines`.
struct ClientProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl ClientProcess {
    fn start(url: &str) -> ClientProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_websocket"))
            .args(["client", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn websocket client");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        ClientProcess {
            child,
            stdin,
            lines,
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .expect("the client printed nothing in time")
    }

    /// Closes stdin and returns the exit code, waiting at most [`TIMEOUT`].
    fn end_input(&mut self) -> Option<i32> {
        self.stdin = None;
        let start = std::time::Instant::now();
        while start.elapsed() < TIMEOUT {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the client did not exit within {TIMEOUT:?} of the end of its input");
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn client_sends_typed_lines_and_prints_what_arrives() {
    let server = TestServer::start();
    let mut client = ClientProcess::start(&format!("ws://{}/", server.addr()));
    assert_eq!(client.next_line(), "yourchatclientid(1,)");
    client.type_line("addchatroom(1,5,lobby0,0,0,)");
    assert_eq!(client.next_line(), "chatroomcreated(1,1,5,lobby9,1,)");

    // Someone else joins and talks: it shows up in the client's output.
    let (mut other, other_id) = server.chat_client();
    other.send("joinchatroom(7,1,0,0,)");
    let joined = format!("userjoinedchatroom(7,1,{other_id},0,0,2,)");
    assert_eq!(client.next_line(), joined);
    other.send("send(8,1,2,hi)");
    assert_eq!(client.next_line(), format!("chat(8,1,{other_id},0,2,hi)"));

    client.type_line("send(2,1,5,hello)");
    assert_eq!(client.next_line(), "chat(2,1,1,0,5,hello)");
    assert_eq!(client.end_input(), Some(0));
    // Its connection is gone: the others see it leave.
    assert_eq!(other.recv(), joined);
    assert_eq!(other.recv(), format!("chat(8,1,{other_id},0,2,hi)"));
    assert_eq!(other.recv(), "chat(2,1,1,0,5,hello)");
    assert_eq!(other.recv(), "userleftchatroom(0,1,1,0,0,1,)");
}

#[test]
fn client_wait_keeps_printing_after_piped_input() {
    let server = TestServer::start();
    let url = format!("ws://{}/", server.addr());
    let run = run_websocket(
        &["client", "--wait", "1", &url],
        &[],
        b"addchatroom(1,5,lobby0,0,0,)\n",
    );
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "yourchatclientid(1,)\nchatroomcreated(1,1,5,lobby9,1,)\n"
    );
}

#[test]
fn client_failures_are_one_line_each() {
    let server = TestServer::start();
    let refused_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let cases = [
        ("not a url", 2, "invalid URL 'not a url'"),
        ("https://localhost/", 2, "invalid URL"),
        (
            &*format!("ws://127.0.0.1:{refused_port}/"),
            1,
            "cannot connect to 127.0.0.1:",
        ),
        (
            &*format!("ws://{}/ws/chat/lobby/", server.addr()),
            1,
            "refused the WebSocket upgrade: HTTP 400 Bad Request: missing nickname",
        ),
    ];
    for (url, code, message) in cases {
        let run = run_websocket(&["client", url], &[], b"");
        assert_eq!(run.status.code(), Some(code), "{url}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{url}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("websocket client: ") && run.stderr.contains(message),
            "{url}: {message:?} expected in {}",
            run.stderr
        );
    }
}
