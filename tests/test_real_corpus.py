"""Exports and verbatim excerpts from public sources nobody on the team produced (tests/data/real/MANIFEST.toml).

Every expectation below was written by reading the file itself (its rows, events, addresses, times), not from the
loader's output. Excerpts (a Detail text, a Format-List record) are framed into a file by the test, as the manifest
says. What is still missing is a strict xfail naming the gap, so it starts failing (and must become a plain test)
the day the gap closes: formats of the README's table with fewer than 2 independent public files.
"""

from __future__ import annotations

import csv
import io
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from test_export_columns import readme_table

from analysis import TraceLoadError, load_trace
from analysis.io.formats import DETAIL_EVENTS, TRACKING_EVENTS, detect, normalize

REAL = Path(__file__).parent / "data" / "real"
MANIFEST = tomllib.loads((REAL / "MANIFEST.toml").read_text(encoding="utf-8"))["file"]
# the Get-MessageTraceDetail columns real scripts select (exchange-formats.md section 3)
DETAIL_HEADER = ["Date", "MessageId", "MessageTraceId", "Event", "Action", "Detail", "Data"]


def test_manifest_lists_every_file_with_source_and_licence():
    names = {f["name"] for f in MANIFEST}
    assert names == {p.name for p in REAL.iterdir() if p.name != "MANIFEST.toml"}
    assert len(names) >= 15
    for entry in MANIFEST:
        assert entry["source"].startswith("https://") and entry["licence"] and entry["kind"] in ("export", "excerpt")


def origin(url: str) -> str:
    """Who published a file: the GitHub repository, else the site (two Q&A threads of one site count once)."""
    parts = url.removeprefix("https://").split("/")
    return "/".join(parts[:3]) if parts[0] == "github.com" else parts[0]


# formats of the README's "What each export fills" table with fewer than 2 independent public files (searched:
# GitHub code and log shippers' fixtures, Microsoft Learn, Q&A threads; MANIFEST.toml lists what was found).
# Searched again (2026-12) with no further file: the EAC headers (origin_timestamp_utc / date_time_utc rows, the
# "##Receive, ..." status lists) in code, issues and pages; Graph answers in the Graph SDKs' and SIEM connectors'
# tests (Sekoia automation-library and intake-formats, Elastic's message-trace package and its mock server,
# Microsoft-Extractor-Suite); the new EAC's "Date (UTC..." header. Only Microsoft's own documentation shows Graph
# answers, and one Microsoft site does not make two independent sources.
SHORT = {
    "eac_enhanced_summary": "one Format-List record of one row (tostka/verb-EXO); no second public file found",
    "eac_summary": "no public EAC summary report found",
    "eac_extended": "one Format-List record of one row (tostka/verb-EXO, the same origin as the enhanced summary's)",
    "new_eac": "no public export of the new EAC message trace found; its header is not documented",
    "graph_messagetrace": "only Microsoft's documented answer (learn.microsoft.com); no tenant's answer found",
    "graph_messagetrace_detail": "only Microsoft's documented answer (learn.microsoft.com); no tenant's answer found",
}


@pytest.mark.parametrize("fmt", sorted(readme_table()))
def test_every_readme_format_has_two_independent_public_files(fmt: str, request: pytest.FixtureRequest):
    if fmt in SHORT:
        request.applymarker(pytest.mark.xfail(strict=True, reason=SHORT[fmt]))
    assert len({origin(f["source"]) for f in MANIFEST if f["format"] == fmt}) >= 2


def detail_file(tmp_path: Path, rows: list[tuple[str, str, str]], name: str = "detail.csv") -> Path:
    """A Get-MessageTraceDetail CSV holding excerpted (date, event, detail) rows verbatim (the framing is ours)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(DETAIL_HEADER)
    for date, event, detail in rows:
        writer.writerow([date, "<excerpt@example.invalid>", "ae5c1219-4c90-41bf-fef5-08d837917e7c", event, "", detail,
                         ""])
    path = tmp_path / name
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def excerpt(name: str) -> str:
    return (REAL / name).read_text(encoding="utf-8").rstrip("\n")


# ---------------------------------------------------------------- Exchange Server message-tracking logs

def test_exchange_2013_log_kinesistap():
    events, report = load_trace(REAL / "tracking_ex2013_kinesistap.log", with_report=True)
    (file,) = report.files
    assert (file.format, file.rows_read, file.rows_loaded, file.rows_rejected) == ("tracking_log", 2, 2, 0)
    assert file.unknown_values == []  # AGENTINFO and HAREDIRECT are Exchange events the kit knows
    # line 6: AGENTINFO for one recipient; line 7: HAREDIRECT (a shadow copy) for three
    assert list(events["source_row"]) == [6, 7, 7, 7]
    assert list(events["recipient"]) == ["bryanson@amazon.com", "abannert@amazon.com", "bryanson@amazon.com",
                                         "zihoncao@amazon.com"]
    assert set(events["event"]) == {"other"}  # bookkeeping, neither a delivery nor a deferral
    assert set(events["sender"]) == {"apollo@amazon.com"}
    assert set(events["trace_id"]) == {"13fad5b7-39c5-46e7-130e-08d4a138ac67"}
    assert list(events["size_bytes"]) == [7631, 7312, 7312, 7312]
    assert events["timestamp"].iloc[0] == pd.Timestamp("2017-05-22 17:33:35.632", tz="UTC")
    assert events["timestamp"].iloc[1] == pd.Timestamp("2017-05-22 17:33:35.695", tz="UTC")
    assert set(events["subject"]) == {"Started JlbRelayShortCircuit/us-west-2/PDX1/Prod deployment"}
    assert events["remote_host"].isna().all()  # no SEND / DEFER / FAIL: no remote host


def test_exchange_2010_log_with_bom_beats():
    events, report = load_trace(REAL / "tracking_ex2010_beats_bom.log", with_report=True)
    (file,) = report.files
    assert (file.format, file.encoding) == ("tracking_log", "utf-8-sig")
    # two NOTIFYMAPI rows (lines 6 and 7) with no message id, recipient or network message id: nothing ties them
    # to a message, so both are rejected with that reason
    assert (file.rows_read, file.rows_loaded, file.rows_rejected, len(events)) == (2, 0, 2, 0)
    assert [line for line, _ in file.rejects] == [6, 7]
    assert all("cannot be tied to a message" in reason for _, reason in file.rejects)


def test_exchange_2016_log_without_header_elastic():
    events, report = load_trace(REAL / "tracking_ex2016_elastic_noheader.log", with_report=True)
    (file,) = report.files
    assert (file.format, file.rows_read, file.rows_loaded) == ("tracking_log", 6, 5)
    assert any("no #Fields line" in w for w in file.warnings) and file.unknown_values == []
    assert [line for line, _ in file.rejects] == [6]  # NOTIFYMAPI: no message id, recipient or network message id
    sent = events[events["recipient"].eq("email@email.com")]
    assert list(sent["event"]) == ["send"] and list(sent["status"]) == ["delivered"]  # SENDEXTERNAL, line 5
    assert (sent["remote_host"].iloc[0], sent["remote_ip"].iloc[0]) == (
        "global-mail-onmicrosoft-com.mail.protection.outlook.com", "175.16.199.1")
    assert sent["timestamp"].iloc[0] == pd.Timestamp("2025-01-14 09:29:05.327", tz="UTC")
    assert list(events.loc[events["recipient"].eq("mailuser@my.domain.com"), "event"]) == ["other", "receive",
                                                                                          "receive"]
    send = events[events["recipient"].eq("uwe.musterman@example.com")].iloc[0]  # SEND, line 4
    assert (send["event"], send["remote_host"], send["remote_ip"]) == ("send", "exchange.example.com", "192.168.0.2")


def test_documented_tracking_events_are_all_in_the_vocabulary():
    lines = excerpt("tracking_msdocs_example_events.txt").splitlines()[2:]
    ids = [line.split()[0] for line in lines]
    assert ids == ["NOTIFYMAPI", "RECEIVE", "SUBMIT", "HAREDIRECT", "RECEIVE", "AGENTINFO", "SEND", "DELIVER"]
    assert [TRACKING_EVENTS[normalize(i)] for i in ids] == [
        "other", "receive", "submit", "other", "receive", "other", "send", "deliver"]


# ---------------------------------------------------------------- Get-MessageTrace

def test_reporting_web_service_row_elastic():
    events, report = load_trace(REAL / "exo_reporting_elastic_test-log.json", with_report=True)
    assert (report.files[0].format, report.files[0].rows_read, report.files[0].unknown_values) == (
        "messagetrace", 1, [])  # Get-MessageTrace's fields, one JSON object
    row = events.iloc[0]
    assert len(events) == 1 and row["status"] == "delivered"
    assert row["trace_id"] == "cf7a249a-5edd-4350-130a-08da8f69e0f6"
    assert (row["sender"], row["recipient"]) == ("azure-noreply@microsoft.com", "linus@wildsecurity.onmicrosoft.com")
    assert row["timestamp"] == pd.Timestamp("2022-09-05 18:10:13.4907658", tz="UTC")
    assert (row["size_bytes"], row["remote_ip"], row["client_ip"]) == (87891, "216.160.83.56", "81.2.69.144")


def test_reporting_web_service_rows_elastic_sample():
    events, report = load_trace(REAL / "exo_reporting_elastic_sample.ndjson", with_report=True)
    assert (report.files[0].format, report.files[0].rows_read, report.files[0].rows_loaded) == ("messagetrace", 2, 2)
    assert list(events["subject"]) == ["testmail 2", "testmail 1"]
    assert set(events["status"]) == {"delivered"} and set(events["recipient"]) == {"linus@contoso.com"}
    assert list(events["size_bytes"]) == [22761, 22704]
    assert list(events["client_ip"]) == ["40.107.23.54", "40.107.23.81"]
    assert events["remote_ip"].isna().all()  # "ToIP": null
    assert list(events["timestamp"]) == [pd.Timestamp("2022-10-21 17:25:36.969376", tz="UTC"),
                                         pd.Timestamp("2022-10-21 17:25:30.6006882", tz="UTC")]


def test_reporting_web_service_whole_answer_elastic_mock():
    events, report = load_trace(REAL / "exo_reporting_elastic_mock_answer.json", with_report=True)
    assert (report.files[0].format, report.files[0].rows_read, report.files[0].rows_loaded) == ("messagetrace", 1, 1)
    row = events.iloc[0]
    assert (row["status"], row["recipient"], row["remote_ip"], row["client_ip"]) == (
        "delivered", "linus@wildsecurity.onmicrosoft.com", "192.168.2.2", "81.2.69.144")
    assert row["timestamp"] == pd.Timestamp("2022-09-05 18:10:13.4907658", tz="UTC")


def test_reporting_web_service_odata_answer_sekoia():
    events, report = load_trace(REAL / "exo_reporting_sekoia_odata.json", with_report=True)
    (file,) = report.files
    assert (file.format, file.rows_read, file.rows_loaded, file.unknown_values) == ("messagetrace", 2, 2, [])
    # MessageTrace(0): GettingStatus, to foo.bar@own.security; MessageTrace(1): the NDR from postmaster, Failed
    assert list(events["status"]) == ["getting_status", "failed"]
    assert list(events["recipient"]) == ["foo.bar@own.security", "azure-noreply@microsoft.com"]
    assert list(events["trace_id"]) == ["3b4fc661-180d-4c2f-60c9-08da6e38dd10", "47a1a53c-7e88-431e-7154-08da6e38dce4"]
    # /Date(1658751973240)/ and /Date(1658751972952)/: milliseconds since 1970 (UTC)
    assert list(events["timestamp"]) == [pd.Timestamp("2022-07-25 12:26:13.240", tz="UTC"),
                                         pd.Timestamp("2022-07-25 12:26:12.952", tz="UTC")]
    assert list(events["size_bytes"]) == [87680, 132391]
    assert events["client_ip"].iloc[0] == "1.1.1.1" and events["client_ip"].isna().iloc[1]  # FromIP null
    assert events["remote_ip"].isna().all()  # ToIP null on both


def test_powershell_remoting_header_polim0rf():
    path = REAL / "messagetrace_header_polim0rf.csv"
    header = next(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert len(header) == 17 and detect(header).fmt.name == "messagetrace"
    with pytest.raises(TraceLoadError, match="header but no data rows"):
        load_trace(path)


# ---------------------------------------------------------------- EAC historical search reports

def format_list_record(name: str) -> dict[str, str]:
    """A PowerShell Format-List record (``name : value``; a wrapped value goes on in indented lines, joined here
    with one space) as a dict, in the record's order."""
    record: dict[str, str] = {}
    field = ""
    for line in excerpt(name).splitlines():
        if line[:1].isspace():
            record[field] += " " + line.strip()
        else:
            field, _, value = line.partition(":")
            field = field.strip()
            record[field] = value.strip()
    return record


def report_csv(tmp_path: Path, name: str) -> Path:
    """The Format-List record ``name`` written back as a one-row report CSV (values verbatim), UTF-16 with a BOM as
    the EAC's downloaded reports are."""
    record = format_list_record(name)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(record), lineterminator="\r\n")
    writer.writeheader()
    writer.writerow(record)
    path = tmp_path / "report.csv"
    path.write_text(out.getvalue(), encoding="utf-16")
    return path


def test_enhanced_summary_record_tostka(tmp_path: Path):
    events, report = load_trace(report_csv(tmp_path, "eac_enhanced_summary_tostka_record.txt"), with_report=True)
    assert report.files[0].format == "eac_enhanced_summary" and report.files[0].unknown_values == []
    # two recipient entries: Receive, Deliver and Receive, Fail (the second a quoted display-name form)
    assert list(events["event"]) == ["receive", "deliver", "receive", "fail"]
    assert list(events["status"]) == ["delivered", "delivered", "failed", "failed"]
    assert set(events["recipient"]) == {"fname.lname@domain.com"}
    assert set(events["timestamp"]) == {pd.Timestamp("2021-03-23 10:00:09.3284899", tz="UTC")}
    assert set(events["trace_id"]) == {"81945af2-cab7-45ad-ba23-08d8ede2715d"}
    assert set(events["connector"]) == {"To_DefaultOpportunisticTLS"} and set(events["size_bytes"]) == {49790}


def test_extended_report_record_tostka(tmp_path: Path):
    record = format_list_record("eac_extended_tostka_record.txt")
    assert len(record) == 27 and list(record)[:2] == ["date_time_utc", "client_ip"]  # the 27 extended columns
    events, report = load_trace(report_csv(tmp_path, "eac_extended_tostka_record.txt"), with_report=True)
    (file,) = report.files
    assert (file.format, file.rows_read, file.rows_loaded, file.unknown_values) == ("eac_extended", 1, 1, [])
    row = events.iloc[0]
    # event_id DELIVER (source STOREDRIVER): the mailbox delivery of recip@domain.com, 89464 bytes
    assert (row["event"], row["status"]) == ("deliver", "delivered")
    assert (row["sender"], row["recipient"], row["size_bytes"]) == ("sender@domain.com", "recip@domain.com", 89464)
    assert row["timestamp"] == pd.Timestamp("2021-11-23 19:49:37.605", tz="UTC")
    assert row["trace_id"] == "f955f718-d5ff-40a7-137f-08d9aeba6116"
    assert row["message_id"] == "<CH0PR04MB8114A61AF981D65F07EA6A0C8B609@CH0PR04MB8114.namprd04.prod.outlook.com>"
    assert row["subject"] == "SENDER Last Day Details - List" and row["client_ip"] == "192.168.1.251"
    # a DELIVER is no outbound attempt: the Exchange Online hosts of the row (client_hostname / server_hostname)
    # are not the attempt's exo_host, and there is no remote host
    assert pd.isna(row["exo_host"]) and pd.isna(row["remote_host"]) and pd.isna(row["reply"])


# ---------------------------------------------------------------- Get-MessageTraceDetail Detail texts

def test_defer_detail_bigpond_names_the_remote_host(tmp_path: Path):
    events = load_trace(detail_file(tmp_path, [("1/21/2025 3:45:12 AM", "Defer",
                                                excerpt("detail_qa2149611_defer_bigpond.txt"))]))
    row = events.iloc[0]
    assert (row["event"], row["status"]) == ("defer", "pending")
    assert (row["remote_host"], row["remote_ip"]) == ("extmail.bigpond.com", "203.42.22.10")  # {FQDN=} / {IP=}
    assert (row["smtp_code"], row["enhanced_code"]) == (451, "4.7.23")


def test_defer_detail_hybrid_tls_redacted_names_stay_empty(tmp_path: Path):
    events = load_trace(detail_file(tmp_path, [("3/7/2023 6:46:06 PM", "Defer",
                                                excerpt("detail_qa2023_hybrid_tls_defer.txt"))]))
    row = events.iloc[0]
    assert row["event"] == "defer"
    assert pd.isna(row["remote_host"]) and pd.isna(row["remote_ip"])  # the poster wrote xxx for both
    assert row["exo_host"] == "DM6NAM12FT012.eop-nam12.prod.protection.outlook.com"
    assert "TLS negotiation failed" in row["remote_reply"]


def test_defer_detail_certificate_mismatch_names_the_on_premises_host(tmp_path: Path):
    events = load_trace(detail_file(tmp_path, [("6/10/2025 9:00:00 AM", "Defer",
                                                excerpt("detail_techcommunity4420592_cert_mismatch.txt"))]))
    row = events.iloc[0]
    assert row["remote_host"] == "mail.contoso.com"  # [LastAttemptedServerName=] and OutboundProxyTargetHostName
    assert pd.isna(row["remote_ip"])  # 72.x.x.x: redacted
    assert (row["smtp_code"], row["enhanced_code"]) == (450, "4.4.317")  # the inner Message holds no code


@pytest.mark.parametrize(("name", "words"), [
    ("detail_techcommunity4488311_starttls.txt", "STARTTLS is required"),
    ("detail_qa1377740_connection_refused.txt", "Socket error code 10061"),
    ("detail_qa2114505_illegal_message.txt", "Security status IllegalMessage"),
])
def test_cut_off_defer_details_load_as_deferrals_without_a_host(name: str, words: str, tmp_path: Path):
    text = excerpt(name)
    events, report = load_trace(detail_file(tmp_path, [("1/21/2025 3:45:12 AM", "Defer", text)]), with_report=True)
    row = events.iloc[0]
    assert report.files[0].rows_loaded == 1 and row["event"] == "defer" and row["reply"] == text
    assert words in row["reply"] and pd.isna(row["remote_host"])  # the quotes stop before any host is named


def test_eac_view_events_are_all_in_the_detail_vocabulary():
    lines = excerpt("detail_qa176723_eac_view_oof_drop.txt").splitlines()
    events = lines[1::3]
    assert events == ["Receive", "Submit", "Receive", "Drop", "Drop"]
    assert [DETAIL_EVENTS[normalize(e)] for e in events] == ["receive", "submit", "receive", "drop", "drop"]


def test_eac_view_rows_load_with_their_own_dates(tmp_path: Path):
    lines = excerpt("detail_qa176723_eac_view_oof_drop.txt").splitlines()
    rows = list(zip(lines[0::3], lines[1::3], lines[2::3], strict=True))
    events, report = load_trace(detail_file(tmp_path, rows), with_report=True)
    assert report.files[0].rows_loaded == 5 and "Nov 28, 2026" in report.files[0].date_format  # the EAC's own form
    assert list(events["event"]) == ["receive", "submit", "receive", "drop", "drop"]
    assert list(events["timestamp"]) == [pd.Timestamp("2020-11-26 03:56:03", tz="UTC")] * 3 + [
        pd.Timestamp("2020-11-26 03:56:04", tz="UTC")] * 2
    assert events["enhanced_code"].iloc[3] == "2.1.5"  # the OOF drop's LED: 250 2.1.5 RESOLVER.OOF.IntToExt


# ---------------------------------------------------------------- Microsoft Graph message trace

def test_graph_list_answer_msdocs():
    events, report = load_trace(REAL / "graph_messagetraces_msdocs.json", with_report=True)
    (file,) = report.files
    assert (file.format, file.rows_read, file.rows_loaded, file.unknown_values) == ("graph_messagetrace", 1, 1, [])
    row = events.iloc[0]
    assert (row["status"], row["event"], row["trace_id"]) == ("delivered", "deliver",
                                                              "4451a062-48cb-e80d-e8c0-196330437ae6")
    assert (row["sender"], row["recipient"], row["subject"], row["size_bytes"]) == (
        "sender@contoso.com", "recipient@contoso.com", "Quarterly Report", 45678)
    assert row["timestamp"] == pd.Timestamp("2025-06-13 10:30:00", tz="UTC")
    assert row["client_ip"] == "192.168.1.100" and pd.isna(row["remote_ip"])  # "toIP": ""


def test_graph_details_answer_msdocs():
    events, report = load_trace(REAL / "graph_details_msdocs.json", with_report=True)
    (file,) = report.files
    assert (file.format, file.rows_read, file.rows_loaded, file.unknown_values) == (
        "graph_messagetrace_detail", 2, 2, [])
    assert list(events["event"]) == ["receive", "deliver"]
    assert list(events["timestamp"]) == [pd.Timestamp("2025-06-13 10:30:05", tz="UTC"),
                                         pd.Timestamp("2025-06-13 10:30:10", tz="UTC")]
    assert list(events["reply"]) == ["Message received by: MN2PR00MB0670.namprd00.prod.outlook.com",
                                     "The message was successfully delivered."]
    assert set(events["trace_id"]) == {"7e3b2b2e-1b5e-4b17-80cc-2af6c1d9a3b1"}
    assert set(events["status"]) == {"delivered"}  # its last event is a Deliver

