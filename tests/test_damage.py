"""Damage stays local (issue 14, point 2): one stray quote, bare CR, cut-off record or NUL byte, put anywhere among
the records of a file in a real layout of every format, costs at most 2 records; the rest loads, every row is
accounted for, and the damaged lines are rejected with their numbers.

Layouts: the seeds of tests/data/bad/make_corpus.py (one per export format, written byte for byte from
docs/reference/exchange-formats.md) and the real Exchange 2013 log of tests/data/real/.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from badinput_helpers import check_accounting, make_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import load_trace

REAL = Path(__file__).parent / "data" / "real"
KINESISTAP = "tracking_ex2013_kinesistap.log"
LAYOUTS = {**make_corpus.SEEDS, KINESISTAP: (REAL / KINESISTAP).read_bytes()}
DEFECTS = ("stray_quote", "bare_cr", "cut_off_record", "nul_byte")


def encoding_of(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "utf-8"


def records_start(text: str) -> int:
    """Offset of the first data line: after the #Fields line of a log, after the header line of a CSV."""
    lines = text.splitlines(keepends=True)
    offset, index = 0, 0
    if any(line.startswith("#Fields:") for line in lines):
        while not lines[index].startswith("#Fields:"):
            offset += len(lines[index])
            index += 1
        return offset + len(lines[index])
    while not lines[index].strip() or lines[index].startswith("#TYPE"):
        offset += len(lines[index])
        index += 1
    return offset + len(lines[index])


def damage(text: str, defect: str, where: float) -> str:
    start = records_start(text)
    at = start + int(where * (len(text) - start))
    if defect == "stray_quote":
        return text[:at] + '"' + text[at:]
    if defect == "bare_cr":
        return text[:at] + "\r" + text[at:]
    if defect == "nul_byte":
        return text[:at] + "\x00" + text[at:]
    end = text.find("\n", at)  # cut_off_record: the rest of this line is lost, the line break stays
    return text[:at] + (text[end:] if end >= 0 else "")


def loaded_records(path: Path) -> int:
    events, report = load_trace(path, errors="report", with_report=True)
    check_accounting(events, report)
    (file,) = report.files
    assert file.error is None, file.error
    return file.rows_loaded


@pytest.fixture(scope="module")
def clean_counts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    folder = tmp_path_factory.mktemp("clean")
    counts = {}
    for name, raw in LAYOUTS.items():
        (folder / name).write_bytes(raw)
        counts[name] = loaded_records(folder / name)
    return counts


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(layout=st.sampled_from(sorted(LAYOUTS)), defect=st.sampled_from(DEFECTS),
       where=st.floats(0, 1, exclude_max=True))
def test_one_defect_costs_at_most_two_records(tmp_path: Path, clean_counts: dict[str, int], layout: str,
                                              defect: str, where: float):
    raw = LAYOUTS[layout]
    encoding = encoding_of(raw)
    damaged = damage(raw.decode(encoding), defect, where).encode(encoding)
    path = tmp_path / ("damaged_" + layout)
    path.write_bytes(damaged)
    assert clean_counts[layout] - loaded_records(path) <= 2


def test_a_stray_quote_costs_one_record_and_names_its_line(tmp_path: Path):
    text = LAYOUTS["tracking_ex2013_kinesistap.log"].decode()
    path = tmp_path / "damaged.log"
    path.write_text(text.replace("Started JlbRelayShortCircuit", 'Started "JlbRelayShortCircuit', 1))
    events, report = load_trace(path, with_report=True)
    (file,) = report.files
    assert (file.rows_read, file.rows_loaded) == (2, 1)
    assert [line for line, _ in file.rejects] == [6] and "never closes" in file.rejects[0][1]
    assert set(events["source_row"]) == {7}
