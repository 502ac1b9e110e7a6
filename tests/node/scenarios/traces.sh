# Scenario "traces": traces across pods. An OTLP/gRPC receiver runs as a pod (its image built
# FROM scratch here, from images/otlp-receiver); a RealtimeCluster of 2 server pods has
# `tracing.otlpEndpoint` pointed at its Service. One chat message sent on pod A and delivered
# on pod B must arrive at the receiver as one trace with spans from both pods, the bus crossing
# recorded as pod B's consumer span under pod A's emit (clients/trace.mjs asserts it and prints
# the trace). Needs only the operator (installed if "operator" did not run).

TR_NS=traces
TR_RECEIVER_IMAGE=localhost/switchyard-node/otlp-receiver:1

image_otlp_receiver() {
  local root="$WORK/rootfs-otlp-receiver"
  mkdir -p "$root"
  go_static "$IMAGES_DIR/otlp-receiver" "$root/otlp-receiver"
  from_rootfs "$root" "$TR_RECEIVER_IMAGE" --entrypoint '["/otlp-receiver"]' --user 65532:65532 --port 4317 --port 8080
}

scenario_traces() {
  ensure_operator
  image_otlp_receiver
  kubectl create namespace "$TR_NS" >/dev/null
  kubectl apply -n "$TR_NS" -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: otlp-receiver}
spec:
  selector: {matchLabels: {app: otlp-receiver}}
  template:
    metadata: {labels: {app: otlp-receiver}}
    spec:
      containers:
        - name: receiver
          image: $TR_RECEIVER_IMAGE
          imagePullPolicy: Never
          ports: [{name: otlp-grpc, containerPort: 4317}, {name: spans, containerPort: 8080}]
          readinessProbe: {tcpSocket: {port: 4317}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: otlp-receiver}
spec:
  selector: {app: otlp-receiver}
  ports: [{name: otlp-grpc, port: 4317}]
YAML
  eventually "the OTLP receiver pod Ready" 180 pods_ready "$TR_NS" app=otlp-receiver 1 || { dump "$TR_NS"; die "no receiver"; }

  kubectl apply -n "$TR_NS" -f - >/dev/null <<YAML
apiVersion: switchyard.dev/v1alpha1
kind: RealtimeCluster
metadata: {name: traced}
spec:
  replicas: 2
  redis: {managed: {persistence: {enabled: false}}}
  tracing: {otlpEndpoint: "http://otlp-receiver:4317"}
YAML
  ok "RealtimeCluster traced with tracing.otlpEndpoint http://otlp-receiver:4317"
  local sel
  sel="$(server_sel traced)"
  eventually "2 server pods Ready" 240 pods_ready "$TR_NS" "$sel" 2 || { dump "$TR_NS"; die "traced never became Ready"; }

  local a b receiver
  { read -r -a a; read -r -a b; } < <(kubectl get pods -n "$TR_NS" -l "$sel" \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.podIP}{"\n"}{end}')
  receiver="$(pod_ips "$TR_NS" app=otlp-receiver)"
  node_client trace.mjs SY_SECRET="$(jwt_secret "$TR_NS" traced-jwt)" \
    SY_POD_A="${a[0]}" SY_URL_A="http://${a[1]}:3001" SY_POD_B="${b[0]}" SY_URL_B="http://${b[1]}:3001" \
    SY_SPANS="http://$receiver:8080/spans" SY_SERVICE=traced ||
    { dump "$TR_NS"; die "no trace across ${a[0]} and ${b[0]}"; }
  kubectl delete namespace "$TR_NS" --wait=false >/dev/null
}
