"""The rollout gate reads a real canary's health document: whole reconcile passes (the in-memory API server of
tests/unit/test_pass.py) with the data plane read, the canary pod's IP being a demo service on 127.0.0.1. A
HEALTHY canary bakes and is promoted; an UNHEALTHY one (its critical PostgreSQL unreachable) is rolled back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from tests.component.health.processes import DemoService, start_demo_service
from tests.component.health.test_health_contract import FAST_CIRCUIT, health
from tests.support import free_port
from tests.unit.test_pass import ApiServer
from tradingstack.api import TradingStackStatus
from tradingstack.contract import PostgresEnv
from tradingstack.kube.actions import Obj
from tradingstack.kube.client import Kube
from tradingstack.reconcile.stack import StackReconciler

pytestmark = pytest.mark.component

T0 = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
CANARY = "qt-api-canary"


def stack(port: int, image: str, generation: int) -> dict[str, Any]:
    return {
        "apiVersion": "trading.quantumtrader.dev/v1alpha1",
        "kind": "TradingStack",
        "metadata": {"name": "qt", "namespace": "trading", "uid": "uid-1", "generation": generation},
        "spec": {
            "services": [{"name": "api", "image": image, "port": port, "rollout": {"bakeSeconds": 30}}],
            "redis": {"enabled": False},
            "postgres": {"enabled": False},
            "gateway": {"enabled": False},
        },
    }


async def at(api: ApiServer, body: dict[str, Any], now: datetime) -> tuple[TradingStackStatus, list[tuple[Any, ...]]]:
    api.calls.clear()
    reconciler = StackReconciler(cast(Kube, api), clock=lambda: now, new_password=lambda: "pw", read_data_plane=True)
    status = await reconciler.reconcile({**body, "status": api.status} if api.status else body)
    return status, list(api.calls)


def add_canary_pod(api: ApiServer) -> None:
    template = api.objects["Deployment", CANARY]["spec"]["template"]["metadata"]
    pod: Obj = {
        "kind": "Pod",
        "metadata": {
            "name": CANARY + "-1",
            "labels": dict(template["labels"]),
            "annotations": dict(template["annotations"]),
            "creationTimestamp": "2026-12-03T14:30:05Z",
        },
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "api", "restartCount": 0, "state": {"running": {}}}],
        },
    }
    api.objects["Pod", pod["metadata"]["name"]] = pod


async def rollout_to(service: DemoService) -> tuple[ApiServer, dict[str, Any]]:
    """A settled stack whose `api` listens on the demo service's port, then a new image: its canary started."""
    api = ApiServer()
    await at(api, stack(service.port, "example/api:1", 1), T0)
    api.settle()
    await at(api, stack(service.port, "example/api:1", 1), T0)
    body = stack(service.port, "example/api:2", 2)
    _, calls = await at(api, body, T0)
    assert ("apply", "Deployment", CANARY) in [c[:3] for c in calls]
    add_canary_pod(api)
    return api, body


async def test_a_healthy_canary_bakes_on_its_health_document_then_is_promoted(tmp_path: Path) -> None:
    service = start_demo_service("api", tmp_path)
    try:
        assert health(service)[1].status == "HEALTHY"
        api, body = await rollout_to(service)
        status, _ = await at(api, body, T0 + timedelta(seconds=5))
        assert status.rollouts["api"].healthy_since == T0 + timedelta(seconds=5)
        assert status.services["api"].health == "UNREACHABLE"  # the canary answers HEALTHY, but not for the service
        status, calls = await at(api, body, T0 + timedelta(seconds=35))
        assert status.rollouts["api"].step == "Promoting"
        assert ("apply", "Deployment", "qt-api") in [c[:3] for c in calls]
    finally:
        service.stop()


async def test_an_unhealthy_canary_is_rolled_back_on_its_health_document(tmp_path: Path) -> None:
    nowhere = f"postgresql://u:p@127.0.0.1:{free_port()}/db"
    service = start_demo_service("api", tmp_path, **{PostgresEnv.URL: nowhere}, **FAST_CIRCUIT)
    try:
        assert health(service)[1].status == "UNHEALTHY"
        api, body = await rollout_to(service)
        status, calls = await at(api, body, T0 + timedelta(seconds=5))
        assert ("delete", "Deployment", CANARY) in calls
        assert ("event", "Warning", "RolloutRolledBack") in calls
        assert "UNHEALTHY" in status.rollouts["api"].message
        degraded = next(c for c in status.conditions if c.type == "Degraded")
        assert degraded.reason == "RolloutRolledBack"
    finally:
        service.stop()
