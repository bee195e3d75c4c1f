"""Fuzz tests of the byte- and date-level helpers of the loader: textio.decode, record splitting, date parsing.

Oracles are independent of the code under test: Python's csv module and pyarrow's CSV reader for record
boundaries, Python's codecs and strftime for text and dates.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pv
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analysis import TraceLoadError
from analysis.io import dates, textio

FUZZ = settings(max_examples=150, deadline=None)


def joined(pieces: list[str], min_size: int = 0, max_size: int = 60) -> st.SearchStrategy[str]:
    """Text made of ``pieces`` (which may be longer than one character, like CRLF)."""
    return st.lists(st.sampled_from(pieces), min_size=min_size, max_size=max_size).map("".join)


# printable text as exports hold it: no control characters but tab and newline, no surrogates, no BOM
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufeff\ufffe")
               | st.sampled_from("\t\n"), min_size=1, max_size=300)


@FUZZ
@given(st.binary(max_size=600) | st.builds(lambda b, bom: bom + b, st.binary(max_size=300),
                                             st.sampled_from([codecs.BOM_UTF8, codecs.BOM_UTF16_LE,
                                                              codecs.BOM_UTF16_BE])))
def test_decode_returns_utf8_without_bom_or_lone_cr_or_raises_trace_load_error(raw: bytes):
    try:
        decoded = textio.decode(raw, "fuzz.csv")
    except TraceLoadError as exc:
        assert exc.path == "fuzz.csv" and exc.problem
        return
    text = decoded.data.decode("utf-8")
    assert not text.startswith("\ufeff")
    assert re.search("\r(?!\n)", text) is None
    assert decoded.encoding and all(isinstance(w, str) and w for w in decoded.warnings)


@FUZZ
@given(TEXT, st.sampled_from([("utf-8", b""), ("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
                              ("utf-16-be", codecs.BOM_UTF16_BE)]))
def test_decode_gives_back_the_text_that_was_encoded(text: str, encoding: tuple[str, bytes]):
    assume(text.strip() and not text.startswith(("%PDF", "PAR1", "SQLite format 3")))
    codec, bom = encoding
    decoded = textio.decode(bom + text.encode(codec), "x.csv")
    assert decoded.data.decode("utf-8") == text
    assert decoded.warnings == []


@FUZZ
@given(joined(["a", ",", "\r", "\n", "\r\n", "é"], min_size=1))
def test_every_kind_of_line_break_splits_lines_as_python_does(text: str):
    assume(text.strip())
    decoded = textio.decode(text.encode("utf-8"), "x.csv")
    assert [line.removesuffix("\r") for line in decoded.data.decode("utf-8").split("\n")] == re.split(
        "\r\n|\r|\n", text)
    lone = len(re.findall("\r(?!\n)", text))
    assert decoded.warnings == ([f"{lone} carriage returns without a line feed were read as line breaks"]
                                if lone else [])


FIELD = joined(["a", "b", " ", ",", ";", "\t", '"', "\n", "\r\n", "\r", "é", "'"], max_size=8)


@FUZZ
@given(st.lists(st.lists(FIELD, min_size=1, max_size=5), min_size=1, max_size=8),
       st.sampled_from([",", ";", "\t"]), st.sampled_from(["\r\n", "\n"]),
       st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_record_start_lines_agree_with_the_csv_module(rows: list[list[str]], delimiter: str, newline: str,
                                                      quoting: int):
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    expected = []
    for row in rows:
        expected.append(out.getvalue().count("\n") + 1)
        writer.writerow(row)
    text = out.getvalue()
    assume(list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)) == rows)  # csv reads back its own
    found = textio.record_start_lines(text.encode("utf-8"), delimiter, chunk_size=16)
    assert found.tolist() == expected
    assert textio.record_start_lines(text.encode("utf-8"), delimiter).tolist() == expected


def _pyarrow_records(data: bytes) -> int:
    """How many records pyarrow's CSV reader makes of ``data`` (valid and invalid rows alike)."""
    if not data:
        return 0
    invalid: list[pv.InvalidRow] = []
    table = pv.read_csv(pa.py_buffer(data), read_options=pv.ReadOptions(column_names=["c"], use_threads=False),
                        parse_options=pv.ParseOptions(newlines_in_values=True,
                                                      invalid_row_handler=lambda r: invalid.append(r) or "skip"))
    return table.num_rows + len(invalid)


@FUZZ
@given(joined(["a", " ", ",", '"', '""', "\n", "\r\n"]), st.integers(1, 8))
def test_record_start_lines_count_the_records_pyarrow_reads_from_any_text(text: str, chunk_size: int):
    data = text.encode("ascii")
    found = textio.record_start_lines(data, ",", chunk_size=chunk_size)
    assert len(found) == _pyarrow_records(data)
    assert np.all(np.diff(found) > 0)
    assert not len(found) or (found[0] >= 1 and found[-1] <= data.count(b"\n") + 1)


@FUZZ
@given(joined(["a", ",", '"', "\n", "\r\n"], min_size=1))
def test_unterminated_quote_line_is_where_the_odd_quote_begins(text: str):
    data = text.encode("ascii")
    line = textio.unterminated_quote_line(data)
    if text.count('"') % 2 == 0:
        assert line is None
        return
    assert line is not None
    lines = text.split("\n")
    assert 1 <= line <= len(lines)
    before = "\n".join(lines[:line - 1])
    assert before.count('"') % 2 == 0 and lines[line - 1].strip("\r")


# ---------------------------------------------------------------- dates

DATE_TEXT = st.text(st.sampled_from(list("0123456789/.:-+ TZAPM'")), max_size=30) | st.text(max_size=30)


@FUZZ
@given(st.lists(st.none() | DATE_TEXT, max_size=20), st.none() | st.booleans())
def test_sniff_never_raises_and_reports_a_share(values: list[str | None], dayfirst: bool | None):
    sniffed = dates.sniff(pa.array(values, pa.string()), dayfirst=dayfirst)
    assert sniffed is None or (sniffed.fmt in dates.CANDIDATES and 0 < sniffed.matched <= 1)


@FUZZ
@given(st.lists(st.none() | DATE_TEXT, max_size=20), st.sampled_from(dates.CANDIDATES), st.integers(-14 * 60, 14 * 60))
def test_parse_never_raises_and_stays_in_range(values: list[str | None], fmt: dates.DateFormat, offset: int):
    parsed = dates.parse(pa.array(values, pa.string()), fmt, offset)
    assert len(parsed) == len(values) and str(parsed.dtype) == "datetime64[ns, UTC]"
    valid = parsed.dropna()
    assert ((valid >= pd.Timestamp("1677-09-22", tz="UTC")) & (valid < pd.Timestamp("2262-04-11", tz="UTC"))).all()
    outside = dates.out_of_range(pa.array(values, pa.string()), fmt)
    assert outside.dtype == bool and len(outside) == len(values)
    assert not (outside & parsed.notna().to_numpy()).any()


MOMENTS = st.datetimes(min_value=datetime(1678, 1, 2), max_value=datetime(2261, 12, 30))


@FUZZ
@given(st.lists(MOMENTS, min_size=1, max_size=10), st.sampled_from(dates.CANDIDATES[1:]))
def test_dates_written_by_strftime_parse_back(moments: list[datetime], fmt: dates.DateFormat):
    precision = "s" if "%S" in fmt.pattern else "min"
    text = [m.strftime(fmt.pattern) for m in moments]
    parsed = dates.parse(pa.array(text), fmt)
    assert list(parsed) == [pd.Timestamp(m, tz="UTC").floor(precision) for m in moments]


@FUZZ
@given(st.lists(MOMENTS, min_size=1, max_size=10), st.sampled_from(["", "Z", "+02:00", "-05:30"]))
def test_iso_dates_parse_back_with_their_offset(moments: list[datetime], suffix: str):
    parsed = dates.parse(pa.array([m.isoformat() + suffix for m in moments]), dates.ISO, utc_offset_minutes=60)
    offset = {"": 60, "Z": 0, "+02:00": 120, "-05:30": -330}[suffix]
    assert list(parsed) == [pd.Timestamp(m, tz="UTC") - pd.Timedelta(minutes=offset) for m in moments]


@pytest.mark.parametrize(("text", "fmt"), [
    ("2/30/2026 1:00:00 PM", dates.CANDIDATES[1]),
    ("4/31/2026 1:00:00 PM", dates.CANDIDATES[1]),
    ("29.02.2026 15:04", dates.CANDIDATES[9]),
    ("31/06/2026 10:00:00", dates.CANDIDATES[5]),
    ("11/16/2026 11:59:60 PM", dates.CANDIDATES[1]),
    ("2026-02-30T10:00:00Z", dates.ISO),
])
def test_impossible_dates_are_not_rolled_over(text: str, fmt: dates.DateFormat):
    assert dates.parse(pa.array([text, "x"]), fmt).isna().all()


@pytest.mark.parametrize(("text", "fmt", "outside"), [
    ("12/31/9999 11:59:59 PM", dates.CANDIDATES[1], True),
    ("1/1/0001 12:00:00 AM", dates.CANDIDATES[1], True),
    ("9999-12-31T23:59:59.9999999Z", dates.ISO, True),
    ("0001-01-01T00:00:00", dates.ISO, True),
    ("2/30/2026 1:00:00 PM", dates.CANDIDATES[1], False),
    ("1/1/2026 1:00:00 PM", dates.CANDIDATES[1], False),
])
def test_dates_the_events_table_cannot_hold_are_out_of_range(text: str, fmt: dates.DateFormat, outside: bool):
    assert dates.out_of_range(pa.array([text]), fmt).tolist() == [outside]
    assert dates.parse(pa.array([text]), fmt).isna().all() == (outside or text.startswith("2/30"))
