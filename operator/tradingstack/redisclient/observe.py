"""What the operator knows about the master: the address a majority of the sentinels report.

Read-only: only `SENTINEL get-master-addr-by-name` is sent. The operator never resets, reconfigures or
fails over the sentinels in steady state; Sentinel owns failover, the operator only reports and labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from tradingstack.contract.sentinel import MasterAddress, MasterObservation, agreed_master
from tradingstack.redisclient.client import RedisTls, no_retry, parse_address, tls_options

__all__ = ["MasterAddress", "MasterObservation", "agreed_master", "observe_master"]


def _ask(
    address: str, master_name: str, password: str | None, timeout_seconds: float, tls: RedisTls | None
) -> MasterAddress | None:
    host, port = parse_address(address)
    client = redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=no_retry(),
        decode_responses=True,
        **tls_options(tls),
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
    sentinel_addresses: Sequence[str],
    master_name: str,
    password: str | None,
    timeout_seconds: float = 1.0,
    tls: RedisTls | None = None,
) -> MasterObservation:
    """Ask every sentinel (`host:port`) for the master of `master_name` (over TLS with `tls`: a sentinel whose
    certificate does not verify counts as unreachable)."""
    answers = {address: _ask(address, master_name, password, timeout_seconds, tls) for address in sentinel_addresses}
    return MasterObservation(answers=answers, master=agreed_master(answers))
