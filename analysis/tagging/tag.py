"""Tag every deferral and failure of an events table with its cause, evidence and remedy.

:func:`tag` adds the tag columns of :data:`analysis.core.schema.TAG_COLUMNS` (plus ``cause_explanation`` and
``remedy``): the cause of each defer/fail/drop row from :func:`analysis.reference.causes.classify_replies` (unique
replies only), what Microsoft's published endpoints say about the remote and Exchange Online IPs, and the
recipient gateway vendor. Then three cross-event rules refine the per-reply causes, all as groupby work:

* **selective refusal by source range** - a recipient domain (or host) that refuses some Exchange Online
  source ranges (the published range the EXO IP falls in, or its /24 when unpublished) and accepts others
  is a ``gateway_block``, with the refused and accepted ranges as evidence, when the split is clear: at least
  3 refusals over 2 messages and 2 accepts, and a split that chance would produce less than 1% of the time
  given the site's overall refusal rate (greylisting and outages refuse every range at first). Generic causes
  (unknown, recipient_server_down, gateway_block) and range-sensitive ones (greylisting, rate limiting,
  reputation) are overridden; specific ones (bad address, TLS, ...) never.
* **retry outcome** - a message/recipient deferred once or twice with an unexplained 4xx and then delivered
  was greylisted; greylisting that never clears (the message failed, or 3+ deferrals without acceptance) is
  a persistent refusal (``gateway_block``).
* **expiry inheritance** - a "message expired" failure (:func:`analysis.core.concepts.is_expiry`) takes the most
  frequent cause of that message/recipient's earlier deferrals and says so in ``cause_evidence``.

A row a cross-event rule re-tags gets ``cause_confidence`` "text" (its ``cause_rule`` starts with ``cross:``):
the evidence is the trace's own words and events, not a reply's bare status code.

A table that already carries every tag column (a tagged table, a store's events) is returned as it is: tagging is
idempotent and costs nothing the second time. On a Dask DataFrame tagging runs per partition of whole sites
(:mod:`analysis.backends.dask`), which equals tagging the whole table at once: every cross-event rule groups rows
of one site.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.backends import dask as engine
from analysis.backends.dispatch import dispatch
from analysis.core.concepts import is_expiry, message_key, site_key, source_range
from analysis.core.schema import CAUSES, CONFIDENCES, EXTRA_TAG_COLUMNS, STRING, TAG_COLUMNS, conform
from analysis.reference.causes import classify_replies, default_rules
from analysis.reference.endpoints import Endpoints
from analysis.reference.gateways import identify_gateways

__all__ = ["ACCEPTED_EVENTS", "CLEAR_ACCEPTS", "CLEAR_REFUSALS", "EXTRA_TAG_COLUMNS", "REFUSAL_EVENTS", "is_tagged",
           "tag"]

CLASSIFIED_EVENTS = ("defer", "fail", "drop")
REFUSAL_EVENTS = ("defer", "fail")
ACCEPTED_EVENTS = ("deliver", "send")
# causes a selective split by source range overrides always / only when the split is clear
GENERIC_CAUSES = ("unknown", "recipient_server_down", "gateway_block")
RANGE_SENSITIVE_CAUSES = ("greylisting", "rate_limited", "reputation_blocklist")
CLEAR_REFUSALS, CLEAR_MESSAGES, CLEAR_ACCEPTS = 3, 2, 2
CHANCE_SPLIT_MAX = 0.01  # a split this likely to arise by chance is not evidence
ACCEPTED_RANGE_MAX_REFUSED = 0.1  # an accepting range may show this share of (unrelated) refusals
GREYLIST_MAX_DEFERRALS = 2
PERSISTENT_DEFERRALS = 3
UNEXPLAINED = ("class", "none")  # cause_confidence of a reply whose words and exact code no rule knows
_ALL_TAGS = (*TAG_COLUMNS, *EXTRA_TAG_COLUMNS)


def is_tagged(events: Any) -> bool:
    """Whether ``events`` (pandas or Dask) carries every tag column: :func:`tag` returns it as it is."""
    return all(name in events.columns for name in _ALL_TAGS)


@dispatch
def tag(events: pd.DataFrame, *, endpoints: Endpoints | None = None, classify: bool = True) -> pd.DataFrame:
    """A copy of ``events`` (the canonical table) with the tag columns added.

    ``endpoints``: the Microsoft 365 endpoint data to match IPs against (default: the bundled snapshot).
    ``classify=False`` skips the cause columns (left NA) and the cross-event rules. Input that carries every tag
    column already is returned unchanged (a shallow copy; to tag again, drop the tag columns first). A Dask
    DataFrame or a store folder is tagged on Dask, lazily, partitioned by site (a store's events carry their tags:
    they are read as they are); the input's type chooses, as for every summary (:mod:`analysis.backends.dispatch`).
    """
    if is_tagged(events):
        return events.copy(deep=False)
    original_index = events.index
    out = conform(events).reset_index(drop=True)  # positional work below; the caller's index comes back
    ep = endpoints if endpoints is not None else Endpoints.bundled()
    remote = _match_ips(ep, out["remote_ip"])
    exo = _match_ips(ep, out["exo_ip"])
    out["remote_in_m365"] = remote["in_m365"].astype("boolean").array
    out["exo_ip_published"] = exo["exo_mail_flow"].astype("boolean").array
    out["endpoint_set"] = exo["endpoint_set"].astype("Int64").array
    gateway = identify_gateways(out["remote_host"], out["reply"])
    out["gateway"] = pd.Series(gateway.to_numpy(), index=out.index, dtype="category")

    for name in ("cause_rule", "cause_evidence"):
        out[name] = pd.Series(pd.NA, index=out.index, dtype=STRING)
    out["cause"] = pd.Categorical([None] * len(out), categories=CAUSES)
    confidence = np.full(len(out), -1, dtype=np.int8)
    out["transient"] = pd.array([pd.NA] * len(out), dtype="boolean")
    explanation = pd.Series(pd.NA, index=out.index, dtype=object)
    remedy = pd.Series(pd.NA, index=out.index, dtype=object)
    if classify:
        rows = out["event"].isin(CLASSIFIED_EVENTS).to_numpy()
        if rows.any():
            found = classify_replies(out.loc[rows, "reply"], vendors=out.loc[rows, "gateway"])
            out.loc[rows, "cause"] = found["cause"].to_numpy()
            out.loc[rows, "transient"] = found["transient"].to_numpy()
            out.loc[rows, "cause_rule"] = found["rule"].to_numpy()
            out.loc[rows, "cause_evidence"] = found["evidence"].to_numpy()
            explanation[rows] = found["explanation"].astype(object).to_numpy()
            remedy[rows] = found["remedy"].astype(object).to_numpy()
            confidence[rows] = _confidence_codes(found)
        out["cause_confidence"] = pd.Categorical.from_codes(confidence, categories=CONFIDENCES)
        keys = _keys(out)
        changed = _selective_refusals(out, keys, exo["cidr"])
        changed |= _retry_outcome(out, keys, changed)
        changed |= _inherit_expiry(out, keys)
        # a cross-event re-tag is decided by the trace's own words and events (cause_rule "cross:...", evidence in
        # cause_evidence), so it is "text", never the weaker class/none the lone reply had
        out.loc[changed, "cause_confidence"] = "text"
        causes = default_rules().causes
        explanation[changed] = out.loc[changed, "cause"].map(lambda c: causes[c].explanation).astype(object)
        remedy[changed] = out.loc[changed, "cause"].map(lambda c: causes[c].remedy).astype(object)
    else:
        out["cause_confidence"] = pd.Categorical.from_codes(confidence, categories=CONFIDENCES)
    out["cause_explanation"] = explanation.astype("category")
    out["remedy"] = remedy.astype("category")
    out.index = original_index
    return out


def _confidence_codes(found: pd.DataFrame) -> np.ndarray:
    """Per classified row, the code (in CONFIDENCES) of how its cause was found: classify_replies' ``confidence``
    when it has that column, else "text" where a rule matched and "none" where the cause is unknown."""
    if "confidence" in found.columns:
        values = pd.Categorical(found["confidence"].astype(object), categories=CONFIDENCES)
        return np.asarray(values.codes, dtype=np.int8)
    matched = found["rule"].notna().to_numpy(dtype=bool) & found["cause"].ne("unknown").fillna(False).to_numpy(
        dtype=bool)
    return np.where(matched, CONFIDENCES.index("text"), CONFIDENCES.index("none")).astype(np.int8)


@tag.register_dask
def _tag_dask(data: Any, *, endpoints: Endpoints | None = None, classify: bool = True) -> Any:
    """:func:`tag` on a Dask DataFrame or a store: a lazy Dask DataFrame partitioned by site."""
    ddf = engine.site_partitioned(data)
    if is_tagged(ddf):
        return ddf
    meta = engine.unknown_categories(tag(ddf._meta, classify=classify), ("gateway", "cause_explanation", "remedy"))
    return engine.transform_sites(ddf, _tag_partition, endpoints, classify, meta=meta)


def _tag_partition(part: pd.DataFrame, endpoints: Endpoints | None, classify: bool) -> pd.DataFrame:
    return engine.with_categories(tag(part, endpoints=endpoints, classify=classify))


def _match_ips(endpoints: Endpoints, ips: pd.Series) -> pd.DataFrame:
    """``endpoints.match_ips`` on the rows that have an IP; rows without one get NA."""
    present = ips.notna().to_numpy()
    return endpoints.match_ips(ips[present]).reindex(ips.index)


def _keys(out: pd.DataFrame) -> pd.DataFrame:
    """Per row: the message/recipient key, the recipient site (domain, else remote host) and row kinds."""
    message = message_key(out["trace_id"], out["message_id"])
    site = site_key(out["recipient_domain"], out["remote_host"])
    expiry = is_expiry(out["event"], out["enhanced_code"], out["reply"])
    return pd.DataFrame({
        "message": message.astype(object),
        "recipient": out["recipient"].astype(object),
        "site": site.astype(object),
        "refused": out["event"].isin(REFUSAL_EVENTS).to_numpy() & ~expiry,  # an expiry is no delivery attempt
        "accepted": out["event"].isin(ACCEPTED_EVENTS).to_numpy(),
        "expiry": expiry,
        "timestamp": out["timestamp"],
    }, index=out.index)


def _set_cause(out: pd.DataFrame, rows: pd.Series, cause: str, rule: str, evidence: pd.Series) -> None:
    """Re-tag ``rows``; ``evidence`` is indexed like the selected rows."""
    out.loc[rows, "cause"] = cause
    out.loc[rows, "cause_rule"] = rule
    out.loc[rows, "cause_evidence"] = evidence


def _selective_refusals(out: pd.DataFrame, keys: pd.DataFrame, cidr: pd.Series) -> pd.Series:
    """Rows re-tagged gateway_block because their site refuses some EXO source ranges and accepts others."""
    changed = pd.Series(False, index=out.index)
    source = source_range(out["exo_ip"], cidr).astype(object)
    candidate = keys["refused"] & out["cause"].isin(GENERIC_CAUSES + RANGE_SENSITIVE_CAUSES).to_numpy()
    attempts = pd.DataFrame({
        "site": keys["site"], "range": source, "message": keys["message"],
        "refused": candidate, "accepted": keys["accepted"],
    })[(candidate | keys["accepted"]) & source.notna() & keys["site"].notna()]
    if attempts.empty:
        return changed
    attempts["refused_message"] = attempts["message"].where(attempts["refused"])
    stats = attempts.groupby(["site", "range"], sort=True).agg(
        refused=("refused", "sum"), accepted=("accepted", "sum"), messages=("refused_message", "nunique"),
    )
    total = stats["refused"] + stats["accepted"]
    stats["refusing"] = (stats["refused"] > 0) & (stats["accepted"] == 0)
    stats["accepting"] = (stats["accepted"] > 0) & (stats["refused"] <= ACCEPTED_RANGE_MAX_REFUSED * total)
    per_site = pd.DataFrame({
        "refusing": stats["refusing"].groupby(level="site").any(),
        "accepting": stats["accepting"].groupby(level="site").any(),
        "refusals": stats["refused"].where(stats["refusing"], 0).groupby(level="site").sum(),
        "messages": stats["messages"].where(stats["refusing"], 0).groupby(level="site").sum(),
        "accepts": stats["accepted"].where(stats["accepting"], 0).groupby(level="site").sum(),
    })
    per_site["refused_all"] = stats["refused"].groupby(level="site").sum()
    per_site["accepted_all"] = stats["accepted"].groupby(level="site").sum()
    selective = per_site[per_site["refusing"] & per_site["accepting"]]
    if selective.empty:
        return changed
    clear = (
        (selective["refusals"] >= CLEAR_REFUSALS) & (selective["messages"] >= CLEAR_MESSAGES)
        & (selective["accepts"] >= CLEAR_ACCEPTS) & (_chance_of_split(selective) < CHANCE_SPLIT_MAX)
    )
    evidence = {site: _split_evidence(site, stats.loc[site]) for site in selective.index}
    refusing = stats[stats["refusing"]].reset_index()[["site", "range"]]
    refusing = refusing[refusing["site"].isin(selective.index)]
    row_key = pd.MultiIndex.from_arrays([keys["site"], source])
    in_refusing = row_key.isin(pd.MultiIndex.from_frame(refusing))
    clear_site = keys["site"].isin(clear[clear].index).to_numpy()
    overridable = clear_site  # candidate rows already have a generic or range-sensitive cause
    rows = pd.Series(candidate.to_numpy() & in_refusing & overridable, index=out.index)
    # attempts whose source IP the export does not carry (e.g. Get-MessageTraceDetail) but whose reply the
    # same site gave to the refused ranges are the same refusal
    reply_at_site = keys["site"].astype(STRING) + "\x00" + out["cause_rule"].astype(STRING)
    same_reply = reply_at_site.isin(reply_at_site[rows].dropna().unique()).fillna(False).to_numpy(dtype=bool)
    unsourced = pd.Series(candidate.to_numpy() & source.isna().to_numpy() & same_reply & overridable
                          & keys["site"].isin(selective.index).to_numpy(), index=out.index)
    _set_cause(out, rows, "gateway_block", "cross:selective-range-refusal", keys["site"][rows].map(evidence))
    _set_cause(out, unsourced, "gateway_block", "cross:selective-range-refusal",
               keys["site"][unsourced].map(evidence) + "; this attempt's source IP is not in its export, but "
               "its reply is the one the refused ranges got")
    return rows | unsourced


def _chance_of_split(sites: pd.DataFrame) -> pd.Series:
    """How likely each site's split is if its refusals had nothing to do with the source range.

    With the site's overall refusal rate p, every attempt from the refusing ranges refused and every attempt
    from the accepting ranges accepted has probability p**refusals * (1 - p)**accepts. Greylisting or an
    outage (refusals from every range at first, then acceptance) gives splits that chance explains.
    """
    rate = sites["refused_all"] / (sites["refused_all"] + sites["accepted_all"])
    return np.exp(sites["refusals"] * np.log(rate) + sites["accepts"] * np.log1p(-rate))


def _split_evidence(site: str, ranges: pd.DataFrame) -> str:
    refused = ", ".join(f"{r} ({n} refused)" for r, n in ranges.loc[ranges["refusing"], "refused"].items())
    accepted = ", ".join(f"{r} ({n} accepted)" for r, n in ranges.loc[ranges["accepting"], "accepted"].items())
    return f"{site} refuses Exchange Online sources in {refused} but accepts {accepted}"


def _retry_outcome(out: pd.DataFrame, keys: pd.DataFrame, settled: pd.Series) -> pd.Series:
    """Greylisting confirmed by a delivery on retry, or unmasked as a persistent refusal (``settled``: rows an
    earlier rule explained already)."""
    # one factorization of the message+recipient key for every grouping below (NA keys: no group, as groupby's)
    group = keys.groupby(["message", "recipient"], sort=False).ngroup()
    defer = out["event"].eq("defer").to_numpy()
    fail = out["event"].eq("fail").to_numpy()
    stamp = keys["timestamp"]
    first_defer = stamp.where(defer).groupby(group).transform("min")
    last_accept = stamp.where(keys["accepted"]).groupby(group).transform("max")
    n_defer = pd.Series(defer, index=out.index).groupby(group).transform("sum")
    failed = pd.Series(fail, index=out.index).groupby(group).transform("sum") > 0
    accepted = keys["accepted"].groupby(group).transform("sum") > 0
    delivered_after = (last_accept > first_defer).fillna(False).astype(bool)
    cause = out["cause"]

    # unexplained: no rule knew the reply, or only its code class did (a bare "451 ..." names no cause)
    unexplained = (cause.eq("unknown").fillna(False) | out["cause_confidence"].isin(UNEXPLAINED)) & ~settled
    greylisted = (
        pd.Series(defer, index=out.index) & unexplained
        & out["transient"].fillna(False).astype(bool) & delivered_after & (n_defer <= GREYLIST_MAX_DEFERRALS)
    )
    evidence = (
        "deferred " + n_defer[greylisted].astype(int).astype(STRING)
        + "x with an unexplained temporary reply, then delivered on retry"
    )
    _set_cause(out, greylisted, "greylisting", "cross:deferred-then-delivered", evidence)

    persistent = (
        pd.Series(defer | fail, index=out.index) & cause.eq("greylisting").fillna(False) & ~accepted
        & (failed | (n_defer >= PERSISTENT_DEFERRALS))
    )
    evidence = (
        "greylisted " + n_defer[persistent].astype(int).astype(STRING)
        + "x and never accepted: a persistent refusal, not greylisting; "
        + out.loc[persistent, "cause_evidence"].fillna("")
    )
    _set_cause(out, persistent, "gateway_block", "cross:persistent-greylisting", evidence)
    return greylisted | persistent


def _inherit_expiry(out: pd.DataFrame, keys: pd.DataFrame) -> pd.Series:
    """A generic "message expired" failure takes the most frequent cause of its earlier deferrals."""
    expired = (
        keys["expiry"] & out["cause"].isin(("recipient_server_down", "unknown"))
        & keys["message"].notna() & keys["recipient"].notna()
    ).astype(bool)
    if not expired.any():
        return expired
    fails = pd.DataFrame({
        "message": keys["message"], "recipient": keys["recipient"], "failed_at": keys["timestamp"],
    })[expired].reset_index()
    defers = pd.DataFrame({
        "message": keys["message"], "recipient": keys["recipient"], "timestamp": keys["timestamp"],
        "cause": out["cause"].astype(object), "rule": out["cause_rule"].astype(object),
        "evidence": out["cause_evidence"].astype(object),
    })[out["event"].eq("defer").fillna(False).to_numpy() & out["cause"].notna().to_numpy()
       & out["cause"].ne("unknown").to_numpy()]
    pairs = fails.merge(defers, on=["message", "recipient"])
    pairs = pairs[~(pairs["timestamp"] > pairs["failed_at"]).fillna(False)]  # earlier (or undated) deferrals
    pairs = pairs.sort_values("timestamp", kind="stable")  # so "last" below is the latest deferral
    if pairs.empty:
        return pd.Series(False, index=out.index)
    counts = pairs.groupby(["index", "cause"]).agg(
        n=("cause", "size"), last=("timestamp", "max"), rule=("rule", "last"), evidence=("evidence", "last"),
    ).reset_index()
    counts["total"] = counts.groupby("index")["n"].transform("sum")
    best = counts.sort_values(["index", "n", "last"], ascending=[True, False, False]).drop_duplicates("index")
    best = best.set_index("index")
    rows = pd.Series(out.index.isin(best.index), index=out.index)
    text = (
        "message expired after " + best["total"].astype(str) + " deferrals; inherits " + best["cause"]
        + " from " + best["n"].astype(str) + " of them: " + best["evidence"].fillna("").astype(str)
    )
    out.loc[best.index, "cause"] = best["cause"].to_numpy()
    out.loc[best.index, "cause_rule"] = ("expiry-inherits:" + best["rule"].fillna("").astype(str)).to_numpy()
    out.loc[best.index, "cause_evidence"] = text.to_numpy()
    return rows
