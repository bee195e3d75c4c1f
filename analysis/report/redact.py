"""Redaction for shared reports: stable pseudonyms instead of addresses, subjects and message/trace ids.

:func:`redact` returns a copy of an events table (canonical or tagged) and the :class:`Redactor` that made it.
Pseudonyms are HMAC-SHA256 digests keyed with a secret (a fresh random one per report unless given), so the
same value always gets the same pseudonym within a report and nobody without the secret can reverse or
confirm a guess. What is replaced:

* ``sender``/``recipient`` (and any column whose name ends in ``address``): the local part,
  ``anna.schmidt@fabrikam.com`` -> ``user-3f9a2c1b@fabrikam.com``;
* ``subject``: ``subject-<digest>`` (the same subject keeps the same pseudonym, so messages still group);
* ``message_id`` -> ``msg-<digest>``, ``trace_id`` -> ``trace-<digest>``;
* every other text column (``reply``, ``remote_reply``, ``cause_evidence``, ``connector`` ...): each e-mail
  address inside the text (known or not), each message id or trace id of the table, and each local part of the
  table's addresses that stands alone as a word (at least :data:`MIN_BARE_LOCAL` characters long);
  ``source_file`` and ``file`` (a load report's) are reduced to the file name first.

With ``redact_domains=True`` names are hidden too: the domains of addresses and ``recipient_domain`` become
``domain-<digest>.example``; a host under one of those domains becomes ``host-<digest>.domain-<digest>.example``;
a recipient-side host under someone else's domain (``remote_host``, e.g. a hosted gateway
``mx1.hc4112-47.iphmx.com``) keeps only the provider's domain, ``host-<digest>.iphmx.com``, because the
vendor is part of the diagnosis; tenant names ``*.onmicrosoft.com`` become ``tenant-<digest>.onmicrosoft.com``.
Exchange Online's own servers (``*.protection.outlook.com``, ``*.prod.outlook.com``) are Microsoft's and stay.

Not redacted, by design: IP addresses (the allow-list fix is stated in them), SMTP codes, causes, timestamps
and sizes. Subject text quoted *inside* a reply is not searched for (only the subject column is replaced).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import secrets
from collections.abc import Callable, Iterable

import pandas as pd
import pyarrow.compute as pc

from analysis.backends.operations import columns_of, distinct_values, each_partition
from analysis.core.columns import map_unique, to_arrow

__all__ = ["MIN_BARE_LOCAL", "MIN_LEAK_SUBJECT", "Redactor", "redact"]

MIN_BARE_LOCAL = 6  # a local part shorter than this is not searched for as a bare word ("info", "sales")
MIN_LEAK_SUBJECT = 8  # shorter subjects ("Hi", "Test") are not looked for by the leak check: they are words
DIGEST_CHARS = 8  # 32 bits: a collision among 10,000 addresses has a probability of about 1%
ID_DIGEST_CHARS = 16
MICROSOFT_SUFFIXES = ("protection.outlook.com", "prod.outlook.com")
TENANT_SUFFIX = "onmicrosoft.com"

_ADDRESS = re.compile(r"\w[\w.%+'-]*@[\w-]+(?:\.[\w-]+)+")
_WORD = re.compile(r"\w(?:[\w.+-]*\w)?")
_TENANT_PSEUDONYM = re.compile(rf"tenant-[0-9a-f]{{{DIGEST_CHARS}}}\.{re.escape(TENANT_SUFFIX)}")


class Redactor:
    """Pseudonyms for one report. :meth:`learn` the events first, then :meth:`frame` any table of them."""

    def __init__(self, secret: bytes | str | None = None, *, redact_domains: bool = False) -> None:
        if secret is None:
            secret = secrets.token_bytes(32)
        self.secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self.redact_domains = redact_domains
        self._pseudonyms: dict[str, str] = {}  # address -> pseudonym (addresses repeat across columns and text)
        self._addresses: set[str] = set()  # everything below is lower-cased
        self._locals: set[str] = set()
        self._message_ids: set[str] = set()  # without the angle brackets
        self._trace_ids: set[str] = set()
        self._domains: set[str] = set()
        self._hosts: set[str] = set()
        self._subjects: list[str] = []
        self._subject_parts: dict[str, tuple[tuple[str, int], ...]] | None = None
        self._words: set[str] = set()  # the words free text is searched for
        self._hidden: dict[str, str | None] = {}  # dotted name -> its pseudonym (None: not hidden)

    # -- what to look for ----------------------------------------------------------------------------------
    def learn(self, events: pd.DataFrame) -> Redactor:
        """Collect the addresses, ids, domains and remote hosts of ``events`` so free text can be searched."""
        for column in _address_columns(events):
            for address in _lower_distinct(events[column], " "):
                self._addresses.add(address)
                local, at, domain = address.rpartition("@")
                if not at:
                    local, domain = domain, ""
                if len(local) >= MIN_BARE_LOCAL:
                    self._locals.add(local)
                if domain:
                    self._domains.add(domain)
        columns = {"message_id": (self._message_ids, "<> "), "trace_id": (self._trace_ids, " "),
                   "recipient_domain": (self._domains, " "), "remote_host": (self._hosts, " ")}
        for column, (found, strip) in columns.items():
            if column in events:
                found.update(_lower_distinct(events[column], strip))
        if "subject" in events:
            self._subjects.extend(_lower_distinct(events["subject"], ""))
            self._subject_parts = None
        self._words = self._locals | self._trace_ids
        self._hidden.clear()
        return self

    # -- one value ---------------------------------------------------------------------------------------
    def _digest(self, kind: str, value: str, chars: int = DIGEST_CHARS) -> str:
        return hmac.new(self.secret, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:chars]

    def address(self, value: str) -> str:
        """``local@domain`` -> ``user-<digest>@domain`` (the domain pseudonymized too with ``redact_domains``)."""
        found = self._pseudonyms.get(value)
        if found is None:
            local, at, domain = value.strip().lower().rpartition("@")
            found = (f"user-{self._digest('address', local + '@' + domain)}@{self.domain(domain)}" if at
                     else f"user-{self._digest('local', domain)}")
            self._pseudonyms[value] = found
        return found

    def domain(self, value: str) -> str:
        """A domain name: itself, or ``domain-<digest>.example`` with ``redact_domains``."""
        value = value.lower()
        return f"domain-{self._digest('domain', value)}.example" if self.redact_domains else value

    def host(self, value: str) -> str:
        """A host name, hidden as described in the module docstring when ``redact_domains`` is on."""
        return (self._host(value.lower()) or value) if self.redact_domains else value

    def _host(self, host: str) -> str | None:
        """The pseudonym of a lower-cased dotted name that must be hidden, else None."""
        if host not in self._hidden:
            self._hidden[host] = self._find_host(host)
        return self._hidden[host]

    def _find_host(self, host: str) -> str | None:
        remote = host in self._hosts
        if not remote and host.endswith(MICROSOFT_SUFFIXES):
            return None
        labels = host.split(".")
        for start in range(len(labels) - 1):  # a known domain anywhere in the name, longest first
            for end in range(len(labels), start + 1, -1):
                domain = ".".join(labels[start:end])
                if domain in self._domains:
                    name = self.domain(domain)
                    if start:
                        name = f"host-{self._digest('host', '.'.join(labels[:end]))}.{name}"
                    return ".".join([name, *labels[end:]])
        if host.endswith("." + TENANT_SUFFIX) and not _TENANT_PSEUDONYM.fullmatch(host):
            return f"tenant-{self._digest('tenant', host)}.{TENANT_SUFFIX}"
        if remote:
            return f"host-{self._digest('host', host)}.{_provider(labels)}"
        return None

    def subject(self, value: str) -> str:
        return f"subject-{self._digest('subject', value)}"

    def message_id(self, value: str) -> str:
        return f"msg-{self._digest('message_id', _id_key(value), ID_DIGEST_CHARS)}"

    def trace_id(self, value: str) -> str:
        return f"trace-{self._digest('trace_id', value.lower(), ID_DIGEST_CHARS)}"

    def text(self, value: str) -> str:
        """Free text with every address, known id, bare known local part (and hidden name) replaced."""
        if "@" in value:
            value = _ADDRESS.sub(self._address_token, value)
        words = _WORD.findall(value.lower())
        if not self._words.isdisjoint(words) or (
                self.redact_domains and any("." in word and self._host(word) for word in words)):
            value = _WORD.sub(self._word_token, value)
        return value

    def _address_token(self, match: re.Match[str]) -> str:
        token = match.group()
        return self.message_id(token) if token.lower() in self._message_ids else self.address(token)

    def _word_token(self, match: re.Match[str]) -> str:
        token = match.group()
        lower = token.lower()
        if lower in self._trace_ids:
            return self.trace_id(token)
        if lower in self._locals:
            return self.address(lower)
        if self.redact_domains and "." in lower:
            return self._host(lower) or token
        return token

    def leaks(self, text: str) -> dict[str, set[str]]:
        """What of the learned input still shows in ``text`` (a report, a table), by kind; empty when clean.

        Case-insensitive. Looks for every address, every local part that cannot be an ordinary word (at least
        :data:`MIN_BARE_LOCAL` characters with a digit or ``. _ + -``), every subject of at least
        :data:`MIN_LEAK_SUBJECT` characters (as a run of whole words) and, with ``redact_domains``, every name
        that would be hidden.
        """
        lower = text.lower()
        tokens: list[str] = []
        positions: dict[str, list[int]] = {}
        for match in _WORD.finditer(lower):
            tokens.append(match.group())
            positions.setdefault(match.group(), []).append(match.start())
        words, pairs = positions.keys(), set(itertools.pairwise(tokens))

        def shown(subject: str, parts: tuple[tuple[str, int], ...]) -> bool:
            if len(parts) > 1 and not pairs.issuperset(itertools.pairwise(word for word, _ in parts)):
                return False
            word, offset = min(parts, key=lambda part: len(positions.get(part[0], ())))
            return any(at >= offset and lower.startswith(subject, at - offset) for at in positions.get(word, ()))

        found = {
            "addresses": set(_ADDRESS.findall(lower)) & self._addresses,
            "local parts": {w for w in words & self._locals if not w.isalpha()},
            "subjects": {s for s, parts in self._subject_words().items() if shown(s, parts)},
            "names": {w for w in words if "." in w and self._host(w)} if self.redact_domains else set(),
        }
        return {kind: values for kind, values in found.items() if values}

    def _subject_words(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """Subjects the leak check looks for -> their words and where each starts (computed once)."""
        if self._subject_parts is None:
            self._subject_parts = {s: parts for s in self._subjects if len(s) >= MIN_LEAK_SUBJECT and (
                parts := tuple((m.group(), m.start()) for m in _WORD.finditer(s)))}
        return self._subject_parts

    # -- whole tables --------------------------------------------------------------------------------------
    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with every column redacted according to its name (see the module docstring)."""
        out = frame.copy()
        addresses = set(_address_columns(frame))
        special: dict[str, Callable[[str], str]] = {
            "subject": self.subject, "message_id": self.message_id, "trace_id": self.trace_id,
            "recipient_domain": self.domain, "domain": self.domain, "remote_host": self.host,
        }
        special["source_file"] = special["file"] = lambda v: self.text(os.path.basename(v.replace("\\", "/")))
        for column in frame.columns:
            series = frame[column]
            if not _is_text(series):
                continue
            func = self.address if column in addresses else special.get(str(column), self.text)
            out[column] = _map_text(series, func)
        return out


def redact(events: pd.DataFrame, *, secret: bytes | str | None = None,
           redact_domains: bool = False) -> tuple[pd.DataFrame, Redactor]:
    """``(redacted copy of events, the Redactor)``; reuse ``redactor.frame`` for tables derived from ``events``.

    A Dask DataFrame (or a store) is redacted on the cluster: the Redactor learns the distinct addresses, ids,
    domains, hosts and subjects of every partition first, then redacts each partition (lazily) with the same
    pseudonyms as for the whole table at once."""
    redactor = Redactor(secret, redact_domains=redact_domains)
    empty = columns_of(events)
    learned = [*_address_columns(empty), *(c for c in _LEARNED if c in empty.columns)]
    for column, values in distinct_values(events, learned).items():
        redactor.learn(pd.DataFrame({column: pd.array(sorted(values), dtype="string")}))
    meta = redactor.frame(empty)
    return each_partition(events, _redacted_part, redactor, meta, meta=meta), redactor


def _redacted_part(part: pd.DataFrame, redactor: Redactor, meta: pd.DataFrame) -> pd.DataFrame:
    """A redacted partition whose categories have the text dtype of ``meta``'s (a partition without values may
    have kept another one, and Dask cannot combine those)."""
    out = redactor.frame(part)
    fixes = {c: out[c].cat.set_categories(out[c].cat.categories.astype(meta[c].cat.categories.dtype))
             for c in out.columns if isinstance(out[c].dtype, pd.CategoricalDtype)
             and out[c].cat.categories.dtype != meta[c].cat.categories.dtype}
    return out.assign(**fixes) if fixes else out


_LEARNED = ("message_id", "trace_id", "recipient_domain", "remote_host", "subject")  # besides the addresses


def _map_text(series: pd.Series, func: Callable[[str], str]) -> pd.Series:
    """``func`` on each distinct text value; a categorical keeps its dtype, its unused categories redacted too."""
    def apply(value: object) -> object:
        return func(value) if isinstance(value, str) else value

    if isinstance(series.dtype, pd.CategoricalDtype):
        old = list(series.cat.categories)
        new = [apply(c) for c in old]
        if new == old:
            return series
        if len(set(new)) == len(new):
            return series.cat.rename_categories(new)
        return series.astype(object).map(dict(zip(old, new, strict=True))).astype("category")
    mapped = map_unique(series, lambda uniques: pd.Series([apply(v) for v in uniques.to_numpy(dtype=object)],
                                                          dtype=object))
    mapped.index = series.index
    return mapped.astype(series.dtype)


def _address_columns(frame: pd.DataFrame) -> Iterable[str]:
    return [c for c in frame.columns if c in ("sender", "recipient") or str(c).endswith("address")]


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    types = pd.api.types
    return isinstance(dtype, pd.CategoricalDtype) or types.is_object_dtype(dtype) or types.is_string_dtype(dtype)


def _lower_distinct(series: pd.Series, strip: str) -> list[str]:
    """The distinct values of a text column, lower-cased and with ``strip`` characters trimmed (NA and "" left out)."""
    values = pc.utf8_lower(pc.unique(to_arrow(series)))
    if strip:
        values = pc.utf8_trim(values, strip)
    return [v for v in pc.unique(values).to_pylist() if v]


def _id_key(message_id: str) -> str:
    return message_id.strip().strip("<>").lower()


def _provider(labels: list[str]) -> str:
    """The registrable part of a host name: ``iphmx.com``, ``example.co.uk`` (two-letter TLD, short second)."""
    keep = 3 if len(labels) > 2 and len(labels[-1]) == 2 and len(labels[-2]) <= 3 else 2
    return ".".join(labels[-keep:])
