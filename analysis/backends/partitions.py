"""Partitions that hold whole sites: the names, markers and category fixes every Dask step shares.

No Dask import here (plain pandas on one partition): :mod:`analysis.backends.store` and
:mod:`analysis.backends.dask` build on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["OPEN_CATEGORIES", "SEQ", "SITE", "STORE_MANIFEST", "as_text", "is_site_partitioned",
           "mark_site_partitioned", "with_categories"]

STORE_MANIFEST = "_manifest.json"  # the file that makes a folder a store (analysis.store.ingest)
SEQ = "_seq"  # the table's row order (int64, ascending)
SITE = "_site"  # shuffle key
# open categoricals (categories = the values present): put in one order on every partition
OPEN_CATEGORIES = ("recipient_domain", "source_format", "source_file", "gateway", "cause_explanation", "remedy")
# partitions known to hold whole sites in table order, by the name of their Dask collection
_SITE_PARTITIONED: set[str] = set()


def mark_site_partitioned(ddf: Any) -> Any:
    """Record that ``ddf``'s partitions hold whole sites in table order (so they are not shuffled again)."""
    _SITE_PARTITIONED.add(ddf._name)
    return ddf


def is_site_partitioned(ddf: Any) -> bool:
    """Whether :func:`mark_site_partitioned` marked ``ddf``."""
    return ddf._name in _SITE_PARTITIONED


def with_categories(part: pd.DataFrame, categories: dict[str, list | None] | None = None) -> pd.DataFrame:
    """Open categoricals with the given categories (None or missing: their values, sorted)."""
    categories = categories or {}
    changes = {}
    for name in OPEN_CATEGORIES:
        if name in part and isinstance(part[name].dtype, pd.CategoricalDtype):
            wanted = categories.get(name)
            if wanted is None:
                wanted = sorted(part[name].cat.categories[np.unique(part[name].cat.codes[part[name].cat.codes >= 0])]
                                .tolist())
            if list(part[name].cat.categories) != list(wanted):
                changes[name] = part[name].cat.set_categories(wanted)
    return part.assign(**changes) if changes else part


def as_text(part: pd.DataFrame) -> pd.DataFrame:
    """Open categoricals as strings, for a shuffle: their categories differ between partitions, which a P2P
    shuffle cannot always unify."""
    opened = {name: part[name].astype("string[pyarrow]") for name in OPEN_CATEGORIES
              if name in part and isinstance(part[name].dtype, pd.CategoricalDtype)}
    return part.assign(**opened) if opened else part
