# Scenario "removal": deleting a RealtimeCluster removes its children (pods included) and keeps
# the Redis claim, and `helm uninstall` leaves only what docs/install.md says it leaves.
# Runs after "apply" (it removes that scenario's RealtimeCluster `hello`).

# leftovers <namespace> <selector> <kinds>: names of the objects still there.
leftovers() { kubectl get "$3" -n "$1" -l "$2" -o name 2>/dev/null; }
none_left() { [[ -z "$(leftovers "$@")" ]]; }

scenario_removal() {
  kubectl get rtc hello >/dev/null 2>&1 || scenario_apply
  local sel=app.kubernetes.io/instance=hello
  kubectl delete rtc hello --wait=true --timeout 120s >/dev/null
  ok "kubectl delete rtc hello"
  eventually "no Deployment, StatefulSet, Service, ConfigMap, PDB or pod of hello is left" 180 \
    none_left default "$sel" deployments,statefulsets,services,configmaps,poddisruptionbudgets,pods ||
    { leftovers default "$sel" deployments,statefulsets,services,configmaps,poddisruptionbudgets,pods >&2; die "children left"; }
  expect_eq "the Redis claim is kept (deleteClaimOnDelete is off)" "persistentvolumeclaim/data-hello-redis-0" \
    "$(leftovers default "$sel" persistentvolumeclaims)"

  kubectl delete rtc --all -A --wait=true --timeout 120s >/dev/null
  "$HELM" uninstall switchyard -n switchyard-system --wait --timeout 5m >/dev/null
  ok "helm uninstall switchyard"
  local rel=app.kubernetes.io/instance=switchyard
  eventually "no operator pod is left" 120 none_left switchyard-system "$rel" pods
  expect_eq "namespaced objects of the release left" "" \
    "$(leftovers switchyard-system "$rel" deployments,services,serviceaccounts,roles,rolebindings,configmaps)"
  expect_eq "cluster-wide objects of the release left" "" \
    "$(kubectl get clusterroles,clusterrolebindings -l "$rel" -o name)"
  expect_eq "the CRD stays (helm never deletes CRDs)" "customresourcedefinition.apiextensions.k8s.io/realtimeclusters.switchyard.dev" \
    "$(kubectl get crd realtimeclusters.switchyard.dev -o name)"
  expect_eq "the operator's leader Lease stays (the operator made it, not the chart)" "lease.coordination.k8s.io/switchyard" \
    "$(kubectl get lease -n switchyard-system -o name)"
}
