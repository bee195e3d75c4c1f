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

from .errors import TraceLoadError

_SNIFF_BYTES = 65536
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

    Raises :class:`TraceLoadError` for empty and binary files.
    """
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
            raise TraceLoadError(path, f"this is {what}, not a text export{hint}",
                                 expected="a CSV or log text file")
    arr = np.frombuffer(head, dtype=np.uint8)
    if arr.size == 0:
        return
    control = (arr < 32) & ~np.isin(arr, (9, 10, 13))
    if arr.size and (np.count_nonzero(arr == 0) > 0.01 * arr.size or np.count_nonzero(control) > 0.05 * arr.size):
        first = int(np.argmax(control)) if control.any() else 0
        raise TraceLoadError(
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


def record_start_lines(data: bytes | memoryview, chunk_size: int = 1 << 26) -> np.ndarray:
    """1-based line numbers on which the non-empty CSV records of ``data`` start.

    A newline inside a quoted field does not end a record. Works in chunks so memory stays bounded.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    starts: list[np.ndarray] = [np.array([0], dtype=np.int64)]  # byte offsets of candidate record starts
    parity = 0
    for offset in range(0, buf.size, chunk_size):
        chunk = buf[offset:offset + chunk_size]
        newlines = np.flatnonzero(chunk == 10)
        if newlines.size == 0:
            parity = (parity + int(np.count_nonzero(chunk == 34))) % 2
            continue
        is_quote = (chunk == 34).view(np.uint8)
        trailing = int(np.count_nonzero(is_quote[newlines[-1] + 1:]))
        quotes = np.add.reduceat(is_quote, np.concatenate(([0], newlines[:-1] + 1)), dtype=np.int64)
        quotes[-1] -= trailing  # reduceat's last segment runs to the end of the chunk
        closed = (parity + np.cumsum(quotes)) % 2 == 0
        parity = (parity + int(quotes.sum()) + trailing) % 2
        starts.append(offset + newlines[closed] + 1)
    offsets = np.concatenate(starts)
    offsets = offsets[offsets < buf.size]
    first = buf[offsets]
    nonempty = (first != 10) & ~((first == 13) & (buf[np.minimum(offsets + 1, buf.size - 1)] == 10))
    line_of = line_number_of_offsets(buf, offsets[nonempty], chunk_size)
    return line_of


def line_number_of_offsets(buf: np.ndarray, offsets: np.ndarray, chunk_size: int = 1 << 26) -> np.ndarray:
    """1-based line number of each sorted byte offset in ``buf``."""
    newline_positions = np.concatenate(
        [offset + np.flatnonzero(buf[offset:offset + chunk_size] == 10) for offset in range(0, buf.size, chunk_size)]
        or [np.array([], dtype=np.int64)]
    )
    return np.searchsorted(newline_positions, offsets, side="left").astype(np.int64) + 1


def unterminated_quote_line(data: bytes, start: int = 0) -> int | None:
    """Line (counted from ``start``) on which a quoted field opens and never closes, else None.

    A CSV parser would silently swallow everything after such a quote into one field.
    """
    if data.count(b'"', start) % 2 == 0:
        return None
    return int(record_start_lines(memoryview(data)[start:])[-1])


def line_offsets(data: bytes | memoryview) -> np.ndarray:
    """Byte offset where each line of ``data`` starts (index 0 is line 1)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    return np.concatenate(([0], np.flatnonzero(buf == 10) + 1)).astype(np.int64)
