#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian packages, npm packages, and tools
# built from source (cached by version under $SWITCHYARD_TOOLS, outside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages used by the test suites (real parts, not fakes).
PACKAGES=(
  redis-server      # scale-out, queue persistence
  nginx-light       # sticky-session front for multi-node tests
  prometheus        # scrapes servers; promtool checks alert rules
  chromium          # browser tests (driven by playwright-core)
  python3-aiosmtpd  # a real SMTP server for the email channel
  openssl           # certificates for the Kubernetes control plane
  buildah podman runc # container images without a daemon
  containerd        # the node suite's container runtime (CRI), started by tests/node/run.sh
  containernetworking-plugins # the node's pod network (bridge, host-local, portmap)
  conntrack iptables # kube-proxy's Service rules
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts these on install; the tests start their own on free ports.
  for svc in redis-server nginx prometheus containerd; do
    (service "$svc" stop || true) >/dev/null 2>&1
  done
fi

# npm packages for every JS suite and the benchmark's Node peer, from their lock files.
for dir in tests/*/ bench/node-server/; do
  if [[ -f "$dir/package-lock.json" ]]; then
    stamp="$dir/node_modules/.switchyard-stamp"
    if [[ ! -f "$stamp" || "$dir/package-lock.json" -nt "$stamp" ]]; then
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) && touch "$stamp"
    fi
  fi
done
