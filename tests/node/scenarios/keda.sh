# Scenario "keda": autoscaling.mode keda, the other pipeline users run. KEDA v2.20 (its operator
# and metrics server, built by scripts/node-tools.sh, on the host like prometheus-adapter) turns
# the ScaledObject the operator writes into an HPA of its own that reads the cluster's total
# connections from Prometheus through external.metrics.k8s.io. The same held connections as
# the autoscale scenario scale the Deployment up and back down; prints the measured times.

KEDA_NS=keda-scale

# keda_certs <dir>: a CA and one certificate signed by it for both ends of the mutual TLS
# between KEDA's metrics server and its operator's gRPC metrics service (what KEDA's cert
# rotation writes to /certs in a cluster: ca.crt, tls.crt, tls.key).
keda_certs() {
  mkdir -p "$1"
  (
    cd "$1"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=keda-test-ca \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=keda-operator -keyout tls.key -out tls.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >ext.cnf
    openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
      -out tls.crt 2>/dev/null
  )
}

# start_keda: KEDA's CRDs, its operator and its metrics server (registered as
# external.metrics.k8s.io), both with the admin kubeconfig.
start_keda() {
  # Server-side: the ScaledJob CRD is too large for kubectl's last-applied annotation.
  kubectl apply --server-side -f "$KEDA_DIR/crd" >/dev/null
  kubectl wait --for condition=Established --timeout 60s -f "$KEDA_DIR/crd" >/dev/null
  ok "KEDA's CRDs established"
  kubectl create namespace keda >/dev/null
  keda_certs "$WORK/keda-certs"
  local grpc metrics probe secure adapter_metrics
  free_port grpc
  free_port metrics
  free_port probe
  free_port secure
  free_port adapter_metrics
  # Outside a pod KEDA reads its namespace from these; empty WATCH_NAMESPACE is every namespace.
  local keda_env=(env KEDA_CLUSTER_OBJECT_NAMESPACE=keda POD_NAMESPACE=keda WATCH_NAMESPACE=)
  start keda "${keda_env[@]}" "$KEDA_DIR/keda" --cert-dir "$WORK/keda-certs" --metrics-service-bind-address "127.0.0.1:$grpc" \
    --metrics-bind-address "127.0.0.1:$metrics" --health-probe-bind-address "127.0.0.1:$probe"
  wait_up keda "the KEDA operator ready" 120 curl -fsS "http://127.0.0.1:$probe/readyz"
  ok "KEDA operator ready"
  start keda-metrics-apiserver "${keda_env[@]}" "$KEDA_DIR/keda-adapter" --cert-dir "$WORK/keda-certs" \
    --tls-cert-file "$WORK/keda-certs/tls.crt" --tls-private-key-file "$WORK/keda-certs/tls.key" \
    --metrics-service-address "127.0.0.1:$grpc" --port "$adapter_metrics" \
    --secure-port "$secure" --bind-address "$POD_GW" \
    --lister-kubeconfig "$KUBECONFIG" --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG"
  register_host_api keda-metrics-apiserver "$secure" external.metrics.k8s.io v1beta1
}

# keda_total <namespace>: the total connections KEDA serves to its HPA through the external
# metrics API (the metric named in KEDA's HPA).
keda_total() {
  local metric
  metric="$(jp hpa keda-hpa-scale -n "$1" '{.spec.metrics[0].external.metric.name}')"
  [[ -n "$metric" ]] || return 1
  kubectl get --raw "/apis/external.metrics.k8s.io/v1beta1/namespaces/$1/$metric?labelSelector=scaledobject.keda.sh%2Fname%3Dscale" |
    python3 -c '
import json, sys
v = json.load(sys.stdin)["items"][0]["value"]
print(round(float(v[:-1]) / 1000) if v.endswith("m") else int(v))'
}

# prometheus_by_pod <namespace>: "pod value" lines from Prometheus, the source KEDA queries.
prometheus_by_pod() {
  curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/query" \
    --data-urlencode "query=sum by (pod) (socket_active_connections{kubernetes_namespace=\"$1\"})" |
    python3 -c 'import json,sys; [print(r["metric"]["pod"], r["value"][1]) for r in json.load(sys.stdin)["data"]["result"]]'
}

scenario_keda() {
  ensure_operator
  ensure_prometheus
  start_keda
  scale_on_connections "$KEDA_NS" prometheus_by_pod keda_total "KEDA's external metrics API" \
    "Prometheus scrape 2 s, KEDA queries Prometheus on each HPA read, HPA sync 5 s, scale-down window 0 s" \
    "mode: keda" "keda: {prometheusServerAddress: \"http://127.0.0.1:$PROM_PORT\"}"
}
