"""Recorded child objects for the components' observe/assess tests: as the API server returns them, trimmed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradingstack.components.observe import ChildKey, WorkloadState, observe


def workload(kind: str, name: str, ready: int, desired: int = 1, *conditions: dict[str, Any]) -> dict[str, Any]:
    """A Deployment or StatefulSet at generation 1 whose controller has updated every pod; `ready` of them ready."""
    status = {"observedGeneration": 1, "replicas": desired, "updatedReplicas": desired, "readyReplicas": ready,
              "availableReplicas": ready, "conditions": list(conditions)}  # fmt: skip
    return {"kind": kind, "metadata": {"name": name, "generation": 1}, "spec": {"replicas": desired}, "status": status}


def live_workloads(*objects: dict[str, Any]) -> Mapping[ChildKey, WorkloadState]:
    """The workloads as the pass hands them to the components: parsed by `components.observe`."""
    return observe({(o["kind"], o["metadata"]["name"]): o for o in objects}).workloads


DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "stuck"}
