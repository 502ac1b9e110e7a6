#!/usr/bin/env bash
# Builds both images from this checkout's binaries (scripts/build-images.sh), checks their
# shape (non-root, no shell), runs the server image with podman, and has the official
# socket.io-client exchange a message through it. Always removes the container.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG="test-$$"
bash scripts/build-images.sh "$TAG"

# Podman in this sandbox: no default ulimits (no CAP_SYS_RESOURCE), runc with cgroupfs.
conf=$(mktemp)
printf '[containers]\ndefault_ulimits = []\n' > "$conf"
export CONTAINERS_CONF="$conf"
podman() { command podman --storage-driver vfs --cgroup-manager cgroupfs --runtime runc "$@"; }
name="sy-server-$$"
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman rmi -f "localhost/switchyard-server:$TAG" "localhost/switchyard-operator:$TAG" >/dev/null 2>&1 || true
  rm -f "$conf"
}
trap cleanup EXIT

for image in switchyard-server switchyard-operator; do
  user=$(podman image inspect --format '{{.Config.User}}' "localhost/$image:$TAG")
  [[ "$user" == "65532:65532" ]] || { echo "FAIL: $image runs as '$user', not the non-root user"; exit 1; }
  if podman run --rm --entrypoint /bin/sh "localhost/$image:$TAG" -c true >/dev/null 2>&1; then
    echo "FAIL: $image has a shell"; exit 1
  fi
  size=$(podman image inspect --format '{{.Size}}' "localhost/$image:$TAG")
  echo "ok: $image:$TAG runs as $user, no shell, $((size / 1024 / 1024)) MiB"
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
secret="container-test-secret-of-enough-length!!"
podman run -d --name "$name" --network host \
  -e HOST=127.0.0.1 -e WEBSOCKET_PORT="$port" -e JWT_SECRET="$secret" \
  "localhost/switchyard-server:$TAG" >/dev/null
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { podman logs "$name"; echo "FAIL: server image did not start"; exit 1; }
SY_URL="http://127.0.0.1:$port" SY_SECRET="$secret" node tests/containers/exchange.mjs
echo "ok: socket.io-client exchanged a message with the server image"
