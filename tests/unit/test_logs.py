"""JSON logging: one object per line with context and extra fields; no secret ever reaches a line."""

from __future__ import annotations

import io
import json
import logging
import string
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tradingstack.logs import MASK, MIN_REGISTERED_LENGTH, SecretMasker, log_context, mask_text, setup_json_logging

BASE_FIELDS = ("time", "level", "logger", "message")
LOGGER = "tests.unit.logs"
FIXED_TEXT = (
    "connect failed for postgresql://trader:@db.internal:5432/trading using token key config Bearer"
    " settings loaded database password host apiKey headers Authorization client_secret"
)
"""Text the tests log themselves: a generated secret equal to part of it is not a leak."""

secrets = st.text(min_size=8, max_size=40)
"""Any characters (unicode, quotes, backslashes, '*'); values a secret store could hold."""
tokens = st.text(alphabet=string.ascii_letters + string.digits + "-_.~+/=", min_size=8, max_size=40)
"""Token-shaped secrets, as written after `password=` in free text (no separators in them)."""


def capture(env: dict[str, str] | None = None, registered: tuple[str, ...] = ()) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(LOGGER)
    logger.propagate = False
    setup_json_logging(logging.DEBUG, stream=stream, env=env or {}, secrets=registered, logger=logger)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def strings(value: Any) -> list[str]:
    """Every string in a decoded JSON value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def assert_absent(stream: io.StringIO, *values: str) -> None:
    for record in lines(stream):
        assert record["logger"] == LOGGER
        for text in strings({k: v for k, v in record.items() if k not in ("time", "level", "logger")}):
            for value in values:
                assert value not in text, f"secret leaked into {record}"


@given(secret=secrets)
def test_secret_env_values_never_appear(secret: str) -> None:
    assume(secret not in FIXED_TEXT)
    logger, stream = capture(env={"BROKER_API_KEY": secret, "PATH": "/usr/bin"})
    logger.info("using key %s for %s", secret, "binance")
    logger.warning("config", extra={"settings": {"endpoint": f"https://x/{secret}", "list": [secret, 1]}})
    assert_absent(stream, secret)
    assert lines(stream)[0]["message"] == f"using key {MASK} for binance"


@given(password=secrets)
def test_dsn_passwords_never_appear(password: str) -> None:
    encoded = quote(password, safe="")
    dsn = f"postgresql://trader:{encoded}@db.internal:5432/trading"
    assume(encoded not in FIXED_TEXT)
    logger, stream = capture()
    logger.error("connect failed for %s", dsn)
    logger.info("redis", extra={"url": f"redis://:{encoded}@redis:6379/0"})
    assert_absent(stream, encoded, password)
    assert lines(stream)[0]["message"] == f"connect failed for postgresql://trader:{MASK}@db.internal:5432/trading"


@given(secret=secrets)
def test_values_under_secret_keys_never_appear_at_any_depth(secret: str) -> None:
    assume(secret not in FIXED_TEXT)
    logger, stream = capture()
    logger.info(
        "settings loaded",
        extra={
            "config": {"database": {"password": secret, "host": "db"}, "apiKey": secret},
            "headers": [{"Authorization": f"Bearer {secret}"}],
            "client_secret": secret,
        },
    )
    assert_absent(stream, secret)
    (record,) = lines(stream)
    assert record["config"]["database"] == {"password": MASK, "host": "db"}


@given(secret=secrets, token=tokens)
def test_exception_text_never_carries_secrets(secret: str, token: str) -> None:
    encoded = quote(secret, safe="")
    # The traceback quotes this file's path and source lines: a value that happens to be in them is not a leak.
    traceback_text = f"{__file__}\n{Path(__file__).read_text()}"
    assume(not any(value in traceback_text for value in (secret, encoded, token)))
    logger, stream = capture(env={"PGPASSWORD": secret})
    try:
        dsn = f"postgresql://trader:{encoded}@db.internal:5432/trading"
        raise ConnectionError(f"connect failed for {dsn} using {secret}; password={token}")
    except ConnectionError:
        logger.exception("giving up")
    assert_absent(stream, secret, encoded, token)
    assert "ConnectionError" in lines(stream)[0]["exception"]


@given(token=tokens)
def test_key_value_credentials_in_free_text_are_masked(token: str) -> None:
    template = 'login password={0} api_key: "{0}" Authorization: Bearer {0} user=trader'
    # A token that is a word of the text itself (e.g. "password") stays visible as that word: not a leak.
    assume(token not in template.replace("{0}", " "))
    text = template.format(token)
    assert token not in mask_text(text)
    assert "user=trader" in mask_text(text)


def test_line_has_base_fields_context_and_extras() -> None:
    logger, stream = capture()
    with log_context(correlation_id="req-1", stack="quant", namespace="trading"):
        logger.info("reconciled %d objects", 3, extra={"durationMs": 12.5})
    logger.info("outside")
    first, second = lines(stream)
    assert list(first)[:4] == list(BASE_FIELDS)
    assert first["message"] == "reconciled 3 objects"
    assert (first["level"], first["logger"]) == ("INFO", LOGGER)
    assert (first["correlation_id"], first["stack"], first["namespace"]) == ("req-1", "quant", "trading")
    assert first["durationMs"] == 12.5
    assert "correlation_id" not in second


def test_extras_cannot_replace_base_fields() -> None:
    logger, stream = capture()
    with log_context(level="FAKE"):
        logger.warning("real")
    assert lines(stream)[0]["level"] == "WARNING"


def test_short_values_are_not_registered_but_secret_keys_still_mask_them() -> None:
    short = "x" * (MIN_REGISTERED_LENGTH - 1)
    masker = SecretMasker([short], env={"API_TOKEN": short})
    assert masker.mask(f"value {short}") == f"value {short}"
    assert masker.mask_value({"token": short}) == {"token": MASK}


@pytest.mark.parametrize("name", ["DB_PASSWORD", "REDIS_PASSWD", "GITHUB_TOKEN", "BINANCE_API_KEY", "TLS_PRIVATE_KEY"])
def test_secret_looking_env_names_are_registered(name: str) -> None:
    masker = SecretMasker(env={name: "s3cr3t-value", "HOME": "/home/trader"})
    assert masker.mask("s3cr3t-value at /home/trader") == f"{MASK} at /home/trader"


def test_a_mask_cannot_complete_a_secret_containing_the_mask() -> None:
    masker = SecretMasker(["x***"])
    assert "x***" not in masker.mask("xx***")
