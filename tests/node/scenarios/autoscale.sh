# Scenario "autoscale": the pipeline users run for connection-based autoscaling. Prometheus
# (on the host; scripts/node-tools.sh builds it, as Debian's has no Kubernetes discovery)
# discovers the server pods through the API server and scrapes them;
# prometheus-adapter serves socket_active_connections as custom.metrics.k8s.io with the rule
# users install from monitoring/prometheus-adapter/values.yaml; the HPA the operator made reads
# it. Held connections scale the Deployment up, new pods take new connections, releasing them
# scales it back down. Prints the measured scale-up and scale-down times. The keda scenario
# (keda.sh) runs the same checks (scale_on_connections) in autoscaling.mode keda.

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

# ensure_prometheus: Prometheus on the host, once for every scenario that scales on it.
ensure_prometheus() {
  alive prometheus && return
  free_port PROM_PORT
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
}

# start_adapter: prometheus-adapter on the host, registered as custom.metrics.k8s.io.
start_adapter() {
  free_port ADAPTER_PORT
  adapter_config >"$WORK/adapter.yaml"
  start prometheus-adapter "$PROMETHEUS_ADAPTER_BIN" --config "$WORK/adapter.yaml" \
    --prometheus-url "http://127.0.0.1:$PROM_PORT/" --metrics-relist-interval 5s \
    --secure-port "$ADAPTER_PORT" --bind-address "$POD_GW" --cert-dir "$WORK/adapter-certs" \
    --lister-kubeconfig "$KUBECONFIG" --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG"
  register_host_api prometheus-adapter "$ADAPTER_PORT" custom.metrics.k8s.io v1beta1 v1beta2
}

# register_host_api <name> <port> <group> <version>...: an aggregated API served by a process
# on the host. The API server reaches it through a selector-less Service in `monitoring` whose
# endpoint is the host's address on the pod bridge.
register_host_api() {
  local name="$1" port="$2" group="$3" v priority=100
  shift 3
  {
    cat <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: v1
kind: Service
metadata: {name: $name, namespace: monitoring}
spec:
  ports: [{name: https, port: 443, targetPort: $port}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $name-host
  namespace: monitoring
  labels: {kubernetes.io/service-name: $name}
addressType: IPv4
endpoints: [{addresses: ["$POD_GW"]}]
ports: [{name: https, port: $port, protocol: TCP}]
YAML
    for v in "$@"; do
      cat <<YAML
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: $v.$group}
spec:
  group: $group
  version: $v
  service: {name: $name, namespace: monitoring, port: 443}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: $priority
YAML
      priority=$((priority + 100))
    done
  } | kubectl apply -f - >/dev/null
  # The first version stands for the rest: one process serves them all.
  eventually "APIService $1.$group Available" 180 apiservice_available "$1.$group" ||
    { check_alive "$name"; die "$name not available"; }
}

apiservice_available() {
  [[ "$(jp apiservice "$1" '{.status.conditions[?(@.type=="Available")].status}')" == True ]]
}

# adapter_by_pod <namespace>: "pod value" lines from the custom metrics API (what the HPA reads).
adapter_by_pod() {
  kubectl get --raw "/apis/custom.metrics.k8s.io/v1beta1/namespaces/$1/pods/*/socket_active_connections" |
    python3 -c 'import json,sys; [print(i["describedObject"]["name"], i["value"]) for i in json.load(sys.stdin)["items"]]'
}
# adapter_total <namespace>: their sum.
adapter_total() { adapter_by_pod "$1" | awk '{s += $2} END {print s + 0}'; }
# metric_total_is <command> <namespace> <n>
metric_total_is() { [[ "$("$1" "$2" 2>/dev/null)" == "$3" ]]; }
holding() { [[ "$(tail -n1 "$1" 2>/dev/null)" == "open $2" ]]; }
rtc_connections_is() { [[ "$(jp rtc scale -n "$1" '{.status.connections}')" == "$2" ]]; }
autoscaling_ready() {
  [[ "$(jp rtc scale -n "$1" '{.status.conditions[?(@.type=="AutoscalingReady")].status}')" == True ]]
}

# hold <name> <count> <url> [sources]: a background client holding connections; its output in
# $WORK/<name>.log.
hold() {
  N="$2" PREFIX="$1" SY_SECRET="$AS_SECRET" SY_URL="$3" SOURCES="${4:-}" setsid node "$HERE/clients/hold.mjs" >"$WORK/$1.log" 2>&1 </dev/null &
  echo $! >"$WORK/pids/bg-$1"
}
release() { kill -TERM "$(cat "$WORK/pids/bg-$1")" 2>/dev/null; rm -f "$WORK/pids/bg-$1"; }

# scale_on_connections <namespace> <by-pod> <total> <what> <timing> [autoscaling field...]: a
# RealtimeCluster "scale" autoscaling on connections, scaled up by held connections and down
# by releasing them. <by-pod> and <total> are commands taking the namespace that print the
# connections the autoscaler sees: "pod value" lines and their total; <what> names that source.
# The fields are added to spec.autoscaling. Prints the measured times, with <timing> (the
# pipeline's intervals) beside them.
scale_on_connections() {
  local ns="$1" by_pod="$2" total_of="$3" source="$4" timing="$5" field
  shift 5
  kubectl create namespace "$ns" >/dev/null
  {
    cat <<YAML
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
    for field in "$@"; do echo "    $field"; done
  } | kubectl apply -n "$ns" -f - >/dev/null
  local sel
  sel="$(server_sel scale)"
  eventually "1 server pod Ready (minReplicas)" 240 pods_ready "$ns" "$sel" 1
  eventually "AutoscalingReady True: $(jp rtc scale -n "$ns" '{.spec.autoscaling.mode}') mode reads socket_active_connections through $source" 240 \
    autoscaling_ready "$ns" || { dump "$ns"; kubectl describe hpa -n "$ns" >&2; die "autoscaling never became ready"; }
  kubectl get rtc scale -n "$ns" -o jsonpath='{.status.conditions[?(@.type=="AutoscalingReady")].message}{"\n"}' | sed 's/^/  AutoscalingReady: /'
  eventually "$source serves socket_active_connections = 0" 120 metric_total_is "$total_of" "$ns" 0

  AS_SECRET="$(jwt_secret "$ns" scale-jwt)"
  local svc t0 up_s down_s first_pod
  svc="$(jp svc scale -n "$ns" '{.spec.clusterIP}')"
  first_pod="$(kubectl get pods -n "$ns" -l "$sel" -o jsonpath='{.items[0].metadata.name}')"
  hold first "$AS_FIRST" "http://$svc:3001"
  eventually "$AS_FIRST connections held on $first_pod" 120 holding "$WORK/first.log" "$AS_FIRST" ||
    { tail -5 "$WORK/first.log" >&2; die "connections not held"; }
  t0=$SECONDS
  eventually "the autoscaler scales to $AS_MAX Ready pods ($AS_FIRST connections, target $AS_TARGET per pod)" 300 \
    pods_ready "$ns" "$sel" "$AS_MAX" || { dump "$ns"; die "no scale-up"; }
  up_s=$((SECONDS - t0))
  eventually "kubectl get rtc scale: CONNECTIONS $AS_FIRST" 120 rtc_connections_is "$ns" "$AS_FIRST"

  local sources
  client_addresses "$AS_SECOND" sources
  hold second "$AS_SECOND" "http://$svc:3001" "$sources"
  eventually "$AS_SECOND more connections held" 120 holding "$WORK/second.log" "$AS_SECOND" ||
    { tail -5 "$WORK/second.log" >&2; die "connections not held"; }
  local total=$((AS_FIRST + AS_SECOND))
  eventually "$source counts all $total connections" 120 metric_total_is "$total_of" "$ns" "$total"
  "$by_pod" "$ns" | sed 's/^/  connections: /'
  local new_pods
  new_pods="$("$by_pod" "$ns" | awk -v p="$first_pod" '$1 != p {s += $2} END {print s + 0}')"
  ((new_pods > 0)) || die "the new pods took none of the $AS_SECOND new connections"
  ok "the new pods took $new_pods of the $AS_SECOND new connections"
  eventually "kubectl get rtc scale: CONNECTIONS $total" 120 rtc_connections_is "$ns" "$total"
  expect_eq "replicas stay at maxReplicas" "$AS_MAX" "$(jp deploy scale -n "$ns" '{.spec.replicas}')"
  kubectl get rtc -n "$ns" scale

  release first
  release second
  t0=$SECONDS
  eventually "the autoscaler scales back to $AS_MIN pod once the connections are released" 300 \
    pods_ready "$ns" "$sel" "$AS_MIN" || { dump "$ns"; die "no scale-down"; }
  down_s=$((SECONDS - t0))
  eventually "kubectl get rtc scale: CONNECTIONS 0" 120 rtc_connections_is "$ns" 0
  printf 'measured: scale-up 1 -> %d Ready pods %d s after %d connections were held; scale-down to %d pod %d s after release (%s)\n' \
    "$AS_MAX" "$up_s" "$AS_FIRST" "$AS_MIN" "$down_s" "$timing"
}

scenario_autoscale() {
  ensure_operator
  ensure_prometheus
  start_adapter
  scale_on_connections "$AS_NS" adapter_by_pod adapter_total "the custom metrics API" \
    "Prometheus scrape 2 s, adapter relist 5 s, HPA sync 5 s, scale-down window 0 s"
}
