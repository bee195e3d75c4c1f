"""Reading the Parquet store of tagged events (written by :func:`analysis.store.ingest.ingest`).

The layout is described in :mod:`analysis.store.ingest`. Reading sits here, in the backends layer, so that the
Dask backend and every layer above can open a store without knowing how one is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.backends.partitions import OPEN_CATEGORIES, SEQ, STORE_MANIFEST, mark_site_partitioned, with_categories
from analysis.core.concepts import as_utc
from analysis.core.schema import EVENT_COLUMNS, EXTRA_TAG_COLUMNS, STRING, TAG_COLUMNS, conform

__all__ = ["FILE", "HELPERS", "NEXT_MANIFEST", "NO_DAY", "STORED_COLUMNS", "is_store", "open_store",
           "partition_files", "read_files", "read_manifest", "read_part", "store_meta", "typed"]

FILE = "_file"  # the manifest number of the file a row came from
NEXT_MANIFEST = "_manifest.next.json"
NO_DAY = "__HIVE_DEFAULT_PARTITION__"  # pyarrow's hive name for a null partition value
STORED_COLUMNS: dict[str, object] = {**EVENT_COLUMNS, **TAG_COLUMNS, **EXTRA_TAG_COLUMNS}
HELPERS = {SEQ: "int64", FILE: "int32"}


def is_store(path: Any) -> bool:
    """Whether ``path`` (text or a path) names the folder of a store."""
    if not isinstance(path, str | os.PathLike):
        return False
    try:
        return (Path(path) / STORE_MANIFEST).is_file()
    except (OSError, ValueError):
        return False


def read_manifest(store_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The store's manifest (raises FileNotFoundError naming the folder when it is no store)."""
    path = Path(store_dir) / STORE_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{store_dir}: not an exo-deferrals store (no {STORE_MANIFEST}); "
                                "create one with `exo-deferrals ingest TRACE... --store DIR`")
    return json.loads(path.read_text(encoding="utf-8"))



def read_part(files: Sequence[str], columns: Sequence[str] | None = None, start: pd.Timestamp | None = None,
              end: pd.Timestamp | None = None) -> pd.DataFrame:
    """One partition of a store (its files over every day) for ``dd.from_map``: ``columns`` (default: all
    stored ones) in their canonical dtypes, in ``_seq`` order, only rows with ``start <= timestamp <= end`` when
    given. Dask passes only the columns a computation uses."""
    wanted = list(columns) if columns is not None else [*STORED_COLUMNS, SEQ]
    if start is None and end is None:
        return read_files(files, wanted)
    frame = read_files(files, list(dict.fromkeys([*wanted, "timestamp"])))
    keep = frame["timestamp"].notna()
    if start is not None:
        keep &= frame["timestamp"] >= start
    if end is not None:
        keep &= frame["timestamp"] <= end
    return frame.loc[keep.to_numpy(dtype=bool), wanted].reset_index(drop=True)


def read_files(files: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Parquet files of a store (or staged pieces) as one frame of ``columns`` in their canonical dtypes."""
    tables = []
    for path in files:
        handle = pq.ParquetFile(path)
        present = set(handle.schema_arrow.names)
        tables.append(_wide_dictionaries(handle.read(columns=[c for c in columns if c in present])))
    if tables:
        table = pa.concat_tables(tables, promote_options="permissive")
        del tables
        frame = table.to_pandas(types_mapper=_ARROW_TO_PANDAS.get, ignore_metadata=True, self_destruct=True,
                                split_blocks=True)
        del table
        pa.default_memory_pool().release_unused()
    else:
        frame = pd.DataFrame(index=pd.RangeIndex(0))
    return typed(frame, columns)


_ARROW_TO_PANDAS = {pa.string(): STRING, pa.large_string(): STRING, pa.int64(): pd.Int64Dtype(),
                    pa.int32(): pd.Int32Dtype(), pa.int16(): pd.Int16Dtype(), pa.bool_(): pd.BooleanDtype()}


def _wide_dictionaries(table: pa.Table) -> pa.Table:
    """Dictionary (categorical) columns with int32 indices, so files whose dictionaries differ concatenate
    (each chunk keeps its dictionary; to_pandas unifies them into one categorical)."""
    for i, column in enumerate(table.columns):
        if pa.types.is_dictionary(column.type) and column.type.index_type != pa.int32():
            wide = pa.dictionary(pa.int32(), column.type.value_type)
            table = table.set_column(i, table.field(i).name, column.cast(wide))
    return table


def typed(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with exactly ``columns`` in their store dtypes (sorted categories for the open categoricals)."""
    ready, schema = {}, {}
    for name in columns:
        dtype = STORED_COLUMNS.get(name)
        series = frame.get(name)
        if dtype is None:
            continue
        if series is not None and isinstance(series.dtype, pd.CategoricalDtype):
            if isinstance(dtype, pd.CategoricalDtype):  # fixed categories: recode, no strings involved
                ready[name] = series.cat.set_categories(dtype.categories)
                continue
            if dtype == "category":
                ready[name] = series
                continue
        schema[name] = dtype
    out = conform(frame[[c for c in schema if c in frame]], schema) if schema else pd.DataFrame(index=frame.index)
    for name, values in ready.items():
        out[name] = values
    for name, dtype in HELPERS.items():
        if name in columns:
            values = frame[name] if name in frame else pd.Series(0, index=frame.index)
            out[name] = values.astype(dtype)
    out = out[list(columns)]
    if SEQ in out and not out[SEQ].is_monotonic_increasing:
        out = out.sort_values(SEQ, kind="stable")
    return with_categories(out.reset_index(drop=True))


def store_meta(columns: Sequence[str]) -> pd.DataFrame:
    from dask.dataframe.utils import clear_known_categories

    meta = typed(pd.DataFrame(index=pd.RangeIndex(0)), columns)
    opened = [c for c in OPEN_CATEGORIES if c in meta.columns]
    return clear_known_categories(meta, cols=opened) if opened else meta


def partition_files(store: Path, partitions: int) -> list[list[str]]:
    """Per partition number, its files over every day (days in order)."""
    files: list[list[str]] = [[] for _ in range(partitions)]
    for day in sorted(store.glob("day=*")):
        for path in sorted(day.glob("part.*.parquet")):
            number = int(path.name.split(".")[1])
            if number < partitions:
                files[number].append(str(path))
    return files


def _partition_groups(store: Path, manifest: dict[str, Any]) -> list[list[str]]:
    """Per group of partitions that together hold whole sites (manifest "groups"; else one partition each): its
    files."""
    files = partition_files(store, manifest.get("partitions", 0))
    groups = manifest.get("groups") or [[i] for i in range(len(files))]
    return [[f for i in group for f in files[i]] for group in groups]


def open_store(store_dir: str | os.PathLike[str], *, engine: str = "dask", columns: Iterable[str] | None = None,
               start: Any = None, end: Any = None) -> Any:
    """The store's tagged events: a Dask DataFrame, one partition per group of whole sites (the default), or with
    ``engine="pandas"`` one pandas DataFrame (small stores). Rows are in ``_seq`` order within a partition
    (pandas: overall); ``columns`` limits what is read (``_seq`` is always there); ``start`` / ``end`` (UTC; naive
    times are UTC) keep the events of that time window, both ends included, reading only its days."""
    store = Path(store_dir)
    manifest = read_manifest(store)
    if (store / NEXT_MANIFEST).exists():
        raise RuntimeError(f"{store}: an ingest was interrupted; run ingest again to finish it")
    wanted = list(dict.fromkeys([*(columns if columns is not None else STORED_COLUMNS), SEQ]))
    unknown = [c for c in wanted if c not in STORED_COLUMNS and c not in HELPERS]
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}; the store holds {', '.join(STORED_COLUMNS)}")
    low, high = as_utc(start), as_utc(end)
    groups = [[f for f in files if _day_overlaps(f, low, high)] for files in _partition_groups(store, manifest)]
    groups = [files for files in groups if files]
    if engine == "pandas":
        return read_part([f for files in groups for f in files], wanted, low, high)
    if engine != "dask":
        raise ValueError(f"engine {engine!r}: expected 'dask' or 'pandas'")
    import dask.dataframe as dd

    if not groups:
        return dd.from_pandas(store_meta(wanted), npartitions=1)
    ddf = dd.from_map(read_part, groups, columns=wanted, meta=store_meta(wanted), label="exo-store",
                      enforce_metadata=False, start=low, end=high)
    return mark_site_partitioned(ddf)


def _day_overlaps(path: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
    """Whether the day folder of a store file can hold events between ``start`` and ``end``."""
    if start is None and end is None:
        return True
    day = Path(path).parent.name.removeprefix("day=")
    if day == NO_DAY:
        return False
    first = pd.Timestamp(day, tz="UTC")
    return (start is None or first + pd.Timedelta(days=1) > start) and (end is None or first <= end)
