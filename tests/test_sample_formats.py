"""The same story from every export format: load_trace agrees with the generator's ground truth.

The sample generator renders one truth (analysis.sample.generator.generate_story) into every layout; file_slice() gives
the truth rows each file was rendered from. Loading a file must give the same messages, recipients, outcomes and
UTC timestamps (to the precision the format writes).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import load_trace, tag
from analysis.core.schema import check_events
from analysis.sample import generator as sample

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
SUMMARY_FILES = ["messagetrace_ps51_en-US.csv", "messagetrace_v2_de-DE.csv", "messagetrace_v2_en-GB_ps7.csv",
                 "new_eac_messagetrace.csv"]
EVENT_FILES = ["messagetrace_detail.csv", "eac_enhanced_summary.csv", "eac_summary.csv",
               "eac_extended_tailspintoys.csv", "MSGTRK20261116-1.LOG", "MSGTRK20261117-1.LOG", "MSGTRK2013.LOG",
               "MSGTRK2010.LOG"]
OUTCOME = {"send": "delivered", "deliver": "delivered", "fail": "failed", "defer": "pending"}


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return sample.generate_story()


def _pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["message_id"], frame["recipient"], strict=True))


def _precision(report) -> str:
    return "min" if "without seconds" in report.files[0].date_format else "s"


@pytest.mark.parametrize("name", SUMMARY_FILES)
def test_summary_exports_match_the_truth(truth, name):
    expected = sample.file_slice(truth, name)
    events, report = load_trace(SAMPLE / name, with_report=True)
    assert check_events(events) == []
    file = report.files[0]
    assert file.balanced and file.rows_rejected == 0
    assert _pairs(events) == _pairs(expected)
    received = expected[expected["event"] == "receive"].drop_duplicates(["message_id", "recipient"])
    want = received.set_index(["message_id", "recipient"])
    got = events.set_index(["message_id", "recipient"])
    assert (got["status"].astype(str) == want.loc[got.index, "status"].astype(str)).all()
    unit = _precision(report)
    assert (got["timestamp"].dt.floor(unit) == want.loc[got.index, "timestamp"].dt.floor(unit)).all()
    assert set(events["direction"]) <= {"outbound", "internal", "inbound"}


@pytest.mark.parametrize("name", EVENT_FILES)
def test_event_exports_match_the_truth(truth, name):
    expected = sample.file_slice(truth, name)
    events, report = load_trace(SAMPLE / name, with_report=True)
    assert check_events(events) == []
    assert report.files[0].balanced and report.files[0].rows_rejected == 0
    assert _pairs(events) == _pairs(expected)
    keys = ["message_id", "recipient", "event"]
    if report.files[0].format in ("eac_enhanced_summary", "eac_summary"):
        # recipient_status lists each kind of delivery event once (Receive, Defer, Send; no Submit)
        listed = expected[expected["event"] != "submit"]
        assert set(events[keys].itertuples(index=False)) == set(listed[keys].itertuples(index=False))
    else:
        want = expected.groupby(keys, observed=True).size()
        got = events.groupby(keys, observed=True).size()
        assert got.sort_index().to_dict() == want.sort_index().to_dict()
    if events["timestamp"].nunique() > 1 and report.files[0].format not in ("eac_enhanced_summary", "eac_summary"):
        unit = "ms" if report.files[0].format in ("tracking_log", "eac_extended") else _precision(report)
        want_times = sorted(expected["timestamp"].dt.floor(unit))
        assert sorted(events["timestamp"].dt.floor(unit)) == want_times
    if report.files[0].format in ("tracking_log", "eac_extended"):
        # every attempt names the generator's remote host and IP: from the server fields of a SEND, from the LED of
        # a DEFER / FAIL (whose server fields name the local server)
        hops = ["message_id", "recipient", "event", "remote_host", "remote_ip"]
        tried = expected[expected["event"].isin(["send", "defer", "fail"])]
        got_hops = events[events["event"].isin(["send", "defer", "fail"])]
        assert got_hops["remote_host"].notna().all()
        assert set(got_hops[hops].astype(object).itertuples(index=False)) == set(
            tried[hops].astype(object).itertuples(index=False))
    # each pair's status is the outcome of its last outcome event in this file
    outcomes = expected[expected["event"].isin(list(OUTCOME))].sort_values("timestamp")
    final = outcomes.groupby(["message_id", "recipient"]).tail(1)
    derived = dict(zip(zip(final["message_id"], final["recipient"], strict=True), final["event"].map(OUTCOME),
                       strict=True))
    statuses = events.drop_duplicates(["message_id", "recipient"]).set_index(["message_id", "recipient"])["status"]
    if report.files[0].format == "messagetrace_detail":  # Get-MessageTraceDetail is read with no summary here
        for pair, status in derived.items():
            assert statuses[pair] == status


def test_the_whole_folder_deduplicates_overlapping_summary_exports():
    events, report = load_trace(SAMPLE, with_report=True)
    by_name = {Path(f.path).name: f for f in report.files}
    assert all(f.balanced for f in report.files)
    # the de-DE (days 1-4) and en-GB (days 3-7) exports repeat the full-week PowerShell 5.1 export
    assert by_name["messagetrace_v2_de-DE.csv"].duplicates_removed == by_name["messagetrace_v2_de-DE.csv"].rows_read
    assert by_name["messagetrace_v2_en-GB_ps7.csv"].duplicates_removed > 0
    allowlist = by_name["partner_allowlist_ironport.txt"]
    assert allowlist.error is None and "unknown header" in allowlist.skipped and report.ok
    detail = events[events["source_format"] == "messagetrace_detail"]
    assert detail["subject"].notna().all() and detail["sender"].notna().all()  # joined to the summary


def test_story_causes_from_the_folder():
    tagged = tag(load_trace(SAMPLE))
    problems = tagged[tagged["event"].isin(["defer", "fail"]) & tagged["reply"].notna()]
    dominant = problems.groupby("recipient_domain", observed=True)["cause"].agg(lambda c: c.value_counts().index[0])
    assert dominant["tailspintoys.com"] == "gateway_block"
    assert dominant["fourthcoffee.com"] == "recipient_server_down"
    assert dominant["litware.com"] == "tls_required"
    assert dominant["adventure-works.com"] == "greylisting"
    assert dominant["yahoo.com"] == "rate_limited"
    ironport = problems[problems["recipient_domain"] == "tailspintoys.com"]
    assert ironport["cause_evidence"].str.contains("52.100.0.0/14", regex=False).mean() > 0.9
    assert set(ironport["gateway"].dropna()) == {"Cisco Secure Email (IronPort)"} or \
        ironport["gateway"].dropna().str.contains("IronPort").all()
