#!/usr/bin/env bash
# Fails when generated Kubernetes files are stale: crds/realtimecluster.yaml must equal what
# `crdgen` prints, and the Helm chart's CRD copy must equal crds/ byte for byte.
# Fix with: bash scripts/k8s-check-generated.sh --write
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CRD=crds/realtimecluster.yaml
CHART_CRD=charts/switchyard/crds/realtimecluster.yaml
fresh="$(mktemp)"
trap 'rm -f "$fresh"' EXIT
nice -n 5 cargo run -q -p switchyard-operator --bin crdgen > "$fresh"

if [[ "${1:-}" == "--write" ]]; then
  cp "$fresh" "$CRD"
  [[ -d "$(dirname "$CHART_CRD")" ]] && cp "$fresh" "$CHART_CRD"
  echo "regenerated $CRD${CHART_CRD:+ and $CHART_CRD}"
  exit 0
fi

status=0
if ! diff -u "$CRD" "$fresh" > /dev/null; then
  echo "$CRD is stale (differs from crdgen output); run: bash scripts/k8s-check-generated.sh --write" >&2
  diff -u "$CRD" "$fresh" | head -40 >&2
  status=1
fi
if [[ -e "$CHART_CRD" ]] && ! cmp -s "$CRD" "$CHART_CRD"; then
  echo "$CHART_CRD differs from $CRD; run: bash scripts/k8s-check-generated.sh --write" >&2
  status=1
fi
[[ $status == 0 ]] && echo "generated Kubernetes files are up to date"
exit "$status"
