"""Pure functions behind the widget views: filtering, sorting, paging and choosing rows of a DataFrame.

No widgets here: every function takes and returns plain pandas objects, so tests and notebooks can call them
directly and the views stay thin. The ones that choose rows of the events (a time window, messages of a domain or
cause, counts per domain or cause) also take a Dask DataFrame or a store and then run per partition
(:mod:`analysis.backends.rows`), returning a lazy Dask selection or the same counts.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.backends import rows as dask_rows
from analysis.backends.dask import is_dask, time_span
from analysis.core.schema import STRING

PROBLEM_EVENTS = ("defer", "fail", "drop")
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
    if is_dask(timestamps):  # a Dask column: only its first and last time matter
        timestamps = pd.Series(time_span(timestamps.to_frame()))
    stamps = pd.to_datetime(timestamps, utc=True).dropna()
    if stamps.empty:
        return []
    freq = "h" if stamps.max() - stamps.min() <= HOURLY_SPAN else "D"
    first, last = stamps.min().floor(freq), stamps.max().ceil(freq)
    if last == first:
        last = first + pd.Timedelta(1, unit=freq)
    return list(pd.date_range(first, last, freq=freq))


def in_time(frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None,
            column: str = "timestamp") -> pd.DataFrame:
    """Rows with ``start <= column <= end`` (an open end when None)."""
    if is_dask(frame):
        return dask_rows.rows_where(frame, in_time, start, end, column)
    mask = pd.Series(True, index=frame.index)
    if start is not None:
        mask &= frame[column] >= start
    if end is not None:
        mask &= frame[column] <= end
    return frame[mask.fillna(False).astype(bool)]


def as_utc(value: object) -> pd.Timestamp | None:
    """A UTC Timestamp from text, datetime or Timestamp (naive values are taken as UTC); None stays None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# ---------------------------------------------------------------- domains, causes, messages

def message_keys(frame: pd.DataFrame) -> pd.Series:
    """One key per message and recipient: ``trace_id`` (else ``message_id``) and the recipient."""
    message = frame["trace_id"].astype(STRING).fillna(frame["message_id"].astype(STRING)).fillna("")
    return message + " → " + frame["recipient"].astype(STRING).fillna("")


def message_key_set(frame: pd.DataFrame) -> set[str]:
    """The distinct :func:`message_keys` of ``frame`` (a Dask selection: computed per partition)."""
    return dask_rows.distinct(frame, message_keys) if is_dask(frame) else set(message_keys(frame))


def equals_text(values: pd.Series, wanted: str) -> pd.Series:
    """``values == wanted`` ignoring case (NA is False); a categorical is compared on its categories only."""
    wanted = wanted.lower()
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = values.cat.categories
        return pd.Series(values.isin(categories[categories.astype(str).str.lower() == wanted]), index=values.index)
    return values.astype(STRING).str.lower().eq(wanted).fillna(False).astype(bool)


def problem_counts(tagged: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per value of ``column``: deferral/failure events and messages, most affected first, then A-Z.

    Every value that occurs is listed (with zero counts when nothing was deferred).
    """
    if is_dask(tagged):
        return dask_rows.problem_counts(tagged, column)
    problems = tagged[tagged["event"].isin(PROBLEM_EVENTS).to_numpy()]
    message = pd.factorize(problems["trace_id"].astype(STRING).fillna(problems["message_id"].astype(STRING)))[0]
    recipient = pd.factorize(problems["recipient"].astype(STRING))[0]
    pair = (message.astype(np.int64) + 1) * (recipient.max(initial=0) + 2) + recipient + 1  # one int per pair
    counts = pd.DataFrame({column: problems[column].astype(STRING), "pair": pair}).dropna(
        subset=[column]).groupby(column).agg(problem_events=("pair", "size"), problem_messages=("pair", "nunique"))
    present = tagged[column].dropna().unique()
    every = pd.Index([str(v) for v in present], dtype=object, name=column)
    counts = counts.reindex(every, fill_value=0).reset_index()
    counts = counts.sort_values(["problem_events", column], ascending=[False, True], kind="stable")
    return counts.reset_index(drop=True)


def choice_label(value: str, problem_events: int, problem_messages: int) -> str:
    if not problem_events:
        return value
    return f"{value} — {problem_messages:,} messages, {problem_events:,} deferrals/failures"


def select_messages(tagged: pd.DataFrame, domain: str | None = None, cause: str | None = None) -> pd.DataFrame:
    """Every event of the messages to ``domain`` that had at least one event with ``cause`` (None: any)."""
    if is_dask(tagged):
        return dask_rows.rows_where(tagged, select_messages, domain, cause)
    rows = tagged
    if domain:
        rows = rows[equals_text(rows["recipient_domain"], domain).to_numpy()]
    if cause:
        keys = message_keys(rows)
        hit = equals_text(rows["cause"], cause).to_numpy()
        rows = rows[keys.isin(set(keys[hit]))]
    return rows


def pair_keys(timelines: pd.DataFrame) -> pd.Series:
    """The :func:`message_keys` of the rows of :func:`analysis.summaries.tables.message_timelines`."""
    return timelines["message"].astype(STRING).fillna("") + " → " + timelines["recipient"].astype(STRING).fillna("")

