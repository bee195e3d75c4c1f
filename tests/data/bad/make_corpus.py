"""Write the bad-input corpus into ``cases/`` beside this script: ``python tests/data/bad/make_corpus.py``.

Deterministic (fixed content, seeded random bytes, fixed ZIP timestamps), so a re-run changes nothing. Every case
starts from a real export layout (``SEEDS``; sources in shared/reference/exchange-formats.md) and breaks it one way.
What the loader must make of each case is written by hand in ``expected.toml``. Cases too big to commit are built
at test time by the functions in ``GENERATED``.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import random
import shutil
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"

TYPE_LINE = "#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace"
PS51_HEADER = ('"PSComputerName","RunspaceId","PSShowComputerName","Organization","MessageId","Received",'
               '"SenderAddress","RecipientAddress","Subject","Status","ToIP","FromIP","Size","MessageTraceId",'
               '"StartDate","EndDate","Index"')
PS7_COLUMNS = ["Received", "SenderAddress", "RecipientAddress", "Subject", "Status", "ToIP", "FromIP", "Size",
               "MessageId", "MessageTraceId"]
DETAIL_HEADER = '"Organization","MessageId","Date","Event","Action","Detail","Data","MessageTraceId"'
ENHANCED_HEADER = ("origin_timestamp_utc,sender_address,recipient_status,message_subject,total_bytes,message_id,"
                   "network_message_id,original_client_ip,directionality,connector_id,delivery_priority")
TRACKING_FIELDS_2016 = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,event-id,"
    "internal-message-id,message-id,network-message-id,recipient-address,recipient-status,total-bytes,"
    "recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,message-info,"
    "directionality,tenant-id,original-client-ip,original-server-ip,custom-data,transport-traffic-type,log-id,"
    "schema-version")
TRACKING_PREAMBLE = ["#Software: Microsoft Exchange Server", "#Version: 15.02.1544.004",
                     "#Log-type: Message Tracking Log", "#Date: 2026-11-16T00:00:01.000Z"]
NEW_EAC_HEADER = ('"Date (UTC+01:00)","Sender","Recipient","Subject","Status","Message ID","Message trace ID",'
                  '"Message size","From IP","To IP"')
DEFER_LED = ("Reason: [{LED=450 4.4.316 Connection refused [Message=Socket error code 10061] "
             "[LastAttemptedServerName=mx1.hc4112-47.iphmx.com] [LastAttemptedIP=68.232.140.21:25]};{MSG=};"
             "{FQDN=mx1.hc4112-47.iphmx.com};{IP=68.232.140.21};{LRT=11/16/2026 3:14:06 PM}]")


def trace_id(index: int) -> str:
    return f"ae5c1219-4c90-41bf-fef5-08d837917e{index:02x}"


# ---------------------------------------------------------------- real layouts

def ps51_row(index: int, received: str | None = None, status: str = "Pending", subject: str = "Contract",
             recipient: str = "", size: str = "48213", to_ip: str = "68.232.140.21") -> str:
    """One row of Windows PowerShell 5.1 ``Get-MessageTrace | Export-Csv`` over remoting (17 quoted fields)."""
    received = f"11/16/2026 {index % 12 + 1}:04:05 PM" if received is None else received
    recipient = recipient or f"bob{index}@tailspintoys.com"
    return (f'"outlook.office365.com","9b0f1a52-1c2d-4e5f-8a9b-0c1d2e3f4a5b","False","contoso.onmicrosoft.com",'
            f'"<m{index}@AM6PR04MB1234.eurprd04.prod.outlook.com>","{received}","Alex@Contoso.com","{recipient}",'
            f'"{subject}","{status}","{to_ip}","","{size}","{trace_id(index)}","11/14/2026 12:00:00 AM",'
            f'"11/23/2026 12:00:00 AM","{index}"')


def ps51_text(rows: list[str], *, type_line: bool = True, newline: str = "\r\n") -> str:
    return newline.join([*([TYPE_LINE] if type_line else []), PS51_HEADER, *rows]) + newline


def ps51(count: int = 4) -> bytes:
    return ps51_text([ps51_row(i) for i in range(count)]).encode("ascii")


def ps7_fields(index: int, received: str = "", subject: str = "Quarterly report", status: str = "Delivered",
               to_ip: str = "203.42.22.10", size: str = "1024") -> list[str]:
    """Fields of a PowerShell 7 ``Get-MessageTraceV2 | Export-Csv`` row (no remoting columns, en-GB dates)."""
    received = received or f"{13 + index % 16}/11/2026 15:04:05"
    return [received, "al@contoso.com", f"eve{index}@fabrikam.de", subject, status, to_ip, "", size,
            f"<v{index}@contoso.com>", trace_id(index)]


def quoted(fields: list[str], delimiter: str = ",") -> str:
    return delimiter.join(f'"{f}"' for f in fields)


def ps7_text(rows: list[list[str]], *, newline: str = "\n", columns: list[str] = PS7_COLUMNS,
             delimiter: str = ",") -> str:
    return newline.join([quoted(columns, delimiter), *(quoted(r, delimiter) for r in rows)]) + newline


def ps7(count: int = 4) -> bytes:
    return ps7_text([ps7_fields(i) for i in range(count)]).encode("utf-8")


def german() -> bytes:
    """PowerShell 5.1 ``-Encoding UTF8 -Delimiter ';'`` on a de-DE machine: BOM, semicolons, dd.MM.yyyy."""
    rows = [ps7_fields(i, received=f"{i + 10}.11.2026 09:1{i}:00", subject="Grüße aus Köln") for i in range(3)]
    return codecs.BOM_UTF8 + ps7_text(rows, newline="\r\n", delimiter=";").encode("utf-8")


def detail_text(newline: str = "\n") -> str:
    """Get-MessageTraceDetail export: one message, its Receive, a Defer with a two-line LED, and the Fail."""
    multi = "Reason: [{LED=550-5.7.26 This mail is unauthenticated" + newline + "550 5.7.26 see DMARC policy};{MSG=}]"
    rows = [
        f'"c","<m0@x>","11/16/2026 3:04:06 PM","Receive","","Message received by: AM6PR04MB1234.eurprd04.prod.'
        f'outlook.com","<root></root>","{trace_id(0)}"',
        f'"c","<m0@x>","11/16/2026 3:14:06 PM","Defer","","{DEFER_LED}","","{trace_id(0)}"',
        f'"c","<m0@x>","11/16/2026 3:24:06 PM","Defer","","{multi}","","{trace_id(0)}"',
        f'"c","<m0@x>","11/17/2026 3:14:06 PM","Fail","","Reason: [{{LED=550 4.4.7 QUEUE.Expired; message '
        f'expired}};{{MSG=}};{{FQDN=}};{{IP=}};{{LRT=}}]","","{trace_id(0)}"',
    ]
    return newline.join([DETAIL_HEADER, *rows]) + newline


def enhanced_text() -> str:
    """EAC enhanced summary report (two messages, recipient_status lists)."""
    rows = [
        '2026-11-16T10:00:09.3284899Z,al@contoso.com,"bob@tailspintoys.com##Receive, Defer, Defer, Send;'
        'eve@fabrikam.de##Receive, Fail",Hello,3456,<a@b>,81945af2-cab7-45ad-ba23-08d8ede2715d,10.1.1.1,'
        'Originating,To_DefaultOpportunisticTLS,Normal',
        '2026-11-16T11:00:09.0000000Z,al@contoso.com,"carol@tailspintoys.com##Receive, Send",Again,1200,<c@d>,'
        '91945af2-cab7-45ad-ba23-08d8ede2715d,10.1.1.1,Originating,To_DefaultOpportunisticTLS,Normal',
    ]
    return "\r\n".join([ENHANCED_HEADER, *rows]) + "\r\n"


def tracking_row(second: int, event: str = "SEND", subject: str = "Hello", status: str = "250 2.0.0 OK") -> str:
    return (f"2026-11-16T10:00:{second:02d}.632Z,10.0.0.5,EX01,68.232.140.21,mx1.hc4112-47.iphmx.com,,Outbound,SMTP,"
            f"{event},123,<t{second}@contoso.com>,81945af2-cab7-45ad-ba23-08d8ede2715d,bob@tailspintoys.com,"
            f"{status},1234,1,,,{subject},al@contoso.com,al@contoso.com,,Originating,,,,,Email,abc,15.02.1544.004")


def tracking_text(rows: list[str], fields: str = TRACKING_FIELDS_2016) -> str:
    return "\r\n".join([*TRACKING_PREAMBLE, "#Fields: " + fields, *rows]) + "\r\n"


def tracking(count: int = 4) -> bytes:
    return codecs.BOM_UTF8 + tracking_text([tracking_row(i) for i in range(count)]).encode("utf-8")


def new_eac() -> bytes:
    rows = [f'"16/11/2026 1{i}:00:00","al@contoso.com","bob{i}@tailspintoys.com","Hi","Pending","<n{i}@c>",'
            f'"{trace_id(i)}","1234","","68.232.140.21"' for i in range(3)]
    return codecs.BOM_UTF8 + "\n".join([NEW_EAC_HEADER, *rows, ""]).encode("utf-8")


SEEDS: dict[str, bytes] = {
    "ps51_remoting_ascii_crlf.csv": ps51(),
    "ps7_en_gb_utf8_lf.csv": ps7(),
    "ps51_de_semicolon_bom.csv": german(),
    "detail_multiline_led.csv": detail_text().encode("utf-8"),
    "eac_enhanced_utf16.csv": codecs.BOM_UTF16_LE + enhanced_text().encode("utf-16-le"),
    "tracking_2016.log": tracking(),
    "new_eac_bom.csv": new_eac(),
}


# ---------------------------------------------------------------- broken variants

def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 11, 16, 12, 0, 0)), content)
    return out.getvalue()


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
XLSX = _zip({
    "[Content_Types].xml": b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
                           b'package/2006/content-types"/>',
    "xl/workbook.xml": b"<workbook/>",
    "xl/worksheets/sheet1.xml": b"<worksheet><sheetData/></worksheet>",
})
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02" + bytes(64)


def _cut(text: str, marker: str) -> str:
    """``text`` up to (not including) the last occurrence of ``marker``."""
    return text[: text.rindex(marker)]


def corpus() -> dict[str, bytes]:
    """Every committed case file: path relative to ``cases/`` -> bytes."""
    ps51_rows = [ps51_row(i) for i in range(4)]
    ps7_rows = [ps7_fields(i) for i in range(4)]
    ps7_lines = [quoted(PS7_COLUMNS), *(quoted(r) for r in ps7_rows)]
    rng = random.Random(20261116)
    cases: dict[str, str | bytes] = {
        # empty and nearly empty
        "empty.csv": b"",
        "header_only.csv": quoted(PS7_COLUMNS) + "\n",
        "type_line_and_header_only.csv": ps51_text([]),
        "type_line_only.csv": TYPE_LINE + "\r\n",
        "bom_only_utf8.csv": codecs.BOM_UTF8,
        "bom_only_utf16.csv": codecs.BOM_UTF16_LE,
        "bom_and_blank_lines.csv": codecs.BOM_UTF8 + b"\r\n\r\n  \r\n",
        "comment_lines_only.log": "\r\n".join(TRACKING_PREAMBLE) + "\r\n",
        "tracking_fields_no_rows.log": tracking_text([]),
        # encodings
        "utf16le_no_bom.csv": enhanced_text().encode("utf-16-le"),
        "utf16le_odd_length.csv": (codecs.BOM_UTF16_LE + _cut(enhanced_text(), ",Originating").encode("utf-16-le")
                                   + b"\x2c"),
        "mixed_encodings.csv": (ps7_text([*ps7_rows[:2], ps7_fields(2, subject="Grüße")]).encode("utf-8")
                                + quoted(ps7_fields(3, subject="Grüße €")).encode("cp1252") + b"\n"),
        "excel_resave_cp1252.csv": ("Received;SenderAddress;RecipientAddress;Subject;Status;Size;MessageTraceId\r\n"
                                    + "".join(f"'1{i}.11.2026 15:0{i};al@contoso.com;eve{i}@fabrikam.de;"
                                              f"Grüße € {i};Delivered;'1024;'{trace_id(i)}\r\n" for i in range(3))
                                    ).encode("cp1252"),
        # several exports in one file
        "two_exports_concatenated.csv": ps51_text(ps51_rows[:3]) + ps51_text([ps51_row(7), ps51_row(8)]),
        "two_exports_other_columns.csv": ps51_text(ps51_rows[:2]) + ps7_text(ps7_rows[:2], newline="\r\n"),
        # cut off, quotes, line breaks
        "truncated_last_line.csv": "\n".join(ps7_lines[:-1]) + "\n" + _cut(ps7_lines[-1], ',"<v3@'),
        "truncated_inside_quoted_field.csv": ps51_text(ps51_rows[:3]) + _cut(ps51_rows[3], 'ntract"'),
        "unbalanced_quote_mid_file.csv": ps51_text([*ps51_rows[:2], ps51_row(2, subject="Hello, world"),
                                                    *ps51_rows[3:], ps51_row(4)]).replace('"Hello, world"',
                                                                                          '"Hello, world'),
        "literal_quote_in_unquoted_field.log": tracking_text([tracking_row(0), tracking_row(1, subject='5" floppy'),
                                                              tracking_row(2), tracking_row(3)]),
        "literal_quotes_and_blank_line.log": tracking_text([tracking_row(0, subject='5" floppy'), "",
                                                            tracking_row(1, subject='8" disk'), tracking_row(2)]),
        "embedded_newlines_crlf.csv": detail_text("\r\n"),
        "detail_led_with_lf_in_crlf_file.csv": detail_text("\n").replace("\n", "\r\n").replace(
            "unauthenticated\r\n", "unauthenticated\n"),
        "nul_bytes_in_row.csv": "\n".join(ps7_lines).replace("Quarterly report", "Quarterly\x00\x00report", 1)
                                + "\n",
        "nul_padded_tail.log": codecs.BOM_UTF8 + tracking_text([tracking_row(i) for i in range(40)]).encode()
                               + bytes(100),
        # columns
        "extra_columns.csv": ps7_text([[*r, "x", "y"] for r in ps7_rows[:3]], columns=[*PS7_COLUMNS, "Custom1",
                                                                                      "Notes"]),
        "extra_fields_in_one_row.csv": ps7_text([ps7_rows[0], [*ps7_rows[1], "surplus", "more"], ps7_rows[2]]),
        "missing_optional_columns.csv": ps7_text([r[:5] for r in ps7_rows[:3]], columns=PS7_COLUMNS[:5]),
        "missing_required_column.csv": ps7_text([r[:4] for r in ps7_rows[:3]], columns=PS7_COLUMNS[:4]),
        "duplicate_columns.csv": ps7_text([[*r, "Failed"] for r in ps7_rows[:3]], columns=[*PS7_COLUMNS, "Status"]),
        "columns_in_another_order.csv": ps7_text([r[::-1] for r in ps7_rows[:3]], columns=PS7_COLUMNS[::-1]),
        "trailing_delimiter_every_line.csv": "".join(line + ";\r\n" for line in german()[3:].decode().splitlines()),
        "trailing_delimiter_rows_only.csv": "\n".join([ps7_lines[0], *(line + "," for line in ps7_lines[1:])]) + "\n",
        # other formats
        "unified_audit_log.csv": ("CreationDate,UserIds,Operations,AuditData\r\n"
                                  '2026-11-16T10:00:00.0000000Z,al@contoso.com,Send,"{""Id"":""a""}"\r\n'),
        "get_mailbox_export.csv": ("#TYPE Deserialized.Microsoft.Exchange.Data.Directory.Management.Mailbox\r\n"
                                   '"Name","Alias","PrimarySmtpAddress","RecipientTypeDetails"\r\n'
                                   '"Alex","alex","alex@contoso.com","UserMailbox"\r\n'),
        # values
        "dates_invalid.csv": ps51_text([ps51_row(0), ps51_row(1, received="13/45/2026 3:04:05 PM"),
                                        ps51_row(2, received="not a date"), ps51_row(3, received=""),
                                        ps51_row(4, received="2/30/2026 1:00:00 PM"), ps51_row(5)]),
        "dates_out_of_range.csv": ps51_text([ps51_row(0), ps51_row(1, received="12/31/9999 11:59:59 PM"),
                                             ps51_row(2, received="1/1/0001 12:00:00 AM"), ps51_row(3)]),
        "dates_two_locales.csv": ps51_text([ps51_row(0), ps51_row(1), ps51_row(2, received="16.11.2026 15:04:05"),
                                            ps51_row(3), ps51_row(4, received="17.11.2026 09:00:00")]),
        "sizes_negative_and_not_numbers.csv": ps51_text([ps51_row(0, size="-5"), ps51_row(1, size="abc"),
                                                         ps51_row(2, size="1.5 MB"), ps51_row(3, size=""),
                                                         ps51_row(4, size="48,213"),
                                                         ps51_row(5, size="99999999999999999999")]),
        "toip_garbage.csv": ps51_text([ps51_row(0, to_ip="not-an-ip"), ps51_row(1, to_ip="999.1.1.1"),
                                       ps51_row(2, to_ip="<script>alert(1)</script>"), ps51_row(3, to_ip="::zz"),
                                       ps51_row(4)]),
        "detail_unbalanced_brackets.csv": "\n".join([
            DETAIL_HEADER,
            f'"c","<m0@x>","11/16/2026 3:14:06 PM","Defer","","Reason: [{{LED=450 4.4.316 Connection refused '
            f'[Message=Socket error code 10061","","{trace_id(0)}"',
            f'"c","<m0@x>","11/16/2026 3:24:06 PM","Defer","","Reason: [{{LED=451 4.7.1 Access denied]]]}}}};'
            f'{{IP=1.2.3.4","","{trace_id(0)}"',
            f'"c","<m0@x>","11/16/2026 3:34:06 PM","Defer","","{{{{{{[[[[;;;{{LED=}}","","{trace_id(0)}"', ""]),
        "status_unknown.csv": ps51_text([ps51_row(0), ps51_row(1, status="Bounced"), ps51_row(2, status="")]),
        "formula_values.csv": ps51_text([ps51_row(0, subject='=HYPERLINK(""http://x"",""y"")'),
                                         ps51_row(1, subject="+cmd|' /C calc'!A0"), ps51_row(2, subject="@SUM(1)")]),
        "no_message_identifiers.csv": "\n".join([
            DETAIL_HEADER, f'"c","<m0@x>","11/16/2026 3:04:06 PM","Receive","","r","","{trace_id(0)}"',
            '"c","","11/16/2026 3:14:06 PM","Defer","","r","",""', ""]),
        # archives, folders, not text
        "exports.zip": _zip({"ps51.csv": ps51(), "v2/ps7.csv": ps7()}),
        "exports_from_a_mac.zip": _zip({"trace.csv": ps7(), "__MACOSX/._trace.csv": APPLE_DOUBLE,
                                        "README.txt": b"Exported for the ticket.\r\n"}),
        "export.png": PNG,
        "random_bytes.csv": rng.randbytes(4096),
        "saved_as_excel.xlsx": XLSX,
        "export.csv.gz": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + rng.randbytes(64),
        "compressed_folder/week1.csv": ps7(2),
        "compressed_folder/week2.csv.gz": gzip.compress(ps51(2), mtime=0),
        "compressed_folder/week3.log.bz2": bz2.compress(tracking_text([tracking_row(0), tracking_row(1)]).encode()),
        "compressed_folder/nested.zip": _zip({"inner/week4.csv.gz": gzip.compress(german(), mtime=0),
                                              "inner/old.zip": _zip({"x.csv": ps7()})}),
        "compressed_folder/report.pdf": b"%PDF-1.4\n",
        "compressed_folder/cut_off.csv.gz": gzip.compress(ps7(2), mtime=0)[:40],
        "folder_with_other_files/one.csv": ps51(2),
        "folder_with_other_files/notes.txt": "remember to ask the partner about their IronPort\n",
        "folder_with_other_files/empty.csv": b"",
        "folder_with_other_files/screenshot.png": PNG,
        "folder_with_other_files/trace.xlsx": XLSX,
        "folder_with_other_files/.hidden.csv": ps51(1),
        "zero_byte_among_good/a.csv": ps7(2),
        "zero_byte_among_good/b.csv": b"",
        "zero_byte_among_good/c.csv": german(),
        # line endings and white space
        "line_endings_crlf.csv": ps7_text(ps7_rows[:3], newline="\r\n"),
        "line_endings_lf.csv": ps7_text(ps7_rows[:3], newline="\n"),
        "line_endings_cr_only.csv": ps7_text(ps7_rows[:3], newline="\r"),
        "line_endings_mixed.csv": "\r\n".join(ps7_lines[:2]) + "\n" + ps7_lines[2] + "\r" + "\r\n".join(ps7_lines[3:])
                                  + "\r\n",
        "cr_inside_unquoted_field.log": tracking_text([tracking_row(0), tracking_row(1, subject="Hel\rlo"),
                                                       tracking_row(2)]),
        "tracking_repeated_fields_block.log": tracking_text([tracking_row(0), tracking_row(1), *TRACKING_PREAMBLE,
                                                             "#Fields: " + TRACKING_FIELDS_2016, tracking_row(2)]),
        "whitespace_only_lines.csv": "\n".join([ps7_lines[0], ps7_lines[1], "   ", ps7_lines[2], "", "\t",
                                                ps7_lines[3], " \t ", ""]),
        "blank_lines_before_header.csv": "\r\n\r\n" + ps7_text(ps7_rows[:2], newline="\r\n"),
    }
    return {name: content if isinstance(content, bytes) else content.encode("utf-8")
            for name, content in cases.items()}


def huge_field(size: int = 10 << 20, rows_before: int = 0) -> bytes:
    """A PowerShell 7 export whose second data row has a ``size``-byte Subject, after ``rows_before`` padding rows."""
    padding = [ps7_fields(i % 200) for i in range(rows_before)]
    rows = [*padding, ps7_fields(0), ps7_fields(1, subject="A" * size), ps7_fields(2)]
    return ps7_text(rows).encode("utf-8")


GENERATED: dict[str, Callable[[], bytes]] = {
    "huge_field_10mb.csv": huge_field,
    "huge_field_10mb_across_blocks.csv": lambda: huge_field(rows_before=60_000),  # the row spans 8-18 MB
}


def write(target: Path = CASES_DIR) -> None:
    """Replace ``target`` with a fresh copy of the corpus."""
    if target.exists():
        shutil.rmtree(target)
    for name, content in corpus().items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else CASES_DIR)
