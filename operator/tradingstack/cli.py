"""The `tradingstack` command: render manifests, print the CRD, run the operator, operate backups and restarts.

Bad input ends with exit code 2 and one line per problem naming the field; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tradingstack import KIND
from tradingstack.api import TradingStack, describe
from tradingstack.api.crd import render_crd_yaml
from tradingstack.render.stack import render

EXIT_INVALID = 2


class InvalidInputError(Exception):
    """Input the user must fix; each line names a field or a file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_stacks(path: Path) -> list[TradingStack]:
    """Every TradingStack document in a YAML file (other kinds are ignored)."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInputError([f"{path}: {err}"]) from err
    stacks: list[TradingStack] = []
    problems: list[str] = []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != KIND:
            continue
        name = (document.get("metadata") or {}).get("name", "?")
        try:
            stacks.append(TradingStack.model_validate(document))
        except ValidationError as err:
            problems += [f"{line}" if len(documents) == 1 else f"{name}: {line}" for line in describe(err)]
    if problems:
        raise InvalidInputError(problems)
    if not stacks:
        raise InvalidInputError([f"{path}: no {KIND} document found"])
    return stacks


def dump_yaml(objects: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, width=120, explicit_start=True)


def _cmd_render(args: argparse.Namespace) -> int:
    manifests: list[dict[str, Any]] = []
    for loaded in load_stacks(args.file):
        stack = loaded
        if args.namespace:
            namespaced = loaded.metadata.model_copy(update={"namespace": args.namespace})
            stack = loaded.model_copy(update={"metadata": namespaced})
        manifests += render(stack, stack.owner_reference())
    sys.stdout.write(dump_yaml(manifests))
    return 0


def _cmd_crd(_: argparse.Namespace) -> int:
    sys.stdout.write(render_crd_yaml())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradingstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    render_cmd = commands.add_parser("render", help="print the manifests a TradingStack file renders to")
    render_cmd.add_argument("-f", "--file", type=Path, required=True, help="YAML file with TradingStack documents")
    render_cmd.add_argument("-n", "--namespace", help="namespace to render into (default: the file's or default)")
    render_cmd.set_defaults(handler=_cmd_render)

    crd_cmd = commands.add_parser("crd", help="print the TradingStack CustomResourceDefinition")
    crd_cmd.set_defaults(handler=_cmd_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except InvalidInputError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    return result


if __name__ == "__main__":
    raise SystemExit(main())
