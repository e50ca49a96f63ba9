//! `--auth-url`: logins for names the server does not know are checked by a login backend (a
//! small HTTP server in the test) from a hasher thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread;

use serde_json::Value;

use crate::common::{Client, TIMEOUT, TestServer};

/// A backend that accepts carol as userid 77, never answers for "slow", refuses the rest.
fn backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/login", listener.local_addr().unwrap());
    thread::spawn(move || {
        let mut hung = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut reader = BufReader::new(stream);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let body: Value = serde_json::from_slice(&body).unwrap();
            let mut stream = reader.into_inner();
            let answer = match (body["username"].as_str(), body["password"].as_str()) {
                (Some("slow"), _) => {
                    hung.push(stream);
                    continue;
                }
                (Some("carol"), Some("opensesame")) => ("200 OK", r#"{"userid":77}"#),
                _ => ("403 Forbidden", r#"{"error":"no"}"#),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{}",
                answer.0,
                answer.1.len(),
                answer.1
            );
        }
    });
    url
}

fn login(c: &mut Client, mid: u64, name: &str, password: &str) -> String {
    c.send(&format!(
        "login({mid},{},{name}{},{password})",
        name.len(),
        password.len()
    ));
    c.recv()
}

#[test]
fn unknown_names_are_checked_by_the_backend() {
    let url = backend();
    let server = TestServer::start_with(&["--auth-url", &url, "--auth-timeout", "1"]);
    let (mut c, _) = server.chat_client();
    // Accepted: logged in as the backend's userid, and the account exists here now.
    assert!(login(&mut c, 1, "carol", "opensesame").starts_with("success(1,"));
    c.send("findusers(2,5,carol)");
    let found = c.recv();
    assert!(found.contains(",77,"), "{found}");
    // The next login is checked here, against the password hashed at the first.
    let (mut e, _) = server.chat_client();
    assert!(login(&mut e, 5, "carol", "opensesame").starts_with("success(5,"));
    // Refused, and a wrong password for a name the backend does not know.
    let (mut d, _) = server.chat_client();
    assert_eq!(
        login(&mut d, 3, "dave", "whatever1"),
        "error(16,Incorrect login.3,)"
    );
    // A backend that does not answer in time: busy, not refused.
    let busy = login(&mut d, 4, "slow", "whatever1");
    assert!(busy.contains("Server busy; try again."), "{busy}");
}
