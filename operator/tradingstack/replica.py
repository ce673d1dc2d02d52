"""One operator process among several replicas (`tradingstack run --leader-election`): it stands by answering the
liveness probe until it holds the Lease, runs kopf while renewing it, and hands it over on a normal stop.

The decisions are `reconcile.leadership`'s and the Lease loops `reconcile.leader_election`'s; this module wires
them to kopf, the health port and the process's signals and exit code.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from aiohttp import web

from tradingstack.contract import ExitCode
from tradingstack.errors import ApiPermanentError, ApiTemporaryError
from tradingstack.kube.client import FIELD_MANAGER, Kube
from tradingstack.reconcile.leader_election import LeaderElector

log = logging.getLogger(__name__)

Operate = Callable[[asyncio.Event], Awaitable[object]]
"""Runs the operator until the event is set (kopf.operator with that event as its stop_flag)."""


def run_elected(operator_args: dict[str, Any], lease_namespace: str, identity: str, health_port: int) -> int:
    """Runs kopf with `operator_args` only while this replica (`identity`) holds the Lease in `lease_namespace`;
    returns the process's exit code."""
    memo = operator_args["memo"]
    # Both clients (ours and kopf's) name the replica, so the audit log tells the writes of replicas apart.
    memo.user_agent = f"{FIELD_MANAGER}/{identity}"

    async def elect_then_operate() -> int:
        kube = Kube.from_kubeconfig(user_agent=memo.user_agent)
        elector = LeaderElector(kube, lease_namespace, identity)
        memo.may_write = elector.is_leading
        try:
            return await lead_then_operate(
                elector, health_port, lambda stop: kopf.operator(**operator_args, stop_flag=stop)
            )
        finally:
            await kube.close()

    return asyncio.run(elect_then_operate())


async def lead_then_operate(elector: LeaderElector, health_port: int, operate: Operate) -> int:
    """Stand by until the Lease is ours, then operate while renewing it; hand it over on a normal stop."""
    if not await _stand_by(elector, health_port):
        return ExitCode.OK
    stop = asyncio.Event()
    renewing = asyncio.create_task(elector.keep_leading(stop))
    # However renewal ends, by losing the Lease or by an error, the operator must stop: it may no longer lead.
    renewing.add_done_callback(lambda _: stop.set())
    try:
        await operate(stop)
    finally:
        renewing.cancel()
    if renewing.done():
        renewing.result()  # re-raises the error that ended renewal, if any (a lost Lease ends it without one)
    if elector.lost:
        # The kubelet restarts the container, which then stands by until the Lease is free again.
        log.error("lost leadership", extra={"identity": elector.identity, "lease": elector.name})
        return ExitCode.LEADERSHIP_LOST
    await _hand_over(elector)
    return ExitCode.OK


async def _stand_by(elector: LeaderElector, health_port: int) -> bool:
    """Waits for leadership while answering the liveness probe (kopf serves it only once it runs, and a probe
    that fails would have the kubelet kill every standby). False when SIGTERM or SIGINT came first."""
    runner = web.AppRunner(_standby_health_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", health_port).start()  # noqa: S104 - the kubelet probes the pod IP
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, terminated.set)
    leading = asyncio.create_task(elector.wait_for_leadership())
    stopping = asyncio.create_task(terminated.wait())
    try:
        await asyncio.wait({leading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        leading.cancel()
        stopping.cancel()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()  # frees the port for kopf's own liveness endpoint
    if terminated.is_set():
        if elector.is_leading():
            await _hand_over(elector)
        return False
    leading.result()  # an error the elector does not retry ended the wait: it must not pass for leadership
    return True


def _standby_health_app() -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"leader": False, "state": "standby"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


async def _hand_over(elector: LeaderElector) -> None:
    try:
        await elector.release()
    except (ApiTemporaryError, ApiPermanentError) as err:
        log.warning("could not release the Lease (it expires by itself): %s", err)
