#!/usr/bin/env bash
# Local Kubernetes control plane for the tests and the demo, without Docker.
#
#   hack/cluster.sh build    build kube-apiserver/-controller-manager/-scheduler, kubectl, etcd, kwok,
#                            kwokctl, helm and promtool from Go modules (wrappers in hack/gobuild/*), cached by
#                            version under ~/.cache/tradingstack/; skips what is cached
#   hack/cluster.sh up       start the cluster (kwokctl, binary runtime, 3 fake nodes) unless it is up;
#                            waits for a healthy API server and Ready nodes; kubeconfig in .cluster/kubeconfig
#   hack/cluster.sh down     stop everything the cluster started
#   hack/cluster.sh status   exit 0 if the cluster answers
#   hack/cluster.sh env      print `export PATH=...` (cached binaries) and `export KUBECONFIG=...`
#   hack/cluster.sh control-plane stop|start   stop or restart etcd and the control plane, state kept (chaos)
#   hack/cluster.sh node start|stop real-I      start (add, or bring back) or stop (node loss) one real node
#
# CLUSTER=kind (with a working docker + kind) makes up/down/status use a kind cluster instead.
# See docs/cluster.md.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${TRADINGSTACK_CACHE:-$HOME/.cache/tradingstack}"

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
CONTAINERD_VERSION=v2.4.2
COREDNS_VERSION=v1.15.0
LOCAL_PATH_VERSION=v0.0.30
NETPOL_VERSION=v0.8.0 # sigs.k8s.io/kube-network-policies: the real nodes' NetworkPolicy dataplane
PROMETHEUS_VERSION=v0.316.0 # the Go module's version of Prometheus 3.x: promtool tests the alerts, the e2e scrapes
VERSITYGW_VERSION=v1.8.0 # S3-compatible server: pgBackRest's repo2 in tests/component/postgres/test_pitr_s3.py
KUBE_SCORE_VERSION=v1.20.0 # make audit's Go checker (the module proxy serves neither kube-linter nor polaris)

K8S_BIN="$CACHE/k8s-$K8S_VERSION/bin"
ETCD_BIN="$CACHE/etcd-$ETCD_VERSION/bin"
KWOK_BIN="$CACHE/kwok-$KWOK_VERSION/bin"
HELM_BIN="$CACHE/helm-$HELM_VERSION/bin"
CONTAINERD_BIN="$CACHE/containerd-$CONTAINERD_VERSION/bin"
COREDNS_BIN="$CACHE/coredns-$COREDNS_VERSION/bin"
LOCAL_PATH_BIN="$CACHE/local-path-$LOCAL_PATH_VERSION/bin"
PROMETHEUS_BIN="$CACHE/prometheus-$PROMETHEUS_VERSION/bin"
NETPOL_BIN="$CACHE/kube-network-policies-$NETPOL_VERSION/bin"
VERSITYGW_BIN="$CACHE/versitygw-$VERSITYGW_VERSION/bin"
KUBE_SCORE_BIN="$CACHE/kube-score-$KUBE_SCORE_VERSION/bin"
# One directory with links to the versioned binaries: the PATH contract for Makefile, scripts and tests.
BIN="$CACHE/bin"

CLUSTER="${CLUSTER:-local}"
CLUSTER_NAME="${CLUSTER_NAME:-tradingstack}"
# state (kubeconfig, kwokctl work dir, logs); CLUSTER_STATE_DIR runs a second, separate cluster
STATE="${CLUSTER_STATE_DIR:-$REPO/.cluster}"
KUBECONFIG_OUT="$STATE/kubeconfig"
LOGS="$STATE/logs"
NODES="${CLUSTER_NODES:-3}"         # kwok's fake nodes (tainted: only namespaces that ask for them land there)
REAL_NODES="${CLUSTER_REAL_NODES:-1}" # real nodes (containerd + kubelet): real-0, real-1, ... (hack/node.sh)
# The API server's default (a /24) runs out of ClusterIPs at about 60 stacks; the benchmark runs 100.
SERVICE_CIDR="${CLUSTER_SERVICE_CIDR:-10.96.0.0/16}"
export CLUSTER_SERVICE_CIDR="$SERVICE_CIDR"
# Real node i has 10.244.i.0/24 (its bridge holds 10.244.i.1, also its node IP); kwok's fake pods and nodes get
# addresses in 10.244.128.0/17, so every address the cluster hands out is routed to a local device.
export CLUSTER_POD_CIDR=10.244.0.0/16
FAKE_POD_CIDR=10.244.128.0/24
FAKE_NODE_IP=10.244.127.1
FAKE_TAINT=kwok.x-k8s.io/node=fake:NoSchedule
# kwokctl keeps its cluster state (pki, configs, pids, logs) here, outside the repo.
export KWOK_WORKDIR="${KWOK_WORKDIR:-$STATE/kwok}"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------------
# build

# go_build <wrapper dir> <out dir> <ldflags> [package]: builds every `tool` of the wrapper module in one go
# build (or the given package of it, e.g. "." for a wrapper with its own main.go).
go_build() {
  local dir="$1" out="$2" ldflags="$3" pkg="${4:-tool}" tmp
  tmp="$out.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  (
    cd "$REPO/hack/gobuild/$dir"
    CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" \
      go build -p "${GO_BUILD_P:-2}" -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "$pkg"
  )
  rm -rf "$out" && mv "$tmp" "$out"
}

timed() {
  local name="$1" start end
  shift
  start=$(date +%s)
  log "building $name ..."
  "$@"
  end=$(date +%s)
  log "built $name in $((end - start))s"
}

have_all() {
  local d="$1" b
  shift
  for b in "$@"; do [ -x "$d/$b" ] || return 1; done
}

cmd_build() {
  command -v go >/dev/null || die "go is not installed"
  local total_start minor
  total_start=$(date +%s)
  mkdir -p "$CACHE"

  if have_all "$ETCD_BIN" etcd; then
    log "etcd $ETCD_VERSION cached in $ETCD_BIN"
  else
    timed "etcd $ETCD_VERSION" go_build etcd "$ETCD_BIN" ""
    # go names the binary of go.etcd.io/etcd/server/v3 after the path ("server")
    local b
    for b in server v3; do
      if [ -x "$ETCD_BIN/$b" ]; then mv "$ETCD_BIN/$b" "$ETCD_BIN/etcd"; fi
    done
  fi

  if have_all "$KWOK_BIN" kwok kwokctl; then
    log "kwok $KWOK_VERSION cached in $KWOK_BIN"
  else
    timed "kwok $KWOK_VERSION" go_build kwok "$KWOK_BIN" \
      "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"
  fi

  if have_all "$K8S_BIN" kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; then
    log "kubernetes $K8S_VERSION cached in $K8S_BIN"
  else
    minor="${K8S_VERSION#v1.}"
    minor="${minor%%.*}"
    local vf="" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      vf+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      vf+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
    timed "kubernetes $K8S_VERSION" go_build k8s "$K8S_BIN" "$vf"
  fi

  if have_all "$HELM_BIN" helm; then
    log "helm $HELM_VERSION cached in $HELM_BIN"
  else
    timed "helm $HELM_VERSION" go_build helm "$HELM_BIN" \
      "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  fi

  if have_all "$CONTAINERD_BIN" containerd containerd-shim-runc-v2 ctr; then
    log "containerd $CONTAINERD_VERSION cached in $CONTAINERD_BIN"
  else
    timed "containerd $CONTAINERD_VERSION" go_build containerd "$CONTAINERD_BIN" \
      "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  fi

  if have_all "$COREDNS_BIN" coredns; then
    log "coredns $COREDNS_VERSION cached in $COREDNS_BIN"
  else
    timed "coredns $COREDNS_VERSION" go_build coredns "$COREDNS_BIN" "" .
  fi

  if have_all "$LOCAL_PATH_BIN" local-path-provisioner; then
    log "local-path-provisioner $LOCAL_PATH_VERSION cached in $LOCAL_PATH_BIN"
  else
    timed "local-path-provisioner $LOCAL_PATH_VERSION" go_build local-path "$LOCAL_PATH_BIN" ""
  fi

  if have_all "$PROMETHEUS_BIN" prometheus promtool; then
    log "prometheus and promtool $PROMETHEUS_VERSION cached in $PROMETHEUS_BIN"
  else
    # remove_all_sd: without the cloud service discoveries (the tests scrape static targets), which halves
    # the modules to fetch and compile.
    GOFLAGS="-tags=remove_all_sd" timed "prometheus $PROMETHEUS_VERSION" go_build prometheus "$PROMETHEUS_BIN" \
      "-X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v}"
  fi

  if have_all "$NETPOL_BIN" kube-network-policies; then
    log "kube-network-policies $NETPOL_VERSION cached in $NETPOL_BIN"
  else
    timed "kube-network-policies $NETPOL_VERSION" go_build netpol "$NETPOL_BIN" ""
    mv "$NETPOL_BIN/cmd" "$NETPOL_BIN/kube-network-policies" # go names it after its package directory
  fi

  if have_all "$VERSITYGW_BIN" versitygw; then
    log "versitygw $VERSITYGW_VERSION cached in $VERSITYGW_BIN"
  else
    timed "versitygw $VERSITYGW_VERSION" go_build versitygw "$VERSITYGW_BIN" ""
  fi

  if have_all "$KUBE_SCORE_BIN" kube-score; then
    log "kube-score $KUBE_SCORE_VERSION cached in $KUBE_SCORE_BIN"
  else
    timed "kube-score $KUBE_SCORE_VERSION" go_build kube-score "$KUBE_SCORE_BIN" "-X main.version=$KUBE_SCORE_VERSION"
  fi

  link_bins
  log "all binaries ready in $BIN (total $(($(date +%s) - total_start))s)"
}

link_bins() {
  mkdir -p "$BIN"
  local d f
  for d in "$K8S_BIN" "$ETCD_BIN" "$KWOK_BIN" "$HELM_BIN" "$CONTAINERD_BIN" "$COREDNS_BIN" "$LOCAL_PATH_BIN" \
    "$PROMETHEUS_BIN" "$NETPOL_BIN" "$VERSITYGW_BIN" "$KUBE_SCORE_BIN"; do
    for f in "$d"/*; do
      [ -x "$f" ] || continue # a version not built (yet): its directory is missing
      ln -sfn "$f" "$BIN/$(basename "$f")"
    done
  done
}

cmd_env() {
  # shellcheck disable=SC2016 # $PATH is for the shell that evaluates this
  printf 'export PATH=%q:$PATH\n' "$BIN"
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_OUT"
}

# ---------------------------------------------------------------------------------------------------
# local cluster: kwokctl with the binary runtime and the binaries built above

kubectl_() {
  local k="$K8S_BIN/kubectl"
  [ -x "$k" ] || k=kubectl
  "$k" --kubeconfig "$KUBECONFIG_OUT" "$@"
}

kwokctl_() {
  # Every binary kwokctl would otherwise download comes from the cache; nothing is fetched.
  KWOK_RUNTIME=binary \
    KWOK_KUBE_VERSION="$K8S_VERSION" \
    KWOK_ETCD_VERSION="${ETCD_VERSION#v}" \
    KWOK_KUBE_BINARY_PREFIX="$K8S_BIN" \
    KWOK_KUBE_APISERVER_BINARY="$K8S_BIN/kube-apiserver" \
    KWOK_KUBE_CONTROLLER_MANAGER_BINARY="$K8S_BIN/kube-controller-manager" \
    KWOK_KUBE_SCHEDULER_BINARY="$K8S_BIN/kube-scheduler" \
    KWOK_KUBECTL_BINARY="$K8S_BIN/kubectl" \
    KWOK_ETCD_BINARY="$ETCD_BIN/etcd" \
    KWOK_CONTROLLER_BINARY="$KWOK_BIN/kwok" \
    detached "$KWOK_BIN/kwokctl" --config "$STATE/kwokctl.yaml" --name "$CLUSTER_NAME" "$@" </dev/null
}

# Runs a command that starts long-lived processes with every inherited descriptor above stderr closed:
# the cluster must not keep our lock or a caller's pipe (CI, pytest, make) open after we return.
detached() {
  (
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec "$@"
  )
}

# the context name in the kubeconfig tells which kind of cluster wrote it: kwok-<name> or kind-<name>
context_name() { if [ "$CLUSTER" = kind ]; then echo "kind-$CLUSTER_NAME"; else echo "kwok-$CLUSTER_NAME"; fi; }
kubeconfig_is_ours() { grep -q "^current-context: $(context_name)\$" "$KUBECONFIG_OUT" 2>/dev/null; }
kubeconfig_is_foreign() { grep -Eq '^current-context: +[^" ]' "$KUBECONFIG_OUT" 2>/dev/null && ! kubeconfig_is_ours; }

healthy() {
  kubeconfig_is_ours || return 1
  kubectl_ --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

ready_nodes() { # ready_nodes [label selector]
  kubectl_ get nodes ${1:+-l "$1"} -o jsonpath='{range .items[*]}{range .status.conditions[?(@.type=="Ready")]}{.status}{"\n"}{end}{end}' \
    2>/dev/null | grep -c '^True$' || true
}

wait_for() {
  local what="$1" timeout="$2" start
  shift 2
  start=$(date +%s)
  until "$@"; do
    if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
      die "timed out after ${timeout}s waiting for $what (logs: $LOGS)"
    fi
    sleep 1
  done
}

fake_nodes() { kubectl_ get nodes -l type=kwok -o name 2>/dev/null | grep -c . || true; }
enough_fake_nodes() { [ "$(ready_nodes type=kwok)" -ge "$NODES" ]; }
default_sa() { kubectl_ -n default get serviceaccount default -o name >/dev/null 2>&1; }

# pids of the processes of this cluster: everything running from its kwokctl work directory
# (kwokctl starts each binary through a link in <workdir>/clusters/<name>/bin/). Matching the command
# (argv[0]), not pid files, never hits an unrelated process that reused a pid after a reboot.
cluster_pids() {
  local f argv0
  for f in /proc/[0-9]*; do
    argv0=""
    IFS= read -r -d '' argv0 <"$f/cmdline" 2>/dev/null || true
    case "$argv0" in
      "$KWOK_WORKDIR/clusters/$CLUSTER_NAME/"*) echo "${f#/proc/}" ;;
    esac
  done
}

local_down() {
  # real nodes first: their kubelets would otherwise outlive the API server and log errors until killed
  if [ -d /var/lib/tradingstack-nodes ]; then
    KWOK_CLUSTER_DIR="$KWOK_WORKDIR/clusters/$CLUSTER_NAME" "$REPO/hack/node.sh" down || die "hack/node.sh down failed"
  fi
  if [ -x "$KWOK_BIN/kwokctl" ] && [ -f "$STATE/kwokctl.yaml" ] && [ -d "$KWOK_WORKDIR/clusters/$CLUSTER_NAME" ]; then
    kwokctl_ delete cluster --kubeconfig "$KUBECONFIG_OUT" >>"$STATE/kwokctl.log" 2>&1 || true
  fi
  local pids i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(cluster_pids)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    if [ "$i" -lt 6 ]; then kill $pids 2>/dev/null || true; else kill -9 $pids 2>/dev/null || true; fi
    sleep 1
  done
  [ -z "$(cluster_pids)" ] || die "processes still running: $(cluster_pids | tr '\n' ' ')"
  rm -rf "$KWOK_WORKDIR/clusters/$CLUSTER_NAME" "$LOGS"
  if ! kubeconfig_is_foreign; then rm -f "$KUBECONFIG_OUT"; fi
}

local_up() {
  for b in "$K8S_BIN/kube-apiserver" "$K8S_BIN/kubectl" "$ETCD_BIN/etcd" "$KWOK_BIN/kwokctl" "$KWOK_BIN/kwok"; do
    [ -x "$b" ] || { log "$b missing, building"; cmd_build; break; }
  done
  link_bins
  local start
  start=$(date +%s)
  if healthy; then
    log "cluster $CLUSTER_NAME already up"
  elif kubeconfig_is_foreign; then
    die "$KUBECONFIG_OUT belongs to another cluster ($(grep '^current-context:' "$KUBECONFIG_OUT")); run 'CLUSTER=kind $0 down' first"
  else
    # half-started or stale (e.g. processes killed after a CI run): start from scratch
    local_down >/dev/null 2>&1 || true
    mkdir -p "$STATE"
    # every component (etcd has no auth) listens on loopback only
    local pki="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pki" api_ip="${SERVICE_CIDR%.*.*}.0.1"
    # The API server: a certificate valid for the `kubernetes` Service (pods reach it there), that Service's
    # endpoint on real-0's bridge, a client certificate for kubelets (logs, exec), and the admission plugins
    # that pin a namespace's pods to kwok's nodes (namespace annotations, see docs/cluster.md).
    # kwok-controller drives only its own fake nodes, never a real kubelet's.
    # Node health as upstream Kubernetes judges it (kwokctl scales leases and grace periods by a heartbeat factor
    # of 5, for thousands of fake nodes): a lost real node is NotReady 50 s after its last lease renewal and its
    # pods leave the Services' endpoints then, as in a production cluster (the e2e of a Patroni leader's node loss).
    cat >"$STATE/kwokctl.yaml" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
  kubeApiserverCertSANs: [$api_ip, kubernetes, kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.cluster.local]
  heartbeatFactor: 1
  nodeLeaseDurationSeconds: 40
  kubeControllerManagerNodeMonitorPeriodMilliseconds: 5000
  kubeControllerManagerNodeMonitorGracePeriodMilliseconds: 50000
componentsPatches:
  - name: kube-apiserver
    extraArgs:
      - {key: advertise-address, value: "${CLUSTER_POD_CIDR%.*.*}.0.1"}
      - {key: kubelet-client-certificate, value: "$pki/admin.crt"}
      - {key: kubelet-client-key, value: "$pki/admin.key"}
      - {key: kubelet-preferred-address-types, value: InternalIP}
      - {key: enable-admission-plugins, value: "PodNodeSelector,PodTolerationRestriction"}
  - name: kwok-controller
    extraArgs:
      - {key: manage-all-nodes, value: "false"}
      - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
  # One instance each: leader election only makes them exit when the API server stalls past their renew
  # deadline (seen under load on 2 cores), and nothing restarts them.
  - name: kube-controller-manager
    extraArgs:
      - {key: leader-elect, value: "false"}
  - name: kube-scheduler
    extraArgs:
      - {key: leader-elect, value: "false"}
YAML
    # every write request is audited (who, what, which object); the tests count the operator's writes with it
    cat >"$STATE/audit-policy.yaml" <<'YAML'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
YAML
    log "creating cluster $CLUSTER_NAME (kwokctl, binary runtime, kubernetes $K8S_VERSION) ..."
    # --kube-admission: the default admission chain (ServiceAccount, PodSecurity, ...) instead of none
    # --kube-authorization: Node,RBAC authorization; the admin kubeconfig is system:masters
    if ! kwokctl_ create cluster \
      --kubeconfig "$KUBECONFIG_OUT" \
      --secure-port=true \
      --kube-admission=true \
      --kube-authorization=true \
      --extra-args kube-controller-manager=enable-hostpath-provisioner=true \
      --extra-args kube-apiserver=service-cluster-ip-range="$SERVICE_CIDR" \
      --extra-args kube-controller-manager=service-cluster-ip-range="$SERVICE_CIDR" \
      --kube-audit-policy "$STATE/audit-policy.yaml" \
      --quiet-pull \
      --timeout 5m \
      --wait 2m >>"$STATE/kwokctl.log" 2>&1; then
      tail -n 40 "$STATE/kwokctl.log" >&2
      die "kwokctl create cluster failed (full log: $STATE/kwokctl.log, component logs: $LOGS)"
    fi
    ln -sfn "$KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs" "$LOGS"
  fi
  wait_for "a healthy API server" 180 healthy
  if [ "$(fake_nodes)" -lt "$NODES" ]; then
    log "scaling to $NODES fake nodes ..."
    kwokctl_ scale node --replicas "$NODES" \
      --param ".podCIDRs=[\"$FAKE_POD_CIDR\"]" --param ".nodeIPs=[\"$FAKE_NODE_IP\"]" >>"$STATE/kwokctl.log" 2>&1 \
      || die "kwokctl scale node failed (log: $STATE/kwokctl.log)"
  fi
  wait_for "$NODES fake nodes" 180 enough_fake_nodes
  kubectl_ taint nodes -l type=kwok "$FAKE_TAINT" --overwrite >/dev/null
  # pods need the default service account (the ServiceAccount admission plugin is on)
  wait_for "the default service account" 120 default_sa
  if [ "$REAL_NODES" -gt 0 ]; then
    log "starting $REAL_NODES real node(s) ..."
    KWOK_CLUSTER_DIR="$KWOK_WORKDIR/clusters/$CLUSTER_NAME" "$REPO/hack/node.sh" up "$REAL_NODES" \
      || die "real nodes did not start (logs: $LOGS)"
  else
    # Without a real node nothing mounts a volume: the controller-manager's hostPath provisioner (enabled
    # above) binds PVCs through this default class, so StatefulSet pods of fake nodes can be scheduled.
    kubectl_ apply -f - >/dev/null <<'YAML' || die "could not create the default StorageClass"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
YAML
  fi
  log "cluster $CLUSTER_NAME up in $(($(date +%s) - start))s; KUBECONFIG=$KUBECONFIG_OUT"
}

# ---------------------------------------------------------------------------------------------------
# kind (CLUSTER=kind): real containers, needs a working docker

kind_ok() {
  command -v docker >/dev/null && command -v kind >/dev/null && docker info >/dev/null 2>&1
}

kind_up() {
  kind_ok || die "CLUSTER=kind needs docker (with a running engine: 'docker info' must work) and kind"
  mkdir -p "$STATE"
  if kubeconfig_is_foreign; then
    die "$KUBECONFIG_OUT belongs to another cluster ($(grep '^current-context:' "$KUBECONFIG_OUT")); run '$0 down' first"
  fi
  if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    kind create cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_OUT" --wait 180s
  else
    kind get kubeconfig --name "$CLUSTER_NAME" >"$KUBECONFIG_OUT"
  fi
  wait_for "a healthy API server" 180 healthy
}

kind_down() {
  if kind_ok; then kind delete cluster --name "$CLUSTER_NAME" || true; fi
  if ! kubeconfig_is_foreign; then rm -f "$KUBECONFIG_OUT"; fi
}

# ---------------------------------------------------------------------------------------------------

with_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "another hack/cluster.sh holds $STATE/.lock"
  "$@"
}

cmd_up() { if [ "$CLUSTER" = kind ]; then kind_up; else local_up; fi; }
cmd_down() { if [ "$CLUSTER" = kind ]; then kind_down; else local_down; fi; log "cluster $CLUSTER_NAME down"; }
# The local control plane's processes (etcd, kube-apiserver, controller-manager, scheduler, kwok) stopped or
# started again with their state kept: the chaos suite's API outage. Nodes, pods and the operator keep running.
cmd_control_plane() {
  [ "$CLUSTER" = local ] || die "control-plane stop/start needs the local cluster"
  case "${1:-}" in
    stop | start) kwokctl_ "$1" cluster >>"$STATE/kwokctl.log" 2>&1 || die "kwokctl $1 cluster failed (log: $STATE/kwokctl.log)" ;;
    *) die "usage: $0 control-plane {stop|start}" ;;
  esac
}
# One real node started (added, or back after a loss) or stopped (node loss: hack/node.sh stop) on a running
# local cluster; the e2e of a Patroni leader's node loss adds real-1 and loses a node.
cmd_node() {
  [ "$CLUSTER" = local ] || die "node start/stop needs the local cluster"
  case "${1:-}" in
    start | stop) KWOK_CLUSTER_DIR="$KWOK_WORKDIR/clusters/$CLUSTER_NAME" "$REPO/hack/node.sh" "$1" "${2:?node name (real-I)}" ;;
    *) die "usage: $0 node {start|stop} real-I" ;;
  esac
}
cmd_status() {
  if healthy; then
    log "cluster $CLUSTER_NAME is up; KUBECONFIG=$KUBECONFIG_OUT"
  else
    log "cluster $CLUSTER_NAME is not up"
    return 1
  fi
}

case "${1:-}" in
  build) cmd_build ;;
  up) with_lock cmd_up ;;
  down) with_lock cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  control-plane) with_lock cmd_control_plane "${2:-}" ;;
  node) with_lock cmd_node "${2:-}" "${3:-}" ;;
  *)
    echo "usage: $0 {build|up|down|status|env|control-plane stop|start}" >&2
    exit 2
    ;;
esac
