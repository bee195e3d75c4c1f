"""The Parquet store and the Dask engine on a real dask.distributed LocalCluster (2 worker processes, loopback).

Everything is compared exactly with the pandas path on the same data: the store with ``tag(load_trace(...))`` of
every ingested file at once, and each summary on the store (or a Dask DataFrame) with the pandas function on the
same table, on the bundled sample and on a generated trace ingested in overlapping windows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from analysis import load_trace, summaries  # noqa: E402
from analysis.backends import dask as engine  # noqa: E402
from analysis.backends.rows import first_rows  # noqa: E402
from analysis.cli import main as cli_main  # noqa: E402
from analysis.core.concepts import message_key  # noqa: E402
from analysis.core.schema import EVENT_COLUMNS, TAG_COLUMNS, check_events  # noqa: E402
from analysis.reference.endpoints import Endpoints  # noqa: E402
from analysis.report.redact import redact  # noqa: E402
from analysis.sample.generator import write_big  # noqa: E402
from analysis.store.ingest import NO_DAY, ingest, load_reports, open_store, plan_pieces, read_manifest  # noqa: E402
from analysis.summaries import selections  # noqa: E402
from analysis.tagging.tag import tag  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning"),
              pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")]  # another cluster runs

SUMMARIES = {  # name -> call, as a notebook would make it
    "summarize_domains": lambda x: summaries.summarize_domains(x),
    "summarize_domains_by_name_all": lambda x: summaries.summarize_domains(x, sort="name", direction=None),
    "queue_ages": lambda x: summaries.queue_ages(x, rollup_parent=True, min_subdomains=1),
    "queue_ages_at": lambda x: summaries.queue_ages(x, "2026-11-17 06:00"),
    "message_timelines": lambda x: summaries.message_timelines(x),
    "retry_intervals": lambda x: summaries.retry_intervals(x),
    "top_replies": lambda x: summaries.top_replies(x, n=10_000),
    "top_replies_5_all": lambda x: summaries.top_replies(x, n=5, direction=None),
    "summarize_causes": lambda x: summaries.summarize_causes(x),
    "deferrals_by_hour": lambda x: summaries.deferrals_by_hour(x),
    "deferrals_by_day_all": lambda x: summaries.deferrals_by_hour(x, freq="1D", direction=None),
    "headline": lambda x: summaries.headline(x),
    "by_gateway": lambda x: summaries.by_gateway(x),
    "by_connector_all": lambda x: summaries.by_connector(x, sort="deferrals", direction=None),
    "deferral_rate_by_source_range": lambda x: summaries.deferral_rate_by_source_range(x, Endpoints.bundled()),
    "deferral_rate_published": lambda x: summaries.deferral_rate_by_source_range(x, by="published"),
}


def values(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with categoricals as their values, missing ones None (categories may come in another order and
    as strings or objects: Dask unions them, Parquet stores strings) and a fresh index."""
    out = frame.reset_index(drop=True)
    for name in out.columns:
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def assert_same(left: object, right: object) -> None:
    """Equal frames (or dicts), exactly - but for float columns, equal to 4 units in the last place: pandas'
    groupby mean (summarize_domains' mean_delay_minutes) sums a group differently when other groups' rows lie
    between its rows, which they do in the whole table and not in a partition."""
    if isinstance(left, dict):
        assert left == right
        return
    assert isinstance(right, pd.DataFrame)
    left_values, right_values = values(left), values(right)
    floats = [c for c in left_values.columns if pd.api.types.is_float_dtype(left_values[c].dtype)]
    pd.testing.assert_frame_equal(left_values.drop(columns=floats), right_values.drop(columns=floats),
                                  check_exact=True)
    for name in floats:
        assert right_values[name].dtype == left_values[name].dtype
        a, b = left_values[name].to_numpy(), right_values[name].to_numpy()
        assert (np.isnan(a) == np.isnan(b)).all(), name
        np.testing.assert_array_max_ulp(a[~np.isnan(a)], b[~np.isnan(b)], maxulp=4)
    assert list(left_values.columns) == list(right_values.columns)
    assert left.attrs == right.attrs


# ---------------------------------------------------------------- the bundled sample

@pytest.fixture(scope="module")
def sample_store(client, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("sample-store") / "store"
    report = ingest(sample_dir, store, partition_rows=800, endpoints=Endpoints.bundled())
    assert report.ok, report.summary()
    return store


@pytest.fixture(scope="module")
def sample_reference(sample_dir: Path) -> pd.DataFrame:
    return tag(load_trace(sample_dir), endpoints=Endpoints.bundled())


def test_sample_store_holds_the_tagged_trace(sample_store: Path, sample_reference: pd.DataFrame):
    stored = open_store(sample_store, engine="pandas")
    assert check_events(stored, {**EVENT_COLUMNS, **TAG_COLUMNS}) == []
    assert stored["_seq"].is_monotonic_increasing and len(stored) == len(sample_reference) == 5474
    pd.testing.assert_frame_equal(values(stored[list(sample_reference.columns)]), values(sample_reference),
                                  check_exact=True)
    assert stored["cause"].eq("gateway_block").any() and stored["source_format"].nunique() == 6


@pytest.mark.parametrize("name", SUMMARIES)
def test_summaries_of_the_sample_store_equal_pandas(sample_store: Path, name: str):
    call = SUMMARIES[name]
    assert_same(call(open_store(sample_store, engine="pandas")), call(str(sample_store)))


def test_groups_across_sites_are_really_spread_over_partitions(sample_store: Path):
    """by_gateway and the source ranges group across domains: the sample's groups lie in several partitions."""
    partitions = open_store(sample_store, columns=["gateway", "exo_ip"]).to_delayed()
    spread = [part.compute() for part in partitions]
    assert sum(p["gateway"].eq("Cisco Secure Email (IronPort)").any() for p in spread) >= 1
    assert sum(p["gateway"].isna().any() for p in spread) >= 3  # "(not identified)" comes from many partitions
    assert sum(p["exo_ip"].astype("string").str.startswith("40.107.").fillna(False).any() for p in spread) >= 3
    ranges = summaries.deferral_rate_by_source_range(str(sample_store), Endpoints.bundled())
    assert len(ranges) >= 3 and ranges["exo_ip_published"].any() and (ranges["deferred"] > 0).any()


def test_messages_that_span_partitions_are_counted_once(sample_store: Path):
    """A message to recipients of several domains lies in several partitions: each partition counts it, headline
    and top_replies on the store count it once, as pandas does."""
    parts = [part.compute() for part in open_store(sample_store).to_delayed()]
    keys = [set(message_key(p["trace_id"], p["message_id"]).dropna()) for p in parts]
    assert set().union(*[a & b for i, a in enumerate(keys) for b in keys[i + 1:]])  # the case exists
    whole = open_store(sample_store, engine="pandas")
    assert sum(summaries.headline(p)["messages"] for p in parts) > summaries.headline(str(sample_store))[
        "messages"] == summaries.headline(whole)["messages"]
    assert_same(summaries.top_replies(whole, n=1000), summaries.top_replies(str(sample_store), n=1000))


@pytest.mark.parametrize("name", ["headline", "top_replies_5_all", "summarize_causes", "by_gateway",
                                  "message_timelines", "retry_intervals", "deferral_rate_published"])
def test_summaries_of_a_dask_dataframe_equal_pandas(client, sample_reference: pd.DataFrame, name: str):
    """A Dask DataFrame in arbitrary partitions (no store): shuffled by site first, rows kept in table order."""
    call = SUMMARIES[name]
    assert_same(call(sample_reference), call(dd.from_pandas(sample_reference, npartitions=3, sort=False)))


@pytest.mark.parametrize("domains", [False, True])
def test_redaction_on_the_cluster_equals_pandas(client, sample_store: Path, sample_reference: pd.DataFrame,
                                                domains: bool):
    secret = bytes(range(32))
    redacted, redactor = redact(open_store(sample_store), secret=secret, redact_domains=domains)
    assert hasattr(redacted, "__dask_graph__")
    computed = redacted.compute().sort_values("_seq")[list(sample_reference.columns)]
    expected, _ = redact(sample_reference, secret=secret, redact_domains=domains)
    assert_same(computed, expected)
    text = computed.astype(str).to_csv().lower()
    assert "tanja.schmidt" in sample_reference.astype(str).to_csv().lower() and "tanja.schmidt" not in text
    assert "tanja.schmidt" not in redactor.text("ask tanja.schmidt@contoso.com")
    assert ("tailspintoys.com" in text) != domains


def test_a_time_window_of_the_store(sample_store: Path):
    everything = open_store(sample_store, engine="pandas")
    start, end = "2026-11-17 06:00", pd.Timestamp("2026-11-18 12:00", tz="UTC")
    inside = everything["timestamp"].between(pd.Timestamp(start, tz="UTC"), end).fillna(False).to_numpy(dtype=bool)
    expected = everything[inside].reset_index(drop=True)
    assert 0 < len(expected) < len(everything)
    pd.testing.assert_frame_equal(values(open_store(sample_store, engine="pandas", start=start, end=end)),
                                  values(expected), check_exact=True)
    window = open_store(sample_store, start=start, end=end)
    for name in ("summarize_domains", "deferrals_by_hour", "top_replies_5_all"):
        assert_same(SUMMARIES[name](window), SUMMARIES[name](expected))


def test_tag_on_a_dask_dataframe_equals_tagging_in_pandas(client, sample_reference: pd.DataFrame):
    untagged = sample_reference[list(EVENT_COLUMNS)]
    ddf = dd.from_pandas(untagged, npartitions=4)
    tagged = tag(ddf, endpoints=Endpoints.bundled())
    assert hasattr(tagged, "__dask_graph__") and tagged.npartitions == 4
    computed = tagged.compute().sort_index()
    assert_same(computed[list(sample_reference.columns)], sample_reference)
    # summaries of the tagged Dask DataFrame reuse its partitions (no second shuffle) and equal pandas
    for name in ("summarize_domains", "headline", "top_replies_5_all", "message_timelines"):
        assert_same(SUMMARIES[name](tagged), SUMMARIES[name](sample_reference))


def test_summaries_need_the_tags(client, sample_reference: pd.DataFrame):
    with pytest.raises(ValueError, match=r"run analysis\.tag"):
        summaries.summarize_domains(dd.from_pandas(sample_reference[list(EVENT_COLUMNS)], npartitions=2))


# ---------------------------------------------------------------- a generated trace in overlapping windows

@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generated week (Get-MessageTrace + Get-MessageTraceDetail) with the detail export cut into two windows
    that share half their rows, at record boundaries."""
    folder = tmp_path_factory.mktemp("generated")
    write_big(folder, 20_000)
    detail = folder / "messagetrace_detail.csv"
    pieces = plan_pieces(detail, 5_000)
    assert len(pieces) >= 4 and [p.span[1] for p in pieces[:-1]] == [p.span[0] for p in pieces[1:]]
    data = detail.read_bytes()
    header = data[:pieces[0].preamble_end]
    (folder / "window_a.csv").write_bytes(header + data[pieces[0].span[0]:pieces[2].span[1]])
    (folder / "window_b.csv").write_bytes(header + data[pieces[1].span[0]:pieces[-1].span[1]])
    return {"summary": folder / "messagetrace_ps51_en-US.csv", "a": folder / "window_a.csv",
            "b": folder / "window_b.csv"}


@pytest.fixture(scope="module")
def generated_store(client, windows: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    store = tmp_path_factory.mktemp("generated-store") / "store"
    first = ingest([windows["summary"], windows["a"]], store, chunk_rows=3_000, partition_rows=6_000)
    second = ingest([windows["b"], windows["a"]], store, chunk_rows=3_000, partition_rows=6_000)
    return {"path": store, "first": first, "second": second}


@pytest.fixture(scope="module")
def generated_reference(windows: dict[str, Path]) -> pd.DataFrame:
    return tag(load_trace([windows["summary"], windows["a"], windows["b"]]))


def test_overlapping_windows_are_stored_once_and_equal_loading_them_together(
        generated_store: dict, generated_reference: pd.DataFrame, windows: dict[str, Path]):
    first, second = generated_store["first"], generated_store["second"]
    assert [f.status for f in first.files] == ["ingested", "ingested"]
    assert [f.status for f in second.files] == ["ingested", "already in the store"]
    window_b = second.files[0]
    assert 0 < window_b.events_added < window_b.events_loaded  # its first half was in window a
    stored = open_store(generated_store["path"], engine="pandas")
    assert len(stored) == len(generated_reference) == second.events
    assert window_b.duplicates == load_trace([windows["a"], windows["b"]], with_report=True)[1].files[1] \
        .duplicates_removed
    pd.testing.assert_frame_equal(values(stored[list(generated_reference.columns)]), values(generated_reference),
                                  check_exact=True)
    assert stored["cause"].notna().any() and stored["source_row"].notna().all()


@pytest.mark.parametrize("name", SUMMARIES)
def test_summaries_of_the_generated_store_equal_pandas(generated_store: dict, generated_reference: pd.DataFrame,
                                                       name: str):
    call = SUMMARIES[name]
    assert_same(call(generated_reference), call(str(generated_store["path"])))


def test_reingesting_adds_nothing_and_the_manifest_knows_every_file(generated_store: dict, windows: dict[str, Path]):
    store = generated_store["path"]
    before = read_manifest(store)
    files_before = sorted(p.relative_to(store) for p in store.rglob("*.parquet"))
    again = ingest(list(windows.values()), store)
    assert [f.status for f in again.files] == ["already in the store"] * 3 and again.events_added == 0
    after = read_manifest(store)
    assert after["events"] == before["events"] and after["files"] == before["files"]
    assert sorted(p.relative_to(store) for p in store.rglob("*.parquet")) == files_before
    assert [Path(f["path"]).name for f in after["files"]] == [p.name for p in windows.values()]
    assert {f["sha256"] for f in after["files"]} == {hashlib.sha256(p.read_bytes()).hexdigest()
                                                     for p in windows.values()}
    assert sum(f["events"] for f in after["files"]) == after["events"]
    reports = load_reports(store)
    assert set(reports["path"]) == {str(p) for p in windows.values()}
    assert (reports["rows_read"] > 0).all() and (reports["error"].isna()).all()


def test_store_is_partitioned_by_day(generated_store: dict):
    store = generated_store["path"]
    manifest = read_manifest(store)
    days = sorted(p.name.removeprefix("day=") for p in store.glob("day=*"))
    assert days == manifest["days"] and NO_DAY not in days
    for path in store.glob("day=*/part.*.parquet"):
        stamps = pq.read_table(path, columns=["timestamp"]).column("timestamp").to_pandas()
        assert set(stamps.dt.strftime("%Y-%m-%d")) == {path.parent.name.removeprefix("day=")}
    one = pd.read_parquet(store, filters=[("day", "=", days[0])], columns=["timestamp"])  # a hive dataset
    assert len(one) and (one["timestamp"].dt.strftime("%Y-%m-%d") == days[0]).all()
    # every site (recipient domain) lies in one group of partitions (part.NUMBER.SLICE.parquet) across the days;
    # the biggest domain was cut into slices of messages, in linked partitions
    group_of = {number: i for i, group in enumerate(manifest["groups"]) for number in group}
    seen: dict[str, set[int]] = {}
    for path in store.glob("day=*/part.*.parquet"):
        number = int(path.name.split(".")[1])
        for domain in pq.read_table(path, columns=["recipient_domain"]).column(0).to_pandas().dropna().unique():
            seen.setdefault(domain, set()).add(number)
    assert all(len({group_of[n] for n in numbers}) == 1 for numbers in seen.values())
    assert max(len(numbers) for numbers in seen.values()) > 1
    used = {group_of[int(p.name.split(".")[1])] for p in store.glob("day=*/part.*.parquet")}
    assert open_store(store).npartitions == len(used) > 1


# ---------------------------------------------------------------- bad input, pieces, command line, connect

def test_a_bad_file_is_reported_not_raised(client, tmp_path: Path, windows: dict[str, Path]):
    bad = tmp_path / "bad.csv"
    bad.write_text('"Foo","Bar"\n"1","2"\n', encoding="utf-8")
    missing = tmp_path / "missing.csv"
    report = ingest([bad, windows["summary"], missing], tmp_path / "store")
    statuses = {Path(f.path).name: (f.status, f.error) for f in report.files}
    assert statuses["bad.csv"][0] == "failed" and "unknown header" in statuses["bad.csv"][1]
    assert statuses["missing.csv"][0] == "failed" and "cannot read" in statuses["missing.csv"][1]
    assert statuses[windows["summary"].name] == ("ingested", None) and not report.ok
    assert len(open_store(tmp_path / "store", engine="pandas")) == report.events > 0
    failed = read_manifest(tmp_path / "store")["failed"]
    assert [Path(f["path"]).name for f in failed] == ["bad.csv", "missing.csv"]
    assert json.loads((tmp_path / "store" / failed[0]["report"]).read_text())[0]["error"]


def test_pieces_of_a_file_keep_its_day_order_and_line_numbers(client, tmp_path: Path):
    """An en-AU export (day first, 12-hour clock) whose first rows have days <= 12 only: alone they look en-US."""
    rows = ['"Received","SenderAddress","RecipientAddress","Subject","Status","MessageTraceId","Size"']
    for i in range(6000):
        day = 5 if i < 3000 else 5 + i % 20
        rows.append(f'"{day:02d}/11/2026 {1 + i % 12}:{i % 60:02d}:{i % 60:02d} PM","a{i % 30}@contoso.com",'
                    f'"u{i}@partner{i % 7}.example","Line one\nline ""two"", {i}","Delivered",'
                    f'"{i:08d}-0000-0000-0000-000000000000","{1000 + i}"')
    path = tmp_path / "en-au.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert len(plan_pieces(path, 1000)) == 6
    report = ingest(path, tmp_path / "store", chunk_rows=1000, partition_rows=2000)
    assert report.files[0].events_added == 6000
    stored = open_store(tmp_path / "store", engine="pandas")
    expected = tag(load_trace(path))
    assert load_trace(path, with_report=True)[1].files[0].date_order == "DMY"
    pd.testing.assert_frame_equal(values(stored[list(expected.columns)]), values(expected), check_exact=True)
    assert stored["source_row"].tolist() == list(range(2, 2 + 2 * 6000, 2))  # each record spans two lines


def test_cli_ingest(client, tmp_path: Path, windows: dict[str, Path], capsys: pytest.CaptureFixture[str]):
    store = tmp_path / "cli-store"
    assert cli_main(["ingest", str(windows["summary"]), "--store", str(store), "--tenant-domain", "contoso.com"]) == 0
    out = capsys.readouterr().out
    assert "ingested" in out and f"store {store}" in out
    manifest = read_manifest(store)
    assert manifest["tenant_domains"] == ["contoso.com"] and manifest["events"] > 0
    assert cli_main(["ingest", str(windows["summary"]), "--store", str(store)]) == 0
    assert "already in the store" in capsys.readouterr().out
    assert cli_main(["ingest", str(tmp_path / "nothing-*.csv"), "--store", str(store)]) == 3


def test_connect_to_a_scheduler_address(client, monkeypatch: pytest.MonkeyPatch):
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    monkeypatch.setenv(engine.ENV_SCHEDULER, address)
    other = engine.connect()
    try:
        assert other.scheduler.address == address
        assert len(other.scheduler_info()["workers"]) == 2
        assert int(dd.from_pandas(pd.DataFrame({"x": np.arange(10)}), npartitions=2)["x"].sum().compute()) == 45
    finally:
        engine.close(other)


def test_an_interrupted_ingest_is_cleaned_up(client, tmp_path: Path, windows: dict[str, Path]):
    store = tmp_path / "store"
    ingest(windows["summary"], store)
    events = read_manifest(store)["events"]
    for leftover in ("_next/day=2026-11-16", "_staging"):
        (store / leftover).mkdir(parents=True)
    (store / "_staging" / "f0000009-p00000.parquet").write_bytes(b"half written")
    again = ingest(windows["summary"], store)
    assert again.files[0].status == "already in the store" and read_manifest(store)["events"] == events
    assert not (store / "_next").exists() and not (store / "_staging").exists()
    shutil.rmtree(store)


# ---------------------------------------------------------------- tags kept, selections, journeys (issue 13)

def test_a_stores_events_are_tagged_already(sample_store: Path, monkeypatch: pytest.MonkeyPatch):
    """tag() of a store's events returns them as they are (no classifying per partition on every summary)."""
    stored = open_store(sample_store)
    assert tag(stored) is stored and tag(str(sample_store)).npartitions == stored.npartitions

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("classified again")

    monkeypatch.setattr(sys.modules["analysis.tagging.tag"], "classify_replies", refuse)
    assert_same(summaries.headline(tag(stored)), summaries.headline(open_store(sample_store, engine="pandas")))


ROW = ["timestamp", "trace_id", "message_id", "recipient", "event", "reply", "cause", "source_row"]  # a row's identity


def test_selections_and_journeys_on_the_store_equal_pandas(sample_store: Path):
    whole = open_store(sample_store, engine="pandas").drop(columns="_seq")
    store = str(sample_store)
    for column in ("recipient_domain", "cause"):
        assert_same(selections.problem_counts(store, column), selections.problem_counts(whole, column))
    assert_same(selections.problem_counts(store, "recipient_domain", cause="gateway_block"),
                selections.problem_counts(whole, "recipient_domain", cause="gateway_block"))
    counts = selections.problem_counts(whole, "recipient_domain")
    domain = counts["recipient_domain"].iloc[0]
    chosen = selections.select_messages(whole, domain, "gateway_block")
    lazy = selections.select_messages(store, domain, "gateway_block")
    assert hasattr(lazy, "__dask_graph__") and len(chosen) > 0
    assert_same(first_rows(lazy, None, columns=ROW)[0], chosen[ROW])
    assert selections.message_key_set(lazy) == selections.message_key_set(chosen)
    start, end = whole["timestamp"].quantile(0.25), whole["timestamp"].quantile(0.5)
    assert_same(first_rows(selections.in_time(store, start, end), None, columns=ROW)[0],
                selections.in_time(whole, start, end)[ROW])
    message = chosen["trace_id"].dropna().iloc[0]
    assert_same(summaries.message_journey(store, message), summaries.message_journey(whole, message))
    assert len(summaries.message_journey(whole, message)) > 1


def test_a_folders_files_that_are_no_exports_are_listed_not_dropped(client, tmp_path: Path, windows: dict[str, Path]):
    """Issue 14, point 3, for ingest too: every file of a folder that is not loaded is listed with the reason."""
    folder = tmp_path / "exports"
    folder.mkdir()
    shutil.copy(windows["summary"], folder / "week1.csv")
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    report = ingest([folder], tmp_path / "store")
    status = {Path(f.path).name: (f.status, f.error) for f in report.files}
    assert status["week1.csv"][0] == "ingested"
    assert status["notes.pdf"][0] == "skipped" and ".pdf" in status["notes.pdf"][1]
    assert status[".DS_Store"] == ("skipped", "a hidden file")
    assert report.ok and "notes.pdf: skipped: the name ends in .pdf" in report.summary()
