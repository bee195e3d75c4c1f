"""Row-level reads of a Dask DataFrame or a store, for the notebooks' interactive views.

The views filter, page and drill into events; on pandas that is indexing. On Dask every function here runs a
pandas step on each partition (partitions hold whole sites, see :mod:`analysis.backends.dask`, so whatever works
per message+recipient or per domain is exact) and brings back only what a person can look at: the first rows
that match and how many there are. Counts and distinct values of either backend are in
:mod:`analysis.backends.operations`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from analysis.backends import dask as engine

__all__ = ["columns_of", "first_rows"]


def columns_of(data: Any) -> pd.DataFrame:
    """An empty pandas frame with the columns and dtypes of ``data`` (without the store's ``_seq``)."""
    return engine.site_partitioned(data)._meta.drop(columns=engine.SEQ)


def first_rows(data: Any, limit: int | None, select: Callable[..., pd.DataFrame] | None = None, *args: Any,
               columns: list[str] | None = None) -> tuple[pd.DataFrame, int]:
    """``(the first `limit` rows in table order (None: all), how many rows there are)`` of ``columns`` (default:
    all), after ``select(rows, *args)`` when given (it sees those columns and the integer ``_seq``, and keeps rows
    whole): each partition sends at most ``limit`` rows."""
    ddf = engine.site_partitioned(data)
    shown = list(columns) if columns is not None else list(columns_of(ddf).columns)
    parts = engine.map_sites(ddf, _first_of_part, limit, select, args, columns=shown)
    total = sum(n for _, n in parts)
    rows = pd.concat([rows for rows, _ in parts]) if parts else ddf._meta[[*shown, engine.SEQ]]
    order = np.argsort(rows[engine.SEQ].to_numpy(), kind="stable")[:limit]
    return rows.iloc[order][shown].reset_index(drop=True), total  # partitions number their rows alike


def _first_of_part(part: pd.DataFrame, limit: int | None, select: Callable[..., pd.DataFrame] | None,
                   args: tuple[Any, ...]) -> tuple[pd.DataFrame, int]:
    chosen = part if select is None else select(part, *args)
    return (chosen if limit is None else chosen.head(limit)), len(chosen)

