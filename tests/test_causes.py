"""analysis.reference.causes: the rule file, the precedence engine, bad input and the `classify` CLI."""

from __future__ import annotations

import io
import math
import re
import tomllib
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analysis.reference.causes as causes
from analysis.cli.classify import main
from analysis.core.schema import CAUSES
from analysis.reference.causes import CLASSIFY_COLUMNS, classify_replies, load_rules
from analysis.reference.gateways import load_fingerprints

RULES_TEXT = files("analysis.reference").joinpath("data", "cause_rules.toml").read_text("utf-8")

# one hand-written reply per cause (written for these tests from the public docs, not taken from a corpus)
EXAMPLES = {
    "bad_address": "550 5.1.1 <nobody@fabrikam.example>: Recipient address rejected: User unknown in local table",
    "mailbox_disabled": "550 5.2.1 The account you are sending to has been disabled",
    "mailbox_full": "452 4.2.2 The mailbox of this recipient is full, try again later",
    "recipient_server_down": "450 4.4.315 Connection timed out [LastAttemptedServerName=mx.fabrikam.example]",
    "dns_failure": "450 4.4.312 DNS query failed [Message=InfoNoRecords] [LastAttemptedServerName=fabrikam.example]",
    "gateway_block": "554 5.7.1 Client host [203.0.113.9] rejected: not on the sender allow list",
    "reputation_blocklist": "554 5.7.1 Service unavailable; client [203.0.113.9] blocked using zen.spamhaus.org",
    "greylisting": "451 4.7.1 <a@fabrikam.example>: Recipient address rejected: greylisted for 300 seconds",
    "rate_limited": "421 4.7.0 Too many concurrent connections from your IP, slow down",
    "auth_policy": "550 5.7.23 Message rejected: SPF check failed for contoso.example",
    "tls_required": "530 5.7.0 Must issue a STARTTLS command first",
    "content_rejected": "554 5.7.1 Message rejected: a virus was found in the attachment",
    "message_too_large": "552 5.3.4 Message is too big for this system",
    "sender_restricted": "550 5.1.8 Access denied, bad outbound sender",
    "routing_config": "550 5.7.1 Unable to relay for someone@fabrikam.example",
}


def test_examples_cover_every_cause():
    assert set(EXAMPLES) | {"unknown"} == set(CAUSES)


@pytest.mark.parametrize("cause", sorted(EXAMPLES))
def test_each_cause_is_reachable(cause):
    row = classify_replies([EXAMPLES[cause]]).iloc[0]
    assert row["cause"] == cause, row.to_dict()
    assert row["rule"] and row["explanation"] and row["remedy"] and row["evidence"]


# --- the rule file ------------------------------------------------------------------------------------------
def test_rule_file_is_valid():
    raw = tomllib.loads(RULES_TEXT)
    ids = [r["id"] for r in raw["rules"]]
    assert len(ids) == len(set(ids))
    assert all(r["cause"] in CAUSES and r["cause"] != "unknown" for r in raw["rules"])
    assert all(r.get("source", "").strip() for r in raw["rules"])
    assert set(raw["causes"]) == set(CAUSES)
    ruleset = load_rules()
    assert len(ruleset.rules) == len(ids)
    assert {r.cause for r in ruleset.rules} == set(CAUSES) - {"unknown"}


def test_rule_vendors_are_known_gateways():
    known = {f.vendor for f in load_fingerprints()}
    named = {v for rule in load_rules().rules for v in rule.vendors}
    assert named and named <= known


def test_gateway_vendor_comes_from_the_remote_host():
    detail = "Reason: [{{LED={}}};{{MSG=}};{{FQDN=mx1.hc4112-47.iphmx.com}};{{IP=68.232.140.21}};{{LRT=}}]"
    found = classify_replies([detail.format("451 4.7.1 hold on"), "451 4.7.1 hold on"])
    # the vendor decides the first; the second falls back to the class of 4.7.1 (security or policy status)
    assert list(found["cause"]) == ["gateway_block", "gateway_block"]
    assert list(found["confidence"]) == ["code", "class"]
    assert found["evidence"].iloc[0] == "Cisco Secure Email (IronPort) gateway: 451"


def test_every_pattern_is_re2_compatible():
    """pyarrow runs the patterns with RE2: no look-arounds or back-references may slip in."""
    probe = pa.array(["450 4.4.316 probe"], pa.large_string())
    for rule in load_rules().rules:
        if rule.text is not None:
            pc.match_substring_regex(probe, rule.text, ignore_case=True)


def test_exchange_online_codes_are_covered():
    expected = {
        "450 4.4.312 DNS query failed": "dns_failure",
        "450 4.4.315 Connection timed out": "recipient_server_down",
        "450 4.4.316 Connection refused [Message=Socket error code 10061]": "gateway_block",
        "450 4.4.317 Cannot connect to remote server": "recipient_server_down",
        "450 4.4.318 Connection was closed abruptly": "recipient_server_down",
        "450 4.7.320 Certificate validation failed": "tls_required",
        "451 4.7.550 Access denied, please try again later": "rate_limited",
        "451 4.7.870 Access denied, please try again later": "rate_limited",
        "550 5.7.708 Access denied, traffic not accepted from this IP": "sender_restricted",
        "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains": "sender_restricted",
        "550 5.7.64 TenantAttribution; Relay Access Denied": "routing_config",
        "550 5.4.1 Relay Access Denied": "routing_config",
        "550 4.4.7 Message expired": "recipient_server_down",
        "550 5.4.300 Message expired": "recipient_server_down",
        "550 5.7.606 Access denied, banned sending IP [192.0.2.1]": "reputation_blocklist",
        "550 5.7.649 Access denied, banned sending IP [192.0.2.1]": "reputation_blocklist",
        "550 5.7.509 Access denied, sending domain contoso.example does not pass DMARC verification": "auth_policy",
        "550 5.7.23 The message was rejected because of Sender Policy Framework violation": "auth_policy",
        "550 5.7.26 Unauthenticated email is not accepted due to domain's DMARC policy": "auth_policy",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup": "bad_address",
        "550 5.1.90 You've reached your daily limit for message recipients": "sender_restricted",
        "550 5.2.2 Submission quota exceeded": "sender_restricted",
        "550 5.4.14 Routing loop detected": "routing_config",
    }
    found = classify_replies(list(expected))
    assert dict(zip(expected, found["cause"], strict=True)) == expected


# --- inner reply and precedence -------------------------------------------------------------------------
def test_inner_reply_decides_when_exchange_wraps_one():
    detail = (
        "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to "
        "send mail] [LastAttemptedServerName=mail.litware.example] [LastAttemptedIP=192.0.2.7:25] "
        "[AM6EUR05FT012.eop-eur05.prod.protection.outlook.com 2026-11-17T10:11:12.123Z 08DB1DF24DB12D84]};"
        "{MSG=};{FQDN=mail.litware.example};{IP=192.0.2.7};{LRT=11/17/2026 10:11:12 AM}]"
    )
    row = classify_replies([detail]).iloc[0]
    assert (row["cause"], row["enhanced_code"], row["transient"]) == ("tls_required", "5.7.3", True)
    assert row["evidence"].lower() == "starttls"


def test_wrapper_code_decides_when_no_rule_knows_the_inner_reply():
    row = classify_replies(["450 4.4.317 Cannot connect to remote server [Message=451 4.9.9 zzz]"]).iloc[0]
    assert (row["cause"], row["rule"], row["evidence"]) == ("recipient_server_down", "exo-cannot-connect", "4.4.317")


def test_specific_text_beats_the_code_it_came_with():
    found = classify_replies(["550 5.1.1 <x@fabrikam.example>: mailbox disabled", "550 5.1.1 <x@fabrikam.example>"])
    assert list(found["cause"]) == ["mailbox_disabled", "bad_address"]


def test_expiry_with_a_reason_keeps_the_reason():
    found = classify_replies([
        "550 5.4.317 Message expired, cannot connect to remote server(451 5.7.3 STARTTLS is required to send mail)",
        "550 5.4.312 Message expired, DNS query failed(ErrorRetry)",
        "550 5.4.316 Message expired, connection refused(Socket error code 10061)",
    ])
    assert list(found["cause"]) == ["tls_required", "dns_failure", "gateway_block"]
    assert not found["transient"].any()


def test_exchange_recipient_delivery_restrictions_are_the_recipients_policy():
    # Microsoft's "Fix error code 550 5.7.1 in Exchange Online": RESOLVER.RST.AuthRequired means the recipient
    # (a public folder there) requires all senders to be authenticated; its admin lifts it, not the sender's tenant.
    found = classify_replies([
        "Remote Server returned '<xxxxxxxx> #5.7.1 smtp;550 5.7.1 RESOLVER.RST.AuthRequired; authentication required "
        "[Stage: CreateMessage]'",
        "550 5.7.1 RESOLVER.RST.AuthRequired; authentication required",
    ])
    assert list(found["cause"]) == ["gateway_block", "gateway_block"]
    assert set(found["rule"]) == {"exo-recipient-delivery-restriction"}
    assert list(found["confidence"]) == ["text", "text"]


ENGINE_RULES = """
[causes.bad_address]
actor = "sender"
explanation = "e"
remedy = "r"
{others}
[[rules]]
id = "text"
cause = "mailbox_disabled"
source = "test"
[rules.match]
text = ['disabled']

[[rules]]
id = "code"
cause = "bad_address"
source = "test"
[rules.match]
codes = ["5.1.1", "4.4.317"]

[[rules]]
id = "vendor"
cause = "gateway_block"
source = "test"
vendor = ["acme"]
[rules.match]
smtp = ["5xx", "4xx"]

[[rules]]
id = "generic-low"
cause = "unknown_placeholder"
source = "test"
generic = true
[rules.match]
text = ['refused']

[[rules]]
id = "generic-high"
cause = "rate_limited"
source = "test"
generic = true
priority = 5
[rules.match]
text = ['refused']

[[rules]]
id = "class"
cause = "recipient_server_down"
source = "test"
[rules.match]
codes = ["x.4.*"]
"""


@pytest.fixture
def engine_rules(tmp_path: Path):
    others = "".join(
        f'[causes.{c}]\nactor = "either"\nexplanation = "e"\nremedy = "r"\n' for c in CAUSES if c != "bad_address"
    )
    path = tmp_path / "rules.toml"
    path.write_text(ENGINE_RULES.format(others=others).replace("unknown_placeholder", "routing_config"))
    return load_rules(path)


def test_precedence_tiers(engine_rules):
    replies = [
        "550 5.1.1 mailbox disabled",  # text beats code
        "550 5.1.1 no such user",  # code beats vendor
        "550 refused",  # vendor beats generic
        "450 4.4.317 Cannot connect [Message=451 4.4.9 refused]",  # outer code beats generic
        "450 4.4.9 refused",  # generic: higher priority wins
        "450 4.4.9 hmm",  # class wildcard
        "250 2.0.0 ok",
    ]
    vendors = [None, "acme", "acme", None, None, None, None]
    found = classify_replies(replies, vendors=vendors, rules=engine_rules)
    assert list(found["rule"].fillna("-")) == ["text", "code", "vendor", "code", "generic-high", "class", "-"]
    assert found["cause"].iloc[-1] == "unknown"


def test_vendor_rule_needs_the_vendor(engine_rules):
    found = classify_replies(["554 go away", "554 go away"], vendors=["acme", "other"], rules=engine_rules)
    assert list(found["cause"]) == ["gateway_block", "unknown"]
    assert list(found["confidence"]) == ["code", "none"]


def test_vendors_must_align(engine_rules):
    with pytest.raises(ValueError, match="vendors"):
        classify_replies(["550 x"], vendors=["a", "b"], rules=engine_rules)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[rules]]\nid = "a"\ncause = "nope"\nsource = "s"\n[rules.match]\ntext = ["x"]\n', "taxonomy"),
        ('[[rules]]\nid = "a"\ncause = "bad_address"\n[rules.match]\ntext = ["x"]\n', "source"),
        ('[[rules]]\nid = "a"\ncause = "bad_address"\nsource = "s"\n[rules.match]\ncodes = ["5.7"]\n', "code spec"),
        ('[[rules]]\nid = "a"\ncause = "bad_address"\nsource = "s"\n[rules.match]\ntext = ["x?"]\n', "empty"),
        ('[[rules]]\nid = "a"\ncause = "bad_address"\nsource = "s"\n[rules.match]\ntext = ["(x"]\n', "bad pattern"),
        ('[[rules]]\nid = "a"\ncause = "bad_address"\nsource = "s"\n[rules.match]\nsmtp = ["55"]\n', "basic code"),
        ('[[rules]]\nid = "a"\ncause = "bad_address"\nsource = "s"\nwhat = 1\n[rules.match]\nsmtp = ["550"]\n',
         "unknown keys"),
        ('[[rules]]\nid = "a"\ncause = "bad_address"\nsource = "s"\n[rules.match]\nsmtp = ["550"]\n'
         '[[rules]]\nid = "a"\ncause = "bad_address"\nsource = "s"\n[rules.match]\nsmtp = ["551"]\n', "duplicate"),
    ],
)
def test_bad_rule_files_are_refused(tmp_path, text, problem):
    causes_text = "".join(f'[causes.{c}]\nactor = "either"\nexplanation = "e"\nremedy = "r"\n' for c in CAUSES)
    path = tmp_path / "r.toml"
    path.write_text(causes_text + text)
    with pytest.raises(ValueError, match=problem):
        load_rules(path)


# --- transient, evidence, shape --------------------------------------------------------------------------
def test_transient_follows_the_reported_code_then_text_cues():
    found = classify_replies([
        "451 4.7.1 later", "550 5.7.1 no", "550 4.4.7 QUEUE.Expired; message expired",
        "Greylisted, please try again later", "permanent failure: giving up", "hello",
    ])
    assert found["transient"].tolist() == [True, False, False, True, False, pd.NA]


def test_output_shape_order_index_and_dtypes():
    replies = pd.Series([EXAMPLES["bad_address"], None, EXAMPLES["greylisting"]], index=[10, 20, 30])
    found = classify_replies(replies)
    assert list(found.columns) == list(CLASSIFY_COLUMNS)
    assert list(found.index) == [10, 20, 30]
    assert list(found["cause"]) == ["bad_address", "unknown", "greylisting"]
    for name, dtype in CLASSIFY_COLUMNS.items():
        assert str(found[name].dtype) == str(pd.api.types.pandas_dtype(dtype)), name
    assert list(found["cause"].cat.categories) == list(CAUSES)


def test_each_unique_reply_is_classified_once(monkeypatch):
    seen = []
    real = causes.parse_replies

    def counting(replies):
        seen.append(len(replies))
        return real(replies)

    monkeypatch.setattr(causes, "parse_replies", counting)
    found = classify_replies([EXAMPLES["bad_address"], EXAMPLES["dns_failure"], None] * 500)
    assert seen == [3]
    assert found["cause"].value_counts()[["bad_address", "dns_failure", "unknown"]].tolist() == [500, 500, 500]


BAD_INPUTS = [
    None, math.nan, pd.NA, "", "   ", "\x00\x01\x02\x1b[31m", "\ud800 lone surrogate", "é" * 50, "日本語のエラー",
    "x" * 100_000, "550 " + "[" * 50_000, 550, b"550 5.1.1 bytes", "Reason: [{LED=", "{LED=}];{MSG=",
]


def test_bad_input_never_crashes_and_gives_unknown():
    found = classify_replies(BAD_INPUTS)
    assert len(found) == len(BAD_INPUTS)
    assert set(found["cause"].iloc[:10]) == {"unknown"}
    assert found["cause"].notna().all()


REAL_ISH = st.sampled_from(list(EXAMPLES.values()))
REPLY = st.one_of(
    st.none(), st.just(math.nan), st.text(max_size=300), REAL_ISH,
    st.builds(lambda a, b: a + b, REAL_ISH, st.text(max_size=50)),
    st.builds(lambda c, t: f"{c} {t}", st.sampled_from(["421", "450 4.4.316", "550 5.7.606", "554", "451-4.7.1"]),
              st.text(max_size=80)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(REPLY, max_size=30))
def test_property_causes_always_in_taxonomy(replies):
    found = classify_replies(replies)
    assert len(found) == len(replies)
    assert found["cause"].isin(CAUSES).all()
    assert (found["rule"].isna() == found["cause"].eq("unknown")).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(REPLY, min_size=1, max_size=20))
def test_property_row_result_does_not_depend_on_neighbours(replies):
    together = classify_replies(replies)["cause"].tolist()
    alone = [classify_replies([r])["cause"].iloc[0] for r in replies]
    assert together == alone


# --- CLI ------------------------------------------------------------------------------------------------
def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def test_cli_reads_files_and_guards_formulas(tmp_path, capsys):
    path = tmp_path / "replies.txt"
    path.write_bytes(
        ("\ufeff" + EXAMPLES["dns_failure"] + "\r\n=HYPERLINK(\"http://x\")\n-2+3\n\n").encode("utf-8")
    )
    assert main([str(path)]) == 0
    table = _csv(capsys.readouterr().out)
    assert list(table.columns) == list(CLASSIFY_COLUMNS)
    assert table["cause"].tolist() == ["dns_failure", "unknown", "unknown", "unknown"]
    assert table["reply"].tolist()[1:3] == ["'=HYPERLINK(\"http://x\")", "'-2+3"]


def test_cli_reads_stdin(monkeypatch, capsys):
    stdin = io.TextIOWrapper(io.BytesIO((EXAMPLES["greylisting"] + "\n").encode()), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert main([]) == 0
    assert _csv(capsys.readouterr().out)["cause"].tolist() == ["greylisting"]


def test_cli_reports_a_missing_file(tmp_path, capsys):
    assert main([str(tmp_path / "absent.txt")]) == 3
    assert "absent.txt" in capsys.readouterr().err


def test_cli_is_dispatched_by_the_main_command(tmp_path, capsys):
    from analysis.cli import main as cli_main

    path = tmp_path / "r.txt"
    path.write_text(EXAMPLES["tls_required"] + "\n")
    assert cli_main(["classify", str(path)]) == 0
    assert re.search(r"tls_required", capsys.readouterr().out)


def test_evidence_is_the_matched_text_or_code():
    found = classify_replies(["550 5.7.1 blocked using zen.spamhaus.org", "550 5.1.10 x"])
    assert found["evidence"].tolist() == ["blocked using", "5.1.10"]
    assert np.all(found["smtp_code"].to_numpy() == 550)
