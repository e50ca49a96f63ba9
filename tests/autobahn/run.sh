#!/usr/bin/env bash
# Runs the Autobahn TestSuite (RFC 6455 conformance) against the server's echo endpoint and
# fails unless the summary matches the committed expectation for the profile.
#
# usage: tests/autobahn/run.sh [quick|full|nocompress] [BINARY]
#   quick (default, ~15 s): everything but 9.* (performance) and 12.*/13.* (compression)
#   full (~8 min): all 517 cases; 12.*/13.* are UNIMPLEMENTED (no permessage-deflate)
# BINARY defaults to target/debug/websocket (build it first).
# setup.sh (beside this script) installs wstest on first use; wstest.sh runs it and summarises.
set -euo pipefail
cd "$(dirname "$0")/../.."

PROFILE=${1:-quick}
BIN=${2:-target/debug/websocket}
TOOLS=tests/autobahn
EXPECTED=tests/autobahn/expected-$PROFILE.txt

"$TOOLS/setup.sh" >&2

OUT=$(mktemp -d)
# 9.* sends messages up to 16 MiB and expects them echoed: lift the message and queue caps for
# this conformance run only. The rate limit does not apply to the echo endpoint.
"$BIN" 0 pw --bind 127.0.0.1 --echo-path /echo \
    --max-message-size 20000000 --max-outbound 67108864 >"$OUT/stdout" 2>"$OUT/stderr" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$OUT"' EXIT

for _ in $(seq 100); do
    grep -q '^listening on ' "$OUT/stdout" 2>/dev/null && break
    sleep 0.1
done
PORT=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$OUT/stdout")
[ -n "$PORT" ] || { echo "server did not start:" >&2; cat "$OUT/stderr" >&2; exit 2; }

SUMMARY=$("$TOOLS/wstest.sh" "ws://127.0.0.1:$PORT/echo" "$PROFILE" | tail -n 1)
echo "$SUMMARY"
kill -0 $SERVER || { echo "the server died during the run" >&2; exit 1; }
if [ "$SUMMARY" != "$(cat "$EXPECTED")" ]; then
    echo "autobahn summary differs from $EXPECTED: $(cat "$EXPECTED")" >&2
    exit 1
fi
