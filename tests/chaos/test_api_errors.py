"""The API server's answers turned into errors on demand under a running operator (tests/fixtures/faulty_api.py,
a TLS-terminating proxy between the operator and the real API server): every request answered 429, then 500,
then every connection dropped, `FAULT_SECONDS` each, with a spec change made as the faults begin. The operator
keeps its process, backs off (its attempts are counted at the proxy), and once the API answers again it applies
the change and settles: a resync writes nothing.

`TRADINGSTACK_CHAOS_FAULT_SECONDS` sizes each fault (default 10 in `make test`; `make chaos` runs 30).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fixtures.cluster import Cluster, wait_for
from tests.fixtures.faulty_api import FaultyApiProxy, Mode
from tests.fixtures.leaders import MINIMAL, deployment_replicas
from tests.fixtures.operator import (
    OPERATOR_ACCOUNT,
    OperatorProcess,
    operator_env,
    wait_for_passes,
    write_requests,
)
from tests.fixtures.reliability import Reliability
from tradingstack.components import listed_kinds, watched_kinds
from tradingstack.handlers import ERROR_BACKOFFS
from tradingstack.reconcile.leadership import Timings

pytestmark = pytest.mark.cluster
FAULTS: tuple[Mode, ...] = ("429", "500", "drop")
FAULT_SECONDS = int(os.environ.get("TRADINGSTACK_CHAOS_FAULT_SECONDS", "10"))


def attempts_bound(seconds: float, mode: Mode) -> float:
    """Requests per minute a backing-off operator may make during `seconds` of errors of `mode`: one pass per retry
    of `ERROR_BACKOFFS` (and the first), each listing every child kind plus a few reads and writes of the stack;
    kopf's watch streams (one per watched child kind, one of the stacks), each retried on the same backoffs (kopf's
    error_backoffs), and once more per attempt on a dropped connection (the HTTP client retries a request whose
    connection closed before any answer); and the leader election's Lease requests every retry period. No backoff
    would be a pass and a watch per answer: tens per second."""
    attempts, waited = 1, 0
    for delay in ERROR_BACKOFFS:
        waited += delay
        if waited > seconds:
            break
        attempts += 1
    per_pass = len(listed_kinds()) + 6  # the stack, its claims, events, status, leadership checks
    streams = (len(watched_kinds()) + 1) * (2 if mode == "drop" else 1)
    lease = seconds / Timings().retry_period.total_seconds() + 1
    return (attempts * (per_pass + streams) + lease) * 60 / seconds


ATTEMPTS_PER_MINUTE = {mode: attempts_bound(FAULT_SECONDS, mode) for mode in FAULTS}
"""Bound on the operator's requests per minute while every one fails: its backoff, not a retry loop."""
WRITES_AFTER_FAULTS = 10


@pytest.fixture
def proxy(cluster: Cluster, tmp_path: Path) -> Iterator[FaultyApiProxy]:
    faulty = FaultyApiProxy(cluster, tmp_path)
    faulty.start()
    try:
        yield faulty
    finally:
        faulty.stop()


@pytest.fixture
def proxied_operator(
    cluster: Cluster, operator_kubeconfig: Path, proxy: FaultyApiProxy, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    account_namespace, account = OPERATOR_ACCOUNT
    token = cluster.kubectl("create", "token", account, "-n", account_namespace, "--duration=2h").stdout.strip()
    env = operator_env(cluster, proxy.kubeconfig(cluster, token, tmp_path / "proxied-kubeconfig"))
    process = OperatorProcess(namespace=namespace, log_path=tmp_path / "operator.log", env=env)
    process.start()
    try:
        yield process
    finally:
        proxy.set_mode("pass")
        cluster.kubectl("delete", "tradingstacks", "--all", "-n", namespace, "--wait=true", "--timeout=90s")
        process.stop()


def test_the_operator_backs_off_through_api_errors_and_converges(
    cluster: Cluster,
    namespace: str,
    proxy: FaultyApiProxy,
    proxied_operator: OperatorProcess,
    reliability: Reliability,
) -> None:
    operator = proxied_operator
    document = yaml.safe_load(MINIMAL.read_text())
    document["metadata"]["namespace"] = namespace
    cluster.apply(document, namespace=namespace)
    wait_for(lambda: deployment_replicas(cluster, namespace), timeout=60, what="the first pass through the proxy")
    wait_for_passes(operator, count=2)
    assert operator.process is not None
    pid = operator.process.pid
    mark = len(cluster.audit_log.read_text().splitlines())

    per_minute: dict[Mode, float] = {}
    for fault in FAULTS:
        before = proxy.faults[fault]
        proxy.set_mode(fault)
        if fault == FAULTS[0]:
            change = '[{"op": "replace", "path": "/spec/services/0/replicas", "value": 3}]'
            cluster.kubectl("patch", "tradingstack", "minimal", "-n", namespace, "--type=json", "-p", change)
        time.sleep(FAULT_SECONDS)
        assert operator.process is not None and operator.process.poll() is None, f"the operator exited on {fault}"
        per_minute[fault] = (proxy.faults[fault] - before) * 60 / FAULT_SECONDS
    proxy.set_mode("pass")
    back = time.monotonic()
    wait_for(lambda: deployment_replicas(cluster, namespace) == 3 or None, timeout=180, interval=0.2,
             what="the change applied once the API answers again")  # fmt: skip
    recovered = time.monotonic() - back
    wait_for_passes(operator, count=3, timeout=120)
    writes = write_requests(cluster.audit_log, namespace, mark)
    settled = len(cluster.audit_log.read_text().splitlines())
    wait_for_passes(operator, count=2, timeout=60)

    assert operator.process is not None and operator.process.pid == pid, "the operator was restarted"
    assert all(rate > 0 for rate in per_minute.values()), f"a fault met no request, so it proved nothing: {per_minute}"
    over = {fault: rate for fault, rate in per_minute.items() if rate > ATTEMPTS_PER_MINUTE[fault]}
    assert not over, f"attempts per minute {per_minute} over the bounds {ATTEMPTS_PER_MINUTE}"
    assert len(writes) <= WRITES_AFTER_FAULTS, writes
    assert not write_requests(cluster.audit_log, namespace, settled), "a resync after the faults wrote"
    rates = ", ".join(
        f"{fault} {rate:.0f}/min (bound {ATTEMPTS_PER_MINUTE[fault]:.0f})" for fault, rate in per_minute.items()
    )
    reliability.record(
        "API errors on demand (TLS proxy in front of the API server)",
        runs=f"{len(FAULTS)} faults of {FAULT_SECONDS} s: every request 429, every one 500, every connection dropped",
        faults="all of the operator's requests fail; a spec change is made as they begin",
        checked="same process; attempts per minute at the proxy; the change applied after; writes; resync writes",
        result=f"operator attempts {rates}; change applied {recovered:.1f} s "
        f"after the API answered; {len(writes)} writes; 0 writes on resync; 0 restarts",
    )
