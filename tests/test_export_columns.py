"""Each export format fills the canonical columns the README's "What each export fills" table says, from wherever
the export names them: a one-event file per format with every column the format has, loaded (issue 14, point 4).

The file layouts follow docs/reference/exchange-formats.md; the README table is parsed, not copied here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analysis import load_trace
from analysis.core.schema import EVENT_COLUMNS

README = Path(__file__).parent.parent / "README.md"
TRACE = "81945af2-cab7-45ad-ba23-08d8ede2715d"
# a Defer of EXO's own (LED 450 4.4.317 wrapping the remote reply), naming the remote host three ways and EXO's server;
# the remote reply (Postfix's reject_unknown_client wording) quotes the connecting EXO IP (reference/client_ips.py)
LED = ("[{LED=450 4.4.317 Cannot connect to remote server [Message=451 4.7.1 Client host rejected: cannot find your "
       "hostname, [40.107.130.96]] "
       "[LastAttemptedServerName=mx1.fabrikam.com] [LastAttemptedIP=203.0.113.25:25] [SmtpSecurity=-2;-2] "
       "[DM6NAM12FT012.eop-nam12.prod.protection.outlook.com 2026-11-16T15:04:05.378Z 08DB1DF24DB12D84]};{MSG=};"
       "{FQDN=mx1.fabrikam.com};{IP=203.0.113.25};{LRT=11/16/2026 3:04:05 PM}]")
TRACKING_FIELDS = ("date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,"
                   "event-id,internal-message-id,message-id,network-message-id,recipient-address,recipient-status,"
                   "total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,"
                   "return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,"
                   "custom-data")


def tracking_rows(separator: str, iso: str) -> list[str]:
    """A SEND (server-* = the remote MX) and a DEFER (server-* = the local server, the remote host in the LED)."""
    def row(event: str, server_ip: str, server_host: str, status: str) -> str:
        values = [iso, "10.0.0.5", "EX01.contoso.com", server_ip, server_host, "08DE", "Outbound", "SMTP", event,
                  "123", "<m1@contoso.com>", TRACE, "bob@fabrikam.com", status, "4821", "1", "", "", "Hello",
                  "alex@contoso.com", "alex@contoso.com", "", "Originating", "", "198.51.100.7", "", ""]
        return separator.join(f'"{v}"' if "," in v or ";" in v else v for v in values)
    return [row("SEND", "203.0.113.25", "mx1.fabrikam.com", "250 2.1.5 Recipient OK"),
            row("DEFER", "10.0.0.5", "EX01", LED)]


FILES = {
    "messagetrace": ("trace.csv", '"Received","SenderAddress","RecipientAddress","Subject","Status","ToIP","FromIP",'
                     '"Size","MessageId","MessageTraceId"\r\n'
                     f'"11/16/2026 3:04:05 PM","alex@contoso.com","bob@fabrikam.com","Hello","Pending",'
                     f'"203.0.113.25","198.51.100.7","4821","<m1@contoso.com>","{TRACE}"\r\n'),
    "messagetrace_detail": ("detail.csv", '"Date","MessageId","MessageTraceId","SenderAddress","RecipientAddress",'
                            '"Subject","Event","Action","Detail","Data"\r\n'
                            f'"11/16/2026 3:04:05 PM","<m1@contoso.com>","{TRACE}","alex@contoso.com",'
                            f'"bob@fabrikam.com","Hello","Defer","","Reason: {LED}","<root></root>"\r\n'),
    "eac_enhanced_summary": ("enhanced.csv", "origin_timestamp_utc,sender_address,recipient_status,message_subject,"
                             "total_bytes,message_id,network_message_id,original_client_ip,directionality,"
                             "connector_id,delivery_priority\r\n"
                             "2026-11-16T15:04:05.3284899Z,alex@contoso.com,\"bob@fabrikam.com##Receive, Defer, "
                             f"Send\",Hello,4821,<m1@contoso.com>,{TRACE},198.51.100.7,Originating,"
                             "To_Fabrikam,Normal\r\n"),
    "eac_summary": ("summary.csv", "origin_timestamp_utc,sender_address,recipient_status,message_subject,total_bytes,"
                    "message_id,network_message_id,original_client_ip\r\n"
                    "2026-11-16T15:04:05.3284899Z,alex@contoso.com,\"bob@fabrikam.com##Receive, Defer, Send\",Hello,"
                    f"4821,<m1@contoso.com>,{TRACE},198.51.100.7\r\n"),
    "eac_extended": ("extended.csv", TRACKING_FIELDS.replace("-", "_").replace("date_time", "date_time_utc") + "\r\n"
                     + "\r\n".join(tracking_rows(",", "2026-11-16T15:04:05.6050000Z")) + "\r\n"),
    "tracking_log": ("MSGTRK20261116-1.LOG", "#Software: Microsoft Exchange Server\r\n#Version: 15.01.2507.039\r\n"
                     "#Log-type: Message Tracking Log\r\n#Date: 2026-11-16T15:00:00.000Z\r\n"
                     f"#Fields: {TRACKING_FIELDS}\r\n" + "\r\n".join(tracking_rows(",", "2026-11-16T15:04:05.605Z"))
                     + "\r\n"),
    "new_eac": ("new_eac.csv", '"Date (UTC+01:00)","Sender","Recipient","Subject","Status","Message ID",'
                '"Message trace ID","Message size","From IP","To IP"\r\n'
                f'"11/16/2026 4:04:05 PM","alex@contoso.com","bob@fabrikam.com","Hello","Pending","<m1@contoso.com>",'
                f'"{TRACE}","4821","198.51.100.7","203.0.113.25"\r\n'),
    # as exo-deferrals pull writes them (analysis/pull/run.py): the fields of exchangeMessageTrace and of
    # exchangeMessageTraceDetail (learn.microsoft.com/en-us/graph/api/resources/exchangemessagetrace[detail]), the
    # details with their recipient's list fields added
    "graph_messagetrace": ("messageTraces.jsonl", json.dumps({
        "id": TRACE, "senderAddress": "alex@contoso.com", "recipientAddress": "bob@fabrikam.com",
        "messageId": "<m1@contoso.com>", "receivedDateTime": "2026-11-16T15:04:05Z", "subject": "Hello",
        "size": 4821, "fromIP": "198.51.100.7", "toIP": "203.0.113.25", "status": "pending"}) + "\n"),
    "graph_messagetrace_detail": ("details.jsonl", json.dumps({
        "id": TRACE, "messageId": "<m1@contoso.com>", "dateTime": "2026-11-16T15:04:05Z", "event": "Defer",
        "action": "", "description": f"Reason: {LED}", "data": "<root></root>", "recipientAddress": "bob@fabrikam.com",
        "senderAddress": "alex@contoso.com", "subject": "Hello", "size": 4821, "status": "pending"}) + "\n"),
}


def readme_table() -> dict[str, set[str]]:
    """format -> canonical columns, from the README section "What each export fills"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### What each export fills"):]
    section = section[:section.index("\n#", 1)]
    table = {}
    for line in section.splitlines():
        match = re.match(r"\| `(\w+)` \|[^|]*\| (.*) \|$", line)
        if match:
            table[match.group(1)] = set(re.findall(r"`(\w+)`", match.group(2)))
    return table


def test_the_readme_names_every_format_and_only_canonical_columns():
    table = readme_table()
    assert set(table) == set(FILES)
    for columns in table.values():
        assert columns <= set(EVENT_COLUMNS), columns - set(EVENT_COLUMNS)


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_each_format_fills_the_columns_the_readme_says(fmt: str, tmp_path: Path):
    name, text = FILES[fmt]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    events, report = load_trace(path, with_report=True)
    assert report.files[0].format == fmt and report.files[0].rows_rejected == 0
    filled = {c for c in EVENT_COLUMNS if events[c].notna().any()} - {"source_format", "source_file", "source_row"}
    assert filled == readme_table()[fmt]


@pytest.mark.parametrize("fmt", ["tracking_log", "eac_extended"])
def test_tracking_defer_takes_the_remote_host_from_the_led_not_the_local_server(fmt: str, tmp_path: Path):
    name, text = FILES[fmt]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    events = load_trace(path).set_index("event", drop=False)
    defer, send = events.loc["defer"], events.loc["send"]
    assert (defer["remote_host"], defer["remote_ip"]) == ("mx1.fabrikam.com", "203.0.113.25")  # not EX01 / 10.0.0.5
    assert defer["exo_host"] == "EX01.contoso.com"  # client-hostname: the sending server of the attempt
    assert (send["remote_host"], send["remote_ip"]) == ("mx1.fabrikam.com", "203.0.113.25")  # server-*: the next hop


def test_detail_takes_remote_and_exchange_online_hosts_from_the_led(tmp_path: Path):
    name, text = FILES["messagetrace_detail"]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    row = load_trace(path).iloc[0]
    assert (row["event"], row["remote_host"], row["remote_ip"]) == ("defer", "mx1.fabrikam.com", "203.0.113.25")
    assert row["exo_host"] == "DM6NAM12FT012.eop-nam12.prod.protection.outlook.com"
