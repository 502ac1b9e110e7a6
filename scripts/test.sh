#!/usr/bin/env bash
# Runs every test of the repository. Installs what the tests need first (idempotent), so a
# fresh machine needs nothing but this command.
set -euo pipefail
cd "$(dirname "$0")/.."
export SWITCHYARD_TOOLS="${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard-tools}"
# This command builds each crate once; incremental caches would only take disk space.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "setup"
bash scripts/setup.sh

# The Go-built tools (Kubernetes, CoreDNS, Prometheus, Traefik and friends: scripts/k8s-tools.sh
# and scripts/node-tools.sh) are first needed by the cluster step. On a fresh machine they are
# about half of the run's CPU, so they build in the background at the lowest priority from here
# on: the cargo builds take the CPU they want, and the Go builds use what the test steps leave
# idle. A step that needs a tool still being built waits on the build script's lock (the
# cluster step's scripts/k8s-tools.sh call, say) and then finds it cached. Cached (every later
# run), this returns at once.
tools_log="$(mktemp)"
setsid bash -c 'nice -n 19 bash scripts/k8s-tools.sh build && nice -n 19 bash scripts/node-tools.sh build' \
  >"$tools_log" 2>&1 &
tools_pid=$!
trap 'kill -- -"$tools_pid" 2>/dev/null || true; rm -f "$tools_log"' EXIT
wait_tools() {
  local start=$SECONDS
  if ! wait "$tools_pid"; then
    cat "$tools_log"
    echo "building the Go tools failed (log above)" >&2
    exit 1
  fi
  grep -E 'ready after|cached in' "$tools_log" || true
  echo "(waited $((SECONDS - start)) s for the Go tools)"
}

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "generated files are fresh"
if [[ -f scripts/k8s-check-generated.sh ]]; then bash scripts/k8s-check-generated.sh; fi

step "Rust unit and integration tests"
cargo build --workspace --quiet
cargo test --workspace --quiet

step "WebSocket framing: the Autobahn|Testsuite cases against sio's ws_echo (kosoku)"
bash scripts/autobahn.sh

step "JS end-to-end tests (socket.io-client)"
(cd tests/js && npm test)

step "browser tests (the web app in Chromium, playwright-core)"
(cd tests/browser && npm test)

step "observability: real Prometheus scrapes two servers; dashboard and alert queries; promtool"
(cd tests/observability && npm test)

step "operator against a real Kubernetes API server"
bash tests/cluster/run.sh

step "benchmark smoke: every scenario for a few seconds, correctness only (no timing)"
bash bench/run.sh --smoke

step "container images: built FROM scratch with buildah, server run with podman"
bash tests/containers/run.sh

step "a real one-node Kubernetes: helm install, kubectl apply, autoscaling on connections (tests/node)"
wait_tools
bash tests/node/run.sh

step "all tests passed"
