"""Audit a recipient gateway's allow-list against Microsoft's current Exchange Online ranges.

:func:`audit_allowlist` reads an allow-list in one of four formats (sniffed unless given):

* ``text``: one or more entries per line (IPs, CIDRs, ``a.b.c.d/255.255.255.0``, ``a.b.c.d-e.f.g.h``
  ranges, ``n.n.n.`` partial addresses, host names such as ``*.protection.outlook.com``), ``#`` comments;
* ``csv``: a header row and a column of IPs/CIDRs (``ip``, ``cidr``, ``address``, ``network`` ...);
  rows whose ``action``/``policy`` column says block/deny/reject are deny entries;
* ``ironport``: a Cisco Secure Email (IronPort) Host Access Table / sender group export, in the block
  form (``ALLOWED_LIST:`` then indented members and the ``$POLICY``) or the one-line form
  (``.spamdomain.com REJECT``); members use AsyncOS sender-group syntax: CIDRs, full and partial
  addresses (``10.1.1.``), ranges (``10.1.1.1-10``, ``10.1.1-5.``), host names and ``.partialhost``;
* ``postfix``: a ``cidr:`` table or access map (``52.100.0.0/14 OK``); plain domain keys match their
  sub-domains too (Postfix's default ``parent_domain_matches_subdomains``).

It reports the Exchange Online SMTP ranges the list misses (fewest CIDRs), the coverage of addresses
(IPv4 and IPv6 apart), stale entries, over-broad entries, what host-name entries cover, the lines it
could not read, and - given a tagged trace - the deferred or failed messages sent from a missing range.
:meth:`AllowListAudit.corrected` writes the list fixed, in any of the four formats.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import netaddr
import numpy as np
import pandas as pd

from analysis.backends.operations import columns_of, rows_of
from analysis.core.errors import AllowListError
from analysis.core.schema import STRING
from analysis.reference.endpoints import CidrIndex, Endpoints, parse_ips

__all__ = ["FORMATS", "AllowListAudit", "Entry", "audit_allowlist"]

Format = Literal["text", "csv", "ironport", "postfix"]
FORMATS: tuple[str, ...] = ("text", "csv", "ironport", "postfix")

# a host name Exchange Online sends from (reverse DNS of its outbound IPs)
EXO_OUTBOUND_HOST = "mail-am6eur05on2041.outbound.protection.outlook.com"
EXO_HOST_PATTERN = "*.protection.outlook.com"
MARK = "exo-deferrals"

_HOST_RE = re.compile(r"^(\*\.|\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
_PARTIAL_V4 = re.compile(r"^\d{1,3}(\.\d{1,3}){0,2}\.?$")
_SHORT_RANGE = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){0,3})-(\d{1,3})(\.?)$")
_SELECTOR = re.compile(r"^(sbrs\[[^\]]*\]|sbo:\d+|dnslist\[[^\]]*\]|all)$", re.IGNORECASE)
_IRONPORT_ACTIONS = {"ACCEPT", "REJECT", "TCPREFUSE", "RELAY", "CONTINUE"}
_DENY_POLICIES = {"REJECT", "TCPREFUSE"}
_IRONPORT_HEADER = re.compile(r"^([A-Za-z_][\w.-]*)\s*:\s*(.*)$")
_POSTFIX_RESULT = re.compile(
    r"^(ok|permit\w*|relay|dunno|reject\w*|defer\w*|discard|hold|filter|prepend|redirect|bcc|warn|info|"
    r"check_\w+|\d{3}|[245]\.\d{1,3}\.\d{1,3})(\s.*)?$", re.IGNORECASE)
_CSV_COLUMN = re.compile(r"^(ip|ips|ipaddress|ipaddresses|address|addresses|cidr|cidrs|ipcidr|network|"
                         r"networks|subnet|range|iprange|prefix|sender|senderip|host|hostname|entry|value)$")
_CSV_ACTION = re.compile(r"^(action|policy|disposition|type|list|rule)$")
_CSV_COMMENT = re.compile(r"^(comment|comments|description|note|notes|remark)$")
_DENY_WORDS = re.compile(r"^(block|blocked|deny|denied|reject|rejected|drop|blacklist|blocklist)$", re.I)


# --------------------------------------------------------------------------------------------------------
# entries


@dataclass
class Entry:
    """One allow-list entry as read from the file."""

    line: int
    text: str
    kind: Literal["ip", "host", "selector"]
    allow: bool = True
    group: str | None = None
    networks: tuple[netaddr.IPNetwork, ...] = ()
    host: str | None = None
    subdomains: bool = False
    exact: bool = True
    note: str | None = None

    @cached_property
    def ip_set(self) -> netaddr.IPSet:
        return netaddr.IPSet(self.networks)

    def matches_host(self, name: str) -> bool:
        """Does this host entry admit a connection whose verified host name is ``name``?"""
        assert self.host is not None
        return (self.exact and name == self.host) or (self.subdomains and name.endswith("." + self.host))

    def covers_pattern(self, pattern: str) -> bool:
        """Does this host entry admit every host of a ``*.domain`` pattern?"""
        assert self.host is not None
        domain = pattern[2:] if pattern.startswith("*.") else pattern
        if not pattern.startswith("*."):
            return self.matches_host(domain)
        return self.subdomains and (domain == self.host or domain.endswith("." + self.host))


@dataclass
class _Parsed:
    entries: list[Entry] = field(default_factory=list)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    csv_header: list[str] | None = None
    csv_column: int | None = None
    csv_dialect: Any = None


def _ip_token(token: str, fmt: str) -> tuple[tuple[netaddr.IPNetwork, ...], str | None] | None:
    """The networks an address token stands for (None when it is not an address form of ``fmt``)."""
    text = token.strip()
    if text.startswith("[") and "]" in text:  # [2a01:111:f400::]/48, as Postfix allows
        inner, _, rest = text[1:].partition("]")
        text = inner + rest
    try:
        if "/" in text:
            address, _, prefix = text.partition("/")
            if fmt == "ironport" and re.fullmatch(r"\d{1,3}(\.\d{1,3}){0,2}", address):  # AsyncOS n.n/c
                text = ".".join([*address.split("."), "0", "0", "0"][:4]) + "/" + prefix
            network = netaddr.IPNetwork(text)
            note = f"host bits set; read as {network.cidr}" if network.cidr != network else None
            return (network.cidr,), note
        if "-" in text:
            return _range(text, fmt)
        if _PARTIAL_V4.match(text) and (text.count(".") < 3 or text.endswith(".")):
            if fmt in ("ironport", "postfix") or text.endswith("."):
                octets = [o for o in text.split(".") if o]
                if len(octets) < 4 and all(0 <= int(o) <= 255 for o in octets):
                    base = ".".join(octets + ["0"] * (4 - len(octets)))
                    return (netaddr.IPNetwork(f"{base}/{8 * len(octets)}"),), "partial address"
            return None
        address = netaddr.IPAddress(text, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None
    return (netaddr.IPNetwork(f"{address}/{32 if address.version == 4 else 128}"),), None


def _range(text: str, fmt: str) -> tuple[tuple[netaddr.IPNetwork, ...], str | None] | None:
    low, _, high = text.partition("-")
    try:
        first = netaddr.IPAddress(low, flags=netaddr.INET_PTON)
        last = netaddr.IPAddress(high, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError):
        first = last = None
    if first is not None and last is not None:
        if first.version != last.version or first > last:
            return None
        return tuple(netaddr.IPRange(first, last).cidrs()), "range"
    short = _SHORT_RANGE.match(text)
    if fmt != "ironport" or not short:
        return None
    octets = [int(o) for o in short[1].split(".")]
    upper = int(short[2])
    if (len(octets) == 4 and short[3]) or not all(0 <= o <= 255 for o in [*octets, upper]) \
            or upper < octets[-1]:
        return None
    width = 4 - len(octets)
    start = netaddr.IPAddress(".".join(map(str, octets + [0] * width)))
    end = netaddr.IPAddress(".".join(map(str, [*octets[:-1], upper] + [255] * width)))
    return tuple(netaddr.IPRange(start, end).cidrs()), "range"


def _entry(token: str, line: int, fmt: str, *, allow: bool = True, group: str | None = None) -> Entry | str:
    """An Entry for ``token``, or the reason it cannot be read."""
    if _SELECTOR.match(token) and fmt == "ironport":
        return Entry(line, token, "selector", allow=allow, group=group, note="not an address: ignored")
    found = _ip_token(token, fmt)
    if found is not None:
        networks, note = found
        return Entry(line, token, "ip", allow=allow, group=group, networks=networks, note=note)
    name = token.strip().lower().rstrip(".")
    if ("." in name.lstrip("*.")) and _HOST_RE.match(name) and not name.rsplit(".", 1)[-1].isdigit():
        if name.startswith("*."):
            return Entry(line, token, "host", allow=allow, group=group, host=name[2:], subdomains=True,
                         exact=False)
        if name.startswith("."):
            return Entry(line, token, "host", allow=allow, group=group, host=name[1:], subdomains=True,
                         exact=False)
        # Postfix access maps: a domain key matches its sub-domains too (parent_domain_matches_subdomains)
        return Entry(line, token, "host", allow=allow, group=group, host=name, subdomains=fmt == "postfix")
    return f"not an IP address, CIDR, range or host name: {token!r}"


def _add(out: _Parsed, result: Entry | str, line: int, text: str) -> None:
    if isinstance(result, Entry):
        out.entries.append(result)
    else:
        out.rejects.append((line, text.strip(), result))


# --------------------------------------------------------------------------------------------------------
# the four formats

_TEXT_SPLIT = re.compile(r"[\s,;]+")
_RANGE_SPACES = re.compile(r"(?<=[0-9A-Fa-f.:])\s+-\s+(?=[0-9A-Fa-f.:])")


def _parse_text(text: str) -> _Parsed:
    out = _Parsed()
    for n, raw in enumerate(text.splitlines(), 1):
        body = _RANGE_SPACES.sub("-", raw.split("#", 1)[0]).strip()
        for token in filter(None, _TEXT_SPLIT.split(body)):
            _add(out, _entry(token, n, "text"), n, token)
    return out


def _csv_name(cell: str) -> str:
    return re.sub(r"[\s_/-]+", "", cell.strip().lower())


def _parse_csv(text: str) -> _Parsed:
    out = _Parsed()
    sample = "\n".join(line for line in text.splitlines()[:50] if not line.lstrip().startswith("#"))
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    out.csv_dialect = dialect
    reader = csv.reader(io.StringIO(text), dialect)
    action_col = comment_col = None
    for row in reader:
        n = reader.line_num
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if out.csv_header is None:
            names = [_csv_name(cell) for cell in row]
            column = next((i for i, name in enumerate(names) if _CSV_COLUMN.match(name)), None)
            if column is None:
                raise AllowListError(f"line {n}: no IP/CIDR column in the CSV header {row!r} "
                                     "(expected a column named ip, cidr, address, network, range ...)")
            out.csv_header, out.csv_column = row, column
            action_col = next((i for i, name in enumerate(names) if _CSV_ACTION.match(name)), None)
            comment_col = next((i for i, name in enumerate(names) if _CSV_COMMENT.match(name)), None)
            continue
        cell = row[out.csv_column].strip() if out.csv_column < len(row) else ""
        if not cell:
            out.rejects.append((n, dialect.delimiter.join(row), "empty IP/CIDR cell"))
            continue
        allow = not (action_col is not None and action_col < len(row) and _DENY_WORDS.match(row[action_col].strip()))
        entry = _entry(cell, n, "csv", allow=allow)
        if isinstance(entry, Entry) and comment_col is not None and comment_col < len(row):
            entry.group = row[comment_col].strip() or None
        _add(out, entry, n, cell)
    return out


def _policy_allows(policy: str | None, group: str | None, actions: dict[str, str] | None = None) -> bool:
    """Does a sender group (or one-line entry) with this policy admit mail? Unknown policies admit."""
    if policy:
        action = (actions or {}).get(policy.upper(), policy.upper())
        return action not in _DENY_POLICIES
    return not re.search(r"block|black|deny|reject", group or "", re.IGNORECASE)


def _parse_ironport(text: str) -> _Parsed:
    out = _Parsed()
    actions = {"$BLOCKED": "REJECT"}  # mail-flow policy name -> its action (ACCEPT, REJECT, ...)
    groups: list[dict[str, Any]] = []  # sender groups, and one-line entries as groups of one
    depth = 0
    defining: str | None = None  # a "$NAME" line was just read: its action follows
    for n, raw in enumerate(text.splitlines(), 1):
        body = raw.split("#", 1)[0].rstrip()
        stripped = body.strip()
        if not stripped:
            continue
        if depth:
            depth = max(0, depth + stripped.count("{") - stripped.count("}"))
            continue
        action = re.match(r"^(ACCEPT|REJECT|TCPREFUSE|RELAY|CONTINUE)\s*(\{.*)?$", stripped, re.IGNORECASE)
        if action and (defining or "{" in stripped):  # the body of a mail-flow policy definition
            if defining:
                actions[defining] = action[1].upper()
            defining = None
            depth = max(0, stripped.count("{") - stripped.count("}"))
            continue
        defining = None
        if body[:1].isspace():  # a member line of the current sender group
            if not groups or groups[-1]["closed"]:
                groups.append({"name": None, "policy": None, "tokens": [], "closed": False})
            members, policy = _ironport_members(stripped)
            groups[-1]["tokens"] += [(n, token) for token in members]
            groups[-1]["policy"] = policy or groups[-1]["policy"]
            continue
        if groups:
            groups[-1]["closed"] = True
        if re.fullmatch(r"\$\w+", stripped):  # the name of a mail-flow policy definition
            defining = stripped.upper()
            continue
        header = _IRONPORT_HEADER.match(stripped)
        if header and not header[2].startswith(":") and not re.fullmatch(r"[0-9a-fA-F]{1,4}", header[1]):
            name, rest, closed = header[1], header[2], False
        elif stripped.split()[0].upper() == "ALL":
            name, rest, closed = "ALL", stripped[3:], False
        else:  # one-line form: entries, then an action or $POLICY
            name, rest, closed = None, stripped, True
        members, policy = _ironport_members(rest)
        groups.append({"name": name, "policy": policy, "tokens": [(n, t) for t in members], "closed": closed})
    for group in groups:
        allow = _policy_allows(group["policy"], group["name"], actions)
        for n, token in group["tokens"]:
            entry = _entry(token, n, "ironport", allow=allow, group=group["name"] or group["policy"])
            if isinstance(entry, Entry) and group["policy"] is None:
                entry.note = (entry.note + "; " if entry.note else "") + "sender group without a policy"
            _add(out, entry, n, token)
    return out


def _ironport_members(text: str) -> tuple[list[str], str | None]:
    """The member tokens of a HAT line and its policy; a ``(description)`` after the policy is ignored."""
    members: list[str] = []
    policy = None
    for token in filter(None, re.split(r"[\s,]+", text.split("(", 1)[0])):
        if token.startswith("$") or token.upper() in _IRONPORT_ACTIONS:
            policy = token
        else:
            members.append(token)
    return members, policy


def _parse_postfix(text: str) -> _Parsed:
    out = _Parsed()
    logical: list[tuple[int, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[:1].isspace() and logical:  # a continuation line (Postfix table syntax)
            logical[-1] = (logical[-1][0], logical[-1][1] + " " + raw.strip())
        else:
            logical.append((n, raw.strip()))
    for n, line in logical:
        key, _, result = line.partition(" ")
        result = result.strip()
        if key.lower() in ("if", "endif"):
            out.rejects.append((n, line, "if/endif blocks are not evaluated"))
        elif not result:
            out.rejects.append((n, line, "no result after the key (expected e.g. OK)"))
        elif not _POSTFIX_RESULT.match(result):
            out.rejects.append((n, line, f"unknown result {result.split()[0]!r}"))
        elif "@" in key:
            out.entries.append(Entry(n, key, "selector", allow=False, group=result.split()[0],
                                     note="sender address key, not a client: ignored"))
        else:
            verdict = result.split()[0].upper()
            allow = verdict in ("OK", "RELAY") or verdict.startswith("PERMIT") or result.strip().isdigit()
            entry = _entry(key, n, "postfix", allow=allow, group=verdict)
            if isinstance(entry, Entry) and verdict == "DUNNO":
                entry.note = "DUNNO neither allows nor denies"
            _add(out, entry, n, key)
    return out


_PARSERS = {"text": _parse_text, "csv": _parse_csv, "ironport": _parse_ironport, "postfix": _parse_postfix}


def _sniff(text: str) -> Format:
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return "text"
    ironport = re.compile(
        r"^[A-Za-z_][\w.-]*:\s*(\$\w+)?\s*(\(.*)?$|^\s+\$\w+\s*(\(.*)?$"
        r"|^\s*(ACCEPT|REJECT|TCPREFUSE|RELAY|CONTINUE)\s*\{|\s(\$\w+|TCPREFUSE|CONTINUE)\s*(\(.*)?$|^ALL\s*$")
    if any(ironport.search(line.split("#", 1)[0]) for line in lines):
        return "ironport"
    postfix = sum(1 for line in lines if len(line.split(None, 1)) == 2
                  and _POSTFIX_RESULT.match(line.split(None, 1)[1].strip()))
    if postfix * 2 >= len(lines):
        return "postfix"
    first = lines[0]
    for delimiter in (",", ";", "\t"):
        if delimiter in first and any(_CSV_COLUMN.match(_csv_name(cell)) for cell in first.split(delimiter)):
            return "csv"
    return "text"


def _read(source: Any) -> tuple[str, str]:
    """(name, text) of a path, a file-like object or the text itself."""
    if hasattr(source, "read"):
        data, name = source.read(), str(getattr(source, "name", "") or "<file-like>")
    elif isinstance(source, os.PathLike) or (
        isinstance(source, str) and "\n" not in source and not re.search(r"\s", source.strip())
        and (Path(source).exists() or re.search(r"\.(txt|csv|cfg|conf|cidr|list|hat)$", source, re.I))
    ):
        name = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise AllowListError(f"{name}: cannot read the allow-list: {exc.strerror or exc}") from None
    elif isinstance(source, str | bytes):
        data, name = source, "<text>"
    else:
        raise AllowListError(f"cannot read an allow-list from a {type(source).__name__}")
    if isinstance(data, bytes):
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            data = data.decode("utf-16")
        else:
            try:
                data = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                data = data.decode("cp1252", errors="replace")
    return name, data


# --------------------------------------------------------------------------------------------------------
# the audit


def audit_allowlist(source: Any, endpoints: Endpoints | None = None, *, tagged: pd.DataFrame | None = None,
                    fmt: str | None = None) -> AllowListAudit:
    """Audit an allow-list (a path, the text itself, or a file-like object) against ``endpoints``.

    ``endpoints`` defaults to :meth:`Endpoints.fetch` (live, with loud fall-backs). ``fmt`` is one of
    text, csv, ironport, postfix (sniffed when None). ``tagged`` is an events table (``exo_ip``,
    ``event``, ``message_id``, ``recipient`` ...) whose deferred/failed messages sent from a missing range
    are listed. Unreadable lines are reported with their line numbers; a file with nothing readable
    raises :class:`AllowListError` naming it.
    """
    name, text = _read(source)
    if fmt is not None and fmt not in FORMATS:
        raise AllowListError(f"unknown allow-list format {fmt!r}; expected one of {', '.join(FORMATS)}")
    chosen: Format = fmt or _sniff(text)  # type: ignore[assignment]
    try:
        parsed = _PARSERS[chosen](text)
    except AllowListError as exc:
        raise AllowListError(f"{name}: {exc}") from None
    if not any(e.kind in ("ip", "host") for e in parsed.entries):
        shown = "; ".join(f"line {n}: {why}" for n, _, why in parsed.rejects[:3])
        raise AllowListError(f"{name}: no IP address, range or host name could be read as {chosen}"
                             + (f" ({shown})" if shown else " (the file is empty)"))
    return AllowListAudit(name, chosen, text, parsed, endpoints or Endpoints.fetch(), tagged)


_STATUS_REASON = {
    "not_microsoft": "not a Microsoft 365 range (stale, or another sender's)",
    "m365_not_mail_flow": "Microsoft 365, but not an Exchange Online mail-flow range",
}


class AllowListAudit:
    """The findings of :func:`audit_allowlist`; DataFrames and plain values, plus ``summary()``."""

    def __init__(self, source: str, fmt: Format, text: str, parsed: _Parsed, endpoints: Endpoints,
                 tagged: pd.DataFrame | None = None):
        self.source = source
        self.format = fmt
        self.text = text
        self.endpoints = endpoints
        self._parsed = parsed
        self._tagged = tagged
        self._entries = parsed.entries
        smtp = endpoints.exchange_mail_flow_ranges(port=25) or endpoints.exchange_mail_flow_ranges()
        self.required = netaddr.IPSet(smtp)
        self.mail_flow = netaddr.IPSet(endpoints.exchange_mail_flow_ranges())
        self.microsoft = endpoints.ip_set()
        self.allowed = netaddr.IPSet(n for e in self._allowing() for n in e.networks)
        self.missing_set = self.required - self.allowed

    def _allowing(self) -> list[Entry]:
        return [e for e in self._entries if e.kind == "ip" and e.allow]

    @cached_property
    def _statuses(self) -> dict[int, str]:
        return {id(e): self._classify(e) for e in self._entries}

    def _status(self, entry: Entry) -> str:
        """exo, over_broad, m365_not_mail_flow, not_microsoft, deny, denies_exo, host or ignored."""
        return self._statuses[id(entry)]

    def _classify(self, entry: Entry) -> str:
        if entry.kind != "ip":
            return entry.kind if entry.kind == "host" else "ignored"
        if not entry.allow:
            return "denies_exo" if (entry.ip_set & self.required).size else "deny"
        if not (entry.ip_set & self.microsoft).size:
            return "not_microsoft"
        if (entry.ip_set - self.microsoft).size:
            return "over_broad"
        return "exo" if (entry.ip_set & self.mail_flow).size else "m365_not_mail_flow"

    # -- tables -----------------------------------------------------------------------------------------

    @cached_property
    def entries(self) -> pd.DataFrame:
        """Every entry read: line, entry, kind, allow, group, networks, status, note."""
        rows = [{"line": e.line, "entry": e.text, "kind": e.kind, "allow": e.allow, "group": e.group,
                 "networks": " ".join(map(str, e.networks)) or None, "status": self._status(e), "note": e.note}
                for e in self._entries]
        return _frame(rows, {"line": "Int64", "entry": STRING, "kind": STRING, "allow": "boolean",
                             "group": STRING, "networks": STRING, "status": STRING, "note": STRING})

    @cached_property
    def missing(self) -> pd.DataFrame:
        """Exchange Online SMTP ranges the list does not allow, as the fewest CIDRs."""
        cidrs = sorted(self.missing_set.iter_cidrs(), key=lambda c: (c.version, c.first))
        sets = self.endpoints.match_ips([str(c.network) for c in cidrs])["endpoint_set"].to_list() if cidrs else []
        rows = [{"cidr": str(c), "version": c.version, "addresses": c.size, "endpoint_set": s}
                for c, s in zip(cidrs, sets, strict=True)]
        return _frame(rows, {"cidr": STRING, "version": "Int64", "addresses": object, "endpoint_set": "Int64"})

    @property
    def missing_cidrs(self) -> list[str]:
        """The missing ranges as CIDR strings (IPv4 first)."""
        return self.missing["cidr"].to_list()

    @cached_property
    def coverage(self) -> pd.DataFrame:
        """Per address family: required, covered and missing addresses, and the percent covered."""
        rows = []
        for version, label in ((4, "IPv4"), (6, "IPv6")):
            required = sum(c.size for c in self.required.iter_cidrs() if c.version == version)
            missing = sum(c.size for c in self.missing_set.iter_cidrs() if c.version == version)
            percent = 100.0 * (required - missing) / required if required else float("nan")
            rows.append({"family": label, "required": required, "covered": required - missing,
                         "missing": missing, "percent": percent})
        return pd.DataFrame(rows).set_index("family")

    @cached_property
    def stale(self) -> pd.DataFrame:
        """Allowed ranges that are not Exchange Online mail-flow ranges (any more)."""
        rows = [{"line": e.line, "entry": e.text, "status": status, "reason": _STATUS_REASON[status]}
                for e in self._entries if (status := self._status(e)) in _STATUS_REASON]
        return _frame(rows, {"line": "Int64", "entry": STRING, "status": STRING, "reason": STRING})

    @cached_property
    def over_broad(self) -> pd.DataFrame:
        """Allowed ranges that also admit addresses Microsoft does not publish (a security finding)."""
        rows = [{"line": e.line, "entry": e.text, "addresses": e.ip_set.size,
                 "non_microsoft_addresses": (e.ip_set - self.microsoft).size,
                 "exo_addresses": (e.ip_set & self.required).size}
                for e in self._entries if self._status(e) == "over_broad"]
        return _frame(rows, {"line": "Int64", "entry": STRING, "addresses": object,
                             "non_microsoft_addresses": object, "exo_addresses": object})

    @cached_property
    def host_entries(self) -> pd.DataFrame:
        """Host-name entries and whether they admit Exchange Online's outbound hosts."""
        patterns = sorted({u.lower() for s in self.endpoints.sets if s.exo_mail_flow for u in s.urls})
        rows = []
        for e in self._entries:
            if e.kind != "host":
                continue
            covers_outbound = e.allow and e.matches_host(EXO_OUTBOUND_HOST)
            broader = covers_outbound and not (e.host == "protection.outlook.com"
                                               or e.host.endswith(".protection.outlook.com"))
            if not e.allow:
                note = "a deny entry"
            elif covers_outbound:
                note = ("admits Exchange Online's outbound hosts (by verified reverse DNS)"
                        + ("; also admits other hosts under " + e.host if broader else ""))
            else:
                note = f"does not admit Exchange Online's outbound hosts ({EXO_HOST_PATTERN}, e.g. {EXO_OUTBOUND_HOST})"
            rows.append({"line": e.line, "entry": e.text, "host": e.host,
                         "match": "sub-domains" if e.subdomains and not e.exact else
                                  "host and sub-domains" if e.subdomains else "exact host",
                         "allow": e.allow, "covers_exo_outbound": covers_outbound,
                         "covers": ", ".join(p for p in patterns if e.covers_pattern(p)) or None,
                         "broader_than_exo": broader, "note": note})
        return _frame(rows, {"line": "Int64", "entry": STRING, "host": STRING, "match": STRING, "allow": "boolean",
                             "covers_exo_outbound": "boolean", "covers": STRING, "broader_than_exo": "boolean",
                             "note": STRING})

    @cached_property
    def rejects(self) -> pd.DataFrame:
        """Lines (or entries) that could not be read, with the reason."""
        rows = [{"line": n, "text": text, "reason": why} for n, text, why in self._parsed.rejects]
        return _frame(rows, {"line": "Int64", "text": STRING, "reason": STRING})

    @cached_property
    def affected_messages(self) -> pd.DataFrame | None:
        """Deferred/failed messages of the tagged trace sent from a missing range (None without a trace)."""
        if self._tagged is None:
            return None
        present = set(columns_of(self._tagged).columns)
        absent = {"exo_ip", "event", "message_id", "recipient"} - present
        if absent:
            raise AllowListError(f"the tagged trace lacks column(s) {', '.join(sorted(absent))}")
        columns = {"message_id": STRING, "recipient": STRING, "recipient_domain": STRING, "remote_host": STRING,
                   "deferrals": "Int64", "failures": "Int64", "exo_ips": STRING, "missing_ranges": STRING}
        needed = [c for c in ("exo_ip", "event", "message_id", "recipient", "recipient_domain", "remote_host")
                  if c in present]
        events = rows_of(self._tagged, needed, _deferred_or_failed)  # on Dask: only these rows and columns come back
        if not self.missing_set.size or not len(events):
            return _frame([], columns)
        index = CidrIndex((c, str(c)) for c in self.missing_set.iter_cidrs())
        parsed = parse_ips(events["exo_ip"])
        answer = index.lookup(parsed)
        rows = np.where(parsed.codes >= 0, answer[parsed.codes] if len(answer) else -1, -1)
        hit = rows >= 0
        chosen = events[hit].assign(
            _range=[index.answers[a][0] for a in rows[hit]],
            _defer=lambda f: f["event"].astype("string") == "defer",
            _fail=lambda f: f["event"].astype("string") == "fail",
        )
        for optional in ("recipient_domain", "remote_host"):
            if optional not in chosen.columns:
                chosen[optional] = pd.NA
        grouped = chosen.groupby(["message_id", "recipient"], sort=True, dropna=False, observed=True)
        result = grouped.agg(
            recipient_domain=("recipient_domain", "first"), remote_host=("remote_host", "first"),
            deferrals=("_defer", "sum"), failures=("_fail", "sum"),
            exo_ips=("exo_ip", lambda s: ", ".join(sorted(map(str, s.dropna().unique())))),
            missing_ranges=("_range", lambda s: ", ".join(sorted(s.unique()))),
        ).reset_index()
        return _frame(result.to_dict("records"), columns)

    # -- reports ----------------------------------------------------------------------------------------

    def _endpoints_line(self) -> str:
        e = self.endpoints
        line = f"Microsoft 365 endpoints: {e.instance} version {e.version} ({e.date:%Y-%m-%d}), {e.source}"
        return line + (f" - NOT live: {e.fallback}" if e.fallback else "")

    def summary(self) -> str:
        """A plain-text report of every finding."""
        out = [f"Allow-list audit of {self.source} ({self.format} format)", self._endpoints_line(),
               f"Exchange Online SMTP ranges required: {', '.join(str(c) for c in self.required.iter_cidrs())}",
               ""]
        for family, row in self.coverage.iterrows():
            if row["required"]:
                out.append(f"Coverage {family}: {row['percent']:.1f}% of {row['required']:,} addresses "
                           f"({row['missing']:,} missing)")
        missing = self.missing
        if len(missing):
            out += ["", "MISSING Exchange Online ranges (mail from them is refused or deferred):"]
            out += [f"  {r.cidr:<22} {r.addresses:>28,} addresses  (endpoint set {r.endpoint_set})"
                    for r in missing.itertuples()]
        else:
            out += ["", "Nothing missing: every Exchange Online SMTP range is allowed."]
        for title, frame, fmt in (
            ("Over-broad entries (security: they admit far more than Microsoft)", self.over_broad,
             lambda r: f"  line {r.line}: {r.entry} admits {r.non_microsoft_addresses:,} non-Microsoft addresses"),
            ("Stale entries (not Exchange Online mail-flow ranges)", self.stale,
             lambda r: f"  line {r.line}: {r.entry} - {r.reason}"),
            ("Host-name entries", self.host_entries, lambda r: f"  line {r.line}: {r.entry} - {r.note}"),
            ("Lines that could not be read (skipped)", self.rejects,
             lambda r: f"  line {r.line}: {r.text!r} - {r.reason}"),
        ):
            if len(frame):
                out += ["", f"{title}:"] + [fmt(r) for r in frame.itertuples()]
        denies = self.entries[self.entries["status"] == "denies_exo"]
        if len(denies):
            out += ["", "Deny entries that match Exchange Online ranges:"]
            out += [f"  line {r.line}: {r.entry} ({r.group})" for r in denies.itertuples()]
        affected = self.affected_messages
        if affected is not None:
            out += ["", f"Deferred/failed messages sent from a missing range: {len(affected)}"]
            out += [f"  {r.recipient} ({r.remote_host}): {r.deferrals} deferral(s), {r.failures} failure(s) "
                    f"from {r.exo_ips}" for r in affected.head(20).itertuples()]
            if len(affected) > 20:
                out.append(f"  ... and {len(affected) - 20} more")
        return "\n".join(out) + "\n"

    def _repr_html_(self) -> str:
        esc = html.escape
        parts = [f"<h4>Allow-list audit of {esc(self.source)} ({esc(self.format)})</h4>",
                 f"<p>{esc(self._endpoints_line())}</p>",
                 self.coverage.to_html(escape=True, float_format=lambda x: f"{x:.1f}")]
        sections = [("Missing Exchange Online ranges", self.missing), ("Over-broad entries", self.over_broad),
                    ("Stale entries", self.stale), ("Host-name entries", self.host_entries),
                    ("Lines that could not be read", self.rejects)]
        if self.affected_messages is not None:
            sections.append(("Deferred/failed messages from missing ranges", self.affected_messages))
        for title, frame in sections:
            body = frame.to_html(index=False, escape=True, na_rep="") if len(frame) else "<p>none</p>"
            parts.append(f"<h5>{esc(title)} ({len(frame)})</h5>{body}")
        return "\n".join(parts)

    def __repr__(self) -> str:
        return (f"AllowListAudit(source={self.source!r}, format={self.format!r}, missing={self.missing_cidrs}, "
                f"over_broad={len(self.over_broad)}, stale={len(self.stale)}, rejects={len(self.rejects)})")

    # -- the corrected list -----------------------------------------------------------------------------

    def corrected(self, fmt: str | None = None) -> str:
        """The allow-list fixed: missing ranges added, over-broad entries removed, in format ``fmt``.

        In the input's own format the file is kept as it was (comments, order, other entries), with the
        over-broad lines commented out (dropped in CSV) and the additions placed in the allowing sender
        group (IronPort) or at the end. In another format the allowing entries are written afresh.
        """
        fmt = fmt or self.format
        if fmt not in FORMATS:
            raise AllowListError(f"unknown allow-list format {fmt!r}; expected one of {', '.join(FORMATS)}")
        removed = [e for e in self._entries if self._status(e) == "over_broad"]
        kept = [e for e in self._allowing() if e not in removed]
        need = self.required - netaddr.IPSet(n for e in kept for n in e.networks)
        added = [str(c) for c in sorted(need.iter_cidrs(), key=lambda c: (c.version, c.first))]
        note = (f"{MARK}: checked against Microsoft 365 endpoints {self.endpoints.instance} version "
                f"{self.endpoints.version}; {len(added)} Exchange Online range(s) added, "
                f"{len(removed)} over-broad entr{'y' if len(removed) == 1 else 'ies'} removed")
        if fmt == self.format:
            return self._patched(added, removed, note)
        hosts = [e for e in self._entries if e.kind == "host" and e.allow]
        return _render(fmt, [str(n) for e in kept for n in e.networks], hosts, added, note)

    def _patched(self, added: list[str], removed: list[Entry], note: str) -> str:
        lines = self.text.splitlines()
        gone = {e.line for e in removed}
        survivors = [e for e in self._entries if e.line in gone and e not in removed]
        if self.format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, self._parsed.csv_dialect, lineterminator="\n")
            header = self._parsed.csv_header or []
            width = len(header)
            comment = next((i for i, c in enumerate(header) if _CSV_COMMENT.match(_csv_name(c))), None)
            for cidr in added:
                row = [""] * width
                row[self._parsed.csv_column] = cidr
                if comment is not None:
                    row[comment] = f"added by {MARK}: Exchange Online"
                writer.writerow(row)
            kept_lines = [line for n, line in enumerate(lines, 1) if n not in gone]
            return "\n".join(kept_lines).rstrip("\n") + "\n" + buffer.getvalue()
        reasons = {e.line: f"# {MARK}: removed over-broad entry (admits {(e.ip_set - self.microsoft).size:,} "
                           f"non-Microsoft addresses): " for e in removed}
        out = [re.match(r"\s*", line)[0] + reasons[n] + line.strip() if n in gone else line
               for n, line in enumerate(lines, 1)]
        extra = [e.text for e in survivors]
        if self.format == "ironport":
            return self._patched_ironport(out, added + extra, note)
        block = [f"# {note}"]
        block += [f"{item} OK" for item in added + extra] if self.format == "postfix" else added + extra
        return "\n".join([*out, *block]) + "\n"

    def _patched_ironport(self, lines: list[str], additions: list[str], note: str) -> str:
        if not additions:
            return "\n".join([*lines, f"# {note}"]) + "\n"
        groups: dict[str, list[Entry]] = {}
        for e in self._allowing():
            if e.group and not e.group.startswith("$") and e.group.upper() not in _IRONPORT_ACTIONS:
                groups.setdefault(e.group, []).append(e)
        if groups:
            best = max(groups.values(), key=lambda es: sum(self._status(e) == "exo" for e in es))
            last = max(e.line for e in best)
            indent = re.match(r"\s*", lines[last - 1])[0] or "    "
            insert = [f"{indent}# {note}"] + [f"{indent}{item}" for item in additions]
            return "\n".join(lines[:last] + insert + lines[last:]) + "\n"
        return "\n".join([*lines, "", "EXCHANGE_ONLINE:", f"    # {note}",
                          *(f"    {item}" for item in additions), "    $TRUSTED"]) + "\n"


def _render(fmt: str, networks: list[str], hosts: list[Entry], added: list[str], note: str) -> str:
    """An allow-list in ``fmt`` from scratch: the kept networks, the host entries and the additions."""
    networks = list(dict.fromkeys(networks))
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["network", "comment"])
        writer.writerows([n, ""] for n in networks)
        writer.writerows([t, "host name"] for h in hosts for t in _host_texts(h, "csv"))
        writer.writerows([c, f"added by {MARK}: Exchange Online"] for c in added)
        return buffer.getvalue()
    if fmt == "postfix":
        out = [f"# {note}", *(f"{n} OK" for n in networks + added)]
        if hosts:
            out += ["# host-name entries belong in a check_client_access hash: map, not in a cidr: table:"]
            out += [f"#   {h.host} OK" for h in hosts]
        return "\n".join(out) + "\n"
    if fmt == "ironport":
        members = networks + [t for h in hosts for t in _host_texts(h, "ironport")] + added
        return "\n".join([f"# {note}", "ALLOWED_LIST:", *(f"    {m}" for m in members), "    $TRUSTED"]) + "\n"
    texts = [t for h in hosts for t in _host_texts(h, "text")]
    return "\n".join([f"# {note}", *networks, *texts, *added]) + "\n"


def _host_texts(entry: Entry, fmt: str) -> list[str]:
    """How ``fmt`` writes a host entry: the exact host and/or its sub-domains."""
    wildcard = f".{entry.host}" if fmt == "ironport" else f"*.{entry.host}"
    return ([str(entry.host)] if entry.exact else []) + ([wildcard] if entry.subdomains else [])


def _deferred_or_failed(events: pd.DataFrame) -> pd.DataFrame:
    return events[events["event"].astype("string").isin(["defer", "fail"]).fillna(False).to_numpy(dtype=bool)]


def _frame(rows: list[dict[str, Any]], columns: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    return frame.astype({k: v for k, v in columns.items() if v is not object})


# --------------------------------------------------------------------------------------------------------
# command line: exo-deferrals audit-allowlist
