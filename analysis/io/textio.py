"""Bytes in, UTF-8 CSV text out: encoding, binary and delimiter sniffing, and line-number bookkeeping.

Exchange exports arrive as ASCII or UTF-8 with a BOM (Windows PowerShell 5.1), UTF-8 without BOM (PowerShell 7),
UTF-16LE with or without BOM (EAC downloads), cp1252 (Excel re-saves), or a mix of those after someone pasted two
files together. :func:`decode` turns any of them into UTF-8 bytes and says what it saw.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

import numpy as np

from analysis.core.errors import NotATraceError, TraceLoadError

_SNIFF_BYTES = 65536
_NEWLINE, _CR, _QUOTE = 10, 13, 34
_LONE_CR = re.compile(rb"\r(?!\n)")
_MIXED_HANDLER = "exo-deferrals-cp1252"
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    """Decode bytes that are not UTF-8 as cp1252 (latin-1 where cp1252 has a hole)."""
    assert isinstance(error, UnicodeDecodeError)
    chunk = error.object[error.start:error.end]
    return chunk.decode("cp1252", errors="replace").replace("\ufffd", chunk.decode("latin-1")), error.end


codecs.register_error(_MIXED_HANDLER, _cp1252_fallback)


@dataclass
class DecodedText:
    """A file's content as UTF-8 bytes (BOM removed) with what was learned on the way."""

    data: bytes
    encoding: str
    warnings: list[str] = field(default_factory=list)


def decode(raw: bytes, path: str) -> DecodedText:
    """Detect the encoding of ``raw`` and return its content as UTF-8 without a BOM.

    A carriage return without a line feed (old Mac files, a stray CR) becomes a line feed: pyarrow and editors read
    it as a line break, and line numbers count line feeds.
    Raises :class:`TraceLoadError` for empty and binary files.
    """
    decoded = _decode(raw, path)
    lone = _lone_carriage_returns(decoded.data) if b"\r" in decoded.data else 0
    if lone:
        decoded.data = _LONE_CR.sub(b"\n", decoded.data)
        decoded.warnings.append(f"{lone} carriage returns without a line feed were read as line breaks")
    return decoded


def _lone_carriage_returns(data: bytes) -> int:
    """How many CR bytes are not followed by a LF (one regex scan; counted only when there is one)."""
    return 0 if _LONE_CR.search(data) is None else data.count(b"\r") - data.count(b"\r\n")


def _decode(raw: bytes, path: str) -> DecodedText:
    if not raw:
        raise TraceLoadError(path, "the file is empty (0 bytes)", expected="a message-trace export with a header line")
    if raw.startswith(codecs.BOM_UTF8):
        return _from_utf8(raw[3:], "utf-8-sig", path)
    for bom, name in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if raw.startswith(bom):
            return _from_utf16(raw[2:], name + " (BOM)", name, path)
    head = raw[:_SNIFF_BYTES]
    utf16 = _utf16_without_bom(head)
    if utf16:
        return _from_utf16(raw, utf16 + " (no BOM)", utf16, path)
    _reject_binary(head, path)
    return _from_utf8(raw, "utf-8", path)


def _from_utf16(raw: bytes, label: str, codec: str, path: str) -> DecodedText:
    if len(raw) % 2:
        raw = raw[:-1]
        warnings = ["the file ends in half a UTF-16 character (cut off during download?); the last byte was ignored"]
    else:
        warnings = []
    text = raw.decode(codec, errors="replace")
    bad = text.count("\ufffd")
    if bad:
        warnings.append(f"{bad} invalid UTF-16 code units were replaced by U+FFFD")
    if not text.strip("\ufeff\r\n\t "):
        raise TraceLoadError(path, "the file holds only a byte-order mark and no text",
                             expected="a message-trace export with a header line")
    _reject_binary(text[:_SNIFF_BYTES].encode("utf-8", errors="replace"), path)
    return DecodedText(text.encode("utf-8"), label, warnings)


def _from_utf8(raw: bytes, label: str, path: str) -> DecodedText:
    if not raw[:4096].strip(b"\r\n\t ") and not raw.strip(b"\r\n\t "):
        raise TraceLoadError(path, "the file holds only a byte-order mark or white space and no text",
                             expected="a message-trace export with a header line")
    if raw.isascii():
        return DecodedText(raw, "ascii" if label == "utf-8" else label, [])
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as first:
        text = raw.decode("utf-8", errors=_MIXED_HANDLER).encode("utf-8")
        if not _UTF8_MULTIBYTE.search(raw):
            return DecodedText(text, "cp1252", [])
        line = raw.count(b"\n", 0, first.start) + 1
        return DecodedText(
            text,
            "mixed utf-8/cp1252",
            [f"the file mixes encodings: bytes that are not UTF-8 (first at line {line}) were read as cp1252"],
        )
    return DecodedText(raw, label, [])


def _utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when every other byte of the head is NUL, as in UTF-16 ASCII-range text."""
    sample = head[: len(head) // 2 * 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


_BINARY_MAGIC = {
    b"PK\x03\x04": "a ZIP archive",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office binary file (.xls)",
    b"\x1f\x8b": "a gzip archive",
    b"PAR1": "a Parquet file",
    b"SQLite format 3": "an SQLite database",
}


def _reject_binary(head: bytes, path: str) -> None:
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            hint = " (.xlsx files are ZIP archives: save the sheet as CSV first)" if magic == b"PK\x03\x04" else ""
            error = TraceLoadError if hint else NotATraceError  # a workbook is likely the trace itself
            raise error(path, f"this is {what}, not a text export{hint}",
                                 expected="a CSV or log text file")
    arr = np.frombuffer(head, dtype=np.uint8)
    if arr.size == 0:
        return
    control = (arr < 32) & ~np.isin(arr, (9, 10, 13))
    if arr.size and (np.count_nonzero(arr == 0) > 0.01 * arr.size or np.count_nonzero(control) > 0.05 * arr.size):
        first = int(np.argmax(control)) if control.any() else 0
        raise NotATraceError(
            path,
            f"the file is not text: it has binary control bytes (first at byte {first})",
            expected="a CSV or log text file",
        )


def sniff_delimiter(header_line: str) -> str:
    """The delimiter of a CSV header line: the most frequent of ``,``, ``;`` and tab outside quotes."""
    unquoted = re.sub(r'"[^"]*"', '""', header_line)
    counts = {d: unquoted.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def record_start_lines(data: bytes | memoryview, delimiter: str = ",", chunk_size: int = 1 << 26) -> np.ndarray:
    """1-based line numbers on which the non-empty CSV records of ``data`` start, split as pyarrow and Python's csv do.

    A newline inside a quoted field does not end a record; a field is quoted only when it starts with ``"`` (a ``"``
    later in an unquoted field is an ordinary character). Works in chunks so memory stays bounded.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    return _nonempty_lines(buf, _record_offsets(buf, ord(delimiter), chunk_size), chunk_size)


def _record_offsets(buf: np.ndarray, delimiter: int | None, chunk_size: int) -> np.ndarray:
    """Byte offsets where records may start: 0 and after every newline outside a quoted field.

    ``delimiter`` None: every ``"`` opens or closes a quoted field, wherever it stands.
    """
    starts: list[np.ndarray] = [np.array([0], dtype=np.int64)]
    quoted = 0
    low = 0
    while low < buf.size:
        high = min(buf.size, low + chunk_size)
        while high < buf.size and buf[high - 1] == _QUOTE and buf[high] == _QUOTE:  # keep runs of '"' whole
            after = np.flatnonzero(buf[high:high + chunk_size] != _QUOTE)
            high = min(buf.size, high + (int(after[0]) if after.size else chunk_size))
        newlines, quoted = _unquoted_newlines(buf, low, high, quoted, delimiter)
        starts.append(newlines + low + 1)
        low = high
    offsets = np.concatenate(starts)
    return offsets[offsets < buf.size]


def _unquoted_newlines(buf: np.ndarray, low: int, high: int, quoted: int, delimiter: int | None
                       ) -> tuple[np.ndarray, int]:
    """Positions (relative to ``low``) of the newlines outside quotes in ``buf[low:high]``, and the state at ``high``.

    The quote state only changes at runs of adjacent ``"``: an odd run at the start of a field flips it (opens a
    field, or closes one that holds a delimiter or newline just before), an odd run elsewhere closes an open field
    or, outside one, is plain text; even runs (``""``) change nothing.
    """
    chunk = buf[low:high]
    newlines = np.flatnonzero(chunk == _NEWLINE)
    quotes = np.flatnonzero(chunk == _QUOTE)
    if quotes.size == 0:
        return (newlines[:0] if quoted else newlines), quoted
    heads = np.flatnonzero(np.concatenate(([True], np.diff(quotes) != 1)))
    runs = quotes[heads]
    odd = np.diff(heads, append=quotes.size) % 2 == 1
    if delimiter is None:
        field_start = np.ones(runs.size, dtype=bool)
    else:
        before = buf[np.maximum(runs + low - 1, 0)]
        field_start = (before == delimiter) | (before == _NEWLINE) | (before == _CR) | (runs + low == 0)
    flips = np.cumsum(odd & field_start)
    last_close = np.maximum.accumulate(np.where(odd & ~field_start, np.arange(runs.size), -1))
    closed = last_close >= 0
    state = (np.where(closed, 0, quoted) + flips - np.where(closed, flips[np.maximum(last_close, 0)], 0)) % 2
    run_before = np.searchsorted(runs, newlines) - 1
    at_newline = np.where(run_before >= 0, state[np.maximum(run_before, 0)], quoted)
    return newlines[at_newline == 0], int(state[-1])


def _nonempty_lines(buf: np.ndarray, offsets: np.ndarray, chunk_size: int = 1 << 26) -> np.ndarray:
    """Line numbers of the offsets whose line is not empty (``\\n`` or ``\\r\\n`` alone)."""
    first = buf[offsets]
    nonempty = (first != _NEWLINE) & ~((first == _CR) & (buf[np.minimum(offsets + 1, buf.size - 1)] == _NEWLINE))
    return line_number_of_offsets(buf, offsets[nonempty], chunk_size)


def line_number_of_offsets(buf: np.ndarray, offsets: np.ndarray, chunk_size: int = 1 << 26) -> np.ndarray:
    """1-based line number of each sorted byte offset in ``buf``."""
    newline_positions = np.concatenate(
        [offset + np.flatnonzero(buf[offset:offset + chunk_size] == 10) for offset in range(0, buf.size, chunk_size)]
        or [np.array([], dtype=np.int64)]
    )
    return np.searchsorted(newline_positions, offsets, side="left").astype(np.int64) + 1


def unterminated_quote_line(data: bytes, start: int = 0) -> int | None:
    """Line (counted from ``start``) on which a quoted field opens and never closes, else None.

    Strict on purpose: every ``"`` counts as opening or closing a field, so a missing ``"`` marks the rest of the
    file as suspect (a CSV parser would silently swallow it into one field, or split it out of step).
    """
    if data.count(b'"', start) % 2 == 0:
        return None
    buf = np.frombuffer(memoryview(data)[start:], dtype=np.uint8)
    return int(_nonempty_lines(buf, _record_offsets(buf, None, 1 << 26))[-1])


def line_offsets(data: bytes | memoryview) -> np.ndarray:
    """Byte offset where each line of ``data`` starts (index 0 is line 1)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    return np.concatenate(([0], np.flatnonzero(buf == 10) + 1)).astype(np.int64)
