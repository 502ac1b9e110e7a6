#!/usr/bin/env bash
# The Autobahn|Testsuite WebSocket cases against switchyard-sio's framing (its `ws_echo`
# example), driven by kosoku (PyPI; it runs the Autobahn case files natively). Every case
# must end OK, NON-STRICT or INFORMATIONAL; the summary is printed. The compression cases
# (12.*, 13.*) are left out: the crate offers no permessage-deflate. kosoku is installed
# once into a virtualenv under $SWITCHYARD_TOOLS. About 15 s warm (sio/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard-tools}"
KOSOKU_VERSION=0.1.0
# Cases of the suite without 12.* and 13.*: fewer means cases did not run.
EXPECTED_CASES=301

venv="$TOOLS/kosoku-$KOSOKU_VERSION"
if [[ ! -x "$venv/bin/kosoku" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi

cargo build --quiet -p switchyard-sio --example ws_echo
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
reports="$(mktemp -d)"
target/debug/examples/ws_echo "127.0.0.1:$port" >"$reports/ws_echo.log" 2>&1 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true; rm -rf "$reports"' EXIT
for _ in $(seq 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$echo_pid" 2>/dev/null || { cat "$reports/ws_echo.log"; exit 1; }
  sleep 0.1
done

"$venv/bin/kosoku" "127.0.0.1:$port" -x '12.*' -x '13.*' -o "$reports/out" >"$reports/kosoku.log" 2>&1 \
  || { cat "$reports/kosoku.log"; exit 1; }

python3 - "$reports/out/index.json" "$EXPECTED_CASES" <<'PY'
import collections, json, sys
index, expected = json.load(open(sys.argv[1])), int(sys.argv[2])
cases = {case: result for agent in index.values() for case, result in agent.items()}
passing = {"OK", "NON-STRICT", "INFORMATIONAL"}
counts = collections.Counter(r["behavior"] for r in cases.values())
closes = collections.Counter(r["behaviorClose"] for r in cases.values())
print(f"autobahn: {len(cases)} cases; behavior {dict(counts)}; close {dict(closes)}")
bad = sorted(c for c, r in cases.items() if r["behavior"] not in passing or r["behaviorClose"] not in passing)
for case in bad:
    print(f"  FAILED {case}: {cases[case]['behavior']} / close {cases[case]['behaviorClose']}")
if bad or len(cases) < expected:
    sys.exit(f"autobahn: {len(bad)} failed, {len(cases)} of {expected} cases ran")
PY
