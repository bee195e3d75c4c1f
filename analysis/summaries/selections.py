"""Choosing events for the views: a time window, the messages of a domain or cause, counts per domain or cause.

Pure functions on the tagged table (pandas), each with its Dask version registered beside it (see
:mod:`analysis.backends.dispatch`): a selection stays a lazy Dask DataFrame partitioned by site (the summaries
take it without a shuffle), counts are summed over the partitions (a message+recipient lies in one partition).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.backends import dask as engine
from analysis.backends.dispatch import dispatch
from analysis.core.concepts import message_key, pair_key
from analysis.core.schema import STRING
from analysis.summaries import tables
from analysis.summaries.tables import problem_counts

__all__ = ["PROBLEM_EVENTS", "equals_text", "in_time", "message_journey_rows", "message_key_set", "message_keys",
           "pair_keys", "problem_counts", "select_messages"]

PROBLEM_EVENTS = ("defer", "fail", "drop")


def message_keys(frame: pd.DataFrame) -> pd.Series:
    """One key per message and recipient (:func:`analysis.core.concepts.pair_key`)."""
    return pair_key(message_key(frame["trace_id"], frame["message_id"]), frame["recipient"])


def pair_keys(timelines: pd.DataFrame) -> pd.Series:
    """The :func:`message_keys` of the rows of :func:`analysis.summaries.tables.message_timelines`."""
    return pair_key(timelines["message"], timelines["recipient"])


@dispatch
def message_key_set(frame: pd.DataFrame) -> set[str]:
    """The distinct :func:`message_keys` of ``frame``."""
    return set(message_keys(frame).dropna())


@message_key_set.register_dask
def _message_key_set_dask(data: Any) -> set[str]:
    return set().union(*engine.map_sites(data, message_key_set, columns=["trace_id", "message_id", "recipient"]))


def equals_text(values: pd.Series, wanted: str) -> pd.Series:
    """``values == wanted`` ignoring case (NA is False); a categorical is compared on its categories only."""
    wanted = wanted.lower()
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = values.cat.categories
        return pd.Series(values.isin(categories[categories.astype(str).str.lower() == wanted]), index=values.index)
    return values.astype(STRING).str.lower().eq(wanted).fillna(False).astype(bool)


@dispatch
def in_time(frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None,
            column: str = "timestamp") -> pd.DataFrame:
    """Rows with ``start <= column <= end`` (an open end when None)."""
    mask = pd.Series(True, index=frame.index)
    if start is not None:
        mask &= frame[column] >= start
    if end is not None:
        mask &= frame[column] <= end
    return frame[mask.fillna(False).astype(bool)]


@in_time.register_dask
def _in_time_dask(data: Any, start: pd.Timestamp | None, end: pd.Timestamp | None, column: str = "timestamp") -> Any:
    return engine.transform_sites(data, in_time, start, end, column)


@dispatch
def select_messages(tagged: pd.DataFrame, domain: str | None = None, cause: str | None = None) -> pd.DataFrame:
    """Every event of the messages to ``domain`` that had at least one event with ``cause`` (None: any)."""
    rows = tagged
    if domain:
        rows = rows[equals_text(rows["recipient_domain"], domain).to_numpy()]
    if cause:
        keys = message_keys(rows)
        hit = equals_text(rows["cause"], cause).to_numpy()
        rows = rows[keys.isin(set(keys[hit].dropna())).fillna(False).to_numpy(dtype=bool)]
    return rows


@select_messages.register_dask
def _select_messages_dask(data: Any, domain: str | None = None, cause: str | None = None) -> Any:
    return engine.transform_sites(data, select_messages, domain, cause)


def message_journey_rows(data: Any, trace_id_or_message_id: str, recipient: str | None = None) -> pd.DataFrame:
    """The rows of one message (and recipient) of a Dask DataFrame or a store, found on every partition (one pass),
    in table order: what :func:`analysis.summaries.tables.message_journey` needs."""
    ddf = engine.site_partitioned(data)
    rows = ddf.map_partitions(tables.journey_rows, trace_id_or_message_id, recipient, meta=ddf._meta).compute()
    return rows.iloc[np.argsort(rows[engine.SEQ].to_numpy(), kind="stable")].drop(columns=engine.SEQ)


@tables.message_journey.register_dask
def _message_journey_dask(data: Any, trace_id_or_message_id: str, recipient: str | None = None) -> pd.DataFrame:
    return tables.message_journey(message_journey_rows(data, trace_id_or_message_id, recipient),
                                  trace_id_or_message_id, recipient)
