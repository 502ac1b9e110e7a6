#!/usr/bin/env bash
# Profiles idle memory, fan-out and connects (what bench/README.md explains the goals with):
#   bench/profiles/idle-heap.txt    heaptrack: live heap per idle connection, by allocation site
#   bench/profiles/fanout-cpu.txt   perf: where the server's CPU goes at fan-out saturation
#   bench/profiles/connect-cpu.txt  perf: where it goes while clients connect as fast as they can
# usage: bash bench/profile.sh   (needs heaptrack and perf: apt-get install heaptrack linux-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
SECRET="bench-secret-that-is-long-enough-for-hs256"
CONNS=5000
# Line tables only: symbols and source lines for the profiles, the same optimised code.
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
cargo build --quiet --release -p switchyard-server -p switchyard-loadgen --bins
BIN="${CARGO_TARGET_DIR:-target}/release"
OUT=bench/profiles
TMP=$(mktemp -d)
mkdir -p "$OUT"
trap 'pkill -f "$TMP" 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up() { for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
# A copy of the binary under $TMP, so the cleanup can find it by path.
cp "$BIN/switchyard-server" "$TMP/server"
ENV=(JWT_SECRET="$SECRET" LOG_LEVEL=warn HOST=127.0.0.1 RATE_LIMIT_MESSAGE=100000000/1s RATE_LIMIT_ROOM=100000000/1s)

# 1. Idle: heap live at the peak, with $CONNS connections held.
p=$(port)
env "${ENV[@]}" WEBSOCKET_PORT="$p" heaptrack -o "$TMP/heap" "$TMP/server" >/dev/null 2>&1 &
up "$p"
"$BIN/switchyard-loadgen" --secret "$SECRET" --server "127.0.0.1:$p" idle --connections $CONNS --hold 3 >/dev/null
pkill -INT -f "$TMP/server"; wait || true
heaptrack_print -f "$TMP"/heap.*zst --print-peaks 0 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
  --flamegraph-cost-type peak -F "$TMP/heap.folded" >/dev/null
python3 bench/profile_summary.py heap "$TMP/heap.folded" $CONNS \
  "bash bench/profile.sh: heaptrack, $CONNS idle /chat connections, live heap at the peak" > "$OUT/idle-heap.txt"

# CPU profile of the server while the generator runs: OUT_FILE TITLE WARMUP_S SAMPLE_S GENERATOR_ARGS...
cpu_profile() {
  local out=$1 title=$2 warmup=$3 secs=$4 p pid gen
  shift 4
  p=$(port)
  env "${ENV[@]}" WEBSOCKET_PORT="$p" "$TMP/server" >/dev/null 2>&1 &
  up "$p"
  pid=$(pgrep -n -f "$TMP/server")
  "$BIN/switchyard-loadgen" --secret "$SECRET" --server "127.0.0.1:$p" "$@" >/dev/null &
  gen=$!
  sleep "$warmup"
  perf record -q -F 199 --call-graph dwarf,16384 -p "$pid" -o "$TMP/perf.data" -- sleep "$secs" >/dev/null 2>&1
  wait $gen || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  perf script -i "$TMP/perf.data" 2>/dev/null > "$TMP/perf.script"
  python3 bench/profile_summary.py cpu "$TMP/perf.script" 0 "bash bench/profile.sh: perf, $title, server process" > "$OUT/$out"
}

# 2. Fan-out at saturation: 1 room × 1000 members, 600 messages/s; 4 s of samples mid-run.
cpu_profile fanout-cpu.txt "fan-out 1 room x 1000 members at 600 messages/s (saturated)" 4 4 \
  fanout --members 1000 --rate 600 --duration 10
# 3. Connect storm: 19,000 handshakes (JWT verified), 2 s of samples mid-storm.
cpu_profile connect-cpu.txt "19,000 /chat connections opened 200 at a time" 2 2 \
  idle --connections 19000 --procs 2 --hold 1
echo "wrote $OUT/idle-heap.txt, $OUT/fanout-cpu.txt and $OUT/connect-cpu.txt"
