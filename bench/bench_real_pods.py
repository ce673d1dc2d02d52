"""The example stack on the real node: start, daily restart run and Redis master loss, each against a baseline.

    python bench/bench_real_pods.py [--rounds 2] [--failovers 10] [--output docs/benchmarks/real-pods.md]

On the local cluster with its real node (hack/cluster.sh up; images from hack/images.sh), the operator installed
by the chart as its own pod (namespace mode), in one run:

- start: `kubectl apply` of examples/quantum-trader.yaml until the stack is Ready, against `kubectl apply` of
  the same rendered objects (and the generated Secrets) into a fresh namespace until every pod they make is
  Ready. Rounds alternate (operator, raw, operator, raw, ...); each is torn down, claims included, first.
- restarts: a restart run of the six services (trigger to `lastResult: Succeeded`) against the sum of six
  sequential `kubectl rollout restart` + `rollout status` of the same Deployments.
- Redis: a writer in a pod (SentinelRedisClient, WAIT 1 500, a write every 20 ms) runs while the master pod is
  deleted (graceful: its preStop pauses writes and hands over) or its container is killed from containerd
  (kill -9); the figure is the time from the delete/kill to the first acknowledged write after the longest
  gap in the writer's acknowledgements. Each fault starts once the previous failover is complete and
  followed (status and label) and every sentinel is quiet again (no o_down or failover in progress). The
  floor of a kill is the sentinels' down-after (5 s by default); a graceful handover has none.
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.real_node import real_node_cluster  # noqa: E402
from bench.stats import Figures  # noqa: E402
from tests.cluster.test_restarts import trigger, wait_for_result  # noqa: E402
from tests.e2e.helpers import ChartInstaller  # noqa: E402
from tests.e2e.test_chart_install import EXAMPLE, READY_TIMEOUT, STACK, load  # noqa: E402
from tests.e2e.test_real_containers import (  # noqa: E402
    Stack,
    kill_container,
    master,
    wait_sentinels_quiet,
    wait_single_master_followed,
)
from tests.fixtures.cluster import Cluster, wait_for  # noqa: E402
from tests.fixtures.operator import wait_for_condition  # noqa: E402
from tradingstack.api import DEFAULT_RESTART_ORDER, TradingStack  # noqa: E402
from tradingstack.components import render  # noqa: E402
from tradingstack.reconcile.restarts import manual_run_id  # noqa: E402
from tradingstack.render.secrets import generated_secrets  # noqa: E402

WRITER = """
import json, sys, time
from tradingstack.redisclient import RedisUnavailableError, SentinelRedisClient, WriteNotAcknowledgedError
client = SentinelRedisClient.from_env(failover_grace_seconds=120, failover_retry_seconds=0.05)
acknowledged, deadline, i = [], time.monotonic() + {seconds}, 0
while time.monotonic() < deadline:
    i += 1
    try:
        client.write_confirmed(f"bench:{{i}}", str(i), replicas=1, timeout_ms=500)
        acknowledged.append(time.time())
    except (WriteNotAcknowledgedError, RedisUnavailableError):
        time.sleep(0.05)
    time.sleep(0.02)
print(json.dumps(acknowledged))
"""
WRITE_SECONDS = 30
FAULT_AFTER_SECONDS = 5


def joined(seconds: list[float], digits: int) -> str:
    return ", ".join(f"{s:.{digits}f}" for s in seconds)


def pods_ready(cluster: Cluster, namespace: str, expected: int) -> bool:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    ready = [
        p for p in pods
        if p["status"].get("phase") == "Running"
        and {c["type"]: c["status"] for c in p["status"].get("conditions", [])}.get("Ready") == "True"
    ]  # fmt: skip
    return len(ready) >= expected


def rendered_objects(namespace: str) -> tuple[list[dict[str, Any]], int]:
    """The example's children as plain objects (no owner), its generated Secrets first; and the pods they run."""
    metadata = {"name": STACK, "namespace": namespace, "uid": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "generation": 1}
    stack = TradingStack.model_validate({**load(EXAMPLE, namespace), "metadata": metadata})
    objects = generated_secrets(stack, stack.owner_reference(), lambda: "bench-password")
    objects += render(stack, stack.owner_reference())
    for obj in objects:
        obj["metadata"].pop("ownerReferences", None)
    pods = sum(int(o["spec"].get("replicas", 1)) for o in objects if o["kind"] in ("Deployment", "StatefulSet"))
    return objects, pods


def teardown(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("delete", "tradingstacks", "--all", "-n", namespace, "--wait=true", "--timeout=180s", timeout=200)
    kinds = "deployments,statefulsets,services,configmaps,poddisruptionbudgets,networkpolicies,cronjobs,jobs"
    cluster.kubectl("delete", kinds, "-l", f"trading.quantumtrader.dev/stack={STACK}", "-n", namespace,
                    "--wait=true", "--timeout=180s", timeout=200)  # fmt: skip
    cluster.kubectl("delete", "pvc", "--all", "-n", namespace, "--wait=true", "--timeout=180s", timeout=200)
    cluster.kubectl("delete", "secrets", "-l", f"trading.quantumtrader.dev/stack={STACK}", "-n", namespace)
    wait_for(lambda: not cluster.kubectl_json("get", "pods", "-n", namespace)["items"] or only_operator(
        cluster, namespace), timeout=240, interval=2, what=f"pods of {namespace} gone")  # fmt: skip


def only_operator(cluster: Cluster, namespace: str) -> bool:
    pods = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
    return all("tradingstack-operator" in p["metadata"]["name"] for p in pods)


def start_with_operator(cluster: Cluster, namespace: str) -> float:
    document = load(EXAMPLE, namespace)
    document["spec"]["deletionPolicy"] = "Delete"
    started = time.perf_counter()
    cluster.apply(document, namespace=namespace)
    wait_for_condition(cluster, namespace, STACK, "Ready", "True", READY_TIMEOUT)
    return time.perf_counter() - started


def start_raw(cluster: Cluster, namespace: str) -> float:
    objects, pods = rendered_objects(namespace)
    started = time.perf_counter()
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                           "items": objects}))  # fmt: skip
    wait_for(lambda: pods_ready(cluster, namespace, pods), timeout=READY_TIMEOUT, interval=0.5, what="raw pods Ready")
    return time.perf_counter() - started


def restart_run(cluster: Cluster, namespace: str) -> tuple[float, float]:
    started = time.perf_counter()
    trigger(cluster, namespace, "bench")
    wait_for_result(cluster, namespace, manual_run_id("bench"), "Succeeded", timeout=900)
    run_seconds = time.perf_counter() - started
    raw = 0.0
    for service in DEFAULT_RESTART_ORDER:
        deployment = f"deployment/{STACK}-{service}"
        started = time.perf_counter()
        cluster.kubectl("rollout", "restart", deployment, "-n", namespace)
        cluster.kubectl("rollout", "status", deployment, "-n", namespace, "--timeout=300s", timeout=320)
        raw += time.perf_counter() - started
    return run_seconds, raw


def recovery_seconds(acknowledged: list[float], fault_at: float) -> float:
    """Fault → the first acknowledgement after the longest gap between acknowledgements that follows it."""
    after = [t for t in acknowledged if t >= fault_at]
    previous = [fault_at, *after[:-1]]
    gaps = [(t - p, t) for p, t in zip(previous, after, strict=True)]
    return max(gaps)[1] - fault_at


def delete_pod(stack: Stack, pod: str) -> None:
    stack.kubectl("delete", "pod", pod, "--wait=false")


def failover(stack: Stack, fault: Callable[[str], None]) -> float:
    client = stack.service_pods("risk-safety")[0]["metadata"]["name"]
    wait_sentinels_quiet(stack)  # each fault meets the same starting state
    writer = subprocess.Popen(
        [str(stack.cluster.bin_dir / "kubectl"), "--kubeconfig", str(stack.cluster.kubeconfig), "-n",
         stack.namespace, "exec", client, "--", "python3", "-c", WRITER.format(seconds=WRITE_SECONDS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(FAULT_AFTER_SECONDS)
        old = master(stack)
        fault_at = time.time()
        fault(old)
        out, err = writer.communicate(timeout=WRITE_SECONDS + 60)
    finally:
        if writer.poll() is None:
            writer.kill()
    if writer.returncode != 0:
        raise RuntimeError(f"writer failed: {err}")
    seconds = recovery_seconds(json.loads(out.strip().splitlines()[-1]), fault_at)
    wait_single_master_followed(stack, old, "after the fault", failed_over=False)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="start rounds per variant (default 2)")
    parser.add_argument("--failovers", type=int, default=10, help="Redis faults per kind (default 10)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "real-pods.md")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    cluster, nodes = real_node_cluster()
    installer = ChartInstaller(cluster)
    starts: dict[str, list[float]] = {"operator": [], "raw": []}
    try:
        namespace = installer.namespace("bench-real")
        raw_namespace = installer.namespace("bench-raw")
        installer.install(namespace, "rbac.scope=namespace")
        for ns in (namespace, raw_namespace):
            cluster.kubectl("-n", ns, "create", "secret", "generic", "exchange-credentials",
                            "--from-literal=api-key=bench")  # fmt: skip
        for round_ in range(args.rounds):
            starts["raw"].append(start_raw(cluster, raw_namespace))
            teardown(cluster, raw_namespace)
            starts["operator"].append(start_with_operator(cluster, namespace))
            print(f"start round {round_ + 1}: operator {starts['operator'][-1]:.1f}s raw {starts['raw'][-1]:.1f}s")
            if round_ + 1 < args.rounds:
                teardown(cluster, namespace)
        run_seconds, raw_seconds = restart_run(cluster, namespace)
        print(f"restarts: run {run_seconds:.1f}s raw {raw_seconds:.1f}s", flush=True)
        stack = Stack(cluster, namespace, nodes)
        graceful, killed = [], []
        for run in range(args.failovers):
            graceful.append(failover(stack, lambda pod: delete_pod(stack, pod)))
            print(f"graceful {run + 1}: {graceful[-1]:.2f}s", flush=True)
        for run in range(args.failovers):
            killed.append(failover(stack, lambda pod: kill_container(stack, pod, "redis")))
            print(f"kill -9 {run + 1}: {killed[-1]:.2f}s", flush=True)
    finally:
        installer.cleanup()

    operator_start, raw_start = statistics.median(starts["operator"]), statistics.median(starts["raw"])
    op_runs, raw_runs = joined(starts["operator"], 1), joined(starts["raw"], 1)
    command = f"python bench/bench_real_pods.py --rounds {args.rounds} --failovers {args.failovers}"
    redis = [Figures("master pod deleted (graceful, preStop hands over)", graceful),
             Figures("master container killed (kill -9 from containerd)", killed)]  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        f"""## The example stack on the real node (real containers)

Command: `.venv/bin/{command}`
Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}, Kubernetes {cluster.version}, real node(s)
{", ".join(nodes)} (containerd, images of `make images`), the operator as the chart's pod.
1-minute load average at the start / end: {load_at_start:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.

| what | seconds (median of {args.rounds}) | runs |
| --- | --- | --- |
| example stack: `kubectl apply` of the TradingStack until Ready | {operator_start:.1f} | {op_runs} |
| baseline: `kubectl apply` of the rendered objects until all their pods are Ready | {raw_start:.1f} | {raw_runs} |
| **ratio operator / baseline** (goal ≤ 1.1) | **{operator_start / raw_start:.2f}** | |
| restart run of six services, trigger to `lastResult: Succeeded` | {run_seconds:.1f} | 1 |
| baseline: six sequential `kubectl rollout restart` + `rollout status` | {raw_seconds:.1f} | 1 |
| **ratio run / baseline** (goal ≤ 1.2) | **{run_seconds / raw_seconds:.2f}** | |

Redis master loss → first WAIT-acknowledged write of a client in a pod (seconds):

| fault | runs | p50 | p95 | each run |
| --- | --- | --- | --- | --- |
{chr(10).join(f.row() for f in redis)}

Sentinel's down-after is 5 s (the default), the floor of a kill; the kill runs follow each other without a
settle. No stock-Sentinel deployment runs on the real node, so the stock comparison stays the host-process one
in the Redis section below.
"""
    )
    print(args.output.read_text())


if __name__ == "__main__":
    main()
