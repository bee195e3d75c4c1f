"""The Dask backend: distribution only, for traces bigger than one machine's memory.

It knows nothing of tags or summaries. It offers partitions that hold whole *sites* (a recipient domain, lower
case, with the rows that have no recipient domain together in one site: they are grouped by remote host, and a
host or recipient of theirs may name a domain, which then joins them), rows of each partition in the table's order
(column ``_seq``, else the partition order), and three ways to run a pandas step:

* :func:`map_sites` - a step on every partition, results brought back as a list (the caller combines them);
* :func:`transform_sites` - a step on every partition, lazily, still partitioned by site;
* :func:`regroup` - rows keyed by a step, shuffled on that key, then a step on each group whole;

and :func:`run_summary`, which runs a summary declared once (:class:`analysis.backends.dispatch.Summary`: a
per-partition step and a combine) with those: the summaries hold no Dask code and this module no summary logic.

A Dask DataFrame is shuffled on its site first; a store (:mod:`analysis.backends.store`) is already partitioned
that way and is read without a shuffle. :func:`time_span` gives the whole trace's first and last time.

Dask is imported only when one of these functions runs; ``pip install "exo-deferrals[dask]"``. Point the kit at
a cluster with :func:`connect` (or ``EXO_DEFERRALS_DASK=tcp://scheduler:8786``); without one Dask uses threads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from analysis.backends.partitions import (
    OPEN_CATEGORIES,
    SEQ,
    SITE,
    STORE_MANIFEST,
    as_text,
    is_site_partitioned,
    mark_site_partitioned,
    with_categories,
)
from analysis.backends.store import is_store, open_store
from analysis.core.concepts import address_domain, lower_domain

__all__ = [
    "ENV_SCHEDULER", "GROUP", "OPEN_CATEGORIES", "SEQ", "SITE", "STORE_MANIFEST", "as_text", "close", "connect",
    "ensure_client", "is_dask", "map_sites", "mark_site_partitioned", "regroup", "run_summary", "settle",
    "shared_sites", "site_facts", "site_frame", "site_keys", "site_partitioned", "time_span", "transform_sites",
    "unknown_categories", "with_categories", "with_site",
]

ENV_SCHEDULER = "EXO_DEFERRALS_DASK"  # a scheduler address such as tcp://10.0.0.5:8786, or "local"
GROUP = "_group"  # shuffle key of regroup
_ROW_BITS = 40  # _seq of a Dask DataFrame without one: partition number << 40 | row in partition
_SITE_COLUMNS = ("recipient_domain", "remote_host", "recipient")  # what a row's site depends on


def is_dask(obj: Any) -> bool:
    """True for a Dask collection or the folder of a store: input for this module."""
    return hasattr(obj, "__dask_graph__") or is_store(obj)


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
        return open_store(data, columns=columns)
    if is_site_partitioned(data):
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


def site_frame(data: Any, columns: Iterable[str]) -> Any:
    """The site-partitioned ``data`` with only ``columns`` (those it has) and ``_seq``: a store reads only them, a
    Dask DataFrame keeps what its shuffle needs. Check ``result._meta`` before computing anything."""
    needed = list(dict.fromkeys([*columns, SEQ]))
    if not hasattr(data, "__dask_graph__"):
        return site_partitioned(data, columns=needed)
    present = [c for c in needed if c in data.columns]
    if is_site_partitioned(data):
        return mark_site_partitioned(data[present])  # fewer columns, the same partitions
    return site_partitioned(data[list(dict.fromkeys([*present, *(c for c in _SITE_COLUMNS if c in data.columns)]))])


def _number_rows(part: pd.DataFrame, partition_info: dict | None = None) -> pd.DataFrame:
    number = partition_info["number"] if partition_info else 0
    return part.assign(**{SEQ: (np.int64(number) << _ROW_BITS) + np.arange(len(part), dtype=np.int64)})


def site_facts(part: pd.DataFrame) -> set[str]:
    """Sites that rows without a recipient domain reach into: their remote hosts and their recipients' domains."""
    none = part["recipient_domain"].isna().to_numpy(dtype=bool)
    if not none.any():
        return set()
    rows = part.loc[none]
    found = pd.concat([lower_domain(rows["remote_host"]), lower_domain(address_domain(rows["recipient"].str.strip()))])
    return set(found.dropna().unique().tolist())


def shared_sites(ddf: Any) -> frozenset[str]:
    """The domains that must share the partition of the rows without a recipient domain (computed first)."""
    import dask

    facts = [dask.delayed(site_facts)(part) for part in ddf[list(_SITE_COLUMNS)].to_delayed()]
    return frozenset().union(*dask.compute(*facts))


def site_keys(part: pd.DataFrame, shared: frozenset[str]) -> pd.Series:
    """Per row, its shuffle key: its site (:func:`analysis.core.concepts.site_key` of the recipient domain); ""
    for no domain and for ``shared`` domains."""
    domain = lower_domain(part["recipient_domain"])
    if shared:
        domain = domain.mask(domain.isin(list(shared)))
    return domain.fillna("").astype(object)


def with_site(part: pd.DataFrame, shared: frozenset[str]) -> pd.DataFrame:
    """``part`` with its shuffle key; open categoricals as strings (see :func:`as_text`)."""
    return as_text(part).assign(**{SITE: site_keys(part, shared)})


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


def unknown_categories(meta: pd.DataFrame, names: Iterable[str]) -> pd.DataFrame:
    """``meta`` with the categoricals ``names`` marked as of unknown categories (they differ by partition)."""
    from dask.dataframe.utils import clear_known_categories

    return clear_known_categories(meta, cols=[n for n in names if n in meta.columns])


# ---------------------------------------------------------------- running steps

def map_sites(data: Any, step: Callable[..., Any], *args: Any, columns: Iterable[str] | None = None,
              more: Iterable[Any] = ()) -> list[Any]:
    """``step(partition, *args)`` on every partition of the site-partitioned ``data`` (``columns``: only these,
    see :func:`site_frame`), in one Dask computation with the Dask objects ``more`` computed along (their values
    follow the partitions' results in the returned list)."""
    import dask

    ddf = site_partitioned(data) if columns is None else site_frame(data, columns)
    results = dask.compute(*[dask.delayed(step)(part, *args) for part in ddf.to_delayed()], *more)
    return list(results)


def transform_sites(data: Any, step: Callable[..., pd.DataFrame], *args: Any, meta: pd.DataFrame | None = None
                    ) -> Any:
    """``step(partition, *args)`` on every partition, lazily: a Dask DataFrame still partitioned by site (so
    ``step`` must keep whole message+recipients, or filter or change rows one by one). ``meta``: the result's
    empty frame (default: ``data``'s)."""
    ddf = site_partitioned(data)
    return mark_site_partitioned(ddf.map_partitions(step, *args, meta=ddf._meta if meta is None else meta))


def regroup(data: Any, key_step: Callable[..., pd.Series], step: Callable[..., Any], *args: Any,
            columns: Iterable[str] | None = None, **kwargs: Any) -> list[Any]:
    """Groups that span sites: ``key_step(partition, *args, **kwargs)`` gives each row's group (NA: the row is left
    out); the rows are shuffled on it (column ``_group``, :data:`GROUP`; open categoricals as text,
    :func:`as_text`), and ``step(rows, groups, *args, **kwargs)`` runs on each shuffled partition, its rows in
    table order without the key (``groups``: each row's group)."""
    ddf = site_partitioned(data) if columns is None else site_frame(data, columns)
    meta = as_text(ddf._meta.assign(**{GROUP: pd.Series([], dtype=object)}))
    keyed = ddf.map_partitions(_keyed, key_step, args, kwargs, meta=meta)
    return map_sites(mark_site_partitioned(keyed.shuffle(on=GROUP, npartitions=ddf.npartitions)), _in_order,
                     step, args, kwargs)


def _keyed(part: pd.DataFrame, key_step: Callable[..., pd.Series], args: tuple[Any, ...], kwargs: dict[str, Any]
           ) -> pd.DataFrame:
    group = key_step(part, *args, **kwargs)
    keep = group.notna().to_numpy(dtype=bool)
    return as_text(part[keep].assign(**{GROUP: group[keep].astype(object).to_numpy()}))


def _in_order(part: pd.DataFrame, step: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    part = part.sort_values(SEQ, kind="stable") if SEQ in part else part
    return step(part.drop(columns=GROUP), part[GROUP].astype(object), *args, **kwargs)


def run_summary(definition: Any, data: Any, options: dict[str, Any]) -> Any:
    """A summary (:class:`analysis.backends.dispatch.Summary`) on a Dask DataFrame or a store: its step on every
    site partition (or, with ``regroup``, on every group shuffled whole), its own combine on the results; its
    ``count`` on the Dask DataFrame of every partition's keys; its ``whole`` values computed first."""
    import dask
    import dask.dataframe as dd

    ddf = site_frame(data, definition.columns)
    definition.check(ddf._meta, **options)
    if definition.whole is not None:
        options = definition.whole(*time_span(ddf), options)
    if definition.regroup is not None:
        return definition.combine(regroup(ddf, definition.regroup, definition.step, **options), **options)
    if definition.count is None:
        return definition.combine(map_sites(ddf, _call, definition.step, options), **options)
    steps = [dask.delayed(_call)(part, definition.step, options) for part in ddf.to_delayed()]
    meta = definition.step(ddf._meta, **options)[1]
    keys = dd.from_delayed([dask.delayed(_second)(done) for done in steps], meta=meta, verify_meta=False)
    counted = definition.count(keys).to_delayed()  # one kind of graph in one computation: the steps run once
    partials, counted = dask.compute([dask.delayed(_first)(done) for done in steps], counted)
    return definition.combine(list(partials), pd.concat(counted) if isinstance(counted, list) else counted,
                              **options)


def _call(part: pd.DataFrame, step: Callable[..., Any], options: dict[str, Any]) -> Any:
    return step(part, **options)


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _second(pair: tuple[Any, Any]) -> Any:
    return pair[1]


def time_span(data: Any) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """First and last timestamp of the whole table (None when nothing is dated): computed before the rest."""
    import dask

    ddf = site_partitioned(data, columns=["timestamp"]) if not hasattr(data, "__dask_graph__") else data
    low, high = dask.compute(ddf["timestamp"].min(), ddf["timestamp"].max())
    return (None if pd.isna(low) else pd.Timestamp(low)), (None if pd.isna(high) else pd.Timestamp(high))
