"""etcd and the whole control plane stopped under a running operator, then started again with their state (real
API server, kwok nodes): the operator rides the outage out in the same process, its first completed pass after
the API answers again applies a spec change made at that moment, and the retries cause no write storm.

Sized by `TRADINGSTACK_CHAOS_OUTAGES` (default 1 in `make test`; `make chaos` runs 5), each `OUTAGE_SECONDS`
long. The figure is the time from the API server answering again to the change applied by the operator.
"""

from __future__ import annotations

import os
import time
from functools import partial

import pytest
import yaml
from bench.stats import percentile

from tests.fixtures.cluster import Cluster, cluster_sh, wait_for
from tests.fixtures.leaders import MINIMAL, deployment_replicas
from tests.fixtures.operator import OperatorProcess, wait_for_passes, write_requests
from tests.fixtures.reliability import Reliability

pytestmark = pytest.mark.cluster
OUTAGES = int(os.environ.get("TRADINGSTACK_CHAOS_OUTAGES", "1"))
OUTAGE_SECONDS = 20
"""Longer than the operator's resync (3 s here) and its watch timeouts, so every client of it sees the outage."""
WRITES_AFTER_OUTAGE = 10
"""The change is one Deployment patch and a status write (plus Events); a write storm would be many more."""


def api_answers(cluster: Cluster) -> bool:
    return cluster.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def applied(cluster: Cluster, namespace: str, replicas: int) -> bool:
    return deployment_replicas(cluster, namespace) == replicas


def test_the_operator_rides_out_a_control_plane_outage_without_a_restart(
    cluster: Cluster, namespace: str, operator: OperatorProcess, reliability: Reliability
) -> None:
    document = yaml.safe_load(MINIMAL.read_text())
    document["metadata"]["namespace"] = namespace
    cluster.apply(document, namespace=namespace)
    wait_for(lambda: deployment_replicas(cluster, namespace), timeout=60, what="the first pass")
    # Settled first: an outage in the middle of the first pass leaves the rest of its creations to the next pass,
    # which are not retries (make chaos's first outage met the first pass halfway: 12 NetworkPolicies created).
    wait_for_passes(operator, count=2, timeout=120)
    assert operator.process is not None
    pid = operator.process.pid

    recoveries: list[float] = []
    writes: list[int] = []
    for outage in range(OUTAGES):
        cluster_sh("control-plane", "stop")
        time.sleep(OUTAGE_SECONDS)
        assert operator.process is not None and operator.process.poll() is None, "the operator exited in the outage"
        cluster_sh("control-plane", "start")
        wait_for(lambda: api_answers(cluster), timeout=120, interval=0.2, what="the API server answering again")
        back = time.monotonic()
        mark = len(cluster.audit_log.read_text().splitlines())
        replicas = 3 if outage % 2 == 0 else 2
        change = f'[{{"op": "replace", "path": "/spec/services/0/replicas", "value": {replicas}}}]'
        cluster.kubectl("patch", "tradingstack", "minimal", "-n", namespace, "--type=json", "-p", change)
        wait_for(partial(applied, cluster, namespace, replicas), timeout=180, interval=0.2,
                 what=f"outage {outage}: the change applied after the API came back")  # fmt: skip
        recoveries.append(time.monotonic() - back)
        wait_for_passes(operator, count=3, timeout=120)  # then settled: resyncs write nothing
        writes.append(len(write_requests(cluster.audit_log, namespace, mark)))
        assert writes[-1] <= WRITES_AFTER_OUTAGE, write_requests(cluster.audit_log, namespace, mark)

    assert operator.process is not None and operator.process.pid == pid and operator.process.poll() is None
    runs = ", ".join(f"{s:.1f}" for s in recoveries)
    reliability.record(
        "control plane (etcd, kube-apiserver, controllers) stopped and started under the operator",
        runs=f"{OUTAGES} outage(s) of {OUTAGE_SECONDS} s",
        faults="every control-plane process stopped (kwokctl stop cluster), then started with its state",
        checked="same operator process throughout; a spec change made when the API answers is applied; writes after",
        result=f"API back → change applied p50 {percentile(recoveries, 50):.1f} s, "
        f"p95 {percentile(recoveries, 95):.1f} s ({runs}); writes per recovery {writes} (bound {WRITES_AFTER_OUTAGE}); "
        "0 operator restarts",
    )
