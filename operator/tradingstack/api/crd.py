"""Generates the TradingStack CustomResourceDefinition from the pydantic models.

Pydantic's JSON schema is turned into a Kubernetes *structural* schema: `$ref`s are inlined, `anyOf` with
`null` becomes an optional field, titles/defaults go (defaults live in the models and the descriptions), and
CEL rules declared on the models are kept. `python -m tradingstack.api.crd --write FILE...` writes the YAML;
the drift test compares the committed files with `render_crd_yaml()`.
"""

from __future__ import annotations

from typing import Any

import yaml

from tradingstack import API_GROUP, API_VERSION, KIND, PLURAL
from tradingstack.api.generated import write_or_print
from tradingstack.api.resource import MAX_STACK_NAME
from tradingstack.api.spec import TradingStackSpec
from tradingstack.api.status import TradingStackStatus

# Keys a structural schema may carry; everything else pydantic emits (title, default, $defs, ...) is dropped.
_KEPT = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Services", "type": "string", "jsonPath": ".status.readySummary"},
    {"name": "Redis master", "type": "string", "jsonPath": ".status.redis.master"},
    {"name": "Last backup", "type": "date", "jsonPath": ".status.postgres.lastBackup.time"},
    {"name": "Next restart", "type": "string", "jsonPath": ".status.restarts.nextRun"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot make a structural schema of anyOf {node['anyOf']}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _structural({**options[0], **rest}, defs)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    if "enum" in node and "type" not in node:
        node = {**node, "type": "string"}

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key not in _KEPT:
            continue
        elif key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            if value is False:
                continue  # unknown fields are pruned by the API server (and refused by strict field validation)
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    if "properties" in out and out.get("type") is None:
        out["type"] = "object"
    if "type" not in out:
        raise ValueError(f"schema node without a type: {node}")
    return out


def _schema_of(model: type[TradingStackSpec] | type[TradingStackStatus]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}))


def build_crd() -> dict[str, Any]:
    spec_schema = _schema_of(TradingStackSpec)
    status_schema = _schema_of(TradingStackStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["ts"],
                "categories": ["all", "quantumtrader"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": spec_schema.get("description", ""),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"self.metadata.name.size() <= {MAX_STACK_NAME}",
                                    "message": f"metadata.name must be at most {MAX_STACK_NAME} characters "
                                    "(child names add suffixes)",
                                }
                            ],
                        }
                    },
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# Generated by `make crds` from operator/tradingstack/api; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    return write_or_print(render_crd_yaml(), __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
