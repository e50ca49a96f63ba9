//! What a durable change costs: the time from handing a change to the store thread until it
//! is acknowledged as committed (fsync included: WAL with `synchronous=FULL`), one at a time
//! and 100 in flight (group commit), against a real SQLite file in a temporary directory.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::unbounded;
use websocket::chat::{Change, StoredOffline};
use websocket::events::ToLogic;
use websocket::store::Store;

fn change(id: u64) -> Change {
    Change::PutOffline(StoredOffline {
        id,
        to: 1,
        from: 2,
        from_name: "bench".into(),
        sent: 1_700_000_000,
        text: "x".repeat(64),
    })
}

fn commits(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("websocket-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (store, _) = Store::open(&dir.join("bench.db")).expect("open the store");
    let (requests, rx) = unbounded();
    let (to_logic, acks) = unbounded();
    let thread = store.spawn(rx, to_logic).unwrap();
    let mut next = 0u64;
    // Sends `n` changes at once and waits until every one is acknowledged.
    let mut round = |n: u64| -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            next += 1;
            requests.send((next, change(next))).unwrap();
        }
        let mut acked = 0;
        while acked < n {
            for event in acks.recv().unwrap() {
                let ToLogic::Stored { results, .. } = event else {
                    panic!("not a store answer")
                };
                assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
                acked += results.len() as u64;
            }
        }
        start.elapsed()
    };
    let mut g = c.benchmark_group("store_ack");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_at_a_time", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| round(1)).sum())
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("100_in_flight", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| round(100)).sum())
    });
    g.finish();
    drop(requests);
    thread.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, commits);
criterion_main!(benches);
