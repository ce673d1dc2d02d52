"""The operator's calls to Patroni's REST API on the database pods (the data plane, as `health.fetch` for the
services' health documents): read the cluster's members, ask for a switchover, restart a member's server.

HTTP over the pod IPs (`render.patroni.rest_url`); the paths are `contract.Patroni`'s and the `/cluster` answer is
parsed by `contract.patroni_cluster`, nowhere else. Nothing here decides: `reconcile.switchover` plans.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from tradingstack.contract import Patroni
from tradingstack.contract.patroni_cluster import ClusterDocumentError, PatroniCluster, agreed_view, parse_cluster

READ_TIMEOUT_SECONDS = 2.0
SWITCHOVER_TIMEOUT_SECONDS = 60.0
"""Patroni answers a switchover once the candidate runs as the leader (it polls for up to ~30 s itself)."""
RESTART_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Answer:
    """What a member answered to a POST: the HTTP status (None: no answer) and its text."""

    status: int | None
    message: str

    @property
    def ok(self) -> bool:
        return self.status == 200

    def describe(self) -> str:
        return f"{self.status or 'no answer'}: {self.message}" if self.message else str(self.status or "no answer")


async def _read_one(session: aiohttp.ClientSession, base_url: str) -> PatroniCluster | None:
    try:
        async with session.get(base_url + Patroni.CLUSTER_PATH) as response:
            if response.status != 200:
                return None
            return parse_cluster(await response.read())
    except (aiohttp.ClientError, TimeoutError, OSError, ClusterDocumentError, json.JSONDecodeError):
        return None


async def read_cluster(
    base_urls: Sequence[str], timeout_seconds: float = READ_TIMEOUT_SECONDS
) -> PatroniCluster | None:
    """The cluster as the members at `base_urls` report it (asked concurrently; `agreed_view`), None when none
    answered."""
    if not base_urls:
        return None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as session:
        answers = await asyncio.gather(*(_read_one(session, url) for url in base_urls))
    return agreed_view(answers)


async def _post(url: str, body: dict[str, str], timeout_seconds: float) -> Answer:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as session,
            session.post(url, json=body) as response,
        ):
            return Answer(response.status, (await response.text()).strip())
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        return Answer(None, f"{type(err).__name__}: {err}".rstrip(": "))


async def switchover(
    base_url: str, leader: str, candidate: str | None = None, timeout_seconds: float = SWITCHOVER_TIMEOUT_SECONDS
) -> Answer:
    """Asks the member at `base_url` to switch the leader `leader` over (to `candidate`, or the healthiest replica
    Patroni picks). 200 once the switchover is done; 412 when Patroni refuses it (e.g. no healthy candidate)."""
    body = {"leader": leader} | ({"candidate": candidate} if candidate else {})
    return await _post(base_url + Patroni.SWITCHOVER_PATH, body, timeout_seconds)


async def restart(base_url: str, timeout_seconds: float = RESTART_TIMEOUT_SECONDS) -> Answer:
    """Asks the member at `base_url` to restart its PostgreSQL server; 200 once it runs again."""
    return await _post(base_url + Patroni.RESTART_PATH, {}, timeout_seconds)
