//! What survives a restart and a `kill -9` (`docs/protocol.md` §10–§11), against the real
//! binary with a real SQLite file in a temporary directory, and how the server deals with a
//! data file it cannot use.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::common::{CHEAP_HASHES, Client, PASSWORD, TempDir, TestServer, heavy};

/// A server keeping its state in `dir`'s `chat.db`.
fn durable(dir: &TempDir) -> TestServer {
    TestServer::start_with(&["--data", &dir.file("chat.db")])
}

fn says(c: &mut Client, msg: &str, want: &str) {
    c.send(msg);
    assert_eq!(c.recv(), want, "after {msg}");
}

/// A string field: its byte length, a comma, the bytes (and no comma after).
fn s(text: &str) -> String {
    format!("{},{text}", text.len())
}

#[test]
fn users_rooms_snaps_queues_and_counters_survive_a_restart() {
    let dir = TempDir::new("restart");
    let mut server = durable(&dir);
    let (mut a, _) = server.chat_client();
    says(&mut a, "register(1,5,alice8,password)", "registered(1,1,)");
    says(&mut a, "login(2,5,alice8,password)", "success(2,)");
    says(&mut a, "adduser(3,42,3,bob9,password22,pw)", "success(3,)");
    says(
        &mut a,
        "addchatroom(4,5,lobby9,question?11,open-sesame2,pw)",
        "chatroomcreated(4,1,5,lobby5,1,)",
    );
    says(
        &mut a,
        "addchatroom(5,4,temp0,0,0,)",
        "chatroomcreated(5,2,4,temp9,1,)",
    );
    says(&mut a, "sendsnap(6,42,3600,5,4,snap)", "snap_sent(6,1,)");
    says(&mut a, "sendto(7,0,42,5,later)", "queued(7,)");
    assert!(server.terminate(Duration::from_secs(5)).is_some());

    let server = durable(&dir);
    let (mut b, id) = server.chat_client();
    assert_eq!(id, 1, "chatclientids count from 1 again");
    b.send("login(1,3,bob9,password2)");
    assert_eq!(b.recv(), "success(1,)");
    let offline = b.recv();
    assert!(
        offline.starts_with("offlinemsg(1,5,alice") && offline.ends_with(",5,later)"),
        "{offline}"
    );
    // The persistent room is back with its id, name and question; the temporary one is not.
    says(
        &mut b,
        "getchatroomlist(2)",
        "chatroomlist(2,1,5,lobby4,0,)",
    );
    says(
        &mut b,
        "getchatroomdetails(3,1)",
        "chatroomdetails(3,1,5,lobby4,0,9,question?)",
    );
    // Its answer was stored only as a hash, and still works.
    says(
        &mut b,
        "joinchatroom(4,1,0,5,wrong)",
        "error(29,Sorry. That answer was wrong.4,)",
    );
    says(
        &mut b,
        "joinchatroom(5,1,0,11,open-sesame)",
        "userjoinedchatroom(5,1,1,42,3,bob1,)",
    );
    b.send("getsnaps(6)");
    assert_eq!(b.recv(), "success(6,)");
    let snap = b.recv();
    assert!(
        snap.starts_with("snap(1,42,1,") && snap.ends_with(",0,5,4,snap)"),
        "{snap}"
    );
    // No id is handed out again: users, snaps, rooms (not even the temporary room's).
    says(&mut b, "register(7,5,carol8,password)", "registered(7,43,)");
    says(&mut b, "sendsnap(8,1,0,0,1,x)", "snap_sent(8,2,)");
    b.send("addchatroom(9,4,next0,0,0,)");
    let created = b.recv();
    let room: u64 = created
        .strip_prefix("chatroomcreated(9,")
        .and_then(|r| r.split(',').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{created}"));
    assert!(
        room > 2,
        "chatroomid {room} was handed out before the restart"
    );
    // Passwords are kept only as argon2id hashes.
    let db = std::fs::read(dir.0.join("chat.db")).unwrap();
    let wal = std::fs::read(dir.0.join("chat.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("password2"), "a password in clear");
        assert!(!text.contains("open-sesame"), "a room answer in clear");
    }
    let (mut a, _) = server.chat_client();
    says(&mut a, "login(1,5,alice8,password)", "success(1,)");
}

#[test]
fn snaps_still_expire_on_time_after_a_restart() {
    let dir = TempDir::new("expiry");
    let mut server = durable(&dir);
    let (mut a, _) = server.chat_client();
    says(&mut a, "register(1,3,ann8,password)", "registered(1,1,)");
    says(&mut a, "login(2,3,ann8,password)", "success(2,)");
    let sent = Instant::now();
    says(&mut a, "sendsnap(3,1,4,0,5,brief)", "snap_sent(3,1,)");
    assert!(server.terminate(Duration::from_secs(5)).is_some());
    let server = durable(&dir);
    let (mut a, _) = server.chat_client();
    says(&mut a, "login(1,3,ann8,password)", "success(1,)");
    // Expiry is a matter of time: poll (bounded) until the snap is gone.
    let gone = loop {
        a.send("getsnaps(2)");
        assert_eq!(a.recv(), "success(2,)");
        a.send("nop()");
        a.send("getchatroomdetails(9,999)");
        let next = a.recv();
        if next.starts_with("error(") {
            break sent.elapsed();
        }
        assert!(next.starts_with("snap(1,1,1,"), "{next}");
        assert_eq!(a.recv(), "error(27,That chatroom wasn't found.9,)");
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "the snap never expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        gone >= Duration::from_secs(3),
        "gone after {gone:?}, before its 4 s"
    );
}

/// A tiny deterministic generator, so a failing run can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// What clients were told happened, to be found again after the crash.
#[derive(Default)]
struct Acked {
    /// (userid, name, password)
    users: Vec<(u64, String, String)>,
    /// (chatroomid, name)
    rooms: Vec<(u64, String)>,
    /// snapids sent to the sink user
    snaps: Vec<u64>,
    /// texts queued for the sink user (and not yet handed over)
    queued: Vec<String>,
    /// queued messages handed over, each exactly once, so far
    delivered: usize,
    /// the texts of those, to catch one handed over twice
    handed_over: std::collections::HashSet<String>,
}

#[test]
fn nothing_acknowledged_is_lost_to_kill_9() {
    let _serial = heavy();
    const LOOPS: u64 = 20;
    const WRITERS: u64 = 3;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill -9 loop: seed {seed}");
    let mut rng = Rng(seed);
    let dir = TempDir::new("crash");
    let mut all = Acked::default();
    // The recipient of snaps and queued messages: never logged in while writers run.
    {
        let server = durable(&dir);
        let (mut c, _) = server.chat_client();
        says(&mut c, "register(1,4,sink8,password)", "registered(1,1,)");
    }
    let mut checked = 0;
    for round in 0..LOOPS {
        let mut server = durable(&dir);
        let addr = server.addr();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let addr = addr.clone();
                std::thread::spawn(move || write_until_killed(&addr, round, w))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100 + rng.next(400)));
        server.kill9();
        for w in writers {
            let acked = w.join().unwrap();
            all.users.extend(acked.users);
            all.rooms.extend(acked.rooms);
            all.snaps.extend(acked.snaps);
            all.queued.extend(acked.queued);
        }
        // Everything acknowledged so far is there after the restart.
        let server = durable(&dir);
        checked += verify(&server, &mut all);
    }
    println!(
        "kill -9 loop: {LOOPS} kills, {} users, {} rooms, {} snaps checked after each restart; \
         {} queued messages delivered once; {checked} checks",
        all.users.len(),
        all.rooms.len(),
        all.snaps.len(),
        all.delivered
    );
    assert!(
        all.users.len() >= LOOPS as usize,
        "the writers got too little done"
    );
}

/// One writer: registers a user, then creates persistent rooms, sends snaps and queues
/// messages for the sink, recording each acknowledgement, until the server dies.
fn write_until_killed(addr: &str, round: u64, writer: u64) -> Acked {
    let mut acked = Acked::default();
    // Every writer hears every room created; its own replies carry its own messageids.
    let base = (writer + 1) * 1_000_000;
    let Some(mut c) = Client::try_connect(addr) else {
        return acked;
    };
    let name = format!("w{round}-{writer}");
    let password = format!("pw-{round}-{writer}-secret");
    let register = format!("register({},{}{})", base + 1, s(&name), s(&password));
    let Some(reply) = c.try_reply(&register, base + 1) else {
        return acked;
    };
    let Some(id) = reply
        .strip_prefix(&format!("registered({},", base + 1))
        .and_then(|r| r.strip_suffix(",)"))
        .and_then(|r| r.parse().ok())
    else {
        panic!("register: {reply}");
    };
    acked.users.push((id, name.clone(), password.clone()));
    let login = format!("login({},{}{})", base + 2, s(&name), s(&password));
    if c.try_reply(&login, base + 2).is_none() {
        return acked;
    }
    for i in (base + 3).. {
        let room = format!("r{round}-{writer}-{i}");
        let create = format!("addchatroom({i},{}0,0,{})", s(&room), s(PASSWORD));
        let Some(reply) = c.try_reply(&create, i) else {
            return acked;
        };
        let id = reply
            .strip_prefix(&format!("chatroomcreated({i},"))
            .and_then(|r| r.split(',').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("addchatroom: {reply}"));
        acked.rooms.push((id, room));
        let text = format!("m{round}-{writer}-{i}");
        let Some(reply) = c.try_reply(&format!("sendsnap({i},1,0,0,{})", s(&text)), i) else {
            return acked;
        };
        let snap = reply
            .strip_prefix(&format!("snap_sent({i},"))
            .and_then(|r| r.strip_suffix(",)"))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("sendsnap: {reply}"));
        acked.snaps.push(snap);
        let Some(reply) = c.try_reply(&format!("sendto({i},0,1,{})", s(&text)), i) else {
            return acked;
        };
        assert_eq!(reply, format!("queued({i},)"));
        acked.queued.push(text);
    }
    acked
}

/// Checks that everything in `all` is on the restarted server; hands the queued messages
/// over (so they are expected no more). Returns the number of checks made.
fn verify(server: &TestServer, all: &mut Acked) -> usize {
    let (mut c, _) = server.chat_client();
    let mut checks = 0;
    for (i, (id, name, password)) in all.users.iter().enumerate() {
        let m = i + 1;
        says(
            &mut c,
            &format!("login({m},{}{})", s(name), s(password)),
            &format!("success({m},)"),
        );
        says(&mut c, "logout(0,0)", "success(0,)");
        assert!(*id > 1);
        checks += 1;
    }
    c.send("getchatroomlist(1)");
    let list = c.recv();
    for (id, name) in &all.rooms {
        let entry = format!(",{id},{}0,0,", s(name));
        assert!(list.contains(&entry), "room {id} {name} lost: {list:.300}");
        checks += 1;
    }
    // The sink's queued messages, then its snaps. A change committed just before the kill
    // may be there although its reply never arrived; an acknowledged one must be.
    const PROBE: &str = "getchatroomdetails(9,0)";
    const PROBE_REPLY: &str = "error(27,That chatroom wasn't found.9,)";
    let until_probe = |c: &mut Client| {
        c.send(PROBE);
        let mut got = Vec::new();
        loop {
            let m = c.recv();
            if m == PROBE_REPLY {
                return got;
            }
            got.push(m);
        }
    };
    says(&mut c, "login(2,4,sink8,password)", "success(2,)");
    let mut delivered: Vec<String> = until_probe(&mut c)
        .into_iter()
        .map(|m| {
            assert!(m.starts_with("offlinemsg("), "{m}");
            let (_, text) = m.rsplit_once(',').unwrap();
            text.trim_end_matches(')').to_string()
        })
        .collect();
    delivered.sort();
    for text in &delivered {
        assert!(
            all.handed_over.insert(text.clone()),
            "{text} handed over twice"
        );
    }
    for text in &all.queued {
        assert!(delivered.binary_search(text).is_ok(), "queued {text} lost");
    }
    checks += delivered.len();
    all.delivered += delivered.len();
    all.queued.clear();
    c.send("getsnaps(3)");
    assert_eq!(c.recv(), "success(3,)");
    let mut snaps: Vec<u64> = until_probe(&mut c)
        .iter()
        .map(|snap| {
            snap.strip_prefix("snap(")
                .and_then(|r| r.split(',').next())
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("{snap}"))
        })
        .collect();
    snaps.sort_unstable();
    for id in &all.snaps {
        assert!(
            snaps.binary_search(id).is_ok(),
            "acknowledged snap {id} lost"
        );
    }
    checks += all.snaps.len();
    // New ids continue above every acknowledged one.
    let top = all.users.iter().map(|u| u.0).max().unwrap_or(1);
    c.send("register(4,1,x8,password)");
    let reply = c.recv();
    if let Some(id) = reply
        .strip_prefix("registered(4,")
        .and_then(|r| r.strip_suffix(",)"))
        .and_then(|r| r.parse::<u64>().ok())
    {
        assert!(id > top, "userid {id} not above {top}");
        all.users.push((id, "x".into(), "password".into()));
    }
    checks
}

#[test]
fn a_data_file_that_cannot_be_used_stops_the_start_with_one_line() {
    let dir = TempDir::new("bad");
    let start = |data: &str| {
        crate::common::run_websocket(
            &["0", "pw", "--bind", "127.0.0.1", "--data", data],
            &[],
            b"",
        )
    };
    let one_line = |out: &crate::common::Finished, file: &str, cause: &str| {
        assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("data file {file}: ")),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(cause), "{}", out.stderr);
    };
    // Not a database.
    let corrupt = dir.file("corrupt.db");
    std::fs::write(&corrupt, vec![0xA5u8; 8192]).unwrap();
    one_line(&start(&corrupt), &corrupt, "not a database");
    // A directory, not a file.
    let sub = dir.file("sub");
    std::fs::create_dir(&sub).unwrap();
    one_line(&start(&sub), &sub, "Is a directory");
    // In use by a running server.
    let shared = dir.file("shared.db");
    let _first = TestServer::start_with(&["--data", &shared]);
    one_line(&start(&shared), &shared, "another process is using it");
}

#[test]
fn a_read_only_directory_stops_the_start_with_one_line() {
    // Permissions do not bind root: the server runs as `nobody` in a directory it may not write.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED a_read_only_directory...: needs root to run the server as nobody");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    // A copy of the binary that `nobody` can reach: the checkout may sit in a folder only its
    // owner may enter.
    let bin_dir = TempDir::new("readonly-bin");
    std::fs::set_permissions(&bin_dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.file("websocket");
    std::fs::copy(env!("CARGO_BIN_EXE_websocket"), &bin).unwrap();
    let dir = TempDir::new("readonly");
    let data = dir.file("chat.db");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = std::process::Command::new(&bin)
        .args(["0", "pw", "--bind", "127.0.0.1", "--data", &data])
        .args(CHEAP_HASHES)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Permission denied")
        && stderr.contains("os error 13")
        && !stderr.contains("data file")
    {
        println!("SKIPPED a_read_only_directory...: nobody cannot run the test binary here");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("data file {data}: ")), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_full_disk_refuses_changes_and_keeps_serving() {
    let dir = TempDir::new("full");
    let data = dir.file("chat.db");
    // RLIMIT_FSIZE stands in for a full disk: writes past 256 KiB fail with EFBIG.
    let server = TestServer::launch_configured(
        &[
            &["0", PASSWORD, "--bind", "127.0.0.1", "--data", &data][..],
            &CHEAP_HASHES[..],
        ]
        .concat(),
        &[],
        |command| unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 256 * 1024,
                    rlim_max: 256 * 1024,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        },
    );
    let (mut c, _) = server.chat_client();
    let big = "x".repeat(16 * 1024);
    let mut failed = None;
    for i in 1..200 {
        let name = format!("u{i}");
        // A long password makes each commit large, so the limit is reached quickly.
        c.send(&format!("register({i},{}{})", s(&name), s(&big[..1024])));
        let reply = c.recv();
        if reply.starts_with("error(") {
            assert_eq!(
                reply,
                format!("error(33,Server storage failed; try again.{i},)")
            );
            failed = Some(name);
            break;
        }
        assert_eq!(reply, format!("registered({i},{i},)"));
        c.send(&format!("sendsnap(0,{i},0,0,{})", s(&big)));
        let reply = c.recv();
        if reply.starts_with("error(") {
            assert!(reply.starts_with("error(37,"), "{reply}");
        }
    }
    let failed = failed.expect("the file never reached its limit");
    // The refused change did not happen.
    c.send(&format!("findusers(500,{})", s(&failed)));
    assert_eq!(c.recv(), "foundusers(500,0,)");
    // Chat goes on.
    says(
        &mut c,
        "addchatroom(501,1,r0,0,0,)",
        "chatroomcreated(501,1,1,r9,1,)",
    );
    says(&mut c, "send(502,1,2,ok)", "chat(502,1,1,0,2,ok)");
    // The store says why in the log (read from the server's stderr as it comes).
    server.wait_for_log("failed:");
}
