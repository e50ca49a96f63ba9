//! Faults and attacks from the fault checklist, against the real binary on loopback. Each test
//! is bounded in connections and time.

use std::io::{BufReader, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::{RawWs, TestServer, heavy};
use socket2::{Domain, SockRef, Socket, Type};

/// Raises this test process's open-file limit so it can hold many client sockets.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// A protocol command string with `s` length-prefixed the way protocol.md wants.
fn s(text: &str) -> String {
    format!("{},{text}", text.len())
}

/// Creates a persistent room (chatroomid 1, the first room of a fresh server) through a
/// protocol client, which is returned so it stays connected.
fn persistent_room(server: &TestServer, name: &str) -> crate::common::Client {
    let (mut owner, _) = server.chat_client();
    owner.send(&format!(
        "addchatroom(1,{},0,0,{},)",
        s(name),
        s(crate::common::PASSWORD)
    ));
    assert!(owner.recv().starts_with("chatroomcreated(1,1,"));
    owner
}

/// `n` raw clients that have sent `joinchatroom` for room 1.
fn room_members(addr: &str, n: usize) -> Vec<RawWs> {
    (0..n)
        .map(|_| {
            let mut ws = RawWs::connect(addr, "/");
            ws.read_text();
            ws.send_text("joinchatroom(1,1,0,0,)");
            ws
        })
        .collect()
}

/// A thread counting the `chat(` frames that arrive on `reader` until `expected` have come,
/// the connection ends, or two minutes pass.
fn count_chats(mut reader: impl Read + Send + 'static, expected: usize) -> JoinHandle<usize> {
    thread::spawn(move || {
        let mut chats = 0;
        let start = Instant::now();
        while chats < expected && start.elapsed() < Duration::from_secs(120) {
            let Some(f) = crate::common::read_frame_from(&mut reader) else {
                break;
            };
            if f.payload.starts_with(b"chat(") {
                chats += 1;
            }
        }
        chats
    })
}

#[test]
fn unmasked_client_frame_gets_1002() {
    let server = TestServer::start();
    let mut ws = RawWs::connect(&server.addr(), "/");
    assert!(ws.read_text().starts_with("yourchatclientid("));
    ws.send_raw(&RawWs::frame(true, 0x1, b"nop()", false));
    assert_eq!(ws.expect_close_code(), Some(1002));
    assert!(ws.closed_within(Duration::from_secs(5)));
}

#[test]
fn invalid_utf8_text_gets_1007() {
    let server = TestServer::start();
    let mut ws = RawWs::connect(&server.addr(), "/");
    ws.read_text();
    ws.send_raw(&RawWs::frame(true, 0x1, b"send(1,1,2,\xff\xfe)", true));
    assert_eq!(ws.expect_close_code(), Some(1007));
}

#[test]
fn garbage_after_handshake_gets_1002() {
    let server = TestServer::start();
    let mut ws = RawWs::connect(&server.addr(), "/");
    ws.read_text();
    ws.send_raw(b"GET / HTTP/1.1\r\nHost: smuggled\r\n\r\n");
    assert_eq!(ws.expect_close_code(), Some(1002));
}

#[test]
fn huge_frame_header_is_refused_without_allocating() {
    let server = TestServer::start();
    let before = server.rss_kib();
    let mut ws = RawWs::connect(&server.addr(), "/");
    ws.read_text();
    // A masked text frame header declaring 100 MB, followed by a few bytes only.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(100_000_000u64).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4, b'x', b'y']);
    ws.send_raw(&header);
    assert_eq!(ws.expect_close_code(), Some(1009));
    let after = server.rss_kib();
    assert!(
        after < before + 10_000,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn message_over_the_limit_gets_1009() {
    let server = TestServer::start();
    let mut ws = RawWs::connect(&server.addr(), "/");
    ws.read_text();
    let big = vec![b'a'; 64 * 1024 + 1];
    ws.send_raw(&RawWs::frame(true, 0x1, &big, true));
    assert_eq!(ws.expect_close_code(), Some(1009));

    // Exactly at the limit is fine (and gets the unknown-command error).
    let mut ok = RawWs::connect(&server.addr(), "/");
    ok.read_text();
    ok.send_raw(&RawWs::frame(true, 0x1, &big[1..], true));
    assert_eq!(ok.read_text(), "error(32,That message was not understood.)");
}

#[test]
fn fragment_bomb_is_cut_off() {
    let _serial = heavy();
    let server = TestServer::start();
    let mut ws = RawWs::connect(&server.addr(), "/");
    ws.read_text();
    let writer = ws.stream.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    // Endless empty continuation frames after a 1-byte opening fragment: no size limit is ever
    // reached by the payload, only by the wire bytes.
    let bomber = thread::spawn(move || {
        let mut w = writer;
        let mut batch = RawWs::frame(false, 0x1, b"n", true);
        let empty = RawWs::frame(false, 0x0, b"", true);
        for _ in 0..1000 {
            batch.extend_from_slice(&empty);
        }
        let start = Instant::now();
        while !flag.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(10) {
            if std::io::Write::write_all(&mut w, &batch).is_err() {
                break;
            }
            batch = empty.repeat(1000);
        }
    });
    let code = ws.expect_close_code();
    done.store(true, Ordering::Relaxed);
    bomber.join().unwrap();
    assert_eq!(code, Some(1009));
    // The server is still serving.
    let (mut c, _) = server.chat_client();
    c.send("getchatroomlist(1)");
    assert_eq!(c.recv(), "chatroomlist(1,)");
}

#[test]
fn frames_pipelined_with_the_handshake_are_not_lost() {
    let server = TestServer::start();
    let mut pipelined = RawWs::frame(true, 0x1, b"getchatroomlist(5)", true);
    pipelined.extend(RawWs::frame(true, 0x1, b"getchatroomlist(6)", true));
    let mut ws = RawWs::connect_with(&server.addr(), "/", &pipelined);
    assert!(ws.read_text().starts_with("yourchatclientid("));
    assert_eq!(ws.read_text(), "chatroomlist(5,)");
    assert_eq!(ws.read_text(), "chatroomlist(6,)");
}

#[test]
fn abrupt_reset_mid_frame_cleans_up_membership() {
    let server = TestServer::start();
    let (mut a, _) = server.chat_client();
    a.send(&format!("addchatroom(1,{},0,0,0,)", s("lobby")));
    assert!(a.recv().starts_with("chatroomcreated(1,1,"));

    let mut b = RawWs::connect(&server.addr(), "/");
    let greeting = b.read_text();
    let b_id: u64 = greeting[17..greeting.len() - 2].parse().unwrap();
    b.send_text("joinchatroom(2,1,0,0,)");
    assert!(b.read_text().starts_with("userjoinedchatroom(2,1,"));
    assert!(a.recv().starts_with("userjoinedchatroom(2,1,"));

    // Half a frame, then RST (SO_LINGER 0).
    let frame = RawWs::frame(true, 0x1, b"send(3,1,5,hello)", true);
    b.send_raw(&frame[..6]);
    SockRef::from(&b.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(b);

    assert_eq!(a.recv(), format!("userleftchatroom(0,1,{b_id},0,0,1,)"));
    a.send("getchatroomlist(4)");
    assert_eq!(a.recv(), format!("chatroomlist(4,1,{}9,1,)", s("lobby")));
}

#[test]
fn close_handshake_stall_is_cut_after_the_close_timeout() {
    let server = TestServer::start();
    let mut ws = RawWs::connect(&server.addr(), "/");
    ws.read_text();
    ws.send_raw(&RawWs::frame(true, 0x8, &1000u16.to_be_bytes(), true));
    assert_eq!(ws.expect_close_code(), Some(1000));
    // We never close our side; the server must not wait forever.
    let start = Instant::now();
    assert!(ws.closed_within(Duration::from_secs(5)));
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn silent_clients_are_pinged_then_closed() {
    let server = TestServer::start_with(&["--ping-interval", "1", "--idle-timeout", "3"]);
    let mut ws = RawWs::connect(&server.addr(), "/");
    ws.read_text();
    let ping = ws.read_frame().expect("a ping");
    assert_eq!(ping.opcode, 0x9);
    // No pong: closed as idle with 1001.
    assert_eq!(ws.expect_close_code(), Some(1001));

    // A client that answers pings stays.
    let (mut live, _) = server.chat_client();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        live.expect_silence(Duration::from_millis(200)); // reading answers pings
    }
    live.send("getchatroomlist(1)");
    assert_eq!(live.recv(), "chatroomlist(1,)");
}

#[test]
fn slowloris_heads_time_out_while_others_chat() {
    let _serial = heavy();
    raise_fd_limit();
    let server = TestServer::start_with(&["--handshake-timeout", "2"]);
    let stalled: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // A well-behaved client still gets in and chats at once.
    let start = Instant::now();
    let (mut c, _) = server.chat_client();
    c.send("getchatroomlist(1)");
    assert_eq!(c.recv(), "chatroomlist(1,)");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    // Every stalled connection is closed after the handshake timeout.
    thread::sleep(Duration::from_millis(2500));
    for s in stalled {
        let mut ws = RawWs { stream: s };
        assert!(ws.closed_within(Duration::from_secs(3)));
    }
}

#[test]
fn connection_cap_refuses_extra_clients_and_keeps_serving() {
    let server = TestServer::start_with(&["--max-connections", "5"]);
    let mut clients: Vec<_> = (0..5).map(|_| server.chat_client().0).collect();
    let mut extra = TcpStream::connect(server.addr()).unwrap();
    std::io::Write::write_all(&mut extra, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut extra = RawWs { stream: extra };
    assert!(extra.closed_within(Duration::from_secs(3)));
    clients[0].send("getchatroomlist(1)");
    assert_eq!(clients[0].recv(), "chatroomlist(1,)");
    drop(clients.pop());
    // A freed slot is usable again.
    thread::sleep(Duration::from_millis(200));
    let (mut again, _) = server.chat_client();
    again.send("getchatroomlist(2)");
    assert_eq!(again.recv(), "chatroomlist(2,)");
}

#[test]
fn flooding_client_gets_errors_then_1008() {
    let server = TestServer::start_with(&["--rate-limit", "10", "--rate-burst", "20"]);
    let mut ws = RawWs::connect(&server.addr(), "/");
    ws.read_text();
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(RawWs::frame(
            true,
            0x1,
            format!("getchatroomlist({i})").as_bytes(),
            true,
        ));
    }
    ws.send_raw(&batch);
    let mut lists = 0;
    let mut refusals = 0;
    let mut answered = 0;
    let code = loop {
        let f = ws.read_frame().expect("frame");
        match f.opcode {
            0x1 if f.payload.starts_with(b"chatroomlist(") => {
                lists += 1;
                answered += 1;
            }
            0x1 => {
                // Each refusal names the message it refuses, so a pipelining client knows
                // which ones to send again.
                let want = format!("error(29,Too many messages; slow down.{answered},)");
                assert_eq!(String::from_utf8_lossy(&f.payload), want);
                refusals += 1;
                answered += 1;
            }
            0x8 => break f.close_code(),
            _ => {}
        }
    };
    assert_eq!(code, Some(1008));
    assert!((20..=22).contains(&lists), "{lists} accepted");
    assert!(refusals >= 20, "{refusals} refusals");
}

#[test]
fn slow_reader_is_cut_off_while_the_room_keeps_flowing() {
    let _serial = heavy();
    const SENDERS: usize = 50;
    const PER_SENDER: usize = 100;
    let server = TestServer::start();
    let addr = server.addr();

    // The owner is a member too: it reads (and drops) everything, so that the only client
    // that does not read is the slow one.
    let owner = persistent_room(&server, "busy");
    let owner_stream = owner.ws.get_ref().try_clone().unwrap();
    let _owner_drain = thread::spawn(move || {
        let mut s = owner_stream;
        let mut buf = [0u8; 64 * 1024];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });

    // The slow reader: tiny receive buffer, joins, then never reads again.
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    let mut slow = RawWs::handshake(sock.into(), "/", b"");
    slow.read_text();
    slow.send_text("joinchatroom(1,1,0,0,)");
    assert!(slow.read_text().starts_with("userjoinedchatroom(1,1,"));

    let rss_peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, on, pid) = (rss_peak.clone(), sampling.clone(), server.pid());
        thread::spawn(move || {
            while on.load(Ordering::Relaxed) {
                if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    let kib = st
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                        .unwrap_or(0);
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // Senders join first, then all chat at once: each has a reader thread that counts the
    // chat lines it receives, so none of them is slow.
    let mut senders = room_members(&addr, SENDERS);
    let expected = SENDERS * PER_SENDER;
    let readers: Vec<_> = senders
        .iter()
        .map(|ws| count_chats(ws.stream.try_clone().unwrap(), expected))
        .collect();
    thread::sleep(Duration::from_millis(300)); // let every join settle
    let payload = "x".repeat(1000);
    let start = Instant::now();
    for round in 0..PER_SENDER {
        for ws in &mut senders {
            ws.send_text(&format!("send({round},1,{})", s(&payload)));
        }
        // 50 messages/s per sender: well inside the default rate limit.
        thread::sleep(Duration::from_millis(20));
    }
    for r in readers {
        assert_eq!(
            r.join().unwrap(),
            expected,
            "a healthy member lost messages"
        );
    }
    let elapsed = start.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();

    // The slow member was cut off; nobody else was.
    assert!(
        slow.closed_within(Duration::from_secs(10)),
        "slow reader still connected"
    );
    let log = server.wait_for_log("closing as a slow consumer");
    assert_eq!(
        log.matches("closing as a slow consumer").count(),
        1,
        "{log}"
    );
    let peak = rss_peak.load(Ordering::Relaxed);
    assert!(peak < 100 * 1024, "server RSS peaked at {peak} KiB");
    assert!(
        elapsed < Duration::from_secs(30),
        "room stalled: {elapsed:?}"
    );
}

#[test]
fn ten_thousand_idle_connections_fit_in_a_small_budget() {
    let _serial = heavy();
    const N: usize = 10_000;
    raise_fd_limit();
    let server = TestServer::start();
    let (mut probe, _) = server.chat_client();
    probe.send("getchatroomlist(1)");
    assert_eq!(probe.recv(), "chatroomlist(1,)");
    let before = server.rss_kib();

    let start = Instant::now();
    let mut idle: Vec<RawWs> = Vec::with_capacity(N);
    for _ in 0..N {
        let mut ws = RawWs::connect(&server.addr(), "/");
        assert!(ws.read_text().starts_with("yourchatclientid("));
        idle.push(ws);
    }
    let connect_time = start.elapsed();
    let after = server.rss_kib();
    let per_conn = (after.saturating_sub(before)) * 1024 / N as u64;
    println!(
        "{N} idle connections: connected in {connect_time:?}, server RSS {before} KiB -> \
         {after} KiB, {per_conn} bytes per connection"
    );
    assert!(
        per_conn <= 4 * 1024,
        "{per_conn} bytes of RSS per idle connection"
    );

    // Still serving, promptly.
    let t = Instant::now();
    probe.send("getchatroomlist(2)");
    assert_eq!(probe.recv(), "chatroomlist(2,)");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "reply took {:?}",
        t.elapsed()
    );
}

#[test]
fn sigterm_under_load_closes_everyone_and_exits() {
    let _serial = heavy();
    const CLIENTS: usize = 50;
    let mut server = TestServer::start();
    let _owner = persistent_room(&server, "load");
    let clients = room_members(&server.addr(), CLIENTS);
    // Every client chats continuously from its own thread and reads on another one.
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for mut ws in clients {
        let mut writer = ws.stream.try_clone().unwrap();
        let stop = stop.clone();
        threads.push(thread::spawn(move || {
            let frame = RawWs::frame(
                true,
                0x1,
                format!("send(1,1,{})", s("tick")).as_bytes(),
                true,
            );
            while !stop.load(Ordering::Relaxed) {
                if std::io::Write::write_all(&mut writer, &frame).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            None
        }));
        threads.push(thread::spawn(move || {
            // Read until the close frame; report its code.
            loop {
                match ws.read_frame() {
                    Some(f) if f.opcode == 0x8 => return f.close_code(),
                    Some(_) => continue,
                    None => return Some(0),
                }
            }
        }));
    }
    thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let status = server
        .terminate(Duration::from_secs(5))
        .expect("server hung on SIGTERM");
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    let codes: Vec<Option<u16>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let closes = codes.iter().filter(|c| **c == Some(1001)).count();
    assert_eq!(closes, CLIENTS, "close codes seen: {codes:?}");
}

#[test]
fn overload_slows_senders_instead_of_cutting_readers_off() {
    const MEMBERS: usize = 20;
    const SENDERS: usize = 10;
    const PER_SENDER: usize = 2000;
    let _serial = heavy();
    let server = TestServer::start_with(&["--rate-limit", "0"]);
    let addr = server.addr();
    let _owner = persistent_room(&server, "flood");
    let members = room_members(&addr, MEMBERS);
    let expected = SENDERS * PER_SENDER;
    // Buffered: these readers keep up with the server, only the senders are too fast.
    let readers: Vec<_> = members
        .iter()
        .map(|ws| {
            let stream = ws.stream.try_clone().unwrap();
            count_chats(BufReader::with_capacity(1 << 16, stream), expected)
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    // Every sender writes all its messages at once, as fast as TCP takes them.
    let frame = RawWs::frame(
        true,
        0x1,
        format!("send(1,1,{})", s(&"y".repeat(200))).as_bytes(),
        true,
    );
    let blasts: Vec<_> = members[..SENDERS]
        .iter()
        .map(|ws| {
            let mut w = ws.stream.try_clone().unwrap();
            let batch = frame.repeat(PER_SENDER);
            thread::spawn(move || std::io::Write::write_all(&mut w, &batch).unwrap())
        })
        .collect();
    for b in blasts {
        b.join().unwrap();
    }
    for r in readers {
        assert_eq!(r.join().unwrap(), expected, "a reader lost messages");
    }
    let log = server.log();
    assert!(
        !log.contains("slow consumer"),
        "healthy readers were cut off:\n{log}"
    );
}
