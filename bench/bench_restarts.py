"""Wall time of an operator restart run of six services against six independent rollouts, in one run.

    python bench/bench_restarts.py [--output docs/benchmarks/restarts.md]

On the local control plane, with the operator running: apply examples/quantum-trader.yaml, wait until Ready,
trigger a restart run (annotation trading.quantumtrader.dev/restart-now) and time it until
status.restarts.lastResult is Succeeded. Baseline on the same stack right after: for each of the six
Deployments in turn, `kubectl rollout restart` then `kubectl rollout status`, summed. The run does more
(health gate, status writes, one service at a time by design), so the ratio is its overhead.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_operator import fresh_namespace  # noqa: E402
from tests.cluster.test_operator import deploy_and_wait_ready, example  # noqa: E402
from tests.cluster.test_restarts import trigger, wait_for_result  # noqa: E402
from tests.fixtures.cluster import BIN_DIR, CLUSTER_SH, KUBECONFIG, Cluster, k8s_version  # noqa: E402
from tests.fixtures.operator import CRD_FILE, OperatorProcess, operator_env  # noqa: E402
from tradingstack.api import DEFAULT_RESTART_ORDER  # noqa: E402
from tradingstack.reconcile.restarts import manual_run_id  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "restarts.md")
    args = parser.parse_args()

    subprocess.run([str(CLUSTER_SH), "up"], check=True, stdin=subprocess.DEVNULL)
    cluster = Cluster(kubeconfig=KUBECONFIG, bin_dir=BIN_DIR, version=k8s_version())
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    namespace = fresh_namespace(cluster, "bench-restarts")
    with tempfile.TemporaryDirectory() as tmp:
        operator = OperatorProcess(namespace, Path(tmp) / "operator.log", operator_env(cluster))
        operator.start()
        try:
            deploy_and_wait_ready(cluster, namespace, example(namespace))
            started = time.perf_counter()
            trigger(cluster, namespace, "bench")
            wait_for_result(cluster, namespace, manual_run_id("bench"), "Succeeded", timeout=600)
            run_seconds = time.perf_counter() - started

            rollouts: dict[str, float] = {}
            for service in DEFAULT_RESTART_ORDER:
                deployment = f"deployment/quantum-trader-{service}"
                started = time.perf_counter()
                cluster.kubectl("rollout", "restart", deployment, "-n", namespace)
                cluster.kubectl("rollout", "status", deployment, "-n", namespace, "--timeout=300s", timeout=320)
                rollouts[service] = time.perf_counter() - started
        finally:
            cluster.kubectl("delete", "ts", "--all", "-n", namespace, "--wait=true", "--timeout=120s")
            operator.stop()
            cluster.kubectl("delete", "namespace", namespace, "--wait=false")

    total = sum(rollouts.values())
    rows = "\n".join(f"| {service} | {seconds:.2f} |" for service, seconds in rollouts.items())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        f"""## Daily restarts: a run of six services

Command: `.venv/bin/python bench/bench_restarts.py`
Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}, local control plane Kubernetes {cluster.version}
(kwok makes new pods ready at once, so these are control-plane and operator times, not application start-up).

| what | seconds |
| --- | --- |
| operator run, trigger to `lastResult: Succeeded` (6 services, one at a time) | {run_seconds:.2f} |
| sum of 6 sequential `kubectl rollout restart` + `rollout status` | {total:.2f} |
| **ratio run / sum** | **{run_seconds / total:.2f}** |

Baseline rollouts:

| service | seconds |
| --- | --- |
{rows}
"""
    )
    print(args.output.read_text())


if __name__ == "__main__":
    main()
