"""Runs a rendered exporter sidecar as a host process, the way the kubelet starts it in the pod: the container's
command with its env resolved from the manifest (Secret references from the values the test's servers use). Only
the addresses are moved, from the pod's fixed ports to the test's free ones on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.component.health.processes import POLL_INTERVAL, STARTUP_TIMEOUT, http_status, stop
from tests.kubelet import resolved_env
from tests.support import free_port, wait_for
from tradingstack.api import TradingStack
from tradingstack.components import render
from tradingstack.contract import Exporter
from tradingstack.render.common import METRICS_CONTAINER

Secrets = Mapping[tuple[str, str], str]
"""(Secret name, key) -> value."""
Samples = dict[str, list[tuple[dict[str, str], float]]]
"""Metric name -> (labels, value) of each sample."""

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text: str) -> Samples:
    """The samples of a text exposition under the names Prometheus stores (prometheus_client's parser would
    append `_total` to a counter that lacks it, which no query of the dashboard sees)."""
    samples: Samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match[2] or ""))
            samples.setdefault(match[1], []).append((labels, float(match[3])))
    return samples


def rendered_sidecar(stack: TradingStack, statefulset: str) -> dict[str, Any]:
    """The exporter container of the stack's StatefulSet `statefulset`, as the operator renders it."""
    workload = next(
        o
        for o in render(stack, stack.owner_reference())
        if (o["kind"], o["metadata"]["name"]) == ("StatefulSet", statefulset)
    )
    container: dict[str, Any] = next(
        c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == METRICS_CONTAINER
    )
    return container


def moved(value: str, pod_address: str, test_address: str) -> str:
    """`value` with the pod's address of a server replaced by the test's; it must name the pod's address."""
    assert pod_address in value, f"{value!r} does not name {pod_address}"
    return value.replace(pod_address, test_address)


@dataclass
class RunningExporter:
    url: str
    """http://127.0.0.1:<port>: the pod's metrics port, here on a free port."""
    container: dict[str, Any]

    def ready(self) -> bool:
        """What the rendered readiness probe asks."""
        path = self.container["readinessProbe"]["httpGet"]["path"]
        return http_status(f"{self.url}{path}") == 200

    def scrape(self) -> Samples:
        """The samples of the metrics page."""
        with urllib.request.urlopen(f"{self.url}{Exporter.METRICS_PATH}", timeout=30) as response:  # noqa: S310 - loopback
            return parse_samples(response.read().decode())

    def value(self, name: str, **labels: str) -> float:
        """The one sample of `name` whose labels include `labels`."""
        found = [v for sample_labels, v in self.scrape().get(name, []) if labels.items() <= sample_labels.items()]
        assert len(found) == 1, f"{name}{labels}: {found}"
        return found[0]


@contextmanager
def running_sidecar(
    container: dict[str, Any], secrets: Secrets, listen_env: str, moves: Mapping[str, tuple[str, str]], log: Path
) -> Iterator[RunningExporter]:
    """Start the container's command with its resolved env; `listen_env` (the exporter's listen address) on a
    free port of 127.0.0.1, and for each variable of `moves` its pod address replaced by the test's."""
    if shutil.which(container["command"][0]) is None:
        pytest.fail(f"{container['command'][0]} is not installed (hack/install-prereqs.sh)", pytrace=False)
    env = resolved_env(container, secret=lambda name, key: secrets[(name, key)])
    port = free_port()
    env[listen_env] = f"127.0.0.1:{port}"
    for name, (pod_address, test_address) in moves.items():
        env[name] = moved(env[name], pod_address, test_address)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*container["command"], *container.get("args", [])],
            env={"PATH": os.environ["PATH"], **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    exporter = RunningExporter(f"http://127.0.0.1:{port}", container)
    try:
        wait_for(
            exporter.ready, timeout=STARTUP_TIMEOUT, interval=POLL_INTERVAL, what=f"{container['command'][0]} ready"
        )
        yield exporter
    finally:
        stop(process)
