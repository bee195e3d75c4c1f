"""Hostile and broken input: the corpus of tests/data/bad against its hand-written manifest, and a fuzzer.

Every file that loads must account for every row it read (rows read = loaded + rejected + duplicates removed,
each reject with its line and reason); every file that cannot load must fail with TraceLoadError, never with a
raw pandas/pyarrow/csv exception.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from badinput_helpers import BAD_DIR, check_accounting, make_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import TraceLoadError, load_trace

CASES_DIR = BAD_DIR / "cases"
CASES: list[dict[str, Any]] = tomllib.loads((BAD_DIR / "expected.toml").read_text("utf-8"))["case"]
COUNTS = ("rows_read", "rows_loaded", "rows_rejected", "duplicates_removed", "events")


def test_manifest_and_corpus_agree():
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    committed = {p.relative_to(CASES_DIR).as_posix() for p in CASES_DIR.rglob("*") if p.is_file()}
    named = {path for case in CASES if not case.get("generated") for path in case["paths"]}
    used = {c for c in committed if any(c == n or c.startswith(n + "/") for n in named)}
    assert used == committed, f"files no case loads: {sorted(committed - used)}"
    assert {n for n in named if not (CASES_DIR / n).exists()} == set()
    generated = {path for case in CASES if case.get("generated") for path in case["paths"]}
    assert generated == set(make_corpus.GENERATED)
    for case in CASES:
        assert ("raises" in case) != ("file" in case), case["id"]


def test_committed_corpus_is_what_make_corpus_writes():
    committed = {p.relative_to(CASES_DIR).as_posix(): p.read_bytes() for p in CASES_DIR.rglob("*") if p.is_file()}
    assert committed == make_corpus.corpus()


def _paths(case: dict[str, Any], tmp_path: Path) -> list[Path]:
    if not case.get("generated"):
        return [CASES_DIR / p for p in case["paths"]]
    (name,) = case["paths"]
    target = tmp_path / name
    target.write_bytes(make_corpus.GENERATED[name]())
    return [target]


def _plain(value: object) -> object:
    """A value of the events table as the manifest writes it."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value):
        return "<NA>"
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _contains_all(text: str, words: str | list[str]) -> bool:
    return all(w in text for w in ([words] if isinstance(words, str) else words))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict[str, Any], tmp_path: Path):
    paths = _paths(case, tmp_path)
    errors = case.get("errors", "raise")
    if "raises" in case:
        with pytest.raises(TraceLoadError) as caught:
            load_trace(paths, errors=errors)
        assert _contains_all(str(caught.value), case["raises"]), str(caught.value)
        return
    events, report = load_trace(paths, errors=errors, with_report=True)
    check_accounting(events, report)
    assert len(report.files) == len(case["file"]), [f.path for f in report.files]
    for expected in case["file"]:
        matches = [f for f in report.files if Path(f.path).as_posix().endswith("/" + expected["path"])]
        assert len(matches) == 1, (expected["path"], [f.path for f in report.files])
        found = matches[0]
        if "error" in expected:
            assert found.error and _contains_all(found.error, expected["error"]), found.error
            assert found.skipped is None
            continue
        if "skipped" in expected:  # found beside the exports, not a trace export: listed, not an error
            assert found.skipped and _contains_all(found.skipped, expected["skipped"]), found.skipped
            assert found.error is None and found.rows_read == 0 and found not in report.loaded_files
            continue
        assert found.error is None and found.skipped is None, (found.error, found.skipped)
        assert {k: getattr(found, k) for k in COUNTS} == {k: expected[k] for k in COUNTS}
        for key in ("encoding", "format"):
            if key in expected:
                assert getattr(found, key) == expected[key]
        assert [line for line, _ in found.rejects] == [line for line, *_ in expected["rejects"]], found.rejects
        for (_, reason), (_, *words) in zip(found.rejects, expected["rejects"], strict=True):
            assert _contains_all(reason, words), reason
        assert len(found.warnings) == len(expected["warnings"]), found.warnings
        for words in expected["warnings"]:
            assert any(_contains_all(w, words) for w in found.warnings), (words, found.warnings)
        rows = events[events["source_file"].astype(object) == found.path]
        for column, values in expected.get("columns", {}).items():
            assert [_plain(v) for v in rows[column]] == values, column


# ---------------------------------------------------------------- fuzzing real layouts

PIECES = [b'"', b'""', b",", b";", b"\t", b"\n", b"\r", b"\r\n", b"\x00", b"#", b"'", b" ", b"@", b"=", b"\\",
          b"\xc3\xa9", b"\xe9", b"\xff\xfe", b"9999", b"/", b":", b"#TYPE x\r\n", b"#Fields: date-time,event-id\r\n"]
_where = st.floats(0, 1, exclude_max=True)
MUTATIONS = st.lists(st.one_of(
    st.tuples(st.just("insert"), _where, st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=4))),
    st.tuples(st.just("replace"), _where, st.binary(min_size=1, max_size=1)),
    st.tuples(st.just("delete"), _where, st.integers(1, 40)),
    st.tuples(st.just("truncate"), _where, st.none()),
    st.tuples(st.sampled_from(["copy_line", "drop_line", "swap_lines"]), _where, _where),
), min_size=1, max_size=5)


def mutate(data: bytes, mutations: list[tuple[str, float, Any]]) -> bytes:
    """Apply byte and line mutations; positions are fractions of the current length."""
    for kind, where, arg in mutations:
        at = int(where * len(data))
        if kind == "insert":
            data = data[:at] + arg + data[at:]
        elif kind == "replace":
            data = data[:at] + arg + data[at + 1:]
        elif kind == "delete":
            data = data[:at] + data[at + arg:]
        elif kind == "truncate":
            data = data[:at]
        elif lines := data.splitlines(keepends=True):
            i, j = int(where * len(lines)), int(arg * len(lines))
            if kind == "copy_line":
                lines.insert(j, lines[i])
            elif kind == "drop_line":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = b"".join(lines)
    return data


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(make_corpus.SEEDS)), mutations=MUTATIONS)
def test_corrupted_exports_never_lose_rows_or_crash(fuzz_dir: Path, seed: str, mutations: list):
    path = fuzz_dir / ("corrupted" + Path(seed).suffix)
    path.write_bytes(mutate(make_corpus.SEEDS[seed], mutations))
    events, report = load_trace(path, errors="report", with_report=True)
    check_accounting(events, report)
    (file,) = report.files
    if file.error is None:
        assert len(load_trace(path)) == len(events)
    else:
        with pytest.raises(TraceLoadError):
            load_trace(path)


@pytest.mark.parametrize("seed", sorted(make_corpus.SEEDS))
def test_seed_layouts_load_whole(seed: str, tmp_path: Path):
    """The uncorrupted layouts the fuzzer starts from load every row (so the fuzzer breaks good files)."""
    path = tmp_path / seed
    path.write_bytes(make_corpus.SEEDS[seed])
    events, report = load_trace(path, with_report=True)
    check_accounting(events, report)
    (file,) = report.files
    assert file.rows_read > 0 and file.rows_rejected == 0 and file.rows_loaded == file.rows_read
