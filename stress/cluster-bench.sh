#!/usr/bin/env bash
# Cluster benchmark: the S2 ramp (1,000 clients in 10 rooms, 64-byte messages, highest delivered
# msgs/s with p99 < 50 ms and no loss) against 1, 2 and 3 nodes sharing one redis-server, with the
# clients spread round-robin over the nodes (so every room has members on every node), and the
# latency of a message that crosses nodes at light load (one sender on node 1, 100 receivers on
# node 2, 100 msgs/s) next to the same on one node.
#
# Run it by hand on a quiet machine (it is not part of CI): ./stress/cluster-bench.sh
# Like stress/bench.sh, the servers (here redis-server and every node) run on CPU $SERVER_CPU and
# the client on CPU $CLIENT_CPU, so the figures compare the same server budget, one core, split
# over more processes: on one box they show the cost of the cluster, not its scaling (see
# docs/cluster.md). Medians over $RUNS runs.
#
# Environment: NODES ("1 2 3"), RUNS (3), SERVER_CPU (0), CLIENT_CPU (1), BASE_PORT (19680),
# RESULTS (target/bench/cluster-DATE), OURS_BIN (target/release/websocket), STRESS
# (target/release/stress). Needs redis-server, jq and taskset.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODES=${NODES:-"1 2 3"}
RUNS=${RUNS:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${BASE_PORT:-19680}
RESULTS=${RESULTS:-$ROOT/target/bench/cluster-$(date +%Y%m%d-%H%M%S)}
OURS_BIN=${OURS_BIN:-$ROOT/target/release/websocket}
STRESS=${STRESS:-$ROOT/target/release/stress}
PASSWORD=bench-password

for tool in jq redis-server taskset cargo; do
    command -v "$tool" >/dev/null || { echo "cluster-bench.sh needs $tool (apt-get install jq redis-server)" >&2; exit 1; }
done
mkdir -p "$RESULTS"
log() { echo "[cluster-bench] $*" >&2; }
(cd "$ROOT" && cargo build --release -q -p websocket -p stress)

PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    return 1
}

# start N: a fresh redis-server and N nodes; NODE_PORTS holds their ports.
start() {
    local n=$1 redis_port=$((PORT + 1)) dir="$RESULTS/redis-$1"
    mkdir -p "$dir"
    taskset -c "$SERVER_CPU" redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save "" \
        --appendonly yes --appendfsync everysec >"$dir/log" 2>&1 &
    PIDS+=($!)
    wait_port "$redis_port"
    NODE_PORTS=()
    for k in $(seq "$n"); do
        local p=$((PORT + 1 + k))
        taskset -c "$SERVER_CPU" "$OURS_BIN" "$p" "$PASSWORD" --bind 127.0.0.1 --rate-limit 0 --max-outbound 67108864 \
            --redis "redis://127.0.0.1:$redis_port/" --node-id "node$k" >"$RESULTS/node$k-of-$n.log" 2>&1 &
        PIDS+=($!)
        wait_port "$p"
        NODE_PORTS+=("$p")
    done
    PORT=$((PORT + 10))
}

templates() { # ports... -> comma-separated room URL templates
    local out=()
    for p in "$@"; do out+=("ws://127.0.0.1:$p/ws/chat/{room}/?nickname=u{i}"); done
    (IFS=,; echo "${out[*]}")
}

RAMP=(--ramp --ramp-start 2000 --ramp-factor 1.6 --ramp-refine 3 --step 2 --step-warmup 0.5
    --max-steps 16 --drain 2 --p99-max-ms 50)

for run in $(seq "$RUNS"); do
    for n in $NODES; do
        log "run $run/$RUNS: S2 ramp over $n node(s)"
        start "$n"
        taskset -c "$CLIENT_CPU" "$STRESS" --url-template "$(templates "${NODE_PORTS[@]}")" \
            -n 1000 -r 10 -p 64 "${RAMP[@]}" --json >"$RESULTS/S2-$n-$run.json" \
            2>"$RESULTS/S2-$n-$run.log" || echo '{}' >"$RESULTS/S2-$n-$run.json"
        stop_all
    done
    # Latency at light load: client 0 sends, 100 others receive. One node: all local. Two
    # nodes: the sender on node 1, every receiver on node 2 (the sender's own copy is the one
    # local delivery in 101).
    for n in 1 2; do
        log "run $run/$RUNS: latency, $n node(s)"
        start "$n"
        list=("${NODE_PORTS[0]}")
        for _ in $(seq 100); do list+=("${NODE_PORTS[$((n - 1))]}"); done
        taskset -c "$CLIENT_CPU" "$STRESS" --url-template "$(templates "${list[@]}")" -n 101 -r 1 \
            -s 1 -p 64 --rate 100 -d 10 --warmup 1 --json >"$RESULTS/latency-$n-$run.json" \
            2>"$RESULTS/latency-$n-$run.log" || echo '{}' >"$RESULTS/latency-$n-$run.json"
        stop_all
    done
done

# median of a jq expression over the runs of one kind ("—" when absent)
median() { # kind expr
    local files=()
    for run in $(seq "$RUNS"); do files+=("$RESULTS/$1-$run.json"); done
    jq -s -r "[.[] | ($2) | select(. != null)] | sort |
        if length == 0 then \"—\" else .[(length - 1) / 2 | floor] end" "${files[@]}"
}
rate() { awk -v v="$1" 'BEGIN { if (v == "—") print v; else if (v >= 1e6) printf "%.2fM\n", v / 1e6; else printf "%.0fk\n", v / 1e3 }'; }
{
    echo "| nodes | S2 delivered msgs/s | p99 at that step (ms) |"
    echo "|---|---|---|"
    for n in $NODES; do
        echo "| $n | $(rate "$(median "S2-$n" '.ramp.best.delivered_per_sec')") | $(median "S2-$n" '.ramp.best.latency_ms.p99') |"
    done
    echo
    echo "| light load (100 msgs/s to 100 receivers) | p50 (ms) | p99 (ms) |"
    echo "|---|---|---|"
    echo "| one node | $(median latency-1 '.run.latency_ms.p50') | $(median latency-1 '.run.latency_ms.p99') |"
    echo "| sender on node 1, receivers on node 2 | $(median latency-2 '.run.latency_ms.p50') | $(median latency-2 '.run.latency_ms.p99') |"
    echo
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "Reproduce: RUNS=$RUNS NODES=\"$NODES\" ./stress/cluster-bench.sh   (raw reports: $RESULTS)"
} | tee "$RESULTS/table.md"
