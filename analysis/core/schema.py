"""The canonical events table: column names, dtypes and helpers that enforce them.

This is the contract of docs/design.md ("Canonical events table"). Every reader produces exactly
these columns; absent facts are NA, never invented. Tag columns are added by :func:`analysis.tag`.
"""

from __future__ import annotations

import pandas as pd

STRING = pd.StringDtype("pyarrow")
TIMESTAMP = "datetime64[ns, UTC]"

DIRECTIONS = ("outbound", "inbound", "internal", "unknown")
EVENTS = (
    "receive", "submit", "send", "deliver", "defer", "fail", "drop",
    "expand", "transfer", "resolve", "other",
)
STATUSES = (
    "delivered", "pending", "failed", "expanded", "quarantined",
    "filtered_as_spam", "getting_status", "none",
)
CAUSES = (
    "bad_address", "mailbox_disabled", "mailbox_full", "recipient_server_down", "dns_failure",
    "gateway_block", "reputation_blocklist", "greylisting", "rate_limited", "auth_policy",
    "tls_required", "content_rejected", "message_too_large", "sender_restricted", "routing_config",
    "unknown",
)
# how the cause of a row was found (analysis.reference.causes: classify_replies' column "confidence"): a rule
# matching the reply's text, its enhanced status code, its code class only, or nothing
CONFIDENCES = ("text", "code", "class", "none")

# column -> dtype, in the order the table is shown
EVENT_COLUMNS: dict[str, object] = {
    "timestamp": TIMESTAMP,
    "message_id": STRING,
    "trace_id": STRING,
    "sender": STRING,
    "recipient": STRING,
    "recipient_domain": "category",
    "subject": STRING,
    "size_bytes": "Int64",
    "direction": pd.CategoricalDtype(DIRECTIONS),
    "event": pd.CategoricalDtype(EVENTS),
    "status": pd.CategoricalDtype(STATUSES),
    "reply": STRING,
    "remote_reply": STRING,
    "smtp_code": "Int16",
    "enhanced_code": STRING,
    "remote_host": STRING,
    "remote_ip": STRING,
    "exo_host": STRING,
    "exo_ip": STRING,
    "client_ip": STRING,
    "connector": STRING,
    "source_format": "category",
    "source_file": "category",
    "source_row": "Int64",
}

TAG_COLUMNS: dict[str, object] = {
    "cause": pd.CategoricalDtype(CAUSES),
    "transient": "boolean",
    "cause_rule": STRING,
    "cause_confidence": pd.CategoricalDtype(CONFIDENCES),
    "cause_evidence": STRING,
    "remote_in_m365": "boolean",
    "exo_ip_published": "boolean",
    "endpoint_set": "Int64",
    "gateway": "category",
}
# what tagging adds besides: the cause's explanation and remedy (text of the cause rules, few distinct values)
EXTRA_TAG_COLUMNS: dict[str, object] = {"cause_explanation": "category", "remedy": "category"}

def empty_events() -> pd.DataFrame:
    """An events table with no rows and every canonical column in its dtype."""
    return conform(pd.DataFrame(index=pd.RangeIndex(0)))


def conform(frame: pd.DataFrame, columns: dict[str, object] = EVENT_COLUMNS) -> pd.DataFrame:
    """Return ``frame`` with exactly ``columns`` (missing ones as NA) in their canonical dtypes.

    Extra columns are kept after the canonical ones so callers may carry their own data along.
    """
    out = {}
    n = len(frame)
    for name, dtype in columns.items():
        if name in frame.columns:
            out[name] = _as_dtype(frame[name], dtype)
        else:
            out[name] = pd.Series(pd.array([pd.NA] * n, dtype=_na_dtype(dtype)), index=frame.index)
            out[name] = _as_dtype(out[name], dtype)
    extras = [c for c in frame.columns if c not in columns]
    result = pd.DataFrame(out, index=frame.index)
    for name in extras:
        result[name] = frame[name]
    return result


def _na_dtype(dtype: object) -> object:
    if dtype == TIMESTAMP:
        return TIMESTAMP
    if isinstance(dtype, pd.CategoricalDtype) or dtype == "category":
        return STRING
    return dtype


def _as_dtype(series: pd.Series, dtype: object) -> pd.Series:
    if dtype == TIMESTAMP:
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            return series.dt.tz_convert("UTC").astype(TIMESTAMP)
        return pd.to_datetime(series, utc=True).astype(TIMESTAMP)
    if isinstance(dtype, pd.CategoricalDtype) and dtype.categories is not None:
        values = series.astype("object").where(series.notna(), None)
        return pd.Series(pd.Categorical(values, categories=dtype.categories), index=series.index)
    if dtype == "category":
        if isinstance(series.dtype, pd.CategoricalDtype):
            return series
        return series.astype(STRING).astype("category")
    if series.dtype == dtype:
        return series
    return series.astype(dtype)


def check_events(frame: pd.DataFrame, columns: dict[str, object] = EVENT_COLUMNS) -> list[str]:
    """List every way ``frame`` breaks the canonical schema (empty list: it conforms)."""
    problems = []
    for name, dtype in columns.items():
        if name not in frame.columns:
            problems.append(f"missing column {name!r}")
            continue
        actual = frame[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            if not isinstance(actual, pd.CategoricalDtype) or (
                dtype.categories is not None and list(actual.categories) != list(dtype.categories)
            ):
                problems.append(f"column {name!r} is {actual}, expected {dtype}")
        elif dtype == "category":
            if not isinstance(actual, pd.CategoricalDtype):
                problems.append(f"column {name!r} is {actual}, expected category")
        elif str(actual) != str(pd.api.types.pandas_dtype(dtype)):
            problems.append(f"column {name!r} is {actual}, expected {dtype}")
    return problems
