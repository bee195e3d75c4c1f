"""The summaries on Dask: each one's per-partition step and how the partitions' results combine.

Every summary works inside a site (:mod:`analysis.backends.dask`), whose partitions hold whole
message+recipients, so most summaries run the pandas function of :mod:`analysis.summaries.tables` on every
partition (:func:`analysis.backends.dask.map_sites`) and combine the results: concatenated and sorted (domains,
message timelines, retry intervals, queue ages) or summed (the hourly trend). Groups that span sites (a gateway, a
connector, a source range) are regrouped first (:func:`analysis.backends.dask.regroup`). ``headline``,
``top_replies`` and ``summarize_causes`` count distinct messages, which can span partitions: their per-partition
step returns partial counts that are added up here. Values that need the whole trace (its time span, the ``now``
of ``queue_ages``) are computed first. Each function here is registered as the Dask version of its namesake in
:mod:`analysis.summaries.tables` (see :mod:`analysis.backends.dispatch`); call those.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from analysis.backends import dask as engine
from analysis.backends.dask import GROUP, SEQ, as_text
from analysis.core.concepts import as_utc, message_key, pair_key
from analysis.core.schema import CAUSES, STRING
from analysis.summaries import tables as s

__all__ = ["by_connector", "by_gateway", "deferral_rate_by_source_range", "deferrals_by_hour", "headline",
           "message_timelines", "queue_ages", "retry_intervals", "summarize_causes", "summarize_domains",
           "top_replies"]

_NAT, _NEVER = s.NAT, s.NEVER

_EXTRA_COLUMNS = {
    "message_timelines": ("sender", "subject", "remote_host", "remote_ip", "exo_host", "exo_ip"),
    "summarize_domains": ("gateway",),
    "headline": ("gateway",),
    "by_gateway": ("gateway",),
    "by_connector": ("connector",),
    "deferral_rate_by_source_range": ("exo_ip", "exo_ip_published"),
}


def _site_frame(data: Any, function: str) -> Any:
    """The site-partitioned input of summary ``function`` with only the columns it reads, checked like the
    pandas function checks it (before anything is computed)."""
    extra = _EXTRA_COLUMNS.get(function, ())
    ddf = engine.site_frame(data, [*s.REQUIRED, *extra])
    s.check_tagged(ddf._meta, tuple(extra))
    return ddf


def _span(results: Iterable[Any]) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The whole trace's start and end from the ``attrs`` of per-partition results."""
    starts = [r.attrs.get("start") for r in results if r.attrs.get("start") is not None]
    ends = [r.attrs.get("end") for r in results if r.attrs.get("end") is not None]
    return (min(starts) if starts else None), (max(ends) if ends else None)


def _stamped(frame: pd.DataFrame, start: Any, end: Any) -> pd.DataFrame:
    frame.attrs.update(start=start, end=end)
    return frame


def _pair_first_seq(part: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    """Per message+recipient of the partition (summaries' key: trace id, else message id, and recipient): the
    ``_seq`` of its first row among the rows ``direction`` selects."""
    rows = part if direction is None else part[part["direction"].isin([direction]).to_numpy(dtype=bool)]
    key = _pair_key(message_key(rows["trace_id"], rows["message_id"]), rows["recipient"])
    first = pd.Series(rows[SEQ].to_numpy(), index=key).groupby(level=0, sort=False).min()
    return pd.DataFrame({"_pair": first.index.to_numpy(dtype=object), "_first_seq": first.to_numpy()})


def _pair_key(message: pd.Series, recipient: pd.Series) -> np.ndarray:
    return pair_key(message, recipient).to_numpy(dtype=object)


# ---------------------------------------------------------------- per domain

def summarize_domains(data: Any, *, sort: str = "impact", direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.summarize_domains` on a Dask DataFrame or a store (equal results)."""
    ddf = _site_frame(data, "summarize_domains")
    parts = engine.map_sites(ddf, _call, "summarize_domains", {"sort": sort, "direction": direction})
    out = _sort_groups(pd.concat(parts, ignore_index=True), "recipient_domain", sort)
    return _stamped(out, *_span(parts))


def _call(part: pd.DataFrame, name: str, kwargs: dict[str, Any]) -> Any:
    return getattr(s, name)(part, **kwargs)


def _sort_groups(out: pd.DataFrame, name: str, sort: str) -> pd.DataFrame:
    keys, ascending = s.SORTS[sort]
    return out.sort_values([*keys, name], ascending=[ascending] * len(keys) + [True], na_position="last",
                           kind="stable", ignore_index=True)


# ---------------------------------------------------------------- queue ages

def queue_ages(data: Any, now: Any = None, *, rollup_parent: bool = False, min_subdomains: int = 5,
               direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.queue_ages` on a Dask DataFrame or a store; ``now`` defaults to the whole
    trace's last timestamp, computed first."""
    ddf = _site_frame(data, "queue_ages")
    start, end = engine.time_span(ddf)
    reference = end if now is None else as_utc(now)
    if reference is None:
        reference = pd.NaT
    parts = engine.map_sites(ddf, _call, "queue_ages", {"now": reference, "direction": direction})
    buckets = list(s.AGE_BUCKETS)
    counts = pd.concat([p.drop(index="TOTAL")[buckets] for p in parts])
    counts = counts[counts.sum(axis=1).to_numpy() > 0]
    out = s.queue_table(counts, rollup_parent, min_subdomains)
    _stamped(out, start, end)
    out.attrs["now"] = None if pd.isna(reference) else reference
    return out


# ---------------------------------------------------------------- one row per message+recipient / retry

def message_timelines(data: Any, *, direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.message_timelines` on a Dask DataFrame or a store (one row per
    message+recipient: the result has to fit in this process)."""
    ddf = _site_frame(data, "message_timelines")
    parts = engine.map_sites(ddf, _timelines_part, direction)
    out = pd.concat(parts, ignore_index=True)
    first_seen = out["first_seen"].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view(np.int64)
    order = pd.DataFrame({
        "seen": np.where(first_seen == _NAT, _NEVER, first_seen),
        "recipient": out["recipient"].to_numpy(dtype=object, na_value=""),
        "first": out["_first_seq"].to_numpy(),
    }).sort_values(["seen", "recipient", "first"], kind="stable").index.to_numpy()
    out = out.iloc[order].drop(columns=["_pair", "_first_seq"]).reset_index(drop=True)
    return _stamped(out, *_span(parts))


def _timelines_part(part: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    out = s.message_timelines(part, direction=direction)
    return _with_first_seq(out, _pair_key(out["message"], out["recipient"]), part, direction)


def _with_first_seq(out: pd.DataFrame, key: np.ndarray, part: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    attrs = dict(out.attrs)
    first = _pair_first_seq(part, direction).set_index("_pair")["_first_seq"]
    out = out.assign(_pair=key, _first_seq=first.reindex(key).to_numpy())
    out.attrs.update(attrs)
    return out


def retry_intervals(data: Any, *, direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.retry_intervals` on a Dask DataFrame or a store (the result has to fit here)."""
    ddf = _site_frame(data, "retry_intervals")
    parts = engine.map_sites(ddf, _retries_part, direction)
    out = pd.concat(parts, ignore_index=True)
    out = out.iloc[np.argsort(out["_first_seq"].to_numpy(), kind="stable")]
    return _stamped(out.drop(columns=["_pair", "_first_seq"]).reset_index(drop=True), *_span(parts))


def _retries_part(part: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    out = s.retry_intervals(part, direction=direction)
    return _with_first_seq(out, _pair_key(out["message"], out["recipient"]), part, direction)


# ---------------------------------------------------------------- trend

def deferrals_by_hour(data: Any, *, freq: str = "1h", direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.deferrals_by_hour` on a Dask DataFrame or a store (equal results)."""
    step = pd.Timedelta(freq)
    if step <= pd.Timedelta(0):
        raise ValueError(f"freq {freq!r}: expected a positive period such as '1h' or '1D'")
    ddf = _site_frame(data, "deferrals_by_hour")
    parts = engine.map_sites(ddf, _call, "deferrals_by_hour", {"freq": freq, "direction": direction})
    start, end = _span(parts)
    if start is None:
        index = pd.DatetimeIndex([], tz="UTC", name="period")
        out = pd.DataFrame(np.zeros((0, len(CAUSES)), dtype=np.int64), index=index, columns=list(CAUSES))
    else:
        first = start.floor(step)
        index = pd.date_range(first, periods=int((end.floor(step) - first) // step) + 1, freq=step, name="period")
        matrix = np.zeros((len(index), len(CAUSES)), dtype=np.int64)
        for part in parts:
            if len(part):
                matrix += part.reindex(index=index, columns=list(CAUSES), fill_value=0).to_numpy(dtype=np.int64)
        out = pd.DataFrame(matrix, index=index, columns=list(CAUSES))
    out.columns.name = "cause"
    _stamped(out, start, end)
    out.attrs["freq"] = step
    return out


# ---------------------------------------------------------------- re-aggregated groups: replies, causes

def _reply_rows(part: pd.DataFrame, direction: str | None, by: str) -> pd.DataFrame:
    """The deferral and failure rows of a partition as s.top_replies (``by="reply"``) or
    summarize_causes (``by="cause"``) count them: group key, kind, pair, message, domain, time, order."""
    t = s.prepare(part, direction)
    cause = t.causes()
    if by == "reply":
        chosen = np.flatnonzero(np.isin(t.kind, (s.DEFER, s.FAILED, s.EXPIRED)) & t.notna("reply"))
        replies = t.at(chosen, "reply")["reply"]
        text = s.normalize_replies(replies).to_numpy(dtype=object)
    else:
        chosen = np.flatnonzero(np.isin(t.kind, (s.DEFER, s.FAILED, s.EXPIRED)) & (cause >= 0))
        replies = pd.Series([None] * len(chosen), dtype=object)
        text = np.full(len(chosen), "", dtype=object)
    pair = t.pair[chosen]
    domain, labels = s.pair_domains(t)
    message = _message_keys(t, part)
    frame = pd.DataFrame({
        "text": text,
        "cause": cause[chosen],
        "defer": t.kind[chosen] == s.DEFER,
        "pair": pair,
        "message": message[pair],
        "domain": np.asarray(labels, dtype=object)[domain[pair]] if len(chosen) else np.zeros(0, dtype=object),
        "ns": t.ns()[chosen],
        "seq": part[SEQ].to_numpy()[t.positions[chosen]],
        "example": replies.astype(object).to_numpy(),
    })
    frame.attrs.update(start=s.or_none(t.start), end=s.or_none(t.end))
    return frame


def _message_keys(t: Any, part: pd.DataFrame) -> np.ndarray:
    """Per pair, its message as summaries count messages: the trace id, else the message id, else the pair itself
    (made unique across partitions by its first row's ``_seq``)."""
    trace = t.per_pair("trace_id").astype("string")
    message = t.per_pair("message_id").astype("string")
    seq = pd.Series(part[SEQ].to_numpy()[t.positions[t.first_row]]).astype("string")
    key = ("t" + trace).fillna("m" + message).fillna("p" + seq)
    return key.to_numpy(dtype=object)


_PARTIAL_META = {
    "part": np.int8, "text": object, "cause": np.int64, "events": np.int64, "deferrals": np.int64,
    "recipients": np.int64, "domains": np.int64, "first_seq": np.int64, "first_ns": np.int64, "last_ns": np.int64,
    "example": object, "domain": object, "message": object,
}
_GROUPS, _DOMAINS, _MESSAGES, _SPAN = range(4)  # kinds of rows of a partial


def _group_partials(part: pd.DataFrame, direction: str | None, by: str) -> pd.DataFrame:
    """A partition's share of top_replies (``by="reply"``) or summarize_causes (``by="cause"``), as rows of one
    frame: per group (part 0) counts, times and its earliest reply; per group and domain (1) events; the distinct
    group+message pairs (2); the partition's time span (3). Pairs and domains never span partitions, messages
    may: they are counted across partitions by Dask."""
    rows = _reply_rows(part, direction, by)
    keys = ["text", "cause"]
    pieces = []
    if len(rows):
        grouped = rows.groupby(keys, sort=False)
        dated = rows[rows["ns"] != _NAT].groupby(keys, sort=False)["ns"]
        groups = pd.DataFrame({
            "events": grouped.size(), "deferrals": grouped["defer"].sum(), "recipients": grouped["pair"].nunique(),
            "domains": grouped["domain"].nunique(), "first_seq": grouped["seq"].min(),
        })
        groups["first_ns"] = dated.min().reindex(groups.index, fill_value=_NEVER).to_numpy(dtype=np.int64)
        groups["last_ns"] = dated.max().reindex(groups.index, fill_value=_NAT).to_numpy(dtype=np.int64)
        earliest = rows.loc[grouped["seq"].idxmin().to_numpy()].set_index(keys)["example"]
        groups["example"] = earliest.reindex(groups.index).to_numpy()
        pieces.append(groups.reset_index().assign(part=_GROUPS))
        domains = rows.groupby([*keys, "domain"], sort=False).size().rename("events").reset_index()
        pieces.append(domains.assign(part=_DOMAINS))
        pieces.append(rows[[*keys, "message"]].drop_duplicates().assign(part=_MESSAGES))
    start, end = rows.attrs.get("start"), rows.attrs.get("end")
    pieces.append(pd.DataFrame({"part": [_SPAN], "first_ns": [_NEVER if start is None else start.value],
                                "last_ns": [_NAT if end is None else end.value]}))
    return pd.concat([pd.DataFrame({name: _filled(piece, name, dtype) for name, dtype in _PARTIAL_META.items()})
                      for piece in pieces], ignore_index=True)


def _filled(frame: pd.DataFrame, name: str, dtype: Any) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), None if dtype is object else 0, dtype=dtype)
    values = frame[name]
    if dtype is object:
        return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)
    default = _NEVER if name == "first_ns" else _NAT if name == "last_ns" else 0
    return values.fillna(default).to_numpy(dtype=dtype)


def _combined_groups(data: Any, direction: str | None, by: str
                     ) -> tuple[pd.DataFrame, pd.DataFrame, tuple[pd.Timestamp | None, pd.Timestamp | None]]:
    """Every partition's groups summed, the per-domain counts, distinct messages per group, and the span."""
    import dask

    ddf = _site_frame(data, "top_replies")
    keys = ["text", "cause"]
    meta = pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in _PARTIAL_META.items()})
    partials = ddf.map_partitions(_group_partials, direction, by, meta=meta)
    small = partials[partials["part"] != _MESSAGES]
    messages = partials[partials["part"] == _MESSAGES][[*keys, "message"]]
    distinct = messages.drop_duplicates().groupby(keys).size()
    small, counted = dask.compute(small, distinct)
    small = small.reset_index(drop=True)
    span = small[small["part"] == _SPAN]
    low, high = int(span["first_ns"].min()), int(span["last_ns"].max())
    start = None if low == _NEVER else pd.Timestamp(low, unit="ns", tz="UTC")
    end = None if high == _NAT else pd.Timestamp(high, unit="ns", tz="UTC")
    groups = small[small["part"] == _GROUPS]
    agg = groups.groupby(keys, sort=False).agg(
        events=("events", "sum"), deferrals=("deferrals", "sum"), recipients=("recipients", "sum"),
        domains=("domains", "sum"), first_seq=("first_seq", "min"), first_ns=("first_ns", "min"),
        last_ns=("last_ns", "max"))
    earliest = groups.loc[groups.groupby(keys, sort=False)["first_seq"].idxmin().to_numpy()].set_index(keys)
    agg["example"] = earliest["example"].reindex(agg.index).to_numpy()
    agg["messages"] = counted.reindex(agg.index, fill_value=0).to_numpy(dtype=np.int64)
    domains = small.loc[small["part"] == _DOMAINS, [*keys, "domain", "events"]].rename(columns={"events": "n"})
    return agg.reset_index(), domains, (start, end)


def _top_domains(domains: pd.DataFrame, keys: list[str], groups: pd.DataFrame, top: int = 3) -> pd.Series:
    """Per group (rows of ``groups``): its ``top`` domains as ``"a.com (12), b.com (3)"``, like
    s._top_labels (most events first, ties in category order: names sorted, "(no domain)" last)."""
    if not len(domains):
        return pd.Series(pd.array([pd.NA] * len(groups), dtype="string[pyarrow]"))
    ranked = domains.assign(_none=domains["domain"].eq("(no domain)"))
    ranked = ranked.sort_values([*keys, "n", "_none", "domain"], ascending=[True] * len(keys) + [False, True, True],
                                kind="stable")
    ranked = ranked[ranked.groupby(keys, sort=False).cumcount().to_numpy() < top]
    text = ranked["domain"].astype(str) + " (" + ranked["n"].astype(str) + ")"
    joined = text.groupby([ranked[k] for k in keys], sort=False).agg(", ".join)
    index = pd.MultiIndex.from_frame(groups[keys]) if len(keys) > 1 else pd.Index(groups[keys[0]])
    return pd.Series(pd.array(joined.reindex(index).to_numpy(dtype=object), dtype="string[pyarrow]"))


def _stamps(ns: pd.Series) -> pd.Series:
    """UTC timestamps from ns (the largest or smallest int64: NaT)."""
    values = ns.to_numpy(dtype=np.int64)
    return s.stamps(np.where(values == _NEVER, _NAT, values))


def top_replies(data: Any, n: int = 20, *, direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.top_replies` on a Dask DataFrame or a store: counts summed over partitions,
    distinct messages counted across them (equal results)."""
    groups, domains, (start, end) = _combined_groups(data, direction, "reply")
    events = groups["events"].to_numpy(dtype=np.int64)
    top = np.lexsort((groups["text"].astype(str).to_numpy(), -events))[:max(n, 0)]
    chosen = groups.iloc[top].reset_index(drop=True)
    out = pd.DataFrame({
        "reply": pd.array(chosen["text"].to_numpy(dtype=object), dtype=STRING),
        "cause": s.cause_categorical(chosen["cause"].to_numpy(dtype=np.int64)),
        "events": chosen["events"].to_numpy(dtype=np.int64),
        "deferrals": chosen["deferrals"].to_numpy(dtype=np.int64),
        "failures": (chosen["events"] - chosen["deferrals"]).to_numpy(dtype=np.int64),
        "messages": chosen["messages"].to_numpy(dtype=np.int64),
        "recipients": chosen["recipients"].to_numpy(dtype=np.int64),
        "domains": chosen["domains"].to_numpy(dtype=np.int64),
        "top_domains": _top_domains(domains, ["text", "cause"], chosen),
        "example": pd.array(chosen["example"].to_numpy(dtype=object), dtype=STRING),
        "first_seen": _stamps(chosen["first_ns"]),
        "last_seen": _stamps(chosen["last_ns"]),
    })
    return _stamped(out, start, end)


def summarize_causes(data: Any, *, direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.summarize_causes` on a Dask DataFrame or a store (equal results)."""
    groups, domains, (start, end) = _combined_groups(data, direction, "cause")
    k = len(CAUSES)
    full = groups.set_index("cause").reindex(range(k))
    events = full["events"].fillna(0).to_numpy(dtype=np.int64)
    out = pd.DataFrame({
        "cause": s.cause_categorical(np.arange(k)),
        "events": events,
        "deferrals": full["deferrals"].fillna(0).to_numpy(dtype=np.int64),
        "failures": (events - full["deferrals"].fillna(0).to_numpy(dtype=np.int64)),
        "recipients": full["recipients"].fillna(0).to_numpy(dtype=np.int64),
        "messages": full["messages"].fillna(0).to_numpy(dtype=np.int64),
        "domains": full["domains"].fillna(0).to_numpy(dtype=np.int64),
        "share": events / max(int(events.sum()), 1),
        "top_domains": _top_domains(domains, ["cause"], pd.DataFrame({"cause": np.arange(k)})),
    })
    out = out[events > 0].sort_values(["recipients", "events"], ascending=False, kind="stable", ignore_index=True)
    return _stamped(out, start, end)


# ---------------------------------------------------------------- groups across sites: gateway, connector, range

def by_gateway(data: Any, *, sort: str = "impact", direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.by_gateway` on a Dask DataFrame or a store (equal results)."""
    return _breakdown(data, "by_gateway", "gateway", "(not identified)", sort, direction)


def by_connector(data: Any, *, sort: str = "impact", direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.by_connector` on a Dask DataFrame or a store (equal results)."""
    return _breakdown(data, "by_connector", "connector", "(none)", sort, direction)


def _breakdown(data: Any, function: str, column: str, na_label: str, sort: str, direction: str | None
               ) -> pd.DataFrame:
    """A per-group summary whose groups (a gateway, a connector) span sites: every message+recipient is labelled
    with its group where it lies (its most frequent value), the rows are shuffled on that label, and the pandas
    function runs on each group whole - with the label written into ``column``, so it groups them the same."""
    if sort not in s.SORTS:
        raise ValueError(f"sort {sort!r}: expected one of {', '.join(s.SORTS)}")
    ddf = _site_frame(data, function)
    span = engine.time_span(ddf)
    parts = engine.regroup(ddf, _pair_groups, _group_part, column, na_label, direction, function, sort)
    return _stamped(_sort_groups(pd.concat(parts, ignore_index=True), column, sort), *span)


def _pair_groups(part: pd.DataFrame, column: str, na_label: str, direction: str | None, *_: Any) -> pd.DataFrame:
    """The rows of ``direction``, each with its message+recipient's most frequent ``column`` (``na_label`` when
    none) as ``_group``. (Summary-export rows the summaries pass over still count for a message's first time.)"""
    t = s.prepare(part, direction, (column,))
    codes, labels = t.codes(column)
    pair_group, labels = s.with_na_label(s.mode_per_group(t.pair, codes, t.n_pairs)[0], labels, na_label)
    key = _pair_key(message_key(part["trace_id"], part["message_id"]), part["recipient"])
    label = pd.Series(np.asarray(labels, dtype=object)[pair_group[t.pair]], index=key[t.positions])
    group = label[~label.index.duplicated()].reindex(key).fillna(na_label).to_numpy(dtype=object)
    keep = np.ones(len(part), dtype=bool) if direction is None else part["direction"].isin([direction]).to_numpy(
        dtype=bool)
    return as_text(part[keep].assign(**{GROUP: group[keep]}))


def _group_part(rows: pd.DataFrame, label: pd.Series, column: str, na_label: str, direction: str | None,
                function: str, sort: str) -> pd.DataFrame:
    rows = rows.assign(**{column: label.where(label != na_label).astype("string").to_numpy()})
    return getattr(s, function)(rows, sort=sort, direction=direction)


def deferral_rate_by_source_range(data: Any, endpoints: Any = None, *, by: str = "range",
                                  direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.deferral_rate_by_source_range` on a Dask DataFrame or a store (equal results):
    the attempts are shuffled on their source range (or published flag) and counted per range whole."""
    if by not in ("range", "published"):
        raise ValueError(f"by {by!r}: expected 'range' or 'published'")
    ddf = _site_frame(data, "deferral_rate_by_source_range")
    span = engine.time_span(ddf)
    parts = engine.regroup(ddf, _attempt_groups, _rates_part, endpoints, by, direction)
    name = "source_range" if by == "range" else "published"
    out = pd.concat(parts, ignore_index=True).sort_values(["deferred", "attempts", name],
                                                          ascending=[False, False, True], kind="stable",
                                                          ignore_index=True)
    return _stamped(out, *span)


def _attempt_groups(part: pd.DataFrame, endpoints: Any, by: str, direction: str | None) -> pd.DataFrame:
    """The attempts deferral_rate_by_source_range counts, each with its group (source range or published flag)."""
    rows, group = s.source_range_attempts(part, endpoints, by, direction)
    return as_text(rows.assign(**{GROUP: np.asarray(group, dtype=object)}))


def _rates_part(rows: pd.DataFrame, _: pd.Series, endpoints: Any, by: str, direction: str | None) -> pd.DataFrame:
    return s.deferral_rate_by_source_range(rows, endpoints, by=by, direction=direction)


# ---------------------------------------------------------------- headline

def headline(data: Any, *, direction: str | None = "outbound") -> dict[str, Any]:
    """:func:`analysis.summaries.tables.headline` on a Dask DataFrame or a store (equal results)."""
    import dask

    ddf = _site_frame(data, "headline")
    meta = pd.DataFrame({"message": pd.Series([], dtype=object), "numbers": pd.Series([], dtype=object)})
    partials = ddf.map_partitions(_headline_part, direction, meta=meta)
    numbers, n_messages = dask.compute(partials["numbers"].dropna(), partials["message"].dropna().nunique())
    parts = list(numbers)
    domains = _sort_groups(pd.concat([p["domains"] for p in parts], ignore_index=True), "recipient_domain",
                           "impact")
    counts = {name: sum(p[name] for p in parts) for name in
              ("recipients", "deferred", "deferrals", "delivered", "delivered_after_deferral", "failed", "expired",
               "pending")}
    hits = np.sum([p["cause_pairs"] for p in parts], axis=0)
    hit_pairs = sum(p["hit_pairs"] for p in parts)
    cause = int(np.argmax(hits)) if hits.max(initial=0) > 0 else -1  # ties: the lower code, as tables.mode_per_group
    worst = domains.iloc[0] if len(domains) and domains["impact"].iloc[0] > 0 else None
    start, end = _span([p["domains"] for p in parts])
    return {
        "messages": int(n_messages),
        **{name: int(value) for name, value in counts.items()},
        "domains": len(domains),
        "worst_domain": None if worst is None else str(worst["recipient_domain"]),
        "worst_domain_impact": 0 if worst is None else int(worst["impact"]),
        "dominant_cause": None if cause < 0 else CAUSES[cause],
        "dominant_cause_share": None if cause < 0 else float(hits[cause] / max(hit_pairs, 1)),
        "start": start,
        "end": end,
    }


def _headline_part(part: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    """A partition's share of headline: a row per message (for the count across partitions), then a row with its
    numbers (a dict: domain summary rows, pair counts, causes)."""
    t = s.prepare(part, direction)
    pairs = s.pair_outcomes(t)
    group, labels = s.pair_domains(t)
    domains = t.stamp(s.group_summary(t, pairs, group, labels, "recipient_domain", "impact"))
    outcome, deferred = pairs.outcome, pairs.deferrals > 0
    delivered = outcome == s.OUTCOMES.index("delivered")
    hit = np.isin(t.kind, (s.DEFER, s.FAILED, s.EXPIRED))
    pair, cause = s.distinct_pairs(t.pair[hit], t.causes()[hit])
    numbers = {
        "domains": domains,
        "recipients": t.n_pairs,
        "deferred": int(deferred.sum()),
        "deferrals": int(pairs.deferrals.sum()),
        "delivered": int(delivered.sum()),
        "delivered_after_deferral": int((delivered & deferred).sum()),
        "failed": int(np.isin(outcome, (s.OUTCOMES.index("failed"), s.OUTCOMES.index("expired"))).sum()),
        "expired": int((outcome == s.OUTCOMES.index("expired")).sum()),
        "pending": int((outcome == s.PENDING).sum()),
        "cause_pairs": np.bincount(cause[cause >= 0], minlength=len(CAUSES)),
        "hit_pairs": len(np.unique(pair)),
    }
    # one row per message of the partition (counted across partitions by Dask), then one row with the numbers
    messages = pd.unique(_message_keys(t, part)).tolist()
    return pd.DataFrame({"message": [*messages, None], "numbers": [*([None] * len(messages)), numbers]},
                        dtype=object)


for _name in __all__:
    getattr(s, _name).register_dask(globals()[_name])
