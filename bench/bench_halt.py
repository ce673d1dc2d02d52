"""The kill switch on the real node: `tradingstack halt` until the haltable services are stopped and cut off,
against the same two steps done by hand with kubectl.

    python bench/bench_halt.py [--runs 10] [--output docs/benchmarks/halt.md]

On the local cluster with its real node (hack/cluster.sh up; images from hack/images.sh), the example stack
with the operator installed by the chart as its own pod (namespace mode). A stuck pod carries the haltable
services' labels but no owner (a scale-down misses it) and probes a service port every 100 ms (tests/e2e/halt.py).

- halt: from `tradingstack halt` to no pod of the haltable services Running (polled every 200 ms) and the
  stuck pod's first refused connection; then `tradingstack resume` until the stack is Ready and the stuck pod
  connects again, before the next run.
- baseline, with the operator scaled to zero: `kubectl scale --replicas=0` of the same Deployments and
  `kubectl apply` of a NetworkPolicy denying their egress, issued at once, until the same two things hold; then
  undone by hand.

The figure is the later of the two moments. The services exit at SIGTERM; their grace period is the rendered
one, so the goal is 2 s plus what they take to stop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.real_node import real_node_cluster  # noqa: E402
from bench.stats import Figures  # noqa: E402
from tests.e2e import halt  # noqa: E402
from tests.e2e.helpers import ChartInstaller  # noqa: E402
from tests.e2e.test_chart_install import STACK  # noqa: E402
from tests.e2e.test_real_containers import Stack, start_example  # noqa: E402
from tests.fixtures.cluster import wait_for  # noqa: E402
from tradingstack.contract import OPERATOR_APP_NAME, Label  # noqa: E402

BASELINE_POLICY = "bench-baseline-halt"


def replicas(stack: Stack, service: str) -> int:
    deployment = stack.cluster.kubectl_json("get", "deployment", f"{STACK}-{service}", "-n", stack.namespace)
    return int(deployment["spec"]["replicas"])


def egress_allow(stack: Stack, service: str) -> dict[str, Any]:
    """The operator's egress allow of `service` as live, ready to be created again (identity fields dropped)."""
    live = stack.cluster.kubectl_json("get", "networkpolicy", f"{STACK}-{service}-egress", "-n", stack.namespace)
    keep = ("name", "namespace", "labels", "ownerReferences")
    return {**live, "metadata": {k: v for k, v in live["metadata"].items() if k in keep}}


def by_hand(stack: Stack, services: list[str], stuck: str) -> float:
    """The baseline: scale-down, deletion of the services' egress allows (policies add up: the deny denies only
    once no allow selects the pods) and the deny policy at once, timed like a halt; then undone."""
    counts = {service: replicas(stack, service) for service in services}
    allows = [egress_allow(stack, service) for service in services]
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": BASELINE_POLICY, "namespace": stack.namespace},
        "spec": {"podSelector": {"matchLabels": halt.halt_policy_labels(stack.namespace)}, "policyTypes": ["Egress"]},
    }
    kubectl = [str(stack.cluster.bin_dir / "kubectl"), "-n", stack.namespace]
    started = time.time()
    scale = subprocess.Popen([*kubectl, "scale", "--replicas=0", *(f"deployment/{STACK}-{s}" for s in services)],
                             env=stack.cluster.env, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run([*kubectl, "delete", "networkpolicy", *(a["metadata"]["name"] for a in allows)],
                   env=stack.cluster.env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(policy), text=True, env=stack.cluster.env,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    if scale.wait() != 0:
        raise SystemExit("kubectl scale failed")
    timing = halt.wait_halted(stack, services, stuck, started, timeout=120)
    stack.kubectl("delete", "networkpolicy", BASELINE_POLICY)
    for allow in allows:
        stack.cluster.apply(allow, namespace=stack.namespace)
    for service, count in counts.items():
        stack.kubectl("scale", f"--replicas={count}", f"deployment/{STACK}-{service}")
        stack.kubectl("rollout", "status", f"deployment/{STACK}-{service}", "--timeout=300s", timeout=310)
    wait_for(lambda: [ok for _, ok in halt.egress(stack, stuck)][-1:] == [True], timeout=60, what="egress back")
    return timing.halted


def set_operator_replicas(stack: Stack, count: int) -> None:
    """The chart's operator Deployment (found by its label) scaled to `count`, and settled."""
    found = stack.cluster.kubectl_json(
        "get", "deployments", "-n", stack.namespace, "-l", f"{Label.NAME}={OPERATOR_APP_NAME}"
    )
    (operator,) = (d["metadata"]["name"] for d in found["items"])
    stack.kubectl("scale", f"--replicas={count}", f"deployment/{operator}")
    stack.kubectl("rollout", "status", f"deployment/{operator}", "--timeout=300s", timeout=310)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="halts and baselines each (default 10)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "halt.md")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    cluster, nodes = real_node_cluster()
    installer = ChartInstaller(cluster)
    halts: list[float] = []
    pods_gone: list[float] = []
    egress_blocked: list[float] = []
    resumes: list[float] = []
    baseline: list[float] = []
    try:
        stack = start_example(installer, "bench-halt", nodes)
        services = halt.haltable_services(stack)
        stuck = halt.start_stuck_pod(stack, halt.egress_target(stack))
        for run in range(args.runs):
            timing = halt.halt(stack, services, stuck, f"bench run {run + 1}")
            halts.append(timing.halted)
            pods_gone.append(timing.pods_gone)
            egress_blocked.append(timing.egress_blocked)
            resumes.append(halt.resume(stack, stuck))
            print(f"halt {run + 1}: pods gone {timing.pods_gone:.2f}s egress blocked {timing.egress_blocked:.2f}s,"
                  f" resumed in {resumes[-1]:.1f}s", flush=True)  # fmt: skip
        set_operator_replicas(stack, 0)
        for run in range(args.runs):
            baseline.append(by_hand(stack, services, stuck))
            print(f"by hand {run + 1}: {baseline[-1]:.2f}s", flush=True)
        set_operator_replicas(stack, 1)
    finally:
        installer.cleanup()

    operator_p95, baseline_p95 = Figures("", halts).percentile(95), Figures("", baseline).percentile(95)
    rows = [Figures("`tradingstack halt` (operator)", halts),
            Figures("of which: no haltable pod Running", pods_gone),
            Figures("of which: the stuck pod's egress refused", egress_blocked),
            Figures("baseline: `kubectl scale --replicas=0` + `kubectl apply` of a deny-egress policy", baseline),
            Figures("`tradingstack resume` until Ready and egress back (operator)", resumes)]  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        f"""## Kill switch on the real node (real containers)

Command: `.venv/bin/python bench/bench_halt.py --runs {args.runs}`
Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}, Kubernetes {cluster.version}, real node(s)
{", ".join(nodes)}, the operator as the chart's pod; haltable: {", ".join(services)}.
1-minute load average at the start / end: {load_at_start:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.

Seconds from the command to no pod of the haltable services Running and a stuck pod with their labels refused
(the later of the two; pods polled every 200 ms, the stuck pod probes every 100 ms):

| what | runs | p50 | p95 | each run |
| --- | --- | --- | --- | --- |
{chr(10).join(r.row() for r in rows)}

**Ratio halt / by hand, p95: {operator_p95 / baseline_p95:.2f}** (medians: {statistics.median(halts):.2f} /
{statistics.median(baseline):.2f} s). Goal: p95 ≤ 2 s plus the services' stop time.
"""
    )
    print(args.output.read_text())


if __name__ == "__main__":
    main()
