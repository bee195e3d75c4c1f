"""Checks of the labelled reply corpus itself (tests/data/replies_corpus.csv, README-corpus.md); accuracy is
tests/test_cause_accuracy.py."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.core.schema import CAUSES

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "replies_corpus.csv"
SISIMAI = DATA / "replies" / "sisimai_check.csv"
LABELS = set(CAUSES) - {"unknown"}
# Exchange Online / Exchange message-trace and NDR forms (see tests/data/README-corpus.md)
EXO_FORM = re.compile(
    r"\{LED=|\[Message=|LastAttempted|OutboundProxyTarget|Primary target IP address responded|returned '"
    r"|Message expired(?:,| ->)|\b[45]\.4\.31[2-8]\b|\b4\.7\.320\b|\b5\.4\.300\b",
    re.I,
)
FIRST_CODE = re.compile(r"(?<![\w.])([245])\d\d(?=[ -]|$)")
ENHANCED = r"(?<![\w.])[245]\.\d{1,3}\.\d{1,3}(?!\w|\.\d)"


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return pd.read_csv(CORPUS, dtype=str, keep_default_na=False)


def test_columns(corpus: pd.DataFrame) -> None:
    assert list(corpus.columns) == ["reply", "cause", "transient", "source", "note", "split"]


def test_labels_from_the_taxonomy(corpus: pd.DataFrame) -> None:
    assert set(corpus["cause"]) <= LABELS
    counts = corpus["cause"].value_counts()
    assert {cause: int(counts.get(cause, 0)) for cause in LABELS if counts.get(cause, 0) < 15} == {}


def test_every_row_is_sourced_and_unique(corpus: pd.DataFrame) -> None:
    assert (corpus["reply"].str.strip() != "").all()
    assert (corpus["source"].str.strip() != "").all()
    assert not corpus["reply"].duplicated().any()
    assert corpus["source"].nunique() >= 60


def test_the_split_is_by_source(corpus: pd.DataFrame) -> None:
    assert set(corpus["split"]) == {"dev", "test"}
    sides = corpus.groupby("source")["split"].nunique()
    assert sides.max() == 1, list(sides[sides > 1].index)  # a page, thread or file wholly on one side
    assert (corpus["split"] == "test").mean() >= 0.30


def test_sisimai_is_only_the_independent_check(corpus: pd.DataFrame) -> None:
    assert not corpus["source"].str.contains("sisimai", case=False).any()
    check = pd.read_csv(SISIMAI, dtype=str, keep_default_na=False)
    assert len(check) > 100 and check["source"].str.contains("sisimai", case=False).all()


def test_enough_exchange_online_forms(corpus: pd.DataFrame) -> None:
    assert corpus["reply"].str.contains(EXO_FORM).sum() >= 30


def test_transient_follows_the_outermost_code(corpus: pd.DataFrame) -> None:
    assert set(corpus["transient"]) <= {"True", "False"}
    first = corpus["reply"].str.extract(FIRST_CODE)[0]
    coded = first.notna()
    expected = first[coded].eq("4").map({True: "True", False: "False"})
    assert (corpus.loc[coded, "transient"] == expected).all()


def test_the_issue_corpus_goals(corpus: pd.DataFrame) -> None:
    assert len(corpus) >= 1000
    assert (~corpus["reply"].str.contains(ENHANCED)).sum() >= 300
    assert corpus["cause"].value_counts().min() >= 25
    assert corpus["source"].nunique() >= 60
