#!/usr/bin/env bash
# Idempotent install of Autobahn|Testsuite (wstest, fuzzingclient mode) for wstest.sh.
#
# autobahntestsuite is Python 2.7-only, including the newest PyPI release
# (25.10.1: `print` statements, Twisted 19.10 / autobahn 0.10.9 pins). So:
#   1. find a CPython 2.7 (pyenv's 2.7.18 here; override with AUTOBAHN_PY27=/path)
#   2. make a throwaway py3 venv holding virtualenv 20.21.1, the last virtualenv
#      that can still create Python 2.7 environments (no network: bundled seeds)
#   3. virtualenv -p python2.7 $AUTOBAHN_VENV (default ${XDG_CACHE_HOME:-$HOME/.cache}/autobahn-venv)
#   4. pip install the pinned requirements-py27.txt beside this file, then
#      autobahntestsuite==25.10.1 with --no-deps (its sdist lacks the
#      requirements.txt its setup.py reads, so plain pip would install no deps)
# Re-running is a no-op once `wstest --autobahnversion` reports the right version.
# Needs: PyPI, gcc (wsaccel is compiled; Twisted, cryptography, ujson come as cp27 wheels).
# Takes about a minute on 2 cores.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${AUTOBAHN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/autobahn-venv}
VERSION=25.10.1

if "$VENV/bin/wstest" --autobahnversion 2>/dev/null | grep -q "AutobahnTestSuite $VERSION"; then
  echo "setup.sh: wstest (AutobahnTestSuite $VERSION) already installed in $VENV"
  exit 0
fi

# --- 1. a Python 2.7 interpreter -------------------------------------------------
PY27=${AUTOBAHN_PY27:-}
if [ -z "$PY27" ]; then
  cands=()
  if command -v pyenv >/dev/null 2>&1; then
    cands+=("$(pyenv root)/versions/2.7.18/bin/python2.7")
    while IFS= read -r v; do cands+=("$(pyenv root)/versions/$v/bin/python2.7"); done \
      < <(pyenv versions --bare 2>/dev/null | grep -E '^2\.7\.[0-9]+$' | sort -rV || true)
  fi
  cands+=("$HOME/.pyenv/versions/2.7.18/bin/python2.7" /usr/bin/python2.7 /usr/local/bin/python2.7)
  for c in "${cands[@]}"; do
    if [ -x "$c" ] && "$c" -c 'import sys, ssl, zlib; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
      PY27=$c; break
    fi
  done
fi
if [ -z "$PY27" ]; then
  echo "setup.sh: no usable CPython 2.7 found (tried pyenv 2.7.x, /usr/bin/python2.7)." >&2
  echo "setup.sh: Debian 12 ships no python2.7; pyenv install 2.7.18 needs python.org, which may be unreachable." >&2
  echo "setup.sh: set AUTOBAHN_PY27=/path/to/python2.7 and re-run." >&2
  exit 2
fi
echo "setup.sh: using $PY27 ($("$PY27" -c 'import sys; print(sys.version.split()[0])'))"

# --- 2. bootstrap virtualenv that can still create py2.7 envs ----------------------
BOOT=${AUTOBAHN_BOOTSTRAP:-$VENV.bootstrap}
if ! "$BOOT/bin/virtualenv" --version 2>/dev/null | grep -q '^virtualenv 20\.21\.1 '; then
  rm -rf "$BOOT"
  if ! python3 -m venv "$BOOT"; then
    echo "setup.sh: python3 -m venv failed (on plain Debian: apt-get install -y python3-venv)" >&2
    exit 2
  fi
  "$BOOT/bin/pip" install -q --disable-pip-version-check 'virtualenv==20.21.1'
fi

# --- 3. the py2.7 venv ----------------------------------------------------------------
if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
  rm -rf "$VENV"
  "$BOOT/bin/virtualenv" -q -p "$PY27" "$VENV"
fi

# --- 4. pinned deps, then the suite without its (missing) dependency list ------------
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore
"$VENV/bin/pip" install -q -r "$HERE/requirements-py27.txt"
"$VENV/bin/pip" install -q --no-deps "autobahntestsuite==$VERSION"

if ! "$VENV/bin/wstest" --autobahnversion 2>/dev/null | grep -q "AutobahnTestSuite $VERSION"; then
  echo "setup.sh: install finished but wstest does not report AutobahnTestSuite $VERSION" >&2
  "$VENV/bin/wstest" --autobahnversion >&2 || true
  exit 1
fi
echo "setup.sh: ok: $("$VENV/bin/wstest" --autobahnversion 2>/dev/null | tr '\n' ' ')in $VENV"
