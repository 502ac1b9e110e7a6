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
bash tests/node/run.sh

step "all tests passed"
