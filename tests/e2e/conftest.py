"""e2e fixtures: the operator chart installed for real with helm, the operator run under the chart's identity.

The cluster, namespace and operator-process plumbing comes from the plugins in tests/fixtures (registered in
tests/conftest.py); this file adds only what is e2e-specific:

``chart``
    A factory that ``helm install``s charts/tradingstack-operator into a namespace (CRDs from the chart's
    ``crds/``), and at teardown deletes whatever TradingStacks are left in the watched namespaces, uninstalls
    every release it installed and deletes the namespaces it created.
``operator_as``
    A factory that starts ``tradingstack run`` as a local process with a kubeconfig carrying a token of the
    chart's ServiceAccount (``kubectl create token``), so the chart's RBAC is exactly what the operator has.
``kind`` marker
    Tests marked ``@pytest.mark.kind`` need real containers; one autouse fixture below skips them, with the
    reason, unless the cluster is kind (``CLUSTER=kind`` or a node whose providerID is ``kind://...``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import ChartInstaller, Release, is_kind
from tests.fixtures.cluster import Cluster
from tests.fixtures.operator import OperatorProcess, operator_env, token_kubeconfig


@pytest.fixture(scope="session")
def cluster_is_kind(cluster: Cluster) -> bool:
    return is_kind(cluster)


@pytest.fixture(autouse=True)
def _skip_kind_only_elsewhere(request: pytest.FixtureRequest) -> None:
    """The one place that decides whether a `@pytest.mark.kind` scenario runs."""
    if request.node.get_closest_marker("kind") is None:
        return
    if not request.getfixturevalue("cluster_is_kind"):
        pytest.skip(
            "needs real containers (Redis/Postgres processes in pods): runs on kind only "
            "(`make e2e-kind`, CLUSTER=kind); this cluster is kwok-based and no container really runs"
        )


@pytest.fixture
def chart(cluster: Cluster) -> Iterator[ChartInstaller]:
    installer = ChartInstaller(cluster)
    try:
        yield installer
    finally:
        installer.cleanup()


@pytest.fixture
def operator_as(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[[Release, str], OperatorProcess]]:
    """Starts the operator locally as the release's ServiceAccount, watching `namespaces` (a kopf pattern)."""
    started: list[OperatorProcess] = []

    def start(release: Release, namespaces: str) -> OperatorProcess:
        index = len(started)
        kubeconfig = token_kubeconfig(
            cluster, release.namespace, release.service_account, tmp_path / f"kubeconfig-{index}"
        )
        process = OperatorProcess(
            namespace=namespaces, log_path=tmp_path / f"operator-{index}.log", env=operator_env(cluster, kubeconfig)
        )
        started.append(process)
        process.start()
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()
