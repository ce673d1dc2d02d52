"""The published JSON Schema of the health document (`docs/health-contract.schema.json`).

python -m tradingstack.health.schema                 # print it
python -m tradingstack.health.schema --write PATH    # write it (the unit tests compare the committed file)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tradingstack.health.contract import ServiceHealth

SCHEMA_ID = "https://quantumtrader.dev/schemas/tradingstack/health-contract.schema.json"


def health_contract_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the document served at a service's health path, camelCase as served."""
    schema = ServiceHealth.model_json_schema(by_alias=True, mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "TradingStack service health document",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def schema_text() -> str:
    return json.dumps(health_contract_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, metavar="PATH", help="write the schema to PATH instead of stdout")
    args = parser.parse_args(argv)
    if args.write is None:
        print(schema_text(), end="")
    else:
        args.write.write_text(schema_text())


if __name__ == "__main__":
    main()
