#!/usr/bin/env bash
# The demo: the local cluster with its real node, the images built, the operator chart installed with helm (the
# operator runs as its own pod), the example stack applied, its pods Running and the stack Ready.
#
#   hack/demo.sh up     (make demo)       idempotent: a second `up` reuses what is there
#   hack/demo.sh down   (make demo-down)  deletes the stack while the operator runs, uninstalls the chart and
#                                          stops the cluster
#
# Environment: CLUSTER=kind uses kind (hack/cluster.sh; images loaded with `kind load`); CLUSTER_STATE_DIR runs
# the demo on a separate local cluster (default .cluster); DEMO_READY_TIMEOUT (default 600s).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
CACHE="${TRADINGSTACK_CACHE:-$HOME/.cache/tradingstack}"
STATE="${CLUSTER_STATE_DIR:-$REPO/.cluster}"
export PATH="$CACHE/bin:$PATH"
export KUBECONFIG="$STATE/kubeconfig"

RELEASE=tradingstack-operator
SYSTEM_NS=tradingstack-system
NS=trading
STACK=quantum-trader
READY_TIMEOUT="${DEMO_READY_TIMEOUT:-600s}"

log() { printf '[demo] %s\n' "$*" >&2; }





cmd_up() {
  local start=$SECONDS
  if [ ! -x "$CACHE/bin/kubectl" ] || [ ! -x "$CACHE/bin/helm" ]; then
    log "kubectl/helm not cached: running hack/install-prereqs.sh"
    hack/install-prereqs.sh
  fi
  hack/images.sh build
  hack/cluster.sh up
  hack/images.sh load

  log "CRD (server-side apply)"
  kubectl apply --server-side --force-conflicts -f crds/tradingstack.yaml >/dev/null
  kubectl wait --for=condition=Established crd/tradingstacks.trading.quantumtrader.dev --timeout=60s >/dev/null

  for ns in "$SYSTEM_NS" "$NS"; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl label namespace "$ns" --overwrite >/dev/null \
      pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest
  done

  log "helm upgrade --install $RELEASE (the operator's pod from its image)"
  helm upgrade --install "$RELEASE" charts/tradingstack-operator -n "$SYSTEM_NS" --wait --timeout 180s >/dev/null

  # The example's execution service reads an exchange API key from this Secret; the demo has a dummy one.
  kubectl -n "$NS" create secret generic exchange-credentials --from-literal=api-key=demo-not-a-real-key \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  log "applying examples/quantum-trader.yaml into namespace $NS (Pod Security: restricted)"
  kubectl apply -n "$NS" -f examples/quantum-trader.yaml
  log "waiting for ts/$STACK Ready (timeout $READY_TIMEOUT)"
  kubectl wait -n "$NS" --for=condition=Ready "ts/$STACK" --timeout="$READY_TIMEOUT"
  echo
  kubectl get nodes -o wide
  echo
  kubectl get pods -n "$SYSTEM_NS" -o wide
  kubectl get pods -n "$NS" -o wide
  echo
  kubectl get ts -n "$NS"
  echo
  log "up in $((SECONDS - start))s. Operator log: kubectl logs -n $SYSTEM_NS deploy/$RELEASE"
  log "try: kubectl annotate ts/$STACK -n $NS trading.quantumtrader.dev/restart-now=\"\$(date -u +%FT%TZ)\" --overwrite"
  log "KUBECONFIG=$KUBECONFIG; remove everything with: make demo-down"
}

cmd_down() {
  if hack/cluster.sh status >/dev/null 2>&1; then
    if kubectl get ts "$STACK" -n "$NS" >/dev/null 2>&1; then
      # the stack carries kopf's finalizer: delete it while the operator runs
      log "deleting ts/$STACK (the operator releases its finalizer)"
      kubectl delete ts "$STACK" -n "$NS" --wait=true --timeout=120s
    fi
    if helm status "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1; then
      helm uninstall "$RELEASE" -n "$SYSTEM_NS" --wait
    fi
  fi
  hack/cluster.sh down
  log "down"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
*)
  echo "usage: $0 up|down" >&2
  exit 2
  ;;
esac
