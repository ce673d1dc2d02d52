"""Shared pieces of the API models: camelCase aliasing, CEL rules, quantity and name patterns."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$"
# Five whitespace-separated fields; the model checks each field with the cron library too.
FIVE_FIELD_CRON = r"^\s*\S+\s+\S+\s+\S+\s+\S+\s+\S+\s*$"
_QUANTITY_RE = re.compile(QUANTITY)


def cel(rule: str, message: str, **extra: str) -> dict[str, str]:
    """One `x-kubernetes-validations` entry, so the API server enforces the rule itself."""
    return {"rule": rule, "message": message, **extra}


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def is_quantity(value: str) -> bool:
    return bool(_QUANTITY_RE.match(value))


class ApiModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )
