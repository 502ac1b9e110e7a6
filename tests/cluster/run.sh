#!/usr/bin/env bash
# Runs the operator's cluster tests against a real control plane on loopback:
# etcd + kube-apiserver + kube-controller-manager (garbage collection, Deployment ->
# ReplicaSet -> Pod, HPA), each with its own certificates, on free ports. No kubelet or
# scheduler: tests that need ready pods bind them to a fake node and mark them ready.
#
#   bash tests/cluster/run.sh            # everything
#   bash tests/cluster/run.sh lifecycle  # only cluster tests whose name contains "lifecycle"
#
# Builds missing tools first (scripts/k8s-tools.sh, cached outside the repo). Always tears the
# control plane down. Exits non-zero when a test fails. KEEP_CLUSTER=1 leaves the work
# directory (logs, certs, kubeconfig) in place for debugging.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
FILTER="${1:-}"

log() { echo "[cluster] $*" >&2; }

bash scripts/k8s-tools.sh build etcd kubernetes helm
eval "$(bash scripts/k8s-tools.sh env)"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
log "building the operator and its cluster tests"
nice -n 5 cargo build -q -p switchyard-operator --bins
TEST_BIN="$(nice -n 5 cargo test -q -p switchyard-operator --test cluster --no-run --message-format=json 2>/tmp/switchyard-cluster-build.log \
  | python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "cluster" and m.get("executable"):
        print(m["executable"])')"
[[ -x "$TEST_BIN" ]] || { log "could not build the cluster test binary"; tail -40 /tmp/switchyard-cluster-build.log >&2; exit 1; }

WORK="$(mktemp -d /tmp/switchyard-cluster.XXXXXX)"
PIDS=()
teardown() {
  local rc=$?
  # Newest first (controller-manager, apiserver, then etcd): an apiserver whose etcd is gone
  # can hang in shutdown. Anything still alive after 10 s is killed.
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[$i]}"
    [[ $pid == apiserver ]] && pid="$(cat "$WORK/kube-apiserver.pid" 2>/dev/null || echo none)"
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
ETCD_PORT="$(free_port)"; ETCD_PEER_PORT="$(free_port)"; API_PORT="$(free_port)"

log "certificates in $WORK/pki"
PKI="$WORK/pki"; mkdir -p "$PKI"
(
  cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=switchyard-test-ca" \
    -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=admin/O=system:masters" -keyout admin.key -out admin.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > client.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out admin.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

export KUBECONFIG="$WORK/kubeconfig"
cat > "$KUBECONFIG" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
KCFG

log "etcd on 127.0.0.1:$ETCD_PORT"
"$ETCD_BIN" --name default --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync \
  > "$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$ETCD_PORT/health" >/dev/null || { log "etcd did not start"; tail -20 "$WORK/etcd.log"; exit 1; }

log "kube-apiserver v$K8S_VERSION on 127.0.0.1:$API_PORT"
# A script, so that the outage test can stop the API server and start it again the same way;
# it writes its pid to kube-apiserver.pid (the teardown reads it from there).
cat > "$WORK/start-apiserver.sh" <<APISERVER
#!/usr/bin/env bash
echo \$\$ > "$WORK/kube-apiserver.pid"
exec "$KUBE_APISERVER_BIN" \\
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \\
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \\
  --cert-dir "$WORK/apiserver-certs" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \\
  --client-ca-file "$PKI/ca.crt" --authorization-mode RBAC \\
  --service-account-issuer "https://127.0.0.1:$API_PORT" \\
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \\
  --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \\
  >> "$WORK/kube-apiserver.log" 2>&1
APISERVER
bash "$WORK/start-apiserver.sh" &
PIDS+=(apiserver)
ready=0
for _ in $(seq 1 300); do
  if curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
      "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
[[ $ready == 1 ]] || { log "kube-apiserver did not become ready"; tail -30 "$WORK/kube-apiserver.log"; exit 1; }

# No kubelets here: the node lifecycle controller would mark the tests' fake node unreachable
# and flip its pods to NotReady, so it is off. Everything else (GC, Deployment, ReplicaSet,
# StatefulSet, HPA, service accounts) runs.
log "kube-controller-manager"
"$KUBE_CONTROLLER_MANAGER_BIN" \
  --kubeconfig "$KUBECONFIG" --leader-elect=false --secure-port 0 \
  --controllers '*,-nodelifecycle,-nodeipam,-cloud-node-lifecycle' \
  --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
  --horizontal-pod-autoscaler-sync-period 5s \
  > "$WORK/kube-controller-manager.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 1 150); do
  kubectl get serviceaccount default -n default >/dev/null 2>&1 && break
  sleep 0.2
done
kubectl get serviceaccount default -n default >/dev/null || { log "kube-controller-manager is not working"; tail -30 "$WORK/kube-controller-manager.log"; exit 1; }
log "control plane ready: $(kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"

export SWITCHYARD_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/switchyard-operator"
export SWITCHYARD_REPO="$ROOT"
export SWITCHYARD_CLUSTER_WORK="$WORK"
start=$SECONDS
set +e
"$TEST_BIN" --ignored --test-threads 1 ${FILTER:+"$FILTER"}
rc=$?
set -e
log "cluster tests finished in $((SECONDS - start)) s with exit code $rc"
if [[ $rc != 0 ]]; then
  log "last lines of kube-controller-manager.log:"; tail -5 "$WORK/kube-controller-manager.log" >&2 || true
  ls "$WORK"/operator-*.log >/dev/null 2>&1 && for f in "$WORK"/operator-*.log; do log "$f:"; tail -15 "$f" >&2; done
fi
exit "$rc"
