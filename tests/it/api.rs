//! The admin REST API, `/metrics` and `/healthz` against the real binary, with a real HTTP
//! client (`ureq`), and the HTTP layer under them (bodies, keep-alive, refusals) with raw
//! sockets where a well-behaved client would not misbehave.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Client, TIMEOUT, TestServer, raw_exchange};

const KEY: &str = "api-key-1";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
}

type Answer = Result<ureq::http::Response<ureq::Body>, ureq::Error>;

fn read(answer: Answer) -> (u16, String) {
    let mut r = answer.expect("an HTTP response");
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().expect("a text body"))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(server: &TestServer) -> Api {
        Api {
            base: format!("http://{}", server.addr()),
            agent: agent(),
        }
    }

    fn get_with(&self, path: &str, auth: Option<&str>) -> (u16, String) {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        read(req.call())
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.get_with(path, Some(&format!("Bearer {KEY}")));
        (status, json(&body))
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        let (status, body) = read(
            self.agent
                .delete(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {KEY}"))
                .call(),
        );
        (status, json(&body))
    }

    fn post(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let (status, body) = read(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {KEY}"))
                .header("Content-Type", content_type)
                .send(body),
        );
        (status, json(&body))
    }
}

/// A protocol client logged in as alice (userid 42), in the room `lobby` (id 1) it made.
fn alice(server: &TestServer) -> Client {
    let (mut c, _) = server.chat_client();
    for (cmd, want) in [
        ("adduser(1,42,5,alice6,secret2,pw)", "success(1,)"),
        ("login(2,5,alice6,secret)", "success(2,)"),
        (
            "addchatroom(3,5,lobby0,0,0,)",
            "chatroomcreated(3,1,5,lobby",
        ),
    ] {
        c.send(cmd);
        let got = c.recv();
        assert!(got.starts_with(want), "{cmd}: {got}");
    }
    c
}

#[test]
fn every_endpoint_answers_from_the_chat_state() {
    let server = TestServer::start_with(&["--api-key", KEY]);
    let api = Api::new(&server);
    let mut a = alice(&server);

    let (status, stats) = api.get("/api/v1/stats");
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["connections"]["protocol"], 1);
    assert_eq!(stats["connections"]["json"], 0);
    assert_eq!(stats["users_online"], 1);
    assert_eq!(stats["rooms"], 1);
    assert!(stats["messages_in"].as_u64().unwrap() >= 3);
    assert!(stats["drops"]["slow_consumer"].is_u64());
    assert!(stats["uptime_seconds"].is_u64());

    let (status, users) = api.get("/api/v1/users?online=1&pattern=a*");
    assert_eq!(status, 200);
    assert_eq!(users["users"][0]["id"], 42);
    assert_eq!(users["users"][0]["name"], "alice");
    assert_eq!(users["users"][0]["online"], true);
    let (_, none) = api.get("/api/v1/users?pattern=b%2A");
    assert_eq!(none["users"].as_array().unwrap().len(), 0);

    let (status, user) = api.get("/api/v1/users/42");
    assert_eq!(status, 200);
    assert_eq!(user["online"], true);
    assert_eq!(user["connections"], 1);
    assert_eq!(user["rooms"][0]["name"], "lobby");
    assert_eq!(
        (
            user["messages_sent"].as_u64(),
            user["messages_received"].as_u64()
        ),
        (Some(0), Some(0))
    );
    let (status, missing) = api.get("/api/v1/users/43");
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "user_not_found");

    let (status, rooms) = api.get("/api/v1/rooms");
    assert_eq!(status, 200);
    assert_eq!(rooms["rooms"][0]["name"], "lobby");
    assert_eq!(rooms["rooms"][0]["members"], 1);
    let (status, room) = api.get("/api/v1/rooms/1");
    assert_eq!(status, 200);
    assert_eq!(room["members"][0]["user"], 42);
    assert_eq!(api.get("/api/v1/rooms/9").0, 404);

    // From the server, to the user and to the room: each in the protocol's own format.
    let (status, sent) = api.post(
        "/api/v1/send",
        "application/json",
        r#"{"to_users":[42,43],"to_rooms":[1],"text":"maintenance at noon"}"#,
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["connections"], 2);
    assert_eq!(sent["unknown"], 1);
    let private = a.recv();
    assert!(
        private.starts_with("msg(") && private.ends_with("maintenance at noon)"),
        "{private}"
    );
    let said = a.recv();
    assert!(
        said.starts_with("chat(") && said.ends_with("maintenance at noon)"),
        "{said}"
    );

    a.send("send(9,1,2,hi)");
    assert!(a.recv().starts_with("chat("));
    let (mut b, _) = server.chat_client();
    b.send("sendto(8,0,42,2,hi)");
    assert_eq!(b.recv(), "success(8,)");
    assert!(a.recv().starts_with("msg(8,"));
    let (_, user) = api.get("/api/v1/users/42");
    assert_eq!(user["messages_sent"], 1);
    assert_eq!(user["messages_received"], 1);

    let (status, kicked) = api.delete("/api/v1/users/42/connections");
    assert_eq!(status, 200);
    assert_eq!(kicked["disconnected"], 1);
    let close = a.expect_close().expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(api.delete("/api/v1/users/43/connections").0, 404);
}

#[test]
fn the_key_is_required_and_never_logged() {
    let server = TestServer::start_with(&["--api-key", KEY]);
    let api = Api::new(&server);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer pw"), // the server password is not the key when --api-key is given
        Some("Basic YXBpOmFwaS1rZXktMQ=="),
        Some("Bearer"),
    ] {
        let (status, body) = api.get_with("/api/v1/stats", auth);
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(json(&body)["error"]["code"], "unauthorized");
    }
    assert_eq!(api.get_with("/api/v1/nope", None).0, 401);
    // Health and metrics are open, like the page.
    assert_eq!(api.get_with("/healthz", None).0, 200);
    assert_eq!(api.get_with("/metrics", None).0, 200);
    assert!(!server.log().contains("wrong"));

    // Without --api-key, the server password is the key.
    let server = TestServer::start();
    let api = Api::new(&server);
    assert_eq!(api.get_with("/api/v1/stats", Some("Bearer pw")).0, 200);
    assert_eq!(
        api.get_with("/api/v1/stats", Some(&format!("Bearer {KEY}")))
            .0,
        401
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let server = TestServer::start_with(&["--api-key", KEY, "--max-body-size", "100"]);
    let api = Api::new(&server);
    let code = |(status, body): (u16, Value)| {
        (status, body["error"]["code"].as_str().unwrap().to_string())
    };
    let send = "/api/v1/send";
    assert_eq!(
        code(api.post(send, "application/json", "{")),
        (400, "bad_json".into())
    );
    assert_eq!(
        code(api.post(
            send,
            "application/json",
            r#"{"to_users":[1],"text":"x","extra":1}"#
        )),
        (400, "bad_json".into())
    );
    assert_eq!(
        code(api.post(
            send,
            "application/json",
            r#"{"to_users":[99999999999999999999999],"text":"x"}"#
        )),
        (400, "bad_json".into())
    );
    assert_eq!(
        code(api.post(send, "text/plain", "{}")),
        (415, "unsupported_media_type".into())
    );
    let big = format!(r#"{{"to_users":[1],"text":"{}"}}"#, "x".repeat(200));
    assert_eq!(
        code(api.post(send, "application/json", &big)),
        (413, "payload_too_large".into())
    );
    assert_eq!(
        code(api.post("/api/v1/stats", "application/json", "{}")),
        (405, "method_not_allowed".into())
    );
    assert_eq!(
        code(api.get("/api/v1/users/99999999999999999999999")),
        (400, "bad_id".into())
    );
    assert_eq!(code(api.get("/api/v1/users/abc")), (400, "bad_id".into()));
    assert_eq!(code(api.get("/api/v1/users/%zz")), (400, "bad_path".into()));
    assert_eq!(
        code(api.get("/api/v1/users/%C3%28")),
        (400, "bad_path".into())
    );
    assert_eq!(
        code(api.get("/api/v1/users/%2e%2e/stats")),
        (404, "not_found".into())
    );
    assert_eq!(code(api.get("/api/v1/nothing")), (404, "not_found".into()));
    // Raw, past what clients normalise: dot segments and a chunked body.
    let auth = format!("Authorization: Bearer {KEY}\r\n");
    let raw = |req: String| {
        String::from_utf8_lossy(&raw_exchange(&server.addr(), req.as_bytes())).into_owned()
    };
    let dots = raw(format!(
        "GET /api/v1/users/../stats HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    ));
    assert!(dots.starts_with("HTTP/1.1 404 "), "{dots}");
    let chunked = raw(format!(
        "POST /api/v1/send HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
    ));
    assert!(chunked.starts_with("HTTP/1.1 411 "), "{chunked}");
    // The server is fine after all that.
    assert_eq!(api.get("/api/v1/stats").0, 200);
}

/// Reads one HTTP response (head and `content-length` body) from `s`.
fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).expect("a response head"),
            1,
            "EOF in a head"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8(body).unwrap()
}

#[test]
fn keep_alive_serves_pipelined_requests_on_one_connection() {
    let server = TestServer::start_with(&["--api-key", KEY]);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n{extra}\r\n")
    };
    let body = r#"{"to_users":[7],"text":"hi"}"#;
    let post = format!(
        "POST /api/v1/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Three requests in one write, the last asking to close.
    let all = get("/api/v1/stats", "") + &post + &get("/api/v1/rooms", "Connection: close\r\n");
    s.write_all(all.as_bytes()).unwrap();
    let first = read_response(&mut s);
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    assert!(first.contains("connection: keep-alive"), "{first}");
    let second = read_response(&mut s);
    assert!(second.contains("\"unknown\":1"), "{second}");
    let third = read_response(&mut s);
    assert!(
        third.contains("connection: close") && third.contains("\"rooms\""),
        "{third}"
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    // A request after a pause, on the same connection.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(get("/healthz", "").as_bytes()).unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200 "));
    s.write_all(get("/api/v1/stats", "").as_bytes()).unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200 "));
}

#[test]
fn a_slowloris_body_is_cut_off() {
    let server = TestServer::start_with(&["--api-key", KEY, "--handshake-timeout", "1"]);
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let head = format!(
        "POST /api/v1/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest); // EOF or reset, either way the server let go
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

/// The value of the sample `name` (with its labels) in a Prometheus text exposition.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_count_what_happened() {
    let server = TestServer::start();
    let api = Api::new(&server);
    let metrics = || {
        let (status, text) = api.get_with("/metrics", None);
        assert_eq!(status, 200);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("websocket_"), "{line}");
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
        text
    };
    let before = metrics();
    assert_eq!(
        sample(&before, "websocket_connections{dialect=\"protocol\"}"),
        0.0
    );
    let (mut a, _) = server.chat_client();
    let (mut b, _) = server.chat_client();
    a.send("addchatroom(1,5,lobby0,0,0,)");
    a.recv();
    b.recv(); // b is told of the new room
    b.send("joinchatroom(2,1)");
    b.recv();
    a.recv();
    for i in 0..5 {
        a.send(&format!("send({},1,2,hi)", 10 + i));
        a.recv();
        b.recv();
    }
    let after = metrics();
    assert_eq!(
        sample(&after, "websocket_connections{dialect=\"protocol\"}"),
        2.0
    );
    assert_eq!(sample(&after, "websocket_rooms"), 1.0);
    let diff = |name: &str| sample(&after, name) - sample(&before, name);
    // addchatroom, joinchatroom and five sends.
    assert_eq!(diff("websocket_messages_received_total"), 7.0);
    assert_eq!(diff("websocket_requests_applied_total"), 7.0);
    // At least: two greetings, five messages to two members.
    assert!(diff("websocket_deliveries_total") >= 12.0);
    assert!(diff("websocket_sent_bytes_total") >= 12.0 * 4.0);
    assert_eq!(diff("websocket_slow_consumers_total"), 0.0);
    // a and b (and this scrape, unless the client kept its connection).
    assert!(diff("websocket_connections_accepted_total") >= 2.0);
    assert!(sample(&after, "websocket_logic_batch_seconds_count") > 0.0);
    assert_eq!(
        sample(&after, "websocket_logic_batch_seconds_bucket{le=\"+Inf\"}"),
        sample(&after, "websocket_logic_batch_seconds_count")
    );

    let (status, health) = api.get_with("/healthz", None);
    assert_eq!(
        (status, json(&health)["status"].as_str()),
        (200, Some("ok"))
    );
}

#[test]
fn rooms_are_made_and_removed_and_offline_users_get_queued_messages() {
    let server = TestServer::start_with(&["--api-key", KEY]);
    let api = Api::new(&server);
    let (mut watcher, _) = server.chat_client();

    let (status, made) = api.post("/api/v1/rooms", "application/json", r#"{"name":"news"}"#);
    assert_eq!(status, 200, "{made}");
    let id = made["created"].as_u64().unwrap();
    let told = watcher.recv();
    assert!(
        told.starts_with("chatroomcreated(0,") && told.contains("news"),
        "{told}"
    );
    let (_, rooms) = api.get("/api/v1/rooms");
    assert_eq!(rooms["rooms"][0]["name"], "news");
    assert_eq!(rooms["rooms"][0]["temporary"], false);
    let (status, again) = api.post("/api/v1/rooms", "application/json", r#"{"name":"news"}"#);
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("room_exists"))
    );
    let (status, _) = api.post("/api/v1/rooms", "application/json", r#"{"name":""}"#);
    assert_eq!(status, 400);

    let (status, gone) = api.delete(&format!("/api/v1/rooms/{id}"));
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["deleted"], id);
    let told = watcher.recv();
    assert!(told.starts_with("chatroomwasdeleted("), "{told}");
    assert_eq!(api.delete(&format!("/api/v1/rooms/{id}")).0, 404);

    // bob exists but is offline: the message waits for his login.
    watcher.send("adduser(1,43,3,bob6,secret2,pw)");
    assert_eq!(watcher.recv(), "success(1,)");
    let (status, sent) = api.post(
        "/api/v1/send",
        "application/json",
        r#"{"to_users":[43],"text":"welcome back"}"#,
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        (sent["connections"].as_u64(), sent["queued"].as_u64()),
        (Some(0), Some(1))
    );
    let (mut bob, _) = server.chat_client();
    bob.send("login(2,3,bob6,secret)");
    let mut got = Vec::new();
    while !got.iter().any(|m: &String| m.contains("welcome back")) {
        got.push(bob.recv());
        assert!(got.len() < 5, "{got:?}");
    }
}

#[test]
fn a_send_that_says_queued_survives_kill_9() {
    let dir = crate::common::TempDir::new("api-send");
    let data = dir.file("chat.db");
    let mut server = TestServer::start_with(&["--api-key", KEY, "--data", &data]);
    let (mut c, _) = server.chat_client();
    c.send("adduser(1,43,3,bob6,secret2,pw)");
    assert_eq!(c.recv(), "success(1,)");
    let (status, sent) = Api::new(&server).post(
        "/api/v1/send",
        "application/json",
        r#"{"to_users":[43],"text":"kept"}"#,
    );
    assert_eq!((status, sent["queued"].as_u64()), (200, Some(1)), "{sent}");
    // The reply came after the commit: a crash right after it loses nothing.
    server.kill9();
    let server = TestServer::start_with(&["--api-key", KEY, "--data", &data]);
    let (mut bob, _) = server.chat_client();
    bob.send("login(2,3,bob6,secret)");
    assert_eq!(bob.recv(), "success(2,)");
    let offline = bob.recv();
    assert!(
        offline.starts_with("offlinemsg(0,6,server") && offline.ends_with(",4,kept)"),
        "{offline}"
    );
}

#[test]
fn store_commits_are_timed_when_there_is_a_store() {
    let dir = crate::common::TempDir::new("api-store");
    let data = dir.file("chat.db");
    let server = TestServer::start_with(&["--data", &data]);
    let api = Api::new(&server);
    let (mut c, _) = server.chat_client();
    c.send("adduser(1,42,5,alice6,secret2,pw)");
    assert_eq!(c.recv(), "success(1,)");
    let (_, text) = api.get_with("/metrics", None);
    assert!(
        sample(&text, "websocket_store_commit_seconds_count") >= 1.0,
        "{text}"
    );
    // Without a store there is no such metric.
    let server = TestServer::start();
    let (_, text) = Api::new(&server).get_with("/metrics", None);
    assert!(!text.contains("websocket_store_commit_seconds"), "{text}");
}

#[test]
fn refusals_are_counted_where_they_happen() {
    let server = TestServer::start_with(&["--rate-limit", "1", "--rate-burst", "2"]);
    let api = Api::new(&server);
    let scrape = || api.get_with("/metrics", None).1;
    let before = scrape();
    let (mut c, _) = server.chat_client();
    // A burst of two goes through (more if a token came back meanwhile); the rest is refused
    // with an error, not closed.
    let mut served = 0.0;
    for mid in 1..=4 {
        c.send(&format!("getchatroomdetails({mid},1)"));
        if c.recv().contains("wasn't found") {
            served += 1.0;
        }
    }
    assert!(served < 4.0);
    assert_eq!(api.get_with("/api/v1/stats", Some("Bearer nope")).0, 401);
    let after = scrape();
    let diff = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(diff("websocket_rate_limited_total"), 4.0 - served);
    assert_eq!(diff("websocket_messages_received_total"), 4.0);
    assert_eq!(diff("websocket_api_unauthorized_total"), 1.0);
    assert_eq!(diff("websocket_rate_limit_closes_total"), 0.0);
}
