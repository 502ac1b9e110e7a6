# Scenario "operator": helm install of charts/switchyard runs the operator as pods from the
# project's image. Two replicas: one takes the leader Lease and reports itself leader in its
# metrics, the other stands by; deleting the leader's pod hands the Lease over. A leader frozen
# past its Lease loses it to the other replica and, resumed, exits and comes back as a
# standby. Then helm upgrade with changed values rolls the operator to one replica, which leads.
# Leaves the release installed: the later scenarios use this operator.

OPERATOR_NS=switchyard-system
OPERATOR_SEL=app.kubernetes.io/name=switchyard-operator,app.kubernetes.io/instance=switchyard

# leader_metric <pod>: the switchyard_operator_leader gauge scraped from the pod's /metrics.
leader_metric() {
  local ip
  ip="$(jp pod "$1" -n "$OPERATOR_NS" '{.status.podIP}')"
  curl -fsS --max-time 5 "http://$ip:8080/metrics" | awk '$1 == "switchyard_operator_leader" {print $2}'
}

lease_holder() { jp lease switchyard -n "$OPERATOR_NS" '{.spec.holderIdentity}'; }
lease_held() { [[ -n "$(lease_holder)" ]]; }
lease_held_by() { [[ "$(lease_holder)" == "$1" ]]; }
# lease_moved_from <pod>: held by a running pod other than <pod>.
lease_moved_from() {
  local h
  h="$(lease_holder)"
  [[ -n "$h" && "$h" != "$1" && "$(jp pod "$h" -n "$OPERATOR_NS" '{.status.phase}')" == Running ]]
}
leader_metric_is() { [[ "$(leader_metric "$1")" == "$2" ]]; }
restarts_of_ns() { jp pod "$2" -n "$1" '{.status.containerStatuses[0].restartCount}'; }
restarted_ns() { (($(restarts_of_ns "$1" "$2") > $3)); }
# holder_reports_leader: the pod the Lease names now reports switchyard_operator_leader 1. The
# holder is read again on every poll: a holder that misses its renewal deadline (it renews
# leaseGraceSeconds before expiry; on a starved machine the PATCH can land later) loses the
# Lease to another replica and exits, as designed, and then the new holder must report 1.
holder_reports_leader() {
  local h
  h="$(lease_holder)"
  [[ -n "$h" ]] && leader_metric_is "$h" 1
}

scenario_operator() {
  "$HELM" install switchyard "$REPO/charts/switchyard" -n "$OPERATOR_NS" --create-namespace \
    --set replicaCount=2 --set leaderElection.leaseDurationSeconds=10 --set leaderElection.leaseGraceSeconds=3 \
    --set logFormat=text --wait --timeout 5m >/dev/null || { dump "$OPERATOR_NS"; die "helm install failed"; }
  ok "helm install charts/switchyard (2 replicas) finished with --wait"
  eventually "2 operator pods Ready" 180 pods_ready "$OPERATOR_NS" "$OPERATOR_SEL" 2
  eventually "CRD realtimeclusters.switchyard.dev installed by the chart" 30 \
    kubectl get crd realtimeclusters.switchyard.dev
  eventually "the Lease switchyard has a holder" 90 lease_held

  local leader standby pods p
  leader="$(lease_holder)"
  mapfile -t pods < <(kubectl get pods -n "$OPERATOR_NS" -l "$OPERATOR_SEL" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  standby=""
  for p in "${pods[@]}"; do [[ "$p" == "$leader" ]] || standby="$p"; done
  [[ " ${pods[*]} " == *" $leader "* && -n "$standby" ]] || die "lease holder '$leader' is not one of the pods: ${pods[*]}"
  ok "lease held by pod $leader; $standby stands by"
  eventually "leader $leader serves metrics with switchyard_operator_leader 1" 60 leader_metric_is "$leader" 1
  expect_eq "switchyard_operator_leader of the standby $standby" 0 "$(leader_metric "$standby")"

  local t0=$SECONDS holder
  kubectl delete pod -n "$OPERATOR_NS" "$leader" --wait=false >/dev/null
  eventually "another live operator pod takes the Lease after the leader's pod is deleted" 120 lease_moved_from "$leader" ||
    { kubectl get lease switchyard -n "$OPERATOR_NS" -o yaml >&2; dump "$OPERATOR_NS"; die "no takeover"; }
  holder="$(lease_holder)"
  if [[ "$holder" == "$standby" ]]; then
    ok "the standby $standby took the Lease, $((SECONDS - t0)) s after the delete"
  else
    ok "the replacement pod $holder took the Lease (before the standby $standby), $((SECONDS - t0)) s after the delete"
  fi
  eventually "the Lease holder reports switchyard_operator_leader 1" 60 holder_reports_leader || {
    kubectl get pods -n "$OPERATOR_NS" -o wide >&2
    kubectl get lease switchyard -n "$OPERATOR_NS" -o yaml >&2
    kubectl logs -n "$OPERATOR_NS" "$holder" --tail=60 >&2
    kubectl logs -n "$OPERATOR_NS" "$holder" --previous --tail=30 >&2 || true
    echo "its metric: $(leader_metric "$holder" || echo unreachable)" >&2
    die "the new lease holder $holder never reported itself leader"
  }
  local now
  now="$(lease_holder)"
  if [[ "$now" != "$holder" ]]; then
    # Leadership moved again: say so, with the evidence (a missed renewal shows as the
    # first holder's "lost the leader lease" and a restart).
    ok "the Lease moved on from $holder to $now (leaseTransitions $(jp lease switchyard -n "$OPERATOR_NS" '{.spec.leaseTransitions}')), which reports leader 1"
    kubectl logs -n "$OPERATOR_NS" "$holder" --previous --tail=5 2>/dev/null || kubectl logs -n "$OPERATOR_NS" "$holder" --tail=5 || true
  fi
  eventually "the Deployment is back at 2 Ready operator pods" 180 pods_ready "$OPERATOR_NS" "$OPERATOR_SEL" 2

  # A leader that stalls past its Lease, as on a starved machine (its container frozen through
  # containerd): the other replica takes the Lease and reports leader 1; the stalled one,
  # resumed, finds the Lease gone, exits ("lost the leader lease") and comes back as a
  # standby reporting 0. This is how leadership can move after the takeover above on an
  # overloaded machine, hence holder_reports_leader.
  local stalled other cid before
  stalled="$(lease_holder)"
  other="$(kubectl get pods -n "$OPERATOR_NS" -l "$OPERATOR_SEL" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | grep -vx "$stalled")"
  cid="$(jp pod "$stalled" -n "$OPERATOR_NS" '{.status.containerStatuses[0].containerID}')"
  cid="${cid#containerd://}"
  eventually "$stalled (the leader) reports switchyard_operator_leader 1 before the stall" 60 leader_metric_is "$stalled" 1
  before="$(restarts_of_ns "$OPERATOR_NS" "$stalled")"
  ctr_ tasks pause "$cid" || die "ctr could not pause the container of $stalled"
  ok "froze the leader $stalled (ctr tasks pause), $other stands by"
  t0=$SECONDS
  eventually "$other takes the Lease from the frozen leader" 90 lease_held_by "$other" ||
    { ctr_ tasks resume "$cid"; kubectl get lease switchyard -n "$OPERATOR_NS" -o yaml >&2; dump "$OPERATOR_NS"; die "no takeover from a frozen leader"; }
  ok "$other took the Lease $((SECONDS - t0)) s after the freeze (leaseDurationSeconds 10)"
  eventually "$other reports switchyard_operator_leader 1" 60 leader_metric_is "$other" 1 || { ctr_ tasks resume "$cid"; die "no new leader"; }
  ctr_ tasks resume "$cid" || die "ctr could not resume the container of $stalled"
  ok "resumed $stalled"
  eventually "the resumed $stalled exits and the kubelet restarts it" 120 restarted_ns "$OPERATOR_NS" "$stalled" "$before" ||
    { kubectl logs -n "$OPERATOR_NS" "$stalled" --tail=20 >&2; die "$stalled did not give the leadership up"; }
  echo "  last line of its previous process: $(kubectl logs -n "$OPERATOR_NS" "$stalled" --previous --tail=1 2>&1)"
  eventually "the restarted $stalled stands by: it reports switchyard_operator_leader 0" 120 leader_metric_is "$stalled" 0
  expect_eq "the Lease holder" "$other" "$(lease_holder)"
  eventually "the Deployment is back at 2 Ready operator pods" 180 pods_ready "$OPERATOR_NS" "$OPERATOR_SEL" 2

  # helm upgrade with changed values: one replica, JSON logs at debug.
  "$HELM" upgrade switchyard "$REPO/charts/switchyard" -n "$OPERATOR_NS" --reuse-values \
    --set replicaCount=1 --set logLevel=debug --set logFormat=json --wait --timeout 5m >/dev/null ||
    { dump "$OPERATOR_NS"; die "helm upgrade failed"; }
  ok "helm upgrade (replicaCount 1, logLevel debug, logFormat json)"
  eventually "1 operator pod Ready after the upgrade" 180 pods_ready "$OPERATOR_NS" "$OPERATOR_SEL" 1
  local pod
  pod="$(kubectl get pods -n "$OPERATOR_NS" -l "$OPERATOR_SEL" -o jsonpath='{.items[0].metadata.name}')"
  expect_eq "RUST_LOG of the upgraded pod" debug "$(jp pod "$pod" -n "$OPERATOR_NS" '{.spec.containers[0].env[?(@.name=="RUST_LOG")].value}')"
  eventually "the upgraded pod $pod holds the Lease" 120 lease_held_by "$pod"
  eventually "$pod reports switchyard_operator_leader 1" 60 leader_metric_is "$pod" 1
}
