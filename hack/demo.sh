#!/usr/bin/env bash
# The demo: a local control plane, the operator chart installed with helm, the example stack applied and Ready.
#
#   hack/demo.sh up     (make demo)       idempotent: a second `up` reuses what is there
#   hack/demo.sh down   (make demo-down)  deletes the stack while the operator runs, stops the operator,
#                                          uninstalls the chart and stops the cluster
#
# The local cluster is kwok-based: pods become Running/Ready but no container runs. The chart's Deployment
# is therefore installed with replicaCount=0 (an operator pod that only pretends to run would be misleading) and
# the operator runs as a local process instead, authenticated with a token of the chart's ServiceAccount, so it
# has exactly the RBAC the chart grants. pid file, log and kubeconfig: $STATE/demo/.
#
# Environment: CLUSTER=kind uses kind (hack/cluster.sh); CLUSTER_STATE_DIR runs the demo on a separate local
# cluster (default .cluster); DEMO_HEALTH_PORT / DEMO_METRICS_PORT (18080 / 19102) for the local operator;
# DEMO_OPERATOR=in-cluster (kind, after `make images kind-load`) runs the chart's Deployment instead.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
CACHE="${TRADINGSTACK_CACHE:-$HOME/.cache/tradingstack}"
STATE="${CLUSTER_STATE_DIR:-$REPO/.cluster}"
DEMO="$STATE/demo"
export PATH="$CACHE/bin:$PATH"
export KUBECONFIG="$STATE/kubeconfig"
PY="$REPO/.venv/bin/python"

RELEASE=tradingstack-operator
SYSTEM_NS=tradingstack-system
SA=tradingstack-operator # the release name contains the chart name, so fullname == release name
NS=trading
STACK=quantum-trader
HEALTH_PORT="${DEMO_HEALTH_PORT:-18080}"
METRICS_PORT="${DEMO_METRICS_PORT:-19102}"
OPERATOR="${DEMO_OPERATOR:-local}"
READY_TIMEOUT="${DEMO_READY_TIMEOUT:-300s}"

log() { printf '[demo] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

operator_pid() {
  local pid
  [ -f "$DEMO/operator.pid" ] || return 1
  pid="$(cat "$DEMO/operator.pid")"
  # only a process that is really our operator (the pid may have been reused)
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "tradingstack.cli run" || return 1
  echo "$pid"
}

token_kubeconfig() {
  local token
  token="$(kubectl create token "$SA" -n "$SYSTEM_NS" --duration=24h)"
  kubectl config view --raw --minify --flatten >"$DEMO/kubeconfig.tmp"
  local user
  user="$(kubectl --kubeconfig "$DEMO/kubeconfig.tmp" config view -o jsonpath='{.users[0].name}')"
  kubectl --kubeconfig "$DEMO/kubeconfig.tmp" config unset "users.$user" >/dev/null
  kubectl --kubeconfig "$DEMO/kubeconfig.tmp" config set-credentials "$SA" --token="$token" >/dev/null
  kubectl --kubeconfig "$DEMO/kubeconfig.tmp" config set-context --current --user="$SA" >/dev/null
  chmod 600 "$DEMO/kubeconfig.tmp"
  mv "$DEMO/kubeconfig.tmp" "$DEMO/kubeconfig"
}

start_operator() {
  if operator_pid >/dev/null; then
    log "operator already running (pid $(operator_pid)); log: $DEMO/operator.log"
    return
  fi
  token_kubeconfig
  log "starting the operator locally as system:serviceaccount:$SYSTEM_NS:$SA (log: $DEMO/operator.log)"
  KUBECONFIG="$DEMO/kubeconfig" PYTHONPATH="$REPO/operator${PYTHONPATH:+:$PYTHONPATH}" \
    nohup "$PY" -m tradingstack.cli run --namespace "$NS" \
    --health-port "$HEALTH_PORT" --metrics-port "$METRICS_PORT" \
    </dev/null >>"$DEMO/operator.log" 2>&1 &
  echo $! >"$DEMO/operator.pid"
  local deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$HEALTH_PORT/healthz" >/dev/null 2>&1; do
    operator_pid >/dev/null || { tail -20 "$DEMO/operator.log" >&2; die "the operator exited"; }
    [ "$SECONDS" -lt "$deadline" ] || die "operator /healthz not answering on :$HEALTH_PORT"
    sleep 1
  done
}

stop_operator() {
  local pid
  if pid="$(operator_pid)"; then
    log "stopping the operator (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$DEMO/operator.pid"
}

cmd_up() {
  local start=$SECONDS
  if [ ! -x "$CACHE/bin/kubectl" ] || [ ! -x "$CACHE/bin/helm" ]; then
    log "kubectl/helm not cached: running hack/install-prereqs.sh"
    hack/install-prereqs.sh
  fi
  [ -x "$PY" ] || die "no $PY: run 'make venv' (make demo does)"
  hack/cluster.sh up
  mkdir -p "$DEMO"

  log "CRD (server-side apply)"
  kubectl apply --server-side --force-conflicts -f crds/tradingstack.yaml >/dev/null
  kubectl wait --for=condition=Established crd/tradingstacks.trading.quantumtrader.dev --timeout=60s >/dev/null

  for ns in "$SYSTEM_NS" "$NS"; do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl label namespace "$ns" --overwrite >/dev/null \
      pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest
  done

  local replicas=0
  [ "$OPERATOR" = in-cluster ] && replicas=1
  log "helm upgrade --install $RELEASE (replicaCount=$replicas)"
  helm upgrade --install "$RELEASE" charts/tradingstack-operator -n "$SYSTEM_NS" --create-namespace \
    --set replicaCount="$replicas" --wait --timeout 180s >/dev/null
  [ "$OPERATOR" = in-cluster ] || start_operator

  log "applying examples/quantum-trader.yaml into namespace $NS (Pod Security: restricted)"
  kubectl apply -n "$NS" -f examples/quantum-trader.yaml
  log "waiting for ts/$STACK Ready (timeout $READY_TIMEOUT)"
  kubectl wait -n "$NS" --for=condition=Ready "ts/$STACK" --timeout="$READY_TIMEOUT"
  echo
  kubectl get ts -n "$NS"
  echo
  kubectl get deploy,sts,svc,cronjob,pdb,networkpolicy,pvc -n "$NS"
  echo
  log "up in $((SECONDS - start))s. Operator log: $DEMO/operator.log; metrics: http://127.0.0.1:$METRICS_PORT/metrics"
  log "try: kubectl annotate ts/$STACK -n $NS trading.quantumtrader.dev/restart-now=\"\$(date -u +%FT%TZ)\" --overwrite"
  log "KUBECONFIG=$KUBECONFIG; remove everything with: make demo-down"
}

cmd_down() {
  if hack/cluster.sh status >/dev/null 2>&1; then
    if kubectl get ts "$STACK" -n "$NS" >/dev/null 2>&1; then
      # the stack carries kopf's finalizer: delete it while an operator runs
      if [ "$OPERATOR" != in-cluster ] && helm status "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1; then
        mkdir -p "$DEMO"
        start_operator
      fi
      log "deleting ts/$STACK (the operator releases its finalizer)"
      kubectl delete ts "$STACK" -n "$NS" --wait=true --timeout=120s
    fi
    stop_operator
    if helm status "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1; then
      helm uninstall "$RELEASE" -n "$SYSTEM_NS" --wait
    fi
  else
    stop_operator
  fi
  hack/cluster.sh down
  rm -rf "$DEMO"
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
