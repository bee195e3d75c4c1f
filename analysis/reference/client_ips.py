"""The connecting client's IP where a remote server's reply quotes it: the Exchange Online source IP of an attempt.

A gateway that refuses by source address often names the address it refused (Postfix ``Client host [IP] blocked
using ...``, Microsoft ``banned sending IP [IP]``, ...). In a message trace that client is the Exchange Online server
that tried, so the quoted IP is the attempt's ``exo_ip``. The wordings are rules as data with their public sources
(analysis/reference/data/client_ip_patterns.toml). Only the remote server's reply is searched (the inner reply when
Exchange wraps it, else the LED): the remote server's own address (``{IP=}``, ``[LastAttemptedIP=]``,
``OutboundProxyTargetIP``) is ``remote_ip`` (analysis/reference/replies.py) and never taken here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.core.columns import map_unique
from analysis.core.errors import ExoDeferralsError
from analysis.core.schema import STRING
from analysis.reference.replies import parse_replies
from analysis.reference.rules_file import rule_entries

__all__ = ["ClientIpPattern", "client_ips", "load_patterns"]


@dataclass(frozen=True)
class ClientIpPattern:
    """One wording that names the client's IP (an entry of client_ip_patterns.toml)."""

    name: str
    regex: re.Pattern[str]
    needles: tuple[str, ...]
    source: str
    probe: re.Pattern[str]  # the regex without its group: a cheap "does it match at all" test


def load_patterns(path: str | Path | None = None) -> tuple[ClientIpPattern, ...]:
    """The patterns of ``path`` (default: the file shipped in the package), validated."""
    if path is None:
        return _shipped()
    return _parse(*rule_entries(path, "client_ip_patterns.toml", "pattern"))


@lru_cache(maxsize=1)
def _shipped() -> tuple[ClientIpPattern, ...]:
    return _parse(*rule_entries(None, "client_ip_patterns.toml", "pattern"))


def _parse(entries: list[dict], where: str) -> tuple[ClientIpPattern, ...]:
    out = []
    for n, entry in enumerate(entries, 1):
        name, regex, source = entry.get("name"), entry.get("regex"), entry.get("source")
        needles = entry.get("needles", [])
        if not all(isinstance(v, str) and v.strip() for v in (name, regex, source)):
            raise ExoDeferralsError(f"{where}: pattern entry {n}: name, regex and source must be non-empty strings")
        if not isinstance(needles, list) or not all(isinstance(v, str) and v for v in needles):
            raise ExoDeferralsError(f"{where}: pattern {name!r}: needles is not a list of strings")
        try:
            compiled = re.compile(regex, re.IGNORECASE)
        except re.error as exc:
            raise ExoDeferralsError(f"{where}: pattern {name!r}: bad regular expression: {exc}") from None
        if "ip" not in compiled.groupindex:
            raise ExoDeferralsError(f"{where}: pattern {name!r}: the regex has no (?P<ip>...) group")
        probe = re.compile(regex.replace("(?P<ip>", "(?:"), re.IGNORECASE)
        out.append(ClientIpPattern(name, compiled, tuple(v.lower() for v in needles), source, probe))
    if not out:
        raise ExoDeferralsError(f"{where}: no [[pattern]] entries")
    return tuple(out)


def client_ips(replies: pd.Series, patterns: tuple[ClientIpPattern, ...] | None = None) -> pd.Series:
    """The client IP each reply/Detail text quotes (NA where none), aligned with ``replies``.

    Whole-column on the distinct texts; only texts a pattern matches as a whole are parsed (for their remote
    reply) and searched again there. A captured value counts only if it parses as an IPv4/IPv6 address.
    """
    chosen = _shipped() if patterns is None else patterns
    return map_unique(replies.astype(STRING), lambda texts: _on_distinct(texts, chosen)).astype(STRING)


def _on_distinct(texts: pd.Series, patterns: tuple[ClientIpPattern, ...]) -> pd.Series:
    found = pd.Series(pd.NA, index=texts.index, dtype=STRING)
    if not len(texts):
        return found
    arrow = pa.array(texts.to_numpy(dtype=object), type=pa.large_string())
    masks = []
    for pattern in patterns:  # texts with a needle whose whole text matches: only these are parsed
        mask = _contains_any(arrow, pattern.needles)
        if mask.any():
            mask[mask] = texts[mask].astype(object).str.contains(pattern.probe).to_numpy(dtype=bool)
        masks.append(mask)
    candidate = np.logical_or.reduce(masks)
    if not candidate.any():
        return found
    parsed = parse_replies(texts[candidate].astype(object), columns=("remote_reply", "led"))
    remote = parsed["remote_reply"].fillna(parsed["led"]).astype(object)
    ips = pd.Series(np.nan, index=remote.index, dtype=object)
    for pattern, mask in zip(patterns, masks, strict=True):
        todo = ips.isna().to_numpy() & mask[candidate] & remote.notna().to_numpy()
        if todo.any():
            ips[todo] = remote[todo].str.extract(pattern.regex)["ip"].map(_canonical_ip).to_numpy()
    found[candidate] = ips.to_numpy()
    return found


def _contains_any(arrow: pa.Array, needles: tuple[str, ...]) -> np.ndarray:
    """True where a text holds one of ``needles`` (case-insensitive); all True when there are none."""
    if not needles:
        return np.ones(len(arrow), dtype=bool)
    return np.logical_or.reduce([pc.match_substring(arrow, n, ignore_case=True).fill_null(False)
                                 .to_numpy(zero_copy_only=False) for n in needles])


def _canonical_ip(value: object) -> object:
    """``value`` in canonical form where it is an IP address (a version such as 4.7.1 is not), else NaN."""
    if not isinstance(value, str):
        return np.nan
    try:
        return str(ipaddress.ip_address(value.strip(".")))
    except ValueError:
        return np.nan
