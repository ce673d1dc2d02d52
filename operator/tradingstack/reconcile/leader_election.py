"""Carries out the leadership planner's decisions (`reconcile.leadership`): stand by, lead, renew, hand over.

Every attempt reads the Lease, plans, and writes the planned spec with the resourceVersion it read, so two
operators racing for a free Lease cannot both win: the loser's write fails with a conflict and it stands by.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tradingstack.errors import ApiPermanentError, ApiTemporaryError
from tradingstack.kube.client import Kube
from tradingstack.reconcile.leadership import (
    LEASE_NAME,
    LeaderDecision,
    Standby,
    Timings,
    leadership_lost,
    observed_lease,
    plan_leadership,
    plan_release,
)

log = logging.getLogger(__name__)

LOST_RACE = "another operator (it wrote the Lease first)"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LeaderElector:
    """One operator's side of the election on the Lease `namespace`/`name`, under `identity`."""

    kube: Kube
    """A client of its own: the reconcilers' client is fenced by `is_leading`, the Lease writes must not be."""
    namespace: str
    identity: str
    timings: Timings = field(default_factory=Timings)
    name: str = LEASE_NAME
    clock: Callable[[], datetime] = _utc_now
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    last_renewed: datetime | None = None
    """The renewTime of our last successful write of the Lease; None while not leading."""
    lost: bool = False
    """Set when leadership was lost (as opposed to handed over on shutdown)."""

    def is_leading(self) -> bool:
        """Whether this operator may write: it renewed the Lease within the renew deadline."""
        return self.last_renewed is not None and not leadership_lost(
            self.last_renewed, self.clock(), self.timings.renew_deadline
        )

    async def attempt(self) -> LeaderDecision:
        """Read the Lease, decide, and write the decision; a write that lost a race turns into Standby."""
        now = self.clock()
        lease = await self.kube.get_lease(self.namespace, self.name)
        observed = observed_lease(lease) if lease is not None else None
        decision = plan_leadership(observed, self.identity, self.timings.lease_duration, now)
        if isinstance(decision, Standby):
            return decision
        spec = decision.spec.to_spec()
        if observed is None:
            written = await self.kube.create_lease(self.namespace, self.name, spec)
        else:
            written = await self.kube.replace_lease(self.namespace, self.name, spec, observed.resource_version)
        if written is None:
            return Standby(LOST_RACE, now + self.timings.lease_duration)
        self.last_renewed = now
        return decision

    async def wait_for_leadership(self) -> None:
        """Stands by, trying every retry period, until this operator holds the Lease."""
        waiting_for: str | None = None
        while True:
            try:
                decision = await self.attempt()
            except (ApiTemporaryError, ApiPermanentError) as err:
                log.warning("leader election: could not read or write the Lease: %s", err, extra=self._fields())
            else:
                if not isinstance(decision, Standby):
                    log.info("became leader", extra=self._fields())
                    return
                if decision.holder != waiting_for:
                    waiting_for = decision.holder
                    log.info(
                        "standing by",
                        extra={**self._fields(), "holder": decision.holder, "expires_at": decision.expires_at},
                    )
            await self.sleep(self.timings.retry_period.total_seconds())

    async def keep_leading(self, stop: asyncio.Event) -> None:
        """Renews the Lease every retry period while leading; sets `stop` and returns once leadership is lost:
        another holder took the Lease, or no renewal succeeded within the renew deadline."""
        while True:
            await self.sleep(self.timings.retry_period.total_seconds())
            if not await self._renewed():
                break
        self.last_renewed = None  # closes the write fence at once
        self.lost = True
        stop.set()

    async def _renewed(self) -> bool:
        """One renewal; False when leadership is lost. An attempt may take what is left of the renew deadline."""
        if self.last_renewed is None:
            return False
        remaining = (self.last_renewed + self.timings.renew_deadline - self.clock()).total_seconds()
        try:
            decision = await asyncio.wait_for(self.attempt(), timeout=max(remaining, 0.001))
        except (TimeoutError, ApiTemporaryError, ApiPermanentError) as err:
            log.warning("leader election: renewing the Lease failed: %s", err or "timed out", extra=self._fields())
            return self.is_leading()
        if isinstance(decision, Standby):
            log.error("another operator holds the Lease", extra={**self._fields(), "holder": decision.holder})
            return False
        return True

    async def release(self) -> None:
        """Hands the Lease over so a standby takes over at once, instead of after the lease duration. Best effort
        (a Lease not released expires by itself); call it only after reconciling has stopped."""
        self.last_renewed = None
        lease = await self.kube.get_lease(self.namespace, self.name)
        spec = plan_release(observed_lease(lease) if lease is not None else None, self.identity, self.clock())
        if lease is None or spec is None:
            return
        resource_version = str(lease["metadata"]["resourceVersion"])
        if await self.kube.replace_lease(self.namespace, self.name, spec.to_spec(), resource_version) is not None:
            log.info("released the Lease", extra=self._fields())

    def _fields(self) -> dict[str, str]:
        return {"lease": f"{self.namespace}/{self.name}", "identity": self.identity}
