"""The widgets and row-level helpers on a store (Dask): they show what they show on the pandas table.

Driven without a browser, like tests/test_widgets.py. The sample is ingested into a store of several partitions;
each view is built once on the store's Dask DataFrame and once on ``tag(load_trace(sample))``, and compared.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from analysis import audit_allowlist, load_trace, summaries  # noqa: E402
from analysis.backends import dask as engine  # noqa: E402
from analysis.reference.endpoints import Endpoints  # noqa: E402
from analysis.store.ingest import ingest, open_store  # noqa: E402
from analysis.tagging.tag import tag  # noqa: E402
from analysis.ui import Drilldown, FilePicker, TableView, TimeRange  # noqa: E402
from analysis.ui.render import problem_counts, select_messages  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")


@pytest.fixture(scope="module")
def store(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("widget-store") / "store"
    report = ingest(sample_dir, path, partition_rows=800, endpoints=Endpoints.bundled())
    assert report.ok and report.partitions > 3
    return path


@pytest.fixture(scope="module")
def on_dask(store: Path):
    return open_store(store)


@pytest.fixture(scope="module")
def on_pandas(sample_dir: Path) -> pd.DataFrame:
    return tag(load_trace(sample_dir), endpoints=Endpoints.bundled())


def same_rows(dask_rows: pd.DataFrame, pandas_rows: pd.DataFrame) -> None:
    """Equal values (categoricals as values), in order, ignoring the index and the store's _seq."""
    def plain(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.drop(columns=[c for c in ("_seq",) if c in frame]).reset_index(drop=True)
        return frame.astype({c: object for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)})
    pd.testing.assert_frame_equal(plain(dask_rows), plain(pandas_rows), check_dtype=False)


@pytest.mark.parametrize("text", ["", "tailspintoys", "4.4.7", "no such text anywhere"])
def test_table_view_filters_on_the_cluster(on_dask, on_pandas, text):
    columns = ["timestamp", "recipient", "subject", "event", "cause", "reply"]
    big = TableView(on_dask, columns=columns, filter_text=text, max_rows=40, page_size=10)
    small = TableView(on_pandas, columns=columns, filter_text=text, page_size=10)
    assert big.matches == small.matches == len(small.filtered)
    same_rows(big.filtered, small.filtered.head(40))
    same_rows(big.visible, small.visible)
    if small.matches > 40:
        assert "the first 40 of" in big.page_label.value and f"{small.matches:,} matching rows" in big.page_label.value
    big.sort_by, small.sort_by = "recipient", "recipient"  # sorting works on the rows fetched
    assert big.visible["recipient"].tolist() == sorted(big.filtered["recipient"].dropna())[:10]


def test_time_range_and_its_window(on_dask, on_pandas):
    big, small = TimeRange(on_dask, name=None), TimeRange(on_pandas, name=None)
    assert big.steps == small.steps and len(big.steps) > 24
    for view in (big, small):
        view.start, view.end = view.steps[30], view.steps[80]
    window = big.apply(on_dask)
    assert engine.is_dask(window)
    expected = summaries.summarize_domains(small.apply(on_pandas))
    pd.testing.assert_frame_equal(summaries.summarize_domains(window), expected)


@pytest.mark.parametrize("column", ["recipient_domain", "cause"])
def test_problem_counts(on_dask, on_pandas, column):
    pd.testing.assert_frame_equal(problem_counts(on_dask, column), problem_counts(on_pandas, column),
                                  check_dtype=False)


@pytest.mark.parametrize("domain, cause", [("tailspintoys.com", None), (None, "gateway_block"),
                                           ("gmail.com", "auth_policy")])
def test_selected_messages_and_journey(on_dask, on_pandas, domain, cause):
    picked = select_messages(on_dask, domain, cause)
    assert engine.is_dask(picked)
    rows = picked.compute().sort_values("_seq")
    expected = select_messages(on_pandas, domain, cause)
    assert len(expected) > 0
    same_rows(rows[list(on_pandas.columns)], expected)
    trace, recipient = expected["trace_id"].iloc[-1], expected["recipient"].iloc[-1]
    journey = summaries.message_journey(on_pandas, trace, recipient)
    same_rows(summaries.message_journey(on_dask, trace, recipient)[list(journey.columns)], journey)


def test_drilldown_on_the_store(on_dask, on_pandas):
    big = Drilldown(on_dask, domain="tailspintoys.com", cause="gateway_block", name=None)
    small = Drilldown(on_pandas, domain="tailspintoys.com", cause="gateway_block", name=None)
    assert big.filter.domain_box.options == small.filter.domain_box.options
    assert big.filter.cause_box.options == small.filter.cause_box.options
    same_rows(big.messages.data, small.messages.data)
    pd.testing.assert_frame_equal(big.replies.data, small.replies.data)
    assert big.journey.message == small.journey.message and len(big.journey.journey) > 1


def test_allowlist_audit_finds_the_same_messages(on_dask, on_pandas, sample_dir):
    allowlist = sample_dir / "partner_allowlist_ironport.txt"
    big = audit_allowlist(allowlist, Endpoints.bundled(), tagged=on_dask).affected_messages
    small = audit_allowlist(allowlist, Endpoints.bundled(), tagged=on_pandas).affected_messages
    assert len(small) > 0
    pd.testing.assert_frame_equal(big, small)


@pytest.fixture(scope="module")
def scheduler():
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    yield cluster.scheduler_address
    for client in list(engine._CLIENTS.values()):
        client.close()
    engine._CLIENTS.clear()
    cluster.close()


def test_file_picker_opens_a_store_on_a_scheduler(store, scheduler, sample_dir):
    picker = FilePicker(store, name=None, dask_scheduler=scheduler)
    assert picker.error is None and picker.rows == 5474 and engine.is_dask(picker.events)
    assert f"computed on the Dask cluster {scheduler}" in picker.status.value
    assert {Path(f.path).name for f in picker.report.loaded_files} >= {"messagetrace_detail.csv"}
    assert sum(f.events for f in picker.report.files) >= 5474  # the stored load reports, before de-duplication
    again = FilePicker(store, name=None, dask_scheduler=scheduler)
    assert engine._CLIENTS[scheduler] is engine.ensure_client(scheduler) and again.rows == picker.rows
    wrong = FilePicker(sample_dir, name=None, dask_scheduler=scheduler)
    assert "paths must name one store folder" in wrong.error and "exo-deferrals ingest" in wrong.error
    assert wrong.rows == 0 and "Traceback" not in wrong.status.value
    assert "exo-error" in wrong.status.value
