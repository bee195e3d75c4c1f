"""Writing tables for people to open: CSV guarded against formula injection, and Parquet.

Text from a trace is data. A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
read as a formula by Excel and LibreOffice (OWASP "CSV Injection"), so such cells get a leading apostrophe.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _guard_text(text: pd.Series) -> pd.Series:
    risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
    return text.where(~risky, "'" + text) if risky.any() else text


def guard_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``frame`` whose text cells and column names cannot be run as spreadsheet formulas.

    Categorical columns stay categorical (their categories are guarded); other dtypes are kept.
    """
    out = frame.copy()
    out.attrs = {}
    for position in range(frame.shape[1]):
        series = frame.iloc[:, position]
        if isinstance(series.dtype, pd.CategoricalDtype):
            categories = pd.Series(series.cat.categories)
            if pd.api.types.is_string_dtype(categories.dtype) or categories.dtype == object:
                guarded = _guard_text(categories.astype("string")).astype(object)
                if guarded.is_unique:
                    out.isetitem(position, series.cat.rename_categories(list(guarded)))
                else:  # "=x" and "'=x" both present: fall back to plain text
                    out.isetitem(position, _guard_text(series.astype("string")))
            continue
        if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
            text = series.astype("string") if series.dtype == object else series
            guarded = _guard_text(text)
            if guarded is not text:
                out.isetitem(position, guarded)
    out.columns = [f"'{name}" if isinstance(name, str) and name.startswith(FORMULA_PREFIXES) else name
                   for name in frame.columns]
    return out


def to_safe_csv(frame: pd.DataFrame, path: str | os.PathLike[str] | None = None, **kwargs: object) -> str | None:
    """Write ``frame`` as CSV with formula cells neutralized (returns the text when ``path`` is None).

    Rows end in CRLF (RFC 4180), so a cell holding a bare CR or LF is always quoted and cannot start a row.
    """
    kwargs.setdefault("lineterminator", "\r\n")
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
