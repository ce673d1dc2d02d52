"""What the operator knows about the master: the address a majority of the sentinels report.

Read-only: only `SENTINEL get-master-addr-by-name` is sent. The operator never resets, reconfigures or
fails over the sentinels in steady state; Sentinel owns failover, the operator only reports and labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis

from tradingstack.redisclient.client import no_retry, parse_address


@dataclass(frozen=True, order=True)
class MasterAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pod_name(self) -> str:
        """First DNS label: the pod name when the host is a pod's stable DNS name."""
        return self.host.split(".", 1)[0]


@dataclass(frozen=True)
class MasterObservation:
    """Each sentinel's answer (None: unreachable or no master known) and the agreed master, if any."""

    answers: Mapping[str, MasterAddress | None]
    master: MasterAddress | None

    @property
    def agreeing(self) -> int:
        return sum(1 for answer in self.answers.values() if answer is not None and answer == self.master)

    @property
    def reachable(self) -> int:
        return sum(1 for answer in self.answers.values() if answer is not None)

    def describe(self) -> str:
        return f"{self.agreeing} of {len(self.answers)} sentinels report {self.master or 'no agreed master'}"


def agreed_master(answers: Mapping[str, MasterAddress | None]) -> MasterAddress | None:
    """The answer of a strict majority of ALL sentinels asked (not just the reachable ones): one sentinel cut
    off from its peers may still report a master that the others have already replaced."""
    counts = Counter(answer for answer in answers.values() if answer is not None)
    for address, count in counts.most_common(1):
        if count * 2 > len(answers):
            return address
    return None


def _ask(address: str, master_name: str, password: str | None, timeout_seconds: float) -> MasterAddress | None:
    host, port = parse_address(address)
    client = redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=no_retry(),
        decode_responses=True,
    )
    try:
        reply = client.execute_command(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master_name
        )
    except redis.RedisError:
        return None
    finally:
        client.close()
    if not reply:
        return None
    master_host, master_port = reply
    return MasterAddress(str(master_host), int(master_port))


def observe_master(
    sentinel_addresses: Sequence[str], master_name: str, password: str | None, timeout_seconds: float = 1.0
) -> MasterObservation:
    """Ask every sentinel (`host:port`) for the master of `master_name`."""
    answers = {address: _ask(address, master_name, password, timeout_seconds) for address in sentinel_addresses}
    return MasterObservation(answers=answers, master=agreed_master(answers))
