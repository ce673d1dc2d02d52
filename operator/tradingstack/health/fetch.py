"""The operator's reads of the services' health documents (HTTP, concurrent, short timeouts)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping
from typing import TypeVar

import aiohttp
from pydantic import ValidationError

from tradingstack.health.contract import ServiceHealth

K = TypeVar("K", bound=Hashable)


async def _fetch(session: aiohttp.ClientSession, url: str) -> ServiceHealth | None:
    try:
        # 503 still carries the document (an UNHEALTHY service answers with its reasons).
        async with session.get(url) as response:
            return ServiceHealth.model_validate_json(await response.read())
    except (aiohttp.ClientError, TimeoutError, OSError, ValidationError):
        return None


async def fetch_health_documents(urls: Mapping[K, str], timeout_seconds: float = 2.0) -> dict[K, ServiceHealth | None]:
    """The document at each URL, by the URL's key; None when it could not be read."""
    if not urls:
        return {}
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        documents = await asyncio.gather(*(_fetch(session, url) for url in urls.values()))
    return dict(zip(urls, documents, strict=True))
