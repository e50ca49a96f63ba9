//! Room history and resume (`docs/protocol.md` §12) against the real binary: paging, resuming
//! after a disconnect, what is kept (size, age, restarts, `kill -9`), bad input, and the same
//! history seen from every dialect.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Client, TIMEOUT, TempDir, TestServer};

/// One kept message as a `history(...)` reply lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kept {
    seq: u64,
    client: u64,
    user: u64,
    name: String,
    sent: u64,
    text: String,
}

/// Reads the command protocol's fields: numbers end with `,`, strings are `len,bytes`.
struct Fields<'a>(&'a str);

impl Fields<'_> {
    fn num(&mut self) -> u64 {
        let (n, rest) = self.0.split_once(',').expect("a number field");
        self.0 = rest;
        n.parse().unwrap_or_else(|_| panic!("not a number: {n:?}"))
    }

    fn str(&mut self) -> String {
        let len = self.num() as usize;
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        s.to_string()
    }
}

/// `history(M,R,epoch,[seq,C,U,username,datesent,message]…)` → (epoch, messages).
fn parse_history(reply: &str) -> (u64, Vec<Kept>) {
    let body = reply
        .strip_prefix("history(")
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a history reply: {reply:?}"));
    let mut f = Fields(body);
    let (_mid, _room, epoch) = (f.num(), f.num(), f.num());
    let mut messages = Vec::new();
    while !f.0.is_empty() {
        messages.push(Kept {
            seq: f.num(),
            client: f.num(),
            user: f.num(),
            name: f.str(),
            sent: f.num(),
            text: f.str(),
        });
    }
    (epoch, messages)
}

/// `chatseq(M,R,C,U,epoch,seq,message)` → (epoch, seq, message).
fn parse_chatseq(line: &str) -> Option<(u64, u64, String)> {
    let body = line.strip_prefix("chatseq(")?.strip_suffix(')')?;
    let mut f = Fields(body);
    let (_mid, _room, _client, _user) = (f.num(), f.num(), f.num(), f.num());
    Some((f.num(), f.num(), f.str()))
}

fn says(c: &mut Client, msg: &str, want: &str) {
    c.send(msg);
    assert_eq!(c.recv(), want, "after {msg}");
}

/// A string field.
fn s(text: &str) -> String {
    format!("{},{text}", text.len())
}

/// Sends `texts` to room `room` from a protocol client, pipelined in runs of 100, reading its
/// own `chat` back (so the server has numbered each before this returns).
fn send_all(c: &mut Client, room: u64, texts: impl IntoIterator<Item = String>) {
    let texts: Vec<String> = texts.into_iter().collect();
    for run in texts.chunks(100) {
        for t in run {
            c.send(&format!("send(1,{room},{})", s(t)));
        }
        for t in run {
            // Others coming and going meanwhile is not an echo.
            let echo = loop {
                let line = c.recv();
                if line.starts_with("chat(") {
                    break line;
                }
            };
            assert!(echo.ends_with(&format!(",{})", s(t))), "{echo} for {t}");
        }
    }
}

/// The page `gethistory(M,R,before,limit)` answers.
fn page(c: &mut Client, room: u64, before: u64, limit: u64) -> (u64, Vec<Kept>) {
    c.send(&format!("gethistory(9,{room},{before},{limit})"));
    parse_history(&c.recv())
}

/// Resumes from (epoch, seq): the messages sent, each reply at most 100, and the flag.
fn resume(c: &mut Client, room: u64, epoch: u64, seq: u64) -> (Vec<Kept>, u64) {
    c.send(&format!("resume(8,{room},{epoch},{seq})"));
    let mut got = Vec::new();
    loop {
        let line = c.recv();
        if let Some(flag) = line.strip_prefix(&format!("recovered(8,{room},")) {
            return (got, flag.trim_end_matches(",)").parse().unwrap());
        }
        let (e, messages) = parse_history(&line);
        assert_eq!(e, epoch);
        assert!(!messages.is_empty() && messages.len() <= 100, "{line}");
        got.extend(messages);
    }
}

/// A persistent room `lobby` (id 1) with `c` in it.
fn lobby(c: &mut Client) {
    says(
        c,
        "addchatroom(1,5,lobby0,0,2,pw)",
        "chatroomcreated(1,1,5,lobby1,1,)",
    );
}

/// The epoch of room 1, from an empty-enough page.
fn epoch_of(c: &mut Client) -> u64 {
    page(c, 1, 0, 1).0
}

#[test]
fn paging_through_ten_thousand_messages_backwards_and_forwards() {
    let server = TestServer::start_with(&["--rate-limit", "0", "--history-size", "10000"]);
    let (mut a, _) = server.chat_client();
    lobby(&mut a);
    send_all(&mut a, 1, (1..=10_000).map(|i| format!("m{i}")));
    // Backwards, a page at a time, from the newest.
    let (epoch, mut newest) = page(&mut a, 1, 0, 0);
    assert_eq!(newest.len(), 100, "a limit of 0 means 100");
    let mut seen = Vec::new();
    loop {
        let oldest = newest.first().map(|m| m.seq);
        seen.extend(newest.into_iter().rev());
        let Some(before) = oldest else { break };
        let (e, older) = page(&mut a, 1, before, 77);
        assert_eq!(e, epoch);
        newest = older;
    }
    let seqs: Vec<u64> = seen.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=10_000).rev().collect::<Vec<_>>());
    assert!(seen.iter().all(|m| m.text == format!("m{}", m.seq)));
    // Forwards: a resume from 0 sends everything, oldest first, in replies of at most 100.
    let (all, flag) = resume(&mut a, 1, epoch, 0);
    assert_eq!(flag, 1);
    let seqs: Vec<u64> = all.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=10_000).collect::<Vec<_>>());
    // And from the middle.
    let (rest, flag) = resume(&mut a, 1, epoch, 9_950);
    assert_eq!((rest.len(), flag), (50, 1));
    assert_eq!(rest[0].seq, 9_951);
}

#[test]
fn resume_after_a_disconnect_during_a_burst_recovers_every_message_once_in_order() {
    const N: u64 = 3_000;
    let server = TestServer::start_with(&["--rate-limit", "0", "--history-size", "5000"]);
    let (mut a, _) = server.chat_client();
    lobby(&mut a);
    let (mut r, _) = server.chat_client();
    says(&mut r, "sequenced(2,1)", "success(2,)");
    r.send("joinchatroom(3,1,0,0,)");
    assert!(r.recv().starts_with("userjoinedchatroom(3,1,"));
    assert!(a.recv().starts_with("userjoinedchatroom(3,1,"));

    // The sender keeps sending while the reader goes away and comes back.
    let sender = thread::spawn(move || {
        send_all(&mut a, 1, (1..=N).map(|i| format!("m{i}")));
        a
    });
    let mut got: Vec<(u64, String)> = Vec::new();
    let mut epoch = 0;
    while got.len() < 200 {
        let line = r.recv();
        let (e, seq, text) = parse_chatseq(&line).unwrap_or_else(|| panic!("{line}"));
        epoch = e;
        got.push((seq, text));
    }
    drop(r); // mid-burst: the connection is gone.
    let (mut r, _) = server.chat_client();
    // Pipelined, as a client would after reconnecting.
    r.send("sequenced(2,1)");
    r.send("joinchatroom(3,1,0,0,)");
    let last = got.last().unwrap().0;
    r.send(&format!("resume(4,1,{epoch},{last})"));
    // Live messages may arrive before the resume's replies; they are also in them. The
    // client keeps what the resume sends, then live messages past its last one.
    let mut live = Vec::new();
    let mut recovered = None;
    let mut resumed_to = last;
    while recovered.is_none() {
        let line = r.recv();
        if let Some((e, seq, text)) = parse_chatseq(&line) {
            assert_eq!(e, epoch);
            live.push((seq, text));
        } else if line.starts_with("history(4,1,") {
            let (e, messages) = parse_history(&line);
            assert_eq!(e, epoch);
            for m in messages {
                assert_eq!(m.seq, resumed_to + 1, "the resume has no gap and no repeat");
                resumed_to = m.seq;
                got.push((m.seq, m.text));
            }
        } else if let Some(flag) = line.strip_prefix("recovered(4,1,") {
            recovered = Some(flag.to_string());
        }
    }
    assert_eq!(recovered.as_deref(), Some("1,)"));
    got.extend(live.into_iter().filter(|(seq, _)| *seq > resumed_to));
    while got.last().unwrap().0 < N {
        let line = r.recv();
        if let Some((_, seq, text)) = parse_chatseq(&line) {
            got.push((seq, text));
        }
    }
    sender.join().unwrap();
    let want: Vec<(u64, String)> = (1..=N).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(got, want);
}

#[test]
fn resume_beyond_the_kept_window_or_from_another_epoch_is_not_recovered() {
    let server = TestServer::start_with(&["--history-size", "10"]);
    let (mut a, _) = server.chat_client();
    lobby(&mut a);
    send_all(&mut a, 1, (1..=30).map(|i| format!("m{i}")));
    let epoch = epoch_of(&mut a);
    assert_eq!(resume(&mut a, 1, epoch, 5), (vec![], 0));
    assert_eq!(resume(&mut a, 1, epoch, 19), (vec![], 0));
    let (kept, flag) = resume(&mut a, 1, epoch, 20);
    assert_eq!((kept.len(), flag), (10, 1));
    assert_eq!(resume(&mut a, 1, epoch + 1, 30), (vec![], 0));
}

#[test]
fn a_stale_epoch_after_a_restart_that_lost_history_is_not_recovered() {
    let mut server = TestServer::start();
    let (mut a, _) = server.chat_client();
    lobby(&mut a);
    send_all(&mut a, 1, (1..=5).map(|i| format!("m{i}")));
    let old = epoch_of(&mut a);
    assert!(server.terminate(TIMEOUT).is_some());

    // `--data :memory:`: the room is made again, same id, history gone.
    let server = TestServer::start();
    let (mut a, _) = server.chat_client();
    lobby(&mut a);
    send_all(&mut a, 1, (1..=5).map(|i| format!("n{i}")));
    assert_ne!(epoch_of(&mut a), old);
    assert_eq!(resume(&mut a, 1, old, 3), (vec![], 0));
}

#[test]
fn history_survives_a_restart_and_kill_9_up_to_the_last_commit() {
    let dir = TempDir::new("history");
    let durable = || TestServer::start_with(&["--data", &dir.file("chat.db"), "--rate-limit", "0"]);
    let mut server = durable();
    let (mut a, _) = server.chat_client();
    lobby(&mut a);
    send_all(&mut a, 1, (1..=50).map(|i| format!("m{i}")));
    let (epoch, before) = page(&mut a, 1, 0, 100);
    assert_eq!(before.len(), 50);
    assert!(server.terminate(TIMEOUT).is_some());

    // A normal restart: the same messages, the same epoch, and a resume still works.
    let mut server = durable();
    let (mut a, _) = server.chat_client();
    says(
        &mut a,
        "joinchatroom(1,1,0,0,)",
        "userjoinedchatroom(1,1,1,0,0,1,)",
    );
    assert_eq!(page(&mut a, 1, 0, 100), (epoch, before.clone()));
    let (missed, flag) = resume(&mut a, 1, epoch, 45);
    assert_eq!((missed, flag), (before[45..].to_vec(), 1));

    // More messages, then a change that waits for its commit: history is written in order
    // with it, so everything before it is on disk when it is answered.
    send_all(&mut a, 1, (51..=300).map(|i| format!("m{i}")));
    says(&mut a, "register(2,3,ann8,password)", "registered(2,1,)");
    server.kill9();

    let server = durable();
    let (mut a, _) = server.chat_client();
    says(
        &mut a,
        "joinchatroom(1,1,0,0,)",
        "userjoinedchatroom(1,1,1,0,0,1,)",
    );
    let (new_epoch, last) = page(&mut a, 1, 0, 100);
    // A crash may have lost a tail whose numbers clients saw: the epoch changes.
    assert_ne!(new_epoch, epoch);
    assert_eq!(resume(&mut a, 1, epoch, 300), (vec![], 0));
    let seqs: Vec<u64> = last.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (201..=300).collect::<Vec<_>>());
    assert!(last.iter().all(|m| m.text == format!("m{}", m.seq)));
    // Numbering goes on after the last kept message.
    a.send(&format!("send(3,1,{})", s("next")));
    a.recv();
    let (_, newest) = page(&mut a, 1, 0, 1);
    assert_eq!(newest[0].seq, 301);
}

#[test]
fn history_is_trimmed_to_its_size_and_its_age() {
    let dir = TempDir::new("trim");
    let durable = |size: &str, ttl: &str| {
        TestServer::start_with(&[
            "--data",
            &dir.file("chat.db"),
            "--history-size",
            size,
            "--history-ttl",
            ttl,
        ])
    };
    let mut server = durable("5", "3600");
    let (mut a, _) = server.chat_client();
    lobby(&mut a);
    send_all(&mut a, 1, (1..=8).map(|i| format!("m{i}")));
    let seqs = |p: (u64, Vec<Kept>)| p.1.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(seqs(page(&mut a, 1, 0, 0)), [4, 5, 6, 7, 8]);
    assert!(server.terminate(TIMEOUT).is_some());

    // A smaller size at the next start keeps only the newest.
    let mut server = durable("2", "3600");
    let (mut a, _) = server.chat_client();
    says(
        &mut a,
        "joinchatroom(1,1,0,0,)",
        "userjoinedchatroom(1,1,1,0,0,1,)",
    );
    assert_eq!(seqs(page(&mut a, 1, 0, 0)), [7, 8]);
    assert!(server.terminate(TIMEOUT).is_some());

    // A one-second TTL: the messages go within a few ticks.
    let server = durable("5", "1");
    let (mut a, _) = server.chat_client();
    says(
        &mut a,
        "joinchatroom(1,1,0,0,)",
        "userjoinedchatroom(1,1,1,0,0,1,)",
    );
    send_all(&mut a, 1, ["x".to_string()]);
    let deadline = Instant::now() + TIMEOUT;
    while !page(&mut a, 1, 0, 0).1.is_empty() {
        assert!(Instant::now() < deadline, "history not expired");
        thread::sleep(Duration::from_millis(100));
    }
    let (epoch, _) = page(&mut a, 1, 0, 0);
    assert_eq!(resume(&mut a, 1, epoch, 8), (vec![], 0));
    assert_eq!(resume(&mut a, 1, epoch, 9), (vec![], 1));
}

#[test]
fn bad_history_requests_get_clear_errors() {
    let server = TestServer::start();
    let (mut a, _) = server.chat_client();
    lobby(&mut a);
    says(
        &mut a,
        "addchatroom(2,6,secret2,q?2,420,)",
        "chatroomcreated(2,2,6,secret13,1,)",
    );
    send_all(&mut a, 1, (1..=150).map(|i| format!("m{i}")));
    let epoch = epoch_of(&mut a);
    let syntax = |m: u64| format!("error(27,Syntax error in parameters.{m},)");
    says(&mut a, "gethistory(3,1,-1,10)", &syntax(3));
    says(
        &mut a,
        "gethistory(4,1,99999999999999999999,10)",
        &syntax(4),
    );
    says(&mut a, &format!("resume(5,1,{epoch},-5)"), &syntax(5));
    says(
        &mut a,
        &format!("resume(6,1,{epoch},151)"),
        "error(22,Invalid history range.6,)",
    );
    says(
        &mut a,
        &format!("resume(7,1,{epoch},9223372036854775807)"),
        "error(22,Invalid history range.7,)",
    );
    // Page sizes: 0 and 10^12 both mean 100; a `before` past the newest is just "newest".
    assert_eq!(page(&mut a, 1, 0, 0).1.len(), 100);
    assert_eq!(page(&mut a, 1, 0, 1_000_000_000_000).1.len(), 100);
    assert_eq!(page(&mut a, 1, 1_000_000, 3).1.len(), 3);
    // Rooms one is not in: not found, not a member (a wrong answer does not make one).
    says(
        &mut a,
        "gethistory(8,99,0,0)",
        "error(27,That chatroom wasn't found.8,)",
    );
    let (mut b, _) = server.chat_client();
    says(
        &mut b,
        "gethistory(9,1,0,0)",
        "error(28,You're not in that chatroom.9,)",
    );
    says(
        &mut b,
        "joinchatroom(10,2,0,5,wrong)",
        "error(29,Sorry. That answer was wrong.10,)",
    );
    says(
        &mut b,
        "gethistory(11,2,0,0)",
        "error(28,You're not in that chatroom.11,)",
    );
    says(
        &mut b,
        &format!("resume(12,1,{epoch},1)"),
        "error(28,You're not in that chatroom.12,)",
    );
}

#[test]
fn every_dialect_sees_the_same_history() {
    let server = TestServer::start();
    let (mut p, _) = server.chat_client();
    lobby(&mut p);
    let mut url = server.client_at("/ws/chat/lobby/?nickname=rita", None);
    assert_eq!(url.recv(), "rita joined lobby");
    assert!(p.recv().starts_with("userjoinedchatroom(0,1,"));
    let mut j = server.client_at("/json", None);
    j.send(r#"{"cmd":"login","type":"tmp","usr":"jo"}"#);
    assert!(j.recv().contains(r#""ok":true"#));
    j.send(r#"{"cmd":"join_room","room_name":"lobby","usr":"jo"}"#);
    assert!(j.recv().contains(r#""ok":true"#));
    p.recv();
    url.recv();

    says(
        &mut p,
        &format!("send(2,1,{})", s("from p")),
        "chat(2,1,1,0,6,from p)",
    );
    url.recv();
    j.recv();
    url.send("from rita");
    assert_eq!(url.recv(), "rita: from rita");
    p.recv();
    j.recv();
    j.send(r#"{"cmd":"speak","room_name":"lobby","usr":"jo","msg":"from jo"}"#);
    let said: serde_json::Value = serde_json::from_str(&j.recv()).unwrap();
    assert_eq!((&said["ok"], &said["seq"]), (&true.into(), &3.into()));
    p.recv();
    url.recv();

    let (epoch, kept) = page(&mut p, 1, 0, 0);
    let names: Vec<(&str, &str)> = kept
        .iter()
        .map(|m| (m.name.as_str(), m.text.as_str()))
        .collect();
    assert_eq!(
        names,
        [("", "from p"), ("rita", "from rita"), ("jo", "from jo")]
    );
    j.send(r#"{"cmd":"history","room_name":"lobby","usr":"jo"}"#);
    let reply: serde_json::Value = serde_json::from_str(&j.recv()).unwrap();
    assert_eq!(reply["epoch"], epoch);
    let json: Vec<(String, String, u64)> = reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let f = |k: &str| m[k].as_str().unwrap().to_string();
            (f("usr"), f("msg"), m["seq"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        json,
        [
            ("guest1".to_string(), "from p".to_string(), 1),
            ("rita".to_string(), "from rita".to_string(), 2),
            ("jo".to_string(), "from jo".to_string(), 3)
        ]
    );
    // A JSON client that comes back says where it was, and gets what it missed in the reply.
    j.send(r#"{"cmd":"leave_room","room_name":"lobby","usr":"jo"}"#);
    assert!(j.recv().contains(r#""ok":true"#));
    p.recv();
    url.recv();
    says(
        &mut p,
        &format!("send(3,1,{})", s("while away")),
        "chat(3,1,1,0,10,while away)",
    );
    url.recv();
    let rejoin = |e: u64| {
        serde_json::json!({"cmd": "join_room", "room_name": "lobby", "usr": "jo",
            "since": {"epoch": e, "seq": 3}})
        .to_string()
    };
    j.send(&rejoin(epoch));
    let reply: serde_json::Value = serde_json::from_str(&j.recv()).unwrap();
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["messages"][0]["seq"], 4, "{reply}");
    assert_eq!(reply["messages"][0]["msg"], "while away", "{reply}");
    assert_eq!(reply["messages"].as_array().unwrap().len(), 1, "{reply}");
    p.recv();
    url.recv();
    j.send(r#"{"cmd":"leave_room","room_name":"lobby","usr":"jo"}"#);
    j.recv();
    p.recv();
    url.recv();
    j.send(&rejoin(epoch + 1));
    let reply: serde_json::Value = serde_json::from_str(&j.recv()).unwrap();
    assert_eq!(
        (&reply["recovered"], &reply["messages"]),
        (&false.into(), &serde_json::json!([])),
        "another epoch is not trusted: {reply}"
    );

    // A room-URL joiner asking for the last two sees them before the live ones.
    let mut late = server.client_at("/ws/chat/lobby/?nickname=lee&history=2", None);
    assert_eq!(
        late.recv_n(3),
        ["jo: from jo", "guest1: while away", "lee joined lobby"]
    );
    let mut bad = crate::common::raw_exchange(
        &server.addr(),
        b"GET /ws/chat/lobby/?nickname=x&history=-1 HTTP/1.1\r\nHost: a\r\n\
          Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    bad.truncate(12);
    assert_eq!(bad, b"HTTP/1.1 400");
}

#[test]
fn memory_per_kept_message() {
    let _serial = crate::common::heavy();
    const ROOMS: u64 = 20;
    const PER_ROOM: u64 = 1_000;
    let server = TestServer::start_with(&["--rate-limit", "0"]);
    let (mut a, _) = server.chat_client();
    for r in 1..=ROOMS {
        says(
            &mut a,
            &format!("addchatroom(1,{}0,0,2,pw)", s(&format!("r{r}"))),
            &format!("chatroomcreated(1,{r},{}1,1,)", s(&format!("r{r}"))),
        );
    }
    // Warm up the allocator with one full round that is then pushed out of the history.
    let text = |i: u64| format!("{i:0>100}");
    for r in 1..=ROOMS {
        send_all(&mut a, r, (0..PER_ROOM).map(text));
    }
    let before = server.rss_kib();
    for r in 1..=ROOMS {
        send_all(&mut a, r, (0..PER_ROOM).map(text));
    }
    let steady = server.rss_kib();
    // Now a second, fresh set of rooms holds as many again.
    for r in ROOMS + 1..=2 * ROOMS {
        says(
            &mut a,
            &format!("addchatroom(1,{}0,0,2,pw)", s(&format!("r{r}"))),
            &format!("chatroomcreated(1,{r},{}1,1,)", s(&format!("r{r}"))),
        );
        send_all(&mut a, r, (0..PER_ROOM).map(text));
    }
    let after = server.rss_kib();
    let kept = ROOMS * PER_ROOM;
    let per = (after.saturating_sub(steady)) * 1024 / kept;
    println!(
        "{kept} more kept messages of 100 bytes (anonymous sender): RSS {before} -> {steady} \
         (the same number replaced) -> {after} KiB: {per} B per kept message"
    );
    assert!(per < 1024, "{per} B per kept 100-byte message");
}
