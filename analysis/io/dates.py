"""Date formats of Exchange exports: sniff the locale a column was written in, then parse it as UTC.

PowerShell's Export-Csv writes DateTime values in the exporting machine's culture (en-US ``11/28/2026 3:04:05 PM``,
en-GB/fr ``28/11/2026 15:04:05``, de-DE ``28.11.2026 15:04:05``); EAC reports and tracking logs use ISO 8601 with up
to 7 fractional digits and ``Z``; Excel re-saves drop the seconds; the EAC's detail view shows
``Nov 28, 2026 3:04:05 PM``. Parsing uses pyarrow's vectorized strptime.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.core.schema import TIMESTAMP

_SAMPLE = 5000
_ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$"
_OFFSET_SUFFIX = r"[T ].*(Z|z|[+-]\d{2}(:?\d{2})?)$"
# inside what datetime64[ns] holds (1677-09-21 .. 2262-04-11) with room for any UTC offset
_EARLIEST, _LATEST = pd.Timestamp("1678-01-01"), pd.Timestamp("2262-01-01")
# strptime rolls impossible values over (30 February -> 2 March, second 60 -> the next minute): the field, its
# directive, and the largest value a rolled-over result has in it
_ROLLOVER = (("day", "%d", pc.day, 3), ("second", "%S", pc.second, 0))
_DIRECTIVE_REGEX = {"%d": r"\d{1,2}", "%S": r"\d{1,2}", "%m": r"\d{1,2}", "%H": r"\d{1,2}", "%I": r"\d{1,2}",
                    "%M": r"\d{1,2}", "%Y": r"\d{4}", "%p": "[AaPp][Mm]", "%b": "[A-Za-z]{3}", "%%": "%"}


@dataclass(frozen=True)
class DateFormat:
    """One way of writing a timestamp: a strptime pattern (or ISO 8601), its field order and a label."""

    pattern: str
    order: str  # "ISO", "MDY", "DMY" or "YMD"
    label: str


ISO = DateFormat("ISO8601", "ISO", "ISO 8601")
CANDIDATES: tuple[DateFormat, ...] = (
    ISO,
    DateFormat("%m/%d/%Y %I:%M:%S %p", "MDY", "en-US (11/28/2026 3:04:05 PM)"),
    DateFormat("%m/%d/%Y %I:%M %p", "MDY", "en-US without seconds (11/28/2026 3:04 PM)"),
    DateFormat("%m/%d/%Y %H:%M:%S", "MDY", "month first, 24-hour (11/28/2026 15:04:05)"),
    DateFormat("%m/%d/%Y %H:%M", "MDY", "month first, 24-hour, no seconds (11/28/2026 15:04)"),
    DateFormat("%d/%m/%Y %H:%M:%S", "DMY", "en-GB/fr (28/11/2026 15:04:05)"),
    DateFormat("%d/%m/%Y %H:%M", "DMY", "en-GB/fr without seconds, as Excel saves it (28/11/2026 15:04)"),
    DateFormat("%d/%m/%Y %I:%M:%S %p", "DMY", "en-AU/en-IN (28/11/2026 3:04:05 PM)"),
    DateFormat("%d.%m.%Y %H:%M:%S", "DMY", "de-DE (28.11.2026 15:04:05)"),
    DateFormat("%d.%m.%Y %H:%M", "DMY", "de-DE without seconds, as Excel saves it (28.11.2026 15:04)"),
    DateFormat("%d-%m-%Y %H:%M:%S", "DMY", "nl-NL (28-11-2026 15:04:05)"),
    DateFormat("%Y/%m/%d %H:%M:%S", "YMD", "ja-JP/zh-CN (2026/11/28 15:04:05)"),
    # the EAC's message-trace detail view, as admins copy it (tests/data/real/detail_qa176723_eac_view_oof_drop.txt)
    DateFormat("%b %d, %Y %I:%M:%S %p", "MDY", "en-US month name, as the EAC shows it (Nov 28, 2026 3:04:05 PM)"),
)


@dataclass(frozen=True)
class DateSniff:
    """What :func:`sniff` decided, and whether the values could not tell day and month apart."""

    fmt: DateFormat
    ambiguous: bool
    matched: float  # share of the sampled values the format parses

    @property
    def order(self) -> str:
        return f"ambiguous, assumed {self.fmt.order}" if self.ambiguous else self.fmt.order


def sniff(values: pa.ChunkedArray | pa.Array, *, dayfirst: bool | None = None, pattern: str | None = None
          ) -> DateSniff | None:
    """Pick the date format that parses the most of ``values``; None when no candidate parses any.

    ``dayfirst`` limits the candidates to day-first (True) or month-first (False) formats; ``pattern`` forces a
    strptime pattern. When both a month-first and a day-first format parse every sampled value (all days ≤ 12)
    the result is flagged ``ambiguous``: 12-hour clocks with AM/PM are taken as en-US, 24-hour ones as day-first.
    """
    if pattern is not None:
        fmt = DateFormat(pattern, "given", f"given format {pattern}")
        return DateSniff(fmt, False, _share(_sample(values), fmt))
    sample = _sample(values)
    if len(sample) == 0:
        return None
    candidates = [
        c for c in CANDIDATES
        if dayfirst is None or c.order not in (("MDY",) if dayfirst else ("DMY",))
    ]
    shares = {c: _share(sample, c) for c in candidates}
    best = max(shares.values())
    if best == 0:
        return None
    winners = [c for c in candidates if shares[c] == best]
    orders = {c.order for c in winners}
    ambiguous = dayfirst is None and {"MDY", "DMY"} <= orders
    if ambiguous:
        twelve_hour = [c for c in winners if "%p" in c.pattern]
        preferred = "MDY" if twelve_hour else "DMY"
        winners = [c for c in (twelve_hour or winners) if c.order == preferred] or winners
    return DateSniff(winners[0], ambiguous, best)


def parse(values: pa.ChunkedArray | pa.Array, fmt: DateFormat, utc_offset_minutes: int = 0) -> pd.Series:
    """Parse ``values`` with ``fmt`` into UTC timestamps (NaT where a value does not parse).

    ``utc_offset_minutes`` is the offset of the zone the values were written in (e.g. +60 for UTC+01:00);
    ISO values carrying their own offset or ``Z`` ignore it.
    """
    cleaned = _clean(values)
    if fmt is ISO:
        parsed = pd.to_datetime(pd.Series(cleaned.to_pandas(), dtype=object), format="ISO8601", errors="coerce",
                                utc=True).dt.tz_localize(None)
    else:
        parsed = pd.Series(_strptime(cleaned, fmt.pattern).to_pandas(), dtype="datetime64[ns]")
    parsed = parsed.where((parsed >= _EARLIEST) & (parsed < _LATEST)).astype("datetime64[ns]")
    if utc_offset_minutes:
        local = (pc.invert(pc.match_substring_regex(cleaned, _OFFSET_SUFFIX)) if fmt is ISO
                 else pa.array(np.ones(len(cleaned), dtype=bool)))
        minutes = np.where(pc.fill_null(local, True).to_numpy(zero_copy_only=False), utc_offset_minutes, 0)
        parsed = parsed - pd.to_timedelta(minutes, unit="m")
    return parsed.dt.tz_localize("UTC").astype(TIMESTAMP)


def out_of_range(values: pa.ChunkedArray | pa.Array, fmt: DateFormat) -> np.ndarray:
    """True where a value is a well-formed date of ``fmt`` too early or late for the events table (years 1678-2261)."""
    cleaned = _clean(values)
    if fmt is ISO:
        shaped = pc.fill_null(pc.match_substring_regex(cleaned, _ISO_PATTERN), False).to_numpy(zero_copy_only=False)
        years = pd.to_numeric(pd.Series(cleaned.to_pandas(), dtype=object).str[:4], errors="coerce").to_numpy()
        return shaped & ((years < _EARLIEST.year) | (years >= _LATEST.year))
    seconds = pd.Series(pc.strptime(cleaned, format=fmt.pattern, unit="s", error_is_null=True).to_pandas())
    return (seconds.notna() & ((seconds < _EARLIEST) | (seconds >= _LATEST))).to_numpy()


def _clean(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Trimmed, without the leading apostrophe Excel keeps on cells it was told to treat as text."""
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.replace_substring_regex(trimmed, "^'", "") if pc.any(pc.starts_with(trimmed, "'")).as_py() else trimmed


def _strptime(text: pa.ChunkedArray | pa.Array, pattern: str) -> pa.Array:
    """pyarrow's strptime, except that dates it rolls over (30 February -> 2 March, second 60) are null."""
    parsed = pc.strptime(text, format=pattern, unit="ns", error_is_null=True)
    if isinstance(parsed, pa.ChunkedArray):
        parsed, text = parsed.combine_chunks(), text.combine_chunks()
    fields = [(name, part, limit) for name, directive, part, limit in _ROLLOVER if directive in pattern]
    if not fields:
        return parsed
    landed = functools.reduce(pc.or_, [pc.less_equal(part(parsed), limit) for _, part, limit in fields])
    suspects = pc.indices_nonzero(pc.fill_null(landed, False))
    if not len(suspects):
        return parsed
    written = pc.extract_regex(text.take(suspects), _field_regex(pattern))
    rolled = np.zeros(len(suspects), dtype=bool)
    for name, part, _ in fields:
        differs = pc.not_equal(pc.cast(pc.struct_field(written, name), pa.int64()),
                               pc.cast(part(parsed.take(suspects)), pa.int64()))
        rolled |= pc.fill_null(differs, False).to_numpy(zero_copy_only=False)
    mask = np.zeros(len(parsed), dtype=bool)
    mask[suspects.to_numpy()[rolled]] = True
    return pc.if_else(pa.array(mask), pa.scalar(None, parsed.type), parsed)


def _field_regex(pattern: str) -> str:
    """A regex for the text a strptime ``pattern`` reads, with a group for its first day and first second."""
    out, named = [], set()
    for piece in re.split("(%.)", pattern):
        group = next((name for name, directive, *_ in _ROLLOVER if directive == piece and name not in named), None)
        if group:
            named.add(group)
            out.append(f"(?P<{group}>\\d{{1,2}})")
        else:
            out.append(_DIRECTIVE_REGEX.get(piece) or re.escape(piece))
    return "^" + "".join(out) + "$"


def _sample(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    uniques = pc.unique(pc.drop_null(_clean(values)))
    uniques = pc.filter(uniques, pc.not_equal(uniques, ""))
    if len(uniques) > _SAMPLE:
        step = len(uniques) // _SAMPLE
        uniques = uniques.take(pa.array(range(0, len(uniques), step)))
    return uniques


def _share(sample: pa.Array, fmt: DateFormat) -> float:
    if len(sample) == 0:
        return 0.0
    if fmt is ISO:
        iso = pc.match_substring_regex(sample, _ISO_PATTERN)
        return pc.sum(iso).as_py() / len(sample)
    parsed = pc.strptime(sample, format=fmt.pattern, unit="ns", error_is_null=True)
    return (len(sample) - parsed.null_count) / len(sample)
