"""Recipient gateway fingerprints: the data file and identify_gateways."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.core.errors import ExoDeferralsError
from analysis.reference.gateways import identify_gateways, load_fingerprints


def test_every_fingerprint_is_sourced_and_matches_something():
    fingerprints = load_fingerprints()
    assert len(fingerprints) >= 15
    for f in fingerprints:
        assert f.sources and all(s.startswith(("http://", "https://")) for s in f.sources), f.vendor
        assert f.hosts or f.host_patterns or f.replies, f.vendor
    vendors = {f.vendor for f in fingerprints}
    for required in ("Cisco Secure Email (IronPort)", "Proofpoint", "Mimecast", "Barracuda",
                     "Broadcom Symantec (MessageLabs)", "Google", "Google Postini (legacy)", "Microsoft 365",
                     "Trend Micro", "Sophos", "Forcepoint", "Fortinet FortiMail", "Hornetsecurity",
                     "Trellix (FireEye)"):
        assert required in vendors


@pytest.mark.parametrize(("host", "vendor"), [
    ("mx1.hc4112-47.iphmx.com", "Cisco Secure Email (IronPort)"),
    ("MX2.HC4112-47.IPHMX.COM.", "Cisco Secure Email (IronPort)"),
    ("mx.us.etd.cisco.com", "Cisco Secure Email (IronPort)"),
    ("mxa-00123a01.gslb.pphosted.com", "Proofpoint"),
    ("mx1-us1.ppe-hosted.com", "Proofpoint"),
    ("eu-smtp-inbound-1.mimecast.com", "Mimecast"),
    ("za-smtp-inbound-1.mimecast.co.za", "Mimecast"),
    ("d123456a.ess.barracudanetworks.com", "Barracuda"),
    ("cluster9.eu.messagelabs.com", "Broadcom Symantec (MessageLabs)"),
    ("aspmx.l.google.com", "Google"),
    ("alt1.gmail-smtp-in.l.google.com", "Google"),
    ("contoso.com.s6a1.psmtp.com", "Google Postini (legacy)"),
    ("tailspintoys-com.mail.protection.outlook.com", "Microsoft 365"),
    ("contoso-com.a-v1.mx.microsoft", "Microsoft 365"),
    ("contoso.in.tmes.trendmicro.com", "Trend Micro"),
    ("mx-01-eu-west-1.prod.hydra.sophos.com", "Sophos"),
    ("cluster1.eu.in.mailcontrol.com", "Forcepoint"),
    ("abc123.fortimailcloud.com", "Fortinet FortiMail"),
    ("mx01.hornetsecurity.com", "Hornetsecurity"),
    ("contoso.fireeyecloud.com", "Trellix (FireEye)"),
    ("inbound-smtp.us-east-1.amazonaws.com", "Amazon SES"),
    ("mta6.am0.yahoodns.net", "Yahoo"),
])
def test_known_hosts(host, vendor):
    assert identify_gateways(pd.Series([host])).iloc[0] == vendor


@pytest.mark.parametrize("host", [
    "notiphmx.com", "iphmx.com.evil.example", "mail.protection.outlook.com.attacker.example", "mx.fourthcoffee.com",
    "ec2-1-2-3-4.compute.amazonaws.com", "68.232.140.21", "",
])
def test_suffixes_match_whole_labels_only(host):
    assert pd.isna(identify_gateways(pd.Series([host])).iloc[0])


def test_reply_decides_only_when_the_host_does_not():
    hosts = pd.Series(["mx1.hc4112-47.iphmx.com", None, "mx.litware.com", None, None], index=[5, 6, 7, 8, 9])
    replies = pd.Series([
        "550 5.7.26 This message does not pass authentication checks - gsmtp",  # the host wins
        "451 Internal resource temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#451",
        "554 5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=52.100.1.2",
        "550 5.1.1 The email account that you tried to reach does not exist. - gsmtp",
        None,
    ], index=hosts.index)
    result = identify_gateways(hosts, replies)
    assert result.index.equals(hosts.index)
    assert result.tolist()[:4] == ["Cisco Secure Email (IronPort)", "Mimecast", "Proofpoint", "Google"]
    assert pd.isna(result.iloc[4])
    assert isinstance(result.dtype, pd.CategoricalDtype) and result.name == "gateway"


def test_exchange_online_wrapping_does_not_look_like_a_gateway():
    reply = ("450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail]"
             " [LastAttemptedServerName=mx.litware.com] [AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]")
    assert pd.isna(identify_gateways(pd.Series([None]), pd.Series([reply])).iloc[0])


def test_whole_column_and_empty_input():
    hosts = pd.Series(["aspmx.l.google.com", "mx1.hc4112-47.iphmx.com"] * 5000, dtype=pd.StringDtype("pyarrow"))
    result = identify_gateways(hosts)
    assert result.value_counts()[["Google", "Cisco Secure Email (IronPort)"]].tolist() == [5000, 5000]
    assert identify_gateways(pd.Series([], dtype="string")).empty


def test_reply_must_align_with_hosts():
    with pytest.raises(ExoDeferralsError, match="rows"):
        identify_gateways(pd.Series(["a.example"]), pd.Series(["x", "y"]))


@pytest.mark.parametrize(("text", "problem"), [
    ('[[gateway]]\nvendor = "X"\nhosts = ["x.example"]\n', "no sources"),
    ('[[gateway]]\nvendor = "X"\nsources = ["https://x.example"]\n', "no hosts"),
    ('[[gateway]]\nvendor = "X"\nreplies = ["(unclosed"]\nsources = ["https://x.example"]\n', "regular expression"),
    ("[[gateway]\n", "not valid TOML"),
    ("", "no \\[\\[gateway\\]\\] entries"),
])
def test_broken_fingerprint_files_are_refused(tmp_path, text, problem):
    path = tmp_path / "gateways.toml"
    path.write_text(text)
    with pytest.raises(ExoDeferralsError, match=problem):
        load_fingerprints(path)


def test_custom_fingerprints(tmp_path):
    path = tmp_path / "gateways.toml"
    path.write_text('[[gateway]]\nvendor = "Litware relay"\nhosts = ["litware.com"]\nsources = ["https://x.example"]\n')
    hosts = pd.Series(["mx.litware.com", "aspmx.l.google.com"])
    result = identify_gateways(hosts, fingerprints=load_fingerprints(path))
    assert result.iloc[0] == "Litware relay" and pd.isna(result.iloc[1])
