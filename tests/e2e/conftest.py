"""e2e fixtures: the operator chart installed for real with helm, the operator running as its own pod from the
image `hack/images.sh` builds, and the stacks' pods running real containers on the cluster's real node.

The cluster, namespace and kubectl plumbing comes from the plugins in tests/fixtures (registered in
tests/conftest.py); this file adds only what is e2e-specific:

``real_node`` (session)
    The names of the Ready nodes that run containers for real (a kubelet with containerd, not kwok). With none
    (a cluster started with CLUSTER_REAL_NODES=0) every e2e test fails saying so: a scenario that cannot run
    is not a pass.
``images`` (session)
    ``hack/images.sh build`` (cached by content: a few seconds when nothing changed) and ``load`` into the real
    nodes, so every pod starts from what this checkout builds.
``chart``
    A factory that ``helm install``s charts/tradingstack-operator (``--wait``: the operator pod is Ready from
    its own probes), and at teardown deletes the stacks left in the watched namespaces, uninstalls every
    release it installed and deletes the namespaces it created, waiting until their pods are gone so that the
    next test has the node's CPU.
``real_containers`` marker
    Every e2e test is marked: it needs ``real_node`` and ``images``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import ChartInstaller, real_nodes
from tests.fixtures.cluster import REPO, Cluster


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> list[str]:
    nodes = real_nodes(cluster)
    if not nodes:
        pytest.fail(
            "no Ready node runs real containers (kubelet + containerd): start the local cluster with its real node "
            "(`make cluster-down cluster`, CLUSTER_REAL_NODES >= 1) or use CLUSTER=kind"
        )
    return nodes


@pytest.fixture(scope="session")
def images(cluster: Cluster, real_node: list[str]) -> None:
    for command in ("build", "load"):
        result = subprocess.run(
            [str(REPO / "hack" / "images.sh"), command],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert result.returncode == 0, f"hack/images.sh {command} failed:\n{result.stderr[-4000:]}"


@pytest.fixture(scope="session")
def network_guard(real_node: list[str]) -> Iterator[None]:
    """After all the real pods of the session: nothing of the pod or Service ranges tried to leave through the
    uplink (hack/node.sh's guard table counts what it drops)."""
    yield
    result = subprocess.run([str(REPO / "hack" / "node.sh"), "guard"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["forward=0", "output=0"], f"the guard dropped traffic: {result.stdout}"


@pytest.fixture(autouse=True)
def _real_containers(request: pytest.FixtureRequest) -> None:
    """The one place that gives a `@pytest.mark.real_containers` test its real node, images and network guard."""
    if request.node.get_closest_marker("real_containers") is not None:
        request.getfixturevalue("images")
        request.getfixturevalue("network_guard")


@pytest.fixture
def chart(cluster: Cluster) -> Iterator[ChartInstaller]:
    installer = ChartInstaller(cluster)
    try:
        yield installer
    finally:
        installer.cleanup()
