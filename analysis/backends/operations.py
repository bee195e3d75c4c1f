"""Generic operations on the events, pandas or Dask: what the report, the audit and the widgets need besides the
summaries, so that none of them asks which backend it holds.

Each is a pandas function dispatched on its first argument by :func:`analysis.backends.dispatch.dispatch`; its
Dask version (a Dask DataFrame or a store folder, see :mod:`analysis.backends.store`) is registered beside it and
imports dask only when it runs. The Dask versions read the partitions as they lie (no shuffle): the pandas steps
they take decide row by row, so any partitioning gives the pandas result.

* :func:`row_count` - the number of rows;
* :func:`columns_of` - an empty frame with the columns and dtypes;
* :func:`rows_of` - the rows a pandas step selects, only some columns, brought back as pandas in table order;
* :func:`each_partition` - a pandas step that changes or drops rows one by one, lazily on Dask;
* :func:`distinct_values` - per column, its distinct values;
* :func:`time_span` - the first and last timestamp;
* :func:`unused_categories_removed` - categoricals keep only the categories their rows use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from analysis.backends.dispatch import dispatch
from analysis.backends.partitions import SEQ, is_site_partitioned, mark_site_partitioned
from analysis.backends.store import open_store

__all__ = ["columns_of", "distinct_values", "each_partition", "row_count", "rows_of", "time_span",
           "unused_categories_removed"]

Step = Callable[..., pd.DataFrame]


def _partitions(data: Any, columns: Iterable[str] | None = None) -> Any:
    """The Dask DataFrame of ``data`` as it lies (a store is opened; ``columns``: only these, plus ``_seq`` when
    there is one)."""
    if not hasattr(data, "__dask_graph__"):
        return open_store(data, columns=columns)
    if columns is None:
        return data
    return data[list(dict.fromkeys([*columns, *([SEQ] if SEQ in data.columns else [])]))]


@dispatch
def row_count(frame: pd.DataFrame) -> int:
    """The number of rows."""
    return len(frame)


@row_count.register_dask
def _row_count_dask(data: Any) -> int:
    return int(_partitions(data, []).map_partitions(len).sum().compute())


@dispatch
def columns_of(frame: pd.DataFrame) -> pd.DataFrame:
    """An empty pandas frame with the columns and dtypes of ``frame`` (a store's with its ``_seq``): the frame a
    step of :func:`each_partition` sees."""
    return frame.iloc[:0]


@columns_of.register_dask
def _columns_of_dask(data: Any) -> pd.DataFrame:
    return _partitions(data)._meta


@dispatch
def rows_of(frame: pd.DataFrame, columns: Iterable[str], select: Step | None = None, *args: Any) -> pd.DataFrame:
    """The rows of ``frame`` that ``select(rows, *args)`` keeps (deciding row by row; None: every row) with only
    ``columns`` (which ``select`` sees, with a store's ``_seq``, and keeps), in table order, indexed 0, 1, 2 ...:
    on Dask, only these rows and columns are brought back."""
    rows = frame[list(columns)]
    return (rows if select is None else select(rows, *args)).reset_index(drop=True)


@rows_of.register_dask
def _rows_of_dask(data: Any, columns: Iterable[str], select: Step | None = None, *args: Any) -> pd.DataFrame:
    import dask

    columns = list(columns)
    ddf = _partitions(data, columns)
    parts = dask.compute(*[dask.delayed(_selected)(part, select, args) for part in ddf.to_delayed()])
    rows = pd.concat(parts) if parts else ddf._meta
    if SEQ in rows.columns:  # a store's partitions hold sites, not stretches of the table
        rows = rows.iloc[np.argsort(rows[SEQ].to_numpy(), kind="stable")]
    return rows[columns].reset_index(drop=True)


def _selected(part: pd.DataFrame, select: Step | None, args: tuple[Any, ...]) -> pd.DataFrame:
    return part if select is None else select(part, *args)


@dispatch
def each_partition(frame: pd.DataFrame, step: Step, *args: Any, meta: pd.DataFrame | None = None) -> Any:
    """``step(frame, *args)``, a step that changes or drops rows one by one; on Dask lazily, on every partition
    as it lies (``meta``: the result's empty frame, default ``frame``'s), a store's partitions still holding whole
    sites (see :mod:`analysis.backends.dask`)."""
    return step(frame, *args)


@each_partition.register_dask
def _each_partition_dask(data: Any, step: Step, *args: Any, meta: pd.DataFrame | None = None) -> Any:
    ddf = _partitions(data)
    out = ddf.map_partitions(step, *args, meta=ddf._meta if meta is None else meta)
    return mark_site_partitioned(out) if is_site_partitioned(ddf) else out


@dispatch
def distinct_values(frame: pd.DataFrame, columns: Iterable[str]) -> dict[str, set[Any]]:
    """Per column of ``columns``, its distinct values (NA left out)."""
    return {column: set(frame[column].dropna().unique()) for column in columns}


@distinct_values.register_dask
def _distinct_values_dask(data: Any, columns: Iterable[str]) -> dict[str, set[Any]]:
    import dask

    columns = list(columns)
    ddf = _partitions(data, columns)
    found: dict[str, set[Any]] = {column: set() for column in columns}
    for part in dask.compute(*[dask.delayed(distinct_values)(part, columns) for part in ddf.to_delayed()]):
        for column, values in part.items():
            found[column] |= values
    return found


@dispatch
def time_span(frame: pd.DataFrame) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The first and last ``timestamp`` of ``frame`` (None when nothing is dated)."""
    return _stamp(frame["timestamp"].min()), _stamp(frame["timestamp"].max())


@time_span.register_dask
def _time_span_dask(data: Any) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    import dask

    stamps = _partitions(data, ["timestamp"])["timestamp"]
    low, high = dask.compute(stamps.min(), stamps.max())
    return _stamp(low), _stamp(high)


def _stamp(value: Any) -> pd.Timestamp | None:
    return None if pd.isna(value) else pd.Timestamp(value)


@dispatch
def unused_categories_removed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` whose categorical columns keep only the categories its rows use (so a table written of a few
    domains' rows names no other domain); on Dask unchanged: its partitions' categories are their own."""
    return frame.assign(**{c: frame[c].cat.remove_unused_categories() for c in frame.columns
                           if isinstance(frame[c].dtype, pd.CategoricalDtype)})


@unused_categories_removed.register_dask
def _unused_categories_kept(data: Any) -> Any:
    return data
