"""Allow-list audit: the four formats, the findings, the corrected lists and the command line."""

from __future__ import annotations

import io
from pathlib import Path

import netaddr
import pandas as pd
import pytest

from analysis.audit.allowlist import FORMATS, audit_allowlist
from analysis.cli.audit_allowlist import main as audit_allowlist_cli
from analysis.core.errors import AllowListError
from analysis.reference.endpoints import Endpoints

DATA = Path(__file__).parent / "data" / "allowlists"
FILES = {"ironport_hat.txt": "ironport", "plain.txt": "text", "allowlist.csv": "csv", "postfix_cidr": "postfix"}


@pytest.fixture(scope="module")
def endpoints() -> Endpoints:
    return Endpoints.bundled()


@pytest.fixture(scope="module")
def hat(endpoints):
    return audit_allowlist(DATA / "ironport_hat.txt", endpoints)


def networks(audit, status=None):
    entries = audit.entries if status is None else audit.entries[audit.entries["status"] == status]
    return entries["networks"].tolist()


# ---------------------------------------------------------------------------------------------------------
# the sample story's IronPort export


def test_ironport_export_misses_52_100(hat):
    assert hat.format == "ironport"
    assert hat.missing_cidrs == ["52.100.0.0/14"]
    assert hat.missing["endpoint_set"].tolist() == [10]
    assert hat.missing["addresses"].tolist() == [2**18]
    v4, v6 = hat.coverage.loc["IPv4"], hat.coverage.loc["IPv6"]
    assert (v4["required"], v4["missing"]) == (491_520, 262_144)
    assert v4["percent"] == pytest.approx(100 * (491_520 - 262_144) / 491_520)
    assert v6["percent"] == 100.0


def test_ironport_groups_policies_and_entry_forms(hat):
    entries = hat.entries.set_index("entry")
    assert entries.loc["40.92.0.0/15", "group"] == "ALLOWED_LIST" and entries.loc["40.92.0.0/15", "allow"]
    assert entries.loc["192.0.2.10-20", "networks"] == "192.0.2.10/31 192.0.2.12/30 192.0.2.16/30 192.0.2.20/32"
    assert entries.loc["198.51.100.", "networks"] == "198.51.100.0/24"
    assert not entries.loc["203.0.113.66", "allow"] and entries.loc["203.0.113.66", "group"] == "BLOCKED_LIST"
    assert entries.loc["sbrs[-10.0:-3.0]", "kind"] == "selector"
    assert set(hat.entries["group"].dropna()) == {"ALLOWED_LIST", "BLOCKED_LIST", "SUSPECTLIST", "UNKNOWNLIST"}
    assert hat.rejects.empty


def test_ironport_stale_over_broad_and_host_entries(hat, endpoints):
    assert hat.stale["entry"].tolist() == ["23.103.132.0/22", "65.55.88.0/24", "213.199.154.0/24",
                                           "192.0.2.10-20", "198.51.100."]
    assert set(hat.stale["status"]) == {"not_microsoft"}
    broad = hat.over_broad.set_index("entry").loc["104.40.0.0/13"]
    expected = (netaddr.IPSet(["104.40.0.0/13"]) - endpoints.ip_set()).size
    assert broad["non_microsoft_addresses"] == expected > 2**18
    assert broad["exo_addresses"] == 2**15
    hosts = hat.host_entries.set_index("entry")
    assert not hosts.loc[".mail.protection.outlook.com", "covers_exo_outbound"]
    assert hosts.loc[".mail.protection.outlook.com", "covers"] == "*.mail.protection.outlook.com"
    assert not hosts.loc[".spam-domain.example", "allow"]


def test_summary_names_every_finding(hat):
    text = hat.summary()
    for fragment in ("MISSING", "52.100.0.0/14", "104.40.0.0/13 admits 491,519 non-Microsoft addresses",
                     "65.55.88.0/24", ".mail.protection.outlook.com - does not admit", "version 2025013000"):
        assert fragment in text


# ---------------------------------------------------------------------------------------------------------
# the other formats


@pytest.mark.parametrize(("name", "fmt"), FILES.items())
def test_formats_are_sniffed(name, fmt, endpoints):
    assert audit_allowlist(DATA / name, endpoints).format == fmt


def test_text_notations(endpoints):
    audit = audit_allowlist(DATA / "plain.txt", endpoints)
    entries = audit.entries.set_index("entry")
    assert entries.loc["40.107.0.0/255.255.0.0", "networks"] == "40.107.0.0/16"
    assert entries.loc["52.100.0.0-52.103.255.255", "networks"] == "52.100.0.0/14"
    assert entries.loc["104.47.0.1", "networks"] == "104.47.0.1/32"
    assert {"2a01:111:f403::/48", "2a01:111:f400::/48"} <= set(entries.index)
    assert audit.rejects[["line", "text"]].values.tolist() == [[9, "52.100.0.0/33"], [10, "not-an-address!"]]
    assert audit.stale["entry"].tolist() == ["10.20.0.0/16"]
    assert audit.host_entries["covers_exo_outbound"].tolist() == [True]
    missing = netaddr.IPSet(audit.missing_cidrs)
    assert missing == netaddr.IPSet(["104.47.0.0/17"]) - netaddr.IPSet(["104.47.0.1/32"])
    assert len(audit.missing_cidrs) == len(list(missing.iter_cidrs()))  # the fewest CIDRs


def test_csv_column_and_actions(endpoints):
    audit = audit_allowlist(DATA / "allowlist.csv", endpoints)
    assert audit.missing_cidrs == ["2a01:111:f400::/48"]
    entries = audit.entries.set_index("entry")
    assert entries.loc["0.0.0.0/0", "status"] == "denies_exo" and not entries.loc["0.0.0.0/0", "allow"]
    assert entries.loc["52.100.0.0/14", "group"] == "Exchange Online"
    assert "Deny entries that match Exchange Online ranges" in audit.summary()


def test_postfix_table(endpoints):
    audit = audit_allowlist(DATA / "postfix_cidr", endpoints)
    assert audit.missing_cidrs == ["40.107.0.0/16", "2a01:111:f400::/48"]
    assert audit.entries.set_index("entry").loc["[2a01:111:f403::]/48", "networks"] == "2a01:111:f403::/48"
    assert audit.over_broad["entry"].tolist() == ["52.0.0.0/8"]
    host = audit.host_entries.iloc[0]
    assert host["entry"] == "protection.outlook.com" and host["covers_exo_outbound"]
    assert host["match"] == "host and sub-domains"
    assert not audit.entries.set_index("entry").loc["198.51.100.0/24", "allow"]


@pytest.mark.parametrize(("token", "expected"), [
    ("10.1.1.1-10", "10.1.1.1/32 10.1.1.2/31 10.1.1.4/30 10.1.1.8/31 10.1.1.10/32"),
    ("10.1.1-5.", "10.1.1.0/24 10.1.2.0/23 10.1.4.0/23"),
    ("10.1.1.", "10.1.1.0/24"),
    ("10.1", "10.1.0.0/16"),
    ("10.1/16", "10.1.0.0/16"),
    ("10/8", "10.0.0.0/8"),
    ("2a01:111:f400::/48", "2a01:111:f400::/48"),
    ("2001:db8::1-2001:db8::3", "2001:db8::1/128 2001:db8::2/127"),
])
def test_ironport_sender_group_syntax(token, expected, endpoints):
    audit = audit_allowlist(f"ALLOWED_LIST:\n    {token}\n    $TRUSTED\n", endpoints, fmt="ironport")
    assert networks(audit) == [expected]


def test_ironport_policy_descriptions_and_custom_policies(endpoints):
    hat = """$UNLISTED_DEFER
    REJECT {
        smtp_banner_code = 421
        smtp_banner_text = "Your access to this mail system from $RemoteIP has been rejected"
    }

PARTNERS:
    40.92.0.0/15
    94.245.120.64-127
    $TRUSTED (Exchange Online outbound for partner contoso.com - reviewed 2016-04-11)

NOT_WELCOME:
    198.51.100.7
    $UNLISTED_DEFER (Everyone else: only listed partners may send)
"""
    audit = audit_allowlist(hat, endpoints)
    assert audit.rejects.empty
    entries = audit.entries.set_index("entry")
    assert entries.loc["94.245.120.64-127", "networks"] == "94.245.120.64/26"
    assert entries["allow"].tolist() == [True, True, False]
    assert entries.loc["198.51.100.7", "group"] == "NOT_WELCOME"


def test_ironport_one_line_form(endpoints):
    audit = audit_allowlist("40.92.0.0/15 $TRUSTED\n.spamdomain.example REJECT\n251.192.1. TCPREFUSE\n", endpoints)
    assert audit.format == "ironport"
    assert audit.entries["allow"].tolist() == [True, False, False]


# ---------------------------------------------------------------------------------------------------------
# corrected lists


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_corrected_list_round_trips(name, fmt, endpoints):
    audit = audit_allowlist(DATA / name, endpoints)
    corrected = audit.corrected(fmt)
    again = audit_allowlist(corrected, endpoints)
    assert again.format == fmt
    assert again.missing_cidrs == [] and again.over_broad.empty
    assert again.coverage["percent"].tolist() == [100.0, 100.0]
    kept = {n for e in audit._allowing() if audit._status(e) != "over_broad" for n in e.networks}
    assert netaddr.IPSet(kept) <= again.allowed  # nothing the list allowed (and should) is lost


def test_corrected_ironport_keeps_the_export_and_fills_the_group(hat):
    corrected = hat.corrected()
    lines = corrected.splitlines()
    original = (DATA / "ironport_hat.txt").read_text().splitlines()
    assert lines[:5] == original[:5]
    added = lines.index("    52.100.0.0/14")
    assert lines[added + 1] == "    $TRUSTED"  # inside ALLOWED_LIST, before its policy
    assert any(line.startswith("    # exo-deferrals: removed over-broad entry") and "104.40.0.0/13" in line
               for line in lines)
    assert "BLOCKED_LIST:" in lines and "    203.0.113.66" in lines


def test_corrected_csv_keeps_the_header_and_columns(endpoints):
    corrected = audit_allowlist(DATA / "allowlist.csv", endpoints).corrected()
    lines = corrected.splitlines()
    assert lines[0] == "IP Address,Description,Action"
    assert lines[-1] == "2a01:111:f400::/48,added by exo-deferrals: Exchange Online,"


def test_corrected_postfix_comments_out_the_over_broad_line(endpoints):
    corrected = audit_allowlist(DATA / "postfix_cidr", endpoints).corrected()
    note = "# exo-deferrals: removed over-broad entry (admits 15,204,340 non-Microsoft addresses): 52.0.0.0/8"
    assert note in corrected
    assert corrected.endswith("40.107.0.0/16 OK\n2a01:111:f400::/48 OK\n")


def test_nothing_to_correct_changes_nothing_but_a_note(endpoints):
    text = "\n".join(endpoints.exchange_mail_flow_ranges(port=25)) + "\n"
    audit = audit_allowlist(text, endpoints)
    assert audit.missing.empty and audit.over_broad.empty and audit.stale.empty
    assert audit.corrected() == text + "# exo-deferrals: checked against Microsoft 365 endpoints Worldwide version " \
        "2025013000; 0 Exchange Online range(s) added, 0 over-broad entries removed\n"


# ---------------------------------------------------------------------------------------------------------
# sources, errors, tagged traces, HTML


def test_sources_path_text_and_file_like(endpoints):
    text = (DATA / "plain.txt").read_text()
    by_path = audit_allowlist(str(DATA / "plain.txt"), endpoints)
    by_text = audit_allowlist(text, endpoints)
    by_file = audit_allowlist(io.StringIO(text), endpoints)
    by_bytes = audit_allowlist(io.BytesIO(text.encode("utf-16")), endpoints)
    assert by_path.missing_cidrs == by_text.missing_cidrs == by_file.missing_cidrs == by_bytes.missing_cidrs
    assert by_path.source.endswith("plain.txt") and by_text.source == "<text>"


def test_nothing_parseable_names_the_file(tmp_path, endpoints):
    path = tmp_path / "broken.txt"
    path.write_text("# only comments\nhello world!\n")
    with pytest.raises(AllowListError, match=r"broken\.txt: no IP address.*line 2"):
        audit_allowlist(path, endpoints)
    with pytest.raises(AllowListError, match=r"missing\.txt: cannot read"):
        audit_allowlist(str(tmp_path / "missing.txt"), endpoints)
    with pytest.raises(AllowListError, match="no IP/CIDR column"):
        audit_allowlist("name,comment\nx,y\n", endpoints, fmt="csv")
    with pytest.raises(AllowListError, match="unknown allow-list format"):
        audit_allowlist("1.2.3.4", endpoints, fmt="yaml")


def test_tagged_trace_lists_messages_from_missing_ranges(hat):
    events = pd.DataFrame({
        "message_id": ["<a@contoso.com>", "<a@contoso.com>", "<a@contoso.com>", "<b@contoso.com>", "<c@contoso.com>"],
        "recipient": ["kim@tailspintoys.com"] * 4 + ["lee@tailspintoys.com"],
        "recipient_domain": pd.Categorical(["tailspintoys.com"] * 5),
        "remote_host": ["mx1.hc4112-47.iphmx.com"] * 5,
        "event": pd.Categorical(["defer", "defer", "fail", "defer", "deliver"]),
        "exo_ip": ["52.100.12.1", "52.101.9.9", "52.102.0.3", "40.107.3.3", "52.100.1.1"],
    })
    frame = audit_allowlist(DATA / "ironport_hat.txt", hat.endpoints, tagged=events).affected_messages
    assert frame["message_id"].tolist() == ["<a@contoso.com>"]
    row = frame.iloc[0]
    assert (row["deferrals"], row["failures"]) == (2, 1)
    assert row["exo_ips"] == "52.100.12.1, 52.101.9.9, 52.102.0.3" and row["missing_ranges"] == "52.100.0.0/14"
    assert hat.affected_messages is None
    without_ip = audit_allowlist(DATA / "ironport_hat.txt", hat.endpoints, tagged=events.drop(columns="exo_ip"))
    with pytest.raises(AllowListError, match="exo_ip"):
        _ = without_ip.affected_messages


def test_html_escapes_everything(endpoints):
    hostile = "40.92.0.0/15\n<script>alert(1)</script>\n&amp; <b>bold</b>\n"
    audit = audit_allowlist(io.StringIO(hostile), endpoints)
    assert len(audit.rejects) == 3
    page = audit._repr_html_()
    assert "<script>" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---------------------------------------------------------------------------------------------------------
# command line


def test_cli_summary_and_corrected_output(tmp_path, capsys):
    out = tmp_path / "fixed.cidr"
    args = [str(DATA / "ironport_hat.txt"), "--offline", "--format", "postfix", "-o", str(out)]
    assert audit_allowlist_cli(args) == 1  # ranges are missing: a finding
    printed = capsys.readouterr().out
    assert "52.100.0.0/14" in printed and f"written to {out}" in printed
    assert audit_allowlist(out, Endpoints.bundled()).missing_cidrs == []
    assert audit_allowlist_cli([str(DATA / "plain.txt"), "--offline", "--format", "csv"]) == 1  # unreadable lines
    captured = capsys.readouterr()
    assert captured.out.startswith("network,comment") and "Allow-list audit" in captured.err


def test_cli_errors(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert audit_allowlist_cli([str(empty), "--offline"]) == 3
    assert "empty.txt: no IP address" in capsys.readouterr().err
