#!/usr/bin/env bash
# Run the Autobahn|Testsuite 'fuzzingclient' (RFC 6455 conformance of a WebSocket
# SERVER) against one server on loopback, and summarise the result.
#
# usage: wstest.sh WS_URL [PROFILE] [REPORT_DIR]      (PROFILE: quick|full|nocompress|noecho)
#   WS_URL      e.g. ws://127.0.0.1:9001/  or  ws://127.0.0.1:8080/echo
#               Most cases expect the server to ECHO every text/binary message
#               on this URL.
#   profile     a fuzzingclient.<profile>.json beside this script:
#               quick (default): 247 cases: all but 9.* (limits/perf, up to 16 MiB
#                                messages) and 12.*/13.* (permessage-deflate)
#               full:            all 517 cases
#               nocompress:      all but 12.*/13.* (301 cases)
#               noecho:          the 151 cases that need no echo (see the json)
#   REPORT_DIR  where the report goes (default /tmp/autobahn/<profile>-<time>);
#               open REPORT_DIR/index.html, machine-readable REPORT_DIR/index.json
#
# prints, as its last stdout line:
#   autobahn: N cases, OK=a NON-STRICT=b INFORMATIONAL=c UNIMPLEMENTED=d FAILED=e
# exit 0 only if FAILED=0 and every selected case produced a result.
#   1 = some case FAILED, 2 = usage/setup problem, 3 = server unreachable or
#   handshake refused, 4 = wstest timed out / crashed / incomplete report (e.g.
#   the server died mid-run: 4 wins over 1).
#
# env:
#   AUTOBAHN_VENV        venv with wstest (default ${XDG_CACHE_HOME:-$HOME/.cache}/autobahn-venv; make it
#                        with setup.sh beside this file)
#   AUTOBAHN_AGENT       agent name in the report (default: sut)
#   AUTOBAHN_TIMEOUT     wall-clock cap in seconds (default 900; full 3000)
#   AUTOBAHN_STRICT_CLOSE=1  also fail on close-handshake problems (behaviorClose
#                        FAILED / UNCLEAN / WRONG CODE); default: reported only
#   AUTOBAHN_ORIGIN      Origin header to send (e.g. http://127.0.0.1:8080) if the
#                        server checks Origin; default: none sent
#   AUTOBAHN_PROTOCOLS   comma-separated Sec-WebSocket-Protocol offer, if required
#   AUTOBAHN_ALLOW_NON_LOOPBACK=1  allow a host outside 127.0.0.0/8 / ::1 (only for
#                        the project's own test hosts in its own netns)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { awk 'NR>1 && !/^#/{exit} NR>1{sub(/^# ?/,""); print}' "${BASH_SOURCE[0]}" >&2; exit 2; }

URL=${1:-}
PROFILE=${2:-quick}
[ -n "$URL" ] || usage
case "$URL" in ws://*|wss://*) ;; *) echo "wstest.sh: URL must start with ws:// or wss://" >&2; exit 2;; esac
case "$PROFILE" in *[!a-z0-9_-]*|"") echo "wstest.sh: bad profile name" >&2; exit 2;; esac

VENV=${AUTOBAHN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/autobahn-venv}
WSTEST="$VENV/bin/wstest"
if ! [ -x "$WSTEST" ]; then
  echo "wstest.sh: $WSTEST missing; run $HERE/setup.sh first" >&2
  exit 2
fi
SPEC_TEMPLATE="$HERE/fuzzingclient.$PROFILE.json"
if ! [ -f "$SPEC_TEMPLATE" ]; then
  echo "wstest.sh: no profile '$PROFILE' (have: $(cd "$HERE" && ls fuzzingclient.*.json | sed 's/fuzzingclient\.//; s/\.json//' | tr '\n' ' '))" >&2
  exit 2
fi

AGENT=${AUTOBAHN_AGENT:-sut}
if [ "$PROFILE" = full ]; then DEF_T=3000; else DEF_T=900; fi
TIMEOUT=${AUTOBAHN_TIMEOUT:-$DEF_T}

# --- preflight: loopback only, reachable, and the URL really upgrades --------
python3 - "$URL" "${AUTOBAHN_ALLOW_NON_LOOPBACK:-0}" "${AUTOBAHN_ORIGIN:-}" "${AUTOBAHN_PROTOCOLS:-}" <<'PY' || exit $?
import base64, ipaddress, os, socket, ssl, sys
from urllib.parse import urlsplit
url, allow, origin, protos = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
u = urlsplit(url)
host = u.hostname or ""
port = u.port or (443 if u.scheme == "wss" else 80)
try:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
except OSError as e:
    print(f"wstest.sh: cannot resolve {host!r}: {e}", file=sys.stderr); sys.exit(3)
addrs = {ipaddress.ip_address(i[4][0]) for i in infos}
if not allow and not all(a.is_loopback for a in addrs):
    print(f"wstest.sh: refusing non-loopback target {host} ({', '.join(map(str, addrs))}); "
          "set AUTOBAHN_ALLOW_NON_LOOPBACK=1 only for the project's own netns test hosts",
          file=sys.stderr)
    sys.exit(2)
path = (u.path or "/") + (("?" + u.query) if u.query else "")
key = base64.b64encode(os.urandom(16)).decode()
hosthdr = f"[{host}]" if ":" in host else host
req = (f"GET {path} HTTP/1.1\r\nHost: {hosthdr}:{port}\r\nUpgrade: websocket\r\n"
       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
       + (f"Origin: {origin}\r\n" if origin else "")
       + (f"Sec-WebSocket-Protocol: {protos}\r\n" if protos else "") + "\r\n")
try:
    s = socket.create_connection((host, port), timeout=5)
    if u.scheme == "wss":
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=host)
    s.sendall(req.encode())
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    status = buf.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    try:
        s.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # masked close 1000
    except OSError:
        pass
    s.close()
except socket.timeout:
    print(f"wstest.sh: {host}:{port} accepted but sent no handshake answer within 5 s", file=sys.stderr); sys.exit(3)
except OSError as e:
    print(f"wstest.sh: cannot connect to {host}:{port}: {e}", file=sys.stderr); sys.exit(3)
if " 101" not in status:
    print(f"wstest.sh: {url} did not upgrade to WebSocket (got {status!r})", file=sys.stderr); sys.exit(3)
PY

OUT=${3:-${AUTOBAHN_OUT_ROOT:-/tmp/autobahn}/$PROFILE-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/index.json" "$OUT/index.html"   # never summarise a stale report

# --- effective spec ------------------------------------------------------------
python3 - "$SPEC_TEMPLATE" "$OUT/spec.json" "$URL" "$AGENT" "$OUT" "${AUTOBAHN_ORIGIN:-}" "${AUTOBAHN_PROTOCOLS:-}" <<'PY' || exit 2
import json, sys
tmpl, dst, url, agent, out, origin, protos = sys.argv[1:8]
spec = json.load(open(tmpl))
spec.pop("_comment", None)
server = {"agent": agent, "url": url}
if origin:
    server["origin"] = origin
if protos:
    server["protocols"] = [p.strip() for p in protos.split(",") if p.strip()]
spec["servers"] = [server]
spec["outdir"] = out
json.dump(spec, open(dst, "w"), indent=2)
PY

echo "wstest.sh: profile=$PROFILE url=$URL report=$OUT timeout=${TIMEOUT}s" >&2
START=$(date +%s)
( cd "$OUT" && exec timeout --kill-after=15 "$TIMEOUT" "$WSTEST" -m fuzzingclient -s "$OUT/spec.json" ) >"$OUT/wstest.log" 2>&1
RC=$?
END=$(date +%s)
echo "wstest.sh: wstest exit=$RC after $((END - START))s (log: $OUT/wstest.log)" >&2

# --- summarise -------------------------------------------------------------------
python3 - "$OUT" "$AGENT" "$RC" "$((END - START))" "${AUTOBAHN_STRICT_CLOSE:-0}" <<'PY'
import json, os, re, sys
out, agent, rc, secs, strict_close = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
log = open(os.path.join(out, "wstest.log"), errors="replace").read()
m = re.search(r"will run (\d+) test cases", log)
expected = int(m.group(1)) if m else None
idx = os.path.join(out, "index.json")
res = {}
if os.path.exists(idx):
    res = json.load(open(idx)).get(agent, {})
cats = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
cnt = dict.fromkeys(cats, 0)
other = {}
bad_close = []
def key(c):
    return [int(x) for x in c.split(".")]
for cid in sorted(res, key=key):
    r = res[cid]
    b = r.get("behavior")
    if b in cnt:
        cnt[b] += 1
    else:  # e.g. "NO_CLOSE": treat as failure
        other[b] = other.get(b, 0) + 1
        cnt["FAILED"] += 1
    if r.get("behaviorClose") not in ("OK", "INFORMATIONAL") and b != "UNIMPLEMENTED":
        bad_close.append(f"{cid}:{r.get('behaviorClose')}")
failed = [c for c in sorted(res, key=key) if res[c].get("behavior") not in cats[:4]]
n = len(res)
code = 0
if failed:
    print(f"wstest.sh: FAILED cases: {' '.join(failed[:60])}{' ...' if len(failed) > 60 else ''}", file=sys.stderr)
    code = 1
if bad_close:
    print(f"wstest.sh: close-handshake issues ({len(bad_close)}): {' '.join(bad_close[:40])}"
          f"{' ...' if len(bad_close) > 40 else ''}", file=sys.stderr)
    if strict_close:
        code = code or 1
if rc in (124, 137):
    print(f"wstest.sh: wstest TIMED OUT after {secs}s; partial or no report", file=sys.stderr); code = 4
elif rc != 0:
    print(f"wstest.sh: wstest exited {rc}; tail of log:\n" + "\n".join(log.splitlines()[-15:]), file=sys.stderr); code = 4
if expected is None or n < expected:
    print(f"wstest.sh: incomplete report: {n} results, expected {expected}", file=sys.stderr)
    if "Connection to" in log and "failed" in log:
        print("wstest.sh: wstest lost the server mid-run: " +
              (re.search(r"Connection to .*failed.*", log).group(0)), file=sys.stderr)
    code = 4
print(f"autobahn: {n} cases, OK={cnt['OK']} NON-STRICT={cnt['NON-STRICT']} "
      f"INFORMATIONAL={cnt['INFORMATIONAL']} UNIMPLEMENTED={cnt['UNIMPLEMENTED']} FAILED={cnt['FAILED']}")
sys.exit(code)
PY
