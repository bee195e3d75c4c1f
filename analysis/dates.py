"""Date formats of Exchange exports: sniff the locale a column was written in, then parse it as UTC.

PowerShell's Export-Csv writes DateTime values in the exporting machine's culture (en-US ``11/28/2026 3:04:05 PM``,
en-GB/fr ``28/11/2026 15:04:05``, de-DE ``28.11.2026 15:04:05``); EAC reports and tracking logs use ISO 8601 with up
to 7 fractional digits and ``Z``; Excel re-saves drop the seconds. Parsing uses pyarrow's vectorized strptime.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .schema import TIMESTAMP

_SAMPLE = 5000
_ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$"


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
    trimmed = pc.utf8_trim_whitespace(values)
    if fmt is ISO:
        series = pd.Series(trimmed.to_pandas(), dtype=object)
        parsed = pd.to_datetime(series, format="ISO8601", errors="coerce", utc=False)
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            return parsed.dt.tz_convert("UTC").astype(TIMESTAMP)
        parsed = _naive_ns(parsed)
    else:
        parsed = pd.Series(
            pc.strptime(trimmed, format=fmt.pattern, unit="ns", error_is_null=True).to_pandas(),
        )
        parsed = _naive_ns(parsed)
    if utc_offset_minutes:
        parsed = parsed - pd.Timedelta(minutes=utc_offset_minutes)
    return parsed.dt.tz_localize("UTC").astype(TIMESTAMP)


def _naive_ns(series: pd.Series) -> pd.Series:
    if not pd.api.types.is_datetime64_dtype(series.dtype):
        series = pd.to_datetime(series, errors="coerce")
    return series.astype("datetime64[ns]")


def _sample(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    uniques = pc.unique(pc.drop_null(pc.utf8_trim_whitespace(values)))
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
