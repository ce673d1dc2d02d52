"""Generates the TradingStack field reference (Markdown) from the same schema the CRD is built from.

`python -m tradingstack.api.reference --write docs/reference.md`; a test fails when the committed file is stale.
"""

from __future__ import annotations

from typing import Any

from tradingstack.api.crd import build_crd
from tradingstack.api.generated import write_or_print


def _type(node: dict[str, Any]) -> str:
    kind = str(node.get("type", ""))
    if kind == "array":
        return f"[]{_type(node.get('items', {}))}"
    if kind == "object" and "additionalProperties" in node:
        return f"map[string]{_type(node['additionalProperties'])}"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    return kind


def _rows(node: dict[str, Any], path: str) -> list[str]:
    rows: list[str] = []
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        field = f"{path}.{name}"
        description = " ".join(str(child.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{field}` | {_type(child)} | {'yes' if name in required else ''} | {description} |")
        target = child.get("items", child) if child.get("type") == "array" else child
        rows += _rows(target, f"{field}[]" if child.get("type") == "array" else field)
    return rows


def render_reference() -> str:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    header = "| Field | Type | Required | Description |\n| --- | --- | --- | --- |\n"
    return (
        "# TradingStack reference\n\n"
        "Generated from the API models by `python -m tradingstack.api.reference --write docs/reference.md`;"
        " do not edit by hand.\n\n"
        "`apiVersion: trading.quantumtrader.dev/v1alpha1`, `kind: TradingStack` (short name `ts`), namespaced.\n\n"
        "## spec\n\n" + header + "\n".join(_rows(schema["properties"]["spec"], "spec")) + "\n\n"
        "## status (written by the operator)\n\n"
        + header
        + "\n".join(_rows(schema["properties"]["status"], "status"))
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    return write_or_print(render_reference(), __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
