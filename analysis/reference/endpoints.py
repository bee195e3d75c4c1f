"""Microsoft 365 endpoints: the bundled snapshot, the live IP and URL web service, and bulk matching.

``Endpoints.bundled()`` reads the snapshot shipped in ``analysis/reference/data/endpoints/`` (built by
``tools/build_endpoints_snapshot.py``). ``Endpoints.fetch()`` asks the web service
(``/version/<instance>``, ``/endpoints/<instance>``) and keeps a cache; it downloads the endpoint sets only
when ``/version`` reports a version the cache does not hold. When the service cannot be used it falls back
to the cache, then to the bundled snapshot, and says so loudly (an :class:`EndpointsFallbackWarning` and
the ``fallback`` attribute). Network access can be switched off with ``offline=True`` or the environment
variable ``EXO_DEFERRALS_OFFLINE=1``; the cache directory is ``EXO_DEFERRALS_CACHE`` or the user's cache
directory.

Matching works on whole columns: each distinct value is parsed once, IPv4 addresses as ``uint32`` and
IPv6 addresses as 16-byte big-endian strings (``S16``, which numpy orders like the integers they encode),
and looked up with ``numpy.searchsorted`` in the sorted, disjoint address segments built from the
published CIDRs with netaddr.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import ipaddress
import json
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, overload

import netaddr
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.core.errors import EndpointsError
from analysis.core.schema import STRING

__all__ = [
    "DEFAULT_BASE_URL",
    "INSTANCES",
    "MAIL_FLOW_URLS",
    "CidrIndex",
    "EndpointSet",
    "Endpoints",
    "EndpointsFallbackWarning",
    "ParsedIPs",
    "default_cache_dir",
    "parse_endpoint_records",
    "parse_ips",
    "version_date",
]

DEFAULT_BASE_URL = "https://endpoints.office.com"
INSTANCES = ("Worldwide", "USGovDoD", "USGovGCCHigh", "China")
# URL patterns of the endpoint sets that carry Exchange Online mail flow (EOP / the MX hosts)
MAIL_FLOW_URLS = frozenset({"*.mail.protection.outlook.com", "*.protection.outlook.com", "*.mx.microsoft"})
CATEGORIES = ("Optimize", "Allow", "Default")

_SNAPSHOT = "worldwide.json"
_VERSION_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2,})$")
_PORTS_RE = re.compile(r"^\d{1,5}(-\d{1,5})?(,\d{1,5}(-\d{1,5})?)*$")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_MAX_BODY = 32 * 1024 * 1024
_USER_AGENT = "exo-deferrals (Microsoft 365 endpoints client)"


class EndpointsFallbackWarning(UserWarning):
    """The endpoints in use are not live data: a cached copy or the bundled snapshot."""


# --------------------------------------------------------------------------------------------------------
# endpoint sets


@dataclass(frozen=True)
class EndpointSet:
    """One endpoint set of the web service (an ``/endpoints`` record)."""

    id: int
    service_area: str
    service_area_display_name: str | None
    urls: tuple[str, ...]
    ips: tuple[str, ...]
    tcp_ports: str | None
    udp_ports: str | None
    express_route: bool
    category: str
    required: bool
    notes: str | None = None

    @property
    def exo_mail_flow(self) -> bool:
        """True for the Exchange Online mail-flow sets (``*.protection.outlook.com`` and friends)."""
        return not MAIL_FLOW_URLS.isdisjoint(u.lower() for u in self.urls)

    @property
    def tcp_port_numbers(self) -> frozenset[int]:
        """The TCP ports as numbers (ranges expanded)."""
        return _expand_ports(self.tcp_ports)

    def preference(self) -> tuple[bool, bool, bool, int]:
        """Sort key: Exchange mail-flow sets first, then SMTP (port 25), then Exchange, then by id."""
        return (not self.exo_mail_flow, 25 not in self.tcp_port_numbers, self.service_area != "Exchange",
                self.id)

    def to_record(self) -> dict[str, Any]:
        """The set as a web-service JSON record (blank fields omitted, as the service does)."""
        record: dict[str, Any] = {"id": self.id, "serviceArea": self.service_area}
        if self.service_area_display_name:
            record["serviceAreaDisplayName"] = self.service_area_display_name
        if self.urls:
            record["urls"] = list(self.urls)
        if self.ips:
            record["ips"] = list(self.ips)
        if self.tcp_ports:
            record["tcpPorts"] = self.tcp_ports
        if self.udp_ports:
            record["udpPorts"] = self.udp_ports
        record.update(expressRoute=self.express_route, category=self.category, required=self.required)
        if self.notes:
            record["notes"] = self.notes
        return record


def _expand_ports(ports: str | None) -> frozenset[int]:
    out: set[int] = set()
    for part in (ports or "").split(","):
        if part:
            low, _, high = part.partition("-")
            out.update(range(int(low), int(high or low) + 1))
    return frozenset(out)


def parse_endpoint_records(payload: Any, *, where: str = "endpoints") -> tuple[EndpointSet, ...]:
    """Validate an ``/endpoints`` response (a JSON list of records) and return its endpoint sets."""
    if not isinstance(payload, list):
        raise EndpointsError(f"{where}: expected a JSON list of endpoint sets, got {type(payload).__name__}")
    problems: list[str] = []
    sets: list[EndpointSet] = []
    seen: set[int] = set()
    for n, record in enumerate(payload):
        try:
            endpoint_set = _endpoint_set(record)
        except (TypeError, ValueError) as exc:
            problems.append(f"record {n}: {exc}")
            continue
        if endpoint_set.id in seen:
            problems.append(f"record {n}: duplicate id {endpoint_set.id}")
        seen.add(endpoint_set.id)
        sets.append(endpoint_set)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise EndpointsError(f"{where}: response failed validation: {shown}")
    if not sets:
        raise EndpointsError(f"{where}: response holds no endpoint sets")
    return tuple(sets)


def _endpoint_set(record: Any) -> EndpointSet:
    if not isinstance(record, Mapping):
        raise TypeError(f"expected an object, got {type(record).__name__}")
    set_id = record.get("id")
    if not _is_int(set_id):
        raise ValueError(f"id {set_id!r} is not an integer")
    area = record.get("serviceArea")
    if not isinstance(area, str) or not area:
        raise ValueError(f"set {set_id}: serviceArea {area!r} is not a name")
    urls = _string_list(record.get("urls", []), f"set {set_id}: urls")
    ips = tuple(_cidr_text(ip, set_id) for ip in _string_list(record.get("ips", []), f"set {set_id}: ips"))
    ports = {}
    for key in ("tcpPorts", "udpPorts"):
        value = record.get(key)
        if value is not None and (not isinstance(value, str) or not _PORTS_RE.match(value)):
            raise ValueError(f"set {set_id}: {key} {value!r} is not a port list")
        ports[key] = value or None
    category = record.get("category")
    if category not in CATEGORIES:
        raise ValueError(f"set {set_id}: category {category!r} is not one of {', '.join(CATEGORIES)}")
    flags = {}
    for key in ("expressRoute", "required"):
        value = record.get(key, False)
        if not isinstance(value, bool):
            raise ValueError(f"set {set_id}: {key} {value!r} is not true/false")
        flags[key] = value
    for key in ("serviceAreaDisplayName", "notes"):
        if record.get(key) is not None and not isinstance(record.get(key), str):
            raise ValueError(f"set {set_id}: {key} is not text")
    return EndpointSet(
        id=int(set_id), service_area=area, service_area_display_name=record.get("serviceAreaDisplayName"),
        urls=urls, ips=ips, tcp_ports=ports["tcpPorts"], udp_ports=ports["udpPorts"],
        express_route=flags["expressRoute"], category=category, required=flags["required"],
        notes=record.get("notes"),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{what} is not a list of strings")
    return tuple(value)


def _cidr_text(text: str, set_id: int) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f"set {set_id}: {text!r} is not a CIDR") from None


def version_date(version: str) -> dt.date:
    """The date encoded in a web-service version (``YYYYMMDDNN``); EndpointsError when malformed."""
    match = _VERSION_RE.match(version) if isinstance(version, str) else None
    try:
        if match:
            return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        pass
    raise EndpointsError(f"version {version!r} is not of the form YYYYMMDDNN")


# --------------------------------------------------------------------------------------------------------
# parsing IP columns


@dataclass(frozen=True)
class ParsedIPs:
    """A column of IP texts, parsed once per distinct value.

    ``codes[i]`` is the distinct value of row ``i`` (-1 for a missing value). Per distinct value:
    ``version`` (4, 6, 0 for invalid, -1 for blank), ``v4`` (uint32), ``v6`` (big-endian ``S16``) and
    ``normalized`` (the canonical text, null unless valid).
    """

    codes: np.ndarray
    version: np.ndarray
    v4: np.ndarray
    v6: np.ndarray
    normalized: pa.Array
    index: pd.Index

    @property
    def row_version(self) -> np.ndarray:
        """``version`` per row (-1 for missing and blank values)."""
        return np.append(self.version, np.int8(-1))[np.where(self.codes >= 0, self.codes, len(self.version))]

    @property
    def invalid_count(self) -> int:
        """How many rows hold a non-blank value that is not an IP address."""
        counts = np.bincount(self.codes[self.codes >= 0], minlength=len(self.version))
        return int(counts[self.version == 0].sum())


# a dotted quad without leading zeros: already canonical, parsed without Python per value
_V4_STRICT = r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"
_PORT_RE = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$")
_BRACKET_RE = re.compile(r"^\[(?:ipv6:)?([^\]]+)\](?::\d{1,5})?$", re.IGNORECASE)
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def parse_ips(values: Any) -> ParsedIPs:
    """Parse a column of IP texts (Series, Index, list, numpy or pyarrow array); see :class:`ParsedIPs`.

    Accepted: IPv4, IPv6, ``a.b.c.d:25``, ``[v6]:25``, ``[IPv6:...]``, IPv4-mapped IPv6 (``::ffff:a.b.c.d``,
    read as the IPv4 address), surrounding blanks. Anything else is invalid.
    """
    index = values.index if isinstance(values, pd.Series) else pd.RangeIndex(len(values))
    codes, dictionary = _dictionary(values)
    trimmed = pc.utf8_trim_whitespace(dictionary)
    n = len(trimmed)
    version = np.zeros(n, dtype=np.int8)
    v4 = np.zeros(n, dtype=np.uint32)
    v6 = np.zeros(n, dtype="S16")
    done = np.zeros(n, dtype=bool)
    norm_at: list[np.ndarray] = []
    norm_values: list[str | None] = []

    # dotted quads without leading zeros are already canonical: parsed by pyarrow, no Python per value
    fast = _matches(trimmed, _V4_STRICT)
    if fast.any():
        octets = pc.cast(pc.list_flatten(pc.split_pattern(trimmed.filter(pa.array(fast)), ".")), pa.uint32())
        o = octets.to_numpy().reshape(-1, 4)
        v4[fast] = (o[:, 0] << 24) | (o[:, 1] << 16) | (o[:, 2] << 8) | o[:, 3]
        version[fast] = 4
        done |= fast

    # texts with ":" or "[" (IPv6, ports, brackets); the rest without them cannot be an address
    special = _matches(trimmed, r"[:\[]") & ~done
    plain6 = np.flatnonzero(special)
    if len(plain6):
        packed = _pton6_all(trimmed.take(pa.array(plain6)).to_pylist())
        ok = np.array([p is not None for p in packed], dtype=bool)
        good = plain6[ok]
        full = [p for p in packed if p is not None]
        keys = np.array(full, dtype="S16")
        mapped = keys.view(np.uint8).reshape(-1, 16)[:, :12] if len(keys) else np.empty((0, 12), np.uint8)
        is_mapped = (mapped == np.frombuffer(_V4_MAPPED, np.uint8)).all(axis=1)
        v6[good[~is_mapped]] = keys[~is_mapped]
        version[good[~is_mapped]] = 6
        four = keys[is_mapped].view(np.uint8).reshape(-1, 16)[:, 12:].astype(np.uint32)
        v4[good[is_mapped]] = (four[:, 0] << 24) | (four[:, 1] << 16) | (four[:, 2] << 8) | four[:, 3]
        version[good[is_mapped]] = 4
        norm_at.append(good)
        ntop, af4, af6 = socket.inet_ntop, socket.AF_INET, socket.AF_INET6
        texts = [ntop(af4, k[12:]) if m else ntop(af6, k) for k, m in zip(full, is_mapped.tolist(), strict=True)]
        dotted = pc.match_substring(pa.array(texts, pa.string()), ".").to_numpy(zero_copy_only=False) & ~is_mapped
        for i in np.flatnonzero(dotted):  # inet_ntop writes ::1.2.3.4 where ipaddress (RFC 5952) writes ::102:304
            texts[i] = str(ipaddress.IPv6Address(full[i]))
        norm_values += texts
        done[good] = True
        special[good] = False

    # what inet_pton could not read (ports, brackets, garbage with ":") and blanks: one value at a time
    rest = np.flatnonzero(special | pc.fill_null(pc.equal(trimmed, ""), True).to_numpy(zero_copy_only=False))
    if len(rest):
        parsed = [_parse_one(t) for t in trimmed.take(pa.array(rest)).to_pylist()]
        kinds = np.array([p[0] for p in parsed], dtype=np.int8)
        version[rest] = kinds
        at4, at6 = rest[kinds == 4], rest[kinds == 6]
        v4[at4] = np.array([p[1] for p in parsed if p[0] == 4], dtype=np.uint32)
        v6[at6] = np.array([p[1] for p in parsed if p[0] == 6], dtype="S16")
        norm_at.append(rest)
        norm_values += [p[2] for p in parsed]
    normalized = trimmed
    if norm_at:
        mask = np.zeros(n, dtype=bool)
        order = np.concatenate(norm_at)
        mask[order] = True
        replacement = pa.array(norm_values, type=trimmed.type).take(pa.array(np.argsort(order, kind="stable")))
        normalized = pc.replace_with_mask(trimmed, pa.array(mask), replacement)
    invalid = (version != 4) & (version != 6)
    if invalid.any():
        normalized = pc.if_else(pa.array(invalid), pa.scalar(None, normalized.type), normalized)
    return ParsedIPs(codes=codes, version=version, v4=v4, v6=v6, normalized=normalized, index=index)


def _matches(array: pa.Array, pattern: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring_regex(array, pattern), False).to_numpy(zero_copy_only=False)


def _pton6_all(texts: list[str]) -> list[bytes | None]:
    """inet_pton(AF_INET6) of each text, None where it is not an IPv6 address (a loop, no call per value)."""
    out: list[bytes | None] = []
    append, pton, af6 = out.append, socket.inet_pton, socket.AF_INET6
    for text in texts:
        try:
            append(pton(af6, text))
        except (OSError, ValueError):
            append(None)
    return out


def _parse_one(text: str | None) -> tuple[int, Any, str | None]:
    """(version, value, canonical text) of one trimmed value: -1 blank, 0 invalid, 4, 6."""
    if not text:
        return -1, None, None
    host = text
    match = (_BRACKET_RE.match(text) if text[0] == "[" else _PORT_RE.match(text) if ":" in text else None)
    if match:
        host = match[1]
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        try:
            packed4 = socket.inet_pton(socket.AF_INET, host)
        except (OSError, ValueError):
            return 0, None, None
        return 4, int.from_bytes(packed4, "big"), socket.inet_ntop(socket.AF_INET, packed4)
    if packed.startswith(_V4_MAPPED):
        return 4, int.from_bytes(packed[12:], "big"), socket.inet_ntop(socket.AF_INET, packed[12:])
    return 6, packed, str(ipaddress.IPv6Address(packed))


def _dictionary(values: Any) -> tuple[np.ndarray, pa.Array]:
    """Distinct values as a pyarrow string array plus the code of each row (-1 for missing)."""
    array = _to_arrow(values)
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    dictionary = array.dictionary
    if not (pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type)):
        dictionary = pc.cast(dictionary, pa.string())
    codes = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return codes, dictionary


def _to_arrow(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array is not None and (
        pa.types.is_string(array.type) or pa.types.is_large_string(array.type) or pa.types.is_null(array.type)
        or (pa.types.is_dictionary(array.type) and pa.types.is_string(array.type.value_type))
    ):
        return array.cast(pa.string()) if pa.types.is_null(array.type) else array
    # mixed or non-text values: every value as its text, missing ones stay missing
    items = list(values)
    return pa.array([None if _missing(v) else str(v) for v in items], type=pa.string())


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------------------
# vectorized membership


class CidrIndex:
    """Longest-prefix lookup of many addresses in a fixed collection of labelled CIDRs.

    ``entries`` are (cidr, label) pairs; a CIDR may appear with several labels. Building uses netaddr and
    a sweep over the (always nested or disjoint) networks into sorted, disjoint segments; each segment
    points at an *answer*: the most specific CIDR containing it and the labels of every CIDR containing
    it. Lookups are ``numpy.searchsorted`` over the segment starts.
    """

    def __init__(self, entries: Iterable[tuple[str | netaddr.IPNetwork, Hashable]]):
        labels: dict[netaddr.IPNetwork, set[Hashable]] = {}
        for cidr, label in entries:
            network = netaddr.IPNetwork(cidr).cidr
            labels.setdefault(network, set()).add(label)
        self.answers: list[tuple[str, frozenset[Hashable]]] = []
        self._answer_ids: dict[tuple[str, frozenset[Hashable]], int] = {}
        self._tables = {
            version: self._table(version, [(n, labels[n]) for n in labels if n.version == version])
            for version in (4, 6)
        }

    def _answer(self, stack: list[tuple[int, netaddr.IPNetwork, frozenset[Hashable]]]) -> int:
        key = (str(stack[-1][1]), frozenset().union(*(item[2] for item in stack)))
        if key not in self._answer_ids:
            self._answer_ids[key] = len(self.answers)
            self.answers.append(key)
        return self._answer_ids[key]

    def _table(self, version: int, networks: list[tuple[netaddr.IPNetwork, set[Hashable]]]) -> tuple:
        segments: list[tuple[int, int, int]] = []
        stack: list[tuple[int, netaddr.IPNetwork, frozenset[Hashable]]] = []  # (last address, net, labels)
        cursor = 0  # the first address not yet in a segment

        def emit(last: int) -> None:
            nonlocal cursor
            if cursor <= last:
                segments.append((cursor, last, self._answer(stack)))
                cursor = last + 1

        for network, net_labels in sorted(networks, key=lambda item: (item[0].first, item[0].prefixlen)):
            while stack and stack[-1][0] < network.first:  # networks that end before this one starts
                emit(stack[-1][0])
                stack.pop()
            if stack:  # the part of the enclosing network before this one
                emit(network.first - 1)
            stack.append((network.last, network, frozenset(net_labels)))
            cursor = network.first
        while stack:
            emit(stack[-1][0])
            stack.pop()
        if version == 4:
            starts = np.array([s[0] for s in segments], dtype=np.uint32)
            ends = np.array([s[1] for s in segments], dtype=np.uint32)
        else:
            starts = np.array([s[0].to_bytes(16, "big") for s in segments], dtype="S16")
            ends = np.array([s[1].to_bytes(16, "big") for s in segments], dtype="S16")
        return starts, ends, np.array([s[2] for s in segments], dtype=np.int64)

    def lookup_keys(self, version: int, keys: np.ndarray) -> np.ndarray:
        """Answer index per key (``uint32`` for IPv4, ``S16`` for IPv6); -1 when no CIDR contains it."""
        starts, ends, answers = self._tables[version]
        if not len(starts) or not len(keys):
            return np.full(len(keys), -1, dtype=np.int64)
        position = np.searchsorted(starts, keys, side="right") - 1
        inside = position >= 0
        position = np.where(inside, position, 0)
        inside &= keys <= ends[position]
        return np.where(inside, answers[position], -1)

    def lookup(self, parsed: ParsedIPs) -> np.ndarray:
        """Answer index per *distinct* value of ``parsed`` (-1: invalid or not contained)."""
        out = np.full(len(parsed.version), -1, dtype=np.int64)
        for version, keys in ((4, parsed.v4), (6, parsed.v6)):
            mask = parsed.version == version
            if mask.any():
                out[mask] = self.lookup_keys(version, keys[mask])
        return out

    def contains(self, values: Any) -> np.ndarray:
        """Boolean per row: is the value an address inside one of the CIDRs?"""
        parsed = values if isinstance(values, ParsedIPs) else parse_ips(values)
        hit = self.lookup(parsed) >= 0
        if not len(hit):
            return np.zeros(len(parsed.codes), dtype=bool)
        return np.where(parsed.codes >= 0, hit[parsed.codes], False)


# --------------------------------------------------------------------------------------------------------
# the web service


def default_cache_dir() -> Path:
    """``$EXO_DEFERRALS_CACHE``, else the user's cache directory (XDG on Linux, Library/Caches, LOCALAPPDATA)."""
    env = os.environ.get("EXO_DEFERRALS_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "exo-deferrals" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "exo-deferrals"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "exo-deferrals"


def _offline_from_env() -> bool:
    return os.environ.get("EXO_DEFERRALS_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host in _LOOPBACK_HOSTS:
        return url
    raise EndpointsError(
        f"refusing {url!r}: the endpoints web service must be reached over https "
        "(plain http only for 127.0.0.1, ::1 and localhost)"
    )


def _check_instance(instance: str) -> str:
    for known in INSTANCES:
        if instance.lower() == known.lower():
            return known
    raise EndpointsError(f"unknown instance {instance!r}; expected one of {', '.join(INSTANCES)}")


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        _check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_sleep = time.sleep  # tests replace this to observe the waits


class _Cache:
    """The cache directory: the ClientRequestId and the last endpoint sets per instance."""

    def __init__(self, directory: Path):
        self.dir = directory

    def client_request_id(self) -> str:
        path = self.dir / "client-request-id"
        try:
            return str(uuid.UUID(path.read_text(encoding="ascii").strip()))
        except (OSError, ValueError):
            pass
        value = str(uuid.uuid4())
        try:
            self._write(path, value + "\n")
        except OSError as exc:
            warnings.warn(f"could not keep the ClientRequestId in {path}: {exc}", stacklevel=4)
        return value

    def _path(self, instance: str) -> Path:
        return self.dir / f"endpoints-{instance}.json"

    def load(self, instance: str) -> dict[str, Any] | None:
        path = self._path(instance)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            version_date(data["version"])
            data["sets"] = parse_endpoint_records(data["endpoints"], where=str(path))
            data["fetched_at"] = dt.datetime.fromisoformat(data["fetched_at"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, EndpointsError) as exc:
            warnings.warn(f"ignoring the unusable endpoints cache {path}: {exc}", stacklevel=4)
            return None
        return data

    def save(self, instance: str, version: str, sets: Sequence[EndpointSet], fetched_at: dt.datetime,
             base_url: str) -> None:
        data = {"instance": instance, "version": version, "fetched_at": fetched_at.isoformat(),
                "base_url": base_url, "endpoints": [s.to_record() for s in sets]}
        self._write(self._path(instance), json.dumps(data, indent=1) + "\n")

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                         prefix=path.name, suffix=".tmp") as handle:
            handle.write(text)
        os.replace(handle.name, path)


class _WebService:
    """HTTP client of the Microsoft 365 IP and URL web service (stdlib urllib)."""

    def __init__(self, base_url: str, cache_dir: str | os.PathLike | None, timeout: float,
                 client_request_id: str | None, offline: bool, retries: int, backoff: float,
                 max_retry_after: float):
        self.base_url = _check_url(base_url.rstrip("/"))
        self.cache = _Cache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
        self.timeout = timeout
        self.offline = offline or _offline_from_env()
        self.retries = max(1, retries)
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._client_request_id = str(uuid.UUID(client_request_id)) if client_request_id else None
        host = (urllib.parse.urlsplit(self.base_url).hostname or "").lower()
        handlers: list[urllib.request.BaseHandler] = [_SafeRedirects()]
        if host in _LOOPBACK_HOSTS:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def client_request_id(self) -> str:
        if self._client_request_id is None:
            self._client_request_id = self.cache.client_request_id()
        return self._client_request_id

    def latest_version(self, instance: str) -> str:
        payload = self._get(f"/version/{instance}")
        if isinstance(payload, list):  # some deployments answer with the list form
            payload = next((p for p in payload if isinstance(p, Mapping)
                            and str(p.get("instance", "")).lower() == instance.lower()), None)
        if not isinstance(payload, Mapping):
            raise EndpointsError(f"/version/{instance}: no version object for {instance}")
        if str(payload.get("instance", "")).lower() != instance.lower():
            raise EndpointsError(f"/version/{instance}: answered for instance {payload.get('instance')!r}")
        latest = payload.get("latest")
        version_date(latest)
        return latest

    def endpoint_sets(self, instance: str) -> tuple[EndpointSet, ...]:
        return parse_endpoint_records(self._get(f"/endpoints/{instance}"), where=f"/endpoints/{instance}")

    def changes(self, instance: str, version: str) -> list[Mapping[str, Any]]:
        version_date(version)
        where = f"/changes/{instance}/{version}"
        payload = self._get(where)
        if not isinstance(payload, list) or not all(isinstance(p, Mapping) for p in payload):
            raise EndpointsError(f"{where}: expected a JSON list of change records")
        for n, change in enumerate(payload):
            problem = _change_problem(change)
            if problem:
                raise EndpointsError(f"{where}: record {n} failed validation: {problem}")
        return payload

    def _get(self, path: str) -> Any:
        if self.offline:
            raise EndpointsError("network access is off (offline=True or EXO_DEFERRALS_OFFLINE)")
        where = self.base_url + path
        query = urllib.parse.urlencode({"ClientRequestId": self.client_request_id})
        request = urllib.request.Request(f"{where}?{query}", headers={
            "Accept": "application/json", "User-Agent": _USER_AGENT})
        for attempt in range(1, self.retries + 1):
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    body = response.read(_MAX_BODY + 1)
                    declared = response.headers.get("Content-Length")
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code != 429 and not 500 <= exc.code < 600:
                    raise EndpointsError(f"{where}: HTTP {exc.code} {exc.reason}") from None
                if attempt == self.retries:
                    raise EndpointsError(f"{where}: HTTP {exc.code} {exc.reason}, "
                                         f"still failing after {attempt} attempts") from None
                _sleep(self._wait(exc, attempt, where))
                continue
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise EndpointsError(f"{where}: {type(exc).__name__}: {reason}") from None
            if len(body) > _MAX_BODY:
                raise EndpointsError(f"{where}: response larger than {_MAX_BODY} bytes")
            if declared and declared.isdigit() and int(declared) != len(body):
                raise EndpointsError(f"{where}: the response was cut short ({len(body)} of {declared} bytes)")
            try:
                return json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise EndpointsError(f"{where}: the response is not complete JSON ({exc})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, error: urllib.error.HTTPError, attempt: int, where: str) -> float:
        """Seconds to wait before the next attempt: Retry-After when given, else exponential back-off."""
        header = error.headers.get("Retry-After") if error.headers else None
        if header is None:
            return min(self.backoff * 2 ** (attempt - 1), 30.0)
        header = header.strip()
        if header.isdigit():
            wait = float(header)
        else:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                return min(self.backoff * 2 ** (attempt - 1), 30.0)
            wait = max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
        if wait > self.max_retry_after:
            raise EndpointsError(f"{where}: HTTP {error.code}, the service asks to wait {wait:.0f} s "
                                 f"(Retry-After), longer than {self.max_retry_after:.0f} s")
        return wait


def _change_problem(change: Mapping[str, Any]) -> str | None:
    for key in ("id", "endpointSetId"):
        if not _is_int(change.get(key)):
            return f"{key} {change.get(key)!r} is not an integer"
    if str(change.get("disposition", "")).lower() not in {"change", "add", "remove"}:
        return f"disposition {change.get('disposition')!r} is not Change/Add/Remove"
    try:
        version_date(change.get("version"))
    except EndpointsError as exc:
        return str(exc)
    for part in ("add", "remove"):
        block = change.get(part)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            return f"{part} is not an object"
        try:
            _string_list(block.get("urls", []), f"{part}.urls")
            for ip in _string_list(block.get("ips", []), f"{part}.ips"):
                _cidr_text(ip, change["endpointSetId"])
        except ValueError as exc:
            return str(exc)
    return None


# --------------------------------------------------------------------------------------------------------
# the public object


@lru_cache(maxsize=1)
def _bundled_document() -> dict[str, Any]:
    text = resources.files("analysis.reference").joinpath("data", "endpoints", _SNAPSHOT).read_text(encoding="utf-8")
    return json.loads(text)


class Endpoints:
    """Microsoft 365 endpoint sets of one instance and version, with bulk IP and host matching.

    Attributes: ``instance``, ``version``, ``date`` (from the version), ``source`` ("bundled", "cache" or
    "live"), ``fetched_at`` (when downloaded; None for the bundled snapshot), ``checked_at`` (when the web
    service last confirmed the version), ``fallback`` (why live data was not used; None otherwise),
    ``provenance`` (the bundled snapshot's record of its inputs) and ``sets``.
    """

    def __init__(self, sets: Sequence[EndpointSet] | Sequence[Mapping[str, Any]], *, version: str,
                 instance: str = "Worldwide", source: Literal["bundled", "cache", "live"] = "live",
                 fetched_at: dt.datetime | None = None, checked_at: dt.datetime | None = None,
                 fallback: str | None = None, provenance: Mapping[str, Any] | None = None,
                 _service: _WebService | None = None):
        if sets and not all(isinstance(s, EndpointSet) for s in sets):
            sets = parse_endpoint_records(list(sets))
        self.sets: tuple[EndpointSet, ...] = tuple(sets)  # type: ignore[arg-type]
        self.instance = _check_instance(instance)
        self.date = version_date(version)
        self.version = version
        self.source = source
        self.fetched_at = fetched_at
        self.checked_at = checked_at
        self.fallback = fallback
        self.provenance = dict(provenance or {})
        self._service = _service

    def __repr__(self) -> str:
        note = f", fallback={self.fallback!r}" if self.fallback else ""
        return (f"Endpoints(instance={self.instance!r}, version={self.version!r}, source={self.source!r}, "
                f"sets={len(self.sets)}{note})")

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def bundled(cls) -> Endpoints:
        """The snapshot shipped in the package (Worldwide; see ``provenance`` for what it was built from)."""
        document = _bundled_document()
        provenance = {**document["provenance"], "derived": document["derived"], "note": document["note"]}
        return cls(parse_endpoint_records(document["endpoints"], where="bundled snapshot"),
                   version=document["version"], instance=document["instance"], source="bundled",
                   provenance=provenance)

    @classmethod
    def fetch(cls, instance: str = "Worldwide", *, base_url: str = DEFAULT_BASE_URL,
              cache_dir: str | os.PathLike | None = None, timeout: float = 10.0,
              client_request_id: str | None = None, offline: bool = False, retries: int = 4,
              backoff: float = 0.5, max_retry_after: float = 60.0) -> Endpoints:
        """The current endpoint sets from the web service, with the cache and the snapshot as fall-backs.

        Calls ``/version/<instance>``; downloads ``/endpoints/<instance>`` only when the cache does not
        already hold that version. 429 and 5xx answers are retried (at most ``retries`` attempts,
        exponential back-off from ``backoff`` seconds, ``Retry-After`` honoured up to ``max_retry_after``).
        If the service cannot be used (offline, network error, timeout, invalid answer) the cached sets,
        else the bundled snapshot, are returned with an :class:`EndpointsFallbackWarning`. An http URL
        other than loopback, or an unknown instance, raises :class:`EndpointsError`.
        """
        instance = _check_instance(instance)
        service = _WebService(base_url, cache_dir, timeout, client_request_id, offline, retries, backoff,
                              max_retry_after)
        try:
            latest = service.latest_version(instance)
            checked_at = dt.datetime.now(dt.UTC)
            cached = service.cache.load(instance)
            if cached is not None and cached["version"] == latest:
                return cls(cached["sets"], version=latest, instance=instance, source="cache",
                           fetched_at=cached["fetched_at"], checked_at=checked_at, _service=service)
            sets = service.endpoint_sets(instance)
        except EndpointsError as exc:
            return cls._fall_back(instance, service, str(exc))
        fetched_at = dt.datetime.now(dt.UTC)
        try:
            service.cache.save(instance, latest, sets, fetched_at, service.base_url)
        except OSError as exc:
            warnings.warn(f"could not write the endpoints cache in {service.cache.dir}: {exc}", stacklevel=2)
        return cls(sets, version=latest, instance=instance, source="live", fetched_at=fetched_at,
                   checked_at=checked_at, _service=service)

    @classmethod
    def _fall_back(cls, instance: str, service: _WebService, reason: str) -> Endpoints:
        cached = service.cache.load(instance)
        if cached is not None:
            result = cls(cached["sets"], version=cached["version"], instance=instance, source="cache",
                         fetched_at=cached["fetched_at"], fallback=reason, _service=service)
        elif instance == "Worldwide":
            result = cls.bundled()
            result.fallback = reason
            result._service = service
        else:
            raise EndpointsError(f"no cached or bundled endpoints for instance {instance}: {reason}")
        warnings.warn(
            f"Microsoft 365 endpoints for {instance} are NOT live: using the {result.source} copy of version "
            f"{result.version} (published {result.date:%Y-%m-%d}). Reason: {reason}",
            EndpointsFallbackWarning, stacklevel=3,
        )
        return result

    # -- views ----------------------------------------------------------------------------------------

    def to_frame(self) -> pd.DataFrame:
        """One row per endpoint set."""
        rows = [{
            "id": s.id, "service_area": s.service_area, "category": s.category, "required": s.required,
            "express_route": s.express_route, "exo_mail_flow": s.exo_mail_flow, "tcp_ports": s.tcp_ports,
            "udp_ports": s.udp_ports, "urls": ", ".join(s.urls), "ips": len(s.ips), "notes": s.notes,
        } for s in self.sets]
        frame = pd.DataFrame(rows)
        for column in ("service_area", "category", "tcp_ports", "udp_ports", "urls", "notes"):
            frame[column] = frame[column].astype(STRING)
        return frame.astype({"id": "Int64", "ips": "Int64", "required": "boolean", "express_route": "boolean",
                             "exo_mail_flow": "boolean"})

    def exchange_mail_flow_ranges(self, *, port: int | None = None) -> list[str]:
        """The Exchange Online mail-flow ranges (IPv4 then IPv6), merged into the fewest CIDRs.

        With ``port`` only the mail-flow sets whose TCP ports include it (``port=25``: the SMTP sets).
        """
        chosen = [s for s in self.sets if s.exo_mail_flow and (port is None or port in s.tcp_port_numbers)]
        merged = netaddr.cidr_merge([ip for s in chosen for ip in s.ips])
        return [str(c) for c in sorted(merged, key=lambda c: (c.version, c.first))]

    def ip_set(self) -> netaddr.IPSet:
        """Every published range of every endpoint set, as a netaddr IPSet."""
        return netaddr.IPSet(ip for s in self.sets for ip in s.ips)

    # -- matching ---------------------------------------------------------------------------------------

    @cached_property
    def _index(self) -> CidrIndex:
        return CidrIndex((ip, s.id) for s in self.sets for ip in s.ips)

    @cached_property
    def _by_id(self) -> dict[int, EndpointSet]:
        return {s.id: s for s in self.sets}

    @cached_property
    def _answer_sets(self) -> list[EndpointSet]:
        """The preferred endpoint set of each answer of the range index."""
        return [self._by_id[min(labels, key=lambda i: self._by_id[i].preference())]
                for _, labels in self._index.answers]

    @overload
    def match_ips(self, ips: Any, *, return_invalid_count: Literal[False] = ...) -> pd.DataFrame: ...
    @overload
    def match_ips(self, ips: Any, *, return_invalid_count: Literal[True]) -> tuple[pd.DataFrame, int]: ...

    def match_ips(self, ips: Any, *, return_invalid_count: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, int]:
        """Which endpoint set each address belongs to; one row per input value, index kept.

        Columns: ``ip`` (canonical text, NA when blank or invalid), ``valid``, ``in_m365``,
        ``endpoint_set`` (the Exchange mail-flow set first when several contain it), ``service_area``,
        ``category``, ``exo_mail_flow`` and ``cidr`` (the most specific published range containing it).
        ``in_m365``/``exo_mail_flow`` are NA for invalid input. The number of non-blank values that are
        not addresses is ``df.attrs["invalid"]``, and the second item of the tuple returned with
        ``return_invalid_count=True``.
        """
        parsed = parse_ips(ips)
        answers = self._index.answers
        sets = self._answer_sets
        # per distinct value (plus a last slot for missing rows), then one gather per column
        rows = np.where(parsed.codes >= 0, parsed.codes, len(parsed.version))
        answer = np.append(self._index.lookup(parsed), -1)[rows]
        valid = np.append((parsed.version == 4) | (parsed.version == 6), False)[rows]
        hit = answer >= 0
        safe = np.where(hit, answer, 0)
        set_ids = np.array([s.id for s in sets] or [0], dtype=np.int64)
        mail_flow = np.array([s.exo_mail_flow for s in sets] or [False], dtype=bool)
        take = pa.array(answer, mask=~hit)

        def column(values: list[str]) -> pd.arrays.ArrowStringArray:
            return _strings(pa.array(values, pa.string()).take(take))

        frame = pd.DataFrame({
            "ip": _strings(parsed.normalized.take(pa.array(parsed.codes, mask=parsed.codes < 0))),
            "valid": pd.arrays.BooleanArray(valid, np.zeros(len(valid), dtype=bool)),
            "in_m365": pd.arrays.BooleanArray(hit, ~valid),
            "endpoint_set": pd.arrays.IntegerArray(set_ids[safe], ~hit),
            "service_area": column([s.service_area for s in sets]),
            "category": column([s.category for s in sets]),
            "exo_mail_flow": pd.arrays.BooleanArray(mail_flow[safe] & hit, ~valid),
            "cidr": column([c for c, _ in answers]),
        }, index=parsed.index)
        invalid = parsed.invalid_count
        frame.attrs["invalid"] = invalid
        return (frame, invalid) if return_invalid_count else frame

    @cached_property
    def _host_patterns(self) -> tuple[dict[str, list[int]], dict[str, list[int]], list[tuple[re.Pattern, str, int]]]:
        exact: dict[str, list[int]] = {}
        suffix: dict[str, list[int]] = {}
        other: list[tuple[re.Pattern, str, int]] = []
        for s in self.sets:
            for url in s.urls:
                pattern = url.lower()
                if "*" not in pattern:
                    exact.setdefault(pattern, []).append(s.id)
                elif pattern.startswith("*.") and "*" not in pattern[2:]:
                    suffix.setdefault(pattern[2:], []).append(s.id)
                else:
                    other.append((_wildcard_regex(pattern), pattern, s.id))
        return exact, suffix, other

    def _match_host(self, host: str) -> list[tuple[int, str, int]]:
        """(set id, pattern, specificity) of every URL pattern matching ``host``."""
        exact, suffix, other = self._host_patterns
        found = [(i, host, 10_000) for i in exact.get(host, [])]
        labels = host.split(".")
        for n in range(1, len(labels)):
            parent = ".".join(labels[n:])
            found += [(i, f"*.{parent}", len(parent)) for i in suffix.get(parent, [])]
        found += [(i, pattern, len(pattern)) for regex, pattern, i in other if regex.fullmatch(host)]
        return found

    def match_hosts(self, hosts: Any) -> pd.DataFrame:
        """Which endpoint URL patterns each host name matches; one row per input value, index kept.

        ``*.contoso.com`` matches every sub-domain (any depth) of contoso.com but not contoso.com itself;
        a ``*`` inside a label matches within that label. Columns: ``host`` (lower-cased, trailing dot
        removed; NA when blank or not a host name), ``valid``, ``in_m365``, ``endpoint_set`` (mail-flow
        set first), ``endpoint_sets`` (all matching ids), ``url`` (the matching pattern), ``service_area``,
        ``category``, ``exo_mail_flow``. ``df.attrs["invalid"]`` counts non-blank values that are not
        host names.
        """
        index = hosts.index if isinstance(hosts, pd.Series) else pd.RangeIndex(len(hosts))
        codes, dictionary = _dictionary(hosts)
        names = pc.utf8_rtrim(pc.utf8_lower(pc.utf8_trim_whitespace(dictionary)), ".").to_pylist()
        state = np.zeros(len(names), dtype=np.int8)  # -1 blank, 0 not a host name, 1 host name
        host: list[str | None] = []
        best: list[EndpointSet | None] = []
        url: list[str | None] = []
        all_ids: list[str | None] = []
        for n, name in enumerate(names):
            state[n] = -1 if not name else 1 if _HOST_RE.match(name) else 0
            found = self._match_host(name) if state[n] == 1 else []
            chosen = min(found, key=lambda f: (self._by_id[f[0]].preference(), -f[2])) if found else None
            host.append(name if state[n] == 1 else None)
            best.append(self._by_id[chosen[0]] if chosen else None)
            url.append(chosen[1] if chosen else None)
            all_ids.append(",".join(map(str, sorted({f[0] for f in found}))) if found else None)
        row_state = np.where(codes >= 0, state[codes] if len(state) else -1, -1)
        valid = row_state == 1
        take = pa.array(codes, mask=codes < 0)
        hit_distinct = np.array([b is not None for b in best] or [False])
        hit = valid & hit_distinct[np.where(codes >= 0, codes, 0)]
        flow = np.array([bool(b and b.exo_mail_flow) for b in best] or [False])[np.where(codes >= 0, codes, 0)]
        ids = np.array([b.id if b else 0 for b in best] or [0], dtype=np.int64)[np.where(codes >= 0, codes, 0)]

        def column(values: list[str | None]) -> pd.arrays.ArrowStringArray:
            return _strings(pa.array(values, pa.string()).take(take))

        frame = pd.DataFrame({
            "host": column(host),
            "valid": pd.arrays.BooleanArray(valid, np.zeros(len(valid), dtype=bool)),
            "in_m365": pd.arrays.BooleanArray(hit, ~valid),
            "endpoint_set": pd.arrays.IntegerArray(ids, ~hit),
            "endpoint_sets": column(all_ids),
            "url": column(url),
            "service_area": column([b.service_area if b else None for b in best]),
            "category": column([b.category if b else None for b in best]),
            "exo_mail_flow": pd.arrays.BooleanArray(flow & hit, ~valid),
        }, index=index)
        frame.attrs["invalid"] = int((row_state == 0).sum())
        return frame

    # -- changes ----------------------------------------------------------------------------------------

    def changes_since(self, version: str | None = None) -> pd.DataFrame:
        """What Microsoft changed since ``version`` (default: this object's version), from ``/changes``.

        One row per added or removed IP or URL (a change without one gets a single row with ``kind`` NA).
        Columns: ``change_id``, ``endpoint_set``, ``disposition``, ``impact``, ``version``,
        ``effective_date``, ``action`` (add/remove), ``kind`` (ip/url), ``value``. Needs the network:
        raises :class:`EndpointsError` when offline or when the service fails.
        """
        service = self._service or _WebService(DEFAULT_BASE_URL, None, 10.0, None, False, 4, 0.5, 60.0)
        records = service.changes(self.instance, version or self.version)
        rows = []
        for change in records:
            base = {"change_id": change["id"], "endpoint_set": change["endpointSetId"],
                    "disposition": change.get("disposition"), "impact": change.get("impact"),
                    "version": change.get("version")}
            items = []
            for action in ("add", "remove"):
                block = change.get(action) or {}
                for kind in ("ips", "urls"):
                    items += [(action, kind[:-1], value) for value in block.get(kind, [])]
            effective = (change.get("add") or {}).get("effectiveDate")
            for action, kind, value in items or [(None, None, None)]:
                rows.append({**base, "effective_date": effective, "action": action, "kind": kind, "value": value})
        frame = pd.DataFrame(rows, columns=list(_CHANGE_COLUMNS))
        return frame.astype(_CHANGE_COLUMNS)


_HOST_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_CHANGE_COLUMNS: dict[str, Any] = {
    "change_id": "Int64", "endpoint_set": "Int64", "disposition": STRING, "impact": STRING,
    "version": STRING, "effective_date": STRING, "action": STRING, "kind": STRING, "value": STRING,
}


def _wildcard_regex(pattern: str) -> re.Pattern:
    """Microsoft's URL wildcards: a leading ``*.`` is any sub-domain; any other ``*`` stays inside a label."""
    head = ""
    if pattern.startswith("*."):
        head, pattern = r"(?:[^.]+\.)+", pattern[2:]
    return re.compile(head + "[^.]*".join(re.escape(part) for part in pattern.split("*")))


def _strings(array: pa.Array | pa.ChunkedArray) -> pd.arrays.ArrowStringArray:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return STRING.__from_arrow__(array)


# --------------------------------------------------------------------------------------------------------
# command line: exo-deferrals endpoints
