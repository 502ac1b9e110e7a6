# Scenario "ingress": the seed's chat scenario through a real ingress controller with sticky
# sessions. Traefik v3 (scripts/node-tools.sh, image from lib/images.sh) runs as a pod with the
# RBAC its Kubernetes Ingress provider needs and an IngressClass, reachable from the host on a
# NodePort of the node's bridge address. A RealtimeCluster of 3 server pods with
# `routing.ingress.kind: traefik` gets an Ingress and a Service carrying Traefik's sticky-cookie
# annotations; it is READY only once Traefik is told which address to publish in the Ingress's
# status (until then RoutingReady says so). Through Traefik (clients/ingress.mjs): WebSocket and
# long-polling-only clients spread over all 3 pods, messages cross every pair of pods, the HTTP
# API sends and reads, and a WebSocket and a polling session outlive Traefik's 60 s read
# timeout. Long-polling-only clients through a Service without session affinity fail ("Session
# ID unknown"), and work through the operator's Service (sessionAffinity: ClientIP). Needs only
# the operator (installed if "operator" did not run).

ING_NS=ingress
ING_HOST=chat.switchyard.test

# traefik_servers <service>: how many servers Traefik's load balancer has for the Kubernetes
# Service <namespace>-<name>-<port>, from Traefik's own API.
traefik_servers() {
  curl -fsS --max-time 5 "http://$(pod_ips "$ING_NS" app=traefik):9000/api/http/services" |
    jq --arg n "$1@kubernetes" '[.[] | select(.name == $n) | .loadBalancer.servers[]] | length'
}
traefik_servers_are() { [[ "$(traefik_servers "$1")" == "$2" ]]; }
routing_is() { [[ "$(routing_condition status) $(routing_condition reason)" == "$1 $2" ]]; }
routing_condition() { jp rtc chat -n "$ING_NS" "{.status.conditions[?(@.type==\"RoutingReady\")].$1}"; }

start_traefik() {
  image_traefik
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: traefik, namespace: $ING_NS}
---
# What Traefik's kubernetesingress provider reads: Ingresses and their classes, the Services
# and EndpointSlices behind them, TLS Secrets, Nodes (cluster-scope informer); it writes the
# Ingress status.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: switchyard-node-traefik}
rules:
  - apiGroups: [""]
    resources: [services, secrets, nodes]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [ingresses, ingressclasses]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [ingresses/status]
    verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: switchyard-node-traefik}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: switchyard-node-traefik}
subjects: [{kind: ServiceAccount, name: traefik, namespace: $ING_NS}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec: {controller: traefik.io/ingress-controller}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: traefik, namespace: $ING_NS}
spec:
  selector: {matchLabels: {app: traefik}}
  template:
    metadata: {labels: {app: traefik}}
    spec:
      serviceAccountName: traefik
      containers:
        - name: traefik
          image: $TRAEFIK_IMAGE
          imagePullPolicy: Never
          args:
            - --entrypoints.web.address=:8000
            - --entrypoints.traefik.address=:9000
            - --ping=true
            # The API (read-only, on the internal entrypoint) tells the test when Traefik
            # knows all the server pods.
            - --api.insecure=true
            # The dashboard's files are not in the Go module (they are built with npm).
            - --api.dashboard=false
            - --providers.kubernetesingress=true
            # Nothing leaves the machine (nor could it).
            - --global.checknewversion=false
            - --global.sendanonymoususage=false
            - --log.level=INFO
          ports: [{name: web, containerPort: 8000}, {name: admin, containerPort: 9000}]
          readinessProbe: {httpGet: {path: /ping, port: 9000}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: traefik, namespace: $ING_NS}
spec:
  type: NodePort
  selector: {app: traefik}
  ports: [{name: web, port: 80, targetPort: web}]
YAML
  eventually "Traefik pod Ready" 180 pods_ready "$ING_NS" app=traefik 1 || { dump "$ING_NS"; die "Traefik never became Ready"; }
}

scenario_ingress() {
  ensure_operator
  kubectl create namespace "$ING_NS" >/dev/null
  start_traefik

  kubectl apply -n "$ING_NS" -f - >/dev/null <<YAML
apiVersion: switchyard.dev/v1alpha1
kind: RealtimeCluster
metadata: {name: chat}
spec:
  replicas: 3
  redis: {managed: {persistence: {enabled: false}}}
  routing:
    host: $ING_HOST
    ingress: {className: traefik, kind: traefik}
YAML
  ok "RealtimeCluster chat: 3 replicas, routing.ingress {className: traefik, kind: traefik}"
  local sel
  sel="$(server_sel chat)"
  eventually "3 server pods Ready" 300 pods_ready "$ING_NS" "$sel" 3 || { dump "$ING_NS"; die "chat never became Ready"; }
  expect_eq "Ingress chat: class" traefik "$(jp ingress chat -n "$ING_NS" '{.spec.ingressClassName}')"
  expect_eq "Service chat: Traefik sticky cookie" "true switchyard-affinity" \
    "$(jp svc chat -n "$ING_NS" '{.metadata.annotations.traefik\.ingress\.kubernetes\.io/service\.sticky\.cookie} {.metadata.annotations.traefik\.ingress\.kubernetes\.io/service\.sticky\.cookie\.name}')"
  eventually "Traefik routes $ING_HOST to the 3 server pods" 120 traefik_servers_are "$ING_NS-chat-3001" 3 ||
    { dump "$ING_NS"; die "Traefik never had the 3 servers"; }

  # Traefik serves the Ingress now, but writes no address into its status unless told which
  # one to publish: RoutingReady (and READY) stay False, and the operator says why.
  eventually "RoutingReady False, WaitingForAddress, while Traefik publishes no address" 60 routing_is False WaitingForAddress
  [[ "$(routing_condition message)" == *"providers.kubernetesIngress.ingressEndpoint"* ]] ||
    die "RoutingReady's message does not name Traefik's ingressEndpoint: $(routing_condition message)"
  ok "RoutingReady says: $(routing_condition message)"
  # A NodePort Service has no load-balancer status for publishedService to copy: publish the
  # node's address.
  kubectl patch deployment traefik -n "$ING_NS" --type=json -p "[{\"op\": \"add\", \"path\": \"/spec/template/spec/containers/0/args/-\",
    \"value\": \"--providers.kubernetesingress.ingressendpoint.ip=$POD_GW\"}]" >/dev/null
  eventually "Traefik restarted with ingressEndpoint.ip=$POD_GW" 180 sh -c \
    "kubectl rollout status deployment/traefik -n $ING_NS --timeout=5s && [ \"\$(kubectl get pods -n $ING_NS -l app=traefik --no-headers | wc -l)\" = 1 ]" ||
    { dump "$ING_NS"; die "Traefik did not restart"; }
  eventually "kubectl get rtc chat: READY True" 120 rtc_ready "$ING_NS" chat || { dump "$ING_NS"; die "chat never became Ready"; }
  ok "RoutingReady says: $(routing_condition message)"
  kubectl get rtc chat -n "$ING_NS" -o wide
  eventually "the new Traefik pod routes $ING_HOST to the 3 server pods" 120 traefik_servers_are "$ING_NS-chat-3001" 3 ||
    { dump "$ING_NS"; die "Traefik never had the 3 servers"; }

  # The host reaches Traefik the way outside clients reach a NodePort: on the node's address.
  local port url headers="$WORK/ingress-handshake.headers"
  port="$(jp svc traefik -n "$ING_NS" '{.spec.ports[0].nodePort}')"
  url="http://$ING_HOST:$port"
  # Until kube-proxy has moved the NodePort to the restarted Traefik pod.
  eventually "an Engine.IO handshake through Traefik at $POD_GW:$port (Host $ING_HOST)" 120 \
    curl -fsS --max-time 10 -o /dev/null -D "$headers" --resolve "$ING_HOST:$port:$POD_GW" "$url/socket.io/?EIO=4&transport=polling" ||
    { dump "$ING_NS"; die "no handshake through Traefik"; }
  local cookie
  cookie="$(grep -i '^set-cookie: switchyard-affinity=' "$headers" | tr -d '\r')"
  [[ "$cookie" == *"; HttpOnly"* && "$cookie" == *"SameSite=Lax"* && "$cookie" == *"Max-Age=172800"* ]] ||
    die "no affinity cookie (HttpOnly, SameSite=Lax, Max-Age=172800) on the handshake through Traefik: $(cat "$headers")"
  ok "the handshake through Traefik sets ${cookie#*: }"

  # The control: the same pods behind a Service without session affinity.
  kubectl apply -n "$ING_NS" -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: chat-plain}
spec:
  selector: {$(sed 's/=/: /g; s/,/, /g' <<<"$sel")}
  sessionAffinity: None
  ports: [{name: http, port: 3001, targetPort: http}]
YAML
  eventually "Service chat-plain has the 3 pods" 120 sh -c \
    "[ \"\$(kubectl get endpointslices -n $ING_NS -l kubernetes.io/service-name=chat-plain -o jsonpath='{.items[*].endpoints[*].addresses[0]}' | wc -w)\" = 3 ]"
  local plain
  plain="http://$(jp svc chat-plain -n "$ING_NS" '{.spec.clusterIP}'):3001"
  # kube-proxy programs its rules a little after the EndpointSlice exists.
  eventually "Service chat-plain answers at $plain" 120 curl -fsS --max-time 5 "$plain/health"

  local pods
  pods="$(kubectl get pods -n "$ING_NS" -l "$sel" -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP},{end}')"
  node_client ingress.mjs SY_SECRET="$(jwt_secret "$ING_NS" chat-jwt)" SY_INGRESS="$url" SY_NODE="$POD_GW" \
    SY_PODS="${pods%,}" SY_PLAIN="$plain" \
    SY_AFFINITY="http://$(jp svc chat -n "$ING_NS" '{.spec.clusterIP}'):3001" ||
    { dump "$ING_NS"; die "chat through Traefik failed"; }

  kubectl delete namespace "$ING_NS" --wait=false >/dev/null
  kubectl delete clusterrolebinding,clusterrole switchyard-node-traefik >/dev/null
  kubectl delete ingressclass traefik >/dev/null
}
