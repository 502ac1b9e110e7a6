# Scenario "autoscale": the pipeline users run for connection-based autoscaling. Prometheus
# (on the host; scripts/node-tools.sh builds it, as Debian's has no Kubernetes discovery)
# discovers the server pods through the API server and scrapes them;
# prometheus-adapter serves socket_active_connections as custom.metrics.k8s.io with the rule
# users install from monitoring/prometheus-adapter/values.yaml; the HPA the operator made reads
# it. Held connections scale the Deployment up, new pods take new connections, releasing them
# scales it back down. Prints the measured scale-up and scale-down times.

AS_NS=scale
AS_MIN=1
AS_MAX=3
AS_TARGET=5      # connections per pod
AS_FIRST=12      # held on the only pod: ceil(12/5) = 3 pods wanted
AS_SECOND=9      # opened once 3 pods run, from 9 client addresses: the Service's ClientIP
                 # affinity places each address on a random pod, so the new pods get some
                 # (all 9 on the old pod: (1/3)^9, 1 in 20000)

# The adapter's config is the `rules.custom` list of the chart values users install
# (monitoring/prometheus-adapter/values.yaml), moved up to the adapter's own `rules:` key.
adapter_config() {
  awk '/^  custom:/ {f = 1; print "rules:"; next}
       f && /^    / {print substr($0, 3); next}
       f && !/^[[:space:]]*$/ {f = 0}' "$REPO/monitoring/prometheus-adapter/values.yaml"
}

start_metrics_pipeline() {
  free_port PROM_PORT
  free_port ADAPTER_PORT
  # The relabelling of the operator's ServiceMonitor: the Kubernetes namespace goes to
  # kubernetes_namespace (the server's own `namespace` label is the Socket.IO namespace), the
  # pod name to `pod`; targets are the pods annotated prometheus.io/scrape.
  cat >"$WORK/prometheus.yml" <<YAML
global: {scrape_interval: 2s, evaluation_interval: 2s}
scrape_configs:
  - job_name: switchyard
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: $KUBECONFIG
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        regex: "true"
        action: keep
      - source_labels: [__meta_kubernetes_pod_ip, __meta_kubernetes_pod_annotation_prometheus_io_port]
        regex: (.+);(.+)
        replacement: \$1:\$2
        target_label: __address__
      - source_labels: [__meta_kubernetes_namespace]
        target_label: kubernetes_namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
YAML
  start prometheus "$PROMETHEUS_BIN" --config.file "$WORK/prometheus.yml" --storage.tsdb.path "$WORK/prometheus" \
    --web.listen-address "127.0.0.1:$PROM_PORT"
  wait_until prometheus 120 curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" || { check_alive prometheus; die "Prometheus not ready"; }
  ok "Prometheus ready on 127.0.0.1:$PROM_PORT, discovering pods through the API server"

  adapter_config >"$WORK/adapter.yaml"
  start prometheus-adapter "$PROMETHEUS_ADAPTER_BIN" --config "$WORK/adapter.yaml" \
    --prometheus-url "http://127.0.0.1:$PROM_PORT/" --metrics-relist-interval 5s \
    --secure-port "$ADAPTER_PORT" --bind-address "$POD_GW" --cert-dir "$WORK/adapter-certs" \
    --lister-kubeconfig "$KUBECONFIG" --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG"
  # The API server reaches it through a selector-less Service whose endpoint is the host.
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: v1
kind: Service
metadata: {name: prometheus-adapter, namespace: monitoring}
spec:
  ports: [{name: https, port: 443, targetPort: $ADAPTER_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: prometheus-adapter-host
  namespace: monitoring
  labels: {kubernetes.io/service-name: prometheus-adapter}
addressType: IPv4
endpoints: [{addresses: ["$POD_GW"]}]
ports: [{name: https, port: $ADAPTER_PORT, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.custom.metrics.k8s.io}
spec:
  group: custom.metrics.k8s.io
  version: v1beta1
  service: {name: prometheus-adapter, namespace: monitoring, port: 443}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta2.custom.metrics.k8s.io}
spec:
  group: custom.metrics.k8s.io
  version: v1beta2
  service: {name: prometheus-adapter, namespace: monitoring, port: 443}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 200
YAML
  eventually "APIService v1beta1.custom.metrics.k8s.io Available" 180 apiservice_available v1beta1.custom.metrics.k8s.io ||
    { check_alive prometheus-adapter; die "adapter not available"; }
}

apiservice_available() {
  [[ "$(jp apiservice "$1" '{.status.conditions[?(@.type=="Available")].status}')" == True ]]
}

# connections_by_pod: "pod value" lines from the custom metrics API (what the HPA reads).
connections_by_pod() {
  kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta1/namespaces/$AS_NS/pods/*/socket_active_connections" |
    python3 -c 'import json,sys; [print(i["describedObject"]["name"], i["value"]) for i in json.load(sys.stdin)["items"]]'
}
metric_total_is() {
  [[ "$(connections_by_pod 2>/dev/null | awk '{s += $2} END {print s + 0}')" == "$1" ]]
}
holding() { [[ "$(tail -n1 "$1" 2>/dev/null)" == "open $2" ]]; }
rtc_connections_is() { [[ "$(jp rtc scale -n "$AS_NS" '{.status.connections}')" == "$1" ]]; }
autoscaling_ready() {
  [[ "$(jp rtc scale -n "$AS_NS" '{.status.conditions[?(@.type=="AutoscalingReady")].status}')" == True ]]
}

# hold <name> <count> <url> [sources]: a background client holding connections; its output in
# $WORK/<name>.log.
hold() {
  N="$2" PREFIX="$1" SY_SECRET="$AS_SECRET" SY_URL="$3" SOURCES="${4:-}" setsid node "$HERE/clients/hold.mjs" >"$WORK/$1.log" 2>&1 </dev/null &
  echo $! >"$WORK/pids/bg-$1"
}
release() { kill -TERM "$(cat "$WORK/pids/bg-$1")" 2>/dev/null; rm -f "$WORK/pids/bg-$1"; }

scenario_autoscale() {
  ensure_operator
  start_metrics_pipeline

  kubectl create namespace "$AS_NS" >/dev/null
  kubectl apply -n "$AS_NS" -f - >/dev/null <<YAML
apiVersion: switchyard.dev/v1alpha1
kind: RealtimeCluster
metadata: {name: scale}
spec:
  redis: {managed: {persistence: {enabled: false}}}
  autoscaling:
    minReplicas: $AS_MIN
    maxReplicas: $AS_MAX
    targetConnectionsPerPod: $AS_TARGET
    scaleDown: {stabilizationWindowSeconds: 0, podsPerPeriod: 2, periodSeconds: 5}
YAML
  local sel
  sel="$(server_sel scale)"
  eventually "1 server pod Ready (minReplicas)" 240 pods_ready "$AS_NS" "$sel" 1
  eventually "AutoscalingReady True: the HPA reads socket_active_connections through the adapter" 240 autoscaling_ready ||
    { dump "$AS_NS"; kubectl describe hpa -n "$AS_NS" >&2; die "autoscaling never became ready"; }
  eventually "the custom metrics API serves socket_active_connections = 0" 120 metric_total_is 0

  AS_SECRET="$(jwt_secret "$AS_NS" scale-jwt)"
  local svc t0 up_s down_s first_pod
  svc="$(jp svc scale -n "$AS_NS" '{.spec.clusterIP}')"
  first_pod="$(kubectl get pods -n "$AS_NS" -l "$sel" -o jsonpath='{.items[0].metadata.name}')"
  hold first "$AS_FIRST" "http://$svc:3001"
  eventually "$AS_FIRST connections held on $first_pod" 120 holding "$WORK/first.log" "$AS_FIRST" ||
    { tail -5 "$WORK/first.log" >&2; die "connections not held"; }
  t0=$SECONDS
  eventually "the HPA scales to $AS_MAX Ready pods ($AS_FIRST connections, target $AS_TARGET per pod)" 300 \
    pods_ready "$AS_NS" "$sel" "$AS_MAX" || { dump "$AS_NS"; die "no scale-up"; }
  up_s=$((SECONDS - t0))
  eventually "kubectl get rtc scale: CONNECTIONS $AS_FIRST" 120 rtc_connections_is "$AS_FIRST"

  local sources
  client_addresses "$AS_SECOND" sources
  hold second "$AS_SECOND" "http://$svc:3001" "$sources"
  eventually "$AS_SECOND more connections held" 120 holding "$WORK/second.log" "$AS_SECOND" ||
    { tail -5 "$WORK/second.log" >&2; die "connections not held"; }
  local total=$((AS_FIRST + AS_SECOND))
  eventually "the custom metrics API counts all $total connections" 120 metric_total_is "$total"
  connections_by_pod | sed 's/^/  connections: /'
  local new_pods
  new_pods="$(connections_by_pod | awk -v p="$first_pod" '$1 != p {s += $2} END {print s + 0}')"
  ((new_pods > 0)) || die "the new pods took none of the $AS_SECOND new connections"
  ok "the new pods took $new_pods of the $AS_SECOND new connections"
  eventually "kubectl get rtc scale: CONNECTIONS $total" 120 rtc_connections_is "$total"
  expect_eq "replicas stay at maxReplicas" "$AS_MAX" "$(jp deploy scale -n "$AS_NS" '{.spec.replicas}')"
  kubectl get rtc -n "$AS_NS" scale

  release first
  release second
  t0=$SECONDS
  eventually "the HPA scales back to $AS_MIN pod once the connections are released" 300 \
    pods_ready "$AS_NS" "$sel" "$AS_MIN" || { dump "$AS_NS"; die "no scale-down"; }
  down_s=$((SECONDS - t0))
  eventually "kubectl get rtc scale: CONNECTIONS 0" 120 rtc_connections_is 0
  printf 'measured: scale-up 1 -> %d Ready pods %d s after %d connections were held; scale-down to %d pod %d s after release (Prometheus scrape 2 s, adapter relist 5 s, HPA sync 5 s, scale-down window 0 s)\n' \
    "$AS_MAX" "$up_s" "$AS_FIRST" "$AS_MIN" "$down_s"
}
