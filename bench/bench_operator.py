"""Operator apply latency against `kubectl apply --server-side` of the same objects, and peak memory.

    python bench/bench_operator.py [--stacks 1 10 100] [--output docs/benchmarks/operator.md]

On the local control plane (hack/cluster.sh), for each count N: `kubectl apply` N TradingStacks (the minimal
example, renamed) into a fresh namespace with the operator running, and time until every child object the
renderer produces for them exists. Baseline, in the same run: `kubectl apply --server-side` of exactly those
rendered objects (owner references removed: their owners do not exist there) into another fresh namespace,
timed until kubectl returns. The operator runs as a subprocess with --no-data-plane-reads (the services cannot be
reached from outside the cluster anyway); its peak RSS (VmHWM) is read after the largest count.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.cluster import (  # noqa: E402
    BIN_DIR,
    CLUSTER_SH,
    FAKE_NODE_POOL,
    KUBECONFIG,
    Cluster,
    k8s_version,
    wait_for,
)
from tests.fixtures.operator import CRD_FILE, OperatorProcess, operator_env  # noqa: E402
from tradingstack.api import TradingStack  # noqa: E402
from tradingstack.components import render  # noqa: E402

MANAGED = "app.kubernetes.io/managed-by=tradingstack-operator"
KINDS = (
    "configmaps,services,statefulsets,deployments,cronjobs,poddisruptionbudgets,networkpolicies,persistentvolumeclaims"
)


def stacks(namespace: str, count: int) -> list[dict[str, Any]]:
    base = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    documents = []
    for index in range(count):
        document = json.loads(json.dumps(base))
        document["metadata"] = {"name": f"bench-{index:03d}", "namespace": namespace}
        documents.append(document)
    return documents


def rendered(documents: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    objects = []
    for document in documents:
        owned = {**document, "metadata": {**document["metadata"], "uid": "bench"}}
        stack = TradingStack.model_validate(owned)
        for obj in render(stack, stack.owner_reference()):
            obj["metadata"].pop("ownerReferences", None)
            obj["metadata"]["namespace"] = namespace
            objects.append(obj)
    return objects


def child_count(cluster: Cluster, namespace: str) -> int:
    return len(cluster.kubectl_json("get", KINDS, "-n", namespace, "-l", MANAGED)["items"])


def fresh_namespace(cluster: Cluster, name: str) -> str:
    cluster.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", "--timeout=300s")
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    # the operator's own work is measured: pods go to kwok's fake nodes, which run nothing
    cluster.kubectl("annotate", "namespace", name, *(f"{key}={value}" for key, value in FAKE_NODE_POOL.items()))
    return name


def measure(cluster: Cluster, operator: OperatorProcess, count: int) -> dict[str, float]:
    namespace = fresh_namespace(cluster, f"bench-operator-{count}")
    documents = stacks(namespace, count)
    expected = sum(
        1 for obj in rendered(documents, namespace) if obj["kind"] not in ("Secret",)
    )  # Secrets are listed separately by the operator and not counted here
    payload = json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})
    started = time.perf_counter()
    cluster.kubectl("apply", "-f", "-", input=payload)
    wait_for(lambda: child_count(cluster, namespace) >= expected, timeout=900, interval=0.2, what="children")
    operator_seconds = time.perf_counter() - started

    baseline_ns = fresh_namespace(cluster, f"bench-kubectl-{count}")
    objects = [o for o in rendered(stacks(baseline_ns, count), baseline_ns) if o["kind"] != "Secret"]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as manifest:
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects}, manifest)
        manifest.flush()
        started = time.perf_counter()
        cluster.kubectl("apply", "--server-side", "--field-manager=bench", "-f", manifest.name, timeout=900)
        kubectl_seconds = time.perf_counter() - started
    return {"objects": float(expected), "operator": operator_seconds, "kubectl": kubectl_seconds}


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "operator.md")
    args = parser.parse_args()

    subprocess.run([str(CLUSTER_SH), "up"], check=True, stdin=subprocess.DEVNULL)
    cluster = Cluster(kubeconfig=KUBECONFIG, bin_dir=BIN_DIR, version=k8s_version())
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "operator.log"
        operator = OperatorProcess(None, log_path, operator_env(cluster), extra_args=["--no-data-plane-reads"])
        operator.start()
        try:
            results = {count: measure(cluster, operator, count) for count in args.stacks}
            assert operator.process is not None
            rss = peak_rss_mib(operator.process.pid)
        finally:
            operator.stop()
            for count in args.stacks:
                for prefix in ("bench-operator", "bench-kubectl"):
                    cluster.kubectl("delete", "namespace", f"{prefix}-{count}", "--ignore-not-found", "--wait=false")

    rows = "\n".join(
        f"| {n} | {int(r['objects'])} | {r['operator']:.2f} | {r['kubectl']:.2f} | {r['operator'] / r['kubectl']:.2f} |"
        for n, r in results.items()
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        f"""## Operator: apply latency and memory

Command: `.venv/bin/python bench/bench_operator.py --stacks {" ".join(map(str, args.stacks))}`
Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({platform.machine()}), local control plane
Kubernetes {cluster.version} with kwok nodes (`{CLUSTER_SH.relative_to(REPO)}`), operator with `--no-data-plane-reads`.

Time from `kubectl apply` of N stacks (examples/minimal.yaml, renamed) until every child object exists, against
`kubectl apply --server-side` of the same rendered objects (without owner references) in the same run.

| stacks | child objects | operator (s) | kubectl --server-side (s) | ratio operator/kubectl |
| --- | --- | --- | --- | --- |
{rows}

Operator peak RSS (VmHWM) after {max(args.stacks)} stacks: **{rss:.0f} MiB**.
"""
    )
    print(args.output.read_text())


if __name__ == "__main__":
    main()
