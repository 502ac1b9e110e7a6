#!/usr/bin/env bash
# Builds the node half of Kubernetes that scripts/k8s-tools.sh leaves out (kubelet,
# kube-scheduler, kube-proxy), CoreDNS with the test node's plugins (tests/node/tools/coredns),
# prometheus-adapter, Prometheus, Traefik and KEDA from the Go module proxy, cached by version
# next to the control-plane tools:
#
#   ${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard-tools}/kubernetes-node/<version>/{kubelet,kube-scheduler,kube-proxy}
#   ${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard-tools}/coredns/<version>-node/coredns
#
# A tool that is already cached is not rebuilt. `node-tools.sh env` prints shell exports for
# tests/node/run.sh; `node-tools.sh build [node|coredns|adapter|prometheus|traefik|keda]...`
# builds what is missing (the others land in .../<tool>/<version>/).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# K8S_VERSION, TOOLS_ROOT, gobuild, build_kube_cmds and tools_main.
source "$HERE/k8s-tools.sh"
COREDNS_SRC="$HERE/../tests/node/tools/coredns"
COREDNS_VERSION="$(awk '{ for (i = 1; i < NF; i++) if ($i == "github.com/coredns/coredns") { sub(/^v/, "", $(i + 1)); print $(i + 1) } }' "$COREDNS_SRC/go.mod")"
ADAPTER_VERSION="${ADAPTER_VERSION:-0.12.0}"
# Prometheus 3.x; its Go module is tagged v0.3xx.y.
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-0.316.0}"
# Traefik v3, the ingress controller of the ingress scenario (v2 is not on the Go module proxy).
TRAEFIK_VERSION="${TRAEFIK_VERSION:-3.7.13}"
# Traefik 3.7.13 pins its go-http-auth fork at v0.4.1-0.20260804094822-b975dcaa8c48, which the
# proxy refuses (403 "This module version is not available"); this earlier commit of the same
# fork is served and has the API Traefik calls (only its basic and digest auth middlewares use it,
# and the ingress scenario uses neither).
TRAEFIK_HTTP_AUTH_FORK="${TRAEFIK_HTTP_AUTH_FORK:-github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e}"
# KEDA 2.20 (2.21 needs Go 1.27).
KEDA_VERSION="${KEDA_VERSION:-2.20.2}"
# Not kubernetes/<version>/: scripts/k8s-tools.sh replaces that directory as a whole.
K8S_NODE_DIR="$TOOLS_ROOT/kubernetes-node/$K8S_VERSION"
# -node: this build has only the plugins of tests/node/tools/coredns, not CoreDNS's full set.
COREDNS_DIR="$TOOLS_ROOT/coredns/$COREDNS_VERSION-node"
ADAPTER_DIR="$TOOLS_ROOT/prometheus-adapter/$ADAPTER_VERSION"
PROMETHEUS_DIR="$TOOLS_ROOT/prometheus/$PROMETHEUS_VERSION"
TRAEFIK_DIR="$TOOLS_ROOT/traefik/$TRAEFIK_VERSION"
KEDA_DIR="$TOOLS_ROOT/keda/$KEDA_VERSION"
NODE_BINS=(kubelet kube-scheduler kube-proxy)

log() { echo "[node-tools] $*" >&2; }

build_node() {
  local b missing=0
  for b in "${NODE_BINS[@]}"; do [[ -x "$K8S_NODE_DIR/$b" ]] || missing=1; done
  if ((missing == 0)); then log "${NODE_BINS[*]} v$K8S_VERSION cached in $K8S_NODE_DIR"; return; fi
  log "building ${NODE_BINS[*]} v$K8S_VERSION"
  build_kube_cmds "$K8S_NODE_DIR" "${NODE_BINS[@]}"
  "$K8S_NODE_DIR/kubelet" --version >&2
}

build_coredns() {
  if [[ -x "$COREDNS_DIR/coredns" ]]; then log "coredns v$COREDNS_VERSION cached in $COREDNS_DIR"; return; fi
  log "building coredns v$COREDNS_VERSION (bind, errors, cache, kubernetes)"
  rm -rf "$COREDNS_DIR.tmp"
  mkdir -p "$COREDNS_DIR.tmp"
  (cd "$COREDNS_SRC" && CGO_ENABLED=0 gobuild build -trimpath -ldflags "-s -w" -o "$COREDNS_DIR.tmp/coredns" .)
  rm -rf "$COREDNS_DIR"
  mv "$COREDNS_DIR.tmp" "$COREDNS_DIR"
  "$COREDNS_DIR/coredns" -version >&2
}

# prometheus-adapter serves socket_active_connections as custom.metrics.k8s.io for the HPA
# scenario, with the rule users install from monitoring/prometheus-adapter/.
build_adapter() {
  if [[ -x "$ADAPTER_DIR/adapter" ]]; then log "prometheus-adapter v$ADAPTER_VERSION cached in $ADAPTER_DIR"; return; fi
  log "building prometheus-adapter v$ADAPTER_VERSION"
  local work
  work="$(mktemp -d)"
  rm -rf "$ADAPTER_DIR.tmp"
  mkdir -p "$ADAPTER_DIR.tmp"
  # A wrapper module rather than `go install pkg@version`: that one also lists the module's
  # versions to check for deprecation, and the proxy refuses the list for this module (403).
  (
    cd "$work"
    go mod init switchyard.dev/adapterbin >/dev/null 2>&1
    go mod edit -require="sigs.k8s.io/prometheus-adapter@v$ADAPTER_VERSION"
    CGO_ENABLED=0 GOFLAGS=-mod=mod gobuild build -trimpath -ldflags "-s -w" -o "$ADAPTER_DIR.tmp/adapter" \
      sigs.k8s.io/prometheus-adapter/cmd/adapter
  )
  rm -rf "$work" "$ADAPTER_DIR"
  mv "$ADAPTER_DIR.tmp" "$ADAPTER_DIR"
}

# Prometheus with Kubernetes service discovery. Debian's prometheus package is built without
# it (`field kubernetes_sd_configs not found`), so the autoscaling scenario would have to list
# the pods for Prometheus. Only the Kubernetes mechanism is compiled in (the build tags of
# Prometheus's plugins/), which keeps the cloud SDKs out of the build.
build_prometheus() {
  if [[ -x "$PROMETHEUS_DIR/prometheus" ]]; then log "prometheus v$PROMETHEUS_VERSION cached in $PROMETHEUS_DIR"; return; fi
  log "building prometheus (module v$PROMETHEUS_VERSION, kubernetes_sd only)"
  rm -rf "$PROMETHEUS_DIR.tmp"
  mkdir -p "$PROMETHEUS_DIR.tmp"
  CGO_ENABLED=0 GOBIN="$PROMETHEUS_DIR.tmp" gobuild install -trimpath -ldflags "-s -w" \
    -tags remove_all_sd,enable_kubernetes_sd "github.com/prometheus/prometheus/cmd/prometheus@v$PROMETHEUS_VERSION"
  rm -rf "$PROMETHEUS_DIR"
  mv "$PROMETHEUS_DIR.tmp" "$PROMETHEUS_DIR"
}

# Traefik v3, the ingress controller the ingress scenario routes through. `go install pkg@version`
# refuses its module (go.mod has replace directives), so a wrapper module carries them: the
# forks are copied from Traefik's go.mod, and github.com/traefik/traefik/dynamic/ext, a nested
# module that the release's zip leaves out and the proxy does not serve, is supplied here. In
# open-source Traefik it is an extension point of empty structs (dynamic.HTTP and
# dynamic.Router embed ext.HTTP and ext.Router), so empty structs of our own build the same
# binary. The go-http-auth fork is swapped (see TRAEFIK_HTTP_AUTH_FORK).
#
# Traefik has no build tags that leave parts out, and its ACME resolver links all of lego's
# DNS-01 providers, whose cloud SDKs the proxy partly refuses (akamai, huaweicloud, oci,
# sacloud, ucloud, yandex-cloud: 403 "This module version is not available"). The build uses a
# copy of lego's module whose generated provider table names none (`go build -overlay` may not
# touch the module cache), so none of those SDKs is compiled: the build is possible and much
# cheaper, and an ACME resolver asking for a DNS-01 provider fails with a clear error. Nothing else changes (the ingress scenario uses no
# ACME).
build_traefik() {
  if [[ -x "$TRAEFIK_DIR/traefik" ]]; then log "traefik v$TRAEFIK_VERSION cached in $TRAEFIK_DIR"; return; fi
  log "building traefik v$TRAEFIK_VERSION"
  local work modfile lego
  work="$(mktemp -d)"
  rm -rf "$TRAEFIK_DIR.tmp"
  mkdir -p "$TRAEFIK_DIR.tmp"
  (
    cd "$work"
    go mod init switchyard.dev/traefikbin >/dev/null 2>&1
    gobuild mod download "github.com/traefik/traefik/v3@v$TRAEFIK_VERSION"
    modfile="$(go env GOMODCACHE)/cache/download/github.com/traefik/traefik/v3/@v/v$TRAEFIK_VERSION.mod"
    mkdir ext
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24\n' > ext/go.mod
    printf 'package ext\n\n// HTTP extends dynamic.HTTP.\ntype HTTP struct{}\n\n// Router extends dynamic.Router.\ntype Router struct{}\n' > ext/ext.go
    {
      echo "require github.com/traefik/traefik/v3 v$TRAEFIK_VERSION"
      echo "replace github.com/traefik/traefik/dynamic/ext => ./ext"
      module_pins "$modfile"
    } >> go.mod
    go mod edit -replace="github.com/abbot/go-http-auth=$TRAEFIK_HTTP_AUTH_FORK"
    lego="$(GOFLAGS=-mod=mod go list -m -f '{{.Version}}' github.com/go-acme/lego/v5)"
    lego="$(module_dir "github.com/go-acme/lego/v5@$lego")"
    [[ -f "$lego/providers/dns/zz_gen_dns_providers.go" ]] || { log "lego's provider table not found in '$lego'"; exit 1; }
    cp -r "$lego" lego
    chmod -R u+w lego
    cat > lego/providers/dns/zz_gen_dns_providers.go <<'GO'
package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName fails for every name: this Traefik build has no DNS-01
// providers (scripts/node-tools.sh).
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("ACME DNS-01 provider %q: this Traefik build has none", name)
}
GO
    go mod edit -replace=github.com/go-acme/lego/v5=./lego
    CGO_ENABLED=0 GOFLAGS=-mod=mod gobuild build -trimpath \
      -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
      -o "$TRAEFIK_DIR.tmp/traefik" github.com/traefik/traefik/v3/cmd/traefik
  )
  rm -rf "$work" "$TRAEFIK_DIR"
  mv "$TRAEFIK_DIR.tmp" "$TRAEFIK_DIR"
  "$TRAEFIK_DIR/traefik" version >&2
}

# KEDA, for the keda scenario's `autoscaling.mode: keda`: its operator (which turns the
# operator's ScaledObject into an HPA) and its metrics server (external.metrics.k8s.io, which
# the HPA reads). v2.21 needs a newer Go than this machine's; v2.20.2 builds. Its go.mod pins
# k8s.io and Prometheus with replace directives, which a wrapper module must repeat. Its many
# scalers' cloud SDKs make this the longest tool build (about 7 min at nice 19 on 2 cores).
build_keda() {
  if [[ -x "$KEDA_DIR/keda" && -x "$KEDA_DIR/keda-adapter" && -d "$KEDA_DIR/crd" ]]; then
    log "keda v$KEDA_VERSION cached in $KEDA_DIR"; return
  fi
  log "building keda v$KEDA_VERSION (operator, metrics server)"
  local work src
  work="$(mktemp -d)"
  rm -rf "$KEDA_DIR.tmp"
  mkdir -p "$KEDA_DIR.tmp/crd"
  (
    cd "$work"
    go mod init switchyard.dev/kedabin >/dev/null 2>&1
    src="$(module_dir "github.com/kedacore/keda/v2@v$KEDA_VERSION")"
    {
      echo "require github.com/kedacore/keda/v2 v$KEDA_VERSION"
      module_pins "$src/go.mod"
    } >> go.mod
    # The CRDs of the same release; KEDA's operator watches every one of them.
    cp "$src"/config/crd/bases/*.yaml "$KEDA_DIR.tmp/crd/"
    local cmd ld="-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION"
    for cmd in keda:operator keda-adapter:adapter; do
      CGO_ENABLED=0 GOFLAGS=-mod=mod gobuild build -trimpath -ldflags "$ld" \
        -o "$KEDA_DIR.tmp/${cmd%%:*}" "github.com/kedacore/keda/v2/cmd/${cmd#*:}"
    done
  )
  rm -rf "$work" "$KEDA_DIR"
  mv "$KEDA_DIR.tmp" "$KEDA_DIR"
}

# module_dir <module@version>: downloads the module and prints its directory in the module cache.
module_dir() { gobuild mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'; }

# module_pins <go.mod>: a module's replace directives (one-line or in a block) and excludes,
# local paths left out, as lines for a wrapper module's go.mod: a dependency's replaces do not
# apply when it is built as a dependency.
module_pins() {
  awk '/^replace \($/ { inblock = 1; next } inblock && /^\)/ { inblock = 0; next }
    inblock && $2 == "=>" && $3 !~ /^\./ { print "replace " $0 }
    /^replace [^(]/ && $4 !~ /^\./ { print }
    /^exclude / { print }' "$1"
}

print_env() {
  echo "export KUBELET_BIN=$K8S_NODE_DIR/kubelet"
  echo "export KUBE_SCHEDULER_BIN=$K8S_NODE_DIR/kube-scheduler"
  echo "export KUBE_PROXY_BIN=$K8S_NODE_DIR/kube-proxy"
  echo "export COREDNS_BIN=$COREDNS_DIR/coredns"
  echo "export PROMETHEUS_ADAPTER_BIN=$ADAPTER_DIR/adapter"
  echo "export PROMETHEUS_BIN=$PROMETHEUS_DIR/prometheus"
  echo "export TRAEFIK_BIN=$TRAEFIK_DIR/traefik"
  echo "export KEDA_DIR=$KEDA_DIR"
}

# Its own lock: these builds need not wait for k8s-tools.sh's (they share only Go caches).
tools_main .node-lock node coredns adapter prometheus traefik keda -- "$@"
