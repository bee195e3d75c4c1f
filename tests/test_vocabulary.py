"""The event and status vocabularies (analysis/io/data/vocabularies.toml) and what the loader does with a value
outside them: named with its lines in the load report, shown by the file picker and the report's input problems
(issue 14, point 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis import load_trace
from analysis.core.schema import EVENTS, STATUSES
from analysis.io.formats import DETAIL_EVENTS, STATUS_VOCABULARIES, TRACKING_EVENTS, VOCABULARIES, normalize
from analysis.report.inputs import input_problems
from analysis.ui.views import load_problems

# the event ids issue 14 names, all documented (or seen in real logs) for Exchange Server 2010-2019
ISSUE_EVENTS = ("RECEIVE SEND SENDEXTERNAL DELIVER DUPLICATEDELIVER DEFER FAIL DSN DROP EXPAND REDIRECT RESOLVE "
                "TRANSFER SUBMIT SUBMITDEFER POISONMESSAGE BADMAIL HAREDIRECT HAREDIRECTFAIL AGENTINFO THROTTLE")
STATUS_VALUES = STATUS_VOCABULARIES["statuses"]
# exchangeMessageTraceStatus members as listed at learn.microsoft.com/en-us/graph/api/resources/exchangemessagetrace
GRAPH_ENUM = "gettingStatus pending failed delivered expanded quarantined filteredAsSpam unknownFutureValue recalled"
DETAIL_HEADER = '"Date","MessageId","MessageTraceId","Event","Action","Detail","Data"\r\n'


def test_every_entry_maps_to_a_canonical_value_and_cites_a_source():
    sources = VOCABULARIES["sources"]
    assert all(url.startswith("https://") for url in sources.values())
    for section in ("tracking_events", "detail_events", "statuses", "graph"):
        for value, entry in VOCABULARIES[section].items():
            assert entry["source"] in sources, (section, value)
            assert entry["event"] in EVENTS, (section, value)
            assert entry.get("status", "delivered") in STATUSES, (section, value)


def test_the_vocabularies_hold_the_values_exchange_writes():
    assert {normalize(e) for e in ISSUE_EVENTS.split()} <= set(TRACKING_EVENTS)
    assert TRACKING_EVENTS["sendexternal"] == "send" and TRACKING_EVENTS["defer"] == "defer"
    assert {DETAIL_EVENTS[e] for e in ("receive", "send", "fail", "deliver", "expand", "transfer", "defer",
                                       "resolved")} == {"receive", "send", "fail", "deliver", "expand", "transfer",
                                                        "defer", "resolve"}
    assert set(STATUS_VALUES.values()) == set(STATUSES)  # every status of V1 / V2 / the EAC
    assert STATUS_VALUES[normalize("Filtered as spam")] == STATUS_VALUES["filteredasspam"] == "filtered_as_spam"


def test_sendexternal_deliveries_count_as_delivered(tmp_path: Path):
    fields = ("date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,"
              "event-id,internal-message-id,message-id,recipient-address,recipient-status,total-bytes,"
              "recipient-count,related-recipient-address,reference,message-subject,sender-address")
    rows = [f"2026-11-16T10:00:0{i}.000Z,10.0.0.5,EX01,203.0.113.25,mx.fabrikam.com,,Outbound,SMTP,SENDEXTERNAL,"
            f"{i},<m{i}@contoso.com>,r{i}@fabrikam.com,250 2.1.5 Recipient OK,100,1,,,Hi,a@contoso.com"
            for i in range(6)]
    path = tmp_path / "MSGTRK.LOG"
    path.write_text("#Software: Microsoft Exchange Server\n#Fields: " + fields + "\n" + "\n".join(rows) + "\n")
    events, report = load_trace(path, with_report=True)
    assert list(events["event"]) == ["send"] * 6 and list(events["status"]) == ["delivered"] * 6
    assert report.files[0].unknown_values == []


def test_a_value_outside_the_vocabulary_is_named_with_its_lines(tmp_path: Path):
    rows = [f'"11/16/2026 3:0{i}:06 PM","<m@x>","ae5c1219-4c90-41bf-fef5-08d837917e7c","{event}","","r",""\r\n'
            for i, event in enumerate(["Receive", "Deferred", "Deferred", "Defer", "Quarantine"])]
    path = tmp_path / "detail.csv"
    path.write_text(DETAIL_HEADER + "".join(rows))
    events, report = load_trace(path, with_report=True)
    (file,) = report.files
    assert list(events["event"]) == ["receive", "other", "other", "defer", "other"]
    deferred, quarantine = sorted(file.unknown_values)
    assert "'Deferred'" in deferred and "2 rows" in deferred and "lines 3, 4" in deferred
    assert "'Quarantine'" in quarantine and "1 rows" in quarantine and "line 6" in quarantine
    assert set(file.unknown_values) <= set(file.warnings)
    shown = load_problems(report)  # the file picker of notebooks 01 (and 00)
    assert any("'Deferred'" in line for line in shown) and any("'Quarantine'" in line for line in shown)
    problems = input_problems(report, len(events), {file.path: "detail.csv"})  # notebook 04's report
    assert any(p.startswith("detail.csv:") and "'Deferred'" in p for p in problems)


@pytest.mark.parametrize(("status", "known"), [("Pending", True), ("Getting status", True), ("Bounced", False)])
def test_summary_statuses(tmp_path: Path, status: str, known: bool):
    path = tmp_path / "trace.csv"
    path.write_text('"Received","SenderAddress","RecipientAddress","Status"\r\n'
                    f'"11/16/2026 3:04:05 PM","a@contoso.com","b@fabrikam.com","{status}"\r\n')
    events, report = load_trace(path, with_report=True)
    assert (report.files[0].unknown_values == []) == known
    assert events["status"].notna().all() == known


def test_graph_statuses_come_from_the_vocabulary_file(tmp_path: Path):
    """Every member of Graph's status enum but the two with no status of the kit maps; those two are named."""
    graph = STATUS_VOCABULARIES["graph"]
    assert set(graph) == {normalize(v) for v in GRAPH_ENUM.split()} - {"unknownfuturevalue", "recalled"}
    rows = [{"id": f"4451a062-48cb-e80d-e8c0-19633043{i:04d}", "senderAddress": "a@contoso.com",
             "recipientAddress": f"r{i}@fabrikam.com", "receivedDateTime": "2025-06-13T10:30:00Z", "status": status}
            for i, status in enumerate(GRAPH_ENUM.split())]
    path = tmp_path / "messageTraces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    events, report = load_trace(path, with_report=True)
    assert list(events.sort_values("recipient")["status"].astype(object).fillna("-")) == [
        "getting_status", "pending", "failed", "delivered", "expanded", "quarantined", "filtered_as_spam", "-", "-"]
    recalled, future = sorted(report.files[0].unknown_values)
    assert "'recalled'" in recalled and "line 9" in recalled and "'unknownFutureValue'" in future
