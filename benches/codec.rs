//! Command parsing and reply encoding: the per-message work of the net thread (parsing) and of
//! the logic thread (encoding one reply, once per broadcast).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use websocket::dialect::protocol::codec::{self as proto, Reply};
use websocket::ws::FrameWriter;

/// A `send(M,R,message)` with a message of `len` bytes, as a client would write it.
fn send_command(len: usize) -> Vec<u8> {
    let message = "x".repeat(len);
    format!("send(12345,7,{len},{message})").into_bytes()
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for len in [64, 1024, 16 * 1024] {
        let msg = send_command(len);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_with_input(BenchmarkId::new("send", len), &msg, |b, msg| {
            b.iter(|| proto::parse(black_box(msg)))
        });
    }
    g.throughput(Throughput::Elements(1));
    for (name, msg) in [
        ("joinchatroom", &b"joinchatroom(7,1,0,0,)"[..]),
        ("adduser", &b"adduser(3,42,5,alice6,secret2,pw)"[..]),
        ("login", &b"login(4,5,alice6,secret)"[..]),
        ("unknown", &b"hello"[..]),
    ] {
        g.bench_function(name, |b| b.iter(|| proto::parse(black_box(msg))));
    }
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let message = "x".repeat(64);
    let chat = Reply::Chat {
        mid: 12345,
        room: 7,
        client: 4242,
        user: 0,
        message: &message,
    };
    let mut buf = Vec::with_capacity(256);
    g.bench_function("chat_64", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&chat).encode(&mut buf);
            black_box(buf.len())
        })
    });
    let joined = Reply::UserJoinedChatroom {
        mid: 7,
        room: 1,
        client: 2,
        user: 42,
        username: "alice",
        count: 1000,
    };
    g.bench_function("userjoinedchatroom", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&joined).encode(&mut buf);
            black_box(buf.len())
        })
    });
    // What the logic thread builds per broadcast: the reply written straight into a frame.
    g.bench_function("chat_64_frame", |b| {
        b.iter(|| {
            let mut w = FrameWriter::with_capacity(128);
            black_box(&chat).encode(w.buf());
            w.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, parsing, encoding);
criterion_main!(benches);
