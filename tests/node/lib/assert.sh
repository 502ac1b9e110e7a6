# Assertions and waits of the node suite's scenarios (sourced by run.sh). Every check prints
# `ok: <what>` or fails the run with `FAIL: <what>` and the evidence.

ok() { printf 'ok: %s\n' "$*"; }

# expect_eq <what> <expected> <actual>
expect_eq() {
  [[ "$2" == "$3" ]] || die "$1: expected '$2', got '$3'"
  ok "$1 = $3"
}

# eventually <what> <seconds> <cmd...>: the command succeeds before the deadline. A timeout
# logs FAIL and returns 1, which ends the run (set -e) unless the caller adds diagnostics
# with `|| { ...; die ...; }`.
eventually() {
  local what="$1" secs="$2"; shift 2
  if ! wait_until "$what" "$secs" "$@"; then
    log "FAIL: $what (not within ${secs}s)"
    return 1
  fi
  ok "$what"
}

# jp <kubectl get args...> <jsonpath>: one field of one object, empty when absent.
jp() {
  local path="${*: -1}"
  kubectl get "${@:1:$#-1}" -o "jsonpath=$path" 2>/dev/null
}

# ready_pods <namespace> <label selector>: how many pods matching it are Ready.
ready_pods() {
  kubectl get pods -n "$1" -l "$2" \
    -o jsonpath='{range .items[*]}{.metadata.deletionTimestamp}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -cx '|True' || true
}

# pods_ready <namespace> <selector> <count>: exactly that many Ready pods, none terminating.
pods_ready() {
  [[ "$(ready_pods "$1" "$2")" == "$3" ]] &&
    [[ "$(kubectl get pods -n "$1" -l "$2" --no-headers 2>/dev/null | wc -l)" == "$3" ]]
}

# dump <namespace>: what a failing scenario looked at, for the log.
dump() {
  kubectl get all,pvc,pv,rtc,lease,hpa -n "$1" -o wide >&2 2>/dev/null || true
  kubectl get events -n "$1" --sort-by=.lastTimestamp 2>/dev/null | tail -25 >&2 || true
  local p
  for p in $(kubectl get pods -n "$1" -o name 2>/dev/null); do
    echo "--- logs of $p" >&2
    kubectl logs -n "$1" "$p" --all-containers --tail 15 >&2 2>/dev/null || true
  done
}

# node_client <script> [env...]: a socket.io client from tests/node/clients.
node_client() {
  local script="$1"; shift
  env "$@" node "$HERE/clients/$script"
}
