# Images for the test node (sourced by run.sh), all built FROM scratch with buildah and handed
# to the node's containerd with `ctr images import`: no registry is ever asked for anything.
# Each image carries the name its users ask for, so the project's manifests run unchanged with
# imagePullPolicy IfNotPresent:
#
#   localhost/switchyard-node/pause:1                the pod sandbox (containerd's sandbox_image)
#   docker.io/library/redis:7.4                      Debian's redis-server and redis-cli (the
#                                                    operator's default managed Redis image)
#   ghcr.io/switchyard-dev/switchyard-server:<ver>   scripts/build-images.sh, under the operator's
#   ghcr.io/switchyard-dev/switchyard-operator:<ver> and the chart's default names
#   localhost/switchyard-node/traefik:1              Traefik v3 from scripts/node-tools.sh, for the
#                                                    ingress scenario (built by image_traefik)

IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../images" && pwd)"
export BUILDAH_ISOLATION=chroot
bh() { buildah --storage-driver vfs "$@"; }

# import_image <buildah image> [name in containerd]: buildah storage -> docker-archive -> containerd.
import_image() {
  local src="$1" name="${2:-$1}" tar
  tar="$WORK/image-$$.tar"
  bh push -q "$src" "docker-archive:$tar:$name" >/dev/null
  ctr_ images import "$tar" >/dev/null
  rm -f "$tar"
  log "image $name imported"
}

# from_rootfs <rootfs> <name> <buildah config args...>: one layer, then into containerd only
# (the shared buildah storage is left as it was).
from_rootfs() {
  local root="$1" name="$2" c; shift 2
  c="$(bh from scratch)"
  bh copy "$c" "$root" / >/dev/null
  bh config --os linux --arch amd64 "$@" "$c"
  bh commit -q --rm "$c" "$name" >/dev/null
  import_image "$name"
  bh rmi "$name" >/dev/null
}

go_static() { # <source dir> <output>
  (cd "$1" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags '-s -w' -o "$2" .)
}

image_pause() {
  local root="$WORK/rootfs-pause"
  mkdir -p "$root"
  go_static "$IMAGES_DIR/pause" "$root/pause"
  from_rootfs "$root" "$PAUSE_IMAGE" --entrypoint '["/pause"]' --user 65535:65535
}

image_redis() {
  local root="$WORK/rootfs-redis" bin lib
  mkdir -p "$root"
  for bin in "$(command -v redis-server)" "$(command -v redis-cli)"; do
    install -D -m 0755 "$bin" "$root/usr/local/bin/$(basename "$bin")"
    for lib in $(ldd "$bin" | grep -oE '/[^ ]+\.so[^ ]*'); do install -D -m 0755 "$lib" "$root$lib"; done
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nredis:x:999:999:redis:/data:/sbin/nologin\n' | install -D -m 0644 /dev/stdin "$root/etc/passwd"
  printf 'root:x:0:\nredis:x:999:\n' | install -D -m 0644 /dev/stdin "$root/etc/group"
  install -d -m 0777 "$root/data"
  install -d -m 1777 "$root/tmp"
  # No entrypoint: the operator's arguments start with "redis-server", found on PATH.
  from_rootfs "$root" docker.io/library/redis:7.4 --env PATH=/usr/local/bin:/usr/bin:/bin \
    --cmd '["redis-server"]' --workingdir /data --port 6379 --user 999:999
}

# The server and operator images of this checkout, under the names the operator and the chart
# default to. scripts/build-images.sh builds them (its cargo release build is warm after the
# container suite).
image_switchyard() {
  local tag="node-$RUN_ID" img
  bash "$REPO/scripts/build-images.sh" "$tag" >&2
  for img in switchyard-server switchyard-operator; do
    import_image "localhost/$img:$tag" "ghcr.io/switchyard-dev/$img:$APP_VERSION"
    bh rmi "localhost/$img:$tag" >/dev/null
  done
}

# Traefik, the ingress controller of the ingress scenario: the static binary scripts/node-tools.sh
# builds, alone in the image (it needs no CA bundle: it talks to the API server only, with the
# service account's CA).
TRAEFIK_IMAGE=localhost/switchyard-node/traefik:1
image_traefik() {
  [[ -x "${TRAEFIK_BIN:-}" ]] || die "missing Traefik (TRAEFIK_BIN='${TRAEFIK_BIN:-}'): run scripts/node-tools.sh build traefik"
  local root="$WORK/rootfs-traefik"
  install -D -m 0755 "$TRAEFIK_BIN" "$root/traefik"
  install -d -m 1777 "$root/tmp"
  from_rootfs "$root" "$TRAEFIK_IMAGE" --entrypoint '["/traefik"]' --user 65532:65532 --port 8000 --port 9000
}

images_build() {
  image_pause
  image_redis
  image_switchyard
}
