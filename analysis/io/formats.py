"""The export formats the loader recognizes, each described by its header (as data, not code paths).

Column names are compared after normalization (lower case, letters and digits only), so ``RecipientAddress``,
``recipient_address`` and ``recipient-address`` are the same column. Sources of every layout:
docs/reference/exchange-formats.md.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

import pandas as pd

from analysis.core.columns import map_unique
from analysis.core.schema import STRING

if TYPE_CHECKING:
    from analysis.io.report import FileReport

_NON_ALNUM = re.compile(r"[^a-z0-9]")


def normalize(name: str) -> str:
    """Canonical spelling of a header name: lower case, letters and digits only."""
    return _NON_ALNUM.sub("", name.strip().strip('"').lower())


@dataclass(frozen=True)
class TraceFormat:
    """One export layout: how to recognize its header and where each canonical column comes from."""

    name: str
    label: str
    layout: str  # "summary" (one row per message+recipient), "events", "recipient_list", "tracking"
    signature: tuple[str, ...]  # normalized columns that must all be present
    columns: dict[str, tuple[str, ...]]  # canonical column -> candidate source columns (normalized)
    any_of: tuple[tuple[str, ...], ...] = ()  # groups of which at least one column must be present
    timestamp_prefix: str | None = None  # a column whose normalized name starts with this holds the time
    timestamp_utc: bool = True  # False: times are in the exporting admin's zone
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict)  # optional hints, e.g. directionality
    statuses: str = "statuses"  # the section of analysis/io/data/vocabularies.toml its status values come from

    def source_for(self, canonical: str, present: dict[str, str]) -> str | None:
        """The original header name feeding ``canonical`` in a file whose normalized headers are ``present``."""
        for candidate in self.columns.get(canonical, ()) + self.extras.get(canonical, ()):
            if candidate in present:
                return present[candidate]
        return None

    def missing(self, present: set[str]) -> list[str]:
        """Signature columns (and any-of groups) absent from ``present``."""
        lacking = [c for c in self.signature if c not in present]
        lacking += [" or ".join(group) for group in self.any_of if not present.intersection(group)]
        return lacking


# the #Fields of Exchange 2016/2019 message-tracking logs; 2013 stops at custom-data, 2010 also lacks
# network-message-id (learn.microsoft.com/exchange/mail-flow/transport-logs/message-tracking, exchange-formats.md s.6)
TRACKING_FIELDS_2016 = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname", "source-context", "connector-id",
    "source", "event-id", "internal-message-id", "message-id", "network-message-id", "recipient-address",
    "recipient-status", "total-bytes", "recipient-count", "related-recipient-address", "reference", "message-subject",
    "sender-address", "return-path", "message-info", "directionality", "tenant-id", "original-client-ip",
    "original-server-ip", "custom-data", "transport-traffic-type", "log-id", "schema-version",
)
TRACKING_FIELD_SETS = {30: ("2016/2019", TRACKING_FIELDS_2016), 27: ("2013", TRACKING_FIELDS_2016[:27]),
                       26: ("2010", tuple(f for f in TRACKING_FIELDS_2016[:27] if f != "network-message-id"))}
_TRACKING_ROW = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z,")

_TRACKING_COLUMNS: dict[str, tuple[str, ...]] = {
    "timestamp": ("datetimeutc", "datetime"),
    "event": ("eventid",),
    "message_id": ("messageid",),
    "trace_id": ("networkmessageid",),
    "sender": ("senderaddress",),
    "recipient": ("recipientaddress",),
    "reply": ("recipientstatus",),
    "subject": ("messagesubject",),
    "size_bytes": ("totalbytes",),
    "connector": ("connectorid",),
    "client_ip": ("originalclientip",),
    "sending_host": ("clienthostname",),
    "sending_ip": ("clientip",),
    "receiving_host": ("serverhostname",),
    "receiving_ip": ("serverip",),
    "directionality": ("directionality",),
}


# columns the EAC summary and enhanced summary reports share, and those Graph's list rows and details share
_EAC_SUMMARY_COLUMNS = {
    "message_id": ("messageid",),
    "trace_id": ("networkmessageid",),
    "sender": ("senderaddress",),
    "recipient": ("recipientstatus",),
    "subject": ("messagesubject",),
    "size_bytes": ("totalbytes",),
    "client_ip": ("originalclientip",),
}
_GRAPH_COLUMNS = {"message_id": ("messageid",), "trace_id": ("id",), "sender": ("senderaddress",),
                  "recipient": ("recipientaddress",), "subject": ("subject",), "size_bytes": ("size",),
                  "status": ("status",)}

FORMATS: tuple[TraceFormat, ...] = (
    TraceFormat(
        name="messagetrace",
        label="Get-MessageTrace / Get-MessageTraceV2 (Export-Csv)",
        layout="summary",
        signature=("received", "senderaddress", "recipientaddress", "status"),
        columns={
            "timestamp": ("received",),
            "message_id": ("messageid",),
            "trace_id": ("messagetraceid",),
            "sender": ("senderaddress",),
            "recipient": ("recipientaddress",),
            "subject": ("subject",),
            "size_bytes": ("size",),
            "status": ("status",),
            "remote_ip": ("toip",),
            "client_ip": ("fromip",),
        },
    ),
    TraceFormat(
        name="messagetrace_detail",
        label="Get-MessageTraceDetail / Get-MessageTraceDetailV2 (Export-Csv)",
        layout="events",
        signature=("date", "event", "detail"),
        any_of=(("messagetraceid", "messageid"),),
        columns={
            "timestamp": ("date",),
            "message_id": ("messageid",),
            "trace_id": ("messagetraceid",),
            "sender": ("senderaddress",),
            "recipient": ("recipientaddress",),
            "subject": ("subject",),
            "event": ("event",),
            "reply": ("detail",),
        },
    ),
    TraceFormat(
        name="eac_enhanced_summary",
        label="EAC historical search: enhanced summary report",
        layout="recipient_list",
        signature=("senderaddress", "recipientstatus", "networkmessageid"),
        any_of=(("connectorid", "deliverypriority", "directionality"),),
        timestamp_prefix="origintimestamp",
        columns={**_EAC_SUMMARY_COLUMNS, "connector": ("connectorid",), "directionality": ("directionality",)},
    ),
    TraceFormat(
        name="eac_summary",
        label="EAC historical search: summary report",
        layout="recipient_list",
        signature=("senderaddress", "recipientstatus"),
        any_of=(("networkmessageid", "messageid"),),
        timestamp_prefix="origintimestamp",
        columns=_EAC_SUMMARY_COLUMNS,
    ),
    TraceFormat(
        name="eac_extended",
        label="EAC historical search: extended report",
        layout="tracking",
        signature=("datetimeutc", "eventid", "recipientaddress", "messageid"),
        columns=_TRACKING_COLUMNS,
    ),
    TraceFormat(
        name="tracking_log",
        label="Exchange Server message-tracking log",
        layout="tracking",
        signature=("datetime", "eventid", "recipientaddress", "messageid"),
        columns=_TRACKING_COLUMNS,
    ),
    TraceFormat(
        name="new_eac",
        label="New EAC message trace: exported results",
        layout="summary",
        signature=("sender", "recipient", "status"),
        timestamp_prefix="date",
        timestamp_utc=False,
        columns={
            "message_id": ("messageid",),
            "trace_id": ("messagetraceid", "networkmessageid"),
            "sender": ("sender", "senderaddress"),
            "recipient": ("recipient", "recipientaddress"),
            "subject": ("subject",),
            "size_bytes": ("messagesize", "size"),
            "status": ("status", "deliverystatus"),
            "remote_ip": ("toip",),
            "client_ip": ("fromip",),
        },
    ),
    # Microsoft Graph message trace as pulled (JSON read by analysis/io/graph.py; the same names in a CSV too)
    TraceFormat(
        name="graph_messagetrace",
        statuses="graph",
        label="Microsoft Graph message trace (list)",
        layout="summary",
        signature=("receiveddatetime", "senderaddress", "recipientaddress", "status"),
        columns={**_GRAPH_COLUMNS, "timestamp": ("receiveddatetime",), "remote_ip": ("toip",),
                 "client_ip": ("fromip",)},
    ),
    TraceFormat(
        name="graph_messagetrace_detail",
        statuses="graph",
        label="Microsoft Graph message-trace details",
        layout="events",
        signature=("datetime", "event", "description", "id"),
        columns={**_GRAPH_COLUMNS, "timestamp": ("datetime",), "event": ("event",), "reply": ("description",)},
    ),
)

BY_NAME = {f.name: f for f in FORMATS}

def _vocabularies() -> dict[str, dict]:
    """analysis/io/data/vocabularies.toml: every known event/status value, its canonical value and its source."""
    with resources.files("analysis.io").joinpath("data/vocabularies.toml").open("rb") as handle:
        return tomllib.load(handle)


VOCABULARIES = _vocabularies()
TRACKING_EVENTS = {normalize(k): v["event"] for k, v in VOCABULARIES["tracking_events"].items()}
DETAIL_EVENTS = {normalize(k): v["event"] for k, v in VOCABULARIES["detail_events"].items()}
# status values per vocabulary section a format names (TraceFormat.statuses): Exchange's exports, Graph's enum
STATUS_VOCABULARIES = {section: {normalize(k): v["status"] for k, v in VOCABULARIES[section].items()}
                       for section in ("statuses", "graph")}
# a summary row is one observation of the message's state: the event it stands for
STATUS_EVENT = {v["status"]: v["event"] for section in ("statuses", "graph") for v in VOCABULARIES[section].values()}
def known_values(frame: pd.DataFrame, column: str, vocabulary: dict[str, str], what: str, outcome: str,
                 report: FileReport) -> pd.Series:
    """``frame[column]`` in canonical values (analysis/io/data/vocabularies.toml); each value outside the vocabulary
    is named in a warning with its rows' lines, never turned into ``other`` in silence."""
    values = frame[column]
    mapped = map_unique(values, lambda v: v.str.lower().str.replace(r"[^a-z0-9]", "", regex=True)
                        .map(vocabulary).astype(STRING))
    unknown = mapped.isna() & values.notna()
    if unknown.any():
        lines = frame.loc[unknown, "__line__"].groupby(values[unknown].astype(object).to_numpy()).unique()
        for value, at in lines.items():
            shown = ", ".join(map(str, at[:10])) + (f" and {len(at) - 10} more" if len(at) > 10 else "")
            report.unknown_values.append(f"{what} value {str(value)[:60]!r} is not one the kit knows "
                                         f"(analysis/io/data/vocabularies.toml): {len(at)} rows, {outcome} "
                                         f"(line{'s' if len(at) > 1 else ''} {shown})")
            report.warnings.append(report.unknown_values[-1])
    return mapped


# the status a message+recipient ends in when its last outcome event is this one
OUTCOME_STATUS = {"send": "delivered", "deliver": "delivered", "fail": "failed", "defer": "pending",
                  "drop": "none", "expand": "expanded"}


@dataclass(frozen=True)
class Detection:
    """The result of matching a header against the known formats."""

    fmt: TraceFormat | None
    present: dict[str, str]  # normalized -> original header name
    nearest: TraceFormat | None = None
    lacking: tuple[str, ...] = ()


def detect(header: list[str], *, is_tracking_log: bool = False) -> Detection:
    """Match a header row against :data:`FORMATS` (most specific first)."""
    present: dict[str, str] = {}
    for name in header:
        present.setdefault(normalize(name), name)
    keys = set(present)
    for fmt in FORMATS:
        if fmt.name == "tracking_log" and not is_tracking_log:
            continue
        if fmt.name == "eac_extended" and is_tracking_log:
            continue
        if not fmt.missing(keys) and (fmt.timestamp_prefix is None or _prefixed(keys, fmt.timestamp_prefix)):
            return Detection(fmt, present)
    scored = sorted(FORMATS, key=lambda f: -(1 - len(f.missing(keys)) / (len(f.signature) + len(f.any_of))))
    nearest = scored[0]
    lacking = tuple(nearest.missing(keys))
    if nearest.timestamp_prefix and not _prefixed(keys, nearest.timestamp_prefix):
        lacking += (f"{nearest.timestamp_prefix}…",)
    return Detection(None, present, nearest, lacking)


def headerless_tracking_fields(first_row: list[str], line: str) -> tuple[str, tuple[str, ...]] | None:
    """(version, #Fields) of a message-tracking log whose header lines were stripped (log shippers do), judged by
    its first row: an ISO ``...Z`` time, then as many fields as one of the documented field sets; else None."""
    if not _TRACKING_ROW.match(line):
        return None
    return TRACKING_FIELD_SETS.get(len(first_row))


def _prefixed(keys: set[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def timestamp_column(fmt: TraceFormat, present: dict[str, str]) -> str | None:
    """Original name of the column holding the event time."""
    direct = fmt.source_for("timestamp", present)
    if direct or fmt.timestamp_prefix is None:
        return direct
    return next((orig for norm, orig in present.items() if norm.startswith(fmt.timestamp_prefix)), None)


_OFFSET = re.compile(r"UTC\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)


def header_utc_offset(column_name: str) -> int | None:
    """Minutes east of UTC named in a header such as ``Date (UTC+01:00)``; 0 for ``(UTC)``; None if absent."""
    match = _OFFSET.search(column_name)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return sign * (int(match.group(2)) * 60 + int(match.group(3) or 0))
    if re.search(r"\bUTC\b", column_name, re.IGNORECASE):
        return 0
    return None
