"""Does a live object already match what we render? Decides whether an apply is needed at all.

Server-side apply is idempotent, but it is still a write; a resync of a healthy stack must send none. An object
needs applying when it is missing, when its applied-hash annotation differs (the rendered object changed, which
also covers fields we stopped rendering and SSA must remove), or when a rendered field was changed by someone else
(drift: `live` no longer contains `desired`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tradingstack.contract import Annotation


def rendered_hash(obj: dict[str, Any]) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_applied_hash(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    annotations = {**meta.get("annotations", {}), Annotation.APPLIED_HASH: rendered_hash(obj)}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def contains(live: Any, desired: Any) -> bool:
    """Every field of `desired` has the same value in `live`; the server's defaults in `live` are ignored."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    return bool(live == desired)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """`desired` carries its applied-hash annotation (see `with_applied_hash`)."""
    if live is None:
        return True
    live_hash = live.get("metadata", {}).get("annotations", {}).get(Annotation.APPLIED_HASH)
    if live_hash != desired["metadata"]["annotations"][Annotation.APPLIED_HASH]:
        return True
    return not contains(live, desired)
