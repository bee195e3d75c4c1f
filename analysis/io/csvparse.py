"""Reading the rows of a CSV export or log with pyarrow, every row accounted for and damage kept local.

A clean file is one pyarrow read. A stray or missing ``"``, a bare CR, a cut-off record or a NUL byte costs only the
records it touches: each damaged line is rejected with its number and reading resumes on the next line.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from analysis.core.errors import NotATraceError, TraceLoadError
from analysis.io import textio
from analysis.io.formats import BY_NAME, TraceFormat, detect, normalize
from analysis.io.report import FileReport

_CONTENT = re.compile(rb"\S")
_BIG_BLOCK = 1 << 26  # pyarrow block size for files with records longer than its default block


@dataclass
class Parsed:
    """The rows of one file as text columns (plus ``__line__``, the line each came from) and how many were read."""

    table: pa.Table
    header: list[str]
    rows_read: int


def head_line_offsets(data: bytes, limit: int = 64) -> np.ndarray:
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


def first_content_line(data: bytes, starts: np.ndarray) -> int | None:
    for index in range(len(starts)):
        if line_text(data, starts, index).strip():
            return index
    return None


def line_text(data: bytes, starts: np.ndarray, index: int) -> str:
    begin = int(starts[index])
    end = data.find(b"\n", begin)
    return data[begin:end if end >= 0 else len(data)].decode("utf-8", errors="replace").rstrip("\r")


def detect_format(header: list[str], name: str, line: int, trace_format: str | None, *, is_tracking_log: bool
            ) -> tuple[TraceFormat, dict[str, str]]:
    detection = detect(header, is_tracking_log=is_tracking_log)
    if trace_format is not None:
        fmt = BY_NAME[trace_format]
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


def unique_names(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for name in header:
        count = seen.get(name, 0)
        seen[name] = count + 1
        names.append(name if count == 0 else f"{name}__{count + 1}")
    return names


def parse_rows(data: bytes, start: int, header: list[str], delimiter: str, lines_before: int, name: str,
                   report: FileReport, line_map: np.ndarray | None = None) -> Parsed:
    """Parse the CSV rows in ``data[start:]`` (after the header line) into strings.

    Line numbers: ``lines_before`` lines of the file precede ``start``; or ``line_map`` maps lines counted from
    ``start`` to lines of the file. Damage stays local: a record that swallows the lines after it (a stray or
    missing ``"``, a record cut short) is rejected on its first line and the lines it swallowed are read again on
    their own, so reading re-synchronises at the next line. A clean file is one pyarrow read.
    """
    names = unique_names(header)

    def file_lines(lines: np.ndarray) -> np.ndarray:  # lines counted from ``start`` -> lines of the file
        lines = np.asarray(lines, dtype=np.int64)
        return line_map[lines - 1] if line_map is not None else lines + lines_before

    tables: list[pa.Table] = []
    rows_read = 0
    last_line = functools.cache(lambda: data.count(b"\n", start) + (0 if data.endswith(b"\n") else 1))  # when needed
    pending = [(start, len(data), 0)]  # segments still to read: (begin offset, end offset, lines before it)
    while pending:
        begin, end, before = pending.pop()
        whole = end == len(data)  # slice (copy) only the small segments read again after damage
        unterminated = textio.unterminated_quote_line(data if whole else data[begin:end], begin if whole else 0)
        tail = None
        if unterminated is not None:  # a '"' opens on this line and no '"' closes it: reject it, read on after it
            cut = begin + int(textio.line_offsets(memoryview(data)[begin:end])[unterminated - 1])
            after = data.find(b"\n", cut, end)
            report.reject(int(file_lines([before + unterminated])[0]),
                          "a quoted field that never closes opens on this line (a stray or missing '\"', or the "
                          "record is cut off); reading resumed on the next line")
            rows_read += 1
            if after >= 0 and after + 1 < end:
                tail = (after + 1, end, before + unterminated)
            end = cut
        table, invalid, starts = _pyarrow_segment(data, begin, end, names, delimiter, name)
        rows_read += table.num_rows + len(invalid)
        records = np.asarray([n for n, *_ in invalid], dtype=np.int64)
        if invalid:
            lines = before + starts[records - 1]
            segment_lines = data.count(b"\n", begin, end) + (0 if data[end - 1:end] == b"\n" else 1)
            next_lines = before + np.append(starts, segment_lines + 1)[records]
            for line, next_line, (_, expected, actual, not_data, multi_line) in zip(lines, next_lines, invalid,
                                                                                   strict=True):
                what = "fewer" if actual < expected else "more"
                file_line = int(file_lines([line])[0])
                hint = " (the file seems cut off here)" if actual < expected and line == last_line() else ""
                swallowed = int(next_line - line - 1)
                if swallowed > 0 and multi_line and not_data is None:  # read the lines it swallowed again, on their own
                    hint = f" (a '\"' on this line swallowed the next {swallowed} lines: they were read on their own)"
                    offsets = textio.line_offsets(memoryview(data)[begin:end])
                    pending.append((begin + int(offsets[line - before]), begin + int(offsets[next_line - before - 1])
                                    if next_line - before - 1 < len(offsets) else end, int(line)))
                report.reject(file_line, not_data or f"{actual} fields, {what} than the {expected} of the header{hint}")
        kept = np.ones(len(starts), dtype=bool)
        kept[records - 1] = False
        tables.append(table.append_column("__line__", pa.array(file_lines(before + starts[kept]), pa.int64())))
        if tail is not None:
            pending.append(tail)
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    if len(tables) > 1:
        table = table.take(pc.sort_indices(table, [("__line__", "ascending")]))
    if data.find(b"\x00", start) >= 0:
        table = _reject_nul_rows(table, report)
    return Parsed(table, header, rows_read)


def _pyarrow_segment(data: bytes, begin: int, end: int, names: list[str], delimiter: str, name: str
                     ) -> tuple[pa.Table, list[tuple[int, int, int, str | None, bool]], np.ndarray]:
    """pyarrow's reading of ``data[begin:end]``: the valid rows, the invalid ones (record number, expected and
    actual field counts, why it is not data, whether it spans lines) and the line (counted from ``begin``) where
    each record starts."""
    body = memoryview(data)[begin:end]
    invalid: list[tuple[int | None, int, int, str | None, bool]] = []

    def on_invalid(row: pv.InvalidRow) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns, _not_data(row.text, delimiter),
                        "\n" in row.text.rstrip("\r\n")))
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

    if _CONTENT.search(data, begin, end) is None:  # nothing but blank lines
        return pa.table({column: pa.array([], pa.string()) for column in names}), [], np.array([], np.int64)
    try:
        table = read(True)
        if any(number is None for number, *_ in invalid):
            table = read(False)
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise TraceLoadError(name, f"the CSV could not be parsed: {exc}",
                             expected=f"{len(names)} {delimiter!r}-separated fields per row") from exc
    return table, invalid, _record_lines(data, begin, end, delimiter, table.num_rows + len(invalid))


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


def drop_repeated_headers(parsed: Parsed, report: FileReport) -> None:
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
