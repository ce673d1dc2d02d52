"""A container's environment as the kubelet builds it from a rendered manifest: `$(VAR)` expanded from the
variables defined before it, Secret and field references looked up by the caller. The unit tests feed it to the
processes' configuration readers, the component tests start the real programs with it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def secret_stand_in(name: str, key: str) -> str:
    return f"<secret {name}/{key}>"


def field_stand_in(path: str) -> str:
    return f"<field {path}>"


def resolved_env(
    container: Mapping[str, Any],
    secret: Callable[[str, str], str] = secret_stand_in,
    field: Callable[[str], str] = field_stand_in,
) -> dict[str, str]:
    """The environment the container's process starts with; `secret(name, key)` and `field(path)` give the
    values of the references (by default stand-ins naming what they refer to)."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            # `$(NAME)` refers to a variable defined earlier; an unknown one stays as written.
            env[var["name"]] = _REFERENCE.sub(lambda m: env.get(m[1], m[0]), var["value"])
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret(ref["name"], ref["key"])
        else:
            env[var["name"]] = field(var["valueFrom"]["fieldRef"]["fieldPath"])
    return env
