"""Domain errors. They subclass kopf's so a handler that lets one escape gets kopf's retry semantics; the
stack daemon handles them itself (temporary: retry with backoff; permanent: report and wait for a change)."""

from __future__ import annotations

import kopf


class ApiTemporaryError(kopf.TemporaryError):
    """The API server could not be reached or asked us to come back (5xx, 429, conflicts, timeouts)."""


class ApiPermanentError(kopf.PermanentError):
    """The API server refused a request for a reason retrying will not fix (invalid object, forbidden)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
