"""analysis.tagging.tag: per-row tags and the cross-event reasoning, on hand-built canonical event tables."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

import analysis.reference.causes as causes
from analysis.core.schema import TAG_COLUMNS, check_events, conform
from analysis.reference.endpoints import Endpoints
from analysis.tagging.tag import EXTRA_TAG_COLUMNS, tag

# A tiny endpoint list: one Exchange Online mail-flow set and one non-mail Microsoft 365 set.
ENDPOINTS = Endpoints(
    [
        {"id": 10, "serviceArea": "Exchange", "urls": ["*.mail.protection.outlook.com"],
         "ips": ["40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"], "tcpPorts": "25",
         "expressRoute": False, "category": "Allow", "required": True},
        {"id": 1, "serviceArea": "Exchange", "urls": ["outlook.office.com"], "ips": ["13.107.6.152/31"],
         "tcpPorts": "80,443", "expressRoute": True, "category": "Optimize", "required": True},
    ],
    version="2026110100",
)

START = pd.Timestamp("2026-11-16 08:00", tz="UTC")
TIMEOUT = "450 4.4.315 Connection timed out"
VAGUE = "451 Requested action aborted"  # names no cause: unknown on its own
GREY = "450 4.2.0 <u@adventure-works.example>: Recipient address rejected: Greylisted, see http://postgrey.example/"
EXPIRED = "550 4.4.7 QUEUE.Expired; message expired"
STARTTLS = "450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail]"


def events(rows: list[tuple]) -> pd.DataFrame:
    """Canonical events from (message, recipient, minutes after START, event, reply, exo_ip) tuples."""
    frame = pd.DataFrame(
        [
            {
                "trace_id": msg, "message_id": f"<{msg}@contoso.example>", "recipient": rcpt,
                "recipient_domain": rcpt.split("@")[1], "timestamp": START + pd.Timedelta(minutes=minutes),
                "event": event, "reply": reply, "exo_ip": exo_ip, "direction": "outbound",
                "sender": "alice@contoso.example", "remote_host": "mx1." + rcpt.split("@")[1],
            }
            for msg, rcpt, minutes, event, reply, exo_ip in rows
        ]
    )
    return conform(frame)


def test_tag_columns_dtypes_and_plain_rows():
    ev = events([
        ("m1", "a@fabrikam.example", 0, "receive", None, None),
        ("m1", "a@fabrikam.example", 1, "defer", TIMEOUT, "40.107.3.4"),
        ("m1", "a@fabrikam.example", 30, "deliver", "250 2.6.0 Queued mail for delivery", "40.107.3.5"),
    ])
    ev.index = [7, 8, 9]
    out = tag(ev, endpoints=ENDPOINTS)
    assert check_events(out, {**TAG_COLUMNS, **EXTRA_TAG_COLUMNS}) == []
    assert check_events(out) == []
    assert list(out.index) == [7, 8, 9]
    assert out["cause"].isna().tolist() == [True, False, True]
    assert out.loc[8, "cause"] == "recipient_server_down"
    assert out.loc[8, "transient"]
    assert out.loc[8, "cause_rule"] == "exo-connection-timed-out"
    assert "TCP 25" in out.loc[8, "remedy"] and out.loc[8, "cause_explanation"]


def test_endpoint_tags():
    ev = events([("m1", "a@fabrikam.example", 0, "defer", TIMEOUT, "52.101.9.9")] * 3)
    ev["exo_ip"] = pd.array(["52.101.9.9", "198.51.100.7", None], dtype=ev["exo_ip"].dtype)
    ev["remote_ip"] = pd.array(["13.107.6.152", "192.0.2.1", None], dtype=ev["remote_ip"].dtype)
    out = tag(ev, endpoints=ENDPOINTS)
    assert out["exo_ip_published"].tolist() == [True, False, pd.NA]
    assert out["endpoint_set"].tolist() == [10, pd.NA, pd.NA]
    assert out["remote_in_m365"].tolist() == [True, False, pd.NA]


def test_classify_false_leaves_causes_empty():
    ev = events([("m1", "a@fabrikam.example", 0, "defer", TIMEOUT, "40.107.3.4")])
    out = tag(ev, endpoints=ENDPOINTS, classify=False)
    assert out["cause"].isna().all() and out["cause_rule"].isna().all()
    assert out["exo_ip_published"].tolist() == [True]


def test_only_unique_replies_are_classified(monkeypatch):
    sizes = []
    real = causes.parse_replies
    monkeypatch.setattr(causes, "parse_replies", lambda replies: sizes.append(len(replies)) or real(replies))
    rows = [(f"m{i}", "a@fabrikam.example", i, "defer", TIMEOUT if i % 2 else GREY, "40.107.3.4") for i in range(200)]
    tag(events(rows), endpoints=ENDPOINTS)
    assert sizes == [2]


# --- (b) a site that refuses some Exchange Online source ranges and accepts others ------------------------
def _story(refused_reply: str, n_messages: int = 3) -> list[tuple]:
    """Messages retried from 52.100.0.0/14 (refused) and then 40.107.0.0/16 (accepted), and one expiring."""
    rows = []
    for i in range(n_messages):
        msg = f"t{i}"
        rows += [
            (msg, "bob@tailspintoys.example", 10 * i, "defer", refused_reply, f"52.100.{i}.10"),
            (msg, "bob@tailspintoys.example", 10 * i + 5, "defer", refused_reply, f"52.101.{i}.11"),
            (msg, "bob@tailspintoys.example", 10 * i + 9, "deliver", "250 2.0.0 Ok: queued", f"40.107.{i}.12"),
        ]
    rows += [
        ("lost", "carol@tailspintoys.example", 0, "defer", refused_reply, "52.102.0.1"),
        ("lost", "carol@tailspintoys.example", 60, "defer", refused_reply, "52.103.0.1"),
        ("lost", "carol@tailspintoys.example", 1440, "fail", EXPIRED, "52.100.0.2"),
    ]
    return rows


def test_selective_refusal_by_source_range_is_a_gateway_block():
    out = tag(events(_story(VAGUE)), endpoints=ENDPOINTS)
    refusals = out[out["event"] == "defer"]
    assert set(refusals["cause"]) == {"gateway_block"}
    assert set(refusals["cause_rule"]) == {"cross:selective-range-refusal"}
    evidence = refusals["cause_evidence"].iloc[0]
    assert "52.100.0.0/14 (8 refused)" in evidence and "40.107.0.0/16 (3 accepted)" in evidence
    # (a) the expiry inherits the deferrals' cause and says so
    final = out[out["event"] == "fail"].iloc[0]
    assert final["cause"] == "gateway_block"
    assert final["cause_rule"] == "expiry-inherits:cross:selective-range-refusal"
    assert final["cause_evidence"].startswith("message expired after 2 deferrals; inherits gateway_block")
    assert "52.100.0.0/14" in final["cause_evidence"]


def test_refusals_without_a_source_ip_take_the_sites_split_when_their_reply_matches():
    """A Detail export carries no EXO source IP; the same refusal seen with IPs in another export decides."""
    reputation = "421 Your access to this mail system has been rejected due to the sending MTA's poor reputation"
    rows = [
        *_story(reputation),
        ("d1", "dave@tailspintoys.example", 30, "defer", reputation, None),
        ("d1", "dave@tailspintoys.example", 40, "defer", TIMEOUT, None),
        ("d2", "erin@fabrikam.example", 30, "defer", reputation, None),
    ]
    out = tag(events(rows), endpoints=ENDPOINTS)

    def row(trace_id: str, reply: str) -> pd.Series:
        found = out[out["trace_id"].eq(trace_id).to_numpy() & out["reply"].eq(reply).to_numpy()]
        assert len(found) == 1
        return found.iloc[0]

    unsourced = row("d1", reputation)
    assert unsourced["cause"] == "gateway_block"
    assert "52.100.0.0/14" in unsourced["cause_evidence"] and "not in its export" in unsourced["cause_evidence"]
    assert row("d1", TIMEOUT)["cause"] == "recipient_server_down"  # another reply keeps its own cause
    assert row("d2", reputation)["cause"] == "reputation_blocklist"  # another site shows no split


def test_an_unsourced_refusal_takes_the_split_of_its_own_site_only():
    """Two sites refuse selectively, each with its own reply: an attempt without a source IP is re-tagged only
    when its own site gave its reply to the refused ranges."""
    reputation = "421 Your access to this mail system has been rejected due to the sending MTA's poor reputation"
    other_site = [(f"f{m}", r.replace("tailspintoys", "fabrikam"), *rest) for m, r, *rest in _story(VAGUE)]
    rows = [
        *_story(reputation), *other_site,
        ("d1", "erin@fabrikam.example", 30, "defer", reputation, None),  # tailspintoys' reply, at fabrikam
        ("d2", "dave@tailspintoys.example", 30, "defer", reputation, None),
    ]
    out = tag(events(rows), endpoints=ENDPOINTS)
    assert set(out.loc[out["trace_id"].str.startswith("f") & out["event"].eq("defer"), "cause"]) == {"gateway_block"}
    unsourced = out.set_index("trace_id")["cause"]
    assert unsourced["d2"] == "gateway_block" and unsourced["d1"] == "reputation_blocklist"


def test_unpublished_sources_are_grouped_by_24():
    rows = []
    for i in range(3):
        rows += [
            (f"u{i}", "d@northwind.example", 10 * i, "defer", VAGUE, f"198.51.100.{i + 7}"),
            (f"u{i}", "d@northwind.example", 10 * i + 2, "defer", VAGUE, f"198.51.100.{i + 20}"),
            (f"u{i}", "d@northwind.example", 10 * i + 5, "deliver", "250 ok", f"203.0.113.{i + 9}"),
        ]
    out = tag(events(rows), endpoints=ENDPOINTS)
    refusal = out[out["event"] == "defer"].iloc[0]
    assert refusal["cause"] == "gateway_block"
    assert "198.51.100.0/24 (6 refused)" in refusal["cause_evidence"]
    assert "203.0.113.0/24 (3 accepted)" in refusal["cause_evidence"]


def test_a_split_that_chance_explains_is_not_evidence():
    """One refusal and one acceptance (or greylisting's refuse-then-accept) do not prove a range block."""
    single = tag(events([("u1", "d@northwind.example", 0, "defer", VAGUE, "198.51.100.7"),
                         ("u1", "d@northwind.example", 5, "deliver", "250 ok", "203.0.113.9")]), endpoints=ENDPOINTS)
    assert single["cause"].iloc[0] != "gateway_block"
    grey = []
    for i in range(3):  # by chance every first attempt came from 40.107/16 and every retry from elsewhere
        retry = f"40.92.{i}.1" if i < 2 else f"52.100.{i}.1"
        grey += [(f"g{i}", "x@adventure.example", 10 * i, "defer", GREY, f"40.107.{i}.1"),
                 (f"g{i}", "x@adventure.example", 10 * i + 8, "deliver", "250 ok", retry)]
    out = tag(events(grey), endpoints=ENDPOINTS)
    assert set(out.loc[out["event"] == "defer", "cause"]) == {"greylisting"}


def test_a_clear_split_overrides_greylisting_text_but_a_single_refusal_does_not():
    clear = tag(events(_story(GREY)), endpoints=ENDPOINTS)
    assert set(clear.loc[clear["event"] == "defer", "cause"]) == {"gateway_block"}
    single = tag(events(_story(GREY, n_messages=1)[:3]), endpoints=ENDPOINTS)
    assert set(single.loc[single["event"] == "defer", "cause"]) == {"greylisting"}


def test_specific_causes_and_mixed_ranges_are_left_alone():
    rows = [
        ("s1", "x@wingtiptoys.example", 0, "fail", "550 5.1.1 <x@wingtiptoys.example>: User unknown", "52.100.0.1"),
        ("s2", "y@wingtiptoys.example", 0, "deliver", "250 ok", "40.107.0.1"),
        # fourthcoffee: every range both refused (outage) and accepted (later): not selective
        ("f1", "z@fourthcoffee.example", 0, "defer", TIMEOUT, "52.100.0.1"),
        ("f1", "z@fourthcoffee.example", 5, "defer", TIMEOUT, "40.107.0.1"),
        ("f1", "z@fourthcoffee.example", 900, "deliver", "250 ok", "52.100.0.3"),
        ("f2", "z@fourthcoffee.example", 910, "deliver", "250 ok", "40.107.0.3"),
    ]
    out = tag(events(rows), endpoints=ENDPOINTS)
    assert out["cause"].iloc[0] == "bad_address"
    assert out["cause"].iloc[2] == out["cause"].iloc[3] == "recipient_server_down"
    assert not out["cause_rule"].fillna("").str.startswith("cross:").any()


# --- (c) greylisting vs persistent refusal by retry outcome ----------------------------------------------
def test_deferred_once_then_delivered_is_greylisting():
    rows = [
        ("g1", "e@adventure-works.example", 0, "defer", VAGUE, "40.107.0.1"),
        ("g1", "e@adventure-works.example", 10, "deliver", "250 ok", "40.107.0.1"),
    ]
    out = tag(events(rows), endpoints=ENDPOINTS)
    assert out["cause"].iloc[0] == "greylisting"
    assert out["cause_rule"].iloc[0] == "cross:deferred-then-delivered"
    assert out["cause_evidence"].iloc[0].startswith("deferred 1x")


def test_greylisting_that_never_clears_is_a_persistent_refusal():
    rows = [("p1", "f@adventure-works.example", 20 * i, "defer", GREY, "40.107.0.1") for i in range(3)]
    rows.append(("p1", "f@adventure-works.example", 1440, "fail", EXPIRED, "40.107.0.1"))
    rows += [
        ("ok", "g@adventure-works.example", 0, "defer", GREY, "40.107.0.9"),
        ("ok", "g@adventure-works.example", 10, "deliver", "250 ok", "40.107.0.9"),
    ]
    out = tag(events(rows), endpoints=ENDPOINTS)
    assert set(out["cause"].iloc[:3]) == {"gateway_block"}
    assert out["cause_rule"].iloc[0] == "cross:persistent-greylisting"
    assert out["cause_evidence"].iloc[0].startswith("greylisted 3x and never accepted")
    assert out["cause"].iloc[3] == "gateway_block"  # the expiry inherits it
    assert out["cause"].iloc[4] == "greylisting"  # cleared on retry: real greylisting


# --- (a) expiry inheritance ----------------------------------------------------------------------------
def test_expiry_inherits_the_most_frequent_earlier_cause():
    rows = [
        ("x1", "h@litware.example", 0, "defer", STARTTLS, "40.107.0.1"),
        ("x1", "h@litware.example", 30, "defer", STARTTLS, "40.107.0.2"),
        ("x1", "h@litware.example", 60, "defer", TIMEOUT, "40.107.0.3"),
        ("x1", "h@litware.example", 1440, "fail", EXPIRED, "40.107.0.4"),
        ("x1", "h@litware.example", 1500, "defer", "450 4.4.312 DNS query failed", "40.107.0.5"),  # later
        ("x2", "i@litware.example", 1440, "fail", EXPIRED, "40.107.0.4"),  # nothing to inherit
    ]
    out = tag(events(rows), endpoints=ENDPOINTS)
    final = out.iloc[3]
    assert final["cause"] == "tls_required"
    assert final["cause_rule"] == "expiry-inherits:text-tls"
    assert final["cause_evidence"].startswith("message expired after 3 deferrals; inherits tls_required from 2")
    assert not final["transient"]
    assert "STARTTLS" in final["remedy"] or "TLS" in final["remedy"]
    assert out.iloc[5]["cause"] == "recipient_server_down"
    assert out.iloc[5]["cause_rule"] == causes.classify_replies([EXPIRED])["rule"].iloc[0]  # its own rule


@pytest.mark.parametrize("classify", [True, False])
def test_empty_events(classify):
    out = tag(events([]), endpoints=ENDPOINTS, classify=classify)
    assert out.empty and check_events(out, TAG_COLUMNS) == []


# --- tagged input, confidence (issue 13) ------------------------------------------------------------------------
def test_tagging_a_tagged_table_returns_it_without_classifying_again(monkeypatch):
    ev = events([
        ("m1", "a@fabrikam.example", 0, "defer", TIMEOUT, "40.107.3.4"),
        ("m1", "a@fabrikam.example", 30, "deliver", "250 2.6.0 Queued mail for delivery", "40.107.3.5"),
    ])
    once = tag(ev, endpoints=ENDPOINTS)

    def refuse(*args, **kwargs):
        raise AssertionError("classified again")

    monkeypatch.setattr(sys.modules["analysis.tagging.tag"], "classify_replies", refuse)
    again = tag(once, endpoints=ENDPOINTS)
    pd.testing.assert_frame_equal(again, once)
    assert again is not once  # a new frame: adding a column to it leaves the first alone
    again["extra"] = 1
    assert "extra" not in once.columns
    with pytest.raises(AssertionError, match="classified again"):  # untagged input is classified
        tag(ev, endpoints=ENDPOINTS)


def test_cause_confidence_says_how_the_cause_was_found():
    ev = events([
        ("m1", "a@fabrikam.example", 0, "receive", None, None),
        ("m1", "a@fabrikam.example", 1, "defer", STARTTLS, "40.107.3.4"),  # words of a rule
        ("m2", "b@fabrikam.example", 2, "defer", VAGUE, "40.107.3.4"),  # its code class only
        ("m3", "c@fabrikam.example", 3, "fail", "the remote end went away", "40.107.3.4"),  # nothing known
    ])
    out = tag(ev, endpoints=ENDPOINTS)
    assert check_events(out, {**TAG_COLUMNS}) == []
    shown = out["cause_confidence"].astype(object).where(out["cause_confidence"].notna(), None).tolist()
    assert shown == [None, "text", "class", "none"]
    classified = causes.classify_replies(ev["reply"].iloc[1:])
    assert shown[1:] == classified["confidence"].astype(object).tolist()
    assert out["cause"].astype(object).tolist()[1:] == ["tls_required", "recipient_server_down", "unknown"]


def test_a_cross_event_retag_says_its_confidence_is_the_trace_not_the_code_class():
    ev = events([
        ("m1", "a@fabrikam.example", 0, "defer", VAGUE, "40.107.3.4"),  # alone: recipient_server_down by class
        ("m1", "a@fabrikam.example", 30, "deliver", "250 2.6.0 Queued mail for delivery", "40.107.3.5"),
        ("m2", "b@fabrikam.example", 0, "defer", VAGUE, "40.107.3.4"),  # never delivered, not failed: stays
    ])
    out = tag(ev, endpoints=ENDPOINTS)
    assert out["cause_rule"].iloc[0] == "cross:deferred-then-delivered"
    assert out["cause"].iloc[0] == "greylisting" and out["cause_confidence"].iloc[0] == "text"
    assert not str(out["cause_rule"].iloc[2]).startswith("cross:") and out["cause_confidence"].iloc[2] == "class"


def test_tag_of_a_folder_that_is_no_store_names_it(tmp_path):
    with pytest.raises(TypeError, match=r"tag: .*not-a-store.* is no store folder"):
        tag(str(tmp_path / "not-a-store"))
