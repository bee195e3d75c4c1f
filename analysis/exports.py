"""Writing tables for people to open: CSV guarded against formula injection, and Parquet.

Text from a trace is data. A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
read as a formula by Excel and LibreOffice (OWASP "CSV Injection"), so such cells get a leading apostrophe.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def guard_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``frame`` whose text cells cannot be run as spreadsheet formulas."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        if not (pd.api.types.is_string_dtype(series.dtype) or series.dtype == object):
            continue
        text = series.astype("string")
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
        if risky.any():
            out[column] = text.where(~risky, "'" + text)
    return out


def to_safe_csv(frame: pd.DataFrame, path: str | os.PathLike[str] | None = None, **kwargs: object) -> str | None:
    """Write ``frame`` as CSV with formula cells neutralized (returns the text when ``path`` is None)."""
    return guard_formulas(frame).to_csv(path, index=False, **kwargs)  # type: ignore[call-overload]


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` to ``.csv`` (guarded) or ``.parquet`` (the kit's own dtypes kept, text guarded too)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".parquet":
        guard_formulas(frame).to_parquet(target, index=False)
    elif target.suffix.lower() == ".csv":
        to_safe_csv(frame, target)
    else:
        raise ValueError(f"{target}: write .csv or .parquet")
    return target
