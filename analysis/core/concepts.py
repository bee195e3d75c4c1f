"""One definition of each concept the layers share: expiry, message / recipient / site keys, domains, source
ranges, UTC.

Tagging (:mod:`analysis.tagging.tag`), the summaries (:mod:`analysis.summaries`), the store
(:mod:`analysis.store.ingest`), the Dask backend (:mod:`analysis.backends.dask`), the report and the widgets use
these functions and nothing else for these questions, so they cannot disagree. Every function works on whole
columns (text work on unique values only).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from analysis.core.columns import map_unique, to_arrow
from analysis.core.schema import STRING

__all__ = [
    "EXPIRY_CODES", "EXPIRY_EVENTS", "EXPIRY_PATTERN", "PAIR_SEPARATOR", "address_domain", "as_utc",
    "covering_network", "is_expiry", "lower_domain", "matches", "message_key", "pair_key", "site_key",
    "source_range",
]

# Exchange Online gives up on a message it could not deliver: 4.4.7 / 5.4.300 "Message expired" (and
# QUEUE.Expired in the tracking logs); 5.4.31x are DNS / connection failures, an expiry when their text says the
# message expired (https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/fix-error-code-5-4-300-through-5-4-399-in-exchange-online).
# "550 5.7.1 Sender account expired" is a refusal by the recipient's server, NOT an expiry of the message.
EXPIRY_CODES = ("4.4.7", "5.4.300")
EXPIRY_PATTERN = r"(?i)\b(?:4\.4\.7|5\.4\.300)\b|\b5\.4\.31\d\b.*expired|queue\.expired|\bmessage expired\b"
EXPIRY_EVENTS = ("fail", "drop")
PAIR_SEPARATOR = " → "  # between a message key and a recipient (no trace id, Message-ID or address holds it)


def matches(values: pd.Series, pattern: str) -> np.ndarray:
    """Whether each value matches the RE2 ``pattern`` (False for NA), computed on unique values."""
    def match(uniques: pd.Series) -> pd.Series:
        found = pc.fill_null(pc.match_substring_regex(to_arrow(uniques), pattern), False)
        return pd.Series(pd.array(found.to_numpy(zero_copy_only=False), dtype="boolean"))
    return map_unique(values, match).fillna(False).to_numpy(dtype=bool)


def is_expiry(event: pd.Series, enhanced_code: pd.Series, reply: pd.Series) -> np.ndarray:
    """Per row: a fail or drop event that is the expiry of a message Exchange Online kept retrying (see
    :data:`EXPIRY_CODES`, :data:`EXPIRY_PATTERN`)."""
    final = event.isin(EXPIRY_EVENTS).to_numpy(dtype=bool)
    out = np.zeros(len(event), dtype=bool)
    rows = np.flatnonzero(final)
    if len(rows):
        code = enhanced_code.iloc[rows].isin(EXPIRY_CODES).to_numpy(dtype=bool)
        out[rows] = code | matches(reply.iloc[rows], EXPIRY_PATTERN)
    return out


def message_key(trace_id: pd.Series, message_id: pd.Series) -> pd.Series:
    """The message: its trace id (MessageTraceId / network message id); a row without one (an Exchange Server
    tracking log, a report without ids) takes the trace id that other rows give its Message-ID when they give
    exactly one; else its Message-ID (NA when neither). So a message seen both in a tracking log and in Exchange
    Online's trace is one message."""
    trace = trace_id.astype(STRING)
    missing = trace.isna().to_numpy(dtype=bool) & message_id.notna().to_numpy(dtype=bool)
    if not missing.any():
        return trace
    message = message_id.astype(STRING)
    known = pd.DataFrame({"message": message, "trace": trace}).dropna().drop_duplicates()
    sole = known.drop_duplicates("message", keep=False)  # Message-IDs with exactly one trace id
    if len(sole):
        found = message[missing].map(pd.Series(sole["trace"].to_numpy(), index=sole["message"].to_numpy()))
        trace = trace.copy()
        trace[missing] = found.astype(STRING).to_numpy()
    return trace.fillna(message)


def pair_key(message: pd.Series, recipient: pd.Series) -> pd.Series:
    """One text per message+recipient from :func:`message_key` and the recipient (NA parts as "")."""
    return (message.astype(STRING).fillna("") + PAIR_SEPARATOR + recipient.astype(STRING).fillna("")).astype(STRING)


def lower_domain(domains: pd.Series) -> pd.Series:
    """Domain names in lower case, as text (NA stays NA)."""
    return domains.astype(STRING).str.lower()


def address_domain(addresses: pd.Series) -> pd.Series:
    """The domain of each address: the part after its last @, as written (NA without an @)."""
    return addresses.astype(STRING).str.extract(r"@([^@]*)$", expand=False)


def site_key(recipient_domain: pd.Series, remote_host: pd.Series | None = None) -> pd.Series:
    """A row's site, where cross-event rules and the Dask partitions look: its recipient domain (lower case),
    else (``remote_host`` given) its remote host (lower case), else NA."""
    site = lower_domain(recipient_domain)
    return site if remote_host is None else site.fillna(remote_host.astype(STRING).str.lower())


def covering_network(ip: Any) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) holding ``ip``; None when it is not an IP address."""
    try:
        address = ipaddress.ip_address(str(ip).strip())
    except ValueError:
        return None
    return str(ipaddress.ip_network(f"{address}/{24 if address.version == 4 else 48}", strict=False))


def source_range(exo_ip: pd.Series, published_cidr: pd.Series) -> pd.Series:
    """Per row, the source range of an Exchange Online IP: the published range holding it (``published_cidr``,
    aligned with ``exo_ip``; NA when unpublished), else its :func:`covering_network` (NA: no IP or not one)."""
    cidr = pd.Series(published_cidr.to_numpy(dtype=object), index=exo_ip.index)
    unpublished = cidr.isna().to_numpy() & exo_ip.notna().to_numpy()
    fallback = map_unique(exo_ip[unpublished].astype(STRING),
                          lambda ips: pd.Series([covering_network(ip) for ip in ips], dtype=STRING))
    out = cidr.astype(STRING)
    out[unpublished] = fallback.to_numpy()
    return out


def as_utc(value: Any) -> pd.Timestamp | None:
    """A UTC Timestamp from text, a datetime or a Timestamp (naive values are UTC); None, NA and blank text: None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) and pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
