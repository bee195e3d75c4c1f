"""Accuracy of the cause rules on the labelled reply corpus (tests/data/replies_corpus.csv).

The corpus (columns reply, cause, transient, source, note) holds real replies with their labels. Nothing is
skipped: a missing corpus fails the test. ``pytest -s`` prints the confusion table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.core.schema import CAUSES
from analysis.reference.causes import classify_replies

CORPUS = Path(__file__).parent / "data" / "replies_corpus.csv"
MIN_ACCURACY = 0.95
MAX_UNKNOWN = 0.03


def _corpus() -> pd.DataFrame:
    assert CORPUS.is_file(), f"the labelled corpus {CORPUS} is missing"
    corpus = pd.read_csv(CORPUS, dtype=str, keep_default_na=False)
    assert {"reply", "cause", "transient", "source"} <= set(corpus.columns)
    assert len(corpus) >= 200
    assert corpus["cause"].isin(CAUSES).all(), sorted(set(corpus["cause"]) - set(CAUSES))
    return corpus


def test_cause_accuracy_on_the_corpus():
    corpus = _corpus()
    found = classify_replies(corpus["reply"])
    expected = pd.Categorical(corpus["cause"], categories=CAUSES)
    predicted = found["cause"].to_numpy()
    confusion = pd.crosstab(
        pd.Series(expected, name="labelled"), pd.Series(predicted, name="predicted"), dropna=False
    )
    confusion = confusion.loc[(confusion.sum(axis=1) > 0), (confusion.sum(axis=0) > 0)]
    correct = expected == predicted
    accuracy = correct.mean()
    unknown = (found["cause"] == "unknown").mean()
    print(f"\ncause accuracy {accuracy:.1%} on {len(corpus)} replies; unknown {unknown:.1%}")
    print(confusion.to_string())
    misses = corpus.assign(predicted=predicted, rule=found["rule"].to_numpy())[~correct]
    for row in misses.itertuples():
        print(f"  labelled {row.cause:<22} got {row.predicted:<22} ({row.rule}): {row.reply[:140]}")
    assert accuracy >= MIN_ACCURACY
    assert unknown < MAX_UNKNOWN


def test_transient_agrees_with_the_corpus():
    corpus = _corpus()
    labelled = corpus["transient"].str.lower().map({"true": True, "false": False})
    found = classify_replies(corpus["reply"])["transient"]
    known = labelled.notna() & found.notna()
    agreement = (found[known] == labelled[known].astype(bool)).mean()
    print(f"\ntransient agreement {agreement:.1%} on {int(known.sum())} replies")
    assert agreement >= MIN_ACCURACY
