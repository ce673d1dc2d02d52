"""The operator's reads of the services' health documents (HTTP, concurrent, short timeouts)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
from pydantic import ValidationError

from tradingstack.health.contract import ServiceHealth


async def _fetch(session: aiohttp.ClientSession, url: str) -> ServiceHealth | None:
    try:
        # 503 still carries the document (an UNHEALTHY service answers with its reasons).
        async with session.get(url) as response:
            return ServiceHealth.model_validate_json(await response.read())
    except (aiohttp.ClientError, TimeoutError, OSError, ValidationError):
        return None


async def fetch_health_documents(
    urls: Mapping[str, str], timeout_seconds: float = 2.0
) -> dict[str, ServiceHealth | None]:
    """Each service's document by name; None when it could not be read (reported as UNREACHABLE)."""
    if not urls:
        return {}
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        documents = await asyncio.gather(*(_fetch(session, url) for url in urls.values()))
    return dict(zip(urls, documents, strict=True))
