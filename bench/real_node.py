"""What the real-pod benchmarks share: the local cluster up with its real node(s) and the images loaded."""

from __future__ import annotations

import subprocess

from tests.e2e.helpers import real_nodes
from tests.fixtures.cluster import BIN_DIR, CLUSTER_SH, KUBECONFIG, REPO, Cluster, k8s_version

IMAGES_SH = REPO / "hack" / "images.sh"


def real_node_cluster() -> tuple[Cluster, list[str]]:
    """`hack/cluster.sh up` (a no-op when it is up), `hack/images.sh build` and `load`; the cluster and the names
    of its real nodes. Exits when there is none."""
    subprocess.run([str(CLUSTER_SH), "up"], check=True, stdin=subprocess.DEVNULL)
    subprocess.run([str(IMAGES_SH), "build"], check=True, stdin=subprocess.DEVNULL)
    subprocess.run([str(IMAGES_SH), "load"], check=True, stdin=subprocess.DEVNULL)
    cluster = Cluster(kubeconfig=KUBECONFIG, bin_dir=BIN_DIR, version=k8s_version())
    nodes = real_nodes(cluster)
    if not nodes:
        raise SystemExit("no real node: hack/cluster.sh up starts one (CLUSTER_REAL_NODES=1)")
    return cluster, nodes
