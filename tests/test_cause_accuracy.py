"""Accuracy of the cause rules on the labelled reply corpus (tests/data/replies_corpus.csv, README-corpus.md).

The corpus is split by source into a development part (the rules were written against it) and a frozen test
part (measured once the rules were done, never used to edit a rule); sisimai's test tables are a separate,
independent check set (tests/data/replies/sisimai_check.csv). ``pytest -s`` prints the confusion table and the
misses of each part. The floors below are the measured figures rounded down, so a rule change that loses
accuracy on replies it was not written from fails here; the issue's goal (95% on the test part) is a separate,
strict xfail until it is reached.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.core.schema import CAUSES
from analysis.reference.causes import classify_replies

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "replies_corpus.csv"
SISIMAI = DATA / "replies" / "sisimai_check.csv"
# part -> (minimum accuracy, maximum unknown share)
FLOORS = {"test": (0.91, 0.03), "dev": (0.97, 0.03), "sisimai": (0.95, 0.03)}
GOAL = 0.95


def _part(name: str) -> pd.DataFrame:
    path = SISIMAI if name == "sisimai" else CORPUS
    assert path.is_file(), f"the labelled corpus {path} is missing"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert {"reply", "cause", "transient", "source"} <= set(table.columns)
    assert table["cause"].isin(CAUSES).all(), sorted(set(table["cause"]) - set(CAUSES))
    return table if name == "sisimai" else table[table["split"] == name]


def _measure(name: str) -> tuple[float, float]:
    part = _part(name)
    found = classify_replies(part["reply"])
    expected = pd.Categorical(part["cause"], categories=CAUSES)
    predicted = found["cause"].to_numpy()
    correct = expected == predicted
    accuracy, unknown = float(correct.mean()), float((found["cause"] == "unknown").mean())
    confusion = pd.crosstab(pd.Series(expected, name="labelled"), pd.Series(predicted, name="predicted"),
                            dropna=False)
    confusion = confusion.loc[(confusion.sum(axis=1) > 0), (confusion.sum(axis=0) > 0)]
    print(f"\n{name}: cause accuracy {accuracy:.1%} on {len(part)} replies; unknown {unknown:.1%}; "
          f"confidence {found['confidence'].value_counts().to_dict()}")
    print(confusion.to_string())
    misses = part.assign(predicted=predicted, rule=found["rule"].to_numpy())[~correct]
    for row in misses.itertuples():
        print(f"  labelled {row.cause:<22} got {row.predicted:<22} ({row.rule}): {row.reply[:140]}")
    return accuracy, unknown


@pytest.mark.parametrize("name", list(FLOORS))
def test_cause_accuracy(name: str) -> None:
    accuracy, unknown = _measure(name)
    floor, max_unknown = FLOORS[name]
    assert accuracy >= floor
    assert unknown < max_unknown


@pytest.mark.xfail(strict=True, reason="issue 15 goal not reached: 91.9% on the frozen test part "
                                       "(1,113-row corpus, README Causes)")
def test_cause_accuracy_goal_on_the_test_part() -> None:
    accuracy, _ = _measure("test")
    assert accuracy >= GOAL


def test_transient_agrees_with_the_corpus() -> None:
    corpus = pd.concat([_part("dev"), _part("test")])
    labelled = corpus["transient"].str.lower().map({"true": True, "false": False})
    found = classify_replies(corpus["reply"])["transient"]
    found.index = labelled.index
    known = labelled.notna() & found.notna()
    agreement = (found[known] == labelled[known].astype(bool)).mean()
    print(f"\ntransient agreement {agreement:.1%} on {int(known.sum())} replies")
    assert agreement >= 0.95
