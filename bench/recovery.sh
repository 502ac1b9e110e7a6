#!/usr/bin/env bash
# Connection state recovery on and off, side by side in one run: the fan-out of one room of
# 1,000 members on one process (in memory) at 50 and 800 messages/s, and the same at 50/s over
# three processes on one Redis (recovery on: the bus is a Redis stream), in back-to-back
# rounds with the order of off and on alternating. Prints one table and the ratios.
#   bash bench/recovery.sh            3 rounds of 10 s runs (about 6 minutes with a warm build)
#   bash bench/recovery.sh --smoke    1 round of 2 s runs on the debug build
# Servers and the generator share this machine; compare within a round.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
if [[ $SMOKE == 1 ]]; then MEMBERS=20; DUR=2; ROUNDS=1; RATES=(20); else MEMBERS=1000; DUR=10; ROUNDS=3; RATES=(50 800); fi
WINDOW=120000

start() { # port recovery_window_ms [redis_url]
  env "${SY_ENV[@]}" WEBSOCKET_PORT="$1" RECOVERY_WINDOW_MS="$2" ${3:+REDIS_URL=$3} "$BIN/switchyard-server" >>"$OUT/server.log" 2>&1 &
  LAST=$!; PIDS+=($LAST); wait_http "$1"
}

start_redis; rport=$REDIS_PORT

single() { # label window rate
  local port pid
  port=$(free_port); start "$port" "$2"; pid=$LAST
  record "$1" "$(gen --server 127.0.0.1:$port --server-pid "$pid" fanout --rooms 1 --members $MEMBERS --rate "$3" --duration $DUR)"
  stop "$pid"
}
cross() { # label window: three processes on the Redis, members spread over them
  local servers=() pids=() p
  for _ in 1 2 3; do p=$(free_port); start "$p" "$2" "redis://127.0.0.1:$rport"; pids+=($LAST); servers+=(--server "127.0.0.1:$p"); done
  record "$1" "$(gen "${servers[@]}" $(printf -- '--server-pid %s ' "${pids[@]}") fanout --rooms 1 --members $MEMBERS --rate "${RATES[0]}" --duration $DUR)"
  for p in "${pids[@]}"; do stop "$p"; done
  redis-cli -p "$rport" flushall >/dev/null
}
for round in $(seq 1 $ROUNDS); do
  # Off first in odd rounds, on first in even ones.
  order=(0 $WINDOW); (( round % 2 == 0 )) && order=($WINDOW 0)
  for w in "${order[@]}"; do
    mode=$([[ $w == 0 ]] && echo off || echo on)
    for rate in "${RATES[@]}"; do single "single/$mode/$rate/$round" "$w" "$rate"; done
    cross "cross/$mode/${RATES[0]}/$round" "$w"
  done
done

python3 - "$OUT/results.txt" "bash bench/recovery.sh${1:+ $1}" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, data = line.split(" ", 1)
    rows[label] = json.loads(data)
print(f"command: {sys.argv[2]}\n")
print("| setup | recovery | rate/s | round | delivered/s | drops | p50 ms | p99 ms |")
print("|---|---|---|---|---|---|---|---|")
for label, r in rows.items():
    setup, mode, rate, rnd = label.split("/")
    print(f"| {setup} | {mode} | {rate} | {rnd} | {r['delivered_per_sec']:,.0f} | {r['drops']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
def ratio(a, b, key):
    out = []
    for rnd in sorted({l.split("/")[3] for l in rows}):
        x, y = rows.get(f"{a}/{rnd}"), rows.get(f"{b}/{rnd}")
        if x and y and y[key]:
            out.append(x[key] / y[key])
    return out
print()
rates = sorted({int(l.split("/")[2]) for l in rows if l.startswith("single/")})
low = rates[0]
checks = [(f"single on / off, p99 at {r}/s", f"single/on/{r}", f"single/off/{r}", "p99_ms") for r in rates]
checks += [(f"single on / off, delivered/s at {r}/s", f"single/on/{r}", f"single/off/{r}", "delivered_per_sec") for r in rates]
checks += [
    (f"cross on / off, p99 at {low}/s", f"cross/on/{low}", f"cross/off/{low}", "p99_ms"),
    (f"cross / single, p99 at {low}/s, recovery on", f"cross/on/{low}", f"single/on/{low}", "p99_ms"),
    (f"cross / single, p99 at {low}/s, recovery off", f"cross/off/{low}", f"single/off/{low}", "p99_ms"),
]
for name, a, b, key in checks:
    rs = ratio(a, b, key)
    if rs:
        print(f"- {name}: {', '.join(f'{x:.2f}' for x in rs)} (median {statistics.median(rs):.2f})")
EOF
