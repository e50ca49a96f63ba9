//! The logic thread's cost of one chat message to rooms of 10, 1,000 and 10,000 members: the
//! frame is encoded once and the room's audience is cached between membership changes, so the
//! cost should not grow with the room. `protocol_no_history` is the same room with
//! `--history-size 0`: keeping history must not slow the fan-out path.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use websocket::chat::{Dialect, Entry, Limits};
use websocket::dialect;
use websocket::events::{ConnId, ToLogic, ToNet};
use websocket::logic::Logic;

const NOW: u64 = 1_700_000_000;

fn conn(i: u32) -> ConnId {
    ConnId {
        slot: i,
        generation: 0,
    }
}

fn command(logic: &mut Logic, c: ConnId, text: &[u8], out: &mut Vec<ToNet>) {
    let request = dialect::parse(Dialect::Protocol, text);
    logic.handle(ToLogic::Request { conn: c, request }, NOW, out);
}

/// A chat with `members` protocol connections in one persistent room (chatroomid 1).
fn protocol_room(members: u32, limits: Limits) -> Logic {
    let mut chat = Logic::with_limits(b"pw", limits);
    let mut out = Vec::new();
    for i in 0..members {
        chat.handle(
            ToLogic::Opened {
                conn: conn(i),
                entry: Entry::Protocol,
                peer: Default::default(),
            },
            NOW,
            &mut out,
        );
    }
    command(
        &mut chat,
        conn(0),
        b"addchatroom(1,5,bench0,0,2,pw)",
        &mut out,
    );
    for i in 1..members {
        command(&mut chat, conn(i), b"joinchatroom(2,1,0,0,)", &mut out);
        out.clear();
    }
    chat
}

/// A chat with `members` room-URL connections in room `bench`.
fn url_room(members: u32) -> Logic {
    let mut chat = Logic::new(b"pw");
    let mut out = Vec::new();
    for i in 0..members {
        let entry = Entry::RoomUrl {
            room: "bench".to_string(),
            nickname: format!("u{i}"),
            history: 0,
        };
        chat.handle(
            ToLogic::Opened {
                conn: conn(i),
                entry,
                peer: Default::default(),
            },
            NOW,
            &mut out,
        );
        out.clear();
    }
    chat
}

/// Checks that one broadcast to everybody came out, so the benchmark measures the real path.
fn assert_broadcast(out: &[ToNet], members: u32) {
    match out {
        [ToNet::SendMany { to, .. }] => assert_eq!(to.len(), members as usize),
        other => panic!("expected one broadcast, got {other:?}"),
    }
}

fn send_to_room(c: &mut Criterion) {
    let mut g = c.benchmark_group("logic_send");
    let payload = "x".repeat(64);
    let send = dialect::parse(
        Dialect::Protocol,
        format!("send(9,1,64,{payload})").as_bytes(),
    );
    let line = dialect::parse(Dialect::RoomUrl, payload.as_bytes());
    for members in [10u32, 1_000, 10_000] {
        g.throughput(Throughput::Elements(members as u64));

        let mut out = Vec::new();
        let event = || ToLogic::Request {
            conn: conn(0),
            request: send.clone(),
        };
        let no_history = Limits {
            history_size: 0,
            ..Limits::default()
        };
        for (name, limits) in [
            ("protocol", Limits::default()),
            ("protocol_no_history", no_history),
        ] {
            let mut chat = protocol_room(members, limits);
            out.clear();
            chat.handle(event(), NOW, &mut out);
            assert_broadcast(&out, members);
            g.bench_with_input(BenchmarkId::new(name, members), &members, |b, _| {
                // The message is built outside the timed part, as the net thread builds it.
                b.iter_batched(
                    event,
                    |e| {
                        out.clear();
                        chat.handle(black_box(e), NOW, &mut out);
                    },
                    BatchSize::SmallInput,
                )
            });
        }

        let mut chat = url_room(members);
        let event = || ToLogic::Request {
            conn: conn(0),
            request: line.clone(),
        };
        out.clear();
        chat.handle(event(), NOW, &mut out);
        assert_broadcast(&out, members);
        g.bench_with_input(BenchmarkId::new("room_url", members), &members, |b, _| {
            // The message is built outside the timed part, as the net thread builds it.
            b.iter_batched(
                event,
                |e| {
                    out.clear();
                    chat.handle(black_box(e), NOW, &mut out);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, send_to_room);
criterion_main!(benches);
