"""Golden files: compare rendered text with a committed file; `UPDATE_GOLDEN=1` rewrites it instead."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "unit" / "golden"


def assert_golden(name: str, text: str, directory: Path = GOLDEN_DIR) -> None:
    path = directory / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review the diff"
    assert text == path.read_text(), f"{path} differs from the rendered output: review, then UPDATE_GOLDEN=1"
