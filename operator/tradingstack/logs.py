"""JSON logging with secret masking, shared by the operator and the services.

One JSON object per line: `time`, `level`, `logger`, `message`, then context fields bound with `log_context`
(correlation id, stack name and namespace, ...), then the record's `extra` fields, then `exception`.

Masking happens on the values before serialisation, so a secret is masked whatever JSON escaping would do to
it. What is masked (replaced by `***`):
- the password of URLs with credentials (`postgresql://user:SECRET@host`, `redis://:SECRET@host`);
- values after secret-looking keys in text (`password=...`, `"token": "..."`, `Authorization: Bearer ...`);
- whole values of `extra`/context fields whose key looks secret, at any nesting depth;
- every occurrence of registered secret values: those passed to `setup_json_logging`/`SecretMasker.register`
  and the values of environment variables whose names look secret. Values shorter than
  `MIN_REGISTERED_LENGTH` are not registered: masking every "ab" would make the logs unreadable while
  protecting nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

MASK = "***"
MIN_REGISTERED_LENGTH = 4

SECRET_NAME = re.compile(
    r"pass(word|wd)?|pwd|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|credential|auth|dsn|cookie",
    re.IGNORECASE,
)
"""Names (env vars, dict keys) whose values are secrets."""

_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*:)[^@\s/]+(?=@)")
_KEY_VALUE = re.compile(
    r"(?P<head>\b[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|private[_-]?key|access[_-]?key"
    r"|credentials?|authorization)[\w-]*[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)"
    r"[^\s\"',;&]+",
    re.IGNORECASE,
)

# LogRecord attributes that are not `extra` fields.
# Not extra fields: the record's own attributes, and kopf's whole OperatorSettings, which it attaches to every
# record of its per-object loggers (kilobytes of repr per line, no information about the event).
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "settings",
}

_context: ContextVar[Mapping[str, Any]] = ContextVar("tradingstack_log_context", default=MappingProxyType({}))


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add fields (e.g. correlation_id=..., stack=..., namespace=...) to every line logged inside the block,
    in this task/thread only."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def mask_text(text: str) -> str:
    """Mask credentials recognisable by their shape (URL passwords, key=value pairs); no registered values."""
    text = _URL_CREDENTIALS.sub(rf"\g<head>{MASK}", text)
    return _KEY_VALUE.sub(rf"\g<head>{MASK}", text)


class SecretMasker:
    """Masks secrets in text and in nested structures."""

    def __init__(self, secrets: Iterable[str] = (), env: Mapping[str, str] | None = None) -> None:
        self._values: list[str] = []
        for value in secrets:
            self.register(value)
        for name, value in (env or {}).items():
            if SECRET_NAME.search(name):
                self.register(value)

    def register(self, value: str) -> None:
        """Mask every occurrence of `value` from now on."""
        if len(value) >= MIN_REGISTERED_LENGTH and value not in self._values:
            # Longest first, so a secret containing another one is masked as a whole.
            self._values = sorted([*self._values, value], key=len, reverse=True)

    def mask(self, text: str) -> str:
        # Repeated because a replacement can complete a secret that itself contains "***" (each pass shortens
        # the text, registered values being longer than the mask, so this ends).
        while found := [value for value in self._values if value in text]:
            for value in found:
                text = text.replace(value, MASK)
        return mask_text(text)

    def mask_value(self, value: Any, key: str = "") -> Any:
        """Mask a JSON-like value; everything under a secret-looking key is masked whole."""
        if key and SECRET_NAME.search(key) and value is not None:
            return MASK
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Mapping):
            return {str(k): self.mask_value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.mask_value(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.mask(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, masked by `masker`."""

    def __init__(self, masker: SecretMasker | None = None) -> None:
        super().__init__()
        self.masker = masker or SecretMasker()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(_context.get())
        fields.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES})
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        line = {
            # Written by the logging system and the code, not by data: never masked.
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.masker.mask(record.getMessage()),
        }
        for key, value in fields.items():
            # Context and extra fields never replace the base fields.
            line.setdefault(key, self.masker.mask_value(value, key))
        return json.dumps(line, default=str, ensure_ascii=False)


def setup_json_logging(
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    logger: logging.Logger | None = None,
) -> SecretMasker:
    """Send `logger` (default: the root logger) to `stream` (default: stderr) as masked JSON lines, replacing
    its handlers. Secret-looking variables of `env` (default: os.environ) and `secrets` are masked. Returns the
    masker, to register secrets learnt later."""
    masker = SecretMasker(secrets, os.environ if env is None else env)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(masker))
    target = logger or logging.getLogger()
    for old in list(target.handlers):
        target.removeHandler(old)
    target.addHandler(handler)
    target.setLevel(level)
    return masker
