"""The export formats the loader recognizes, each described by its header (as data, not code paths).

Column names are compared after normalization (lower case, letters and digits only), so ``RecipientAddress``,
``recipient_address`` and ``recipient-address`` are the same column. Sources of every layout:
../shared/reference/exchange-formats.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
        columns={
            "message_id": ("messageid",),
            "trace_id": ("networkmessageid",),
            "sender": ("senderaddress",),
            "recipient": ("recipientstatus",),
            "subject": ("messagesubject",),
            "size_bytes": ("totalbytes",),
            "client_ip": ("originalclientip",),
            "connector": ("connectorid",),
            "directionality": ("directionality",),
        },
    ),
    TraceFormat(
        name="eac_summary",
        label="EAC historical search: summary report",
        layout="recipient_list",
        signature=("senderaddress", "recipientstatus"),
        any_of=(("networkmessageid", "messageid"),),
        timestamp_prefix="origintimestamp",
        columns={
            "message_id": ("messageid",),
            "trace_id": ("networkmessageid",),
            "sender": ("senderaddress",),
            "recipient": ("recipientstatus",),
            "subject": ("messagesubject",),
            "size_bytes": ("totalbytes",),
            "client_ip": ("originalclientip",),
        },
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
)

BY_NAME = {f.name: f for f in FORMATS}

STATUS_VALUES = {
    "delivered": "delivered",
    "pending": "pending",
    "failed": "failed",
    "expanded": "expanded",
    "quarantined": "quarantined",
    "filteredasspam": "filtered_as_spam",
    "gettingstatus": "getting_status",
    "none": "none",
}
# a summary row is one observation of the message's state: the event it stands for
STATUS_EVENT = {
    "delivered": "deliver",
    "failed": "fail",
    "pending": "defer",
    "expanded": "expand",
    "none": "drop",
    "quarantined": "other",
    "filtered_as_spam": "other",
    "getting_status": "other",
}
EVENT_VALUES = {
    "receive": "receive",
    "submit": "submit",
    "send": "send",
    "deliver": "deliver",
    "defer": "defer",
    "fail": "fail",
    "deliverfail": "fail",
    "drop": "drop",
    "expand": "expand",
    "transfer": "transfer",
    "resolve": "resolve",
    "resolved": "resolve",
    "redirect": "resolve",
}
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
