//! Webhooks against the real binary, with a small HTTP receiver in the test: payloads, auth
//! headers, retries, and that a receiver that never answers costs chat nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Client, TIMEOUT, TestServer};

/// One request the receiver got.
struct Hit {
    head: String,
    body: Value,
}

/// How the receiver answers the n-th request (from 0).
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Read the request, never answer.
    Hang,
}

/// A receiver on an ephemeral port: every request is reported on the channel, and answered
/// as `answers` says (the last entry for every request after).
fn receiver(answers: Vec<Answer>) -> (String, Receiver<Hit>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = channel();
    thread::spawn(move || {
        let mut hung = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let answer = answers[n.min(answers.len() - 1)];
            if let Some(stream) = serve(stream, answer, &tx) {
                hung.push(stream); // kept open, never answered
            }
        }
    });
    (url, rx)
}

/// Reads one request, reports it, answers it (or returns the stream to keep it hanging).
fn serve(stream: TcpStream, answer: Answer, tx: &Sender<Hit>) -> Option<TcpStream> {
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))?
        .trim()
        .parse()
        .ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let body = serde_json::from_slice(&body).ok()?;
    let _ = tx.send(Hit { head, body });
    let mut stream = reader.into_inner();
    match answer {
        Answer::Hang => Some(stream),
        Answer::Status(status) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            None
        }
    }
}

/// The next request the receiver got whose event is `event`.
fn next_event(rx: &Receiver<Hit>, event: &str) -> Hit {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let hit = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {event} event within {TIMEOUT:?}"));
        if hit.body["event"] == event {
            return hit;
        }
    }
}

fn login_alice(server: &TestServer) -> Client {
    let (mut c, _) = server.chat_client();
    c.send("adduser(1,42,5,alice6,secret2,pw)");
    assert_eq!(c.recv(), "success(1,)");
    c.send("login(2,5,alice6,secret)");
    assert!(c.recv().starts_with("success(2,"));
    c
}

#[test]
fn events_arrive_with_payload_and_auth() {
    let (url, hits) = receiver(vec![Answer::Status(200)]);
    let server = TestServer::start_with(&["--webhook", &url, "--webhook-auth", "bearer:tok3n"]);
    let mut c = login_alice(&server);
    let login = next_event(&hits, "login");
    assert_eq!(login.body["user"], 42);
    assert_eq!(login.body["name"], "alice");
    assert!(login.body["time"].is_u64());
    assert!(
        login.head.contains("authorization: bearer tok3n\r\n"),
        "{}",
        login.head
    );
    assert!(
        login.head.contains("content-type: application/json"),
        "{}",
        login.head
    );

    c.send("addchatroom(3,5,lobby0,0,0,)");
    c.recv();
    let created = next_event(&hits, "room_created");
    assert_eq!(created.body["name"], "lobby");
    c.send("send(4,1,5,hello)");
    c.recv();
    let said = next_event(&hits, "room_message");
    assert_eq!(said.body["text"], "hello");
    assert_eq!(said.body["room_name"], "lobby");
    assert_eq!(said.body["from"]["user"], 42);
    c.send("logout(5)");
    next_event(&hits, "logout");
}

#[test]
fn filters_and_other_auth_kinds() {
    let (url, hits) = receiver(vec![Answer::Status(204)]);
    let server = TestServer::start_with(&[
        "--webhook",
        &url,
        "--webhook-auth",
        "header:X-Hook-Secret:s3cret",
        "--webhook-events",
        "room_created",
    ]);
    let mut c = login_alice(&server);
    c.send("addchatroom(3,5,lobby0,0,0,)");
    c.recv();
    // The login came first, but the filter lets only the room through.
    let first = hits.recv_timeout(TIMEOUT).expect("an event");
    assert_eq!(first.body["event"], "room_created");
    assert!(
        first.head.contains("x-hook-secret: s3cret\r\n"),
        "{}",
        first.head
    );
}

#[test]
fn a_failed_delivery_is_retried() {
    let (url, hits) = receiver(vec![Answer::Status(500), Answer::Status(200)]);
    let server = TestServer::start_with(&["--webhook", &url, "--webhook-retries", "2"]);
    let _c = login_alice(&server);
    let first = next_event(&hits, "login");
    let again = next_event(&hits, "login");
    assert_eq!(first.body, again.body);
    let metrics = crate::common::http_get(&server.addr(), "/metrics");
    assert!(
        metrics.contains("websocket_webhook_retries_total 1"),
        "{metrics}"
    );
}

#[test]
fn a_hanging_receiver_costs_chat_nothing_and_drops_are_counted() {
    let (url, _hits) = receiver(vec![Answer::Hang]);
    let server = TestServer::start_with(&[
        "--webhook",
        &url,
        "--webhook-queue",
        "2",
        "--webhook-timeout",
        "30",
    ]);
    let mut c = login_alice(&server);
    c.send("addchatroom(3,5,lobby0,0,0,)");
    c.recv();
    // Every message is an event; the hook takes one, holds two, drops the rest.
    let start = Instant::now();
    for i in 0..20 {
        c.send(&format!("send({},1,2,hi)", 10 + i));
        assert!(c.recv().starts_with("chat("));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "chat waited for the webhook: {:?}",
        start.elapsed()
    );
    let metrics = crate::common::http_get(&server.addr(), "/metrics");
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("websocket_webhook_dropped_total "))
        .expect("the drop counter")
        .parse()
        .unwrap();
    assert!(dropped >= 15, "{dropped} dropped\n{metrics}");
}
