"""Domain errors of the API facade (`kube/`). Plain exceptions, so `kube/` does not depend on kopf: the stack
daemon in `handlers` handles them itself (temporary: retry with backoff; permanent: report and wait for a
change)."""

from __future__ import annotations


class ApiTemporaryError(Exception):
    """The API server could not be reached or asked us to come back (5xx, 429, conflicts, timeouts)."""

    def __init__(self, message: str, delay: float = 5.0, code: int | None = None) -> None:
        super().__init__(message)
        self.delay = delay
        """Seconds to wait at least before retrying."""
        self.code = code
        """The HTTP status (409 for a conflict); None when the server was not reached."""


class NotLeaderError(ApiTemporaryError):
    """A write refused before it was sent: this operator no longer holds (or never held) the leader Lease."""


class ApiPermanentError(Exception):
    """The API server refused a request for a reason retrying will not fix (invalid object, forbidden)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class DeletionPendingError(Exception):
    """A stack's deletion must wait for something to finish first (its Patroni members to stop)."""

    def __init__(self, message: str, delay: float = 3.0) -> None:
        super().__init__(message)
        self.delay = delay
        """Seconds until the deletion is tried again."""
