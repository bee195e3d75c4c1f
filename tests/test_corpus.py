"""Checks of the labelled reply corpus itself (tests/data/replies_corpus.csv); accuracy is the classifier's test."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.core.schema import CAUSES

CORPUS = Path(__file__).parent / "data" / "replies_corpus.csv"
LABELS = set(CAUSES) - {"unknown"}
# Exchange Online / Exchange message-trace and NDR forms (see tests/data/README-corpus.md)
EXO_FORM = re.compile(
    r"\{LED=|\[Message=|LastAttempted|OutboundProxyTarget|Primary target IP address responded|returned '"
    r"|Message expired(?:,| ->)|\b[45]\.4\.31[2-8]\b|\b4\.7\.320\b|\b5\.4\.300\b",
    re.I,
)
FIRST_CODE = re.compile(r"(?<![\w.])([245])\d\d(?=[ -]|$)")


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    return pd.read_csv(CORPUS, dtype=str, keep_default_na=False)


def test_columns_and_size(corpus: pd.DataFrame) -> None:
    assert list(corpus.columns) == ["reply", "cause", "transient", "source", "note"]
    assert len(corpus) >= 260


def test_labels_from_the_taxonomy(corpus: pd.DataFrame) -> None:
    assert set(corpus["cause"]) <= LABELS
    counts = corpus["cause"].value_counts()
    assert {cause: int(counts.get(cause, 0)) for cause in LABELS if counts.get(cause, 0) < 8} == {}


def test_every_row_is_sourced_and_unique(corpus: pd.DataFrame) -> None:
    assert (corpus["reply"].str.strip() != "").all()
    assert (corpus["source"].str.strip() != "").all()
    assert not corpus["reply"].duplicated().any()


def test_enough_exchange_online_forms(corpus: pd.DataFrame) -> None:
    assert corpus["reply"].str.contains(EXO_FORM).sum() >= 40


def test_transient_follows_the_outermost_code(corpus: pd.DataFrame) -> None:
    assert set(corpus["transient"]) <= {"True", "False"}
    first = corpus["reply"].str.extract(FIRST_CODE)[0]
    coded = first.notna()
    expected = first[coded].eq("4").map({True: "True", False: "False"})
    assert (corpus.loc[coded, "transient"] == expected).all()
