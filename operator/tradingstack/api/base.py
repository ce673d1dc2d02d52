"""Shared pieces of the API models: camelCase aliasing, CEL rules, quantity and name patterns."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$"
# Five fields separated by spaces or tabs; the model checks each field with the cron library too.
_CRON_FIELD = r"[0-9A-Za-z*/,?#-]+"
FIVE_FIELD_CRON = rf"^[ \t]*{_CRON_FIELD}(?:[ \t]+{_CRON_FIELD}){{4}}[ \t]*$"
"""ASCII only, so the API server (RE2) and the models (Python) read the same five fields."""
_QUANTITY_RE = re.compile(QUANTITY)


def cel(rule: str, message: str, **extra: str) -> dict[str, str]:
    """One `x-kubernetes-validations` entry, so the API server enforces the rule itself."""
    return {"rule": rule, "message": message, **extra}


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def is_quantity(value: str) -> bool:
    return bool(_QUANTITY_RE.match(value))


_DECIMAL_SUFFIXES = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_MILLI = Decimal("1e-3")


def canonical_quantity(value: str) -> str:
    """The form in which the API server stores a quantity (`QUANTITY`), so a rendered `0.5` or `2048Mi` equals
    the live `500m` or `2Gi` and a resync writes nothing. Kubernetes' rules: binary suffixes stay binary for
    whole multiples of 1Ki (the largest exact power of 1024); everything else becomes the largest decimal
    suffix (m to E, steps of 1000) with a whole number before it; container resources finer than 1m are rounded
    up to it (tests/cluster compares these forms with the API server's)."""
    amount, suffix = _amount(value)
    whole_kibibytes = amount >= 1024 and amount == amount.to_integral_value() and int(amount) % 1024 == 0
    if suffix in _BINARY_SUFFIXES and whole_kibibytes:
        whole, power = int(amount), 0
        while whole % 1024 == 0 and power < 60:
            whole, power = whole // 1024, power + 10
        return f"{whole}{next(s for s, p in _BINARY_SUFFIXES.items() if p == power)}"
    amount = (amount / _MILLI).to_integral_value(ROUND_CEILING) * _MILLI
    if amount == 0:
        return "0"
    exponent = max(e for e in _DECIMAL_SUFFIXES.values() if amount.scaleb(-e) == amount.scaleb(-e).to_integral_value())
    unit = next(s for s, e in _DECIMAL_SUFFIXES.items() if e == exponent)
    return f"{int(amount.scaleb(-exponent))}{unit}"


def quantity_bytes(value: str) -> int:
    """A quantity as a whole number (bytes, for a size), rounded up."""
    return int(_amount(value)[0].to_integral_value(ROUND_CEILING))


def _amount(value: str) -> tuple[Decimal, str]:
    """The exact amount of a quantity in base units, and its suffix."""
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", value)
    if match is None or not is_quantity(value):
        raise ValueError(f"{value!r} is not a quantity")
    number, suffix = Decimal(match[1]), match[2]
    if suffix in _BINARY_SUFFIXES:
        return number * (1 << _BINARY_SUFFIXES[suffix]), suffix
    return number.scaleb(_DECIMAL_SUFFIXES[suffix]), suffix


class ApiModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )
