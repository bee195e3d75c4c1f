"""Choosing the backend of a summary (and of :func:`analysis.tagging.tag.tag`) by the type of its input, in one place.

``@dispatch`` turns a pandas function into a :func:`functools.singledispatch` function. Its Dask version is
registered with ``function.register_dask(implementation)`` and bound to the Dask DataFrame type lazily, on the
first call after ``dask.dataframe`` was imported (it is imported by whoever made a Dask DataFrame; skrub's
``_dispatch`` does the same: https://github.com/skrub-data/skrub/blob/main/skrub/_dispatch.py, BSD-3-Clause). A
store folder (text or a path naming a folder made by ``exo-deferrals ingest``) goes to the Dask version too,
which reads it with :func:`analysis.backends.store.open_store`; any other path is an error naming it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from analysis.backends.store import is_store

__all__ = ["dispatch"]


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
