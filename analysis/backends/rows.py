"""Row-level reads of a Dask DataFrame or a store, for the notebooks' interactive views.

The views filter, page and drill into events; on pandas that is indexing. On Dask every function here runs the
same pandas code on each partition (partitions hold whole sites, see :mod:`analysis.backends.dask`, so whatever works
per message+recipient or per domain is exact) and brings back only what a person can look at: the first rows
that match, counts, one message's events. Selections stay lazy Dask DataFrames that the summaries accept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from analysis.backends import dask as engine

__all__ = ["columns_of", "count", "distinct", "distinct_values", "first_rows", "message_journey", "problem_counts",
           "rows_where"]


def rows_where(data: Any, select: Callable[..., pd.DataFrame], *args: Any) -> Any:
    """``select(partition, *args)`` on every partition: a lazy Dask DataFrame of the kept rows, still partitioned
    by site (so the summaries do not shuffle it). ``select`` must keep whole message+recipients or filter rows
    one by one (a time window, a domain, the messages a cause hit)."""
    ddf = engine.site_partitioned(data)
    return engine.mark_site_partitioned(ddf.map_partitions(select, *args, meta=ddf._meta))


def count(data: Any) -> int:
    """The number of rows (one pass over the smallest column)."""
    ddf = engine.site_partitioned(data, columns=[engine.SEQ])
    return int(ddf.map_partitions(len).sum().compute())


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
    parts = engine._per_partition(ddf[[*shown, engine.SEQ]], _first_of_part, limit, select, args)
    total = sum(n for _, n in parts)
    rows = pd.concat([rows for rows, _ in parts]) if parts else ddf._meta[[*shown, engine.SEQ]]
    order = np.argsort(rows[engine.SEQ].to_numpy(), kind="stable")[:limit]
    return rows.iloc[order][shown].reset_index(drop=True), total  # partitions number their rows alike


def _first_of_part(part: pd.DataFrame, limit: int | None, select: Callable[..., pd.DataFrame] | None,
                   args: tuple[Any, ...]) -> tuple[pd.DataFrame, int]:
    chosen = part if select is None else select(part, *args)
    return (chosen if limit is None else chosen.head(limit)), len(chosen)


def distinct(data: Any, values: Callable[[pd.DataFrame], pd.Series]) -> set[Any]:
    """The distinct ``values(partition)`` over all partitions (say, the message keys of a selection)."""
    ddf = engine.site_partitioned(data)
    return set().union(*engine._per_partition(ddf, _distinct_of_part, values))


def distinct_values(data: Any, columns: list[str]) -> dict[str, set[Any]]:
    """Per column, its distinct values (NA left out) over all partitions, in one pass."""
    ddf = engine.site_partitioned(data)
    found: dict[str, set[Any]] = {c: set() for c in columns}
    for part in engine._per_partition(ddf[columns], _distinct_columns):
        for column, values in part.items():
            found[column] |= values
    return found


def _distinct_columns(part: pd.DataFrame) -> dict[str, set[Any]]:
    return {column: set(part[column].dropna().unique()) for column in part.columns}


def _distinct_of_part(part: pd.DataFrame, values: Callable[[pd.DataFrame], pd.Series]) -> set[Any]:
    return set(values(part).dropna().unique())


def problem_counts(data: Any, column: str) -> pd.DataFrame:
    """:func:`analysis.ui.render.problem_counts` over all partitions: per value of ``column`` the deferral and
    failure events and messages, summed (a message+recipient lies in one partition, so are its counts)."""
    from analysis.ui.render import problem_counts as counts_of

    ddf = engine.site_partitioned(data, columns=["event", "trace_id", "message_id", "recipient", column])
    parts = engine._per_partition(ddf, counts_of, column)
    every = pd.concat(parts, ignore_index=True).groupby(column, sort=False)[["problem_events", "problem_messages"]]
    counts = every.sum().reset_index()
    counts = counts.sort_values(["problem_events", column], ascending=[False, True], kind="stable")
    return counts.reset_index(drop=True)


def message_journey(data: Any, trace_id_or_message_id: str, recipient: str | None = None) -> pd.DataFrame:
    """:func:`analysis.summaries.tables.message_journey` of one message: its rows found on every partition (one pass
    over the store), then the pandas function on them."""
    from analysis.summaries import tables as summaries

    ddf = engine.site_partitioned(data)
    found = ddf.map_partitions(summaries.journey_rows, trace_id_or_message_id, recipient, meta=ddf._meta)
    rows = found.compute()
    rows = rows.iloc[np.argsort(rows[engine.SEQ].to_numpy(), kind="stable")].drop(columns=engine.SEQ)
    return summaries.message_journey(rows, trace_id_or_message_id, recipient)
