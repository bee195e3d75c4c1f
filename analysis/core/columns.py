"""Whole-column helpers: do string work once per distinct value, then spread the result back."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa


def map_unique(values: pd.Series, transform: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``transform`` applied to the distinct values of ``values`` only, spread back to every row (NA stays NA)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    result = transform(pd.Series(uniques, dtype=values.dtype if len(uniques) else object))
    return spread(result, codes, values.index)


def spread(result: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Row ``i`` of the output is ``result[codes[i]]`` (NA where the code is -1)."""
    taken = result.array.take(codes, allow_fill=True)
    return pd.Series(taken, index=index, name=result.name)


def to_arrow(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """The values as an Arrow string array (no copy for Arrow-backed strings)."""
    return pa.array(values.array if hasattr(values.array, "__arrow_array__") else values.astype("string").array,
                    type=pa.string())
