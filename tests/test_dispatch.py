"""The generic operations of analysis/backends/operations.py on a real dask.distributed LocalCluster (2 worker
processes, loopback): each gives what its pandas version gives, exactly, on the bundled sample as a Dask DataFrame
(``dd.from_pandas``) and as a store; and the report, audit and widget functions built on them (which hold no Dask
branch any more) answer on a store what they answer on the pandas table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from analysis import load_trace  # noqa: E402
from analysis.audit.allowlist import audit_allowlist  # noqa: E402
from analysis.backends.operations import (  # noqa: E402
    columns_of,
    distinct_values,
    each_partition,
    row_count,
    rows_of,
    time_span,
    unused_categories_removed,
)
from analysis.backends.partitions import SEQ, is_site_partitioned  # noqa: E402
from analysis.reference.endpoints import Endpoints  # noqa: E402
from analysis.report.findings import remedy_table  # noqa: E402
from analysis.report.inputs import file_labels, other_domains  # noqa: E402
from analysis.report.proof import domain_rows, refusal_proofs, telling_messages  # noqa: E402
from analysis.store.ingest import ingest  # noqa: E402
from analysis.tagging.tag import tag  # noqa: E402
from analysis.ui.render import time_steps  # noqa: E402
from analysis.ui.views import narrowed_choices  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning"),
              pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")]

COLUMNS = ["trace_id", "message_id", "recipient", "recipient_domain", "event", "cause", "exo_ip", "timestamp"]


@pytest.fixture(scope="module")
def tagged(sample_dir: Path) -> pd.DataFrame:
    return tag(load_trace(sample_dir), endpoints=Endpoints.bundled())


@pytest.fixture(scope="module")
def store(client, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dispatch-store") / "store"
    report = ingest(sample_dir, path, partition_rows=800, endpoints=Endpoints.bundled())
    assert report.ok and report.partitions > 3
    return path


@pytest.fixture(scope="module")
def frames(client, tagged: pd.DataFrame, store: Path) -> dict[str, object]:
    """The same table on Dask three ways: a Dask DataFrame of 4 partitions, a store folder, the store opened."""
    from analysis.store.ingest import open_store

    return {"dask": dd.from_pandas(tagged, npartitions=4), "store": store, "opened": open_store(store)}


def values(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as their values (a store's categories are its own), missing ones None, a fresh index."""
    out = frame.reset_index(drop=True)
    for name in out.columns:
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def same(left: pd.DataFrame, right: pd.DataFrame, kind: str) -> None:
    """A Dask DataFrame of the pandas table keeps its dtypes and index: exactly equal; a store: equal values."""
    if kind == "dask":
        pd.testing.assert_frame_equal(left, right, check_exact=True)
    else:
        pd.testing.assert_frame_equal(values(left), values(right), check_exact=True, check_dtype=False)


def deferred(rows: pd.DataFrame, cause: str) -> pd.DataFrame:
    """A row-by-row step: the deferrals with ``cause``."""
    keep = rows["event"].astype("string").eq("defer") & rows["cause"].astype("string").eq(cause)
    return rows[keep.fillna(False).to_numpy(dtype=bool)]


KINDS = ["dask", "store", "opened"]


# ---------------------------------------------------------------- each operation, pandas vs the cluster

@pytest.mark.parametrize("kind", KINDS)
def test_row_count(frames, tagged, kind):
    assert row_count(frames[kind]) == row_count(tagged) == len(tagged) == 5474


@pytest.mark.parametrize("kind", KINDS)
def test_columns_of(frames, tagged, kind):
    empty = columns_of(frames[kind])
    assert len(empty) == 0
    if kind == "dask":
        pd.testing.assert_frame_equal(empty, columns_of(tagged))
    else:  # the store holds every column of the tagged table, and its row numbers
        assert set(tagged.columns) <= set(empty.columns) and SEQ in empty.columns


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("step", [None, deferred])
def test_rows_of(frames, tagged, kind, step):
    args = ("gateway_block",) if step else ()
    got, expected = rows_of(frames[kind], COLUMNS, step, *args), rows_of(tagged, COLUMNS, step, *args)
    assert isinstance(got, pd.DataFrame) and list(got.columns) == COLUMNS
    wanted = (tagged["event"].astype(str).eq("defer") & tagged["cause"].astype(str).eq("gateway_block")).sum()
    assert len(expected) == (len(tagged) if step is None else wanted) > 0
    same(got, expected, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_each_partition_is_lazy_and_equal(frames, tagged, kind):
    lazy = each_partition(frames[kind], deferred, "gateway_block")
    assert hasattr(lazy, "__dask_graph__")
    assert is_site_partitioned(lazy) == (kind != "dask")  # a store's partitions still hold whole sites
    expected = each_partition(tagged, deferred, "gateway_block")
    computed = lazy.compute()
    if kind == "dask":
        same(computed, expected, kind)
    else:
        computed = computed.sort_values(SEQ, kind="stable")[list(tagged.columns)]
        same(computed, expected, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_distinct_values(frames, tagged, kind):
    columns = ["recipient_domain", "cause", "remote_host", "subject"]
    expected = distinct_values(tagged, columns)
    assert distinct_values(frames[kind], columns) == expected
    assert expected["cause"] >= {"gateway_block", "mailbox_full"} and None not in expected["remote_host"]


@pytest.mark.parametrize("kind", KINDS)
def test_time_span(frames, tagged, kind):
    first, last = time_span(tagged)
    assert (first, last) == (tagged["timestamp"].min(), tagged["timestamp"].max())
    assert time_span(frames[kind]) == (first, last)
    assert time_span(tagged.iloc[:0]) == (None, None)


def test_unused_categories_removed_on_pandas_only(frames, tagged):
    rows = tagged[tagged["recipient_domain"].astype(str).eq("tailspintoys.com").to_numpy()]
    assert len(rows["recipient_domain"].cat.categories) > 1
    assert list(unused_categories_removed(rows)["recipient_domain"].cat.categories) == ["tailspintoys.com"]
    assert unused_categories_removed(frames["dask"]) is frames["dask"]  # partitions' categories are their own


# ---------------------------------------------------------------- the callers on a store answer as on pandas

@pytest.mark.parametrize("kind", ["dask", "store"])
def test_report_functions_on_the_cluster(frames, tagged, kind):
    data = frames[kind]
    assert telling_messages(data) == telling_messages(tagged) != []  # a store folder gave [] before
    assert other_domains(data, ["tailspintoys.com"]) == other_domains(tagged, ["tailspintoys.com"])
    rows = domain_rows(data, ["TailspinToys.com"]).compute()
    expected = domain_rows(tagged, ["TailspinToys.com"])
    assert len(rows) == len(expected) > 100
    pd.testing.assert_frame_equal(values(rows.sort_values(SEQ)[list(tagged.columns)] if SEQ in rows else rows),
                                  values(expected), check_dtype=False)
    pd.testing.assert_frame_equal(values(remedy_table(data)), values(remedy_table(tagged)), check_dtype=False)


def test_low_confidence_causes_are_counted_on_the_cluster(client, tagged):
    doubtful = tagged.copy()
    rows = (doubtful["cause"].astype(str).eq("tls_required") & doubtful["event"].astype(str).eq("defer")
            & doubtful["direction"].astype(str).eq("outbound"))
    doubtful.loc[rows[rows].index[:7], "cause_confidence"] = "class"
    expected = remedy_table(doubtful)
    assert expected.set_index("cause").loc["tls_required", "low_confidence_events"] == 7
    # on Dask these were zeros before
    pd.testing.assert_frame_equal(remedy_table(dd.from_pandas(doubtful, npartitions=4)), expected, check_exact=True)


def test_proofs_and_file_labels_on_a_store_folder(tagged, store, sample_dir):
    # domain_rows of a store folder failed before; the 3 most affected domains hold the one selective refusal
    proofs, expected = refusal_proofs(store, candidates=3), refusal_proofs(tagged, candidates=3)
    assert [(p.domain, p.refused, p.accepted) for p in proofs] == [(p.domain, p.refused, p.accepted) for p in expected]
    assert [p.domain for p in expected] == ["tailspintoys.com"]
    report = load_trace(sample_dir, errors="report", with_report=True)[1]
    labels = file_labels(report, tagged)
    assert file_labels(report, store) == labels and sum(", 2026-" in label for label in labels.values()) >= 9


def test_allowlist_audit_and_widget_helpers_on_a_store(frames, tagged, store):
    allowlist = "40.107.0.0/16\n40.92.0.0/15\n104.47.0.0/17\n"
    big = audit_allowlist(allowlist, Endpoints.bundled(), tagged=store).affected_messages
    small = audit_allowlist(allowlist, Endpoints.bundled(), tagged=tagged).affected_messages
    assert len(small) > 10
    pd.testing.assert_frame_equal(big, small, check_exact=True)
    assert time_steps(frames["opened"]["timestamp"]) == time_steps(tagged["timestamp"])
    for kind in ("dask", "store"):
        assert (narrowed_choices(frames[kind], "recipient_domain", cause="gateway_block")
                == narrowed_choices(tagged, "recipient_domain", cause="gateway_block"))
