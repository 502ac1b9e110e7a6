#!/usr/bin/env bash
# Builds the server and operator images without a container daemon or a registry:
# release binaries from this checkout, their shared libraries (as `ldd` lists them, plus
# the NSS modules glibc loads for DNS), CA certificates and a non-root passwd entry,
# assembled FROM scratch with buildah. The result has the layout of the Dockerfiles'
# distroless images; `tests/containers/run.sh` runs it with podman.
#
# usage: scripts/build-images.sh [tag]     (default tag: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-dev}"
export BUILDAH_ISOLATION=chroot

cargo build --release --quiet -p switchyard-server -p switchyard-operator --bins

assemble() { # <binary> <image>
  local bin="target/release/$1" image="$2" work root
  work=$(mktemp -d)
  root="$work/rootfs"
  trap 'rm -rf "$work"' RETURN
  install -D -m 0755 "$bin" "$root/usr/local/bin/$1"
  # Shared libraries the binary links, and the dynamic loader itself (which the kernel
  # refuses to run without an execute bit, so libraries get 0755 like on the host).
  for lib in $(ldd "$bin" | grep -oE '/[^ ]+\.so[^ ]*'); do
    install -D -m 0755 "$lib" "$root$lib"
  done
  # glibc resolves host names (a Redis Service, a JWKS host) through NSS modules it dlopens.
  for lib in /lib/x86_64-linux-gnu/libnss_dns.so.2 /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libresolv.so.2; do
    [[ -e "$lib" ]] && install -D -m 0755 "$lib" "$root$lib"
  done
  printf 'hosts: files dns\n' | install -D -m 0644 /dev/stdin "$root/etc/nsswitch.conf"
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    | install -D -m 0644 /dev/stdin "$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' | install -D -m 0644 /dev/stdin "$root/etc/group"
  install -d -m 1777 "$root/tmp"
  cat > "$work/Containerfile" <<CF
FROM scratch
COPY . /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/$1"]
CF
  buildah --storage-driver vfs bud --quiet --isolation chroot --layers=false \
    -f "$work/Containerfile" -t "localhost/$image:$TAG" "$root" >/dev/null
  echo "built localhost/$image:$TAG ($(du -sh "$root" | cut -f1) rootfs)"
}

assemble switchyard-server switchyard-server
assemble switchyard-operator switchyard-operator
