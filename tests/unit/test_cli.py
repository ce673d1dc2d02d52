"""The `tradingstack` command, run as users run it (a subprocess of the installed console script)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tradingstack import ops
from tradingstack.cli import build_parser
from tradingstack.kube.client import Kube

ROOT = Path(__file__).resolve().parents[2]
CLI = shutil.which("tradingstack", path=str(Path(sys.executable).parent)) or "tradingstack"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, check=False)


def test_render_prints_every_component_of_the_example() -> None:
    result = run("render", "-f", str(ROOT / "examples/quantum-trader.yaml"))
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for service in ("ai-engine", "execution", "risk-safety", "portfolio", "rl-training", "monitoring-health"):
        assert ("Deployment", f"quantum-trader-{service}") in kinds
    assert ("StatefulSet", "quantum-trader-redis") in kinds
    assert ("StatefulSet", "quantum-trader-postgres") in kinds
    assert ("CronJob", "quantum-trader-postgres-backup") in kinds
    assert ("Deployment", "quantum-trader-gateway") in kinds
    assert any(k == "PodDisruptionBudget" for k, _ in kinds)
    assert any(k == "NetworkPolicy" for k, _ in kinds)
    sentinel_conf = [
        text
        for o in objects
        if o["kind"] == "ConfigMap"
        for key, text in o.get("data", {}).items()
        if "sentinel" in key and key.endswith(".conf")
    ]
    assert sentinel_conf and "down-after-milliseconds" in sentinel_conf[0]


def test_bad_quorum_exits_non_zero_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: trading.quantumtrader.dev/v1alpha1\nkind: TradingStack\n"
        "metadata: {name: qt}\nspec: {redis: {quorum: 5, sentinels: 3}}\n"
    )
    result = run("render", "-f", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["spec.redis.quorum: must be <= sentinels (3)"]
    assert "Traceback" not in result.stderr


def test_unreadable_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = run("render", "-f", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_crd_command_prints_the_generated_crd() -> None:
    result = run("crd")
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout)["metadata"]["name"] == "tradingstacks.trading.quantumtrader.dev"


def test_halt_and_resume_parse_their_arguments() -> None:
    args = build_parser().parse_args(["halt", "qt", "--reason", "runaway orders", "-n", "trading"])
    assert (args.stack, args.reason, args.namespace, args.requested_by) == ("qt", "runaway orders", "trading", None)
    assert args.handler.__name__ == "_cmd_halt"
    args = build_parser().parse_args(["halt", "qt", "--reason", "x", "--requested-by", "ess"])
    assert (args.namespace, args.requested_by) == ("default", "ess")
    args = build_parser().parse_args(["resume", "qt", "--namespace", "trading"])
    assert (args.stack, args.namespace, args.handler.__name__) == ("qt", "trading", "_cmd_resume")


def test_halt_without_a_reason_is_a_usage_error() -> None:
    result = run("halt", "qt")
    assert result.returncode == 2 and "--reason" in result.stderr and "Traceback" not in result.stderr
    blank = run("halt", "qt", "--reason", "   ")
    assert blank.returncode == 2 and blank.stderr.strip().splitlines() == ["--reason: must not be empty"]
    long = run("halt", "qt", "--reason", "x" * 1025)
    assert long.returncode == 2 and long.stderr.strip().startswith("--reason: at most 1024 characters")


class FakeKube:
    """The Kube methods halt and resume use."""

    def __init__(self, stack: dict[str, Any] | None, who: str | None = "alice@example.com") -> None:
        self.stack = stack
        self.who = who
        self.kubeconfig_user: str | None = "kind-admin"
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    async def get_stack(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.stack

    async def whoami(self) -> str | None:
        return self.who

    async def merge_patch_stack(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append((namespace, name, patch))


def a_stack(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "qt", "namespace": "trading"}, "spec": spec}


async def test_halt_sets_spec_halt_with_who_asked_and_resume_removes_it() -> None:
    kube = FakeKube(a_stack())
    assert await ops.halt_stack(cast(Kube, kube), "trading", "qt", "runaway orders", None) == "alice@example.com"
    assert kube.patches == [
        ("trading", "qt", {"spec": {"halt": {"reason": "runaway orders", "requestedBy": "alice@example.com"}}})
    ]
    kube = FakeKube(a_stack(), who=None)  # no SelfSubjectReview: the kubeconfig's user
    await ops.halt_stack(cast(Kube, kube), "trading", "qt", "r", None)
    assert kube.patches[0][2]["spec"]["halt"]["requestedBy"] == "kind-admin"
    await ops.halt_stack(cast(Kube, kube), "trading", "qt", "r", "ess")  # an explicit --requested-by wins
    assert kube.patches[1][2]["spec"]["halt"]["requestedBy"] == "ess"

    halted = FakeKube(a_stack(halt={"reason": "r"}))
    assert await ops.resume_stack(cast(Kube, halted), "trading", "qt") is True
    assert halted.patches == [("trading", "qt", {"spec": {"halt": None}})]
    running = FakeKube(a_stack())
    assert await ops.resume_stack(cast(Kube, running), "trading", "qt") is False and running.patches == []


async def test_halt_of_a_missing_stack_is_an_operation_error() -> None:
    with pytest.raises(ops.OperationError, match="not found"):
        await ops.halt_stack(cast(Kube, FakeKube(None)), "trading", "qt", "r", None)
