#!/usr/bin/env bash
# End-to-end benchmark: this server against the peer servers in stress/peers (uWebSockets,
# fastwebsockets, tokio-tungstenite) and a yardstick ("ceiling": stress/src/bin/ceiling.rs, a
# bare mio fan-out with pre-framed messages and one write per member per loop turn, no chat
# logic), all driven through the room URL endpoint so the work is identical; this server's command protocol is measured too ("ours-protocol"), and on request
# this server over TLS ("ours-tls": wss:// with a self-signed certificate made by openssl;
# e.g. SERVERS="ours ours-tls" SCENARIOS=S1 for the cost of TLS).
#
# Run it by hand on a quiet machine (it is not part of CI): ./stress/bench.sh
# The server runs on CPU $SERVER_CPU and the stress client on CPU $CLIENT_CPU (taskset), each
# scenario is bounded (about 10 minutes per run over all servers), and the result is a
# markdown table of medians over $RUNS runs, with ratios to the best peer and to the ceiling,
# from one invocation.
#
# The client reads eagerly by default (READ_BATCH_US=0), as a browser does: every message that
# arrives is read at once. READ_BATCH_US=200 lets reads pile up under heavy load instead (fewer,
# larger reads: cheaper for the client and for servers that send one segment per message); the
# table's heading says which was used, so the two kinds of figures are never mixed up.
#
# Scenarios (see the benchmark issue):
#   S1  100 clients in 1 room: ramp to the highest delivered msgs/s with p99 < 50 ms, no loss
#   S2  1,000 clients in 10 rooms, 64-byte payloads: the same ramp
#   S3  10,000 idle connections in 1,000 rooms: connect time and server RSS per connection, once
#       all are connected and again after they were held idle for 3 s
#   S4  latency at light load: 100 clients in 1 room, 1 msg/s each, 10 s
#
# Environment: RUNS (3), SERVERS ("ours ours-protocol uws fastws tokio ceiling"), SCENARIOS
# ("S1 S2 S3 S4"), READ_BATCH_US (0), SERVER_CPU (0), CLIENT_CPU (1), PEERS (stress/peers), PEERS_TARGET
# (target/peers), BASE_PORT (19700), RESULTS (target/bench/DATE), OURS_BIN (the server binary
# measured as "ours", default target/release/websocket), OURS_ARGS (extra flags for
# this server, e.g. "--history-size 0" to compare without room history). Raw JSON reports and
# server logs are kept in $RESULTS.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$ROOT/stress/peers}
PEERS_TARGET=${PEERS_TARGET:-$ROOT/target/peers}
RUNS=${RUNS:-3}
SERVERS=${SERVERS:-"ours ours-protocol uws fastws tokio ceiling"}
SCENARIOS=${SCENARIOS:-"S1 S2 S3 S4"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${BASE_PORT:-19700}
RESULTS=${RESULTS:-$ROOT/target/bench/$(date +%Y%m%d-%H%M%S)}
PASSWORD=bench-password
STRESS=$ROOT/target/release/stress
CEILING=$ROOT/target/release/ceiling-chat
# The server binary measured as "ours" (e.g. an older build, for before/after figures).
OURS_BIN=${OURS_BIN:-$ROOT/target/release/websocket}

for tool in jq taskset cargo g++; do
    command -v "$tool" >/dev/null || { echo "bench.sh needs $tool (apt-get install jq util-linux g++)" >&2; exit 1; }
done
mkdir -p "$RESULTS"
log() { echo "[bench] $*" >&2; }
TLS_CERT=$RESULTS/tls-cert.pem
TLS_KEY=$RESULTS/tls-key.pem
if [[ " $SERVERS " == *" ours-tls "* ]]; then
    command -v openssl >/dev/null || { echo "ours-tls needs openssl" >&2; exit 1; }
    # CA:FALSE: webpki refuses a CA certificate as a server's own.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -addext basicConstraints=critical,CA:FALSE \
        -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null
fi
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD_START" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: load average $LOAD_START before starting; other work on these cores skews every figure"
fi

# ---- build (release, once; later runs reuse target directories) ----
log "building this server, the stress client and the ceiling server (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p websocket -p stress
for s in $SERVERS; do
    case $s in
        tokio | fastws)
            log "building $s-chat"
            cargo build --release --quiet --manifest-path "$PEERS/$s-chat/Cargo.toml" --target-dir "$PEERS_TARGET"
            ;;
        uws)
            if [ ! -x "$PEERS_TARGET/uws-chat" ]; then
                log "building uws-chat"
                env OUT="$PEERS_TARGET/uws-chat" "$PEERS/uws-chat/build.sh" >"$RESULTS/uws-build.log" 2>&1
            fi
            ;;
    esac
done

# ---- servers ----
SERVER_PID=
start_server() { # name port logfile
    local name=$1 port=$2 logfile=$3
    case $name in
        ours | ours-protocol | ours-tls)
            # The per-client rate limit (default 100 msgs/s) is off, as the peers have none. The
            # slow-consumer cap (default 1 MiB queued) is raised: below the ramp's p99 bound the
            # queues stay far smaller anyway, but an overloaded step would otherwise cut every
            # client and end the ramp before it can bisect (the peers queue without limit).
            local tls=()
            [ "$name" = ours-tls ] && tls=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
            taskset -c "$SERVER_CPU" "$OURS_BIN" "$port" "$PASSWORD" \
                --bind 127.0.0.1 --rate-limit 0 --max-outbound 67108864 --data :memory: "${tls[@]}" \
                ${OURS_ARGS:-} >"$logfile" 2>&1 &
            ;;
        uws) taskset -c "$SERVER_CPU" "$PEERS_TARGET/uws-chat" "$port" >"$logfile" 2>&1 & ;;
        fastws) taskset -c "$SERVER_CPU" "$PEERS_TARGET/release/fastws-chat" "$port" >"$logfile" 2>&1 & ;;
        tokio) taskset -c "$SERVER_CPU" "$PEERS_TARGET/release/tokio-chat" "$port" >"$logfile" 2>&1 & ;;
        ceiling) taskset -c "$SERVER_CPU" "$CEILING" "$port" >"$logfile" 2>&1 & ;;
        *) echo "unknown server $name" >&2; exit 1 ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "$name did not start listening on $port (see $logfile)" >&2
    return 1
}
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

# ---- scenarios ----
# READ_BATCH_US=0 (the default) reads every message as it arrives, like a browser. A positive
# value lets reads pile up for that long under heavy load: against servers that send each
# message in its own TCP segment one read (and one loopback ACK) per message makes the client
# the limit, and batching hides that; it also hides the cost to the server of the many small
# segments a browser would make it handle, so such figures are reported as a separate kind.
READ_BATCH_US=${READ_BATCH_US:-0}
RAMP=(--ramp --ramp-start 2000 --ramp-factor 1.6 --ramp-refine 3 --step 2 --step-warmup 0.5
    --max-steps 16 --drain 2 --p99-max-ms 50 --read-batch-us "$READ_BATCH_US")
scenario_args() { # scenario -> ARGS
    case $1 in
        S1) ARGS=(-n 100 -r 1 -p 64 "${RAMP[@]}") ;;
        S2) ARGS=(-n 1000 -r 10 -p 64 "${RAMP[@]}") ;;
        S3) ARGS=(-n 10000 -r 1000 -s 0 -d 3 --connect-timeout 60) ;;
        S4) ARGS=(-n 100 -r 1 -p 64 --rate 100 -d 10 --warmup 1) ;;
        *) echo "unknown scenario $1" >&2; exit 1 ;;
    esac
}
target_args() { # server port -> TARGET
    if [ "$1" = ours-protocol ]; then
        TARGET=(--url "ws://127.0.0.1:$2/" --password "$PASSWORD")
    elif [ "$1" = ours-tls ]; then
        TARGET=(--url-template "wss://localhost:$2/ws/chat/{room}/?nickname=u{i}" --tls-ca "$TLS_CERT")
    else
        TARGET=(--url-template "ws://127.0.0.1:$2/ws/chat/{room}/?nickname=u{i}")
    fi
}

for run in $(seq "$RUNS"); do
    for scen in $SCENARIOS; do
        for s in $SERVERS; do
            PORT=$((PORT + 1))
            base="$RESULTS/$scen-$s-$run"
            log "run $run/$RUNS $scen $s (port $PORT)"
            start_server "$s" "$PORT" "$base.server.log"
            target_args "$s" "$PORT"
            scenario_args "$scen"
            if ! timeout 900 taskset -c "$CLIENT_CPU" "$STRESS" "${TARGET[@]}" "${ARGS[@]}" \
                --server-pid "$SERVER_PID" --json >"$base.json" 2>"$base.stress.log"; then
                log "stress failed for $scen $s (see $base.stress.log)"
                echo '{}' >"$base.json"
            fi
            stop_server
        done
    done
done

# ---- table ----
# median of a jq expression over the runs of one server and scenario ("" when absent)
median() { # scenario server expr
    local files=()
    for run in $(seq "$RUNS"); do files+=("$RESULTS/$1-$2-$run.json"); done
    jq -s -r "[.[] | ($3) | select(. != null)] | sort |
        if length == 0 then \"\" else .[(length - 1) / 2 | floor] end" "${files[@]}"
}
fmt_rate() { [ -z "$1" ] && { echo "—"; return; }; awk -v v="$1" 'BEGIN { if (v >= 1e6) printf "%.2fM", v / 1e6; else printf "%.0fk", v / 1e3 }'; }
fmt_num() { [ -z "$1" ] && { echo "—"; return; }; awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; }
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }

declare -A V
for s in $SERVERS; do
    if has S1; then
        V[$s,S1]=$(median S1 "$s" '.ramp.best.delivered_per_sec')
        V[$s,S1p99]=$(median S1 "$s" '.ramp.best.latency_ms.p99')
        V[$s,S1cpu]=$(median S1 "$s" '.ramp.best.client_cpu_percent')
        V[$s,S1other]=$(median S1 "$s" '[.ramp.steps[]?.other_cpu_percent] | max')
    fi
    if has S2; then
        V[$s,S2]=$(median S2 "$s" '.ramp.best.delivered_per_sec')
        V[$s,S2p99]=$(median S2 "$s" '.ramp.best.latency_ms.p99')
        V[$s,S2cpu]=$(median S2 "$s" '.ramp.best.client_cpu_percent')
        V[$s,S2other]=$(median S2 "$s" '[.ramp.steps[]?.other_cpu_percent] | max')
    fi
    if has S3; then
        V[$s,S3conn]=$(median S3 "$s" 'if .connect.failed == 0 then .connect.seconds else null end')
        V[$s,S3rss]=$(median S3 "$s" 'if .server.rss_per_connection_bytes then .server.rss_per_connection_bytes / 1024 else null end')
        V[$s,S3idle]=$(median S3 "$s" 'if .server.rss_end_kib and .server.rss_before_kib and .connect.established > 0 then (.server.rss_end_kib - .server.rss_before_kib) / .connect.established else null end')
    fi
    if has S4; then
        V[$s,S4p50]=$(median S4 "$s" 'if .run.lost == 0 then .run.latency_ms.p50 else null end')
        V[$s,S4p99]=$(median S4 "$s" 'if .run.lost == 0 then .run.latency_ms.p99 else null end')
    fi
done

# best peer per figure (highest rate, lowest connect time / memory / latency)
best_peer() { # key higher|lower
    local best="" v
    for s in uws fastws tokio; do
        [[ " $SERVERS " == *" $s "* ]] || continue
        v=${V[$s,$1]:-}
        [ -z "$v" ] && continue
        if [ -z "$best" ] || awk -v a="$v" -v b="$best" -v d="$2" 'BEGIN { exit !((d == "higher") ? a > b : a < b) }'; then
            best=$v
        fi
    done
    echo "$best"
}
best_peer_name() { # key: the peer with the highest value
    local best="" name="" v
    for s in uws fastws tokio; do
        [[ " $SERVERS " == *" $s "* ]] || continue
        v=${V[$s,$1]:-}
        [ -z "$v" ] && continue
        if [ -z "$best" ] || awk -v a="$v" -v b="$best" 'BEGIN { exit !(a > b) }'; then
            best=$v name=$s
        fi
    done
    echo "$name"
}
# S2 at the best peer's latency: a faster server can take its ramp further, to where its own
# p99 nears the bound, so its best step's p99 says little next to a peer's. This is, per run,
# the highest passing step whose p99 is no worse than the best peer's S2 p99 (median of its
# runs), and its median over the runs.
S2_PEER=$(has S2 && best_peer_name S2 || true)
for s in ours ours-protocol ours-tls; do
    [[ " $SERVERS " == *" $s "* ]] && [ -n "$S2_PEER" ] && [ -n "${V[$S2_PEER,S2p99]:-}" ] || continue
    V[$s,S2matched]=$(median S2 "$s" "[.ramp.steps[]? | select(.passed and .latency_ms.p99 <= ${V[$S2_PEER,S2p99]}) | .delivered_per_sec] | max")
done
ratio() { # ours best
    { [ -z "$1" ] || [ -z "$2" ]; } && { echo "—"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "—"; else printf "%.2f×", a / b }'
}

{
    echo
    echo "Benchmark $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), medians of $RUNS run(s)"
    if [ "$READ_BATCH_US" = 0 ]; then
        echo "Client reads: eager (READ_BATCH_US=0, as a browser reads)"
    else
        echo "Client reads: batched under load (READ_BATCH_US=$READ_BATCH_US): not comparable with eager-read figures"
    fi
    echo "Machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(uname -sr); server on CPU $SERVER_CPU, stress on CPU $CLIENT_CPU; load average $LOAD_START at the start, $(cut -d' ' -f1 /proc/loadavg) at the end"
    echo
    echo "| server | S1 delivered/s | S1 p99 ms | S2 delivered/s | S2 p99 ms | S3 connect s | S3 KiB/conn | S3 KiB/conn idle | S4 p50 ms | S4 p99 ms |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in $SERVERS; do
        echo "| $s | $(fmt_rate "${V[$s,S1]:-}") | $(fmt_num "${V[$s,S1p99]:-}" 1) | $(fmt_rate "${V[$s,S2]:-}") | $(fmt_num "${V[$s,S2p99]:-}" 1) | $(fmt_num "${V[$s,S3conn]:-}" 2) | $(fmt_num "${V[$s,S3rss]:-}" 2) | $(fmt_num "${V[$s,S3idle]:-}" 2) | $(fmt_num "${V[$s,S4p50]:-}" 3) | $(fmt_num "${V[$s,S4p99]:-}" 3) |"
    done
    for ours in ours ours-protocol ours-tls; do
        [[ " $SERVERS " == *" $ours "* ]] || continue
        echo "| $ours ÷ best peer | $(ratio "${V[$ours,S1]:-}" "$(best_peer S1 higher)") | | $(ratio "${V[$ours,S2]:-}" "$(best_peer S2 higher)") | | $(ratio "${V[$ours,S3conn]:-}" "$(best_peer S3conn lower)") | $(ratio "${V[$ours,S3rss]:-}" "$(best_peer S3rss lower)") | $(ratio "${V[$ours,S3idle]:-}" "$(best_peer S3idle lower)") | $(ratio "${V[$ours,S4p50]:-}" "$(best_peer S4p50 lower)") | $(ratio "${V[$ours,S4p99]:-}" "$(best_peer S4p99 lower)") |"
        if [[ " $SERVERS " == *" ceiling "* ]]; then
            echo "| $ours ÷ ceiling | $(ratio "${V[$ours,S1]:-}" "${V[ceiling,S1]:-}") | | $(ratio "${V[$ours,S2]:-}" "${V[ceiling,S2]:-}") | | | | | | |"
        fi
    done
    echo
    for ours in ours ours-protocol ours-tls; do
        [ -n "${V[$ours,S2matched]:-}" ] || continue
        echo "S2 at the best peer's latency: $ours delivers $(fmt_rate "${V[$ours,S2matched]}")/s with p99 ≤ $(fmt_num "${V[$S2_PEER,S2p99]}" 1) ms ($S2_PEER's S2 p99), $(ratio "${V[$ours,S2matched]}" "${V[$S2_PEER,S2]}") $S2_PEER's S2 (median over runs of the highest passing step with that p99 or better)."
    done
    echo
    echo "S3 KiB/conn is the server's RSS growth per connection once all are connected; \"idle\" is the same after they were held idle for 3 s (a server may give memory back meanwhile)."
    echo
    echo "Ratios are ours ÷ the best peer (uws, fastws, tokio; never the ceiling) on that column: above 1 is better for delivered/s, below 1 is better for the others. Ours ÷ ceiling is the share of this machine's bare fan-out rate that this server reaches."
    echo
    echo "CPU at the S1 / S2 best step, in % of one core: the stress client (near 100 means the client, not the server, was the limit), and the most that other processes took from the two pinned CPUs during any ramp step (anything well above 0 skews the figures):"
    for s in $SERVERS; do
        echo "- $s: client $(fmt_num "${V[$s,S1cpu]:-}" 0) / $(fmt_num "${V[$s,S2cpu]:-}" 0), other processes $(fmt_num "${V[$s,S1other]:-}" 0) / $(fmt_num "${V[$s,S2other]:-}" 0)"
    done
    echo
    echo "Reproduce: RUNS=$RUNS SERVERS=\"$SERVERS\" SCENARIOS=\"$SCENARIOS\" READ_BATCH_US=$READ_BATCH_US ./stress/bench.sh   (raw reports: $RESULTS)"
} | tee "$RESULTS/table.md"
