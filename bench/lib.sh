# What bench/run.sh and bench/recovery.sh share (sourced, from the repository's root, with the
# script's arguments): --smoke, the build, the process list every exit cleans up, free ports,
# Switchyard's benchmark environment, the generator, a Redis, and the results file.

SMOKE=0; [[ "${1:-}" == "--smoke" ]] && SMOKE=1
SECRET="bench-secret-that-is-long-enough-for-hs256"
OUT=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

PROFILE=release; [[ $SMOKE == 1 ]] && PROFILE=debug
cargo build --quiet $([[ $PROFILE == release ]] && echo --release) -p switchyard-server -p switchyard-loadgen --bins
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no server on $1"; return 1; }
# Every Switchyard gets the generous budgets a benchmark needs, and the peers' JWT secret.
SY_ENV=(JWT_SECRET="$SECRET" LOG_LEVEL=warn HOST=127.0.0.1 RATE_LIMIT_MESSAGE=100000000/1s RATE_LIMIT_ROOM=100000000/1s
        RATE_LIMIT_QUERY=100000000/1s RATE_LIMIT_TYPING=100000000/1s RATE_LIMIT_READ=100000000/1s)
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
gen() { "$BIN/switchyard-loadgen" --secret "$SECRET" "$@"; }
record() { echo "$1 $2" >> "$OUT/results.txt"; }  # label json

# start_redis: a Redis without persistence on a free port, left in $REDIS_PORT.
start_redis() {
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
}
