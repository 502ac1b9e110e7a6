#!/usr/bin/env bash
# The node suite: a real one-node Kubernetes started by this script (containerd, kubelet,
# kube-proxy, CoreDNS, scheduler, controller manager, API server, etcd; see lib/cluster.sh), the
# project's own images imported into it, and the scenarios in scenarios/ run against real pods:
#
#   operator   helm install charts/switchyard: the operator runs as a pod, takes its lease,
#              serves metrics; another replica takes over when the leader's pod is deleted,
#              and when the leader is frozen past its lease
#   apply      kubectl apply examples/realtimecluster-minimal.yaml and the full example:
#              Redis with its claim bound, server pods Ready, chat across pods, READY True
#   rollout    image tag and a config field changed under chat traffic: no acked message
#              lost or doubled, clients reconnect by themselves, every old pod stopped by its
#              SIGTERM drain (exit 0 before its grace period ends)
#   faults     server pod deleted, server container SIGKILLed, Redis restarted (AOF on its
#              claim) under chat traffic: no acked message lost or doubled; the users of the
#              SIGKILLed pod shown offline by the other pod within the documented bound
#   autoscale  Prometheus + prometheus-adapter (monitoring/prometheus-adapter/ rule) feed the
#              HPA on socket_active_connections: held connections scale up, release scales down
#   keda       autoscaling.mode keda: KEDA's operator and metrics server turn the operator's
#              ScaledObject into an HPA on Prometheus's total; the same scale up and down
#   traces     an OTLP receiver pod (images/otlp-receiver) gets the spans of 2 server pods:
#              a message sent on one pod and delivered on the other is one trace from both
#   ingress    Traefik v3 as a pod in front of 3 server pods (routing.ingress.kind traefik):
#              WebSocket, long-polling and HTTP API clients through it, messages across every
#              pair of pods; long-polling fails through a Service without affinity
#   removal    kubectl delete rtc removes the children and keeps the claim; helm uninstall
#              leaves the CRD and the operator's Lease only
#
#   bash tests/node/run.sh                 all scenarios
#   SCENARIOS="operator apply" bash tests/node/run.sh   (a subset; later ones need "apply")
#   KEEP_NODE_LOGS=/tmp/node-logs bash tests/node/run.sh   (component and pod logs kept)
#
# Needs root, Debian's containerd/runc/conntrack/buildah/CNI plugins (scripts/setup.sh) and the
# tools of scripts/k8s-tools.sh and scripts/node-tools.sh (both cached; built when missing).
# Everything it creates is removed on exit, whatever the outcome.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SCENARIOS="${SCENARIOS:-operator apply rollout faults autoscale keda traces ingress removal}"

source "$HERE/lib/cluster.sh"
source "$HERE/lib/images.sh"
source "$HERE/lib/assert.sh"
for f in "$HERE"/scenarios/*.sh; do source "$f"; done

[[ $EUID == 0 ]] || die "the node suite must run as root (it creates a bridge, iptables rules, mounts and cgroups)"
bash "$REPO/scripts/k8s-tools.sh" build
bash "$REPO/scripts/node-tools.sh" build
eval "$(bash "$REPO/scripts/k8s-tools.sh" env)"
eval "$(bash "$REPO/scripts/node-tools.sh" env)"
HELM="$HELM_BIN"
APP_VERSION="$(awk '/^appVersion:/ {gsub(/"/, "", $2); print $2}' "$REPO/charts/switchyard/Chart.yaml")"
[[ -d "$REPO/tests/js/node_modules/socket.io-client" ]] || die "socket.io-client missing: run scripts/setup.sh"
cluster_preflight
for s in $SCENARIOS; do
  declare -F "scenario_$s" >/dev/null || die "no scenario $s (have: $(cd "$HERE/scenarios" && ls | sed 's/\.sh$//' | xargs))"
done

started=$SECONDS
trap 'status=$?; cluster_down; exit $status' EXIT
trap 'exit 130' INT TERM
cluster_up
log "cluster up after $((SECONDS - started)) s"
t=$SECONDS
images_build
log "images built and imported after $((SECONDS - t)) s"

for s in $SCENARIOS; do
  t=$SECONDS
  printf '\n=== scenario %s\n' "$s"
  "scenario_$s"
  log "scenario $s passed in $((SECONDS - t)) s"
done
printf '\nnode suite: %s passed in %d s\n' "$SCENARIOS" "$((SECONDS - started))"
