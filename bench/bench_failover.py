"""Patroni failover on the real node: a writer's pause when the leader is lost or switched over, against the same
loss of a single-instance database.

    python bench/bench_failover.py [--kills 10] [--deletes 20] [--switchovers 10] [--baseline 5]
                                   [--output docs/benchmarks/failover.md]

On the local cluster with its real node (hack/cluster.sh up; images from hack/images.sh), the operator installed
by the chart as its own pod (namespace mode), the e2e module's Patroni stack (tests/e2e/test_patroni.py: three
members, `synchronous: true`, one service on PostgreSQL). A writer in the service's pod commits a numbered row
every ~20 ms through the read-write Service (the injected DATABASE_URL); a checker polls every member's server
every 100 ms for `pg_is_in_recovery()`. Each fault starts once the cluster is settled (one leader, two streaming
replicas, one in sync; the Services and status.postgres on them).

- kill: the leader's container killed from containerd (SIGKILL, no shutdown);
- delete: the leader's pod deleted (the kubelet's stop signal; Patroni releases the lock). Kills and deletes
  alternate, so that each kill meets a container that never crashed before (see the note on CrashLoopBackOff);
- switchover: `tradingstack postgres switchover` (planned);
- baseline: a stack with `instances: 1`, its server's container killed the same way (the kubelet restarts it);
  its pod is deleted after each kill, unmeasured, for the same reason.

The figure is the time from the fault to the first commit acknowledged after the writer's longest pause. After
each fault the commits acknowledged are looked up on the leader: lost ones are counted (synchronous mode: 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.real_node import real_node_cluster  # noqa: E402
from bench.stats import Figures  # noqa: E402
from tests.e2e.helpers import ChartInstaller  # noqa: E402
from tests.e2e.patroni import (  # noqa: E402
    WRITE_BEFORE_SECONDS,
    Ha,
    PrimaryChecker,
    Writer,
    Written,
    cli,
    container_restarts,
    leader_rows,
    pod_uid,
    wait_settled,
)
from tests.e2e.test_patroni import NAME, stack_document  # noqa: E402
from tests.e2e.test_real_containers import Stack, kill_container, pod_ready  # noqa: E402
from tests.fixtures.cluster import Cluster, wait_for  # noqa: E402
from tests.fixtures.operator import wait_for_condition  # noqa: E402
from tradingstack.api import TradingStack  # noqa: E402
from tradingstack.render import patroni  # noqa: E402
from tradingstack.render.common import child_name  # noqa: E402

READY_TIMEOUT = 600


@dataclass
class Fault:
    """One kind of fault, repeated: the writer's recovery after each, the commits lost, what happened."""

    label: str
    seconds: list[float] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)
    lost: int = 0
    acknowledged: int = 0
    outcomes: list[str] = field(default_factory=list)

    def record(self, fault_at: float, written: Written, lost: int, outcome: str) -> None:
        pause, at = written.longest_pause()
        self.seconds.append(at + pause - fault_at)
        self.pauses.append(pause)
        self.lost += lost
        self.acknowledged += len(written.acknowledged)
        self.outcomes.append(outcome)
        print(f"{self.label} {len(self.seconds)}: {self.seconds[-1]:.2f}s, {outcome}, {lost} lost; "
              f"{written.describe()}", flush=True)  # fmt: skip


def tally(outcomes: list[str]) -> str:
    """`outcomes` counted: "3 x ha-postgres-1 promoted, 1 x ha-postgres-0 kept the lead"."""
    return ", ".join(f"{count} x {outcome}" for outcome, count in Counter(outcomes).most_common()) or "none"


def start(installer: ChartInstaller, cluster: Cluster, nodes: list[str], name: str, instances: int) -> Ha:
    """The e2e module's stack with `instances` members in a namespace of its own, Ready."""
    namespace = installer.namespace(name)
    installer.install(namespace, "rbac.scope=namespace", "replicaCount=1")
    document = stack_document(namespace)
    document["spec"]["postgres"]["instances"] = instances
    document["spec"]["postgres"]["synchronous"] = instances > 1
    cluster.apply(document, namespace=namespace)
    wait_for_condition(cluster, namespace, NAME, "Ready", "True", READY_TIMEOUT)
    return Ha(Stack(cluster, namespace, nodes), TradingStack.model_validate(document))


def run_fault(ha: Ha, fault: Fault, inject: Callable[[str], object], moves: bool = False) -> None:
    """One fault of the settled cluster's leader (`inject` returns once the fault is visible) while the writer
    commits and the checker polls; with `moves`, the lead must change."""
    before = wait_settled(ha, f"the cluster settled before {fault.label} {len(fault.seconds) + 1}")
    with PrimaryChecker(ha) as checker, Writer(ha) as writer:
        time.sleep(WRITE_BEFORE_SECONDS)
        fault_at = time.time()
        inject(before.leader)
        after = wait_settled(ha, f"one leader again after {fault.label}", leader_not=before.leader if moves else None)
        time.sleep(WRITE_BEFORE_SECONDS)
        written = writer.stop()
    checker.assert_one_primary()
    lost = len(written.numbers - leader_rows(ha, after, written.run))
    outcome = f"{after.leader} promoted" if after.leader != before.leader else f"{before.leader} kept the lead"
    fault.record(fault_at, written, lost, outcome)


def kill(ha: Ha, pod: str) -> None:
    """The pod's server container killed from containerd; returns once the kubelet restarted it."""
    restarts = container_restarts(ha, pod)
    kill_container(ha.stack, pod, "postgres")
    wait_for(lambda: container_restarts(ha, pod) > restarts, timeout=120, interval=0.5, what=f"{pod} restarted")


def delete(ha: Ha, pod: str) -> None:
    """The pod deleted; returns once the StatefulSet re-created it."""
    uid = pod_uid(ha, pod)
    ha.stack.kubectl("delete", "pod", pod, "--wait=false")
    wait_for(lambda: pod_uid(ha, pod) not in (None, uid), timeout=180, interval=0.5, what=f"{pod} re-created")


def wait_ready(ha: Ha, pod: str, what: str) -> None:
    wait_for(lambda: pod_ready(ha.cluster.kubectl_json("get", "pod", pod, "-n", ha.namespace)),
             timeout=180, interval=0.5, what=what)  # fmt: skip


def baseline_fault(single: Ha, fault: Fault) -> None:
    """The single server's container killed while the writer commits; the kubelet restarts it."""
    pod = f"{child_name(single.model, patroni.COMPONENT)}-0"
    with Writer(single) as writer:
        time.sleep(WRITE_BEFORE_SECONDS)
        fault_at = time.time()
        kill(single, pod)
        wait_ready(single, pod, f"{pod} ready again")
        time.sleep(WRITE_BEFORE_SECONDS)
        written = writer.stop()
    fault.record(fault_at, written, 0, "restarted by the kubelet")
    # Not measured: the pod re-created, so that the next kill meets a container that never crashed (the
    # kubelet's CrashLoopBackOff would delay its restart by 10 s, 20 s, 40 s, ...).
    delete(single, pod)
    wait_ready(single, pod, f"{pod} re-created and ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="leader containers killed (default 10)")
    parser.add_argument("--deletes", type=int, default=20, help="leader pods deleted (default 20)")
    parser.add_argument("--switchovers", type=int, default=10, help="planned switchovers (default 10)")
    parser.add_argument("--baseline", type=int, default=5, help="single-instance server kills (default 5)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "failover.md")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    cluster, nodes = real_node_cluster()
    kills, deletes = Fault("leader container killed (kill -9)"), Fault("leader pod deleted")
    switchovers, baseline = Fault("`tradingstack postgres switchover`"), Fault("baseline: single server killed")
    installer = ChartInstaller(cluster)
    try:
        ha = start(installer, cluster, nodes, "bench-patroni", instances=3)
        # Kill and delete alternate, so each kill meets a container that never crashed in its pod: the deleted
        # leader is the one just killed, and its re-created pod starts without the kubelet's restart backoff.
        for round_ in range(max(args.kills, args.deletes)):
            if round_ < args.kills:
                run_fault(ha, kills, lambda leader: kill(ha, leader))
            if round_ < args.deletes:
                run_fault(ha, deletes, lambda leader: delete(ha, leader), moves=True)
        for _ in range(args.switchovers):
            run_fault(ha, switchovers, lambda _leader: cli(ha, "postgres", "switchover", NAME), moves=True)
        installer.cleanup()
        installer = ChartInstaller(cluster)
        single = start(installer, cluster, nodes, "bench-single", instances=1)
        for _ in range(args.baseline):
            baseline_fault(single, baseline)
    finally:
        installer.cleanup()

    faults = [kills, deletes, switchovers, baseline]
    rows = [Figures(f.label, f.seconds) for f in faults if f.seconds]
    pause_rows = [Figures(f.label, f.pauses) for f in faults if f.pauses]
    ha_faults = [kills, deletes, switchovers]
    lost = sum(f.lost for f in ha_faults)
    acknowledged = sum(f.acknowledged for f in ha_faults)
    moved = sum(not outcome.endswith("kept the lead") for f in ha_faults for outcome in f.outcomes)
    ratio = Figures("", kills.seconds).percentile(95) / Figures("", baseline.seconds).percentile(95)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        f"""## Patroni failover on the real node (real containers)

Command: `.venv/bin/python bench/bench_failover.py --kills {args.kills} --deletes {args.deletes} \
--switchovers {args.switchovers} --baseline {args.baseline}`
Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}, Kubernetes {cluster.version}, real node(s)
{", ".join(nodes)}, the operator as the chart's pod; three members, `synchronous: true`, Patroni's default timings
(ttl {patroni.TTL_SECONDS} s, loop_wait {patroni.LOOP_WAIT_SECONDS} s, retry_timeout {patroni.RETRY_TIMEOUT_SECONDS} s).
1-minute load average at the start / end: {load_at_start:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.

Seconds from the fault to the first commit acknowledged through the read-write Service after the writer's longest
pause (a commit every ~20 ms from the service's pod):

| fault | runs | p50 | p95 | each run |
| --- | --- | --- | --- | --- |
{chr(10).join(r.row() for r in rows)}

The writer's longest pause (seconds between two consecutive acknowledged commits; the figure the switchover goal
is about):

| fault | runs | p50 | p95 | each run |
| --- | --- | --- | --- | --- |
{chr(10).join(r.row() for r in pause_rows)}

**Ratio kill / single-server kill, p95: {ratio:.2f}.** Goal: p95 ≤ 10 s with the default timings (CloudNativePG
documents failover in the order of 10 s); switchover write pause p95 ≤ 2 s.

What happened after the faults: kills {tally(kills.outcomes)}; deletes {tally(deletes.outcomes)}; switchovers
{tally(switchovers.outcomes)}.
Acknowledged commits lost across the {sum(len(f.seconds) for f in ha_faults)} kills, deletes and switchovers
({moved} of which moved the lead): **{lost}** of
{acknowledged} (synchronous mode; every commit the writer saw acknowledged looked up on the leader afterwards).
Never two servers out of recovery at once (the checker's runs of `pg_is_in_recovery() = false` never overlapped).

Which settings decide it: a killed container is restarted by the kubelet, at once or after a restart back-off
(kills of 12 to 14 s met one of 10 s: the kubelet logged `back-off 10s restarting failed container=postgres` for
them, although each was the first crash of its pod; one run of this bench on 2026-12-07 met none, p95 3.05 s,
the next met four), and Patroni, still holding the lock (ttl), restarts its server in place (crash recovery),
unless the lock lapses first; a deleted leader's
Patroni stops its server and releases the lock, and the synchronous standby takes it at its next loop (the
leader key is watched, so within loop_wait); a switchover is one demotion and one promotion. A lost node (no
release) costs up to ttl + loop_wait.

A leader whose container crashes again soon after a crash is another case: the kubelet restarts it only after its
CrashLoopBackOff (10 s, 20 s, 40 s, ... until the container has run 10 minutes), and once that wait passes the
ttl a replica is promoted. Measured on 2026-12-07 by killing the same leader's container every ~30 s (the reason
this bench alternates kills and deletes): 2.06, 14.53, 27.96, 30.99 (a replica promoted), then on the new leader
13.31, 11.71, 27.30, 29.31 (promoted) s; a single server killed the same way, with no replica to take over:
2.28, 13.85, 25.91, 57.76 s.

Where a switchover's pause goes (one switchover traced with the audit log, Patroni's and kube-proxy's logs on
2026-12-07): the leader's fast shutdown takes ~40 ms, but Patroni 3.0.2 looks at `pg_controldata` once a second
while its server stops (`STOP_POLLING_INTERVAL = 1`, a constant), so it releases the leader lock ~1 s after the
writes stopped; the synchronous standby takes the lock and promotes in ~0.1 s and Patroni relabels the pods; the
EndpointSlice follows in ~0.1 s; kube-proxy then reprograms the Service within its `minSyncPeriod` (1 s by
default, and it had just synced for the old leader's removal): 0.4 to 1.5 s. Neither wait is a setting of this
operator. A client that lists the members itself (libpq `target_session_attrs=read-write`) does not wait for
the second: the component test whose writer does so (tests/component/postgres/test_patroni_switchover.py, no
Service between) measures a switchover's pause at p50 1.45 s, p95 1.53 s over 10.
"""
    )
    print(args.output.read_text())


if __name__ == "__main__":
    main()
