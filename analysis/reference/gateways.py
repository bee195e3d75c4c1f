"""Recipient-side mail gateway vendors, recognised from the remote host name or the SMTP reply.

The fingerprints are data: ``analysis/reference/data/gateways.toml`` (host suffixes, host patterns, reply patterns
and the sources they come from). :func:`identify_gateways` works on whole columns: each distinct host
and each distinct reply is examined once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.core.errors import ExoDeferralsError
from analysis.reference.rules_file import rule_entries

__all__ = ["Fingerprint", "identify_gateways", "load_fingerprints"]


@dataclass(frozen=True)
class Fingerprint:
    """One entry of gateways.toml."""

    vendor: str
    product: str
    hosts: tuple[str, ...]
    host_patterns: tuple[re.Pattern[str], ...]
    replies: tuple[re.Pattern[str], ...]
    sources: tuple[str, ...]
    note: str | None = None


def load_fingerprints(path: str | Path | None = None) -> tuple[Fingerprint, ...]:
    """The fingerprints of ``path`` (default: the file shipped in the package), validated."""
    if path is None:
        return _shipped()
    return _parse(*rule_entries(path, "gateways.toml", "gateway"))


@lru_cache(maxsize=1)
def _shipped() -> tuple[Fingerprint, ...]:
    return _parse(*rule_entries(None, "gateways.toml", "gateway"))


def _parse(entries: list[dict], where: str) -> tuple[Fingerprint, ...]:
    out = []
    for n, entry in enumerate(entries, 1):
        def fail(problem: str, n: int = n) -> ExoDeferralsError:
            return ExoDeferralsError(f"{where}: gateway entry {n}: {problem}")

        vendor = entry.get("vendor")
        if not isinstance(vendor, str) or not vendor.strip():
            raise fail("no vendor")
        lists = {}
        for key in ("hosts", "host_patterns", "replies", "sources"):
            value = entry.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise fail(f"{key} is not a list of strings")
            lists[key] = value
        if not (lists["hosts"] or lists["host_patterns"] or lists["replies"]):
            raise fail("no hosts, host_patterns or replies")
        if not lists["sources"]:
            raise fail("no sources")
        try:
            host_patterns = tuple(re.compile(p) for p in lists["host_patterns"])
            replies = tuple(re.compile(p, re.IGNORECASE) for p in lists["replies"])
        except re.error as exc:
            raise fail(f"bad regular expression: {exc}") from None
        out.append(Fingerprint(
            vendor=vendor.strip(), product=str(entry.get("product", "")),
            hosts=tuple(h.lower().strip(".") for h in lists["hosts"]), host_patterns=host_patterns,
            replies=replies, sources=tuple(lists["sources"]), note=entry.get("note"),
        ))
    if not out:
        raise ExoDeferralsError(f"{where}: no [[gateway]] entries")
    return tuple(out)


def identify_gateways(remote_host: pd.Series, reply: pd.Series | None = None, *,
                      fingerprints: Sequence[Fingerprint] | None = None) -> pd.Series:
    """The recipient gateway vendor per row: a categorical Series aligned with ``remote_host``, NA if unknown.

    The host name decides first (the longest matching suffix, then the host patterns); the reply text
    is used only for rows whose host identified nothing.
    """
    fingerprints = load_fingerprints() if fingerprints is None else tuple(fingerprints)
    vendors = list(dict.fromkeys(f.vendor for f in fingerprints))
    code_of = {v: n for n, v in enumerate(vendors)}
    suffixes: dict[str, int] = {}
    for f in fingerprints:
        for host in f.hosts:
            suffixes.setdefault(host, code_of[f.vendor])
    patterns = [(p, code_of[f.vendor]) for f in fingerprints for p in f.host_patterns]
    replies = [(p, code_of[f.vendor]) for f in fingerprints for p in f.replies]

    result = _per_distinct(remote_host, lambda host: _host_vendor(host, suffixes, patterns))
    if reply is not None:
        if len(reply) != len(remote_host):
            raise ExoDeferralsError(f"reply has {len(reply)} rows, remote_host has {len(remote_host)}")
        unknown = result < 0
        if unknown.any():
            result[unknown] = _reply_vendors(reply[unknown], replies)
    return pd.Series(pd.Categorical.from_codes(result, categories=vendors), index=remote_host.index,
                     name="gateway")


def _per_distinct(values: pd.Series, decide) -> np.ndarray:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if not len(uniques):
        return np.full(len(values), -1, dtype=np.int64)
    decided = np.array([decide(str(u)) for u in uniques] + [-1], dtype=np.int64)
    return decided[np.where(codes >= 0, codes, len(uniques))]


def _host_vendor(host: str, suffixes: dict[str, int], patterns: list[tuple[re.Pattern[str], int]]) -> int:
    name = host.strip().strip("[]").lower().rstrip(".")
    labels = name.split(".")
    for n in range(len(labels)):
        code = suffixes.get(".".join(labels[n:]))
        if code is not None:
            return code
    for pattern, code in patterns:
        if pattern.fullmatch(name):
            return code
    return -1


def _reply_vendors(reply: pd.Series, replies: list[tuple[re.Pattern[str], int]]) -> np.ndarray:
    """Per row, the code of the first reply pattern (in file order) found in the text, else -1.

    Each distinct text is searched once per pattern, all texts at a time (RE2 in pyarrow; Python's ``re``
    for a pattern RE2 cannot run).
    """
    codes, uniques = pd.factorize(reply.astype(object), use_na_sentinel=True)
    decided = np.full(len(uniques) + 1, -1, dtype=np.int64)  # the last slot is NA's
    if len(uniques):
        texts = pd.Series([u if isinstance(u, str) else str(u) for u in uniques], dtype=object)
        try:
            arrow = pa.array(texts.to_numpy(), type=pa.large_string())
        except (UnicodeError, pa.ArrowException):  # lone surrogates: Python's re only
            arrow = None
        for pattern, code in reversed(replies):  # the first pattern in order wins: it is written last
            try:
                if arrow is None:
                    raise pa.ArrowInvalid("no arrow text")
                hit = pc.match_substring_regex(arrow, pattern.pattern, ignore_case=True).to_numpy(
                    zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                hit = texts.str.contains(pattern, regex=True).to_numpy(dtype=bool)
            decided[:-1][hit] = code
    return decided[np.where(codes >= 0, codes, len(uniques))]
