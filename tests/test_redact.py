"""analysis.report.redact: stable keyed pseudonyms, free-text scrubbing, dtypes kept, and nothing left behind."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.core.schema import check_events, conform
from analysis.report.redact import MIN_BARE_LOCAL, Redactor, redact
from analysis.sample.generator import generate_story

REPLY = ("550 5.1.1 <Anna.Schmidt@Fabrikam.com>: Recipient address rejected: User unknown; original message "
         "<ABC123@mail.contoso.com> from ben.meyer@contoso.com, see http://help.fabrikam.com/fabrikam.com.html "
         "[LastAttemptedServerName=mail.fabrikam.com] anna.schmidt was not found")
GATEWAY_REPLY = ("451 4.4.0 421 mx1.hc4112-47.iphmx.com access from 52.100.77.170 denied "
                 "[AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]")


def events() -> pd.DataFrame:
    return conform(pd.DataFrame({
        "timestamp": pd.to_datetime(["2026-11-16 08:00", "2026-11-16 08:05", "2026-11-16 09:00"], utc=True),
        "message_id": ["<ABC123@mail.contoso.com>", "<ABC123@mail.contoso.com>", "<XYZ@mail.contoso.com>"],
        "trace_id": ["7964b31a-db8d-adcb-c7f8-0003bbb854c5"] * 2 + ["11111111-2222-3333-4444-555555555555"],
        "sender": ["ben.meyer@contoso.com"] * 3,
        "recipient": ["anna.schmidt@fabrikam.com", "anna.schmidt@fabrikam.com", "zoe@tailspintoys.com"],
        "recipient_domain": ["fabrikam.com", "fabrikam.com", "tailspintoys.com"],
        "subject": ["Invoice 4711 for November", "Invoice 4711 for November", "<script>alert(1)</script>"],
        "event": ["defer", "fail", "defer"],
        "reply": [REPLY, "550 4.4.7 expired; trace 7964B31A-DB8D-ADCB-C7F8-0003BBB854C5", GATEWAY_REPLY],
        "remote_host": ["mail.fabrikam.com", "mail.fabrikam.com", "mx1.hc4112-47.iphmx.com"],
        "remote_ip": ["198.51.100.7", "198.51.100.7", "68.232.140.21"],
        "exo_host": ["AM6EUR05FT012.eop-eur05.prod.protection.outlook.com"] * 3,
        "exo_ip": ["52.100.1.2", "40.107.3.4", "52.100.77.170"],
        "connector": ["Outbound to contoso.onmicrosoft.com"] * 3,
        "source_file": ["/home/ben.meyer/traces/trace.csv"] * 3,
    }))


def test_addresses_get_stable_keyed_pseudonyms_and_domains_stay():
    out, redactor = redact(events(), secret="s3cret")
    assert out["recipient"].tolist()[0] == out["recipient"].tolist()[1]
    assert re.fullmatch(r"user-[0-9a-f]{8}@fabrikam\.com", out["recipient"].iloc[0])
    assert out["sender"].nunique() == 1 and out["sender"].iloc[0].endswith("@contoso.com")
    assert out["recipient_domain"].tolist() == ["fabrikam.com", "fabrikam.com", "tailspintoys.com"]
    # the same secret gives the same pseudonyms; another (or a random) one gives others
    assert redact(events(), secret="s3cret")[0]["recipient"].equals(out["recipient"])
    assert redactor.address("ANNA.SCHMIDT@fabrikam.com ") == out["recipient"].iloc[0]
    assert Redactor("other").address("anna.schmidt@fabrikam.com") != out["recipient"].iloc[0]
    assert Redactor().secret != Redactor().secret


def test_subject_ids_and_free_text():
    ev = events()
    out, redactor = redact(ev, secret=b"k")
    assert out["subject"].str.fullmatch(r"subject-[0-9a-f]{8}").all()
    assert out["subject"].iloc[0] == out["subject"].iloc[1] != out["subject"].iloc[2]
    assert out["message_id"].str.fullmatch(r"msg-[0-9a-f]{16}").all()
    assert out["trace_id"].str.fullmatch(r"trace-[0-9a-f]{16}").all()
    reply = out["reply"].iloc[0]
    assert out["recipient"].iloc[0] in reply  # the recipient quoted by the remote server: same pseudonym
    assert out["message_id"].iloc[0] in reply  # a message id of the table inside text: its pseudonym
    assert out["sender"].iloc[0] in reply
    assert redactor.address("anna.schmidt") in reply  # a bare local part of a known address
    assert "fabrikam.com" in reply and "mail.fabrikam.com" in reply  # domains kept without redact_domains
    assert out["trace_id"].iloc[0] in out["reply"].iloc[1]  # trace ids in text, whatever their case
    assert out["reply"].iloc[2] == GATEWAY_REPLY  # no address, id or local part: unchanged
    assert out["source_file"].iloc[0] == "trace.csv"
    low = out.to_csv(index=False).lower()
    assert "anna" not in low and "ben.meyer" not in low and "abc123" not in low and "7964b31a" not in low
    assert "invoice" not in low and "script" not in low


def test_dtypes_and_categories_are_kept_and_unused_categories_redacted():
    ev = events()
    ev["recipient"] = ev["recipient"].astype("category").cat.add_categories(["unused.person@fabrikam.com"])
    out, _ = redact(ev)
    assert check_events(out.assign(recipient=out["recipient"].astype(ev["sender"].dtype))) == []
    assert isinstance(out["recipient"].dtype, pd.CategoricalDtype)
    assert not any("unused" in c for c in out["recipient"].cat.categories)
    assert out["event"].dtype == ev["event"].dtype  # fixed category lists untouched
    assert out["remote_ip"].tolist() == ev["remote_ip"].tolist()  # IPs are the evidence: kept
    assert out.index.equals(ev.index)


def test_redact_domains_hides_names_but_keeps_microsoft_and_vendor():
    out, redactor = redact(events(), secret="k", redact_domains=True)
    fabrikam = redactor.domain("fabrikam.com")
    assert re.fullmatch(r"domain-[0-9a-f]{8}\.example", fabrikam)
    assert out["recipient"].iloc[0].endswith("@" + fabrikam)
    assert out["recipient_domain"].iloc[0] == fabrikam
    assert re.fullmatch(rf"host-[0-9a-f]{{8}}\.{re.escape(fabrikam)}", out["remote_host"].iloc[0])
    assert re.fullmatch(r"host-[0-9a-f]{8}\.iphmx\.com", out["remote_host"].iloc[2])  # vendor kept
    assert out["exo_host"].iloc[0] == "AM6EUR05FT012.eop-eur05.prod.protection.outlook.com"
    assert re.fullmatch(r"Outbound to tenant-[0-9a-f]{8}\.onmicrosoft\.com", out["connector"].iloc[0])
    text = out.to_csv(index=False).lower()
    for name in ("fabrikam", "contoso", "tailspintoys", "hc4112"):
        assert name not in text
    assert "eop-eur05.prod.protection.outlook.com" in text and "52.100.77.170" in text


def test_leaks_finds_the_input_and_nothing_in_the_redacted_table():
    ev = events()
    out, redactor = redact(ev, redact_domains=True)
    assert redactor.leaks(out.to_csv()) == {}
    found = redactor.leaks(ev.to_csv().upper())
    assert found["addresses"] == {"anna.schmidt@fabrikam.com", "ben.meyer@contoso.com", "zoe@tailspintoys.com"}
    assert found["subjects"] == {"invoice 4711 for november", "<script>alert(1)</script>"}
    assert "anna.schmidt" in found["local parts"]
    assert {"fabrikam.com", "mail.fabrikam.com", "mx1.hc4112-47.iphmx.com"} <= found["names"]
    assert redactor.leaks("Reports are sent for November, see the report") == {}


def test_sample_story_redacted_holds_no_address_or_subject():
    story = generate_story(messages=400)
    out, _ = redact(story, redact_domains=True)
    text = out.to_csv(index=False).lower()
    addresses = set(story["sender"].dropna().str.lower()) | set(story["recipient"].dropna().str.lower())
    assert all(a not in text for a in addresses)
    locals_ = {a.split("@")[0] for a in addresses if len(a.split("@")[0]) >= MIN_BARE_LOCAL}
    assert all(f"{local}@" not in text and f" {local} " not in text for local in locals_)
    subjects = {s.lower() for s in story["subject"].dropna()}
    assert all(s not in text for s in subjects if len(s) >= 8)
    # domains as whole names (Exchange Online's own servers, kept, end in outlook.com), and every remote host
    domains = set(story["recipient_domain"].dropna().astype(str))
    assert not [d for d in domains if re.search(rf"(?<![\w.-]){re.escape(d)}(?![\w-])", text)]
    assert not [h for h in story["remote_host"].dropna().str.lower().unique() if h in text]


local_parts = st.from_regex(r"[a-z][a-z0-9._+-]{2,20}[a-z0-9]", fullmatch=True)
domains = st.from_regex(r"[a-z][a-z0-9-]{1,15}\.(com|de|co\.uk|example)", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(local_parts, domains), min_size=1, max_size=8), st.booleans())
def test_every_address_is_replaced_wherever_it_appears(pairs, hide_domains):
    addresses = [f"{local}@{domain}" for local, domain in pairs]
    frame = conform(pd.DataFrame({
        "recipient": addresses, "sender": addresses[::-1],
        "recipient_domain": [domain for _, domain in pairs],
        "reply": [f"550 5.1.1 <{a.upper()}>: unknown, also '{addresses[0]}'." for a in addresses],
    }))
    out, redactor = redact(frame, redact_domains=hide_domains)
    text = out.to_csv(index=False).lower()
    assert all(a not in text for a in addresses)
    if hide_domains:
        assert all(domain not in text for _, domain in pairs)
    assert redactor.leaks(text) == {}
    assert [redactor.address(a) for a in addresses] == out["recipient"].tolist()


def test_empty_table():
    out, redactor = redact(conform(pd.DataFrame()))
    assert out.empty and check_events(out) == []
    assert redactor.leaks("anything") == {}


@pytest.mark.parametrize("value", ["undisclosed-recipients", "", "postmaster@localhost"])
def test_odd_addresses(value):
    out, _ = redact(conform(pd.DataFrame({"recipient": [value]})))
    assert out["recipient"].iloc[0].startswith("user-")
