"""Pure functions behind the widget views: filtering, sorting, paging and choosing rows of a DataFrame.

No widgets here: every function takes and returns plain pandas objects, so tests and notebooks can call them
directly and the views stay thin. The ones that choose rows of the events (a time window, messages of a domain or
cause, counts per domain or cause) live in :mod:`analysis.summaries.selections` (pandas and Dask) and are
imported here for the views.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.backends.operations import time_span
from analysis.core.concepts import as_utc
from analysis.core.schema import STRING
from analysis.summaries.selections import (
    PROBLEM_EVENTS,
    equals_text,
    in_time,
    message_key_set,
    message_keys,
    pair_keys,
    problem_counts,
    select_messages,
)

__all__ = ["HOURLY_SPAN", "PROBLEM_EVENTS", "as_utc", "choice_label", "equals_text", "filter_rows", "in_time",
           "message_key_set", "message_keys", "page_count", "page_rows", "pair_keys", "problem_counts",
           "select_messages", "sort_rows", "text_columns", "time_steps"]
HOURLY_SPAN = pd.Timedelta(days=31)  # longer traces are stepped by day on the time slider


# ---------------------------------------------------------------- tables

def text_columns(frame: pd.DataFrame) -> list[str]:
    """Columns holding text or categories (the ones a free-text filter searches)."""
    return [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)
            or pd.api.types.is_string_dtype(frame[c].dtype) or frame[c].dtype == object]


def filter_rows(frame: pd.DataFrame, text: str, column: str | None = None) -> pd.DataFrame:
    """Rows where ``column`` (default: any text column) contains ``text``, case-insensitive and literal."""
    needle = text.strip()
    if not needle or frame.empty:
        return frame
    columns = [column] if column else text_columns(frame)
    mask = pd.Series(False, index=frame.index)
    for name in columns:
        values = frame[name]
        if isinstance(values.dtype, pd.CategoricalDtype):
            hits = values.cat.categories.astype(str).str.contains(needle, case=False, regex=False)
            mask |= values.isin(values.cat.categories[hits])
        else:
            mask |= values.astype(STRING).str.contains(needle, case=False, regex=False).fillna(False).astype(bool)
    return frame[mask]


def sort_rows(frame: pd.DataFrame, column: str | None, ascending: bool = True) -> pd.DataFrame:
    """``frame`` sorted by ``column`` (stable, blanks last); unchanged when ``column`` is None or unknown."""
    if not column or column not in frame.columns:
        return frame
    values = frame[column]
    if isinstance(values.dtype, pd.CategoricalDtype):  # categories sort by their order; people expect A-Z
        values = values.astype(STRING)
    order = values.sort_values(ascending=ascending, kind="stable", na_position="last").index
    return frame.loc[order]


def page_count(rows: int, size: int) -> int:
    """Pages needed for ``rows`` rows (at least one, so an empty table still has page 1)."""
    return max(1, math.ceil(rows / size))


def page_rows(frame: pd.DataFrame, page: int, size: int) -> pd.DataFrame:
    """Rows of the 1-based ``page`` (clamped to the pages there are)."""
    page = min(max(1, page), page_count(len(frame), size))
    return frame.iloc[(page - 1) * size: page * size]


# ---------------------------------------------------------------- time

def time_steps(timestamps: pd.Series) -> list[pd.Timestamp]:
    """Slider stops covering ``timestamps``: every hour (every day for traces longer than a month)."""
    stamps = pd.to_datetime(pd.Series(time_span(timestamps.to_frame(name="timestamp"))), utc=True).dropna()
    if stamps.empty:
        return []
    freq = "h" if stamps.max() - stamps.min() <= HOURLY_SPAN else "D"
    first, last = stamps.min().floor(freq), stamps.max().ceil(freq)
    if last == first:
        last = first + pd.Timedelta(1, unit=freq)
    return list(pd.date_range(first, last, freq=freq))


# ---------------------------------------------------------------- domains, causes, messages

def choice_label(value: str, problem_events: int, problem_messages: int) -> str:
    """``value — 1 message, 3 deferrals/failures``: a drop-down entry with its counts and their units."""
    if not problem_events:
        return value
    messages = "message" if problem_messages == 1 else "messages"
    return f"{value} — {problem_messages:,} {messages}, {problem_events:,} deferrals/failures"
