"""One replica under leader election (`replica.lead_then_operate`): a fake elector decides when leadership comes
and goes, a fake operator stands in for kopf, and the standby's liveness probe is asked over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import pytest

from tests.support import free_port
from tradingstack.contract import ExitCode
from tradingstack.errors import ApiTemporaryError
from tradingstack.reconcile.leader_election import LeaderElector
from tradingstack.reconcile.leadership import LEASE_NAME
from tradingstack.replica import lead_then_operate

DEADLINE = 10.0
"""Seconds any one step may take; far more than each needs, so only a hang reaches it."""


@dataclass
class FakeElector:
    """The part of `LeaderElector` a replica uses; the test says when leadership comes and when it is lost."""

    identity: str = "replica-a"
    name: str = LEASE_NAME
    lost: bool = False
    leading: bool = False
    elected: asyncio.Event = field(default_factory=asyncio.Event)
    leadership_lost: asyncio.Event = field(default_factory=asyncio.Event)
    election_error: Exception | None = None
    renewal_error: Exception | None = None
    release_error: Exception | None = None
    released: bool = False
    renewal_cancelled: bool = False

    def is_leading(self) -> bool:
        return self.leading

    async def wait_for_leadership(self) -> None:
        await self.elected.wait()
        if self.election_error is not None:
            raise self.election_error
        self.leading = True

    async def keep_leading(self, stop: asyncio.Event) -> None:
        try:
            await self.leadership_lost.wait()
        except asyncio.CancelledError:
            self.renewal_cancelled = True
            raise
        if self.renewal_error is not None:
            raise self.renewal_error
        self.leading = False
        self.lost = True
        stop.set()

    async def release(self) -> None:
        self.leading = False
        if self.release_error is not None:
            raise self.release_error
        self.released = True


@dataclass
class FakeOperator:
    """Stands in for kopf.operator: runs until its stop flag is set, or until the test makes it exit by itself
    (as kopf does on SIGTERM)."""

    health_port: int
    started: asyncio.Event = field(default_factory=asyncio.Event)
    exit: asyncio.Event = field(default_factory=asyncio.Event)
    health_port_was_free: bool = False
    stopped_by_flag: bool = False

    async def __call__(self, stop: asyncio.Event) -> None:
        self.health_port_was_free = _bindable(self.health_port)
        self.started.set()
        stopping = asyncio.create_task(stop.wait())
        exiting = asyncio.create_task(self.exit.wait())
        await asyncio.wait({stopping, exiting}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        exiting.cancel()
        self.stopped_by_flag = stop.is_set()


def _bindable(port: int) -> bool:
    """Whether kopf could serve its own liveness endpoint on the port now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))  # noqa: S104 - where kopf's liveness endpoint listens
        except OSError:
            return False
    return True


def start(elector: FakeElector, operator: FakeOperator) -> asyncio.Task[int]:
    return asyncio.create_task(lead_then_operate(cast(LeaderElector, elector), operator.health_port, operator))


async def stopped(replica: asyncio.Task[int]) -> None:
    """Cancels a replica and waits until it has cleaned up (the standby's port and signal handlers)."""
    replica.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(replica, DEADLINE)


async def probe(port: int) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as response:
        return response.status, await response.json()


async def standby_probe(port: int) -> tuple[int, Any]:
    """The first answer of the liveness probe once the standby listens."""
    async with asyncio.timeout(DEADLINE):
        while True:
            try:
                return await probe(port)
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)


async def leading_replica() -> tuple[FakeElector, FakeOperator, asyncio.Task[int]]:
    """A replica that stood by, was elected and now runs the operator."""
    elector, operator = FakeElector(), FakeOperator(free_port())
    replica = start(elector, operator)
    await standby_probe(operator.health_port)
    elector.elected.set()
    await asyncio.wait_for(operator.started.wait(), DEADLINE)
    return elector, operator, replica


async def test_the_operator_starts_only_once_the_lease_is_ours() -> None:
    elector, operator = FakeElector(), FakeOperator(free_port())
    replica = start(elector, operator)
    await standby_probe(operator.health_port)
    await asyncio.sleep(0.1)  # room for an operator started too early to show
    assert not operator.started.is_set()

    elector.elected.set()
    await asyncio.wait_for(operator.started.wait(), DEADLINE)
    operator.exit.set()
    assert await asyncio.wait_for(replica, DEADLINE) == ExitCode.OK


async def test_a_standby_answers_the_liveness_probe_with_the_standby_document() -> None:
    elector, operator = FakeElector(), FakeOperator(free_port())
    replica = start(elector, operator)

    assert await standby_probe(operator.health_port) == (200, {"leader": False, "state": "standby"})
    await stopped(replica)


async def test_a_standby_whose_election_fails_raises_and_never_operates() -> None:
    elector, operator = FakeElector(), FakeOperator(free_port())
    elector.election_error = RuntimeError("unexpected Lease")
    replica = start(elector, operator)
    await standby_probe(operator.health_port)

    elector.elected.set()

    with pytest.raises(RuntimeError, match="unexpected Lease"):
        await asyncio.wait_for(replica, DEADLINE)
    assert not operator.started.is_set()


async def test_the_standby_frees_the_health_port_before_the_operator_starts() -> None:
    _, operator, replica = await leading_replica()

    assert operator.health_port_was_free
    await stopped(replica)


async def test_lost_leadership_stops_the_operator_and_exits_with_leadership_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    elector, operator, replica = await leading_replica()
    caplog.set_level(logging.ERROR, logger="tradingstack.replica")

    elector.leadership_lost.set()

    assert await asyncio.wait_for(replica, DEADLINE) == ExitCode.LEADERSHIP_LOST
    assert operator.stopped_by_flag
    (record,) = [r for r in caplog.records if r.getMessage() == "lost leadership"]
    assert (record.levelno, record.__dict__["identity"], record.__dict__["lease"]) == (
        logging.ERROR,
        "replica-a",
        LEASE_NAME,
    )
    assert not elector.released  # a Lease someone else may hold now is not ours to release


async def test_a_renewal_that_fails_stops_the_operator_and_raises() -> None:
    elector, operator, replica = await leading_replica()
    elector.renewal_error = RuntimeError("unexpected Lease")

    elector.leadership_lost.set()

    with pytest.raises(RuntimeError, match="unexpected Lease"):
        await asyncio.wait_for(replica, DEADLINE)
    assert operator.stopped_by_flag
    assert not elector.released


async def test_a_normal_stop_of_the_operator_ends_renewal_and_hands_the_lease_over() -> None:
    elector, operator, replica = await leading_replica()

    operator.exit.set()

    assert await asyncio.wait_for(replica, DEADLINE) == ExitCode.OK
    assert not operator.stopped_by_flag
    assert elector.renewal_cancelled
    assert elector.released


async def test_a_lease_that_cannot_be_released_is_left_to_expire(caplog: pytest.LogCaptureFixture) -> None:
    elector, operator, replica = await leading_replica()
    elector.release_error = ApiTemporaryError("connection refused")
    caplog.set_level(logging.WARNING, logger="tradingstack.replica")

    operator.exit.set()

    assert await asyncio.wait_for(replica, DEADLINE) == ExitCode.OK
    assert "could not release the Lease (it expires by itself): connection refused" in caplog.messages


async def test_sigterm_while_standing_by_exits_without_operating() -> None:
    elector, operator = FakeElector(), FakeOperator(free_port())
    replica = start(elector, operator)
    await standby_probe(operator.health_port)

    os.kill(os.getpid(), signal.SIGTERM)

    assert await asyncio.wait_for(replica, DEADLINE) == ExitCode.OK
    assert not operator.started.is_set()
    assert not elector.released  # nothing to hand over: the Lease never was ours
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the standby's handler is gone
