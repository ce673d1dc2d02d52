"""The kill switch on real pods, shared by the e2e test and bench/bench_halt.py.

A halt is judged from outside the operator: the haltable services' pods are gone from the kubelet (no pod of
theirs in phase Running, which a terminating pod keeps until its containers stopped) and a pod that carries
their labels but no Deployment owns (a stuck pod: it ignores the scale-down) cannot open a connection any more.
The stuck pod probes its egress itself, every 100 ms, and logs each change of the answer with the wall clock;
the real node runs on this machine, so its clock is the test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.e2e.helpers import STRANGER_IMAGE
from tests.e2e.test_chart_install import EXAMPLE, STACK, load
from tests.fixtures.cluster import wait_for
from tradingstack.api import TradingStack
from tradingstack.components import render
from tradingstack.contract import Label
from tradingstack.render.common import SENTINEL_PORT, container_security_context, pod_security_context
from tradingstack.render.halt import halt_policy_name
from tradingstack.render.redis import SENTINEL_COMPONENT

if TYPE_CHECKING:
    from tests.e2e.test_real_containers import Stack  # which imports this module

POLL_SECONDS = 0.2
PROBE_SECONDS = 900
"""The stuck pod's probe loop ends by itself after this (loops are bounded)."""
PROBE = f"""
import json, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
last = None
deadline = time.monotonic() + {PROBE_SECONDS}
while time.monotonic() < deadline:
    try:
        socket.create_connection((host, int(port)), timeout=0.3).close()
        ok = True
    except OSError:
        ok = False
    if ok != last:
        print(json.dumps({{"t": time.time(), "ok": ok}}), flush=True)
        last = ok
    time.sleep(0.1)
"""


def haltable_services(stack: Stack) -> list[str]:
    spec = stack.cluster.kubectl_json("get", "tradingstack", STACK, "-n", stack.namespace)["spec"]
    return [s["name"] for s in spec["services"] if s.get("haltable")]


def halt_policy_labels(namespace: str) -> dict[str, str]:
    """Labels of a pod the rendered halt NetworkPolicy selects (rendered for the example stack, halted): its
    matchLabels and, for each `In` expression, the first value (a haltable service's name)."""
    document = load(EXAMPLE, namespace)
    document["spec"]["halt"] = {"reason": "render"}
    example = TradingStack.model_validate(document)
    (policy,) = (
        o for o in render(example, example.owner_reference()) if o["metadata"]["name"] == halt_policy_name(example)
    )
    selector = policy["spec"]["podSelector"]
    labels = dict(selector.get("matchLabels", {}))
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        labels[expression["key"]] = expression["values"][0]
    return labels


def egress_target(stack: Stack) -> str:
    """`host:port` the haltable service may reach while running: a sentinel (execution uses Redis). Under the
    stack's default deny anything the flow table does not list (another service, a stranger) is refused
    already, so only an allowed flow shows the halt cutting it."""
    sentinel = stack.pods(f"{Label.NAME}={SENTINEL_COMPONENT}")[0]
    return f"{sentinel['status']['podIP']}:{SENTINEL_PORT.number}"


def start_stuck_pod(stack: Stack, target: str) -> str:
    """A pod with the halt policy's labels and no owner, probing `target`; returns its name once it runs."""
    name = f"stuck-{uuid.uuid4().hex[:6]}"
    stack.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": stack.namespace, "labels": halt_policy_labels(stack.namespace)},
            "spec": {
                "securityContext": pod_security_context(),
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "probe",
                        "image": STRANGER_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["python3", "-c", PROBE, target],
                        "securityContext": container_security_context(),
                    }
                ],
            },
        }
    )
    stack.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s", timeout=130)
    wait_for(lambda: [ok for _, ok in egress(stack, name)][-1:] == [True], timeout=30, what=f"{name} reaches {target}")
    return name


def egress(stack: Stack, pod: str) -> list[tuple[float, bool]]:
    """Each change of the stuck pod's answer: (wall clock, connected)."""
    lines = stack.kubectl("logs", pod).splitlines()
    return [(entry["t"], entry["ok"]) for entry in map(json.loads, lines)]


def first_change_after(changes: list[tuple[float, bool]], after: float, ok: bool) -> float | None:
    return next((t for t, answer in changes if t >= after and answer is ok), None)


def cli(stack: Stack, *args: str) -> None:
    argv = [sys.executable, "-m", "tradingstack.cli", *args, "-n", stack.namespace]
    subprocess.run(argv, env=stack.cluster.env, check=True, capture_output=True, text=True, timeout=60)


def running_pods(stack: Stack, services: list[str]) -> list[str]:
    selector = f"{Label.COMPONENT} in ({','.join(services)})"
    return [p["metadata"]["name"] for p in stack.pods(selector) if p["status"].get("phase") == "Running"]


@dataclass(frozen=True)
class HaltTiming:
    pods_gone: float
    """From the command to no pod of the haltable services Running (polled every 200 ms)."""
    egress_blocked: float
    """From the command to the stuck pod's first refused connection."""

    @property
    def halted(self) -> float:
        return max(self.pods_gone, self.egress_blocked)


def wait_halted(stack: Stack, services: list[str], stuck: str, started: float, timeout: float) -> HaltTiming:
    """Polls until the services have no Running pod and the stuck pod's egress is refused."""
    pods_gone: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pods_gone is None and not running_pods(stack, services):
            pods_gone = time.time() - started
        blocked = first_change_after(egress(stack, stuck), started, ok=False)
        if pods_gone is not None and blocked is not None:
            return HaltTiming(pods_gone, blocked - started)
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"not halted within {timeout} s: running {running_pods(stack, services)}")


def halt(stack: Stack, services: list[str], stuck: str, reason: str, timeout: float = 120) -> HaltTiming:
    started = time.time()
    cli(stack, "halt", STACK, "--reason", reason)
    return wait_halted(stack, services, stuck, started, timeout)


def resume(stack: Stack, stuck: str, timeout: float = 300) -> float:
    """`tradingstack resume`, until the stack is Ready again and the stuck pod connects; returns the seconds."""
    started = time.time()
    cli(stack, "resume", STACK)

    def resumed() -> bool:
        status = stack.cluster.kubectl_json("get", "tradingstack", STACK, "-n", stack.namespace).get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        reconnected = [ok for _, ok in egress(stack, stuck)][-1:] == [True]
        return conditions.get("Halted") == "False" and conditions.get("Ready") == "True" and reconnected

    wait_for(resumed, timeout=timeout, interval=1, what="the stack Ready again after resume")
    return time.time() - started


def other_pods(stack: Stack, services: list[str]) -> dict[str, int]:
    """Every running pod of the stack but those of `services`, with its containers' restart counts."""
    return {
        name: count
        for name, count in stack.restart_counts().items()
        if not any(name.startswith(f"{STACK}-{service}-") for service in services)
    }
