"""The Graph message-trace reader (analysis/io/graph.py) on Microsoft's documented examples.

The rows are the v1.0 examples of learn.microsoft.com/en-us/graph/api/messagetracingroot-list-messagetraces and
.../exchangemessagetrace-getdetailsbyrecipient (as copied in docs/reference/graph-message-trace.md, sections
3 and 4), with one Defer event whose description is a real Get-MessageTraceDetail Detail (Microsoft Q&A 2149611).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis import load_trace

LIST_ROW = {"id": "4451a062-48cb-e80d-e8c0-196330437ae6", "senderAddress": "sender@contoso.com",
            "recipientAddress": "recipient@contoso.com",
            "messageId": "<d9683b4c-127b-413a-ae2e-fa7dfb32c69d@contoso.com>",
            "receivedDateTime": "2025-06-13T10:30:00Z", "subject": "Quarterly Report", "size": 45678,
            "fromIP": "192.168.1.100", "toIP": "", "status": "delivered"}
DATA = "<root><MEP Name=\"Connector\" String=\"ToInternet\" /></root>"
EVENTS = [
    {"id": "4451a062-48cb-e80d-e8c0-196330437ae6", "messageId": LIST_ROW["messageId"],
     "dateTime": "2025-06-13T10:30:05Z", "event": "Receive", "action": "",
     "description": "Message received by: MN2PR00MB0670.namprd00.prod.outlook.com", "data": DATA},
    {"id": "4451a062-48cb-e80d-e8c0-196330437ae6", "messageId": LIST_ROW["messageId"],
     "dateTime": "2025-06-13T10:30:07Z", "event": "Defer", "action": "",
     "description": "Reason: [{LED=451-4.7.23 Message deferred - unable to verify SPF policy for 451 4.7.23 "
                    "chromaderm.com.au. IB305 i{2b0c499b-c839-43d2-9c76-dda19649fe67}};{MSG=};"
                    "{FQDN=extmail.bigpond.com};{IP=203.42.22.10};{LRT=1/21/2025 3:45:12 AM}]. OutboundProxyTargetIP: "
                    "203.42.22.10. OutboundProxyTargetHostName: extmail.bigpond.com", "data": DATA},
    {"id": "4451a062-48cb-e80d-e8c0-196330437ae6", "messageId": LIST_ROW["messageId"],
     "dateTime": "2025-06-13T10:30:10Z", "event": "Deliver", "action": "",
     "description": "The message was successfully delivered.", "data": DATA},
]


def write_lines(path: Path, rows: list[dict], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")
    return path


def test_list_rows_become_status_rows_and_a_later_status_supersedes(tmp_path: Path):
    pending = {**LIST_ROW, "status": "pending", "_pulledAt": "2025-06-13T11:00:00Z"}
    spam = {**LIST_ROW, "recipientAddress": "other@fabrikam.com", "status": "filteredAsSpam", "toIP": "203.0.113.9"}
    path = write_lines(tmp_path / "messageTraces.jsonl", [pending, spam, {**LIST_ROW, "_pulledAt": "x"}],
                       tail='{"id": "cut-off by a ki')
    events, report = load_trace(path, with_report=True)
    file = report.files[0]
    assert file.format == "graph_messagetrace" and file.balanced
    assert (file.rows_read, file.rows_loaded, file.duplicates_removed, file.rows_rejected) == (4, 2, 1, 1)
    assert file.rejects[0][0] == 4 and "not JSON" in file.rejects[0][1]
    row = events.set_index("recipient").loc["recipient@contoso.com"]
    assert (row["status"], row["event"], row["size_bytes"], row["trace_id"]) == (
        "delivered", "deliver", 45678, "4451a062-48cb-e80d-e8c0-196330437ae6")
    assert str(row["timestamp"]) == "2025-06-13 10:30:00+00:00" and row["client_ip"] == "192.168.1.100"
    assert pd.isna(row["remote_ip"])  # toIP "" (inbound): no remote IP, not an empty string
    other = events.set_index("recipient").loc["other@fabrikam.com"]
    assert (other["status"], other["remote_ip"]) == ("filtered_as_spam", "203.0.113.9")


def test_details_become_events_with_the_description_as_reply(tmp_path: Path):
    context = {"recipientAddress": "recipient@contoso.com", "senderAddress": "sender@contoso.com",
               "subject": "Quarterly Report", "size": 45678, "status": "delivered", "_of": 3}
    path = write_lines(tmp_path / "details.jsonl", [{**e, **context} for e in EVENTS])
    events = load_trace(path)
    assert list(events["event"].astype(str)) == ["receive", "defer", "deliver"]
    defer = events.iloc[1]
    assert (defer["smtp_code"], defer["enhanced_code"], defer["remote_host"], defer["remote_ip"]) == (
        451, "4.7.23", "extmail.bigpond.com", "203.42.22.10")
    assert set(events["recipient"]) == {"recipient@contoso.com"} and set(events["status"]) == {"delivered"}


def test_a_raw_answer_as_received_loads_too_and_the_pull_report_is_named(tmp_path: Path):
    raw = tmp_path / "answer.jsonl"
    raw.write_text(json.dumps({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#admin/exchange/tracing/"
                                                 "messageTraces", "value": [{**LIST_ROW, "status": "pending"}]}))
    (tmp_path / "_pull_report.json").write_text(json.dumps({"not_fetched": [
        {"traceId": LIST_ROW["id"], "recipientAddress": "recipient@contoso.com", "status": "pending",
         "reason": "over --max-requests 300 for this run: run again to fetch more"}]}))
    events, report = load_trace(tmp_path, with_report=True)
    assert list(events["status"].astype(str)) == ["pending"]
    loaded = next(f for f in report.files if f.path.endswith("answer.jsonl"))
    warning = next(w for w in loaded.warnings if w.startswith("details not fetched"))
    assert "recipient@contoso.com (pending)" in warning and "over --max-requests 300" in warning
    assert "_pull_report.json" in report.summary()


def test_a_pulled_folder_lists_the_pulls_own_files_as_such(tmp_path: Path):
    """The names analysis/pull/run.py writes: read the two traces, list the bookkeeping with what it is."""
    from analysis.pull.run import DETAILS_FILE, LIST_FILE, RAW_FILE, REPORT_FILE, STATE_FILE

    write_lines(tmp_path / LIST_FILE, [LIST_ROW])
    write_lines(tmp_path / DETAILS_FILE, [{**e, "recipientAddress": "recipient@contoso.com"} for e in EVENTS])
    (tmp_path / STATE_FILE).write_text('{"done": []}')
    (tmp_path / REPORT_FILE).write_text('{"not_fetched": []}')
    (tmp_path / RAW_FILE).write_text(json.dumps({"value": [LIST_ROW]}) + "\n")
    (tmp_path / "notes.json").write_text("{}")
    events, report = load_trace(tmp_path, with_report=True)
    skipped = {Path(f.path).name: f.skipped for f in report.files if f.skipped}
    assert {Path(f.path).name for f in report.loaded_files} == {LIST_FILE, DETAILS_FILE}
    assert set(skipped) == {STATE_FILE, REPORT_FILE, RAW_FILE, "notes.json"}
    assert all(skipped[name].startswith("the pull's own") for name in (STATE_FILE, REPORT_FILE, RAW_FILE))
    assert "not one of" in skipped["notes.json"]  # a foreign file keeps the plain reason
    assert sorted(events["event"].astype(str)) == ["defer", "deliver", "deliver", "receive"]


def test_an_odata_v2_answer_of_the_reporting_web_service_loads_with_its_dates(tmp_path: Path):
    """``{"d": {"results": [...]}}`` with ``/Date(ms)/`` times (tests/data/real/exo_reporting_sekoia_odata.json); a
    date of another form is rejected with its record number and value, never guessed."""
    row = {"__metadata": {"type": "TenantReporting.MessageTrace"}, "Received": "/Date(1658751973240)/",
           "SenderAddress": "a@contoso.com", "RecipientAddress": "b@fabrikam.com", "Status": "Pending",
           "MessageTraceId": "3b4fc661-180d-4c2f-60c9-08da6e38dd10", "ToIP": "203.0.113.25"}
    odd = {**row, "RecipientAddress": "c@fabrikam.com", "Received": "/Date(1658751973240+0060)/"}
    path = tmp_path / "answer.json"
    path.write_text(json.dumps({"d": {"results": [row, odd]}}, indent=2))
    events, report = load_trace(path, with_report=True)
    file = report.files[0]
    assert (file.format, file.rows_read, file.rows_loaded, file.rows_rejected) == ("messagetrace", 2, 1, 1)
    assert file.rejects[0][0] == 2 and "/Date(1658751973240+0060)/" in file.rejects[0][1]
    assert str(events["timestamp"].iloc[0]) == "2022-07-25 12:26:13.240000+00:00"
    assert (events["status"].iloc[0], events["remote_ip"].iloc[0]) == ("pending", "203.0.113.25")
