#!/usr/bin/env bash
# Does a login storm slow chat? A busy room (100 clients, 1,000 messages/s in total, so 100,000
# deliveries/s) is measured for 12 s alone, then again while 200 new connections each get an
# account (adduser) and log in at once, with argon2id at the server's default cost. Prints the
# room's latency p50/p99 both times and how long the storm's logins took.
#
# Run it by hand on a quiet machine (it is not part of CI): ./stress/login-storm.sh
# Server on CPU $SERVER_CPU, both stress clients on CPU $CLIENT_CPU. Environment: SERVER_CPU (0),
# CLIENT_CPU (1), PORT (19800), RUNS (3: medians of the run figures).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-19800}
RUNS=${RUNS:-3}
PASSWORD=storm-password
STRESS=$ROOT/target/release/stress
for tool in jq taskset cargo; do
    command -v "$tool" >/dev/null || { echo "login-storm.sh needs $tool" >&2; exit 1; }
done
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p websocket -p stress
OUT=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$OUT"' EXIT

start_server() {
    taskset -c "$SERVER_CPU" "$ROOT/target/release/websocket" "$PORT" "$PASSWORD" \
        --bind 127.0.0.1 --rate-limit 0 --data :memory: >"$OUT/server.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        grep -q listening "$OUT/server.log" 2>/dev/null && return
        sleep 0.05
    done
    echo "the server did not start" >&2; exit 1
}

room() { # the busy room, measured for 12 s after 2 s of warm-up
    taskset -c "$CLIENT_CPU" "$STRESS" --url "ws://127.0.0.1:$PORT/" --password "$PASSWORD" \
        -n 100 -r 1 -s 100 --rate 1000 -d 12 --json
}

storm() { # 200 accounts and logins at once
    taskset -c "$CLIENT_CPU" "$STRESS" --url "ws://127.0.0.1:$PORT/" --password "$PASSWORD" \
        --login -n 200 -r 1 -s 0 -d 0.1 --warmup 0 --json
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for run in $(seq "$RUNS"); do
    start_server
    room >"$OUT/alone-$run.json"
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    start_server
    room >"$OUT/storm-room-$run.json" &
    ROOM=$!
    sleep 6 # inside the measured window (2 s warm-up, then 12 s)
    storm >"$OUT/logins-$run.json"
    wait "$ROOM"
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
done

field() { jq -r "$2" "$OUT"/$1-*.json | median; }
echo "| busy room (100 clients, 1,000 msg/s) | p50 ms | p99 ms | lost |"
echo "|---|---:|---:|---:|"
echo "| alone | $(field alone .run.latency_ms.p50) | $(field alone .run.latency_ms.p99) | $(field alone .run.lost) |"
echo "| during 200 logins | $(field storm-room .run.latency_ms.p50) | $(field storm-room .run.latency_ms.p99) | $(field storm-room .run.lost) |"
echo
echo "the 200 logins (login, then join): p50 $(field logins .connect.latency_ms.p50) ms, p99 $(field logins .connect.latency_ms.p99) ms, all done in $(field logins .connect.seconds) s"
