#!/usr/bin/env bash
# make audit: renders the example stack and the chart, runs the external checkers on them and compares their
# high/critical findings with docs/security-accepted.yaml (hack/audit.py). See docs/security.md.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
AUDIT_VENV="${AUDIT_VENV:-.venv-audit}"
CACHE="${TRADINGSTACK_CACHE:-$HOME/.cache/tradingstack}"
# The namespace the example is rendered into: not "default", which checkov flags for its own sake.
NAMESPACE=trading

die() { printf '[audit] error: %s\n' "$*" >&2; exit 1; }

tool() {
  local name="$1" hint="$2" path
  path="$(command -v "$name" || true)"
  [ -n "$path" ] || path="$CACHE/bin/$name"
  [ -x "$path" ] || die "$name not found on PATH nor in $CACHE/bin: $hint"
  printf '%s\n' "$path"
}

helm="$(tool helm 'run hack/cluster.sh build (or make prereqs)')"
kube_score="$(tool kube-score 'run hack/cluster.sh build (or make prereqs)')"
checkov="$AUDIT_VENV/bin/checkov"
[ -x "$checkov" ] || die "$checkov not found: run make audit-venv (or make prereqs)"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
mkdir "$out/manifests"
"$VENV/bin/tradingstack" render -n "$NAMESPACE" -f examples/quantum-trader.yaml >"$out/manifests/stack.yaml"
HELM_CACHE_HOME="$out/helm" HELM_CONFIG_HOME="$out/helm" \
  "$helm" template tradingstack-operator charts/tradingstack-operator -n tradingstack-system \
  >"$out/manifests/chart.yaml"

# Both exit non-zero when they find anything: the comparison below decides.
"$kube_score" score -o json "$out"/manifests/*.yaml >"$out/kube-score.json" || true
# BC_SKIP_MAPPING: no lookup of Prisma Cloud's guidelines (no internet here; the check ids stay the same).
BC_SKIP_MAPPING=TRUE "$checkov" -d "$out/manifests" --framework kubernetes -o json --quiet --compact \
  --skip-download >"$out/checkov.json" || true

"$VENV/bin/python" hack/audit.py --accepted docs/security-accepted.yaml \
  "kube-score=$out/kube-score.json" "checkov=$out/checkov.json"
