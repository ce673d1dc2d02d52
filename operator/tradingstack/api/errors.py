"""Turns pydantic validation errors into one readable line per problem, naming the field path."""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

# A validator message may start with the sub-field it is about ("quorum: must be ..."): fold it into the path.
_FIELD_PREFIX = re.compile(r"^([A-Za-z][\w\[\].]*): (.*)$", re.S)


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + to_camel(part) if part != "from_" else ".from"
    return path


def describe(error: ValidationError, root: str = "") -> list[str]:
    """`spec.redis.quorum: must be <= sentinels (3)` lines, sorted, one per problem."""
    lines: set[str] = set()
    for item in error.errors():
        base = _path(tuple(item["loc"]))
        message = str(item["msg"]).removeprefix("Value error, ")
        for problem in message.split("; "):
            path, text = base, problem
            match = _FIELD_PREFIX.match(problem)
            if match:
                path = f"{base}.{match.group(1)}" if base else match.group(1)
                text = match.group(2)
            full = ".".join(p for p in (root, path) if p)
            lines.add(f"{full}: {text}" if full else text)
    return sorted(lines)
