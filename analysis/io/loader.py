"""``load_trace``: every Exchange message-trace export into the canonical events table, with a load report.

Each file is sniffed for encoding, delimiter, format (by its header) and date locale, parsed with pyarrow,
mapped to the canonical columns of :mod:`analysis.core.schema`, and accounted for row by row:
rows read = rows loaded + rows rejected + duplicates removed, and every rejected row has its line and reason.
"""

from __future__ import annotations

import csv
import functools
import glob
import html
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from analysis.core.columns import map_unique, to_arrow
from analysis.core.errors import NotATraceError, TraceLoadError
from analysis.core.schema import EVENT_COLUMNS, STRING, conform, empty_events
from analysis.io import dates, textio
from analysis.io.formats import (
    BY_NAME,
    EVENT_VALUES,
    OUTCOME_STATUS,
    STATUS_EVENT,
    STATUS_VALUES,
    TraceFormat,
    detect,
    header_utc_offset,
    normalize,
    timestamp_column,
)

PathLike = str | os.PathLike[str]
Progress = Callable[[int, int, str], None]

TENANT_MIN_ROWS, TENANT_MIN_SHARE = 20, 0.01  # a sender domain this busy outbound is taken as the tenant's
TRACE_SUFFIXES = {".csv", ".txt", ".log", ".tsv", ".zip", ".xlsx", ".xls"}  # spreadsheets: to say "save as CSV"
_CONTENT = re.compile(rb"\S")
_BIG_BLOCK = 1 << 26  # pyarrow block size for files with records longer than its default block


@dataclass
class FileReport:
    """What happened to one input file."""

    path: str
    format: str | None = None
    format_label: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    date_format: str | None = None
    date_order: str | None = None
    time_zone: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    duplicates_removed: int = 0
    events: int = 0
    rejects: list[tuple[int | None, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None  # why a file found in a folder, glob or archive is not a trace export

    def reject(self, line: int | None, reason: str) -> None:
        self.rejects.append((line, reason))
        self.rows_rejected += 1

    @property
    def balanced(self) -> bool:
        """True when every row read is accounted for."""
        return self.rows_read == self.rows_loaded + self.rows_rejected + self.duplicates_removed


@dataclass
class LoadReport:
    """Per-file accounting of a :func:`load_trace` call."""

    files: list[FileReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return all(f.error is None for f in self.files)

    @property
    def errors(self) -> list[str]:
        return [f"{f.path}: {f.error}" for f in self.files if f.error]

    @property
    def loaded_files(self) -> list[FileReport]:
        """Files read as trace exports (not failed, not skipped)."""
        return [f for f in self.files if f.error is None and f.skipped is None]

    def to_frame(self) -> pd.DataFrame:
        """One row per file: format, encoding, delimiter, date order, row counts, warnings, error."""
        rows = [
            {
                "file": f.path, "format": f.format_label or f.format, "encoding": f.encoding,
                "delimiter": {",": "comma", ";": "semicolon", "\t": "tab"}.get(f.delimiter or "", f.delimiter),
                "date_format": f.date_format, "date_order": f.date_order, "time_zone": f.time_zone,
                "rows_read": f.rows_read, "rows_loaded": f.rows_loaded, "rows_rejected": f.rows_rejected,
                "duplicates_removed": f.duplicates_removed, "events": f.events,
                "warnings": "; ".join(f.warnings), "error": f.error or "",
                "skipped": f.skipped or "",
            }
            for f in self.files
        ]
        return pd.DataFrame(rows, columns=[
            "file", "format", "encoding", "delimiter", "date_format", "date_order", "time_zone", "rows_read",
            "rows_loaded", "rows_rejected", "duplicates_removed", "events", "warnings", "error", "skipped",
        ])

    def rejects_frame(self) -> pd.DataFrame:
        """One row per rejected input row: file, line, reason."""
        rows = [(f.path, line, reason) for f in self.files for line, reason in f.rejects]
        frame = pd.DataFrame(rows, columns=["file", "line", "reason"])
        frame["line"] = frame["line"].astype("Int64")
        return frame

    def summary(self) -> str:
        """Plain-text account, one paragraph per file."""
        parts = []
        for f in self.files:
            if f.error:
                parts.append(f"{f.path}: NOT LOADED: {f.error}")
                continue
            if f.skipped:
                parts.append(f"{f.path}: skipped, not a trace export: {f.skipped}")
                continue
            line = (f"{f.path}: {f.format_label} | {f.encoding}, delimiter {f.delimiter!r}, dates {f.date_format} "
                    f"({f.date_order}), {f.time_zone} | read {f.rows_read}, loaded {f.rows_loaded}, "
                    f"rejected {f.rows_rejected}, duplicates removed {f.duplicates_removed}, events {f.events}")
            parts.append("\n  ".join([line, *(f"warning: {w}" for w in f.warnings),
                                       *(f"line {ln}: {why}" for ln, why in f.rejects[:20]),
                                       *([f"... and {len(f.rejects) - 20} more rejected rows"]
                                         if len(f.rejects) > 20 else [])]))
        return "\n".join(parts) or "no files"

    __str__ = summary

    def _repr_html_(self) -> str:
        noteworthy = any(f.warnings or f.rejects or f.error or f.skipped for f in self.files)
        return self.to_frame().to_html(index=False, escape=True) + (
            f"<pre>{html.escape(self.summary())}</pre>" if noteworthy else "")


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

    ``paths``: files, folders (every trace-like file inside, recursively) or glob patterns; ZIP archives are read
    member by member. Format, encoding, delimiter and date locale are sniffed per file; ``dayfirst`` / ``format``
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
    sources = list(_expand(paths))
    if not sources:
        raise TraceLoadError(str(paths), "no files found", expected="a file, a folder or a glob pattern")
    report = LoadReport()
    frames: list[pd.DataFrame] = []
    for number, (name, opener, explicit) in enumerate(sources, 1):
        if progress:
            progress(number - 1, len(sources), name)
        file_report = FileReport(path=name)
        report.files.append(file_report)
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


# ---------------------------------------------------------------- inputs

def _expand(paths: PathLike | Iterable[PathLike]) -> Iterable[tuple[str, Callable[[], bytes], bool]]:
    """(display name, reader of the bytes, explicitly named?) for every input file."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    for item in items:
        text = os.fspath(item)
        if any(ch in text for ch in "*?[") and not os.path.exists(text):
            for match in sorted(glob.glob(text, recursive=True)):
                if os.path.isfile(match):
                    yield from _file_or_archive(Path(match), explicit=False)
        elif os.path.isdir(text):
            for found in sorted(Path(text).rglob("*")):
                if found.is_file() and is_trace_like(PurePosixPath(found.as_posix())):
                    yield from _file_or_archive(found, explicit=False)
        else:
            yield from _file_or_archive(Path(text), explicit=True)


def _file_or_archive(path: Path, *, explicit: bool) -> Iterable[tuple[str, Callable[[], bytes], bool]]:
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [m.filename for m in archive.infolist()
                       if not m.is_dir() and is_trace_like(PurePosixPath(m.filename))]
        for member in members:  # like the files of a folder
            yield (f"{path}!{member}", _zip_reader(path, member), False)
    else:
        yield (str(path), path.read_bytes, explicit)


def is_trace_like(path: PurePosixPath) -> bool:
    """Whether a file found in a folder or archive may be an export (not hidden, not macOS metadata)."""
    return (not path.name.startswith(".") and "__MACOSX" not in path.parts
            and path.suffix.lower() in TRACE_SUFFIXES)


def _zip_reader(path: Path, member: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    return read


# ---------------------------------------------------------------- one file

@dataclass
class _Parsed:
    table: pa.Table
    header: list[str]
    record_lines: Callable[[np.ndarray], np.ndarray]  # pyarrow record numbers -> file line numbers
    rows_read: int


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


def _parse(data: bytes, name: str, options: _Options, report: FileReport) -> tuple[_Parsed, TraceFormat, dict]:
    starts = textio.line_offsets(data) if len(data) < 1 << 16 else _head_line_offsets(data)
    first = _first_content_line(data, starts)
    if first is None:
        raise TraceLoadError(name, "the file holds only comment lines and no header",
                             expected="a message-trace export with a header line")
    head = _line(data, starts, first)
    tracking = head.startswith(("#Software", "#Version", "#Log-type", "#Date", "#Fields"))
    if tracking:
        return _parse_tracking_log(data, name, options, report)
    if head.startswith("#TYPE"):
        report.warnings.append(f"skipped the PowerShell type line '{head[:80]}'")
        first += 1
        head = _line(data, starts, first) if first < len(starts) else ""
        while not head.strip() and first + 1 < len(starts):
            first += 1
            head = _line(data, starts, first)
    if not head.strip():
        raise TraceLoadError(name, "there is no header line after the PowerShell type line", line=first + 1,
                             expected="a CSV header such as \"Received\",\"SenderAddress\",...")
    delimiter = textio.sniff_delimiter(head)
    header = next(csv.reader([head], delimiter=delimiter))
    report.delimiter = delimiter
    fmt, present = _detect(header, name, first + 1, options, is_tracking_log=False)
    after_header = data.find(b"\n", int(starts[first])) + 1 or len(data)
    parsed = _pyarrow_parse(data, after_header, header, delimiter, first + 1, name, report)
    _drop_repeated_headers(parsed, report)
    return parsed, fmt, present


def _head_line_offsets(data: bytes, limit: int = 64) -> np.ndarray:
    """Offsets of the first ``limit`` lines (enough to find a header) without scanning a big file."""
    offsets = [0]
    position = 0
    while len(offsets) < limit:
        position = data.find(b"\n", position)
        if position < 0:
            break
        position += 1
        if position < len(data):
            offsets.append(position)
    return np.array(offsets, dtype=np.int64)


def _first_content_line(data: bytes, starts: np.ndarray) -> int | None:
    for index in range(len(starts)):
        if _line(data, starts, index).strip():
            return index
    return None


def _line(data: bytes, starts: np.ndarray, index: int) -> str:
    begin = int(starts[index])
    end = data.find(b"\n", begin)
    return data[begin:end if end >= 0 else len(data)].decode("utf-8", errors="replace").rstrip("\r")


def _detect(header: list[str], name: str, line: int, options: _Options, *, is_tracking_log: bool
            ) -> tuple[TraceFormat, dict[str, str]]:
    detection = detect(header, is_tracking_log=is_tracking_log)
    if options.trace_format is not None:
        fmt = BY_NAME[options.trace_format]
        lacking = fmt.missing(set(detection.present))
        if lacking:
            raise TraceLoadError(name, f"the header lacks {', '.join(lacking)} for the format {fmt.label}",
                                 line=line, expected=f"the columns {', '.join(fmt.signature)}")
        return fmt, detection.present
    if detection.fmt is None:
        seen = ", ".join(header[:30]) + (" ..." if len(header) > 30 else "")
        nearest = detection.nearest
        hint = (f"; the nearest known format is {nearest.label}, which also needs {', '.join(detection.lacking)}"
                if nearest else "")
        raise NotATraceError(name, f"unknown header: columns seen are {seen}{hint}", line=line,
                             expected="the header of a Get-MessageTrace, Get-MessageTraceDetail, EAC report, "
                                      "new EAC export or message-tracking log")
    duplicates = sorted({normalize(h) for h in header if [normalize(x) for x in header].count(normalize(h)) > 1})
    return detection.fmt, detection.present | ({"__duplicates__": ",".join(duplicates)} if duplicates else {})


def _unique_names(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for name in header:
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name}__{count + 1}")
    return names


def _pyarrow_parse(data: bytes, start: int, header: list[str], delimiter: str, lines_before: int, name: str,
                   report: FileReport, line_map: np.ndarray | None = None) -> _Parsed:
    """Parse the CSV rows in ``data[start:]`` (after the header line) into strings.

    Line numbers: ``lines_before`` lines of the file precede ``start``; or ``line_map`` maps lines counted from
    ``start`` to lines of the file.
    """
    names = _unique_names(header)
    end = len(data)
    unterminated = textio.unterminated_quote_line(data, start)
    if unterminated is not None:
        end = start + int(textio.line_offsets(memoryview(data)[start:])[unterminated - 1])
    body = memoryview(data)[start:end]
    invalid: list[tuple[int | None, int, int, str | None]] = []

    def on_invalid(row: pv.InvalidRow) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns, _not_data(row.text, delimiter)))
        return "skip"

    def read(threads: bool) -> pa.Table:
        try:
            return read_blocks(threads, pv.ReadOptions().block_size)  # pyarrow's 1 MB blocks: fastest on most files
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc):
                raise
            return read_blocks(threads, _BIG_BLOCK)  # a record longer than a block (a 10 MB field)

    def read_blocks(threads: bool, block_size: int) -> pa.Table:
        invalid.clear()
        return pv.read_csv(
            pa.py_buffer(body),
            read_options=pv.ReadOptions(use_threads=threads, column_names=names, block_size=block_size),
            parse_options=pv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                          invalid_row_handler=on_invalid),
            convert_options=pv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                              strings_can_be_null=False, quoted_strings_can_be_null=False),
        )

    if _CONTENT.search(data, start, end) is None:  # nothing left before an unterminated quote
        table = pa.table({column: pa.array([], pa.string()) for column in names})
    else:
        try:
            table = read(True)
            if any(number is None for number, *_ in invalid):
                table = read(False)
        except (pa.ArrowInvalid, pa.ArrowException) as exc:
            raise TraceLoadError(name, f"the CSV could not be parsed: {exc}",
                                 expected=f"{len(names)} {delimiter!r}-separated fields per row") from exc
    starts = _record_lines(data, start, end, delimiter, table.num_rows + len(invalid))

    def file_lines(lines: np.ndarray) -> np.ndarray:  # lines counted from ``start`` -> lines of the file
        return line_map[lines - 1] if line_map is not None else lines + lines_before

    def to_file_lines(records: np.ndarray) -> np.ndarray:
        return file_lines(starts[np.asarray(records, dtype=np.int64) - 1])

    if invalid:
        file_lines_of_invalid = to_file_lines(np.array([n for n, *_ in invalid], dtype=np.int64))
        last_line = int(to_file_lines(np.array([len(starts)]))[0])
        for line, (_, expected, actual, not_data) in zip(file_lines_of_invalid, invalid, strict=True):
            what = "fewer" if actual < expected else "more"
            hint = " (the file seems cut off here)" if actual < expected and int(line) == last_line else ""
            report.reject(int(line), not_data or f"{actual} fields, {what} than the {expected} of the header{hint}")
    swallowed = 0
    if end < len(data):
        first = data.count(b"\n", start, end) + 1
        swallowed = data.count(b"\n", end) + (0 if data.endswith(b"\n") else 1)
        lines = file_lines(np.arange(first, first + swallowed))
        for line in lines:
            report.reject(int(line), "inside a quoted field that never closes (a missing '\"' from "
                                     f"line {lines[0]} on; the file may be cut off)")
    kept = np.ones(len(starts), dtype=bool)
    kept[np.array([n for n, *_ in invalid], dtype=np.int64) - 1] = False
    valid_records = np.flatnonzero(kept) + 1
    table = table.append_column("__line__", pa.array(to_file_lines(valid_records), pa.int64()))
    rows_read = table.num_rows + len(invalid) + swallowed
    if data.find(b"\x00", start, end) >= 0:
        table = _reject_nul_rows(table, report)
    return _Parsed(table, header, to_file_lines, rows_read)


_NUL_ROW = "the row holds NUL bytes (the file is damaged here; what they replaced is unknown)"


def _not_data(text: str, delimiter: str) -> str | None:
    """Why a row with the wrong number of fields is not data at all, when it is plainly something else."""
    if "\x00" in text:
        return _NUL_ROW
    if not text.strip():
        return "a line holding only white space"
    if text.startswith("#TYPE"):
        return "a PowerShell type line (two exports pasted into one file?)"
    if "@" not in text and detect(text.split(delimiter)).fmt is not None:
        return "the header of another export with other columns (two exports pasted into one file?)"
    return None


def _reject_nul_rows(table: pa.Table, report: FileReport) -> pa.Table:
    """Reject the rows whose fields hold NUL bytes."""
    fields = [pc.match_substring(table.column(c), "\x00") for c in table.column_names if c != "__line__"]
    damaged = functools.reduce(pc.or_, fields)
    for line in table.column("__line__").filter(damaged).to_numpy():
        report.reject(int(line), _NUL_ROW)
    return table.filter(pc.invert(damaged))


def _record_lines(data: bytes, start: int, end: int, delimiter: str, expected_records: int) -> np.ndarray:
    """Line (counted from ``start``) where each record starts; a cheap count when no field holds a line break."""
    lines = data.count(b"\n", start, end) + (0 if data[end - 1:end] == b"\n" else 1)
    if lines == expected_records:  # every line is one record: no line breaks inside fields, no blank lines
        return np.arange(1, lines + 1, dtype=np.int64)
    return textio.record_start_lines(memoryview(data)[start:end], delimiter)


def _drop_repeated_headers(parsed: _Parsed, report: FileReport) -> None:
    """Reject rows that repeat the header (two exports pasted into one file)."""
    table = parsed.table
    names = table.column_names[:2]
    mask = None
    for column, title in zip(names, parsed.header[:2], strict=False):
        equal = pc.equal(pc.utf8_trim_whitespace(table.column(column)), title.strip().strip('"'))
        mask = equal if mask is None else pc.and_(mask, equal)
    if mask is None or not pc.any(mask).as_py():
        return
    lines = table.column("__line__").filter(mask).to_numpy()
    for line in lines:
        report.reject(int(line), "a second header line (two exports pasted into one file?)")
    parsed.table = table.filter(pc.invert(mask))


def _parse_tracking_log(data: bytes, name: str, options: _Options, report: FileReport
                        ) -> tuple[_Parsed, TraceFormat, dict]:
    offsets = textio.line_offsets(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    valid_offsets = offsets[offsets < len(data)]
    is_comment = buf[valid_offsets] == ord("#")
    fields_line = None
    for index in np.flatnonzero(is_comment):
        text = _line(data, valid_offsets, int(index))
        if text.startswith("#Fields:"):
            fields_line = (int(index), text)
            break
    if fields_line is None:
        raise TraceLoadError(name, "a message-tracking log without a '#Fields:' line", line=1,
                             expected="'#Fields: date-time,client-ip,...' before the first entry")
    header = [h.strip() for h in fields_line[1].removeprefix("#Fields:").split(",")]
    report.delimiter = ","
    fmt, present = _detect(header, name, fields_line[0] + 1, options, is_tracking_log=True)
    kept_lines = np.flatnonzero(~is_comment) + 1
    if is_comment.any():
        pieces = [data[int(valid_offsets[i - 1]):int(offsets[i]) if i < len(offsets) else len(data)]
                  for i in kept_lines]
        body = b"".join(pieces)
    else:
        body = data
    if not kept_lines.size:
        parsed = _Parsed(pa.table({**{h: pa.array([], pa.string()) for h in _unique_names(header)},
                                   "__line__": pa.array([], pa.int64())}), header, lambda r: r, 0)
        return parsed, fmt, present
    parsed = _pyarrow_parse(body, 0, header, ",", 0, name, report, line_map=kept_lines)
    return parsed, fmt, present


# ---------------------------------------------------------------- columns

def _column(table: pa.Table, original: str | None) -> pd.Series:
    if original is None or original not in table.column_names:
        return pd.Series(pd.array([pd.NA] * table.num_rows, dtype=STRING))
    values = pc.utf8_trim_whitespace(table.column(original))
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    return pd.Series(pd.array(values, dtype=STRING) if len(values) else pd.array([], dtype=STRING))


def _map_columns(parsed: _Parsed, fmt: TraceFormat, present: dict[str, str], report: FileReport) -> pd.DataFrame:
    table = parsed.table
    if "__duplicates__" in present:
        report.warnings.append(f"duplicate columns {present['__duplicates__']}: the first of each was used")
    wanted = set(fmt.columns) | set(fmt.extras)
    frame = pd.DataFrame({c: _column(table, fmt.source_for(c, present)) for c in wanted if c != "timestamp"})
    frame["__line__"] = table.column("__line__").to_numpy()
    return frame


def _timestamps(frame: pd.DataFrame, parsed: _Parsed, fmt: TraceFormat, present: dict[str, str],
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
    if fmt.layout == "summary":
        frame["status"] = _normalized_values(frame["status"], STATUS_VALUES, "Status", report)
        frame["event"] = frame["status"].map(STATUS_EVENT).astype(STRING)
        frame["event"] = frame["event"].fillna("other")
    elif fmt.layout == "events":
        frame["event"] = _normalized_values(frame["event"], EVENT_VALUES, None, report).fillna("other")
    elif fmt.layout == "recipient_list":
        frame = _explode_recipient_status(frame)
    elif fmt.layout == "tracking":
        frame = _explode_tracking(frame, report)
    return frame


def _normalized_values(values: pd.Series, mapping: dict[str, str], what: str | None, report: FileReport
                       ) -> pd.Series:
    mapped = map_unique(values, lambda v: v.str.lower().str.replace(r"[^a-z0-9]", "", regex=True)
                        .map(mapping).astype(STRING))
    unknown = values[mapped.isna() & values.notna()]
    if what and len(unknown):
        shown = ", ".join(sorted(map(str, unknown.unique()))[:5])
        report.warnings.append(f"{len(unknown)} rows have a {what} value the kit does not know ({shown}): kept "
                               "with no status")
    return mapped


_RECIPIENT_SPLIT = r";(?=[^;]*##)"


def _explode_recipient_status(frame: pd.DataFrame) -> pd.DataFrame:
    """``a@x##Receive, Defer, Send;b@y##Receive, Deliver`` -> one row per recipient event."""
    frame = frame.assign(__entry__=frame["recipient"].astype(object).str.split(_RECIPIENT_SPLIT, regex=True))
    frame = frame.explode("__entry__", ignore_index=True)
    parts = frame["__entry__"].astype(STRING).str.split("##", n=1, expand=True).reindex(columns=[0, 1])
    frame["recipient"] = parts[0].astype(STRING)
    events = parts[1].astype(STRING).str.split(",")
    last = events.str[-1].astype(STRING).str.strip().str.lower()
    frame["status"] = last.map(lambda v: OUTCOME_STATUS.get(EVENT_VALUES.get(v, ""), pd.NA)
                               if isinstance(v, str) else pd.NA).astype(STRING)
    frame = frame.assign(event=events).explode("event", ignore_index=True)
    frame["event"] = (frame["event"].astype(STRING).str.strip().str.lower()
                      .map(EVENT_VALUES).astype(STRING).fillna("other"))
    return frame.drop(columns="__entry__")


def _explode_tracking(frame: pd.DataFrame, report: FileReport) -> pd.DataFrame:
    """Split ``;``-separated recipient-address / recipient-status lists into one row per recipient."""
    addresses = frame["recipient"].astype(object).str.split(";")
    counts = addresses.str.len().fillna(1).astype(int)
    statuses = _split_status_lists(frame["reply"], counts)
    status_counts = statuses.map(len)
    single = status_counts == 1
    broadcast = single & (counts > 1)
    empty = status_counts == 0
    # lists go in through a Series: assigning a list of equal-length lists by mask makes numpy build a 2-D array
    repeated = pd.Series([s * n for s, n in zip(statuses[broadcast], counts[broadcast], strict=True)]
                         + [[None] * n for n in counts[empty]],
                         index=[*statuses.index[broadcast], *statuses.index[empty]], dtype=object)
    statuses = statuses.where(~(broadcast | empty), repeated)
    mismatch = ~(single | empty) & (status_counts != counts)
    for line, n, m in zip(frame.loc[mismatch, "__line__"], counts[mismatch], status_counts[mismatch], strict=True):
        report.reject(int(line), f"{n} recipients but {m} recipient-status entries")
    frame = frame.loc[~mismatch].assign(recipient=addresses[~mismatch], reply=statuses[~mismatch])
    frame = frame.explode(["recipient", "reply"], ignore_index=True)
    for column in ("recipient", "reply"):
        frame[column] = frame[column].astype(STRING).str.strip().replace("", pd.NA)
    frame["event"] = frame["event"].str.lower().map(EVENT_VALUES).astype(STRING).fillna("other")
    attempt = frame["event"].isin(["send", "defer", "fail"])  # DELIVER is the local mailbox store
    frame["remote_host"] = frame["receiving_host"].where(attempt)
    frame["remote_ip"] = frame["receiving_ip"].where(attempt)
    frame["exo_host"] = frame["sending_host"].where(attempt)
    frame["exo_ip"] = frame["sending_ip"].where(attempt)
    receive = frame["event"].eq("receive")
    frame["client_ip"] = frame["client_ip"].fillna(frame["sending_ip"].where(receive))
    return frame.drop(columns=["receiving_host", "receiving_ip", "sending_host", "sending_ip"])


def _split_status_lists(statuses: pd.Series, counts: pd.Series) -> pd.Series:
    """Split each recipient-status list on the ``;`` that separate entries (not those inside ``{...}``/``[...]``)."""
    codes, uniques = pd.factorize(statuses.astype(object), use_na_sentinel=True)
    split = [_top_level_split(value) for value in uniques]
    lookup = pd.Series([*split, []], dtype=object)
    return pd.Series(lookup.iloc[np.where(codes < 0, len(split), codes)].to_numpy(), index=statuses.index)


def _top_level_split(value: str) -> list[str]:
    if "{" not in value and "[" not in value:
        return value.split(";")
    parts, depth, current = [], 0, []
    for char in value:
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth = max(0, depth - 1)
        if char == ";" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


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
    events["recipient_domain"] = map_unique(events["recipient"], _domain)
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


def _domain(addresses: pd.Series) -> pd.Series:
    return addresses.str.rsplit("@", n=1).str[-1].where(addresses.str.contains("@", regex=False)).astype(STRING)


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
        domains[given] = _domain(events.loc[given, "recipient"].astype(STRING)).to_numpy()
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
    key = events["trace_id"].fillna(events["message_id"]).fillna("") + "|" + events["recipient"].fillna("")
    ordered = pd.DataFrame({"key": key, "outcome": outcome, "t": events["timestamp"]}).dropna(subset=["outcome"])
    final = ordered.sort_values("t", kind="stable").drop_duplicates("key", keep="last").set_index("key")["outcome"]
    events.loc[missing, "status"] = key[missing].map(final).astype(STRING)
    return events


def _parse_replies(events: pd.DataFrame) -> pd.DataFrame:
    from analysis.reference.replies import parse_replies

    if "reply" not in events or events["reply"].isna().all():
        return events
    parsed = parse_replies(events["reply"], columns=("smtp_code", "enhanced_code", "remote_reply", "remote_host",
                                                     "remote_ip", "exo_host"))
    for column in ("smtp_code", "enhanced_code", "remote_reply"):
        events[column] = parsed[column]
    for column in ("remote_host", "remote_ip", "exo_host"):
        if column in events:
            events[column] = events[column].astype(STRING).fillna(parsed[column])
        else:
            events[column] = parsed[column]
    return events


def infer_direction(events: pd.DataFrame, tenant_domains: Iterable[str] | None) -> pd.Series:
    """outbound / inbound / internal from the tenant's domains (given, or those that send the outbound attempts)."""
    sender_domain = map_unique(events["sender"], _domain)
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

__all__ = ["FileReport", "LoadReport", "load_trace"]
