#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine of this kind; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null || need_apt+=(redis-sentinel)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v ip >/dev/null || need_apt+=(iproute2)  # network namespaces of the Redis partition test
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql)
[ -x /usr/lib/postgresql/15/bin/pgbench ] || need_apt+=(postgresql-contrib)
command -v pgbackrest >/dev/null || need_apt+=(pgbackrest) # point-in-time recovery (tests/component/postgres/test_pitr.py)
# Patroni clusters (tests/component/postgres/test_patroni.py): Patroni, and python-etcd for its etcd3 DCS there
[ -x /usr/bin/patroni ] || need_apt+=(patroni)
command -v dumb-init >/dev/null || need_apt+=(dumb-init) # Patroni's first process in its pods (render/patroni.py)
/usr/bin/python3 -c 'import etcd' 2>/dev/null || need_apt+=(python3-etcd)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
# the metrics sidecars' exporters (tests/component/metrics run the binaries the images install)
command -v prometheus-redis-exporter >/dev/null || need_apt+=(prometheus-redis-exporter)
command -v prometheus-postgres-exporter >/dev/null || need_apt+=(prometheus-postgres-exporter)
# the local cluster's real node (hack/node.sh) and the images (hack/images.sh)
command -v runc >/dev/null || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v nft >/dev/null || need_apt+=(nftables)
command -v iptables-nft >/dev/null || need_apt+=(iptables) # the NetworkPolicy queue rule (hack/node.sh)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v buildah >/dev/null || need_apt+=(buildah)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# Debian starts the packaged daemons; the tests start their own on other ports, so stop these.
for svc in redis-server redis-sentinel nginx postgresql prometheus-redis-exporter prometheus-postgres-exporter; do
  service "$svc" stop >/dev/null 2>&1 || true
done

if [ -x hack/cluster.sh ]; then
  hack/cluster.sh build # also kube-score, make audit's Go checker
fi
# checkov, make audit's other checker (tests/unit/test_audit.py runs the audit)
make -s audit-venv
