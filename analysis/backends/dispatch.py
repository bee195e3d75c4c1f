"""Choosing the backend of a summary (and of :func:`analysis.tagging.tag.tag`) by the type of its input, in one place.

``@dispatch`` turns a pandas function into a :func:`functools.singledispatch` function. Its Dask version is
registered with ``function.register_dask(implementation)`` and bound to the Dask DataFrame type lazily, on the
first call after ``dask.dataframe`` was imported (it is imported by whoever made a Dask DataFrame; skrub's
``_dispatch`` does the same: https://github.com/skrub-data/skrub/blob/main/skrub/_dispatch.py, BSD-3-Clause). A
store folder (text or a path naming a folder made by ``exo-deferrals ingest``) goes to the Dask version too,
which reads it with :func:`analysis.backends.store.open_store`; any other path is an error naming it.

A summary is declared once as a :class:`Summary` (a per-partition step and a combine step) and made public with
``@summary(definition)``: on pandas it runs ``combine([step(frame)])``, on Dask
:func:`analysis.backends.dask.run_summary` distributes the same two steps.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.backends.dask import run_summary
from analysis.backends.store import is_store

__all__ = ["Summary", "dispatch", "run_pandas", "summary"]


def dispatch(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (its first argument: a pandas DataFrame) dispatching on that argument's type; see the module."""
    generic = functools.singledispatch(function)
    dask_versions: list[Callable[..., Any]] = []

    def bind_dask() -> None:
        if dask_versions and "dask.dataframe" in sys.modules:
            import dask.dataframe as dd

            generic.register(dd.DataFrame, dask_versions[0])
            dask_versions.clear()

    def on_path(data: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_store(data):
            raise TypeError(f"{function.__name__}: {os.fspath(data)!r} is no store folder (made by `exo-deferrals "
                            "ingest`); pass the tagged events DataFrame, a Dask DataFrame or a store folder")
        return dask_version(data, *args, **kwargs)

    def dask_version(data: Any, *args: Any, **kwargs: Any) -> Any:
        import dask.dataframe as dd

        bind_dask()
        return generic.dispatch(dd.DataFrame)(data, *args, **kwargs)

    @functools.wraps(function)
    def wrapper(data: Any, *args: Any, **kwargs: Any) -> Any:
        if dask_versions:
            bind_dask()
        return generic.dispatch(type(data))(data, *args, **kwargs)

    def register_dask(implementation: Callable[..., Any]) -> Callable[..., Any]:
        dask_versions.append(implementation)
        generic.register(str, on_path)
        generic.register(os.PathLike, on_path)
        return implementation

    wrapper.register_dask = register_dask  # type: ignore[attr-defined]
    wrapper.dispatch = generic.dispatch  # type: ignore[attr-defined]
    return wrapper


@dataclass(frozen=True)
class Summary:
    """One summary, as the steps every backend runs (``options``: the public function's arguments by name).

    * ``step(partition, **options)``: pandas in, a partial out. With ``count``: a pair ``(partial, keys)``, the
      keys a DataFrame of distinct values that may repeat in other partitions (messages).
    * ``combine(partials, **options)`` (with ``count``: ``combine(partials, counted, **options)``): the result.
    * ``count(keys)``: the distinct counts, written with operations that mean the same on a pandas DataFrame of
      every partition's keys and on a Dask DataFrame of them (``drop_duplicates``, ``groupby().size()``).
    * ``regroup(partition, **options)``: for groups that span partitions, each row's group (NA: left out); the
      step then runs as ``step(rows, groups, **options)`` on whole groups (on one partition: ``groups`` is None).
    * ``whole(start, end, options)``: the options after the values that need the whole trace first (its time span
      ``start``, ``end``: Timestamps or None).
    * ``check(frame, **options)``: raises on a frame (or a Dask frame's empty meta) or options the summary cannot
      take, before anything is computed. ``columns``: what ``step`` reads (a store reads only those).
    """

    step: Callable[..., Any]
    combine: Callable[..., Any]
    check: Callable[..., None]
    columns: tuple[str, ...]
    count: Callable[[Any], Any] | None = None
    regroup: Callable[..., Any] | None = None
    whole: Callable[..., dict[str, Any]] | None = None


def run_pandas(definition: Summary, frame: Any, options: dict[str, Any]) -> Any:
    """``definition`` on one pandas partition: ``combine([step(frame)])`` (see :class:`Summary`)."""
    definition.check(frame, **options)
    if definition.whole is not None:
        low, high = frame["timestamp"].min(), frame["timestamp"].max()
        options = definition.whole(None if pd.isna(low) else low, None if pd.isna(high) else high, options)
    if definition.regroup is not None:
        return definition.combine([definition.step(frame, None, **options)], **options)
    if definition.count is None:
        return definition.combine([definition.step(frame, **options)], **options)
    partial, keys = definition.step(frame, **options)
    return definition.combine([partial], definition.count(keys), **options)


def summary(definition: Summary) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Makes a function (its signature and docstring; its body is not run) the summary ``definition``: dispatching
    on its first argument's type, pandas running :func:`run_pandas`, Dask and stores
    :func:`analysis.backends.dask.run_summary`. Arguments reach the steps by name, defaults applied."""
    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(function)

        def options(*args: Any, **kwargs: Any) -> dict[str, Any]:
            bound = signature.bind(None, *args, **kwargs)
            bound.apply_defaults()
            return dict(list(bound.arguments.items())[1:])

        @functools.wraps(function)
        def on_pandas(tagged: Any, *args: Any, **kwargs: Any) -> Any:
            return run_pandas(definition, tagged, options(*args, **kwargs))

        def on_dask(data: Any, *args: Any, **kwargs: Any) -> Any:
            return run_summary(definition, data, options(*args, **kwargs))

        public = dispatch(on_pandas)
        public.register_dask(on_dask)
        public.definition = definition  # type: ignore[attr-defined]
        return public
    return wrap
