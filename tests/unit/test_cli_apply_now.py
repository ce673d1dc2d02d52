"""`tradingstack apply-now STACK --reason TEXT`: the parser, the refusals, and the annotation it sets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from tests.unit.test_cli import run
from tradingstack import ops
from tradingstack.cli import _cmd_apply_now, build_parser
from tradingstack.contract import Annotation
from tradingstack.kube.client import Kube, Obj
from tradingstack.schedule.maintenance import Override, parse_override


def test_the_parser_takes_the_stack_the_reason_and_the_namespace() -> None:
    args = build_parser().parse_args(
        ["apply-now", "quantum-trader", "--reason", "hotfix: venue outage", "-n", "trading"]
    )
    assert (args.stack, args.reason, args.namespace) == ("quantum-trader", "hotfix: venue outage", "trading")
    assert args.handler is _cmd_apply_now
    assert build_parser().parse_args(["apply-now", "qt", "--reason", "x"]).namespace == "default"


def test_a_missing_or_empty_reason_exits_2_without_touching_the_cluster() -> None:
    missing = run("apply-now", "qt")
    assert missing.returncode == 2 and "--reason" in missing.stderr
    empty = run("apply-now", "qt", "--reason", "  ")
    assert empty.returncode == 2 and empty.stderr.strip().startswith("--reason: must not be empty")
    assert "Traceback" not in missing.stderr + empty.stderr


class Stacks:
    """The two calls of the Kube facade that apply-now makes."""

    def __init__(self) -> None:
        self.annotations: dict[str, str] = {}

    async def get_stack(self, namespace: str, name: str) -> Obj | None:
        body: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace}, "spec": {}}
        return body if name == "qt" else None

    async def annotate_stack(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.annotations.update(annotations)


async def test_apply_now_sets_the_annotation_the_operator_parses() -> None:
    kube = Stacks()
    now = datetime(2026, 12, 3, 17, 40, 12, tzinfo=UTC)
    value = await ops.apply_now(cast(Kube, kube), "trading", "qt", " hotfix ", now=now)
    assert value == "2026-12-03T17:40:12Z/hotfix"
    assert kube.annotations == {Annotation.APPLY_NOW: value}
    assert parse_override(value) == Override(now, "hotfix")
    with pytest.raises(ops.OperationError, match="not found"):
        await ops.apply_now(cast(Kube, kube), "trading", "ghost", "x", now=now)
    with pytest.raises(ops.OperationError, match="reason"):
        await ops.apply_now(cast(Kube, kube), "trading", "qt", " ", now=now)
