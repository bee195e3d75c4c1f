"""Reading a rules file (TOML, one array of tables): the shipped file in ``analysis/reference/data/`` or the user's."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from analysis.core.errors import ExoDeferralsError

__all__ = ["rule_entries"]


def rule_entries(path: str | Path | None, shipped: str, table: str) -> tuple[list[dict[str, Any]], str]:
    """The entries of the array of tables ``table`` in ``path`` (None: the shipped ``data/<shipped>``), and where
    they come from (for messages); text that is not TOML is refused in one line naming the file."""
    if path is None:
        text = resources.files("analysis.reference").joinpath("data", shipped).read_text(encoding="utf-8")
        where = f"analysis/reference/data/{shipped}"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        return tomllib.loads(text).get(table, []), where
    except tomllib.TOMLDecodeError as exc:
        raise ExoDeferralsError(f"{where}: not valid TOML: {exc}") from None
