"""The kit's functions on Dask: :func:`tag` and the summaries for traces bigger than one machine's memory.

Every cross-event rule of :func:`analysis.tag` and every summary works inside a *site*: a recipient domain
(lower-cased), with the rows that have no recipient domain together in one site (they are grouped by remote host,
and a host or recipient of theirs may name a domain, which then joins them). A site holds whole
message+recipients, so the pandas functions run unchanged on partitions that hold whole sites
(``map_partitions``), with the rows of each partition in the table's order (column ``_seq``, else the partition
order). A Dask DataFrame is shuffled on its site first; a store written by :func:`analysis.store.ingest.ingest` is
already partitioned that way and is read without a shuffle. Per-partition results are combined into exactly
what the pandas function returns on the whole table: concatenated and sorted (domains, message timelines, retry
intervals, queue ages) or re-aggregated (top replies, causes, the hourly trend, the headline). Values that need
the whole trace (its time span, the ``now`` of :func:`queue_ages`) are computed first.

Dask is imported only when one of these functions runs; ``pip install "exo-deferrals[dask]"``. Point the kit at
a cluster with :func:`connect` (or ``EXO_DEFERRALS_DASK=tcp://scheduler:8786``); without one Dask uses threads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "ENV_SCHEDULER", "by_connector", "by_gateway", "close", "connect", "deferral_rate_by_source_range",
    "deferrals_by_hour", "ensure_client", "headline", "is_dask", "message_timelines", "queue_ages", "retry_intervals",
    "site_partitioned", "summarize_causes", "summarize_domains", "tag", "top_replies",
]

ENV_SCHEDULER = "EXO_DEFERRALS_DASK"  # a scheduler address such as tcp://10.0.0.5:8786, or "local"
STORE_MANIFEST = "_manifest.json"  # the file that makes a folder a store (analysis.store.ingest)
SEQ = "_seq"  # the table's row order (int64, ascending)
SITE = "_site"  # shuffle key
_ROW_BITS = 40  # _seq of a Dask DataFrame without one: partition number << 40 | row in partition
# open categoricals (categories = the values present): put in one order on every partition
OPEN_CATEGORIES = ("recipient_domain", "source_format", "source_file", "gateway", "cause_explanation", "remedy")
_NAT, _NEVER = np.iinfo(np.int64).min, np.iinfo(np.int64).max
# partitions known to hold whole sites in table order, by the name of their Dask collection
_SITE_PARTITIONED: set[str] = set()


def is_dask(obj: Any) -> bool:
    """True for a Dask collection or the folder of a store (:mod:`analysis.store.ingest`): input for this module."""
    if hasattr(obj, "__dask_graph__"):
        return True
    if isinstance(obj, str | os.PathLike):
        try:
            return (Path(obj) / STORE_MANIFEST).is_file()
        except (OSError, ValueError):
            return False
    return False


def connect(address: str | None = None, **cluster_options: Any) -> Any:
    """A ``distributed.Client`` that every following Dask computation uses.

    ``address``: a scheduler such as ``tcp://10.0.0.5:8786`` (default: ``$EXO_DEFERRALS_DASK``); ``"local"`` or
    nothing starts a ``LocalCluster`` on this machine (loopback only, no dashboard; ``cluster_options`` such as
    ``n_workers=2, threads_per_worker=1`` go to it) whose workers keep memory low: the shuffle's send buffer is
    128 MiB (instead of 1 GiB) and Arrow uses the system allocator, which gives freed memory back. Close the client
    (and its local cluster) with :func:`close`.
    """
    import dask
    from distributed import Client, LocalCluster

    address = address or os.environ.get(ENV_SCHEDULER) or "local"
    if address == "local":
        env = {"ARROW_DEFAULT_MEMORY_POOL": "system", **cluster_options.pop("env", {})}
        options = {"host": "127.0.0.1", "dashboard_address": None, "env": env, **cluster_options}
        with dask.config.set({"distributed.p2p.comm.buffer": "128MiB"}):  # the nannies copy the config now
            cluster = LocalCluster(**options)
        # the scheduler runs in this process (a notebook's kernel): its notes on every shuffle started and ended
        # (a distinct count across partitions) are not for the reader
        logging.getLogger("distributed.shuffle._scheduler_plugin").setLevel(logging.ERROR)
        client = Client(cluster)
        client._exo_local_cluster = cluster  # closed with the client, see close() below
        return client
    return Client(address)


def close(client: Any) -> None:
    """Close a client from :func:`connect` and the local cluster it started, if any."""
    cluster = getattr(client, "_exo_local_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


_CLIENTS: dict[str, Any] = {}  # address -> the client connected by ensure_client in this process


def ensure_client(address: str | None = None) -> Any:
    """The client this process connected to ``address`` before (still running), else a new :func:`connect`:
    re-running a notebook's load step does not start a second local cluster."""
    address = address or os.environ.get(ENV_SCHEDULER) or "local"
    client = _CLIENTS.get(address)
    if client is None or client.status != "running":
        client = _CLIENTS[address] = connect(address)
    return client


# ---------------------------------------------------------------- partitions holding whole sites

def site_partitioned(data: Any, columns: Iterable[str] | None = None) -> Any:
    """``data`` (a Dask DataFrame or a store folder) with every site in one partition, rows in table order.

    A store is read as it lies (``columns``: only these, plus ``_seq``); a Dask DataFrame is shuffled on its
    site, unless it came from here already. Rows keep their index; ``_seq`` is added when missing.
    """
    if not hasattr(data, "__dask_graph__"):
        from analysis.store.ingest import open_store

        return open_store(data, columns=columns)
    if data._name in _SITE_PARTITIONED:
        return data
    ddf = data
    if SEQ not in ddf.columns:
        meta = ddf._meta.assign(**{SEQ: np.zeros(0, dtype=np.int64)})
        ddf = ddf.map_partitions(_number_rows, partition_info=True, meta=meta)
    shared = shared_sites(ddf)
    categories = _categories(ddf)
    keyed = ddf.map_partitions(with_site, shared, meta=with_site(ddf._meta, shared))
    shuffled = keyed.shuffle(on=SITE, npartitions=ddf.npartitions)
    out = shuffled.map_partitions(settle, categories, meta=ddf._meta)
    return mark_site_partitioned(out)


def mark_site_partitioned(ddf: Any) -> Any:
    """Record that ``ddf``'s partitions hold whole sites in table order (so they are not shuffled again)."""
    _SITE_PARTITIONED.add(ddf._name)
    return ddf


def _number_rows(part: pd.DataFrame, partition_info: dict | None = None) -> pd.DataFrame:
    number = partition_info["number"] if partition_info else 0
    return part.assign(**{SEQ: (np.int64(number) << _ROW_BITS) + np.arange(len(part), dtype=np.int64)})


def _lower_domain(addresses: pd.Series) -> pd.Series:
    text = addresses.astype("string").str.strip().str.lower()
    return text.str.rsplit("@", n=1).str[-1].where(text.str.contains("@", regex=False))


_SITE_COLUMNS = ("recipient_domain", "remote_host", "recipient")  # what a row's site depends on


def site_facts(part: pd.DataFrame) -> set[str]:
    """Sites that rows without a recipient domain reach into: their remote hosts and their recipients' domains."""
    none = part["recipient_domain"].isna().to_numpy(dtype=bool)
    if not none.any():
        return set()
    rows = part.loc[none]
    found = pd.concat([rows["remote_host"].astype("string").str.lower(), _lower_domain(rows["recipient"])])
    return set(found.dropna().unique().tolist())


def shared_sites(ddf: Any) -> frozenset[str]:
    """The domains that must share the partition of the rows without a recipient domain (computed first)."""
    import dask

    facts = [dask.delayed(site_facts)(part) for part in ddf[list(_SITE_COLUMNS)].to_delayed()]
    return frozenset().union(*dask.compute(*facts))


def site_keys(part: pd.DataFrame, shared: frozenset[str]) -> pd.Series:
    """Per row, its site: the lower-cased recipient domain; "" for no domain and for ``shared`` domains."""
    domain = part["recipient_domain"].astype("string").str.lower()
    if shared:
        domain = domain.mask(domain.isin(list(shared)))
    return domain.fillna("").astype(object)


def with_site(part: pd.DataFrame, shared: frozenset[str]) -> pd.DataFrame:
    """``part`` with its shuffle key; open categoricals as strings (their categories differ between partitions,
    which a P2P shuffle cannot always unify)."""
    return _as_text(part).assign(**{SITE: site_keys(part, shared)})


def _categories(ddf: Any) -> dict[str, list | None]:
    """Categories of the open categoricals: the known ones of ``ddf`` (None: unknown, sort them)."""
    from dask.dataframe.utils import has_known_categories

    out = {}
    for name in OPEN_CATEGORIES:
        if name in ddf.columns and isinstance(ddf._meta[name].dtype, pd.CategoricalDtype):
            known = has_known_categories(ddf._meta[name])
            out[name] = list(ddf._meta[name].cat.categories) if known else None
    return out


def settle(part: pd.DataFrame, categories: dict[str, list | None] | None = None) -> pd.DataFrame:
    """A partition in table order (``_seq``), without the shuffle key, the open categoricals of ``categories``
    (names -> categories, None: sorted values) as categoricals again."""
    part = part.drop(columns=[SITE], errors="ignore")
    back = {name: part[name].astype("category") for name in (categories or {})
            if name in part and not isinstance(part[name].dtype, pd.CategoricalDtype)}
    part = part.assign(**back) if back else part
    if SEQ in part and not part[SEQ].is_monotonic_increasing:
        part = part.sort_values(SEQ, kind="stable")
    return with_categories(part, categories)


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


# ---------------------------------------------------------------- tag

def tag(data: Any, *, endpoints: Any = None, classify: bool = True) -> Any:
    """:func:`analysis.tag` on a Dask DataFrame or a store: a Dask DataFrame, partitioned by site (lazy).

    Equal to tagging the whole table at once: the cross-event rules (selective refusal per site, retry
    outcome and expiry per message+recipient) see every row they group. Rows keep their index; sort by it (or
    by ``_seq``) for the input order. ``endpoints`` is sent to every worker (default: the bundled snapshot).
    """
    from analysis.tagging import tag as tag_pandas

    ddf = site_partitioned(data)
    meta = _unknown_categories(tag_pandas(ddf._meta, classify=classify), ("gateway", "cause_explanation", "remedy"))
    out = ddf.map_partitions(_tag_partition, endpoints, classify, meta=meta)
    return mark_site_partitioned(out)


def _tag_partition(part: pd.DataFrame, endpoints: Any, classify: bool) -> pd.DataFrame:
    from analysis.tagging import tag as tag_pandas

    return with_categories(tag_pandas(part, endpoints=endpoints, classify=classify))


def _unknown_categories(meta: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    from dask.dataframe.utils import clear_known_categories

    return clear_known_categories(meta, cols=[n for n in names if n in meta.columns])


# ---------------------------------------------------------------- running a summary per partition

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
    pandas function checks it (before any shuffle)."""
    from analysis.summaries import tables as summaries

    extra = _EXTRA_COLUMNS.get(function, ())
    needed = list(dict.fromkeys([*summaries._REQUIRED, *extra, SEQ]))
    if not hasattr(data, "__dask_graph__"):
        ddf = site_partitioned(data, columns=needed)
        summaries._check(ddf._meta, tuple(extra))
        return ddf
    summaries._check(data._meta, tuple(extra))
    present = [c for c in needed if c in data.columns]
    if data._name in _SITE_PARTITIONED:
        return data[present]
    return site_partitioned(data[list(dict.fromkeys([*present, *_SITE_COLUMNS]))])


def _per_partition(ddf: Any, function: Callable[..., Any], *args: Any, more: Iterable[Any] = ()) -> list[Any]:
    """``function(partition, *args)`` for every partition (one Dask computation, with ``more`` computed along)."""
    import dask

    results = dask.compute(*[dask.delayed(function)(part, *args) for part in ddf.to_delayed()], *more)
    return list(results)


def _span(results: Iterable[Any]) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The whole trace's start and end from the ``attrs`` of per-partition results."""
    starts = [r.attrs.get("start") for r in results if r.attrs.get("start") is not None]
    ends = [r.attrs.get("end") for r in results if r.attrs.get("end") is not None]
    return (min(starts) if starts else None), (max(ends) if ends else None)


def _stamped(frame: pd.DataFrame, start: Any, end: Any) -> pd.DataFrame:
    frame.attrs.update(start=start, end=end)
    return frame


def time_span(data: Any) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """First and last timestamp of the whole table (None when nothing is dated): computed before the rest."""
    import dask

    ddf = site_partitioned(data, columns=["timestamp"]) if not hasattr(data, "__dask_graph__") else data
    low, high = dask.compute(ddf["timestamp"].min(), ddf["timestamp"].max())
    return (None if pd.isna(low) else pd.Timestamp(low)), (None if pd.isna(high) else pd.Timestamp(high))


def _pair_first_seq(part: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    """Per message+recipient of the partition (summaries' key: trace id, else message id, and recipient): the
    ``_seq`` of its first row among the rows ``direction`` selects."""
    rows = part if direction is None else part[part["direction"].isin([direction]).to_numpy(dtype=bool)]
    key = _pair_key(rows["trace_id"].astype("string").fillna(rows["message_id"].astype("string")), rows["recipient"])
    first = pd.Series(rows[SEQ].to_numpy(), index=key.to_numpy()).groupby(level=0, sort=False).min()
    return pd.DataFrame({"_pair": first.index.to_numpy(dtype=object), "_first_seq": first.to_numpy()})


def _pair_key(message: pd.Series, recipient: pd.Series) -> pd.Series:
    """One text per message+recipient, from the message (trace id, else Message-ID, as summaries' ``message``
    column) and the recipient. (A trace id never equals a Message-ID: one is a GUID, the other holds an @.)"""
    return (message.astype("string").fillna("") + "\n" + recipient.astype("string").fillna("\n")).astype(object)


# ---------------------------------------------------------------- per domain

def summarize_domains(data: Any, *, sort: str = "impact", direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.summarize_domains` on a Dask DataFrame or a store (equal results)."""
    from analysis.summaries import tables as summaries

    ddf = _site_frame(data, "summarize_domains")
    parts = _per_partition(ddf, _call, "summarize_domains", {"sort": sort, "direction": direction})
    out = _sort_groups(pd.concat(parts, ignore_index=True), "recipient_domain", sort, summaries)
    return _stamped(out, *_span(parts))


def _call(part: pd.DataFrame, name: str, kwargs: dict[str, Any]) -> Any:
    from analysis.summaries import tables as summaries

    return getattr(summaries, name)(part, **kwargs)


def _sort_groups(out: pd.DataFrame, name: str, sort: str, summaries: Any) -> pd.DataFrame:
    keys, ascending = summaries._SORTS[sort]
    return out.sort_values([*keys, name], ascending=[ascending] * len(keys) + [True], na_position="last",
                           kind="stable", ignore_index=True)


# ---------------------------------------------------------------- queue ages

def queue_ages(data: Any, now: Any = None, *, rollup_parent: bool = False, min_subdomains: int = 5,
               direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.queue_ages` on a Dask DataFrame or a store; ``now`` defaults to the whole
    trace's last timestamp, computed first."""
    from analysis.summaries import tables as summaries

    ddf = _site_frame(data, "queue_ages")
    start, end = time_span(ddf)
    reference = end if now is None else summaries._utc(now)
    if reference is None:
        reference = pd.NaT
    parts = _per_partition(ddf, _call, "queue_ages", {"now": reference, "direction": direction})
    buckets = list(summaries.AGE_BUCKETS)
    counts = pd.concat([p.drop(index="TOTAL")[buckets] for p in parts])
    counts = counts[counts.sum(axis=1).to_numpy() > 0]
    out = summaries.queue_table(counts, rollup_parent, min_subdomains)
    _stamped(out, start, end)
    out.attrs["now"] = None if pd.isna(reference) else reference
    return out


# ---------------------------------------------------------------- one row per message+recipient / retry

def message_timelines(data: Any, *, direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.message_timelines` on a Dask DataFrame or a store (one row per
    message+recipient: the result has to fit in this process)."""
    ddf = _site_frame(data, "message_timelines")
    parts = _per_partition(ddf, _timelines_part, direction)
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
    from analysis.summaries import tables as summaries

    out = summaries.message_timelines(part, direction=direction)
    return _with_first_seq(out, _pair_key(out["message"], out["recipient"]), part, direction)


def _with_first_seq(out: pd.DataFrame, key: pd.Series, part: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    attrs = dict(out.attrs)
    first = _pair_first_seq(part, direction).set_index("_pair")["_first_seq"]
    out = out.assign(_pair=key.to_numpy(), _first_seq=first.reindex(key.to_numpy()).to_numpy())
    out.attrs.update(attrs)
    return out


def retry_intervals(data: Any, *, direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.retry_intervals` on a Dask DataFrame or a store (the result has to fit here)."""
    ddf = _site_frame(data, "retry_intervals")
    parts = _per_partition(ddf, _retries_part, direction)
    out = pd.concat(parts, ignore_index=True)
    out = out.iloc[np.argsort(out["_first_seq"].to_numpy(), kind="stable")]
    return _stamped(out.drop(columns=["_pair", "_first_seq"]).reset_index(drop=True), *_span(parts))


def _retries_part(part: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    from analysis.summaries import tables as summaries

    out = summaries.retry_intervals(part, direction=direction)
    return _with_first_seq(out, _pair_key(out["message"], out["recipient"]), part, direction)


# ---------------------------------------------------------------- trend

def deferrals_by_hour(data: Any, *, freq: str = "1h", direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.deferrals_by_hour` on a Dask DataFrame or a store (equal results)."""
    from analysis.core.schema import CAUSES

    step = pd.Timedelta(freq)
    if step <= pd.Timedelta(0):
        raise ValueError(f"freq {freq!r}: expected a positive period such as '1h' or '1D'")
    ddf = _site_frame(data, "deferrals_by_hour")
    parts = _per_partition(ddf, _call, "deferrals_by_hour", {"freq": freq, "direction": direction})
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
    """The deferral and failure rows of a partition as summaries.top_replies (``by="reply"``) or
    summarize_causes (``by="cause"``) count them: group key, kind, pair, message, domain, time, order."""
    from analysis.summaries import tables as s

    t = s._prepare(part, direction)
    cause = t.causes()
    if by == "reply":
        chosen = np.flatnonzero(np.isin(t.kind, (s._DEFER, s._FAILED, s._EXPIRED)) & t.notna("reply"))
        replies = t.at(chosen, "reply")["reply"]
        text = s.normalize_replies(replies).to_numpy(dtype=object)
    else:
        chosen = np.flatnonzero(np.isin(t.kind, (s._DEFER, s._FAILED, s._EXPIRED)) & (cause >= 0))
        replies = pd.Series([None] * len(chosen), dtype=object)
        text = np.full(len(chosen), "", dtype=object)
    pair = t.pair[chosen]
    domain, labels = s._domains(t)
    message = _message_keys(t, part)
    frame = pd.DataFrame({
        "text": text,
        "cause": cause[chosen],
        "defer": t.kind[chosen] == s._DEFER,
        "pair": pair,
        "message": message[pair],
        "domain": np.asarray(labels, dtype=object)[domain[pair]] if len(chosen) else np.zeros(0, dtype=object),
        "ns": t.ns()[chosen],
        "seq": part[SEQ].to_numpy()[t.positions[chosen]],
        "example": replies.astype(object).to_numpy(),
    })
    frame.attrs.update(start=s._or_none(t.start), end=s._or_none(t.end))
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
    summaries._top_labels (most events first, ties in category order: names sorted, "(no domain)" last)."""
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
    from analysis.summaries import tables as summaries

    values = ns.to_numpy(dtype=np.int64)
    return summaries._stamps(np.where(values == _NEVER, _NAT, values))


def top_replies(data: Any, n: int = 20, *, direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.top_replies` on a Dask DataFrame or a store: counts summed over partitions,
    distinct messages counted across them (equal results)."""
    from analysis.core.schema import STRING
    from analysis.summaries import tables as summaries

    groups, domains, (start, end) = _combined_groups(data, direction, "reply")
    events = groups["events"].to_numpy(dtype=np.int64)
    top = np.lexsort((groups["text"].astype(str).to_numpy(), -events))[:max(n, 0)]
    chosen = groups.iloc[top].reset_index(drop=True)
    out = pd.DataFrame({
        "reply": pd.array(chosen["text"].to_numpy(dtype=object), dtype=STRING),
        "cause": summaries._cause_categorical(chosen["cause"].to_numpy(dtype=np.int64)),
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
    from analysis.core.schema import CAUSES
    from analysis.summaries import tables as summaries

    groups, domains, (start, end) = _combined_groups(data, direction, "cause")
    k = len(CAUSES)
    full = groups.set_index("cause").reindex(range(k))
    events = full["events"].fillna(0).to_numpy(dtype=np.int64)
    out = pd.DataFrame({
        "cause": summaries._cause_categorical(np.arange(k)),
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

GROUP = "_group"  # shuffle key of the groups below


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
    from analysis.summaries import tables as summaries

    if sort not in summaries._SORTS:
        raise ValueError(f"sort {sort!r}: expected one of {', '.join(summaries._SORTS)}")
    ddf = _site_frame(data, function)
    span = time_span(ddf)
    keyed = ddf.map_partitions(_pair_groups, column, na_label, direction,
                               meta=_as_text(ddf._meta.assign(**{GROUP: pd.Series([], dtype=object)})))
    groups = keyed.shuffle(on=GROUP, npartitions=ddf.npartitions)
    parts = _per_partition(groups, _group_part, function, column, na_label, direction, sort)
    return _stamped(_sort_groups(pd.concat(parts, ignore_index=True), column, sort, summaries), *span)


def _pair_groups(part: pd.DataFrame, column: str, na_label: str, direction: str | None) -> pd.DataFrame:
    """The rows of ``direction``, each with its message+recipient's most frequent ``column`` (``na_label`` when
    none) as ``_group``. (Summary-export rows the summaries pass over still count for a message's first time.)"""
    from analysis.summaries import tables as s

    t = s._prepare(part, direction, (column,))
    codes, labels = t.codes(column)
    pair_group, labels = s._with_na_label(s._mode(t.pair, codes, t.n_pairs)[0], labels, na_label)
    message = part["trace_id"].astype("string").fillna(part["message_id"].astype("string"))
    key = _pair_key(message, part["recipient"]).to_numpy()
    label = pd.Series(np.asarray(labels, dtype=object)[pair_group[t.pair]], index=key[t.positions])
    group = label[~label.index.duplicated()].reindex(key).fillna(na_label).to_numpy(dtype=object)
    keep = np.ones(len(part), dtype=bool) if direction is None else part["direction"].isin([direction]).to_numpy(
        dtype=bool)
    return _as_text(part[keep].assign(**{GROUP: group[keep]}))


def _as_text(part: pd.DataFrame) -> pd.DataFrame:
    """Open categoricals as strings, for a shuffle: their categories differ between partitions, which a P2P
    shuffle cannot always unify."""
    opened = {name: part[name].astype("string[pyarrow]") for name in OPEN_CATEGORIES
              if name in part and isinstance(part[name].dtype, pd.CategoricalDtype)}
    return part.assign(**opened) if opened else part


def _group_part(part: pd.DataFrame, function: str, column: str, na_label: str, direction: str | None,
                sort: str) -> pd.DataFrame:
    from analysis.summaries import tables as summaries

    rows, label = _in_order(part)
    rows = rows.assign(**{column: label.where(label != na_label).astype("string")})
    return getattr(summaries, function)(rows, sort=sort, direction=direction)


def _in_order(part: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """A partition of shuffled groups in table order without the shuffle key, and the key of each row."""
    part = part.sort_values(SEQ, kind="stable") if SEQ in part else part
    return part.drop(columns=GROUP), part[GROUP].astype(object)


def deferral_rate_by_source_range(data: Any, endpoints: Any = None, *, by: str = "range",
                                  direction: str | None = "outbound") -> pd.DataFrame:
    """:func:`analysis.summaries.tables.deferral_rate_by_source_range` on a Dask DataFrame or a store (equal results):
    the attempts are shuffled on their source range (or published flag) and counted per range whole."""
    if by not in ("range", "published"):
        raise ValueError(f"by {by!r}: expected 'range' or 'published'")
    ddf = _site_frame(data, "deferral_rate_by_source_range")
    span = time_span(ddf)
    meta = _as_text(ddf._meta.assign(**{GROUP: pd.Series([], dtype=object)}))
    keyed = ddf.map_partitions(_attempt_groups, endpoints, by, direction, meta=meta)
    parts = _per_partition(keyed.shuffle(on=GROUP, npartitions=ddf.npartitions), _rates_part, endpoints, by,
                           direction)
    name = "source_range" if by == "range" else "published"
    out = pd.concat(parts, ignore_index=True).sort_values(["deferred", "attempts", name],
                                                          ascending=[False, False, True], kind="stable",
                                                          ignore_index=True)
    return _stamped(out, *span)


def _attempt_groups(part: pd.DataFrame, endpoints: Any, by: str, direction: str | None) -> pd.DataFrame:
    """The attempts deferral_rate_by_source_range counts, each with its group (source range or published flag)."""
    from analysis.summaries import tables as s

    rows, group = s.source_range_attempts(part, endpoints, by, direction)
    return _as_text(rows.assign(**{GROUP: np.asarray(group, dtype=object)}))


def _rates_part(part: pd.DataFrame, endpoints: Any, by: str, direction: str | None) -> pd.DataFrame:
    from analysis.summaries import tables as summaries

    return summaries.deferral_rate_by_source_range(_in_order(part)[0], endpoints, by=by, direction=direction)


# ---------------------------------------------------------------- headline

def headline(data: Any, *, direction: str | None = "outbound") -> dict[str, Any]:
    """:func:`analysis.summaries.tables.headline` on a Dask DataFrame or a store (equal results)."""
    import dask

    from analysis.core.schema import CAUSES
    from analysis.summaries import tables as summaries

    ddf = _site_frame(data, "headline")
    meta = pd.DataFrame({"message": pd.Series([], dtype=object), "numbers": pd.Series([], dtype=object)})
    partials = ddf.map_partitions(_headline_part, direction, meta=meta)
    numbers, n_messages = dask.compute(partials["numbers"].dropna(), partials["message"].dropna().nunique())
    parts = list(numbers)
    domains = _sort_groups(pd.concat([p["domains"] for p in parts], ignore_index=True), "recipient_domain",
                           "impact", summaries)
    counts = {name: sum(p[name] for p in parts) for name in
              ("recipients", "deferred", "deferrals", "delivered", "delivered_after_deferral", "failed", "expired",
               "pending")}
    hits = np.sum([p["cause_pairs"] for p in parts], axis=0)
    hit_pairs = sum(p["hit_pairs"] for p in parts)
    cause = int(np.argmax(hits)) if hits.max(initial=0) > 0 else -1  # ties: the lower code, as summaries._mode
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
    from analysis.core.schema import CAUSES
    from analysis.summaries import tables as s

    t = s._prepare(part, direction)
    pairs = s._pair_outcomes(t)
    group, labels = s._domains(t)
    domains = t.stamp(s._group_summary(t, pairs, group, labels, "recipient_domain", "impact"))
    outcome, deferred = pairs.outcome, pairs.deferrals > 0
    delivered = outcome == s.OUTCOMES.index("delivered")
    hit = np.isin(t.kind, (s._DEFER, s._FAILED, s._EXPIRED))
    pair, cause = s._distinct(t.pair[hit], t.causes()[hit])
    numbers = {
        "domains": domains,
        "recipients": t.n_pairs,
        "deferred": int(deferred.sum()),
        "deferrals": int(pairs.deferrals.sum()),
        "delivered": int(delivered.sum()),
        "delivered_after_deferral": int((delivered & deferred).sum()),
        "failed": int(np.isin(outcome, (s.OUTCOMES.index("failed"), s.OUTCOMES.index("expired"))).sum()),
        "expired": int((outcome == s.OUTCOMES.index("expired")).sum()),
        "pending": int((outcome == s._PENDING).sum()),
        "cause_pairs": np.bincount(cause[cause >= 0], minlength=len(CAUSES)),
        "hit_pairs": len(np.unique(pair)),
    }
    # one row per message of the partition (counted across partitions by Dask), then one row with the numbers
    messages = pd.unique(_message_keys(t, part)).tolist()
    return pd.DataFrame({"message": [*messages, None], "numbers": [*([None] * len(messages)), numbers]},
                        dtype=object)
