"""The leader of two operators killed with SIGKILL round after round (real API server, kwok nodes): each time the
standby takes over within the lease, its first completed pass applies a spec change made after the kill, the
killed one comes back as the standby, and across every round the two operators' writes never overlap in time.

Sized by `TRADINGSTACK_CHAOS_TAKEOVERS` (default 3 in `make test`; `make chaos` runs 10). The figure is the time
from the kill to the standby's first completed pass (its pass counter, polled every 200 ms).
"""

from __future__ import annotations

import itertools
import os
import time
from functools import partial

import pytest
import yaml
from bench.stats import percentile

from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.leaders import (
    IDENTITIES,
    LEASE_SECONDS,
    MINIMAL,
    PASSES,
    TAKEOVER_TIMEOUT,
    deployment_replicas,
    holder,
    timed_writes,
)
from tests.fixtures.operator import OperatorProcess
from tests.fixtures.reliability import Reliability

pytestmark = pytest.mark.cluster
TAKEOVERS = int(os.environ.get("TRADINGSTACK_CHAOS_TAKEOVERS", "3"))


def test_every_leader_kill_is_taken_over_by_the_standby_within_the_lease(
    cluster: Cluster, namespace: str, operators: dict[str, OperatorProcess], reliability: Reliability
) -> None:
    mark = len(cluster.audit_log.read_text().splitlines())
    document = yaml.safe_load(MINIMAL.read_text())
    document["metadata"]["namespace"] = namespace
    cluster.apply(document, namespace=namespace)
    wait_for(lambda: deployment_replicas(cluster, namespace), timeout=60, what="the first leader's first pass")

    takeovers: list[float] = []
    for round_ in range(TAKEOVERS):
        leader = wait_for(lambda: holder(cluster, namespace), timeout=TAKEOVER_TIMEOUT, what="a leader in the Lease")
        (standby,) = [identity for identity in IDENTITIES if identity != leader]
        assert operators[standby].metric(PASSES) == 0, f"round {round_}: the standby {standby} reconciled"
        killed = time.monotonic()
        operators[leader].kill()
        replicas = 3 if round_ % 2 == 0 else 2
        change = f'[{{"op": "replace", "path": "/spec/services/0/replicas", "value": {replicas}}}]'
        cluster.kubectl("patch", "tradingstack", "minimal", "-n", namespace, "--type=json", "-p", change)
        wait_for(partial(operators[standby].metric, PASSES), timeout=TAKEOVER_TIMEOUT, interval=0.2,
                 what=f"round {round_}: {standby}'s first completed pass")  # fmt: skip
        takeovers.append(time.monotonic() - killed)
        assert holder(cluster, namespace) == standby
        assert deployment_replicas(cluster, namespace) == replicas, f"round {round_}: the first pass missed the change"
        operators[leader].start()  # back, as the standby

    writes = sorted(timed_writes(cluster.audit_log, namespace, mark), key=lambda w: w["received"])
    switches = sum(1 for before, after in itertools.pairwise(writes) if before["identity"] != after["identity"])
    assert switches <= TAKEOVERS, f"the writers alternated {switches} times in {TAKEOVERS} takeovers"
    for before, after in itertools.pairwise(writes):
        if before["identity"] != after["identity"]:
            assert before["completed"] < after["received"], f"overlapping writes: {before} and {after}"
    assert all(seconds <= TAKEOVER_TIMEOUT for seconds in takeovers), takeovers
    runs = ", ".join(f"{s:.1f}" for s in takeovers)
    reliability.record(
        "operator leader killed (kill -9), standby takes over",
        runs=f"{TAKEOVERS} takeovers of 2 operators with a {LEASE_SECONDS} s Lease",
        faults="SIGKILL of the Lease holder, then a spec change; the killed one restarts as the standby",
        checked="the standby's first completed pass applies the change; writes by the two never overlap (audit log)",
        result=f"kill → first completed pass p50 {percentile(takeovers, 50):.1f} s, "
        f"p95 {percentile(takeovers, 95):.1f} s ({runs}); {len(writes)} writes, {switches} writer switches, 0 overlaps",
    )
