"""The command line of every generated file (CRD, field reference, chart RBAC): print it, or `--write` it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def write_or_print(text: str, description: str | None, argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--write", nargs="+", type=Path, help="write the generated text to these files")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(text)
        return 0
    for path in args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return 0
