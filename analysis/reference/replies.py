"""Parse SMTP replies, Exchange Online ``Detail``/LED texts and NDR lines into structured columns.

Exchange Online (EXO) writes the reply it got, or its own transport error, into the message-trace Detail
(``Reason: [{LED=...};{MSG=...};{FQDN=...};{IP=...};{LRT=...}]``); on-prem tracking logs use the same
grammar inside ``{[...]}``. When EXO wraps the remote server's reply (``450 4.4.317 Cannot connect to remote
server [Message=451 5.7.3 STARTTLS is required to send mail] [LastAttemptedServerName=...]``) the inner reply
is the most specific one; so is the reply inside another MTA's wrapper (Amazon SES, Postfix ``host X said:``,
Exim ``SMTP error from remote mail server after ...:``, Sendmail ``Deferred:``, qmail ``Remote host said:``),
unwrapped in one more step after Exchange's. Formats: docs/reference/exchange-formats.md, sections 3, 6 and 8.

Everything is done on the unique texts with whole-column regex extraction; every pattern is written so that
a search does bounded work per start position (or always succeeds at the first one), keeping 100 KB
adversarial inputs linear-ish.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.core.schema import STRING

__all__ = ["REPLY_COLUMNS", "parse_replies"]

# output column -> dtype, in order
REPLY_COLUMNS: dict[str, object] = {
    "smtp_code": "Int16",
    "enhanced_code": STRING,
    "outer_code": "Int16",
    "outer_enhanced_code": STRING,
    "remote_reply": STRING,
    "led": STRING,
    "remote_host": STRING,
    "remote_ip": STRING,
    "exo_host": STRING,
    "last_retry": STRING,
}

# --- the LED grammar -------------------------------------------------------------------------------------
# The LED ends at the next `};{KEY=`, at `}]`, or (truncated text) at the end; the `$` fallback makes the
# first `{LED=` always match, so the lazy scan runs once.
_LED = re.compile(r"\{LED=(?P<v>.*?)(?:\};\s?\{(?:MSG|FQDN|IP|LRT)=|\}\]|\Z)", re.S)
_FQDN = re.compile(r"\{FQDN=(?P<v>[^{};\[\]]{0,300})")
_IP = re.compile(r"\{IP=(?P<v>[^{};]{0,100})")
_LRT = re.compile(r"\{LRT=(?P<v>[^{};\[\]]{0,100})")

# --- wrappers around the remote server's reply -------------------------------------------------------------
# NDR lines: `Remote Server returned '...'` and `Server at host (ip) returned '...'`; the quoted text runs to
# the last quote (cut in a second, linear step).
# `Server at X returned` without an address names EXO's own NDR-generating server, so host/IP are only taken
# from the `Server at host (ip)` form.
_RETURNED = re.compile(
    r"(?:Remote )?Server(?: at (?P<host>[^()'\[\]\n]{1,128}?)(?: \((?P<ip>[^\s()']{1,64})\))?)?"
    r"\s?returned '(?P<v>.*)",
    re.S | re.I,
)
# `[Message=...]` with one nested bracket level; an unclosed inner `[` is kept, and a truncated text runs
# to the end (EXO's own `[LastAttempted...` facts are cut off afterwards).
_MESSAGE = re.compile(r"\[Message=(?P<v>(?:[^\[\]]|\[[^\[\]]*\]|\[(?![^\[\]]*\]))*)", re.S)
# `... Message expired, cannot connect to remote server(451 5.7.3 ...)` and `[EXO host](inner)`.
_PAREN = re.compile(r"(?:expired\b[^(\[\]\n]{0,300}|\])\((?P<v>.*)", re.S | re.I)
# `550 5.4.300 Message expired -> 451 4.4.400 ... -> 421 4.4.2 Connection dropped`: the last arrow that is
# followed by a reply code starts the innermost reply (\A + greedy prefix: one anchored attempt).
_ARROW = re.compile(r"\A.* -> (?P<v>[245]\d\d[ -][\s\S]*)", re.S)
# on-prem Exchange: `451 4.4.0 Primary target IP address responded with: "421 4.4.2 ..." Attempted ...`
_RESPONDED = re.compile(r"responded with:? ?[\"“](?P<v>.*)", re.S | re.I)
# what a wrapper appends after the reply it quotes: Postfix `(in reply to RCPT TO command)`, a closing quote,
# qmail-send's `Giving up on 192.0.2.1.` (and the expiry sentence after it), Exim's `: retry timeout exceeded`
_IN_REPLY_TO = re.compile(
    r"\s*\(in reply to [^()]{0,40}\)[\s\S]*\Z|'\s*(?:\([^()]{0,80}\)\s*)?\Z|\sGiving up on \S[\s\S]*\Z"
    r"|:\s?retry timeout exceeded\s*\Z"
)
_AFTER_LAST_DQUOTE = re.compile(r"[\"”][^\"”]*\Z")
_AFTER_LAST_QUOTE = re.compile(r"'[^']*\Z")
_AFTER_LAST_PAREN = re.compile(r"\)[^)]*\Z")
# Other MTAs' wrappers (Postfix `host X said: 550 ...`, Exim `SMTP error from remote mail server after RCPT
# TO:<a@b>: 550 ...` and United Internet's `SMTP error from remote server for RCPT TO command, host: H reason:
# 552 ...`, Sendmail `Deferred: 451 ...`, qmail `Remote host said: 550 ...`, Amazon SES `5.1.0 - Unknown
# address error 550-'5.2.2 ...'`): the text after the LAST marker that is followed by a reply code (\A + greedy
# prefix: one anchored attempt; the Exim marker's command part is bounded).
_WRAPPED = re.compile(
    r"\A.*(?:\bsaid:|SMTP error from remote (?:mail )?server (?:after|for) [^\n]{0,300}?:|\bDeferred:|"
    r"Unknown address error [245]\d\d-')\s{0,4}(?P<v>[245]\d\d[ -][\s\S]*|[245]\.\d{1,3}\.\d{1,3}[\s\S]*)",
    re.S | re.I,
)
# EXO's own bracketed facts that follow the inner message: never part of the remote reply.
_EXO_TAIL = re.compile(r"\[(?:LastAttempted|SmtpSecurity)[\s\S]*")

# --- SMTP codes ----------------------------------------------------------------------------------------
_ENH = r"[245]\.\d{1,3}\.\d{1,3}(?!\w|\.\d)"
# a basic code and its enhanced code (`550 5.1.1`, `550-5.7.26`, `550 #5.1.1`)
_PAIR = re.compile(rf"(?<![\w.])(?P<c>[245]\d\d)[ \t-]{{1,4}}#?(?P<e>{_ENH})")
# a basic code alone, only where a reply starts (text start, after a quote, `;`, `=`, `#`, `(`, ...)
_BASIC = re.compile(r"(?<![^\s'\";=<#(\[])(?P<c>[245]\d\d)(?![\w.]|-\d)")
_ENH_ALONE = re.compile(rf"(?<![\w.])(?P<e>{_ENH})")

# --- hosts and IPs ---------------------------------------------------------------------------------------
_LAST_NAME = re.compile(r"\[LastAttemptedServerName=(?P<v>[^\[\]\s]{0,300})")
_LAST_IP = re.compile(r"\[LastAttemptedIP=(?P<v>\[[^\[\]\s]{0,64}\](?::\d{1,5})?|[^\[\]\s]{0,100})")
_PROXY_IP = re.compile(r"OutboundProxyTargetIP: ?(?P<v>[^\s\[\];,]{1,100})")
_PROXY_HOST = re.compile(r"OutboundProxyTargetHostName: ?(?P<v>[^\s\[\];,]{1,300})")
_ENDPOINT = re.compile(r"last endpoint attempted was (?P<v>[^\s\[\];,'\"{}]{1,100})", re.I)
# the EXO server bracket: `[HOST ISO-TIME 16-HEX]` (any host), or `[HOST]` for Microsoft-owned names only;
# anchored at \A with a greedy prefix so the LAST bracket wins and a failed search does not restart.
_HOSTNAME = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9-]{1,63}){1,12}"
_EXO_HOST = re.compile(
    rf"\A.*\[(?:(?P<a>{_HOSTNAME})\s\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{{1,7}})?Z(?:\s[0-9A-Fa-f]{{16}})?"
    rf"|(?P<b>{_HOSTNAME}\.(?:outlook\.com|outlook\.cn|office365\.us|office365\.com|microsoft\.com)))\]",
    re.S | re.I,
)

_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_IP_VALID = re.compile(rf"\A(?:{_IPV4}|[0-9A-Fa-f]{{0,4}}(?::[0-9A-Fa-f]{{0,4}}){{2,7}}(?::{_IPV4})?)\Z")
_IP_BRACKETED = re.compile(r"\A\[(?P<v>[^\]]*)\](?::\d{1,5})?\Z")
_IP_PORT = re.compile(r"\A(?P<v>[^:]*\.[^:]*):\d{1,5}\Z")
_REDACTED = re.compile(r"\A[\sxX*.:#-]*\Z|x{3,}|X{3,}|\*{3,}")


def parse_replies(replies: Iterable[object] | pd.Series, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Parse reply/Detail/LED texts into the :data:`REPLY_COLUMNS` (absent facts are NA).

    A Series' index is kept; any other iterable gets a RangeIndex. Each distinct text is parsed once; NA,
    empty, truncated or malformed texts give NA fields, never an exception. ``columns``: only these of
    :data:`REPLY_COLUMNS` (spreading long texts such as ``led`` back over millions of rows costs time).
    """
    series = replies if isinstance(replies, pd.Series) else pd.Series(list(replies), dtype=object)
    codes, uniques = pd.factorize(series.astype(object), use_na_sentinel=True)
    parsed = _parse_unique(_as_text(pd.Series(uniques, dtype=object)))
    if columns is not None:
        parsed = parsed[list(columns)]
    # one extra all-NA row for the NA sentinel (-1 takes the last row)
    na_row = pd.DataFrame({c: pd.array([pd.NA], dtype=REPLY_COLUMNS[c]) for c in parsed.columns})
    table = pd.concat([parsed, na_row], ignore_index=True)
    out = table.take(np.asarray(codes, dtype=np.intp))
    out.index = series.index
    return out


def _as_text(values: pd.Series) -> pd.Series:
    """Unique raw values as Python ``str`` (object dtype) that pyarrow can hold (lone surrogates replaced)."""
    try:
        text = values.astype(STRING)
    except (UnicodeError, ValueError, TypeError):  # e.g. lone surrogates pyarrow refuses
        text = values.map(lambda v: str(v).encode("utf-8", "replace").decode("utf-8"))
    return text.astype(object)




# literals without which a (case-insensitive) pattern cannot match: texts lacking them skip the regex
_NEEDLES: dict[re.Pattern[str], tuple[str, ...]] = {
    _PAREN: ("expired", "]("), _RETURNED: ("returned '",), _RESPONDED: ("responded with",),
    _ENDPOINT: ("last endpoint attempted was ",), _LED: ("{LED=",), _MESSAGE: ("[Message=",),
    _LAST_NAME: ("[LastAttemptedServerName=",), _LAST_IP: ("[LastAttemptedIP=",),
    _PROXY_IP: ("OutboundProxyTargetIP:",), _PROXY_HOST: ("OutboundProxyTargetHostName:",), _ARROW: (" -> ",),
    _WRAPPED: ("said:", "smtp error from remote ", "deferred:", "unknown address error"),
}


def _groups(text: pd.Series, pattern: re.Pattern[str]) -> pd.DataFrame:
    """The named groups of ``pattern``'s first match in each text (NaN where absent), one column each.

    Texts without any of the pattern's needles skip the regex.
    """
    if not len(text):
        return pd.DataFrame({name: pd.Series([], dtype=object) for name in pattern.groupindex})
    needles = _NEEDLES.get(pattern)
    if needles is not None:
        arrow = pa.array(text.to_numpy(), type=pa.large_string())
        mask = np.logical_or.reduce([pc.match_substring(arrow, needle, ignore_case=True).fill_null(False)
                                     .to_numpy(zero_copy_only=False) for needle in needles])
        if not mask.all():
            found = text[mask].str.extract(pattern) if mask.any() else None
            return pd.DataFrame(found, index=text.index, columns=list(pattern.groupindex), dtype=object)
    return text.str.extract(pattern)


def _extract(text: pd.Series, pattern: re.Pattern[str]) -> pd.Series:
    """The ``v`` group of ``pattern``'s first match in each text (NaN where absent)."""
    return _groups(text, pattern)["v"]


def _coalesce(first: pd.Series, then: pd.Series) -> pd.Series:
    """``first`` where it has a value, else ``then`` (object Series; no dtype inference on the way)."""
    values = first.to_numpy(dtype=object)
    return pd.Series(np.where(pd.isna(values), then.to_numpy(dtype=object), values), index=first.index, dtype=object)


def _blank_to_na(values: pd.Series) -> pd.Series:
    """``values`` stripped, with empty strings as NaN."""
    stripped = values.str.strip()
    return stripped.where(stripped.str.len() > 0)


def _parse_unique(text: pd.Series) -> pd.DataFrame:
    """Parse each unique text (object Series of ``str``, no NA) into the reply columns."""
    text = text.reset_index(drop=True)
    stripped = text.str.strip()

    led = _extract(text, _LED)
    body = led.fillna(stripped)  # the outermost reply: the LED, else the text itself

    returned_groups = _groups(body, _RETURNED)
    returned = returned_groups["v"].str.replace(_AFTER_LAST_QUOTE, "", regex=True)
    inner = returned.fillna(body)  # the reply an NDR line quotes, else the body

    message = _extract(inner, _MESSAGE).str.replace(_EXO_TAIL, "", regex=True).str.rstrip(" ]")
    paren = _extract(inner, _PAREN).str.replace(_AFTER_LAST_PAREN, "", regex=True)
    responded = _extract(inner, _RESPONDED).str.replace(_AFTER_LAST_DQUOTE, "", regex=True)
    arrow = _extract(inner, _ARROW)
    remote_reply = _blank_to_na(message)
    for candidate in (paren, arrow, responded, returned):
        remote_reply = _coalesce(remote_reply, _blank_to_na(candidate))
    # one more step into the reply found so far (or the body): another MTA's wrapper inside, innermost wins
    wrapped = _extract(remote_reply.fillna(inner).astype(object), _WRAPPED).str.replace(_IN_REPLY_TO, "", regex=True)
    remote_reply = _coalesce(_blank_to_na(wrapped), remote_reply)

    outer_code, outer_enh = _codes(body)
    in_code, in_enh = _codes(remote_reply.fillna(""))
    use_inner = in_code.notna() | in_enh.notna()

    ip_at = returned_groups["ip"]
    host_at = returned_groups["host"].where(ip_at.notna())
    remote_host = _first_valid(
        [_extract(text, _FQDN), _extract(text, _LAST_NAME), _extract(text, _PROXY_HOST), host_at],
        _host,
    )
    remote_ip = _first_valid(
        [_extract(text, _IP), _extract(text, _LAST_IP), _extract(text, _PROXY_IP),
         _extract(text, _ENDPOINT), ip_at],
        _ip,
    )
    exo_groups = _groups(body, _EXO_HOST)
    exo = _coalesce(exo_groups["a"], exo_groups["b"])

    columns = {
        "smtp_code": in_code.where(use_inner, outer_code),
        "enhanced_code": in_enh.where(use_inner, outer_enh),
        "outer_code": outer_code,
        "outer_enhanced_code": outer_enh,
        "remote_reply": remote_reply,
        "led": _blank_to_na(body),
        "remote_host": remote_host,
        "remote_ip": remote_ip,
        "exo_host": exo,
        "last_retry": _blank_to_na(_extract(text, _LRT)),
    }
    return pd.DataFrame({c: _typed(v, REPLY_COLUMNS[c]) for c, v in columns.items()})


def _codes(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The first reply's basic and enhanced code: a `550 5.1.1` pair, else a lone basic / enhanced code."""
    pair = _groups(text, _PAIR)
    has_pair = pair["c"].notna()
    code = pair["c"].where(has_pair, _groups(text, _BASIC)["c"])
    enh = pair["e"].where(has_pair, _groups(text, _ENH_ALONE)["e"])
    return code, enh


def _first_valid(candidates: list[pd.Series], clean: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Coalesce ``candidates`` after ``clean`` turned blank, redacted or malformed values into NA."""
    result = clean(candidates[0])
    for candidate in candidates[1:]:
        result = _coalesce(result, clean(candidate))
    return result


def _host(values: pd.Series) -> pd.Series:
    """Host names without a trailing dot; blank or `xxx`/`***`-redacted values become NaN."""
    host = _blank_to_na(values).str.rstrip(".")
    return host.where(~host.str.contains(_REDACTED, na=True) & (host.str.len() > 0))


def _ip(values: pd.Series) -> pd.Series:
    """Bare IPv4/IPv6 addresses (brackets and `:port` removed); anything else becomes NaN."""
    ip = _blank_to_na(values)
    ip = ip.str.replace(_IP_BRACKETED, r"\g<v>", regex=True).str.replace(_IP_PORT, r"\g<v>", regex=True)
    ip = ip.str.rstrip(".")
    return ip.where(ip.str.contains(_IP_VALID, na=False))


def _typed(values: pd.Series, dtype: object) -> pd.Series:
    """``values`` in the output dtype (codes as Int16, the rest as pyarrow strings)."""
    if dtype == "Int16":
        return pd.to_numeric(values, errors="coerce").astype("Int16")
    return values.astype(STRING)
