//! Several nodes sharing rooms, users and messages through a real `redis-server`
//! (`docs/cluster.md`), each node the real binary on its own loopback port.
//!
//! Each test starts its own Redis on a free port with a temporary directory (append-only
//! file on). Without `redis-server` on the PATH the tests skip with one line, unless `CI` is
//! set: then they fail.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Client, PASSWORD, TempDir, TestServer, heavy, http_get};

/// A `redis-server` of this test's own.
struct Redis {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Redis {
    /// `None` (after one line saying so) when redis-server is not installed and CI is unset.
    fn start(test: &str) -> Option<Redis> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: redis-server is not installed, and CI is set"
            );
            eprintln!("SKIPPED {test}: redis-server not found (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = TempDir::new(&format!("redis-{test}"));
        let child = Redis::spawn(port, &dir);
        let redis = Redis { child, port, dir };
        redis.wait_ready();
        Some(redis)
    }

    fn spawn(port: u16, dir: &TempDir) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &dir.0.to_string_lossy()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server")
    }

    /// Waits until it answers PING.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .command(&["PING"])
                .is_some_and(|r| r.starts_with("+PONG"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// One command in RESP; the first line of the answer.
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line)
    }

    /// Kills it (`SIGKILL`).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and directory (its append-only file).
    fn start_again(&mut self) {
        self.child = Redis::spawn(self.port, &self.dir);
        self.wait_ready();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(redis: &Redis, name: &str) -> TestServer {
    node_at(&redis.url(), name)
}

fn node_at(url: &str, name: &str) -> TestServer {
    TestServer::start_with(&["--redis", url, "--node-id", name])
}

/// A TCP relay in front of Redis for one node, which the test can cut (every connection closed,
/// new ones refused) and mend: a network partition between that node and Redis.
struct Relay {
    port: u16,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(redis: &Redis) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (to, open2, conns2) = (redis.port, open.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                if !open2.load(Ordering::SeqCst) {
                    continue;
                }
                let mut list = conns2.lock().unwrap();
                list.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, open, conns }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Reads until a message containing `needle` arrives (others caused meanwhile are skipped).
fn wait_for(c: &mut Client, needle: &str) -> String {
    loop {
        let m = c.recv();
        if m.contains(needle) {
            return m;
        }
    }
}

/// Reads until the answer to message `mid` arrives: `name(mid,...` or `error(code,text.mid,)`.
fn answer(c: &mut Client, mid: u64) -> String {
    let (head, tail) = (format!("({mid},"), format!(".{mid},)"));
    loop {
        let m = c.recv();
        let is_answer = m
            .split_once('(')
            .is_some_and(|(_, rest)| rest.starts_with(&head[1..]))
            || (m.starts_with("error(") && m.ends_with(&tail));
        if is_answer {
            return m;
        }
    }
}

fn json_wait(c: &mut Client, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v: Value = serde_json::from_str(&c.recv()).expect("JSON");
        if pred(&v) {
            return v;
        }
    }
}

/// A string field of the command protocol.
fn s(text: &str) -> String {
    format!("{},{text}", text.len())
}

/// Polls `check` until it holds: for state another node changes, which this node shows only
/// through its API or metrics.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` of the admin API (the server password is its key): status and JSON body.
fn api(server: &TestServer, path: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(format!("http://{}{path}", server.addr()))
        .header("Authorization", format!("Bearer {PASSWORD}"))
        .call()
        .expect("an HTTP answer");
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().expect("a body");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn healthy(server: &TestServer) -> bool {
    api(server, "/healthz").1["cluster"] == "up"
}

/// A temporary room `name` made by a client of `a` and joined by a client of `b` (once `b`
/// knows of it), both past the join: the two clients and the room's id.
fn shared_room(a: &TestServer, b: &TestServer, name: &str) -> (Client, Client, u64) {
    let (mut x, _) = a.chat_client();
    x.send(&format!("addchatroom(1,{}0,0,0,)", s(name)));
    let created = wait_for(&mut x, "chatroomcreated(1,");
    let room: u64 = created.split(',').nth(1).unwrap().parse().unwrap();
    let (mut y, _) = b.chat_client();
    eventually("the other node knows the room", || {
        y.send(&format!("joinchatroom(1,{room},0,0,)"));
        answer(&mut y, 1).starts_with("userjoinedchatroom")
    });
    wait_for(&mut x, "userjoinedchatroom(");
    (x, y, room)
}

/// Node A, and node B reaching Redis through a relay that is cut: B knows it is cut off.
fn cut_off_pair(redis: &Redis) -> (Relay, TestServer, TestServer) {
    let relay = Relay::start(redis);
    let a = node(redis, "a");
    let b = node_at(&relay.url(), "b");
    relay.cut();
    eventually("node B notices it is cut off", || !healthy(&b));
    (relay, a, b)
}

fn metric(server: &TestServer, name: &str) -> u64 {
    let page = http_get(&server.addr(), "/metrics");
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn a_room_spans_three_nodes_in_every_dialect() {
    let _heavy = heavy();
    let Some(redis) = Redis::start("a_room_spans_three_nodes") else {
        return;
    };
    let (a, b, c) = (node(&redis, "a"), node(&redis, "b"), node(&redis, "c"));
    let (mut watch_b, _) = b.chat_client();
    let (mut watch_c, _) = c.chat_client();
    let (mut alice, alice_id) = a.chat_client();
    alice.send(&format!("addchatroom(1,{}0,0,0,)", s("lobby")));
    let created = wait_for(&mut alice, "chatroomcreated(1,");
    let room: u64 = created.split(',').nth(1).unwrap().parse().unwrap();
    // The other nodes hear of the room and of alice in it before anyone there joins.
    let mut mid = 100;
    let mut members_seen_by = |watch: &mut Client| {
        mid += 1;
        watch.send(&format!("getchatroomlist({mid})"));
        let list = answer(watch, mid);
        let entry = format!("{room},{}", s("lobby"));
        list.split_once(&entry)
            .and_then(|(_, rest)| rest.split(',').nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    eventually("node B sees alice in the room", || {
        members_seen_by(&mut watch_b) == 1
    });
    eventually("node C sees alice in the room", || {
        members_seen_by(&mut watch_c) == 1
    });

    // JSON on node B.
    let mut bob = b.client_at("/json", None);
    bob.send(&json!({"cmd": "login", "type": "tmp", "usr": "bob"}).to_string());
    json_wait(&mut bob, |v| v["cmd"] == "login" && v["ok"] == true);
    bob.send(&json!({"cmd": "join_room", "room_name": "lobby", "usr": "bob"}).to_string());
    let joined = json_wait(&mut bob, |v| v["cmd"] == "join_room");
    assert_eq!(joined["ok"], true, "{joined}");
    assert!(
        joined["room"]["users"]
            .as_array()
            .unwrap()
            .contains(&json!("bob")),
        "{joined}"
    );
    let seen = wait_for(&mut alice, "userjoinedchatroom(");
    assert!(seen.ends_with(&format!("{}2,)", s("bob"))), "{seen}");

    // The room URL on node C joins the same room by name.
    eventually("node C sees bob in the room", || {
        members_seen_by(&mut watch_c) == 2
    });
    let mut carol = c.client_at("/ws/chat/lobby/?nickname=carol", None);
    assert_eq!(carol.recv(), "carol joined lobby");
    let seen = wait_for(&mut alice, "userjoinedchatroom(");
    assert!(seen.ends_with(&format!("{}3,)", s("carol"))), "{seen}");
    let ev = json_wait(&mut bob, |v| v["event"] == "joined");
    assert_eq!(ev["usr"], "carol");

    // Messages every way.
    alice.send(&format!("send(2,{room},{})", s("hello from a")));
    assert!(answer(&mut alice, 2).ends_with(&format!("{})", s("hello from a"))));
    let ev = json_wait(&mut bob, |v| v["event"] == "message");
    assert_eq!(ev["msg"], "hello from a");
    assert_eq!(carol.recv(), format!("guest{alice_id}: hello from a"));
    bob.send(
        &json!({"cmd": "speak", "room_name": "lobby", "usr": "bob", "msg": "hi from b"})
            .to_string(),
    );
    json_wait(&mut bob, |v| v["cmd"] == "speak" && v["ok"] == true);
    assert_eq!(carol.recv(), "bob: hi from b");
    let m = wait_for(&mut alice, "chat(");
    assert!(m.ends_with(&format!("{})", s("hi from b"))), "{m}");
    carol.send("and from c");
    let m = wait_for(&mut alice, "chat(");
    assert!(m.ends_with(&format!("{})", s("and from c"))), "{m}");
    let ev = json_wait(&mut bob, |v| v["event"] == "message");
    assert_eq!(
        (ev["usr"].as_str(), ev["msg"].as_str()),
        (Some("carol"), Some("and from c"))
    );

    // Members are listed cluster-wide; leaves reach every node.
    alice.send(&format!("getusersinchatroom(3,{room},)"));
    let members = answer(&mut alice, 3);
    assert!(
        members.contains(&s("bob")) && members.contains(&s("carol")),
        "{members}"
    );
    drop(carol);
    let left = wait_for(&mut alice, "userleftchatroom(");
    assert!(left.ends_with(&format!("{}2,)", s("carol"))), "{left}");
    let ev = json_wait(&mut bob, |v| v["event"] == "left");
    assert_eq!(ev["usr"], "carol");
    bob.send(&json!({"cmd": "leave_room", "room_name": "lobby", "usr": "bob"}).to_string());
    let left = wait_for(&mut alice, "userleftchatroom(");
    assert!(left.ends_with(&format!("{}1,)", s("bob"))), "{left}");
}

#[test]
fn sendto_reaches_a_user_on_two_other_nodes_and_nodes_without_members_hear_nothing() {
    let _heavy = heavy();
    let Some(redis) = Redis::start("sendto_two_nodes") else {
        return;
    };
    let (a, b, c) = (node(&redis, "a"), node(&redis, "b"), node(&redis, "c"));
    let (mut reg, _) = a.chat_client();
    reg.send(&format!("register(1,{}{})", s("dana"), s("password1")));
    let registered = answer(&mut reg, 1);
    let user: u64 = registered
        .strip_prefix("registered(1,")
        .and_then(|r| r.strip_suffix(",)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{registered}"));
    let login = |server: &TestServer| {
        let (mut c, _) = server.chat_client();
        // Node B and C learn of the account through Redis: wait for it.
        loop {
            c.send(&format!("login(5,{}{})", s("dana"), s("password1")));
            if answer(&mut c, 5).starts_with("success") {
                return c;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut on_b = login(&b);
    let mut on_c = login(&c);
    let (mut sender, sender_id) = a.chat_client();
    // Node A learns of both logins (presence) before its sendto.
    eventually("node A sees both of dana's connections", || {
        api(&a, &format!("/api/v1/users/{user}")).1["connections"] == 2
    });
    sender.send(&format!("sendto(2,0,{user},{})", s("psst")));
    assert_eq!(answer(&mut sender, 2), "success(2,)");
    let want = format!("msg(2,{sender_id},0,{})", s("psst"));
    assert_eq!(wait_for(&mut on_b, "msg("), want);
    assert_eq!(wait_for(&mut on_c, "msg("), want);

    // A busy room on A and B only: C, with no member in it, hears none of its messages.
    let (mut x, mut y, room) = shared_room(&a, &b, "busy");
    let before_c = metric(&c, "websocket_cluster_room_messages_received_total");
    let before_b = metric(&b, "websocket_cluster_room_messages_received_total");
    for i in 0..50 {
        x.send(&format!("send({},{room},{})", 10 + i, s("traffic")));
        wait_for(&mut y, "chat(");
    }
    assert_eq!(
        metric(&b, "websocket_cluster_room_messages_received_total") - before_b,
        50
    );
    assert_eq!(
        metric(&c, "websocket_cluster_room_messages_received_total"),
        before_c,
        "node C has no member in the room"
    );
}

#[test]
fn two_nodes_registering_one_name_at_once_exactly_one_wins() {
    let _heavy = heavy();
    let Some(redis) = Redis::start("registration_race") else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    for round in 0..20 {
        let name = format!("racer{round}");
        let (mut x, _) = a.chat_client();
        let (mut y, _) = b.chat_client();
        let msg = format!("register(1,{}{})", s(&name), s("password1"));
        x.send(&msg);
        y.send(&msg);
        let answers = [answer(&mut x, 1), answer(&mut y, 1)];
        let won = answers
            .iter()
            .filter(|m| m.starts_with("registered("))
            .count();
        assert_eq!(won, 1, "round {round}: {answers:?}");
    }
    // Both nodes now refuse every one of those names, and the winners' ids differ.
    let (mut x, _) = b.chat_client();
    x.send(&format!("register(2,{}{})", s("racer0"), s("password1")));
    assert!(answer(&mut x, 2).starts_with("error("));
}

#[test]
fn a_message_queued_on_one_node_is_delivered_at_login_on_another() {
    let _heavy = heavy();
    let Some(redis) = Redis::start("offline_across_nodes") else {
        return;
    };
    let (a, c) = (node(&redis, "a"), node(&redis, "c"));
    let (mut x, _) = a.chat_client();
    x.send(&format!("register(1,{}{})", s("erin"), s("password1")));
    let registered = answer(&mut x, 1);
    let user: u64 = registered
        .strip_prefix("registered(1,")
        .and_then(|r| r.strip_suffix(",)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{registered}"));
    x.send(&format!("register(5,{}{})", s("frank"), s("password1")));
    assert!(answer(&mut x, 5).starts_with("registered(5,"));
    x.send(&format!("login(6,{}{})", s("frank"), s("password1")));
    assert_eq!(answer(&mut x, 6), "success(6,)");
    let heard = metric(&c, "websocket_cluster_updates_received_total");
    x.send(&format!("sendto(2,0,{user},{})", s("see you later")));
    assert_eq!(answer(&mut x, 2), "queued(2,)");
    // Queued means committed in Redis; node C applies it a moment later.
    eventually("node C hears of the queued message", || {
        metric(&c, "websocket_cluster_updates_received_total") > heard
    });
    let (mut y, _) = c.chat_client();
    loop {
        y.send(&format!("login(3,{}{})", s("erin"), s("password1")));
        if answer(&mut y, 3).starts_with("success") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let offline = y.recv();
    assert!(
        offline.starts_with("offlinemsg(")
            && offline.contains(&s("frank"))
            && offline.ends_with(&format!("{})", s("see you later"))),
        "{offline}"
    );
    // Handed over once: a second login anywhere gets nothing more.
    let (mut z, _) = a.chat_client();
    z.send(&format!("login(4,{}{})", s("erin"), s("password1")));
    assert_eq!(answer(&mut z, 4), "success(4,)");
    z.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_killed_nodes_members_leave_the_other_nodes_rooms_within_the_bound() {
    let _heavy = heavy();
    let Some(redis) = Redis::start("node_kill") else {
        return;
    };
    let a = node(&redis, "a");
    let mut b = node(&redis, "b");
    // B's member stays connected until B is killed (bound, not dropped).
    let (mut x, _member_on_b, room) = shared_room(&a, &b, "doomed");
    let killed = Instant::now();
    b.kill9();
    let left = wait_for(&mut x, "userleftchatroom(");
    assert!(left.ends_with(",1,)"), "{left}");
    let took = killed.elapsed();
    // The bound: a node silent for 4 s is gone, checked every second.
    assert!(took < Duration::from_secs(7), "took {took:?}");
    // A restarted B starts clean: no stand-ins of its previous run anywhere.
    let b = node(&redis, "b");
    let (mut y, _) = b.chat_client();
    y.send(&format!("getusersinchatroom(2,{room},)"));
    let members = answer(&mut y, 2);
    assert!(!members.contains(",0,0,0,"), "{members}");
}

#[test]
fn traffic_resumes_after_redis_restarts_without_restarting_a_node() {
    let _heavy = heavy();
    let Some(mut redis) = Redis::start("redis_restart") else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (mut x, mut y, room) = shared_room(&a, &b, "steady");
    redis.stop();
    eventually("both nodes notice Redis is gone", || {
        !healthy(&a) && !healthy(&b)
    });
    assert_eq!(api(&a, "/healthz").0, 503);
    // A message for members on another node is refused, not lost.
    x.send(&format!("send(10,{room},{})", s("lost?")));
    let refused = answer(&mut x, 10);
    assert!(
        refused.starts_with("error(") && refused.contains("Server busy"),
        "{refused}"
    );
    redis.start_again();
    eventually("both nodes are back", || healthy(&a) && healthy(&b));
    x.send(&format!("send(11,{room},{})", s("ping")));
    assert!(answer(&mut x, 11).starts_with("chat(11,"));
    let got = wait_for(&mut y, "chat(");
    assert!(got.ends_with(&format!("{})", s("ping"))), "{got}");
    // And the other way round.
    y.send(&format!("send(99,{room},{})", s("pong")));
    let got = wait_for(&mut x, "chat(");
    assert!(got.ends_with(&format!("{})", s("pong"))), "{got}");
}

#[test]
fn a_node_refuses_to_start_without_its_redis() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = crate::common::run_websocket(
        &[
            "0",
            "pw",
            "--bind",
            "127.0.0.1",
            "--redis",
            &format!("redis://127.0.0.1:{port}/"),
        ],
        &[],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("Redis at redis://127.0.0.1:"),
        "{}",
        out.stderr
    );
    let bad = crate::common::run_websocket(
        &[
            "0",
            "pw",
            "--redis",
            "redis://127.0.0.1:1/",
            "--node-id",
            "no spaces",
        ],
        &[],
        b"",
    );
    assert_eq!(bad.status.code(), Some(2), "{}", bad.stderr);
}

#[test]
fn a_node_cut_off_from_redis_catches_up_on_the_changes_it_missed() {
    let _heavy = heavy();
    let Some(redis) = Redis::start("partition") else {
        return;
    };
    let (relay, a, b) = cut_off_pair(&redis);
    // Made on A while B cannot hear it.
    let (mut x, _) = a.chat_client();
    x.send(&format!("register(1,{}{})", s("gina"), s("password1")));
    assert!(answer(&mut x, 1).starts_with("registered(1,"));
    x.send(&format!("addchatroom(2,{}0,0,{})", s("kept"), s(PASSWORD)));
    assert!(answer(&mut x, 2).starts_with("chatroomcreated(2,"));
    relay.mend();
    eventually("node B is back", || healthy(&b));
    let (mut y, _) = b.chat_client();
    y.send(&format!("login(3,{}{})", s("gina"), s("password1")));
    assert_eq!(answer(&mut y, 3), "success(3,)");
    y.send("getchatroomlist(4)");
    let rooms = answer(&mut y, 4);
    assert!(rooms.contains(&s("kept")), "{rooms}");
}

#[test]
fn room_url_rooms_of_one_name_made_apart_become_one() {
    let _heavy = heavy();
    let Some(redis) = Redis::start("url_rooms_merge") else {
        return;
    };
    let (relay, a, b) = cut_off_pair(&redis);
    // Each node makes its own room "meet": neither can hear of the other's.
    let mut bob = a.client_at("/ws/chat/meet/?nickname=bob", None);
    assert_eq!(bob.recv(), "bob joined meet");
    let mut carol = b.client_at("/ws/chat/meet/?nickname=carol", None);
    assert_eq!(carol.recv(), "carol joined meet");
    relay.mend();
    // Both end up in the one with the smaller id, on both nodes.
    let meet_rooms = |server: &TestServer| -> Vec<u64> {
        let (_, body) = api(server, "/api/v1/rooms");
        body["rooms"]
            .as_array()
            .map(|rooms| {
                rooms
                    .iter()
                    .filter(|r| r["name"] == "meet")
                    .map(|r| r["members"].as_u64().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default()
    };
    eventually("one room meet with both, on both nodes", || {
        meet_rooms(&a) == [2] && meet_rooms(&b) == [2]
    });
    bob.send("anyone?");
    wait_for(&mut carol, "bob: anyone?");
    carol.send("here");
    wait_for(&mut bob, "carol: here");
}
