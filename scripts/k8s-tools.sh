#!/usr/bin/env bash
# Builds the Kubernetes test tooling (etcd, kube-apiserver, kube-controller-manager, helm) from
# the Go module proxy and caches each one by version outside the repository:
#
#   ${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard-tools}/<tool>/<version>/<binary>
#
# A tool that is already cached is not rebuilt, so the script is cheap to call before every test
# run. `k8s-tools.sh env` prints shell exports (K8S_BIN_DIR, ETCD_BIN, HELM_BIN, ...) for the
# harness; `k8s-tools.sh build [tool...]` builds what is missing (all tools by default).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
HELM_VERSION="${HELM_VERSION:-3.21.4}"
TOOLS_ROOT="${SWITCHYARD_TOOLS:-$HOME/.cache/switchyard-tools}"

K8S_DIR="$TOOLS_ROOT/kubernetes/$K8S_VERSION"
ETCD_DIR="$TOOLS_ROOT/etcd/$ETCD_VERSION"
HELM_DIR="$TOOLS_ROOT/helm/$HELM_VERSION"

log() { echo "[k8s-tools] $*" >&2; }

# Go builds share two cores with Rust builds: keep them polite.
gobuild() { nice -n 10 go "$@"; }

# Kubernetes commands cannot be `go install`ed: k8s.io/kubernetes pins its staging modules at
# v0.0.0 with local replace directives. A wrapper module requires k8s.io/kubernetes and maps
# every v0.0.0 staging module to the matching published v0.x.y tag. Also used by
# scripts/node-tools.sh for the node's commands (kubelet, kube-proxy, kube-scheduler).
#
# build_kube_cmds <dir> <cmd>...: builds k8s.io/kubernetes/cmd/<cmd> into <dir>, replaced whole.
build_kube_cmds() {
  local dir="$1"; shift
  local work minor modfile ld p c pkgs=()
  work="$(mktemp -d)"
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (
    cd "$work"
    go mod init switchyard.dev/k8sbin >/dev/null 2>&1
    gobuild mod download "k8s.io/kubernetes@v$K8S_VERSION"
    modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$K8S_VERSION.mod"
    {
      echo "require k8s.io/kubernetes v$K8S_VERSION"
      grep '^godebug' "$modfile" || true
      awk -v v="v0.${K8S_VERSION#1.}" '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print "replace " $1 " => " $1 " " v }' "$modfile"
    } >> go.mod
    # Pin the version on each package: a bare `go get pkg` would upgrade k8s.io/kubernetes.
    gobuild get -tool "${pkgs[@]/%/@v$K8S_VERSION}"
    # Without these the binaries report v0.0.0-master, which breaks helm's kubeVersion checks
    # and the node's reported version.
    ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    CGO_ENABLED=0 gobuild build -trimpath -ldflags "$ld" -o "$dir.tmp/" "${pkgs[@]}"
  )
  rm -rf "$work" "$dir"
  mkdir -p "$(dirname "$dir")"
  mv "$dir.tmp" "$dir"
}

build_kubernetes() {
  if [[ -x "$K8S_DIR/kube-apiserver" && -x "$K8S_DIR/kube-controller-manager" ]]; then
    log "kubernetes v$K8S_VERSION cached in $K8S_DIR"; return
  fi
  log "building kube-apiserver + kube-controller-manager v$K8S_VERSION (slow: 10-20 min on 2 cores)"
  build_kube_cmds "$K8S_DIR" kube-apiserver kube-controller-manager
  "$K8S_DIR/kube-apiserver" --version >&2
}

# etcd's server module also carries local replace directives; the same wrapper trick applies.
build_etcd() {
  if [[ -x "$ETCD_DIR/etcd" ]]; then log "etcd v$ETCD_VERSION cached in $ETCD_DIR"; return; fi
  log "building etcd v$ETCD_VERSION"
  local work
  work="$(mktemp -d)"
  (
    cd "$work"
    go mod init switchyard.dev/etcdbin >/dev/null 2>&1
    gobuild get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    mkdir -p "$ETCD_DIR.tmp"
    CGO_ENABLED=0 gobuild build -trimpath -ldflags "-s -w" -o "$ETCD_DIR.tmp/etcd" go.etcd.io/etcd/server/v3
  )
  rm -rf "$work" "$ETCD_DIR"
  mv "$ETCD_DIR.tmp" "$ETCD_DIR"
  "$ETCD_DIR/etcd" --version >&2
}

build_helm() {
  if [[ -x "$HELM_DIR/helm" ]]; then log "helm v$HELM_VERSION cached in $HELM_DIR"; return; fi
  log "building helm v$HELM_VERSION"
  local minor ld
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  # Without the k8sVersion flags offline `helm template`/`helm lint` assume Kubernetes 1.20.
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  ld="$ld -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  ld="$ld -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  mkdir -p "$HELM_DIR.tmp"
  CGO_ENABLED=0 GOBIN="$HELM_DIR.tmp" gobuild install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  rm -rf "$HELM_DIR"
  mv "$HELM_DIR.tmp" "$HELM_DIR"
  "$HELM_DIR/helm" version >&2
}

print_env() {
  echo "export K8S_VERSION=$K8S_VERSION"
  echo "export K8S_BIN_DIR=$K8S_DIR"
  echo "export KUBE_APISERVER_BIN=$K8S_DIR/kube-apiserver"
  echo "export KUBE_CONTROLLER_MANAGER_BIN=$K8S_DIR/kube-controller-manager"
  echo "export ETCD_BIN=$ETCD_DIR/etcd"
  echo "export HELM_BIN=$HELM_DIR/helm"
}

# tools_main <lock> <tool>... -- <argument>...: the command line of this script and of
# scripts/node-tools.sh, which sources this one and brings its own print_env and build_<tool>s.
# One builder per lock at a time: a second caller waits, then finds the cache filled.
tools_main() {
  local lock="$1" tools=() t start; shift
  while [[ $1 != -- ]]; do tools+=("$1"); shift; done
  shift
  local usage="usage: $0 [build [$(IFS='|'; echo "${tools[*]}")]...] | env"
  local cmd="${1:-build}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    env) print_env ;;
    build)
      [[ $# -gt 0 ]] && tools=("$@")
      for t in "${tools[@]}"; do declare -F "build_$t" >/dev/null || { echo "$usage" >&2; exit 64; }; done
      mkdir -p "$TOOLS_ROOT"
      exec 9>"$TOOLS_ROOT/$lock"
      flock 9
      for t in "${tools[@]}"; do
        start=$SECONDS
        "build_$t"
        log "$t ready after $((SECONDS - start)) s"
      done
      ;;
    *) echo "$usage" >&2; exit 64 ;;
  esac
}

# Sourced by scripts/node-tools.sh (build_kube_cmds, tools_main); run, it builds or prints.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then tools_main .lock etcd kubernetes helm -- "$@"; fi
