#!/usr/bin/env bash
# Real nodes of the local cluster: containerd + kubelet per node, and the host-level pieces every real node
# shares (pod network guard, kube-proxy, CoreDNS, the local-path volume provisioner, the NetworkPolicy dataplane
# kube-network-policies). Called by hack/cluster.sh;
# see docs/cluster.md.
#
#   hack/node.sh up N          host network + N real nodes (real-0 .. real-N-1) + add-ons; waits for Ready
#   hack/node.sh down          stops every process, container, mount, link, route, nft table, cgroup and sysctl
#                              change the real nodes made
#   hack/node.sh start NAME    starts one node (real-I, its subnet 10.244.I.0/24) unless it runs: a node added
#                              to a running cluster, or a stopped one back (its kubelet restarts its pods)
#   hack/node.sh stop NAME     kills one node's kubelet, containerd and containers (node loss); `start` restarts it
#   hack/node.sh guard         prints the guard table's drop counters ("forward=N output=N")
#
# Needs: the control plane up (KUBECONFIG, PKI in $KWOK_CLUSTER_DIR/pki), root, runc, nft, CNI plugins in
# /usr/lib/cni. Only one cluster on a machine can have real nodes: their bridges, routes and nft tables are
# host-wide; `up` refuses while another state directory owns them and a process of theirs still runs.
#
# Network safety: pods and Service IPs never reach the uplink. The pod range and the Service range are routed to
# a local bridge with no ports (ts-null); each node's pod subnet lives on its own bridge (ts-podN); pods get
# routes to those two ranges only (no default route); nothing is masqueraded to the uplink; and the nft table
# inet tradingstack-guard drops (and counts) any packet of those ranges leaving through an interface that is not
# ours. Pods reach the loopback-bound API server through the `kubernetes` Service IP, which a DNAT rule of ours
# (evaluated before kube-proxy's) maps to 127.0.0.1:<port> (route_localnet on the pod bridges).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${TRADINGSTACK_CACHE:-$HOME/.cache/tradingstack}"
BIN="$CACHE/bin"
STATE="${CLUSTER_STATE_DIR:-$REPO/.cluster}"
KUBECONFIG_ADMIN="$STATE/kubeconfig"
KWOK_CLUSTER_DIR="${KWOK_CLUSTER_DIR:-}" # set by hack/cluster.sh; `up` needs it
PKI="$KWOK_CLUSTER_DIR/pki"
LOGS="$STATE/logs"

# Host-wide paths (fixed, so a later run, from any clone, finds and removes what an earlier one left).
NODE_ROOT=/var/lib/tradingstack-nodes
RUN_ROOT=/run/tradingstack-nodes
LINKS="$NODE_ROOT/bin" # every daemon runs through a link here: its argv[0] tells that it is ours
CGROUP_PARENT=tradingstack-nodes

POD_CIDR="${CLUSTER_POD_CIDR:-10.244.0.0/16}" # real node i: 10.244.i.0/24; kwok's fake nodes: 10.244.128.0/17
SERVICE_CIDR="${CLUSTER_SERVICE_CIDR:-10.96.0.0/16}"
API_SERVICE_IP="${SERVICE_CIDR%.*.*}.0.1"
DNS_SERVICE_IP="${SERVICE_CIDR%.*.*}.0.10"
POD_PREFIX="${POD_CIDR%.*.*}" # 10.244
NULL_BRIDGE=ts-null
GUARD_TABLE=tradingstack-guard
NAT_TABLE=tradingstack-apiserver
NETPOL_CHAIN=TS-NETPOL # iptables-nft chain (table mangle) that hands new pod connections to kube-network-policies
NETPOL_QUEUE=100
SANDBOX_IMAGE="${SANDBOX_IMAGE:-localhost/tradingstack/pause:3.10}"
HELPER_IMAGE="${HELPER_IMAGE:-localhost/tradingstack/debian:bookworm}"
# sysctls the nodes change (kubelet sets the last three on start); `down` puts the saved values back
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables vm.overcommit_memory kernel.panic kernel.panic_on_oops)

log() { printf '[node] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

node_dir() { echo "$NODE_ROOT/$1"; }
run_dir() { echo "$RUN_ROOT/$1"; }
bridge_of() { echo "ts-pod$1"; }
gateway_of() { echo "$POD_PREFIX.$1.1"; }
api_port() { sed -n 's#^ *server: https://127.0.0.1:\([0-9]*\)$#\1#p' "$KUBECONFIG_ADMIN" | head -n1; }

# pids whose argv[0] is one of our links (daemons) or that live in our cgroups (shims, containers)
our_pids() {
  local f argv0
  for f in /proc/[0-9]*; do
    argv0=""
    IFS= read -r -d '' argv0 <"$f/cmdline" 2>/dev/null || true
    case "$argv0" in "$LINKS/"*) echo "${f#/proc/}" ;; esac
  done
  if [ -d "/sys/fs/cgroup/pids/$CGROUP_PARENT" ]; then
    find "/sys/fs/cgroup/pids/$CGROUP_PARENT" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  fi
}

# pids of one node: every process of it (daemons, shims, containers) lives in its cgroup
node_pids() {
  local cg="/sys/fs/cgroup/pids/$CGROUP_PARENT/$1"
  if [ -d "$cg" ]; then find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
}

kill_all() { # kill_all <pid-lister> [args]: TERM (TERM_ROUNDS times, default 5), then KILL, until nothing is left
  local pids i
  for i in $(seq 1 20); do
    pids=$("$@" | sort -u | tr '\n' ' ')
    [ -z "${pids// /}" ] && return 0
    # shellcheck disable=SC2086
    if [ "$i" -le "${TERM_ROUNDS:-5}" ]; then kill $pids 2>/dev/null || true; else kill -9 $pids 2>/dev/null || true; fi
    sleep 0.5
  done
  pids=$("$@" | sort -u | tr '\n' ' ')
  [ -z "${pids// /}" ] || die "processes still running: $pids"
}

unmount_under() { # every mount below the given directories, deepest first
  local dir mnt
  for dir in "$@"; do
    while read -r mnt; do
      umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || log "could not unmount $mnt"
    done < <(awk -v d="$dir/" 'index($5, d) == 1 || $5 == substr(d, 1, length(d) - 1) {print $5}' /proc/self/mountinfo | sort -r)
  done
}

remove_cgroups() { # depth first, in every v1 hierarchy
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h$CGROUP_PARENT/${1:-}" ] || continue
    find "$h$CGROUP_PARENT/${1:-}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

make_cgroup() { # make_cgroup <path below CGROUP_PARENT>: in every v1 hierarchy (cpuset needs cpus/mems copied)
  local h dir parent part
  for h in /sys/fs/cgroup/*/; do
    parent="${h%/}"
    for part in "$CGROUP_PARENT" ${1//\// }; do
      dir="$parent/$part"
      mkdir -p "$dir"
      if [ -f "$dir/cpuset.cpus" ] && [ -z "$(cat "$dir/cpuset.cpus")" ]; then
        cat "$parent/cpuset.cpus" >"$dir/cpuset.cpus"
        cat "$parent/cpuset.mems" >"$dir/cpuset.mems"
      fi
      parent="$dir"
    done
  done
}

enter_cgroup() { # enter_cgroup <path>: moves this shell into the cgroup in every hierarchy (children inherit it)
  local h
  for h in /sys/fs/cgroup/*/; do echo "$BASHPID" >"$h$CGROUP_PARENT/$1/cgroup.procs"; done
}

# start <name> <log> <cgroup> <binary> [args]: a detached daemon run through its link in $LINKS, every inherited
# descriptor above stderr closed (it must not keep a caller's pipe or lock), in the given cgroup.
start() {
  local name="$1" logfile="$2" cg="$3" binary="$4" fd
  shift 4
  mkdir -p "$LINKS"
  ln -sfn "$binary" "$LINKS/$name"
  make_cgroup "$cg"
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    enter_cgroup "$cg"
    PATH="$LINKS:$PATH" exec setsid "$LINKS/$name" "$@" </dev/null >>"$logfile" 2>&1
  ) &
  disown
}

# ---------------------------------------------------------------------------------------------------
# host network: sysctls, the null bridge and its routes, the guard table, the API server DNAT

save_sysctls() {
  [ -f "$NODE_ROOT/sysctls.saved" ] && return 0
  mkdir -p "$NODE_ROOT"
  local key
  for key in "${SYSCTLS[@]}"; do printf '%s=%s\n' "$key" "$(sysctl -n "$key")"; done >"$NODE_ROOT/sysctls.saved"
}

restore_sysctls() {
  [ -f "$NODE_ROOT/sysctls.saved" ] || return 0
  local line
  while read -r line; do sysctl -q -w "$line" >/dev/null || log "could not restore $line"; done <"$NODE_ROOT/sysctls.saved"
  rm -f "$NODE_ROOT/sysctls.saved"
}

uplinks() { ip -o route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | sort -u; }

net_up() {
  save_sysctls
  # The kubelet creates iptables(-nft) chains (KUBE-FIREWALL and its canaries) and kube-proxy its own tables:
  # remember which tables existed before, so `down` removes exactly the ones the nodes added.
  [ -f "$NODE_ROOT/tables.before" ] || nft list tables >"$NODE_ROOT/tables.before"
  # routing between pod bridges and DNAT to Service endpoints; bridged pod-to-pod traffic through conntrack
  sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 >/dev/null
  if ! ip link show "$NULL_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NULL_BRIDGE" type bridge
    ip link set "$NULL_BRIDGE" up
  fi
  # Unassigned pod addresses (kwok's fake pods among them) and every Service IP stay on this machine.
  ip route replace "$POD_CIDR" dev "$NULL_BRIDGE"
  ip route replace "$SERVICE_CIDR" dev "$NULL_BRIDGE"
  local ours='{ "lo", "ts-*" }'
  # created once per cluster: its counters must cover the cluster's whole life
  nft list table inet "$GUARD_TABLE" >/dev/null 2>&1 || nft -f - <<NFT
table inet $GUARD_TABLE {
  counter leak_forward {}
  counter leak_output {}
  set cluster_ranges { type ipv4_addr; flags interval; elements = { $POD_CIDR, $SERVICE_CIDR } }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    ip saddr @cluster_ranges oifname != $ours counter name leak_forward drop
    ip daddr @cluster_ranges oifname != $ours counter name leak_forward drop
  }
  chain output {
    type filter hook output priority filter - 10; policy accept;
    ip daddr @cluster_ranges oifname != $ours counter name leak_output drop
  }
}
NFT
  nft -f - <<NFT
table ip $NAT_TABLE
delete table ip $NAT_TABLE
table ip $NAT_TABLE {
  chain prerouting {
    type nat hook prerouting priority dstnat - 10; policy accept;
    ip daddr $API_SERVICE_IP tcp dport 443 dnat to 127.0.0.1:$(api_port)
  }
}
NFT
}

guard_counters() {
  local fwd out
  fwd=$(nft list counter inet "$GUARD_TABLE" leak_forward 2>/dev/null | sed -n 's/.*packets \([0-9]*\).*/\1/p')
  out=$(nft list counter inet "$GUARD_TABLE" leak_output 2>/dev/null | sed -n 's/.*packets \([0-9]*\).*/\1/p')
  if [ -z "$fwd" ] || [ -z "$out" ]; then die "the guard table inet $GUARD_TABLE is missing"; fi
  echo "forward=$fwd output=$out"
}

net_down() {
  netpol_rules_down
  local link
  for link in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^ts-(pod[0-9]+|null)$' || true); do
    ip link delete "$link" 2>/dev/null || true
  done
  ip route delete "$POD_CIDR" 2>/dev/null || true
  ip route delete "$SERVICE_CIDR" 2>/dev/null || true
  local table
  if [ -f "$NODE_ROOT/tables.before" ]; then
    nft list tables | while read -r table; do
      grep -qxF "$table" "$NODE_ROOT/tables.before" || nft "delete $table" || true
    done
    rm -f "$NODE_ROOT/tables.before"
  else
    for table in "inet $GUARD_TABLE" "ip $NAT_TABLE" "ip kube-proxy" "ip6 kube-proxy"; do
      nft "delete table $table" 2>/dev/null || true
    done
  fi
  restore_sysctls
}

# NetworkPolicy enforcement. kube-network-policies judges the first packet of every new connection that it
# reads from an NFQUEUE and installs the rule that feeds the queue itself, with nftables' native `queue`
# expression; this kernel lacks that expression (`nft add rule ... queue num 100`: "No such file or directory")
# but has the xtables NFQUEUE target, so the same rule is installed here with iptables-nft and the program's own
# attempt fails harmlessly (it logs it and goes on serving the queue). Like the program's rule: replies and the
# node's root processes (kubelet probes, the tests' own clients) pass unjudged; anything else to or from a pod
# address is judged. --queue-bypass: while nothing serves the queue, traffic passes (a stopped dataplane
# enforces nothing; the e2e tests show that it does enforce).
netpol_rules_up() {
  netpol_rules_down
  iptables-nft -w -t mangle -N "$NETPOL_CHAIN"
  iptables-nft -w -t mangle -A "$NETPOL_CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  iptables-nft -w -t mangle -A "$NETPOL_CHAIN" -m owner --uid-owner 0 -j RETURN
  iptables-nft -w -t mangle -A "$NETPOL_CHAIN" -s "$POD_CIDR" -j NFQUEUE --queue-num "$NETPOL_QUEUE" --queue-bypass
  iptables-nft -w -t mangle -A "$NETPOL_CHAIN" -d "$POD_CIDR" -j NFQUEUE --queue-num "$NETPOL_QUEUE" --queue-bypass
  iptables-nft -w -t mangle -A POSTROUTING -j "$NETPOL_CHAIN"
}

netpol_rules_down() {
  command -v iptables-nft >/dev/null || return 0
  while iptables-nft -w -t mangle -D POSTROUTING -j "$NETPOL_CHAIN" 2>/dev/null; do :; done
  iptables-nft -w -t mangle -F "$NETPOL_CHAIN" 2>/dev/null || true
  iptables-nft -w -t mangle -X "$NETPOL_CHAIN" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------
# certificates: each component gets a client certificate from the cluster CA, named for its RBAC identity

client_cert() { # client_cert <dir> <name> <CN> [O]
  local dir="$1" name="$2" cn="$3" org="${4:-}" subj
  [ -f "$dir/$name.crt" ] && return 0
  subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -subj "$subj" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 30 -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr"
}

kubeconfig_for() { # kubeconfig_for <dir> <name>: a kubeconfig with <dir>/<name>.crt/.key
  local dir="$1" name="$2"
  cat >"$dir/$name.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:$(api_port)", certificate-authority: "$PKI/ca.crt"}}]
users: [{name: $name, user: {client-certificate: "$dir/$name.crt", client-key: "$dir/$name.key"}}]
contexts: [{name: local, context: {cluster: local, user: $name}}]
current-context: local
YAML
}

# ---------------------------------------------------------------------------------------------------
# one real node: its pod bridge, containerd and kubelet

node_up() {
  local index="$1" name="real-$1" dir run bridge gw
  dir="$(node_dir "$name")"
  run="$(run_dir "$name")"
  bridge="$(bridge_of "$index")"
  gw="$(gateway_of "$index")"
  if node_running "$name"; then
    log "$name already running"
    return 0
  fi
  mkdir -p "$dir/certs" "$dir/cni" "$run" "$LOGS"
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$gw/24" dev "$bridge"
    ip link set "$bridge" up
  fi
  sysctl -q -w "net.ipv4.conf.$bridge.route_localnet=1" >/dev/null

  cat >"$dir/cni/10-tradingstack.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "tradingstack-$name",
  "plugins": [
    {
      "type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$dir/ipam",
        "ranges": [[{"subnet": "$POD_PREFIX.$index.0/24", "gateway": "$gw"}]],
        "routes": [{"dst": "$POD_CIDR"}, {"dst": "$SERVICE_CIDR"}]
      }
    }
  ]
}
JSON
  cat >"$dir/containerd.toml" <<TOML
version = 3
root = "$dir/containerd"
state = "$run/containerd"
[grpc]
  address = "$run/containerd.sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own
  restrict_oom_score_adj = true
  # pod network namespaces below the state dir, not /run/netns (which \`ip netns add\` of tests may cover)
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$SANDBOX_IMAGE"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
[plugins.'io.containerd.internal.v1.opt']
  path = "$dir/opt"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
TOML
  start "containerd" "$LOGS/containerd-$name.log" "$name/runtime" "$BIN/containerd" --config "$dir/containerd.toml"
  wait_until "containerd of $name" 60 "$BIN/ctr" --address "$run/containerd.sock" version
  import_images "$name"

  client_cert "$dir/certs" kubelet "system:node:$name" system:nodes
  kubeconfig_for "$dir/certs" kubelet
  : >"$dir/resolv.conf" # pods get the cluster DNS and nothing of the host's resolver
  cat >"$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $gw
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_PARENT/$name/pods
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
resolvConf: "$dir/resolv.conf"
containerRuntimeEndpoint: "unix://$run/containerd.sock"
podLogsDir: "$dir/pod-logs"
serializeImagePulls: false
evictionHard: {memory.available: 200Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
shutdownGracePeriod: 0s
YAML
  make_cgroup "$name/pods"
  start "kubelet" "$LOGS/kubelet-$name.log" "$name/daemons" "$BIN/kubelet" \
    --config "$dir/kubelet.yaml" --kubeconfig "$dir/certs/kubelet.kubeconfig" \
    --root-dir "$dir/kubelet" --cert-dir "$dir/certs/serving" \
    --hostname-override "$name" --node-ip "$gw" \
    --node-labels "tradingstack.dev/node-pool=real"
}

node_running() { [ -n "$(node_pids "$1" | head -n1)" ]; }

node_ready() {
  [ "$(kubectl_ get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

wait_until() { # wait_until <what> <seconds> <command...>
  local what="$1" timeout="$2" start
  shift 2
  start=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    [ $(($(date +%s) - start)) -lt "$timeout" ] || die "timed out after ${timeout}s waiting for $what (logs: $LOGS)"
    sleep 0.5
  done
}

# Images built by hack/images.sh are imported into the node's containerd, so pods start without a registry
# (imagePullPolicy IfNotPresent: every project tag is a version, not latest).
import_images() { "$REPO/hack/images.sh" load; }

node_stop() { # node loss: everything of one node dies at once, as a crashed machine
  local name="$1"
  # SIGKILL only: on TERM a Patroni leader would release its lock and a kubelet report its pods, which a crashed
  # machine never does
  TERM_ROUNDS=0 kill_all node_pids "$name"
  unmount_under "$(node_dir "$name")" "$(run_dir "$name")"
  remove_cgroups "$name"
  # its runtime state dies with it, as a machine's /run: no socket of a dead containerd is left to be dialled
  rm -rf "$(run_dir "$name")"
}

# ---------------------------------------------------------------------------------------------------
# add-ons, host processes shared by the real nodes: kube-proxy, CoreDNS (behind the kube-dns Service), and the
# local-path provisioner (default StorageClass: a directory per volume on the node that runs the pod)

addons_up() {
  local dir="$NODE_ROOT/addons"
  mkdir -p "$dir"
  client_cert "$dir" kube-proxy system:kube-proxy
  kubeconfig_for "$dir" kube-proxy
  client_cert "$dir" coredns system:coredns
  kubeconfig_for "$dir" coredns
  client_cert "$dir" local-path system:local-path-provisioner
  kubeconfig_for "$dir" local-path
  kubectl_ apply --server-side --field-manager=tradingstack-hack -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
  - {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: User, name: "system:coredns", apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:local-path-provisioner"}
rules:
  - {apiGroups: [""], resources: [nodes, persistentvolumeclaims, configmaps, pods/log], verbs: [get, list, watch]}
  - {apiGroups: [""], resources: [pods], verbs: [get, list, watch, create, delete]}
  - {apiGroups: [""], resources: [persistentvolumes], verbs: [get, list, watch, create, patch, update, delete]}
  - {apiGroups: [""], resources: [events], verbs: [create, patch]}
  - {apiGroups: [storage.k8s.io], resources: [storageclasses], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:local-path-provisioner"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:local-path-provisioner"}
subjects: [{kind: User, name: "system:local-path-provisioner", apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_SERVICE_IP
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: tradingstack-hack}
addressType: IPv4
endpoints: [{addresses: ["$(gateway_of 0)"], conditions: {ready: true}}]
ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "\$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "\$VOL_DIR"
---
# Owner of the provisioner's helper pods (see local-path-helper.yaml); never runs a pod itself.
apiVersion: batch/v1
kind: Job
metadata: {name: helper-pods, namespace: local-path-storage}
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{name: none, image: "$HELPER_IMAGE", command: ["true"]}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
YAML

  if ! pgrep -f "^$LINKS/kube-proxy " >/dev/null; then
    start kube-proxy "$LOGS/kube-proxy.log" addons "$BIN/kube-proxy" \
      --kubeconfig "$dir/kube-proxy.kubeconfig" --proxy-mode nftables --hostname-override real-0 \
      --cluster-cidr "$POD_CIDR" --bind-address 127.0.0.1 --healthz-bind-address 127.0.0.1:10256 \
      --metrics-bind-address 127.0.0.1:10249 --conntrack-max-per-core 0
  fi
  cat >"$dir/Corefile" <<COREFILE
.:53 {
    bind $(gateway_of 0)
    errors
    health 127.0.0.1:10254
    ready 127.0.0.1:10253
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/coredns.kubeconfig local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
COREFILE
  if ! pgrep -f "^$LINKS/coredns " >/dev/null; then
    start coredns "$LOGS/coredns.log" addons "$BIN/coredns" -conf "$dir/Corefile"
  fi
  printf '{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["%s"]}]}\n' \
    "$NODE_ROOT/volumes" >"$dir/local-path.json"
  # The helper pods carry a (non-controller) owner reference to the suspended Job above: kwok's default stages
  # complete pods owned by a Job, so on kwok's fake nodes a volume's setup "runs" too and their pods get volumes.
  local owner_uid
  owner_uid="$(kubectl_ -n local-path-storage get job helper-pods -o jsonpath='{.metadata.uid}')"
  cat >"$dir/local-path-helper.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: helper-pod
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: helper-pods, uid: "$owner_uid", controller: false}]
spec:
  priorityClassName: system-node-critical
  tolerations: [{key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}]
  containers:
    - {name: helper-pod, image: "$HELPER_IMAGE", imagePullPolicy: IfNotPresent}
YAML
  if ! pgrep -f "^$LINKS/local-path-provisioner " >/dev/null; then
    start local-path-provisioner "$LOGS/local-path-provisioner.log" addons "$BIN/local-path-provisioner" \
      start --kubeconfig "$dir/local-path.kubeconfig" --namespace local-path-storage \
      --config "$dir/local-path.json" --helper-pod-file "$dir/local-path-helper.yaml" \
      --helper-image "$HELPER_IMAGE" --service-account-name default --provisioner-name rancher.io/local-path
  fi
  wait_until "CoreDNS ready" 60 curl -fsS http://127.0.0.1:10253/ready
  wait_until "kube-proxy healthy" 60 curl -fsS http://127.0.0.1:10256/healthz
  netpol_up "$dir/netpol"
}

netpol_queue_served() { awk -v q="$NETPOL_QUEUE" '$1 == q {found = 1} END {exit !found}' /proc/net/netfilter/nfnetlink_queue; }

# kube-network-policies as a host process, as its DaemonSet would run it (host network, one per node: the real
# nodes share this host's network, so one serves them all). It reads only its in-cluster configuration: a
# ServiceAccount token and the CA at the fixed in-pod path, which a private mount namespace provides (a tmpfs on
# /run there; the host's /run is untouched).
netpol_up() {
  local dir="$1"
  mkdir -p "$dir"
  kubectl_ apply --server-side --field-manager=tradingstack-hack -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: kube-network-policies, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kube-network-policies}
rules:
  - {apiGroups: [""], resources: [pods, namespaces, nodes], verbs: [get, list, watch]}
  - {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kube-network-policies}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-network-policies}
subjects: [{kind: ServiceAccount, name: kube-network-policies, namespace: kube-system}]
YAML
  [ -s "$dir/token" ] || kubectl_ -n kube-system create token kube-network-policies --duration 8760h >"$dir/token"
  cp "$PKI/ca.crt" "$dir/ca.crt"
  netpol_rules_up
  if ! pgrep -f "^$LINKS/kube-network-policies " >/dev/null; then
    ln -sfn "$BIN/kube-network-policies" "$LINKS/kube-network-policies"
    # shellcheck disable=SC2016 # expanded by the inner shell
    start netpol-namespace "$LOGS/kube-network-policies.log" addons "$(command -v unshare)" \
      --mount --propagation private -- sh -c '
        set -e
        mount -t tmpfs -o size=1m,mode=0755 tmpfs /run
        mkdir -p /run/secrets/kubernetes.io/serviceaccount
        cp "$1/token" "$1/ca.crt" /run/secrets/kubernetes.io/serviceaccount/
        export KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$2"
        shift 2
        exec "$@"' netpol "$dir" "$(api_port)" \
      "$LINKS/kube-network-policies" --hostname-override real-0 --nfqueue-id "$NETPOL_QUEUE" --disable-nri \
      --netfilter-bug-1766-fix=false --metrics-bind-address 127.0.0.1:9080
  fi
  wait_until "kube-network-policies serving queue $NETPOL_QUEUE" 60 netpol_queue_served
}

# ---------------------------------------------------------------------------------------------------

owner_check() {
  mkdir -p "$NODE_ROOT"
  local owner=""
  [ -f "$NODE_ROOT/owner" ] && owner="$(cat "$NODE_ROOT/owner")"
  if [ -n "$owner" ] && [ "$owner" != "$STATE" ]; then
    if [ -n "$(our_pids | head -n1)" ]; then
      die "real nodes of another cluster ($owner) are running; stop that one first (CLUSTER_STATE_DIR=$owner hack/cluster.sh down)"
    fi
    log "cleaning up what a cluster of $owner left behind"
    cmd_down
  fi
  echo "$STATE" >"$NODE_ROOT/owner"
}

nodes_up() { # nodes_up INDEX...: the host network, those nodes (unless running) and the add-ons; waits for Ready
  local i
  [ -n "$KWOK_CLUSTER_DIR" ] || die "KWOK_CLUSTER_DIR is not set (hack/cluster.sh up sets it)"
  [ "$(id -u)" = 0 ] || die "real nodes need root (bridges, nft, mounts, cgroups)"
  for b in runc nft iptables-nft unshare openssl curl; do command -v "$b" >/dev/null || die "$b is missing (hack/install-prereqs.sh)"; done
  [ -x /usr/lib/cni/bridge ] || die "CNI plugins missing in /usr/lib/cni (package containernetworking-plugins)"
  owner_check
  net_up
  for i in "$@"; do node_up "$i"; done
  addons_up
  for i in "$@"; do wait_until "node real-$i Ready" 120 node_ready "real-$i"; done
}

node_index() { # real-I -> I
  case "$1" in real-[0-9] | real-[0-9][0-9]) echo "${1#real-}" ;; *) die "not a real node's name: $1 (real-0, real-1, ...)" ;; esac
}

cmd_down() {
  kill_all our_pids
  unmount_under "$NODE_ROOT" "$RUN_ROOT"
  remove_cgroups
  net_down
  # kubelet links container logs here; only links into our node directories are ours
  find /var/log/containers -maxdepth 1 -type l -lname "$NODE_ROOT/*" -delete 2>/dev/null || true
  rm -rf "$RUN_ROOT" "$NODE_ROOT"
}

case "${1:-}" in
  up)
    # shellcheck disable=SC2046 # the indexes 0 .. N-1, one word each
    nodes_up $(seq 0 $((${2:-1} - 1)))
    ;;
  down) cmd_down ;;
  start) nodes_up "$(node_index "${2:?node name}")" ;;
  stop) node_stop "${2:?node name}" ;;
  guard) guard_counters ;;
  *)
    echo "usage: $0 {up N|down|start NAME|stop NAME|guard}" >&2
    exit 2
    ;;
esac
