"""Shared by the bad-input, security and textio tests: the corpus generator and the no-loss checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pandas as pd

from analysis import LoadReport

BAD_DIR = Path(__file__).resolve().parent / "data" / "bad"


def _import_make_corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", BAD_DIR / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_corpus = _import_make_corpus()


def check_accounting(events: pd.DataFrame, report: LoadReport) -> None:
    """The no-loss invariant, file by file, checked against the events table itself.

    A loaded file: rows read = loaded + rejected + duplicates removed; every reject has a line (>= 1) and a reason;
    no line is both loaded and rejected, or rejected twice; the loaded lines are as many as ``rows_loaded``.
    A failed file: it has an error and contributes nothing.
    """
    assert len(events) == sum(f.events for f in report.files)
    for f in report.files:
        rows = events[events["source_file"].astype(object) == f.path]
        assert len(rows) == f.events, f.path
        if f.error is not None:
            assert f.error.strip() and f.rows_loaded == 0 and f.events == 0, f.path
            continue
        assert f.rows_read == f.rows_loaded + f.rows_rejected + f.duplicates_removed, f
        assert f.balanced
        assert len(f.rejects) == f.rows_rejected, f.path
        for line, reason in f.rejects:
            assert isinstance(line, int) and line >= 1, (f.path, line, reason)
            assert isinstance(reason, str) and reason.strip(), (f.path, line)
        rejected = [line for line, _ in f.rejects]
        assert len(set(rejected)) == len(rejected), (f.path, sorted(rejected))
        loaded = set(rows["source_row"].astype(int))
        assert len(loaded) == f.rows_loaded, f.path
        assert not loaded & set(rejected), (f.path, sorted(loaded & set(rejected)))
