"""The client IP a remote reply quotes becomes ``exo_ip`` (analysis/reference/client_ips.py and its data file).

Every reply text below is quoted from the public page or file named next to it (line-wrapped NDR text joined with
single spaces); the expected IP was read from that text. Negative cases: the remote server's own IP is never taken.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest

from analysis import load_trace, tag
from analysis.core.errors import ExoDeferralsError
from analysis.reference.client_ips import client_ips, load_patterns

POSTFIX = "https://github.com/vdukhovni/postfix/blob/17830e5c13c160d51c95cb971d137a46de84e48c/postfix/src/smtpd/"

# (pattern family, source URL, reply text as published, the client IP it names)
QUOTED = [
    ("postfix_rbl", POSTFIX + "smtpd_check.ref (line 201)",
     "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using dnsbltest.porcupine.org", "127.0.0.2"),
    ("postfix_rbl", "https://github.com/carlohamalainen/carlohamalainen.github.io/blob/master/_posts/"
     "2014-05-26-microsoft-blocked-using-blocklist1.md (the poster's own IP redacted as yyy.yy.yy.yy)",
     "550 5.7.1 Service unavailable; Client host [yyy.yy.yy.yy] blocked using Blocklist 1; To request removal from "
     "this list please forward this message to delist@messaging.microsoft.com", None),
    ("postfix_unknown_client", POSTFIX + "smtpd_check.ref (line 21)",
     "450 4.7.1 Client host rejected: cannot find your hostname, [131.155.210.17]", "131.155.210.17"),
    ("postfix_client_access", POSTFIX + "smtpd_acl.ref (line 35)",
     "554 5.7.1 <foo.dunno.com[131.155.210.17]>: Client host rejected: Access denied", "131.155.210.17"),
    ("postfix_client_access", "https://pastebin.com/UyYmyNYV (a Postfix bounce: Microsoft FrontBridge refusing)",
     "host mail.global.frontbridge.com[216.32.181.22] said: 550 <jukefly.com[66.63.169.222]>: Client host rejected: "
     "Access Denied (in reply to RCPT TO command)", "66.63.169.222"),
    ("exim_dnslist", "https://github.com/Exim/exim/blob/059ec3d9952740285fb1ebf47961b8aca2eb1b4a/src/src/"
     "configure.default (its message 'rejected because $sender_host_address is in a black list at $dnslist_domain' "
     "expanded with a documentation address by us)",
     "550 rejected because 192.0.2.44 is in a black list at zen.spamhaus.org", "192.0.2.44"),
    ("microsoft_banned_ip", "https://pastebin.com/EH1TUb0X (a Postfix bounce quoting Exchange Online Protection)",
     "host dkarausch-eu.mail.protection.outlook.com[104.47.8.36] said: 550 5.7.606 Access denied, banned sending IP "
     "[185.234.72.45]. To request removal from this list please visit https://sender.office.com/ and follow the "
     "directions. For more information please go to http://go.microsoft.com/fwlink/?LinkID=526655 AS(1430) (in reply "
     "to RCPT TO command)", "185.234.72.45"),
    ("microsoft_banned_ip", "https://pastebin.com/JxYau839 (an Exim bounce quoting Exchange Online Protection)",
     "SMTP error from remote mail server after RCPT TO:<Nataline.rodrigues@rci.rogers.com>: 550 5.7.606 Access "
     "denied, banned sending IP [199.250.222.182]. To request removal from this list please visit "
     "https://sender.office.com/ and follow the directions. For more information please go to "
     "http://go.microsoft.com/fwlink/?LinkID=526655 (AS16012609)", "199.250.222.182"),
    ("microsoft_server_busy", "https://www.suped.com/learn/email-deliverability/"
     "what-causes-office365-temp-fails-and-how-can-they-be-resolved",
     "451 4.7.500 Server busy. Please try again later from [203.0.113.10]. (S77714) [BL6PEPF0001AB50.namprd04.prod."
     "outlook.com 2024-07-14T14:44:43.083Z 08DCA36F759CD546]", "203.0.113.10"),
    ("microsoft_rate_limited", "https://github.com/sisimai/p5-sisimai/issues/469",
     "451 4.7.650 The mail server [52.198.124.32] has been temporarily rate limited due to IP reputation",
     "52.198.124.32"),
    ("outlook_com_blocklist", "https://virtbiz.com/client/index.php?rp=%2Fknowledgebase%2F71%2F"
     "Outlook-or-Hotmail-or-Microsoft-has-blocked-my-email.html (the page's example address 11.22.33.44)",
     "550 5.7.1 Unfortunately, messages from [11.22.33.44] weren't sent. Please contact your Internet service "
     "provider since part of their network is on our block list (S3140). You can also refer your provider to "
     "http://mail.live.com/mail/troubleshooting.aspx#errors. [DM6NAM12FT056.eop-nam12.prod.protection.outlook.com]",
     "11.22.33.44"),
    ("outlook_com_blocklist", "https://sevencreative.co.uk/how-to-remove-yourself-from-the-hotmail-block-list/ "
     "(the IP redacted as **.**.**.**)",
     "said: 550 5.7.1 Unfortunately, messages from [**.**.**.**] weren't sent. Please contact your Internet service "
     "provider since part of their network is on our block list (S3150).", None),
    ("gmail_ip_tag", "https://pastebin.com/SWVXknth (a Postfix bounce quoting Gmail)",
     "host gmail-smtp-in.l.google.com[66.102.1.27] said: 550-5.7.1 [31.14.138.158 1] Our system has detected an "
     "unusual rate of 550-5.7.1 unsolicited mail originating from your IP address.", "31.14.138.158"),
    ("ip_address_blocked", "https://pastebin.com/mt8MbFRM (a Postfix bounce quoting EarthLink)",
     "host mx2.earthlink.net[209.86.93.227] said: 550 IP 74.220.202.212 is blocked by EarthLink. Go to "
     "earthlink.net/block for details. (in reply to MAIL FROM command)", "74.220.202.212"),
    ("ip_address_blocked", "https://github.com/sisimai/p5-sisimai/issues/469",
     "host smtp.example.com[192.0.2.43] refused to talk to me: 554 IP address 198.51.100.5 rejected "
     "[IP reputation fail]", "198.51.100.5"),
    ("yahoo_ts", "https://help.zoho.com/portal/en/community/topic/message-from-zoho-to-yahoo-elicits-421-responses",
     "ResponseCode 421, , 4.7.0 [TS02] Messages from 72.5.230.103 temporarily deferred due to user complaints - "
     "4.16.56.1; see http://postmaster.yahoo.com/421-ts02.html", "72.5.230.103"),
    ("yahoo_ts", "https://community.fortinet.com/t5/FortiMail/Troubleshooting-Tip-How-to-resolve-421-4-7-0-TSS05-"
     "Messages-from/ta-p/380206 (the address redacted as x.x.x.x)",
     "421 4.7.0 [TSS05] Messages from x.x.x.x temporarily deferred due to unexpected volume or user complaints - "
     "4.16.55.1", None),
    ("blocklist_lookup_url", "https://pastebin.com/ZR4Gcwca (an Exim bounce quoting a Cloudmark-filtered host)",
     "550-\"JunkMail rejected - pluto.oneup.host [164.132.209.40]:40598 is in an RBL 550-on "
     "csi.cloudmark.com/reset-request/?ip=164.132.209.40 , see Poor Reputation 550 Sender\"", "164.132.209.40"),
]


@pytest.mark.parametrize(("family", "source", "text", "expected"), QUOTED, ids=[f"{q[0]}-{i}" for i, q in
                                                                                 enumerate(QUOTED)])
def test_quoted_replies_give_the_client_ip(family: str, source: str, text: str, expected: str | None):
    assert family in {p.name for p in load_patterns()} and source
    got = client_ips(pd.Series([text])).iloc[0]
    assert (None if pd.isna(got) else got) == expected


def test_every_pattern_family_has_a_quoted_reply_and_a_source():
    patterns = load_patterns()
    assert {p.name for p in patterns} == {q[0] for q in QUOTED if q[3] is not None}
    assert all(p.source.startswith("http") for p in patterns)


NEGATIVES = [
    # replies that name no client address: Cisco's default reject and Barracuda's RBL reply (real, public)
    ("https://pastebin.com/18ewYuZs", "554-gw-smtp3.voeazul.com.br 554 Your access to this mail system has been "
     "rejected due to the sending MTA's poor reputation. If you believe that this failure is in error, please contact "
     "the intended recipient via alternate means."),
    ("https://pastebin.com/FreqNBvG", "host mail.sitgesfilmoffice.cat[91.146.100.125] said: 554 Refused. Your IP "
     "address is listed in the RBL at b.barracudacentral.org (in reply to RCPT TO command)"),
    # Exchange Online's own facts: the remote server's address is remote_ip, never the client's
    ("the LED grammar (docs/reference/exchange-formats.md)", "Reason: [{LED=450 4.7.1 Client host rejected: try again "
     "later};{MSG=};{FQDN=mx1.example.com};{IP=203.0.113.25};{LRT=}]"),
    ("the Exchange Online wrapper", "450 4.4.316 Connection refused [Message=Socket error code 10061] "
     "[LastAttemptedServerName=mx.example.com] [LastAttemptedIP=203.0.113.25:25] [SG2PEPF000B66CB.apcprd03.prod."
     "outlook.com 2025-01-21T03:45:12.345Z 08DD38B8C7F5C3A1]"),
    # a version, a date and an address as a URL's host are not a quoted client IP
    ("codes and dates", "451 4.7.1 IP 4.7.1 is blocked until 2025.01.21; see policy 10.2.3"),
    ("an address as a URL's host", "550 Mail from this host blocked, see http://198.51.100.7/blocked.html"),
]


@pytest.mark.parametrize(("why", "text"), NEGATIVES, ids=[n[0][:40] for n in NEGATIVES])
def test_texts_that_quote_no_client_ip_give_none(why: str, text: str):
    assert pd.isna(client_ips(pd.Series([text])).iloc[0]), why


def test_a_wrapped_reply_gives_the_client_not_the_remote_server():
    text = QUOTED[6][2]  # Postfix's "host ...[104.47.8.36] said:" names the remote MX, EOP's reply the client
    assert client_ips(pd.Series([text, text, None])).tolist()[:2] == ["185.234.72.45", "185.234.72.45"]


def test_bad_pattern_files_fail_with_the_entry_named(tmp_path: Path):
    path = tmp_path / "patterns.toml"
    path.write_text('[[pattern]]\nname = "x"\nregex = "no group"\nsource = "https://example.org"\n', encoding="utf-8")
    with pytest.raises(ExoDeferralsError, match=r"pattern 'x': the regex has no \(\?P<ip>"):
        load_patterns(path)
    path.write_text('[[pattern]]\nname = "x"\nregex = "(?P<ip>["\nsource = "https://example.org"\n', encoding="utf-8")
    with pytest.raises(ExoDeferralsError, match="bad regular expression"):
        load_patterns(path)


def _detail_csv(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A Get-MessageTraceDetail export (the columns real scripts select) holding ``rows`` (date, event, detail)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(["Date", "MessageId", "MessageTraceId", "Event", "Action", "Detail", "Data"])
    for date, event, detail in rows:
        writer.writerow([date, "<m1@contoso.com>", "ae5c1219-4c90-41bf-fef5-08d837917e7c", event, "", detail, ""])
    path = tmp_path / "detail.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_detail_export_fills_exo_ip_and_tag_judges_it(tmp_path: Path):
    # Defer Details in Exchange Online's LED grammar wrapping two quoted refusals: Postfix's reject_unknown_client
    # reply (smtpd_check.ref) naming 40.107.130.96, an Exchange Online outbound address seen in public headers
    # (mail-francesouthazon11021096.outbound.protection.outlook.com[40.107.130.96]); and EOP's reply of
    # pastebin.com/EH1TUb0X naming 185.234.72.45, a non-Microsoft sender. The framing and the pairing are ours.
    deny = ("Reason: [{LED=450 4.7.1 Client host rejected: cannot find your hostname, [40.107.130.96]};{MSG=};"
            "{FQDN=mx.fabrikam.com};{IP=203.0.113.25};{LRT=}]. OutboundProxyTargetIP: 203.0.113.25. "
            "OutboundProxyTargetHostName: mx.fabrikam.com")
    banned = ("Reason: [{LED=550 5.7.606 Access denied, banned sending IP [185.234.72.45]. To request removal from "
              "this list please visit https://sender.office.com/ and follow the directions.};{MSG=};"
              "{FQDN=dkarausch-eu.mail.protection.outlook.com};{IP=104.47.8.36};{LRT=}]")
    events = load_trace(_detail_csv(tmp_path, [("1/21/2025 3:45:12 AM", "Defer", deny),
                                               ("1/21/2025 3:50:12 AM", "Fail", banned),
                                               ("1/21/2025 3:40:12 AM", "Receive", "Message received by: "
                                                "AM0PR10MB1234.EURPRD10.PROD.OUTLOOK.COM")]))
    events = events.sort_values("timestamp").reset_index(drop=True)
    assert list(events["event"]) == ["receive", "defer", "fail"]
    assert pd.isna(events["exo_ip"].iloc[0])  # nothing quoted
    assert list(events["exo_ip"].iloc[1:]) == ["40.107.130.96", "185.234.72.45"]
    assert list(events["remote_ip"].iloc[1:]) == ["203.0.113.25", "104.47.8.36"]  # {IP=}: the remote server
    tagged = tag(events)
    # 40.107.0.0/16 is in Microsoft's published Exchange Online ranges; 185.234.72.45 is not
    assert list(tagged["exo_ip_published"].iloc[1:]) == [True, False]


def test_an_exported_exo_ip_is_never_overwritten(tmp_path: Path):
    # a tracking-log DEFER row names its sending server (client-ip 10.0.0.5, the exo_ip column of that format); the
    # IP its reply quotes (Postfix's smtpd_check.ref text) does not replace it. Header: the Exchange 2013 field list.
    fields = ("date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,"
              "event-id,internal-message-id,message-id,network-message-id,recipient-address,recipient-status,"
              "total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,"
              "return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data")
    row = {"date-time": "2025-01-21T03:45:12.345Z", "client-ip": "10.0.0.5", "client-hostname": "EX01.contoso.com",
           "source": "SMTP", "event-id": "DEFER", "message-id": "<m1@contoso.com>",
           "network-message-id": "ae5c1219-4c90-41bf-fef5-08d837917e7c", "recipient-address": "a@fabrikam.com",
           "recipient-status": QUOTED[2][2], "recipient-count": "1", "sender-address": "b@contoso.com"}
    out = io.StringIO()
    out.write("#Software: Microsoft Exchange Server\r\n#Version: 15.00.1104.000\r\n#Log-type: Message Tracking Log\r\n"
              f"#Fields: {fields}\r\n")
    csv.writer(out, lineterminator="\r\n").writerow([row.get(f, "") for f in fields.split(",")])
    path = tmp_path / "MSGTRK2025012103-1.LOG"
    path.write_text(out.getvalue(), encoding="utf-8")
    events = load_trace(path)
    assert (events["event"].iloc[0], events["exo_ip"].iloc[0]) == ("defer", "10.0.0.5")
