"""The sample generator: determinism, every element of docs/sample-story.md in the truth, and the real layout
of every written file (read back with the standard csv module, never with the project's loader)."""

from __future__ import annotations

import codecs
import csv
import io
import ipaddress
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli.sample import main as sample_cli
from analysis.core.schema import check_events
from analysis.sample import generator as sample

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
REFUSED = ipaddress.ip_network(sample.REFUSED_RANGE)
EXO_RANGES = [ipaddress.ip_network(n) for n in
              ("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17", "2a01:111:f403::/48")]
START = pd.Timestamp("2026-11-16", tz="UTC")
HOUR = pd.Timedelta(hours=1)
US_DATE = r"\d{1,2}/\d{1,2}/2026 \d{1,2}:\d{2}:\d{2} [AP]M"


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return sample.generate_story()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, truth: pd.DataFrame) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    sample.write_formats(truth, folder)
    return folder


def pairs_of(events: pd.DataFrame) -> pd.api.typing.DataFrameGroupBy:
    return events.groupby(["message_id", "recipient"], sort=False, observed=True)


def to(domain: str, events: pd.DataFrame) -> pd.DataFrame:
    return events[events.recipient_domain == domain]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def read(path: Path, *, delimiter: str = ",", skip: int = 0) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV export, decoded by its BOM, after ``skip`` preamble lines."""
    raw = path.read_bytes()
    encoding = "utf-16" if raw.startswith(codecs.BOM_UTF16_LE) else "utf-8-sig"
    text = raw.decode(encoding)
    for _ in range(skip):
        text = text[text.index("\n") + 1:]
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    return rows[0], rows[1:]


# --- determinism and size -----------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        sample.write_formats(sample.generate_story(seed, messages=400), tmp_path / name)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert (tmp_path / "a" / "messagetrace_detail.csv").read_bytes() != (
        tmp_path / "c" / "messagetrace_detail.csv").read_bytes()


def test_committed_sample_is_exactly_what_the_default_seed_writes(written: Path) -> None:
    committed = sorted(p.name for p in SAMPLE.iterdir() if p.name != "README.md")
    assert committed == sorted(p.name for p in written.iterdir())
    for name in committed:
        assert (SAMPLE / name).read_bytes() == (written / name).read_bytes(), name


def test_committed_sample_stays_under_5_mb() -> None:
    assert sum(p.stat().st_size for p in SAMPLE.iterdir()) < 5_000_000


# --- the truth ----------------------------------------------------------------------------------------------
def test_truth_is_a_canonical_events_table_of_a_few_thousand_messages(truth: pd.DataFrame) -> None:
    assert check_events(truth) == []
    receive = truth[truth.event == "receive"]
    assert receive.message_id.nunique() == sample.DEFAULT_MESSAGES >= 2000
    assert truth.recipient_domain.nunique() >= 200
    assert (receive.groupby("message_id").size() > 1).sum() > 100  # multi-recipient messages
    assert set(receive.direction) == {"outbound", "inbound", "internal"}
    assert (truth.timestamp >= START).all() and (truth.timestamp < START + pd.Timedelta(days=7)).all()
    outbound = receive[receive.direction == "outbound"]
    deferred = set(truth.message_id[truth.event == "defer"] + truth.recipient[truth.event == "defer"])
    assert (~(outbound.message_id + outbound.recipient).isin(deferred)).mean() > 0.9  # most go at once
    assert truth.message_id.str.fullmatch(r"<[^@]+@[^>]+>").all()
    assert truth.trace_id.str.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}").all()


def test_every_pair_has_one_final_status_that_matches_its_last_event(truth: pd.DataFrame) -> None:
    by_pair = pairs_of(truth)
    assert (by_pair.status.nunique() == 1).all()
    assert (by_pair.event.first() == "receive").all()
    last = by_pair.agg(status=("status", "first"), last=("event", "last"))
    expected = {"delivered": {"send", "deliver"}, "failed": {"fail"}, "pending": {"defer"}}
    assert last.apply(lambda row: row["last"] in expected[row["status"]], axis=1).all()
    assert set(last.status) == {"delivered", "failed", "pending"}


def test_attempts_leave_from_published_exchange_online_ranges(truth: pd.DataFrame) -> None:
    hops = truth[truth.exo_ip.notna()]
    assert set(hops.event) <= {"defer", "send", "fail"} and len(hops) > 3000
    assert all(any(ip(x) in net for net in EXO_RANGES) for x in hops.exo_ip)
    assert hops.exo_ip.str.contains(":").any()  # some over IPv6
    assert hops.exo_host.str.endswith(".outlook.com").all()


def test_ironport_refuses_exactly_the_attempts_from_52_100_0_0_14(truth: pd.DataFrame) -> None:
    ironport = to("tailspintoys.com", truth)
    attempts = ironport[ironport.event.isin(["defer", "send"])]
    refused = attempts.event == "defer"
    assert refused.any() and (~refused).any()
    assert all((ip(x) in REFUSED) == bool(r) for x, r in zip(attempts.exo_ip, refused, strict=True))
    defers = ironport[refused.reindex(ironport.index, fill_value=False)]
    assert defers.reply.str.startswith("451 4.4.0 Primary target IP address responded with: \"421 mx").all()
    assert all(x in reply for x, reply in zip(defers.exo_ip, defers.reply, strict=True))
    assert set(ironport.remote_host.dropna()) == {"mx1.hc4112-47.iphmx.com", "mx2.hc4112-47.iphmx.com"}
    assert (defers.smtp_code == 421).all() and defers.enhanced_code.isna().all()  # the banner's own codes
    statuses = pairs_of(ironport).agg(status=("status", "first"),
                                      deferred=("event", lambda e: (e == "defer").any()))
    assert ((statuses.status == "delivered") & statuses.deferred).any()  # delivered late
    expired = ironport[ironport.event == "fail"]
    assert len(expired) >= 2 and (expired.reply == "550 4.4.7 Message expired").all()
    for (message, recipient), events in pairs_of(ironport[ironport.message_id.isin(expired.message_id)]):
        tried = events[events.event == "defer"]
        assert tried.exo_ip.map(lambda x: ip(x) in REFUSED).all()
        waited = events.timestamp.iloc[-1] - tried.timestamp.iloc[0]
        assert pd.Timedelta(hours=24) <= waited <= pd.Timedelta(hours=24, minutes=15), (message, recipient)


def test_greylisted_recipients_are_deferred_once_then_delivered_minutes_later(truth: pd.DataFrame) -> None:
    for _, events in pairs_of(to("adventure-works.com", truth)):
        assert list(events.event) == ["receive", "submit", "defer", "send"]
        defer, send = events.iloc[2], events.iloc[3]
        assert "Recipient address rejected: Greylisted" in defer.reply and defer.enhanced_code == "4.2.0"
        assert pd.Timedelta(minutes=5) <= send.timestamp - defer.timestamp <= pd.Timedelta(minutes=15)


def test_the_down_server_times_out_for_30_hours_early_messages_expire(truth: pd.DataFrame) -> None:
    down = to("fourthcoffee.com", truth)
    defers = down[down.event == "defer"]
    outage = (START + 30 * HOUR, START + 60 * HOUR)
    assert defers.reply.str.startswith("450 4.4.315 Connection timed out").all()
    assert defers.timestamp.between(*outage, inclusive="left").all()
    assert defers.reply.str.contains(r"\[LastAttemptedIP=198\.51\.100\.25:25\]").all()
    for _, events in pairs_of(down):
        first_try = events.timestamp[events.event.isin(["defer", "send"])].min()
        if events.status.iloc[0] == "failed":
            assert first_try < outage[1] - 24 * HOUR
            assert pd.Timedelta(hours=24) <= events.timestamp.iloc[-1] - first_try <= pd.Timedelta(hours=24.2)
        else:
            assert events.status.iloc[0] == "delivered"
    assert (pairs_of(down).status.first() == "failed").sum() >= 3
    assert ((pairs_of(down).status.first() == "delivered") & pairs_of(down).event.agg(
        lambda e: (e == "defer").any())).any()  # delivered when it came back


def test_typos_disabled_mailbox_dmarc_and_size_fail_at_once(truth: pd.DataFrame) -> None:
    fails = truth[truth.event == "fail"]
    at_once = fails[~fails.message_id.isin(truth.message_id[truth.event == "defer"])]
    expected = {"5.1.1": 2, "5.1.10": 1, "5.2.1": 1, "5.7.26": 1, "5.3.4": 1}  # code -> domains at least
    for code, domains in expected.items():
        rows = at_once[at_once.enhanced_code == code]
        assert rows.recipient_domain.nunique() >= domains, code
    assert set(at_once.recipient_domain[at_once.enhanced_code == "5.2.1"]) == {"wingtiptoys.com"}
    assert (at_once.reply[at_once.enhanced_code == "5.1.10"].str.contains("RESOLVER.ADR.RecipientNotFound")).all()
    dmarc = at_once[at_once.enhanced_code == "5.7.26"]
    assert set(dmarc.sender) == {sample.MARKETING_SENDER} and set(dmarc.recipient_domain) == {"gmail.com"}
    assert dmarc.reply.str.contains("\r\n550-5.7.26 DMARC policy").all()
    assert at_once.recipient[at_once.enhanced_code == "5.3.4"].nunique() == 1


def test_yahoo_rate_limits_the_blast_then_takes_it(truth: pd.DataFrame) -> None:
    yahoo = to("yahoo.com", truth)
    defers = yahoo[yahoo.event == "defer"]
    assert len(defers) > 10 and defers.reply.str.contains(r"\[TSS04\]").all()
    assert all(f"Messages from {x} temporarily deferred" in r for x, r in zip(defers.exo_ip, defers.reply,
                                                                                   strict=True))
    assert (yahoo.status == "delivered").all()


def test_starttls_partner_expires_and_full_mailbox_fails_after_deferrals(truth: pd.DataFrame) -> None:
    litware = to("litware.com", truth)
    assert litware.reply[litware.event == "defer"].str.contains(
        r"^450 4\.4\.317 Cannot connect to remote server \[Message=451 5\.7\.3 STARTTLS is required").all()
    assert (litware.reply[litware.event == "fail"].str.startswith("550 5.4.317 Message expired")).all()
    assert set(pairs_of(litware).status.first()) == {"failed", "pending"}
    quota = truth[truth.recipient == "m.rossi.archive@gmail.com"]
    assert quota.reply[quota.event == "defer"].str.startswith("452-4.2.2").all()
    assert {"failed", "pending"} == set(quota.status)


def test_hostile_subjects_are_there(truth: pd.DataFrame) -> None:
    subjects = set(truth.subject)
    assert any("<script>alert(1)</script>" in s for s in subjects)
    assert any(s.startswith("=") for s in subjects)


# --- the files ----------------------------------------------------------------------------------------------
def test_ps51_export_has_the_type_line_ascii_crlf_and_every_field_quoted(written: Path, truth: pd.DataFrame) -> None:
    path = written / "messagetrace_ps51_en-US.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace\r\n\"")
    assert max(raw) < 128 and b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    header, rows = read(path, skip=1)
    assert header == ["PSComputerName", "RunspaceId", "PSShowComputerName", "Organization", "MessageId",
                      "Received", "SenderAddress", "RecipientAddress", "Subject", "Status", "ToIP", "FromIP",
                      "Size", "MessageTraceId", "StartDate", "EndDate", "Index"]
    assert raw.split(b"\r\n")[2].startswith(b'"outlook.office365.com","') and b'"","' in raw  # empties quoted
    assert len(rows) == (truth.event == "receive").sum()
    assert all(re.fullmatch(US_DATE, r[5]) for r in rows)
    assert {r[9] for r in rows} == {"Delivered", "Pending", "Failed"}
    assert [int(r[16]) for r in rows] == list(range(len(rows)))
    assert any("f?r M?ller" in r[8] for r in rows)  # non-ASCII became "?"
    assert rows[0][14:16] == ["11/16/2026 12:00:00 AM", "11/23/2026 12:00:00 AM"]


def test_v2_exports_de_and_gb_overlap_on_days_three_and_four(written: Path) -> None:
    de_raw = (written / "messagetrace_v2_de-DE.csv").read_bytes()
    gb_raw = (written / "messagetrace_v2_en-GB_ps7.csv").read_bytes()
    assert de_raw.startswith(codecs.BOM_UTF8 + b'"Received";"SenderAddress"') and b"\r\n" in de_raw
    assert gb_raw.startswith(b'"Received","SenderAddress"') and b"\r\n" not in gb_raw
    columns = ["Received", "SenderAddress", "RecipientAddress", "Subject", "Status", "ToIP", "FromIP", "Size",
               "MessageId", "MessageTraceId", "Organization"]
    de_header, de = read(written / "messagetrace_v2_de-DE.csv", delimiter=";")
    gb_header, gb = read(written / "messagetrace_v2_en-GB_ps7.csv")
    assert de_header == gb_header == columns
    assert all(re.fullmatch(r"(1[6-9])\.11\.2026 \d{2}:\d{2}:\d{2}", r[0]) for r in de)  # days 1-4
    assert all(re.fullmatch(r"(1[89]|2[0-2])/11/2026 \d{2}:\d{2}:\d{2}", r[0]) for r in gb)  # days 3-7
    both = {(r[9], r[2]) for r in de} & {(r[9], r[2]) for r in gb}
    assert both and all(r[0][:2] in ("18", "19") for r in de if (r[9], r[2]) in both)


def test_detail_export_has_reason_strings_multiline_leds_and_mep_data(written: Path) -> None:
    path = written / "messagetrace_detail.csv"
    assert not path.read_bytes().startswith((codecs.BOM_UTF8, b"#"))
    header, rows = read(path)
    assert header == ["Organization", "MessageId", "Date", "Event", "Action", "Detail", "Data", "StartDate",
                      "EndDate", "MessageTraceId", "SenderAddress", "RecipientAddress"]
    assert {r[3] for r in rows} == {"Receive", "Submit", "Defer", "Send", "Fail"}
    problems = [r for r in rows if r[3] in ("Defer", "Fail")]
    assert all(r[5].startswith("Reason: [{LED=") and "OutboundProxyTargetHostName: " in r[5] for r in problems)
    assert any("\r\n550-5.7.26 DMARC policy" in r[5] for r in problems)  # multi-line LED in a quoted field
    exo_errors = [r for r in problems if "4.4.315" in r[5] or "4.4.317" in r[5]]
    assert exo_errors and all("{FQDN=};{IP=}" in r[5] and "[LastAttemptedIP=" in r[5] for r in exo_errors)
    assert all(re.search(r"\[\S+\.outlook\.com 2026-11-\d\dT[\d:.]+Z 08DE[0-9A-F]{12}\]", r[5])
               for r in exo_errors if r[3] == "Defer")
    assert all(r[6].startswith("<root><MEP Name=") and re.fullmatch(US_DATE, r[2]) for r in rows)


def test_eac_historical_reports_are_utf16_with_their_headers(written: Path, truth: pd.DataFrame) -> None:
    for name in ("eac_enhanced_summary.csv", "eac_summary.csv", "eac_extended_tailspintoys.csv"):
        assert (written / name).read_bytes().startswith(codecs.BOM_UTF16_LE + '"'.encode("utf-16-le"))
    header, enhanced = read(written / "eac_enhanced_summary.csv")
    assert header == list(sample._ENHANCED)
    assert all(re.fullmatch(r"2026-11-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", r[0]) for r in enhanced)
    assert all(re.fullmatch(r"[^#;]+##Receive(, Defer)?(, (Send|Fail|Deliver))?(;[^#;]+##Receive.*)?", r[2])
               for r in enhanced)
    assert any("##Receive, Defer, Send" in r[2] for r in enhanced)
    header, summary = read(written / "eac_summary.csv")
    assert header == ["origin_timestamp_utc", "sender_address", "recipient_status", "message_subject",
                      "total_bytes", "message_id", "network_message_id", "original_client_ip"]
    assert {r[1] for r in summary} == {sample.MARKETING_SENDER}
    header, extended = read(written / "eac_extended_tailspintoys.csv")
    assert header[0] == "date_time_utc" and header[-1] == "custom_data" and len(header) == 27
    assert 0 < len(extended) <= sample.EXTENDED_SAMPLE_ROWS <= sample.EXTENDED_ROW_CAP
    assert {"RECEIVE", "SUBMIT", "DEFER", "SEND"} <= {r[8] for r in extended} <= {"RECEIVE", "SUBMIT", "DEFER",
                                                                                 "SEND", "FAIL"}
    assert all(a.endswith("@tailspintoys.com") for r in extended for a in r[12].split(";"))
    defers = [r for r in extended if r[8] == "DEFER"]
    # a DEFER names the local (Exchange Online) server in its server fields and the partner's host in the LED
    assert all(ip(r[1]) in REFUSED and r[4] == r[2] and r[4].endswith(".outlook.com") and r[7] == "SMTP"
               for r in defers)
    led = (r"\[\{LED=451 4\.4\.0 [^{}]*\};\{MSG=\};\{FQDN=mx[12]\.[a-z0-9-]+\.iphmx\.com\};"
           r"\{IP=68\.232\.140\.2[12]\};\{LRT=11/1[67]/2026 [\d:]+ [AP]M\}\]")
    assert all(re.fullmatch(f"{led}(;{led})*", r[13]) for r in defers)
    assert len(sample.file_slice(truth, "eac_extended_tailspintoys.csv")) <= sample.EXTENDED_ROW_CAP


def test_new_eac_export_is_in_the_admins_time_zone(written: Path, truth: pd.DataFrame) -> None:
    raw = (written / "new_eac_messagetrace.csv").read_bytes()
    assert raw.startswith(codecs.BOM_UTF8 + b"Date (UTC+01:00),Sender,Recipient,Subject,Status,Message ID")
    _, rows = read(written / "new_eac_messagetrace.csv")
    received = truth[truth.event == "receive"].set_index(["trace_id", "recipient"]).timestamp
    for row in rows[:50]:
        local = pd.Timestamp(row[0]).tz_localize("UTC")
        assert local - received[(row[6], row[2])].floor("s") == HOUR
    assert all(pd.Timestamp(r[0]) >= pd.Timestamp("2026-11-20") for r in rows)


@pytest.mark.parametrize(("name", "version", "fields"), [
    ("MSGTRK20261116-1.LOG", "15.02.1544.004", 30),
    ("MSGTRK20261117-1.LOG", "15.02.1544.004", 30),
    ("MSGTRK2013.LOG", "15.00.1104.000", 27),
    ("MSGTRK2010.LOG", "14.0.0.0", 26),
])
def test_message_tracking_logs_have_the_exchange_header(written: Path, name: str, version: str, fields: int) -> None:
    raw = (written / name).read_bytes()
    assert raw.startswith(codecs.BOM_UTF8 + b"#Software: Microsoft Exchange Server\r\n#Version: "
                          + version.encode() + b"\r\n#Log-type: Message Tracking Log\r\n#Date: 2026-11-")
    lines = raw.decode("utf-8-sig").split("\r\n")
    names = lines[4].removeprefix("#Fields: ").split(",")
    assert lines[4].startswith("#Fields: date-time,") and len(names) == fields
    assert ("network-message-id" in names) == (fields > 26)
    rows = list(csv.reader(io.StringIO("\r\n".join(lines[5:]), newline="")))
    rows = [r for r in rows if r]
    assert len(rows) > 50 and all(len(r) == fields for r in rows)
    event = names.index("event-id")
    assert {r[event] for r in rows} <= {"RECEIVE", "SUBMIT", "DEFER", "SEND", "FAIL", "DELIVER"}
    assert all(re.fullmatch(r"2026-11-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r[0]) for r in rows)
    assert all(r[names.index("message-info")] <= r[0] for r in rows)  # received before (maybe in another file)
    status = names.index("recipient-status")
    assert all(r[status].startswith("[{LED=") for r in rows if r[event] in ("DEFER", "FAIL"))
    many = [r for r in rows if ";" in r[names.index("recipient-address")]]
    assert all(int(r[names.index("recipient-count")]) == r[names.index("recipient-address")].count(";") + 1
               for r in many)


def test_allowlist_lacks_exactly_52_100_0_0_14_and_has_stale_and_broad_entries(written: Path) -> None:
    text = (written / sample.ALLOWLIST_FILE).read_text("ascii")
    group = text.split("PARTNER_MICROSOFT365:\n")[1].split("$TRUSTED")[0]
    entries = [line.strip() for line in group.splitlines() if line.strip()]
    networks = []
    for entry in entries:
        if "-" in entry:  # an AsyncOS range such as 94.245.120.64-127
            first, last = entry.split("-")
            networks += ipaddress.summarize_address_range(ip(first), ip(first.rsplit(".", 1)[0] + "." + last))
        elif not entry.startswith("."):  # .domain entries match host names
            networks.append(ipaddress.ip_network(entry))
    for current in map(ipaddress.ip_network, ("40.92.0.0/15", "40.107.0.0/16", "104.47.0.0/17", "2a01:111:f403::/48")):
        assert any(n.version == current.version and current.subnet_of(n) for n in networks), current
    assert not any(n.version == 4 and n.overlaps(REFUSED) for n in networks)
    assert ipaddress.ip_network("65.55.88.0/24") in networks and ".messaging.microsoft.com" in entries
    assert any(n.prefixlen <= 8 for n in networks)  # the over-broad one
    assert "ALL\n    $UNLISTED_DEFER" in text and "smtp_banner_code = 421" in text


# --- big traces ---------------------------------------------------------------------------------------------
def test_big_mode_writes_at_least_the_rows_asked_for(tmp_path: Path) -> None:
    assert sample_cli(["--out", str(tmp_path), "--rows", "20000"]) == 0
    _, trace = read(tmp_path / "messagetrace_ps51_en-US.csv", skip=1)
    _, detail = read(tmp_path / "messagetrace_detail.csv")
    assert len(trace) >= 20000 and len(detail) >= 20000
    assert [int(r[16]) for r in trace] == list(range(len(trace)))
    assert sample_cli(["--out", str(tmp_path), "--rows", "10", "--formats", "msgtrk"]) == 2


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    assert sample_cli(["--out", str(tmp_path), "--formats", "messagetrace,nope"]) == 2
