"""What every benchmark does with its figures: print the markdown table, keep the numbers in bench/out/."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "out"


def publish(name: str, lines: list[str], results: dict) -> int:
    """Print ``lines`` (the markdown section) and write it with ``results`` to ``bench/out/<name>.json``."""
    text = "\n".join(lines)
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps({"markdown": text, "results": results}, indent=2))
    return 0
