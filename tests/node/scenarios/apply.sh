# Scenario "apply": what a user does after helm install. `kubectl apply` of
# examples/realtimecluster-minimal.yaml, unchanged, gives a managed Redis whose claim binds to a
# volume, server pods that pass their probes, a Service that answers /health, chat through the
# Service and across pods (Redis fan-out) and `kubectl get rtc` READY True with the true replica
# count. Then the full example (examples/realtimecluster.yaml): its claim binds, its server pods
# run, and its status says what the cluster lacks (no ingress controller, no metrics adapter).

# make_pv <name> <size>: a class-less hostPath volume, which a claim without a StorageClass binds
# to when the cluster has no default class (this node has no provisioner). World-writable: the
# managed Redis runs as uid 999 and fsGroup does not apply to hostPath.
make_pv() {
  install -d -m 0777 "$WORK/pv/$1"
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $1}
spec:
  capacity: {storage: $2}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: "$WORK/pv/$1", type: Directory}
YAML
}

# ensure_operator: the operator scenario's release, or a one-replica one when run alone.
ensure_operator() {
  "$HELM" status switchyard -n switchyard-system >/dev/null 2>&1 && return
  "$HELM" install switchyard "$REPO/charts/switchyard" -n switchyard-system --create-namespace \
    --wait --timeout 5m >/dev/null || die "helm install failed"
  ok "operator installed with helm"
}

rtc_field() { jp rtc "$2" -n "$1" "$3"; }
rtc_ready() { [[ "$(rtc_field "$1" "$2" '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
pvc_bound() { [[ "$(jp pvc "$2" -n "$1" '{.status.phase}')" == Bound ]]; }
server_sel() { echo "app.kubernetes.io/name=switchyard,app.kubernetes.io/instance=$1,app.kubernetes.io/component=server"; }
redis_sel() { echo "app.kubernetes.io/name=switchyard,app.kubernetes.io/instance=$1,app.kubernetes.io/component=redis"; }
pod_ips() { kubectl get pods -n "$1" -l "$2" -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}'; }
jwt_secret() { kubectl get secret "$2" -n "$1" -o jsonpath='{.data.secret}' | base64 -d; }

scenario_apply() {
  ensure_operator
  make_pv node-pv-a 5Gi
  make_pv node-pv-b 5Gi

  # --- the minimal example, as the user gets it ---
  kubectl apply -f "$REPO/examples/realtimecluster-minimal.yaml" >/dev/null
  ok "kubectl apply -f examples/realtimecluster-minimal.yaml"
  eventually "claim data-hello-redis-0 Bound to a volume" 180 pvc_bound default data-hello-redis-0
  eventually "managed Redis pod Ready" 180 pods_ready default "$(redis_sel hello)" 1
  eventually "2 server pods Ready" 240 pods_ready default "$(server_sel hello)" 2
  eventually "kubectl get rtc hello: READY True" 120 rtc_ready default hello ||
    { dump default; die "hello never became Ready"; }
  expect_eq "kubectl get rtc hello: REPLICAS" 2 "$(rtc_field default hello '{.status.readyReplicas}')"
  kubectl get rtc hello

  local svc secret ips health
  svc="$(jp svc hello '{.spec.clusterIP}')"
  health="$(curl -fsS --max-time 10 "http://$svc:3001/health")" || die "GET /health through the Service failed"
  ok "GET http://$svc:3001/health through the ClusterIP answers: $health"
  secret="$(jwt_secret default hello-jwt)"
  [[ -n "$secret" ]] || die "the operator made no JWT secret hello-jwt"
  node_client chat.mjs SY_SECRET="$secret" SY_URL_A="http://$svc:3001" || die "chat through the Service failed"
  mapfile -t ips < <(pod_ips default "$(server_sel hello)")
  node_client chat.mjs SY_SECRET="$secret" SY_URL_A="http://${ips[0]}:3001" SY_URL_B="http://${ips[1]}:3001" ||
    die "chat across pods ${ips[0]} -> ${ips[1]} failed"
  # The servers reach Redis with the generated password (chat across pods went through it);
  # without it Redis refuses.
  local refused
  refused="$(kubectl exec hello-redis-0 -- redis-cli --no-auth-warning --pass wrong-password ping 2>&1 || true)"
  [[ "$refused" == *WRONGPASS* ]] || die "the managed Redis answered a wrong password with: $refused"
  ok "the managed Redis refuses a wrong password: $refused"

  # --- the full example: its Secret first, as the example's header says ---
  kubectl create namespace full >/dev/null
  kubectl create secret generic chat-jwt -n full --from-literal=secret="$(openssl rand -hex 32)" >/dev/null
  kubectl apply -n full -f "$REPO/examples/realtimecluster.yaml" >/dev/null
  ok "kubectl apply -f examples/realtimecluster.yaml (namespace full)"
  eventually "claim data-chat-redis-0 (2Gi) Bound to a volume" 180 pvc_bound full data-chat-redis-0
  eventually "managed Redis pod Ready" 180 pods_ready full "$(redis_sel chat)" 1
  eventually "2 server pods Ready (autoscaling.minReplicas)" 240 pods_ready full "$(server_sel chat)" 2
  kubectl get rtc -n full chat
  local routing
  routing="$(rtc_field full chat '{.status.conditions[?(@.type=="RoutingReady")].status}')"
  expect_eq "RoutingReady of the full example (no ingress controller serves class nginx here)" False "$routing"
  expect_eq "READY of the full example while routing is not ready" False \
    "$(rtc_field full chat '{.status.conditions[?(@.type=="Ready")].status}')"
  kubectl delete namespace full --wait=false >/dev/null
}
