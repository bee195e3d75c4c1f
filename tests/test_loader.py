"""load_trace on small files written byte for byte in each real export layout (see exchange-formats.md)."""

from __future__ import annotations

import codecs
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from badinput_helpers import make_corpus

from analysis import TraceLoadError, load_trace
from analysis.core.errors import NotATraceError
from analysis.core.schema import check_events

PS51_HEADER = ('"PSComputerName","RunspaceId","PSShowComputerName","Organization","MessageId","Received",'
               '"SenderAddress","RecipientAddress","Subject","Status","ToIP","FromIP","Size","MessageTraceId",'
               '"StartDate","EndDate","Index"')
TYPE_LINE = "#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace"
TRACE_A = "ae5c1219-4c90-41bf-fef5-08d837917e7c"
TRACE_B = "be5c1219-4c90-41bf-fef5-08d837917e7c"


def ps51_row(received: str, recipient: str, status: str, trace: str, index: int, subject: str = "Hello") -> str:
    return (f'"outlook.office365.com","9b0f1a52-1c2d-4e5f-8a9b-0c1d2e3f4a5b","False","contoso.onmicrosoft.com",'
            f'"<m{index}@AM6PR04MB1234.eurprd04.prod.outlook.com>","{received}","Alex@Contoso.com","{recipient}",'
            f'"{subject}","{status}","68.232.140.21","","48213","{trace}","11/14/2026 12:00:00 AM",'
            f'"11/23/2026 12:00:00 AM","{index}"')


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8", bom: bytes = b"") -> Path:
    path = tmp_path / name
    path.write_bytes(bom + text.encode(encoding))
    return path


def ps51_file(tmp_path: Path, rows: list[str], name: str = "trace.csv") -> Path:
    return write(tmp_path, name, "\r\n".join([TYPE_LINE, PS51_HEADER, *rows]) + "\r\n", "ascii")


def test_powershell51_export_with_type_line_and_remoting_columns(tmp_path):
    path = ps51_file(tmp_path, [
        ps51_row("11/16/2026 3:04:05 PM", "Bob@TailspinToys.com", "Pending", TRACE_A, 0),
        ps51_row("11/16/2026 4:10:00 AM", "eve@gmail.com", "Delivered", TRACE_B, 1),
    ])
    events, report = load_trace(path, with_report=True)
    assert check_events(events) == []
    file = report.files[0]
    assert (file.format, file.encoding, file.delimiter) == ("messagetrace", "ascii", ",")
    assert file.date_order == "MDY"
    assert any("#TYPE" in w for w in file.warnings)
    assert (file.rows_read, file.rows_loaded, file.rows_rejected) == (2, 2, 0)
    first = events.set_index("trace_id").loc[TRACE_A]
    assert first["timestamp"] == pd.Timestamp("2026-11-16 15:04:05", tz="UTC")
    assert (first["recipient"], first["recipient_domain"], first["sender"]) == (
        "bob@tailspintoys.com", "tailspintoys.com", "alex@contoso.com")
    assert (first["status"], first["event"], first["remote_ip"]) == ("pending", "defer", "68.232.140.21")
    assert first["size_bytes"] == 48213 and first["source_row"] == 3
    assert set(events["direction"]) == {"outbound"}


def test_v2_german_semicolon_utf8_bom_columns_in_another_order(tmp_path):
    text = ('"Received";"SenderAddress";"RecipientAddress";"Subject";"Status";"ToIP";"FromIP";"Size";"MessageId";'
            '"MessageTraceId";"Organization"\r\n'
            f'"16.11.2026 15:04:05";"alex@contoso.com";"jörg@fabrikam.de";"Grüße";"Delivered";"1.2.3.4";"";"10";'
            '"<x@y>";'
            f'"{TRACE_A}";"contoso.onmicrosoft.com"\r\n')
    path = write(tmp_path, "v2.csv", text, bom=codecs.BOM_UTF8)
    events, report = load_trace(path, with_report=True)
    file = report.files[0]
    assert (file.encoding, file.delimiter, file.date_order) == ("utf-8-sig", ";", "DMY")
    assert "de-DE" in file.date_format
    row = events.iloc[0]
    assert row["timestamp"] == pd.Timestamp("2026-11-16 15:04:05", tz="UTC")
    assert (row["recipient"], row["subject"]) == ("jörg@fabrikam.de", "Grüße")


def test_powershell7_en_gb_without_remoting_columns(tmp_path):
    text = ('"Received","SenderAddress","RecipientAddress","Subject","Status","ToIP","FromIP","Size","MessageId",'
            '"MessageTraceId"\n'
            f'"28/11/2026 15:04:05","a@contoso.com","b@x.com","s","Failed","","","1","<1@x>","{TRACE_A}"\n'
            f'"02/11/2026 09:00:00","a@contoso.com","c@x.com","s","Delivered","9.9.9.9","","1","<2@x>","{TRACE_B}"\n')
    events, report = load_trace(write(tmp_path, "ps7.csv", text), with_report=True)
    assert report.files[0].date_order == "DMY"
    assert sorted(events["timestamp"]) == [pd.Timestamp("2026-11-02 09:00", tz="UTC"),
                                           pd.Timestamp("2026-11-28 15:04:05", tz="UTC")]


def test_ambiguous_dates_are_reported_and_dayfirst_overrides(tmp_path):
    rows = [ps51_row("03/04/2026 10:00:00", f"r{i}@x.com", "Delivered", TRACE_A[:-1] + str(i), i) for i in range(3)]
    rows = [r.replace("AM", "") for r in rows]
    path = ps51_file(tmp_path, rows)
    events, report = load_trace(path, with_report=True)
    file = report.files[0]
    assert file.date_order.startswith("ambiguous")
    assert any("cannot be told apart" in w for w in file.warnings)
    assert events["timestamp"].iloc[0] == pd.Timestamp("2026-04-03 10:00", tz="UTC")  # 24-hour: day first
    month_first = load_trace(path, dayfirst=False)
    assert month_first["timestamp"].iloc[0] == pd.Timestamp("2026-03-04 10:00", tz="UTC")
    explicit = load_trace(path, format="%m/%d/%Y %H:%M:%S")
    assert explicit["timestamp"].iloc[0] == pd.Timestamp("2026-03-04 10:00", tz="UTC")


def test_detail_export_multiline_led_and_join_to_summary(tmp_path):
    summary = ps51_file(tmp_path, [ps51_row("11/16/2026 3:04:05 PM", "bob@tailspintoys.com", "Failed", TRACE_A, 0,
                                            subject="Contract")])
    detail = ('"Organization","MessageId","Date","Event","Action","Detail","Data","MessageTraceId"\n'
              f'"c","<m0@x>","11/16/2026 3:04:06 PM","Receive","","Message received by: AM6PR04MB1234.eurprd04.prod'
              f'.outlook.com","<root></root>","{TRACE_A}"\n'
              '"c","<m0@x>","11/16/2026 3:14:06 PM","Defer","",'
              '"Reason: [{LED=550-5.7.26 This mail is unauthenticated\n'
              '550 5.7.26 see DMARC policy};{MSG=};{FQDN=gmail-smtp-in.l.google.com};{IP=142.250.1.27};{LRT=}]. '
              f'OutboundProxyTargetIP: 142.250.1.27. OutboundProxyTargetHostName: gmail-smtp-in.l.google.com","",'
              f'"{TRACE_A}"\n'
              '"c","<m0@x>","11/17/2026 3:14:06 PM","Fail","",'
              '"Reason: [{LED=550 4.4.7 QUEUE.Expired; message expired};{MSG=};{FQDN=};{IP=};{LRT=}]","",'
              f'"{TRACE_A}"\n')
    detail_path = write(tmp_path, "detail.csv", detail)
    events, report = load_trace([summary, detail_path], with_report=True)
    rows = events[events["source_format"] == "messagetrace_detail"].set_index("event")
    assert list(rows.index) == ["receive", "defer", "fail"]
    assert set(rows["recipient"]) == {"bob@tailspintoys.com"} and set(rows["recipient_domain"]) == {"tailspintoys.com"}
    assert set(rows["subject"]) == {"Contract"} and set(rows["status"]) == {"failed"}
    defer = rows.loc["defer"]
    assert (defer["smtp_code"], defer["enhanced_code"]) == (550, "5.7.26")
    assert (defer["remote_host"], defer["remote_ip"]) == ("gmail-smtp-in.l.google.com", "142.250.1.27")
    detail_report = report.files[1]
    assert detail_report.rows_read == 3 and detail_report.rows_loaded == 3
    assert list(events[events["source_format"] == "messagetrace_detail"]["source_row"]) == [2, 3, 5]


def test_detail_rows_of_another_recipient_keep_their_own_status(tmp_path):
    """The summary export lists one recipient of the trace; a detail row of another recipient (Get-MessageTrace
    Detail run per recipient) takes the message's sender and subject, not the other recipient's status."""
    summary = ps51_file(tmp_path, [ps51_row("11/16/2026 3:04:05 PM", "bob@tailspintoys.com", "Delivered", TRACE_A,
                                            0, subject="Contract")])
    detail = ('"Organization","MessageId","Date","Event","Action","Detail","Data","MessageTraceId",'
              '"RecipientAddress"\n'
              '"c","<m0@x>","11/16/2026 3:14:06 PM","Fail","",'
              '"Reason: [{LED=550 4.4.7 QUEUE.Expired; message expired};{MSG=};{FQDN=};{IP=};{LRT=}]","",'
              f'"{TRACE_A}","carol@fabrikam.com"\n')
    events = load_trace([summary, write(tmp_path, "detail.csv", detail)])
    carol = events[events["source_format"] == "messagetrace_detail"].iloc[0]
    assert (carol["recipient"], carol["recipient_domain"], carol["subject"]) == (
        "carol@fabrikam.com", "fabrikam.com", "Contract")
    assert carol["status"] == "failed"  # from its own last event, not bob's "delivered"


ENHANCED_HEADER = ("origin_timestamp_utc,sender_address,recipient_status,message_subject,total_bytes,message_id,"
                   "network_message_id,original_client_ip,directionality,connector_id,delivery_priority")


@pytest.mark.parametrize("bom", [codecs.BOM_UTF16_LE, b""], ids=["bom", "no-bom"])
def test_eac_enhanced_summary_utf16_expands_recipient_status(tmp_path, bom):
    text = (ENHANCED_HEADER + "\r\n"
            '2021-03-23T10:00:09.3284899Z,Fname.Lname@contoso.com,"bob@tailspintoys.com##Receive, Defer, Defer, Send;'
            '""Fname LName<fname.lname""@domain.com##Receive, Fail",Subject,3456,<a@b>,'
            '81945af2-cab7-45ad-ba23-08d8ede2715d,10.1.1.1,Originating,To_DefaultOpportunisticTLS,Normal\r\n')
    events, report = load_trace(write(tmp_path, "enhanced.csv", text, "utf-16-le", bom), with_report=True)
    assert report.files[0].format == "eac_enhanced_summary"
    assert report.files[0].encoding.startswith("utf-16-le")
    assert report.files[0].rows_read == 1 and report.files[0].events == 6
    bob = events[events["recipient"] == "bob@tailspintoys.com"]
    assert list(bob["event"]) == ["receive", "defer", "defer", "send"]
    assert set(bob["status"]) == {"delivered"}
    other = events[events["recipient"] == "fname.lname@domain.com"]
    assert list(other["event"]) == ["receive", "fail"] and set(other["status"]) == {"failed"}
    assert events["timestamp"].iloc[0] == pd.Timestamp("2021-03-23 10:00:09.3284899", tz="UTC")
    assert set(events["connector"]) == {"To_DefaultOpportunisticTLS"}




def test_tracking_log_splits_recipient_lists_and_skips_repeated_headers(tmp_path):
    defer_status = ('"{[{LED=451 4.7.1 Access denied; try later};{MSG=};{FQDN=mx1.hc4112-47.iphmx.com};'
                    '{IP=68.232.140.21};{LRT=}]};{[{LED=451 4.7.1 Access denied};{MSG=};{FQDN=};{IP=};{LRT=}]}"')
    text = "\r\n".join([
        "#Software: Microsoft Exchange Server", "#Version: 15.02.1544.004", "#Log-type: Message Tracking Log",
        "#Date: 2026-11-16T00:00:01.000Z", "#Fields: " + make_corpus.TRACKING_FIELDS_2016,
        "2026-11-16T10:00:10.632Z,10.0.0.5,EX01,68.232.140.21,mx1.hc4112-47.iphmx.com,,Outbound,SMTP,DEFER,123,<a@b>,"
        "81945af2-cab7-45ad-ba23-08d8ede2715d,bob@tailspintoys.com;x@tailspintoys.com," + defer_status +
        ",1234,2,,,Hello,al@contoso.com,al@contoso.com,,Originating,,,,,Email,abc,15.02.1544.004",
        "#Software: Microsoft Exchange Server",
        "2026-11-16T10:30:10.632Z,10.0.0.5,EX01,68.232.140.21,mx1.hc4112-47.iphmx.com,,Outbound,SMTP,SEND,123,<a@b>,"
        "81945af2-cab7-45ad-ba23-08d8ede2715d,bob@tailspintoys.com,250 2.0.0 OK,1234,1,,,Hello,al@contoso.com,"
        "al@contoso.com,,Originating,,,,,Email,abc,15.02.1544.004", ""])
    events, report = load_trace(write(tmp_path, "MSGTRK20261116-1.LOG", text, bom=codecs.BOM_UTF8), with_report=True)
    file = report.files[0]
    assert file.format == "tracking_log" and (file.rows_read, file.rows_loaded) == (2, 2)
    assert list(zip(events["recipient"], events["event"], events["source_row"], strict=True)) == [
        ("bob@tailspintoys.com", "defer", 6), ("x@tailspintoys.com", "defer", 6), ("bob@tailspintoys.com", "send", 8)]
    bob_defer = events.iloc[0]
    assert (bob_defer["exo_ip"], bob_defer["remote_host"], bob_defer["smtp_code"]) == (
        "10.0.0.5", "mx1.hc4112-47.iphmx.com", 451)
    assert events.iloc[1]["reply"].startswith("{[{LED=451 4.7.1 Access denied}")
    statuses = dict(zip(events["recipient"], events["status"], strict=False))
    assert statuses == {"bob@tailspintoys.com": "delivered", "x@tailspintoys.com": "pending"}


def test_tracking_log_2010_field_set_without_network_message_id(tmp_path):
    fields = make_corpus.TRACKING_FIELDS_2016.replace("network-message-id,", "").split(",tenant-id")[0]
    row = ("2012-05-22T17:33:35.632Z,,EX10,,,,,SMTP,SEND,64712272257893,<1@x>,r@y.com,250 2.0.0 OK,7631,1,,,S,"
           "s@contoso.com,s@contoso.com,,Originating")
    text = f"#Software: Microsoft Exchange Server\n#Version: 14.0.0.0\n#Fields: {fields}\n{row}\n"
    events = load_trace(write(tmp_path, "MSGTRK2010.LOG", text, bom=codecs.BOM_UTF8))
    assert list(events["event"]) == ["send"] and events["trace_id"].isna().all()


def test_new_eac_export_in_the_admins_time_zone(tmp_path):
    text = ('"Date (UTC+01:00)","Sender","Recipient","Subject","Status","Message ID","Message trace ID",'
            '"Message size","From IP","To IP"\n'
            f'"16/11/2026 11:00:00","al@contoso.com","bob@tailspintoys.com","Hi","Filtered as spam","<a@b>",'
            f'"{TRACE_A}","1234","","68.232.140.21"\n')
    path = write(tmp_path, "new.csv", text, bom=codecs.BOM_UTF8)
    events, report = load_trace(path, with_report=True)
    assert report.files[0].format == "new_eac"
    assert "UTC+01:00" in report.files[0].time_zone
    assert events["timestamp"].iloc[0] == pd.Timestamp("2026-11-16 10:00", tz="UTC")
    assert events["status"].iloc[0] == "filtered_as_spam"
    given = load_trace(path, tz_offset="-05:00")
    assert given["timestamp"].iloc[0] == pd.Timestamp("2026-11-16 16:00", tz="UTC")


def test_cp1252_excel_resave_is_decoded(tmp_path):
    text = ('Received;SenderAddress;RecipientAddress;Subject;Status;MessageTraceId\r\n'
            f'16.11.2026 15:04;a@contoso.com;b@x.com;Grüße €;Delivered;{TRACE_A}\r\n')
    events, report = load_trace(write(tmp_path, "excel.csv", text, "cp1252"), with_report=True)
    assert report.files[0].encoding == "cp1252"
    assert events["subject"].iloc[0] == "Grüße €"
    assert "without seconds" in report.files[0].date_format


def test_overlapping_exports_are_deduplicated_and_counted(tmp_path):
    rows = [ps51_row(f"11/16/2026 {h}:00:00 PM", f"r{h}@x.com", "Delivered", TRACE_A[:-1] + str(h), h)
            for h in range(1, 6)]
    first = ps51_file(tmp_path, rows[:3], "days1-3.csv")
    second = ps51_file(tmp_path, rows[1:], "days2-5.csv")
    events, report = load_trace([first, second], with_report=True)
    assert len(events) == 5
    later = report.files[1]
    assert (later.rows_read, later.rows_loaded, later.duplicates_removed) == (4, 2, 2)
    assert all(f.balanced for f in report.files)


def test_rejected_rows_are_counted_with_line_and_reason(tmp_path):
    good = ps51_row("11/16/2026 3:04:05 PM", "a@x.com", "Delivered", TRACE_A, 0)
    bad_date = ps51_row("13/45/2026 3:04:05 PM", "b@x.com", "Delivered", TRACE_B, 1)
    truncated = good[: good.index(",\"contoso.onmicrosoft.com\"")]
    events, report = load_trace(ps51_file(tmp_path, [good, bad_date, truncated]), with_report=True)
    file = report.files[0]
    assert len(events) == 1 and file.balanced
    assert file.rows_read == 3 and file.rows_rejected == 2
    lines = dict(file.rejects)
    assert "does not match" in lines[4]
    assert "fewer than the 17" in lines[5] and "cut off" in lines[5]
    assert list(report.rejects_frame()["line"]) == [4, 5]


def test_unterminated_quote_costs_only_its_own_line(tmp_path):
    rows = [ps51_row("11/16/2026 3:04:05 PM", f"r{i}@x.com", "Delivered", TRACE_A[:-1] + str(i), i) for i in range(4)]
    rows[1] = rows[1].replace('"Hello"', '"Hello')
    events, report = load_trace(ps51_file(tmp_path, rows), with_report=True)
    file = report.files[0]
    assert len(events) == 3 and file.balanced and file.rows_read == 4
    assert [line for line, _ in file.rejects] == [4]
    assert "never closes" in file.rejects[0][1] and "resumed on the next line" in file.rejects[0][1]
    assert list(events["source_row"]) == [3, 5, 6]


def test_stray_quote_in_a_long_log_costs_one_record(tmp_path):
    rows = [ps51_row("11/16/2026 3:04:05 PM", f"r{i}@x.com", "Delivered", TRACE_A[:-1] + str(i % 10), i,
                     subject='12" rack' if i == 5000 else "Hello") for i in range(10_000)]
    events, report = load_trace(ps51_file(tmp_path, rows), with_report=True)
    file = report.files[0]
    assert (file.rows_read, file.rows_loaded, file.rows_rejected, len(events)) == (10_000, 9_999, 1, 9_999)
    assert file.rejects[0][0] == 5000 + 3


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (codecs.BOM_UTF8, "no text"),
    ((PS51_HEADER + "\r\n").encode(), "header but no data rows"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "PNG"),
    (bytes(range(1, 32)) * 100, "not text"),
    (b'"When","Who","What"\r\n"1","2","3"\r\n', "unknown header"),
])
def test_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(TraceLoadError) as caught:
        load_trace(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_header_names_columns_and_nearest_format(tmp_path):
    path = write(tmp_path, "odd.csv", '"Received","SenderAddress","Subject"\n"11/16/2026 3:04:05 PM","a@b.c","x"\n')
    with pytest.raises(TraceLoadError) as caught:
        load_trace(path)
    text = str(caught.value)
    assert "Received, SenderAddress, Subject" in text
    assert "Get-MessageTrace" in text and "recipientaddress" in text and "status" in text
    assert caught.value.line == 1


def test_folder_with_other_files_zip_and_report_mode(tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    ps51_file(folder, [ps51_row("11/16/2026 3:04:05 PM", "a@x.com", "Delivered", TRACE_A, 0)], "one.csv")
    (folder / "notes.txt").write_text("remember to ask the partner about their IronPort\n")
    (folder / "empty.csv").write_bytes(b"")
    with zipfile.ZipFile(folder / "more.zip", "w") as archive:
        archive.writestr("two.csv", "\r\n".join([PS51_HEADER, ps51_row("11/17/2026 3:04:05 PM", "b@x.com",
                                                                          "Delivered", TRACE_B, 1)]))
    events, report = load_trace(folder, with_report=True)
    assert sorted(events["recipient"]) == ["a@x.com", "b@x.com"]
    errors = {Path(f.path).name: f.error for f in report.files if f.error}
    assert errors.keys() == {"empty.csv"} and "empty" in errors["empty.csv"]  # a trace-named file that is empty
    skipped = {Path(f.path).name: f.skipped for f in report.files if f.skipped}
    assert skipped.keys() == {"notes.txt"} and "unknown header" in skipped["notes.txt"]  # not an export: skipped
    assert "notes.txt: skipped, not a trace export" in report.summary()
    assert any(f.path.endswith("more.zip!two.csv") for f in report.files)
    assert not report.ok and len(report.to_frame()) == 4 and len(report.loaded_files) == 2
    with pytest.raises(NotATraceError):  # named explicitly, it is an error
        load_trace(folder / "notes.txt")
    with pytest.raises(TraceLoadError):
        load_trace([folder / "one.csv", folder / "empty.csv"])
    kept, partial = load_trace([folder / "one.csv", folder / "empty.csv"], errors="report", with_report=True)
    assert len(kept) == 1 and partial.files[1].error


def test_glob_pattern_and_progress_callback(tmp_path):
    for i in range(3):
        ps51_file(tmp_path, [ps51_row("11/16/2026 3:04:05 PM", f"r{i}@x.com", "Delivered", TRACE_A[:-1] + str(i),
                                      i)], f"part{i}.csv")
    calls = []
    events = load_trace(str(tmp_path / "part*.csv"), progress=lambda done, total, name: calls.append((done, total)))
    assert len(events) == 3
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)


def test_report_renders_escaped_html(tmp_path):
    row = ps51_row("11/16/2026 3:04:05 PM", "a@x.com", "<script>alert(1)</script>", TRACE_A, 0)
    _, report = load_trace(ps51_file(tmp_path, [row]), with_report=True)
    assert any("<script>" in w for w in report.files[0].warnings)
    html = report._repr_html_()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
