# A one-node Kubernetes for tests/node (sourced by run.sh): containerd + runc (Debian's), etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables) and
# CoreDNS, all as host processes of this run. Everything the run creates is named after $RUN_ID
# (bridge, iptables chain, CNI network, node name, work directory) and every port is chosen
# free, so it can run beside other suites' API servers; cluster_down removes all of it.
#
# Pods live on a private bridge with their own /24; the API server, the kubelet and CoreDNS
# listen on the bridge's address only; mangle rules drop anything forwarded between the bridge
# and another interface, so no pod traffic leaves the machine.

RUN_ID="${RUN_ID:-$(printf '%04x' $((RANDOM % 65536)))}"
WORK="${NODE_WORK:-/tmp/switchyard-node-$RUN_ID}"
NODE_NAME="synode-$RUN_ID"
BRIDGE="synode$RUN_ID"            # at most 15 characters
CHAIN="SYNODE-$RUN_ID"
CNI_NET="synode-$RUN_ID"
CTRD_SOCK="$WORK/run/containerd/containerd.sock"
CNI_BIN_DIR="${CNI_BIN_DIR:-/usr/lib/cni}"
PAUSE_IMAGE="localhost/switchyard-node/pause:1"
PKI="$WORK/pki"
export KUBECONFIG="$WORK/admin.kubeconfig"

log() { printf '[node %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
ctr_() { ctr --address "$CTRD_SOCK" --namespace k8s.io "$@"; }

# free_port <var>: sets <var> to a port nobody listens on now (the kernel's pick), distinct
# from the ones picked before in this run.
PICKED_PORTS=" "
free_port() {
  local p
  while :; do
    p="$(python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])')"
    [[ "$PICKED_PORTS" == *" $p "* ]] || break
  done
  PICKED_PORTS+="$p "
  printf -v "$1" '%s' "$p"
}

# free_cidr <var>: sets <var> to a 10.x.y.0/24 that no route or address of this machine covers
# (other than the default route) and that this run has not taken yet.
TAKEN_CIDRS=" "
free_cidr() {
  local a b n=0
  while ((n++ < 200)); do
    a=$((100 + RANDOM % 150)); b=$((RANDOM % 256))
    [[ "$TAKEN_CIDRS" == *" 10.$a.$b.0/24 "* ]] && continue
    if ! ip -4 route show table all to match "10.$a.$b.0/24" | grep -v '^default' | grep -q . &&
       ! ip -4 -o addr | grep -q " 10\.$a\.$b\."; then
      TAKEN_CIDRS+="10.$a.$b.0/24 "
      printf -v "$1" '%s' "10.$a.$b.0/24"; return
    fi
  done
  die "no free 10.x.y.0/24 found"
}

# wait_until <what> <seconds> <cmd...>: polls the command every half second. The deadlines are
# generous on purpose (a loaded CI machine); a timeout fails the run with what it waited for.
wait_until() {
  local what="$1" secs="$2" end; shift 2
  end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

# wait_up <name> <what> <seconds> <cmd...>: wait_until, but fail at once with the log tail when
# the process <name> exits meanwhile.
wait_up() {
  local name="$1" what="$2" secs="$3" end; shift 3
  end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    check_alive "$name"
    ((SECONDS < end)) || die "timed out after ${secs}s waiting for $what"
    sleep 0.5
  done
}

# start <name> <cmd...>: a process of this run, in its own session, logged to $WORK/logs.
start() {
  local name="$1"; shift
  setsid "$@" >>"$WORK/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$WORK/pids/$name"
}
alive() { [[ -f "$WORK/pids/$1" ]] && kill -0 "$(cat "$WORK/pids/$1")" 2>/dev/null; }
check_alive() {
  local n
  for n in "$@"; do
    alive "$n" || { tail -20 "$WORK/logs/$n.log" >&2; die "$n exited (log above: $WORK/logs/$n.log)"; }
  done
}
# stop <name...>: SIGTERM, then SIGKILL after 20 s.
stop() {
  local n pid
  for n in "$@"; do
    [[ -f "$WORK/pids/$n" ]] || continue
    pid="$(cat "$WORK/pids/$n")"
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# client_addresses <count> <var>: sets <var> to a comma-separated list of extra addresses of
# the host on the bridge (.200 up, outside the pods' range) for clients that must look like
# different machines to the Services' ClientIP affinity. They go with the bridge.
client_addresses() {
  local i a list=""
  for ((i = 0; i < $1; i++)); do
    a="${POD_CIDR%.*}.$((200 + i))"
    ip addr show dev "$BRIDGE" | grep -q "inet $a/" || ip addr add "$a/32" dev "$BRIDGE"
    list+="${list:+,}$a"
  done
  printf -v "$2" '%s' "$list"
}

# cluster_preflight: everything the node needs, with the command that installs what is missing.
cluster_preflight() {
  [[ $EUID == 0 ]] || die "the node suite must run as root (it creates a bridge, iptables rules, mounts and cgroups)"
  local c
  for c in containerd runc ctr conntrack iptables buildah ip python3 openssl curl; do
    command -v "$c" >/dev/null || die "missing $c: run scripts/setup.sh (apt-get install containerd runc conntrack iptables buildah)"
  done
  [[ -x "$CNI_BIN_DIR/bridge" && -x "$CNI_BIN_DIR/host-local" && -x "$CNI_BIN_DIR/portmap" ]] ||
    die "missing CNI plugins in $CNI_BIN_DIR: apt-get install containernetworking-plugins"
  for c in "$ETCD_BIN" "$KUBE_APISERVER_BIN" "$KUBE_CONTROLLER_MANAGER_BIN" "$KUBELET_BIN" \
           "$KUBE_SCHEDULER_BIN" "$KUBE_PROXY_BIN" "$COREDNS_BIN" "$HELM_BIN" "$PROMETHEUS_BIN" "$PROMETHEUS_ADAPTER_BIN"; do
    [[ -x "$c" ]] || die "missing $c: run scripts/k8s-tools.sh build and scripts/node-tools.sh build"
  done
  [[ -w /proc/sys/net/ipv4/ip_forward ]] || die "cannot write /proc/sys/net/ipv4/ip_forward (not privileged enough)"
  modprobe br_netfilter 2>/dev/null || true
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
    die "br_netfilter is not loaded: Service traffic between pods on one bridge needs it (modprobe br_netfilter)"
  grep -q ' /sys/fs/cgroup/memory cgroup ' /proc/mounts || grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts ||
    die "no cgroup hierarchy mounted at /sys/fs/cgroup"
}

cluster_up() {
  mkdir -p "$WORK"/{pki,logs,pids,manifests,pod-logs,kubelet,cni/net.d,cni/cache,run,pv}
  chmod 0755 "$WORK"
  free_cidr POD_CIDR; free_cidr SERVICE_CIDR
  POD_GW="${POD_CIDR%.*}.1"
  local v
  for v in API_PORT ETCD_PORT ETCD_PEER_PORT KUBELET_PORT KUBELET_HEALTHZ_PORT SCHEDULER_PORT \
           PROXY_HEALTHZ_PORT PROXY_METRICS_PORT; do
    free_port "$v"
  done
  log "run $RUN_ID: work $WORK, bridge $BRIDGE $POD_CIDR, services $SERVICE_CIDR, API server $POD_GW:$API_PORT"

  # What teardown restores or removes only if this run created it.
  sysctl -n net.ipv4.ip_forward >"$WORK/ip_forward.orig"
  sysctl -n net.bridge.bridge-nf-call-iptables >"$WORK/bridge_nf.orig"
  ls /var/run/netns 2>/dev/null | sort >"$WORK/netns.before" || true
  iptables-save | grep -q '^:KUBE-' && touch "$WORK/kube-chains.before"
  for d in /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni; do
    [[ -e "$d" ]] || echo "$d" >>"$WORK/created-dirs"
  done

  # ---- network ------------------------------------------------------------------------------
  ip link add "$BRIDGE" type bridge
  ip addr add "$POD_GW/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  iptables -w -t mangle -N "$CHAIN"
  iptables -w -t mangle -A "$CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -w -t mangle -A "$CHAIN" -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
  iptables -w -t mangle -I FORWARD 1 -j "$CHAIN"

  # ---- certificates: one CA, the API server's serving cert, one system:masters client ------
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$NODE_NAME-ca" -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr
    printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
      "$POD_GW" "${SERVICE_CIDR%.*}.1" >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile apiserver.ext -out apiserver.crt
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    # Every component and the test itself use this one admin identity: it is a test node.
    openssl req -newkey rsa:2048 -nodes -subj "/CN=admin/O=system:masters" -keyout admin.key -out admin.csr
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out admin.crt
    # The aggregation layer's own CA and client (what the API server presents to
    # prometheus-adapter), apart from the client CA as the API server requires.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$NODE_NAME-front-proxy-ca" -keyout front-proxy-ca.key -out front-proxy-ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=front-proxy-client" -keyout front-proxy-client.key -out front-proxy-client.csr
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key -CAcreateserial -days 2 -extfile client.ext -out front-proxy-client.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >/dev/null 2>&1 || die "openssl failed to make the certificates"
  cat >"$KUBECONFIG" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: $NODE_NAME
  cluster: {server: "https://$POD_GW:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$PKI/admin.crt", client-key: "$PKI/admin.key"}
contexts:
- name: $NODE_NAME
  context: {cluster: $NODE_NAME, user: admin, namespace: default}
current-context: $NODE_NAME
KCFG

  # ---- containerd: its own root, state and socket; cgroup v1 via cgroupfs -------------------
  cat >"$WORK/containerd.toml" <<TOML
version = 2
root = "$WORK/containerd"
state = "$WORK/run/containerd"
[grpc]
  address = "$CTRD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE (CI containers) runc cannot lower a sandbox's oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$WORK/cni/net.d"
TOML
  cat >"$WORK/cni/net.d/10-$CNI_NET.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NET",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW", "rangeStart": "${POD_CIDR%.*}.10", "rangeEnd": "${POD_CIDR%.*}.199"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$WORK/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
  start containerd containerd --config "$WORK/containerd.toml"
  wait_up containerd containerd 60 ctr --address "$CTRD_SOCK" version

  # ---- control plane ------------------------------------------------------------------------
  start etcd "$ETCD_BIN" --name "$NODE_NAME" --data-dir "$WORK/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" --unsafe-no-fsync
  wait_up etcd etcd 120 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  # Bound to the bridge address only: pods reach it through the `kubernetes` Service, and
  # the kubelet is reached by its InternalIP (the bridge address), never by a name.
  start kube-apiserver "$KUBE_APISERVER_BIN" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$POD_GW" --advertise-address "$POD_GW" --secure-port "$API_PORT" \
    --cert-dir "$WORK/apiserver-certs" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --authorization-mode Node,RBAC \
    --kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true --enable-aggregator-routing=true \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra-
  wait_up kube-apiserver kube-apiserver 300 curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$POD_GW:$API_PORT/readyz"

  start kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" --kubeconfig "$KUBECONFIG" \
    --leader-elect=false --secure-port 0 --controllers '*,-nodeipam,-cloud-node-lifecycle' \
    --service-cluster-ip-range "$SERVICE_CIDR" --root-ca-file "$PKI/ca.crt" \
    --service-account-private-key-file "$PKI/sa.key" --use-service-account-credentials \
    --horizontal-pod-autoscaler-sync-period 5s
  start kube-scheduler "$KUBE_SCHEDULER_BIN" --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT"
  wait_up kube-controller-manager "the default service account" 120 kubectl get serviceaccount default -n default

  # ---- node ---------------------------------------------------------------------------------
  # Pods with dnsPolicy Default get this resolver too: nothing resolves off the machine.
  echo "nameserver $POD_GW" >"$WORK/resolv.conf"
  cat >"$WORK/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $POD_GW
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
cgroupDriver: cgroupfs
# Kubelet 1.35 refuses cgroup v1 hosts unless told otherwise (CI runners still have them).
failCgroupV1: false
failSwapOn: false
# Without CAP_SYS_RESOURCE the kubelet cannot lower its own oom_score_adj.
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$CTRD_SOCK
staticPodPath: $WORK/manifests
podLogsDir: $WORK/pod-logs
clusterDNS: [$POD_GW]
clusterDomain: cluster.local
resolvConf: $WORK/resolv.conf
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
# A test machine's disk is often fuller than the defaults allow; never evict the suite's pods.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
YAML
  start kubelet "$KUBELET_BIN" --config "$WORK/kubelet.yaml" --kubeconfig "$KUBECONFIG" \
    --root-dir "$WORK/kubelet" --cert-dir "$WORK/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$POD_GW"

  cat >"$WORK/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $KUBECONFIG}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $POD_GW
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$POD_CIDR"]
# Zero: leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start kube-proxy "$KUBE_PROXY_BIN" --config "$WORK/kube-proxy.yaml"

  cat >"$WORK/Corefile" <<COREFILE
.:53 {
    bind $POD_GW
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
COREFILE
  start coredns "$COREDNS_BIN" -conf "$WORK/Corefile"

  wait_up kubelet "node $NODE_NAME Ready" 180 sh -c \
    "kubectl get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  check_alive containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns
  log "node $NODE_NAME Ready"
}

# remove_kubelet_chains: the chains the kubelet makes in any case (kube-proxy --cleanup leaves
# them), when no KUBE- chain existed before this run.
remove_kubelet_chains() {
  local t c
  iptables -w -D INPUT -j KUBE-FIREWALL 2>/dev/null
  iptables -w -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
  for t in filter nat mangle; do
    for c in $(iptables-save -t "$t" | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p'); do
      iptables -w -t "$t" -F "$c" 2>/dev/null
    done
    for c in $(iptables-save -t "$t" | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p'); do
      iptables -w -t "$t" -X "$c" 2>/dev/null
    done
  done
}

# The processes cluster_up starts, which cluster_down stops in their own order.
NODE_COMPONENTS="containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet coredns kube-proxy"

# cluster_down: removes everything cluster_up made, in an order that lets each part clean up
# after itself (the kubelet tears pod networks down through CNI), then sweeps what is left.
cluster_down() {
  [[ -d "$WORK/pids" ]] || return 0
  set +e
  log "teardown of run $RUN_ID"
  # Before the pods go: their logs go with them.
  if [[ -n "${KEEP_NODE_LOGS:-}" ]]; then
    mkdir -p "$KEEP_NODE_LOGS" && cp -r "$WORK/logs" "$WORK/pod-logs" "$KEEP_NODE_LOGS/" 2>/dev/null
    log "logs kept in $KEEP_NODE_LOGS"
  fi
  local f
  for f in "$WORK"/pids/bg-*; do [[ -f "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null; done
  # The host processes scenarios started (Prometheus, prometheus-adapter, KEDA): every one
  # that is not a node component, stopped in the order below.
  local n extra=()
  for f in "$WORK"/pids/*; do
    n="${f##*/}"
    [[ -f "$f" && $n != bg-* && " $NODE_COMPONENTS " != *" $n "* ]] && extra+=("$n")
  done
  stop "${extra[@]}"
  # No new pods: stop the controllers, then let the kubelet stop every pod it runs.
  stop kube-controller-manager kube-scheduler
  if alive kubelet && alive kube-apiserver; then
    kubectl delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1
    wait_until "the kubelet to stop every pod" 90 sh -c "[ -z \"\$(ctr --address '$CTRD_SOCK' -n k8s.io tasks ls -q)\" ]"
  fi
  stop kubelet coredns kube-proxy
  "$KUBE_PROXY_BIN" --cleanup --config "$WORK/kube-proxy.yaml" >>"$WORK/logs/kube-proxy-cleanup.log" 2>&1
  stop kube-apiserver etcd
  # Whatever the kubelet left (it was killed, or a pod would not stop): kill and remove it.
  local id pid
  if alive containerd; then
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$id" >/dev/null 2>&1; done
    sleep 1
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1; done
  fi
  stop containerd
  # runc shims outlive containerd by design; ours are the ones naming this run's socket.
  for pid in $(pgrep -f -- "-address $CTRD_SOCK"); do kill -KILL "$pid" 2>/dev/null; done
  # Mounts under the work directory (overlay rootfs, shm, secret and token tmpfs), deepest first.
  awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  # Network namespaces CNI made during this run, veths left on the bridge, the bridge itself.
  if [[ -f "$WORK/netns.before" ]]; then
    comm -13 "$WORK/netns.before" <(ls /var/run/netns 2>/dev/null | sort) | grep '^cni-' | while read -r ns; do
      ip netns delete "$ns" 2>/dev/null
    done
  fi
  for id in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link delete "$id" 2>/dev/null
  done
  ip link delete "$BRIDGE" 2>/dev/null
  rm -f /var/lib/cni/results/"$CNI_NET"-* 2>/dev/null
  [[ -f "$WORK/kube-chains.before" ]] || remove_kubelet_chains
  iptables -w -t mangle -D FORWARD -j "$CHAIN" 2>/dev/null
  iptables -w -t mangle -F "$CHAIN" 2>/dev/null
  iptables -w -t mangle -X "$CHAIN" 2>/dev/null
  [[ -f "$WORK/ip_forward.orig" ]] && sysctl -qw net.ipv4.ip_forward="$(cat "$WORK/ip_forward.orig")"
  [[ -f "$WORK/bridge_nf.orig" ]] && sysctl -qw net.bridge.bridge-nf-call-iptables="$(cat "$WORK/bridge_nf.orig")"
  # The kubelet's pod cgroups (empty once every container is gone), leaves first.
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  # Paths the kubelet uses whatever its --root-dir, if this run created them.
  [[ -f "$WORK/created-dirs" ]] && while read -r d; do rm -rf "$d"; done <"$WORK/created-dirs"
  rm -rf "$WORK"
  log "teardown done"
}
