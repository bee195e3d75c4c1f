"""``load_trace``: every Exchange message-trace export into the canonical events table, with a load report.

Each file is sniffed for encoding, delimiter, format (by its header) and date locale, parsed with pyarrow,
mapped to the canonical columns of :mod:`analysis.core.schema`, and accounted for row by row:
rows read = rows loaded + rows rejected + duplicates removed, and every rejected row has its line and reason.
The readers of each export family: :mod:`analysis.io.csvparse` (rows of any CSV), :mod:`analysis.io.tracking`
(message-tracking logs, the EAC extended report), :mod:`analysis.io.eac` (EAC summary reports),
:mod:`analysis.io.graph` (Microsoft Graph JSON); the summary and detail exports are mapped here. Inputs (folders,
archives, compressed files): :mod:`analysis.io.inputs`; the report: :mod:`analysis.io.report`.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.core.columns import map_unique, to_arrow
from analysis.core.concepts import address_domain, message_key, pair_key
from analysis.core.errors import NotATraceError, TraceLoadError
from analysis.core.schema import EVENT_COLUMNS, STRING, conform, empty_events
from analysis.io import dates, graph, textio
from analysis.io.csvparse import (
    Parsed,
    detect_format,
    drop_repeated_headers,
    first_content_line,
    head_line_offsets,
    line_text,
    parse_rows,
)
from analysis.io.eac import explode_recipient_status
from analysis.io.formats import (
    BY_NAME,
    DETAIL_EVENTS,
    OUTCOME_STATUS,
    STATUS_EVENT,
    STATUS_VOCABULARIES,
    TraceFormat,
    header_utc_offset,
    headerless_tracking_fields,
    known_values,
    timestamp_column,
)
from analysis.io.inputs import TRACE_SUFFIXES, PathLike, expand_paths, is_trace_like, not_trace_like
from analysis.io.report import FileReport, LoadReport
from analysis.io.tracking import explode_tracking, parse_tracking_log
from analysis.reference.client_ips import client_ips
from analysis.reference.replies import parse_replies

Progress = Callable[[int, int, str], None]

TENANT_MIN_ROWS, TENANT_MIN_SHARE = 20, 0.01  # a sender domain this busy outbound is taken as the tenant's
# .xlsx / .xls are looked at only to say "save as CSV"
@dataclass(frozen=True)
class _Options:
    dayfirst: bool | None
    date_format: str | None
    tz_offset_minutes: int | None
    trace_format: str | None


@overload
def load_trace(paths: PathLike | Iterable[PathLike], *, dayfirst: bool | None = ..., format: str | None = ...,
               tz_offset: str | float | None = ..., trace_format: str | None = ...,
               tenant_domains: Iterable[str] | None = ..., errors: Literal["raise", "report"] = ...,
               progress: Progress | None = ..., with_report: Literal[False] = ...) -> pd.DataFrame: ...
@overload
def load_trace(paths: PathLike | Iterable[PathLike], *, dayfirst: bool | None = ..., format: str | None = ...,
               tz_offset: str | float | None = ..., trace_format: str | None = ...,
               tenant_domains: Iterable[str] | None = ..., errors: Literal["raise", "report"] = ...,
               progress: Progress | None = ..., with_report: Literal[True]) -> tuple[pd.DataFrame, LoadReport]: ...
def load_trace(
    paths: PathLike | Iterable[PathLike],
    *,
    dayfirst: bool | None = None,
    format: str | None = None,
    tz_offset: str | float | None = None,
    trace_format: str | None = None,
    tenant_domains: Iterable[str] | None = None,
    errors: Literal["raise", "report"] = "raise",
    progress: Progress | None = None,
    with_report: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, LoadReport]:
    """Load message-trace exports into the canonical events table.

    ``paths``: files, folders (every trace-like file inside, recursively; the others are listed in the report with
    the reason) or glob patterns; ZIP archives are read member by member, ``.gz`` / ``.bz2`` files decompressed.
    Format, encoding, delimiter and date locale are sniffed per file; ``dayfirst`` / ``format``
    (a strptime pattern) override the date sniffing, ``tz_offset`` ("+01:00" or hours) the time zone of exports
    written in the admin's zone, ``trace_format`` the format detection. ``tenant_domains`` (your accepted domains)
    sharpens the outbound/inbound/internal direction, otherwise inferred from the trace.

    With ``errors="raise"`` a file that cannot be read raises :class:`TraceLoadError` (files found by expanding a
    folder, glob or ZIP archive that are not trace exports are skipped and listed in the report instead); with
    ``"report"`` every failure is recorded in the report and the rest is loaded. ``with_report=True`` returns
    ``(events, report)``; otherwise the report is at ``events.attrs["load_report"]``.
    """
    options = _Options(dayfirst, format, _offset_minutes(tz_offset), trace_format)
    if trace_format is not None and trace_format not in BY_NAME:
        raise ValueError(f"unknown trace_format {trace_format!r}; known: {', '.join(BY_NAME)}")
    sources = list(expand_paths(paths))
    if not sources:
        raise TraceLoadError(str(paths), "no files found", expected="a file, a folder or a glob pattern")
    report = LoadReport()
    frames: list[pd.DataFrame] = []
    for number, (name, opener, explicit, skip) in enumerate(sources, 1):
        if progress:
            progress(number - 1, len(sources), name)
        file_report = FileReport(path=name, skipped=skip)
        report.files.append(file_report)
        if skip:
            continue
        try:
            frames.append(_read_file(name, opener(), options, file_report))
        except NotATraceError as exc:
            if explicit and errors == "raise":
                raise
            reason = str(exc).removeprefix(f"{name}: ").removeprefix(f"{name}, ")
            if explicit:
                file_report.error = reason
            else:
                file_report.skipped = reason
        except TraceLoadError as exc:
            file_report.error = str(exc).removeprefix(f"{name}: ").removeprefix(f"{name}, ")
            if errors == "raise" and explicit:
                raise
        except OSError as exc:
            file_report.error = f"cannot read the file: {exc.strerror or exc}"
            if errors == "raise" and explicit:
                raise TraceLoadError(name, file_report.error) from exc
    if progress:
        progress(len(sources), len(sources), "")
    events = _combine(frames, report, tenant_domains)
    for file_report in report.files:
        file_report.rejects.sort(key=lambda item: (item[0] is None, item[0] or 0))
    events.attrs["load_report"] = report
    return (events, report) if with_report else events


def _offset_minutes(tz_offset: str | float | None) -> int | None:
    if tz_offset is None:
        return None
    if isinstance(tz_offset, int | float):
        return round(float(tz_offset) * 60)
    minutes = header_utc_offset(tz_offset if "UTC" in tz_offset.upper() else f"UTC{tz_offset}")
    if minutes is None:
        raise ValueError(f"tz_offset {tz_offset!r}: expected an offset such as '+01:00', '-05:00' or a number of hours")
    return minutes


# ---------------------------------------------------------------- one file

def _read_file(name: str, raw: bytes, options: _Options, report: FileReport) -> pd.DataFrame:
    decoded = textio.decode(raw, name)
    report.encoding = decoded.encoding
    report.warnings.extend(decoded.warnings)
    del raw
    parsed, fmt, present = _parse(decoded.data, name, options, report)
    decoded.data = b""  # the text is in pyarrow's table now: free it before the columns are converted
    report.rows_read = parsed.rows_read
    report.format, report.format_label = fmt.name, fmt.label
    frame = _map_columns(parsed, fmt, present, report)
    frame = _timestamps(frame, parsed, fmt, present, options, report, name)
    frame = _expand_layout(frame, fmt, report)
    frame = _reject_unidentified(frame, report)
    frame.attrs.update(source_format=fmt.name, source_file=name)
    report.events = len(frame)
    return frame


def _parse(data: bytes, name: str, options: _Options, report: FileReport) -> tuple[Parsed, TraceFormat, dict]:
    if graph.is_trace_json(data):  # pulled from Microsoft Graph (exo-deferrals pull), or Reporting web service rows
        table, header, rows_read = graph.parse(data, name, report)
        fmt, present = detect_format(header, name, 1, options.trace_format, is_tracking_log=False)
        return Parsed(table, header, rows_read), fmt, present
    starts = textio.line_offsets(data) if len(data) < 1 << 16 else head_line_offsets(data)
    first = first_content_line(data, starts)
    if first is None:
        raise TraceLoadError(name, "the file holds only comment lines and no header",
                             expected="a message-trace export with a header line")
    head = line_text(data, starts, first)
    tracking = head.startswith(("#Software", "#Version", "#Log-type", "#Date", "#Fields"))
    if tracking:
        return parse_tracking_log(data, name, options.trace_format, report)
    headerless = headerless_tracking_fields(next(csv.reader([head])), head)
    if headerless:
        version, fields = headerless
        report.warnings.append(f"no #Fields line (header lines removed?): read as an Exchange {version} "
                               f"message-tracking log by its {len(fields)} fields")
        report.delimiter = ","
        fmt, present = detect_format(list(fields), name, first + 1, options.trace_format, is_tracking_log=True)
        return parse_rows(data, int(starts[first]), list(fields), ",", first, name, report), fmt, present
    if head.startswith("#TYPE"):
        report.warnings.append(f"skipped the PowerShell type line '{head[:80]}'")
        first += 1
        head = line_text(data, starts, first) if first < len(starts) else ""
        while not head.strip() and first + 1 < len(starts):
            first += 1
            head = line_text(data, starts, first)
    if not head.strip():
        raise TraceLoadError(name, "there is no header line after the PowerShell type line", line=first + 1,
                             expected="a CSV header such as \"Received\",\"SenderAddress\",...")
    delimiter = textio.sniff_delimiter(head)
    header = next(csv.reader([head], delimiter=delimiter))
    report.delimiter = delimiter
    fmt, present = detect_format(header, name, first + 1, options.trace_format, is_tracking_log=False)
    after_header = data.find(b"\n", int(starts[first])) + 1 or len(data)
    parsed = parse_rows(data, after_header, header, delimiter, first + 1, name, report)
    drop_repeated_headers(parsed, report)
    return parsed, fmt, present


# ---------------------------------------------------------------- columns

def _column(table: pa.Table, original: str | None) -> pd.Series:
    if original is None or original not in table.column_names:
        return pd.Series(pd.array([pd.NA] * table.num_rows, dtype=STRING))
    values = pc.utf8_trim_whitespace(table.column(original))
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    return pd.Series(pd.array(values, dtype=STRING) if len(values) else pd.array([], dtype=STRING))


def _map_columns(parsed: Parsed, fmt: TraceFormat, present: dict[str, str], report: FileReport) -> pd.DataFrame:
    table = parsed.table
    if "__duplicates__" in present:
        report.warnings.append(f"duplicate columns {present['__duplicates__']}: the first of each was used")
    wanted = set(fmt.columns) | set(fmt.extras)
    frame = pd.DataFrame({c: _column(table, fmt.source_for(c, present)) for c in wanted if c != "timestamp"})
    frame["__line__"] = table.column("__line__").to_numpy()
    return frame


def _timestamps(frame: pd.DataFrame, parsed: Parsed, fmt: TraceFormat, present: dict[str, str],
                options: _Options, report: FileReport, name: str) -> pd.DataFrame:
    column = timestamp_column(fmt, present)
    values = pc.utf8_trim_whitespace(parsed.table.column(column))
    sniffed = dates.sniff(values, dayfirst=options.dayfirst, pattern=options.date_format)
    if sniffed is None or sniffed.matched == 0:
        if parsed.table.num_rows == 0:
            if report.rows_read == 0:
                raise TraceLoadError(name, "the file has a header but no data rows", line=2,
                                     expected="at least one row after the header")
            frame["timestamp"] = pd.Series(pd.array([], dtype="datetime64[ns, UTC]"))
            return frame
        example = next((v for v in values.to_pylist() if v), "")
        raise TraceLoadError(name, f"no value of the time column {column!r} is a date (e.g. {example[:40]!r})",
                             expected="dates such as 11/28/2026 3:04:05 PM, 28.11.2026 15:04:05 or ISO 8601")
    report.date_format = sniffed.fmt.label
    report.date_order = sniffed.order
    if sniffed.ambiguous:
        report.warnings.append(
            f"every day in {column!r} is 12 or less, so day and month cannot be told apart: read as "
            f"{sniffed.fmt.order} ({sniffed.fmt.label}); pass dayfirst=True or False to choose")
    offset = 0
    if fmt.timestamp_utc:
        report.time_zone = "UTC"
    else:
        from_header = header_utc_offset(column)
        if options.tz_offset_minutes is not None:
            offset = options.tz_offset_minutes
            report.time_zone = f"{_zone(offset)} (given)"
        elif from_header is not None:
            offset = from_header
            report.time_zone = f"{_zone(offset)} (from the header {column!r})"
        else:
            report.time_zone = "UTC (assumed: the export does not say; pass tz_offset= if it was another zone)"
            report.warnings.append("the times are in the exporting admin's time zone, which the file does not "
                                   "name: assumed UTC")
    frame["timestamp"] = dates.parse(values, sniffed.fmt, offset).array
    bad = frame["timestamp"].isna().to_numpy()
    if bad.any():
        raw = values.filter(pa.array(bad))
        outside = dates.out_of_range(raw, sniffed.fmt)
        for line, text, out_of_range in zip(frame.loc[bad, "__line__"], raw.to_pylist(), outside, strict=True):
            reason = f"no date in {column!r}" if not text else (
                f"date {text[:40]!r} in {column!r} is out of range (the kit holds the years 1678 to 2261)"
                if out_of_range else f"date {text[:40]!r} in {column!r} does not match {sniffed.fmt.label}")
            report.reject(int(line), reason)
        frame = frame.loc[~bad].reset_index(drop=True)
    return frame


def _zone(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _expand_layout(frame: pd.DataFrame, fmt: TraceFormat, report: FileReport) -> pd.DataFrame:
    if fmt.layout in ("summary", "events") and "status" in frame:  # Graph details carry their summary's status
        frame["status"] = known_values(frame, "status", STATUS_VOCABULARIES[fmt.statuses], "Status",
                                       "kept with no status", report)
    if fmt.layout == "summary":
        frame["event"] = frame["status"].map(STATUS_EVENT).astype(STRING)
        frame["event"] = frame["event"].fillna("other")
    elif fmt.layout == "events":
        frame["event"] = known_values(frame, "event", DETAIL_EVENTS, "Event", "kept as event 'other'",
                                      report).fillna("other")
    elif fmt.layout == "recipient_list":
        frame = explode_recipient_status(frame, report)
    elif fmt.layout == "tracking":
        frame = explode_tracking(frame, report)
    return frame


def _reject_unidentified(frame: pd.DataFrame, report: FileReport) -> pd.DataFrame:
    ids = [c for c in ("message_id", "trace_id", "recipient") if c in frame]
    nothing = frame[ids].isna().all(axis=1)
    for line in frame.loc[nothing, "__line__"].drop_duplicates():
        report.reject(int(line), "no message id, trace id or recipient: the row cannot be tied to a message")
    return frame.loc[~nothing].reset_index(drop=True)


# ---------------------------------------------------------------- all files together

def _combine(frames: list[pd.DataFrame], report: LoadReport, tenant_domains: Iterable[str] | None) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_events()
    events = pd.concat(frames, ignore_index=True)
    for column in ("source_file", "source_format"):
        events[column] = _categorical_by_frame(frames, column)
    events = events.rename(columns={"__line__": "source_row"})
    for column in EVENT_COLUMNS:
        if column not in events:
            events[column] = pd.Series(pd.NA, index=events.index, dtype=STRING)
    for column in ("sender", "recipient"):
        events[column] = map_unique(events[column].astype(STRING), _address)
    events["recipient_domain"] = map_unique(events["recipient"], address_domain)
    events["trace_id"] = map_unique(events["trace_id"].astype(STRING), lambda v: v.str.lower())
    events["size_bytes"] = _sizes(events, report)
    events = join_detail_to_summary(events)
    events = derive_status(events)
    events = _parse_replies(events)
    events["direction"] = infer_direction(events, tenant_domains)
    events = _drop_duplicates(events, report)
    events = events.drop(columns=[c for c in ("directionality",) if c in events])
    events = conform(events, EVENT_COLUMNS)
    events = events[list(EVENT_COLUMNS)]
    return events


def _categorical_by_frame(frames: list[pd.DataFrame], key: str) -> pd.Categorical:
    """A categorical column holding each frame's ``attrs[key]`` on all of its rows (built from codes, no hashing)."""
    names = [f.attrs[key] for f in frames]
    categories = list(dict.fromkeys(names))
    codes = np.repeat([categories.index(n) for n in names], [len(f) for f in frames])
    return pd.Categorical.from_codes(codes, categories)


def _address(values: pd.Series) -> pd.Series:
    """Lower-cased bare address: ``"Name" <a@b.com>`` -> ``a@b.com``."""
    values = values.astype(STRING).str.strip().str.lower()
    parts = values.str.extract(r'([^<>\s"]+)"?@([^<>\s"@]+?)>?$')
    bare = (parts[0] + "@" + parts[1]).astype(STRING)
    return bare.fillna(values.str.strip('"')).replace("", pd.NA).astype(STRING)


def _sizes(events: pd.DataFrame, report: LoadReport) -> pd.Series:
    raw = events.get("size_bytes")
    if raw is None:
        return pd.Series(pd.array([pd.NA] * len(events), dtype="Int64"))
    text = pc.replace_substring_regex(to_arrow(raw), r"[\s,.'\x{00a0}]", "")
    digits = pc.match_substring_regex(text, r"^[0-9]{1,18}$")
    numbers = pd.Series(pc.cast(pc.if_else(digits, text, pa.scalar(None, pa.string())), pa.int64())
                        .to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), index=raw.index)
    bad = raw.notna() & numbers.isna()
    if bad.any():
        for path, count in events.loc[bad, "source_file"].value_counts().items():
            _file(report, path).warnings.append(
                f"{count} sizes are not a whole number of bytes >= 0 and were left empty")
    return numbers


def _file(report: LoadReport, path: str) -> FileReport:
    return next(f for f in report.files if f.path == path)


def join_detail_to_summary(events: pd.DataFrame) -> pd.DataFrame:
    """Fill sender, recipient, subject, size and final status of detail rows from summary rows of the same trace
    (and recipient; a trace with one recipient in the summaries gives its recipient and status to detail rows
    without a recipient only: the status of one recipient is not another's)."""
    is_summary = events["source_format"].isin([f for f, spec in BY_NAME.items() if spec.layout == "summary"])
    is_detail = events["source_format"].eq("messagetrace_detail")
    if not (is_summary.any() and is_detail.any()):
        return events
    summary = events.loc[is_summary & events["trace_id"].notna(),
                         ["trace_id", "recipient", "sender", "subject", "size_bytes", "status", "timestamp"]]
    summary = summary.sort_values("timestamp", kind="stable").drop_duplicates(["trace_id", "recipient"], keep="last")
    fill = ["sender", "subject", "size_bytes", "status"]
    detail = events.loc[is_detail]
    by_pair = detail[["trace_id", "recipient"]].merge(summary, on=["trace_id", "recipient"], how="left")
    single = summary[~summary["trace_id"].duplicated(keep=False)]
    by_trace = detail[["trace_id"]].merge(single, on="trace_id", how="left")
    no_recipient = detail["recipient"].isna().to_numpy(dtype=bool)
    for column in [*fill, "recipient"]:
        current = detail[column] if column in detail else pd.Series(pd.NA, index=detail.index)
        value = current.to_numpy(dtype=object)
        for source in (by_pair, by_trace):
            if column in source:
                candidate = source[column].to_numpy(dtype=object)
                missing = pd.isna(value)
                if source is by_trace and column in ("recipient", "status"):
                    missing &= no_recipient
                value[missing] = candidate[missing]
        events.loc[is_detail, column] = value
    given = (is_detail & events["recipient"].notna() & events["recipient_domain"].isna()).to_numpy(dtype=bool)
    if given.any():  # the recipients just filled in name their domain
        domains = events["recipient_domain"].astype(STRING)
        domains[given] = address_domain(events.loc[given, "recipient"]).to_numpy()
        events["recipient_domain"] = domains
    return events


def derive_status(events: pd.DataFrame) -> pd.DataFrame:
    """Status of rows from event-level exports that carry none: the outcome of the message+recipient's last event."""
    if "status" not in events:
        events["status"] = pd.Series(pd.NA, index=events.index, dtype=STRING)
    missing = events["status"].isna()
    if not missing.any():
        return events
    outcome = events["event"].map(OUTCOME_STATUS)
    key = pair_key(message_key(events["trace_id"], events["message_id"]), events["recipient"])
    ordered = pd.DataFrame({"key": key, "outcome": outcome, "t": events["timestamp"]}).dropna(subset=["outcome"])
    final = ordered.sort_values("t", kind="stable").drop_duplicates("key", keep="last").set_index("key")["outcome"]
    events.loc[missing, "status"] = key[missing].map(final).astype(STRING)
    return events


def _parse_replies(events: pd.DataFrame) -> pd.DataFrame:
    if "reply" not in events or events["reply"].isna().all():
        return events
    parsed = parse_replies(events["reply"], columns=("smtp_code", "enhanced_code", "remote_reply", "remote_host",
                                                     "remote_ip", "exo_host"))
    for column in ("smtp_code", "enhanced_code", "remote_reply"):
        events[column] = parsed[column]
    # the Exchange Online source IP where the remote reply quotes the client it refused (never overwrites the export)
    parsed["exo_ip"] = client_ips(events["reply"])
    for column in ("remote_host", "remote_ip", "exo_host", "exo_ip"):
        if column in events:
            events[column] = events[column].astype(STRING).fillna(parsed[column])
        else:
            events[column] = parsed[column]
    return events


def infer_direction(events: pd.DataFrame, tenant_domains: Iterable[str] | None) -> pd.Series:
    """outbound / inbound / internal from the tenant's domains (given, or those that send the outbound attempts)."""
    sender_domain = map_unique(events["sender"], address_domain)
    recipient_domain = events["recipient_domain"].astype(STRING)
    if tenant_domains is not None:
        tenant = {d.lower().strip() for d in tenant_domains}
    else:
        hint = events.get("directionality", pd.Series(pd.NA, index=events.index)).astype(STRING).str.lower()
        outbound_like = (events["event"].isin(["send", "defer"]) | events["remote_ip"].notna()
                         | hint.eq("originating"))
        senders = sender_domain[outbound_like].value_counts()
        # the tenant's domains send most outbound attempts; a forwarded outside sender only a few
        tenant = set(senders[(senders >= TENANT_MIN_ROWS) | (senders >= TENANT_MIN_SHARE * senders.sum())].index)
    sender_ours = _in_domains(sender_domain, tenant)
    recipient_ours = _in_domains(recipient_domain, tenant)
    direction = pd.Series("unknown", index=events.index, dtype=object)
    direction[sender_ours & ~recipient_ours] = "outbound"
    direction[sender_ours & recipient_ours] = "internal"
    direction[~sender_ours & recipient_ours] = "inbound"
    return direction


def _in_domains(domains: pd.Series, tenant: set[str]) -> pd.Series:
    """True where a domain is one of ``tenant`` or a sub-domain of one (whole-column, on unique values)."""
    suffixes = tuple("." + t for t in tenant)
    member = map_unique(domains, lambda d: d.isin(tenant) | d.str.endswith(suffixes) if suffixes else d.isin(tenant))
    return member.astype("boolean").fillna(False).astype(bool)


def _drop_duplicates(events: pd.DataFrame, report: LoadReport) -> pd.DataFrame:
    """One row per event however many exports show it; count what was dropped per file.

    Exports of one family (message-trace summaries; event-level exports: Get-MessageTraceDetail, the EAC
    extended report and tracking logs; EAC recipient-status lists) describe an event by its message, recipient,
    kind and second. The first file's row is kept and takes the facts it lacks (say the Exchange source IP of an
    extended report) from the rows dropped. A recipient-status list row whose message and recipient an
    event-level export covers in more detail is dropped too.
    """
    family = events["source_format"].map(FORMAT_FAMILY).astype(object)
    files = events["source_file"].groupby(family.to_numpy(), observed=True).nunique()
    if (files <= 1).all() and not {"events", "recipient_list"} <= set(files.index):
        return _count_loaded(events, report)  # one file per family: nothing can repeat
    message = events["message_id"].str.lower().fillna(events["trace_id"]).astype(object)
    key = pd.DataFrame({
        "family": family, "message": message, "recipient": events["recipient"].astype(object),
        "event": events["event"].astype(object), "second": events["timestamp"].dt.floor("s"),
    })
    key["occurrence"] = key.groupby([*key.columns, events["source_file"].astype(object)], dropna=False,
                                    sort=False).cumcount().to_numpy()
    duplicate = key.duplicated(keep="first").to_numpy()
    if duplicate.any():
        events = merge_facts(events, key, duplicate)
    detailed = pd.MultiIndex.from_frame(key.loc[family.eq("events"), ["message", "recipient"]])
    covered = family.eq("recipient_list").to_numpy() & pd.MultiIndex.from_frame(
        key[["message", "recipient"]]).isin(detailed)
    dropped = duplicate | covered
    if dropped.any():
        records = events.loc[dropped, ["source_file", "source_row"]].drop_duplicates()
        kept = events.loc[~dropped, ["source_file", "source_row"]].drop_duplicates()
        whole = records.merge(kept, how="left", indicator=True)
        for path, count in whole.loc[whole["_merge"] == "left_only", "source_file"].value_counts().items():
            _file(report, path).duplicates_removed += int(count)
        events = events.loc[~dropped].reset_index(drop=True)
    return _count_loaded(events, report)


def merge_facts(events: pd.DataFrame, key: pd.DataFrame, duplicate: np.ndarray) -> pd.DataFrame:
    """Fill the kept copy of each repeated event with the facts only its dropped copies carry."""
    group = key.groupby(list(key.columns), dropna=False, sort=False).ngroup().to_numpy()
    repeated = np.isin(group, np.unique(group[duplicate]))
    columns = [c for c in EVENT_COLUMNS if c not in ("source_format", "source_file", "source_row")]
    subset = events.loc[repeated, columns]
    first = subset.groupby(group[repeated], sort=False).first()
    keepers = np.flatnonzero(repeated & ~duplicate)
    filled = first.loc[group[keepers]]
    for column in columns:
        if filled[column].notna().sum() > events[column].iloc[keepers].notna().sum():
            events.loc[events.index[keepers], column] = filled[column].to_numpy()
    return events


FORMAT_FAMILY = {name: {"summary": "summary", "recipient_list": "recipient_list"}.get(spec.layout, "events")
           for name, spec in BY_NAME.items()}


def _count_loaded(events: pd.DataFrame, report: LoadReport) -> pd.DataFrame:
    file_codes = events["source_file"].cat.codes.to_numpy()
    rows = events["source_row"].to_numpy()
    new_record = np.ones(len(events), dtype=bool)
    new_record[1:] = (rows[1:] != rows[:-1]) | (file_codes[1:] != file_codes[:-1])
    loaded = pd.Series(new_record).groupby(events["source_file"].to_numpy()).sum()
    counts = events["source_file"].value_counts()
    for f in report.files:
        f.rows_loaded = int(loaded.get(f.path, 0))
        f.events = int(counts.get(f.path, 0))
    return events

# the store imports these from here too
__all__ = ["TRACE_SUFFIXES", "FileReport", "LoadReport", "is_trace_like", "load_trace", "not_trace_like"]
