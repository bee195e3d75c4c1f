"""analysis.report.proof and analysis.report.inputs: the refusals-by-source-range proof found without an
allow-list, its corrected list in the appliance's format, the input problems said at the top of a report, files
named by format and date, the endpoint data's age, human durations and the partner scope check."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from analysis.io.loader import load_trace
from analysis.report.findings import cause_label, findings, human_duration
from analysis.report.inputs import (
    endpoints_note,
    file_labels,
    input_problems,
    load_table,
    other_domains,
    problems_html,
    scope_leaks,
)
from analysis.report.proof import domain_rows, rates_table, refusal_proofs, source_ranges, telling_messages
from analysis.tagging.tag import tag

PS51_HEADER = ('#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace\r\n"PSComputerName",'
               '"RunspaceId","PSShowComputerName","Organization","MessageId","Received","SenderAddress",'
               '"RecipientAddress","Subject","Status","ToIP","FromIP","Size","MessageTraceId","StartDate","EndDate",'
               '"Index"\r\n')


@pytest.fixture(scope="module")
def loaded(sample_dir: Path):
    return load_trace(sample_dir, errors="report", with_report=True)


@pytest.fixture(scope="module")
def tagged(loaded) -> pd.DataFrame:
    return tag(loaded[0])


# ---------------------------------------------------------------- the proof

def test_the_proof_names_the_refused_range_without_an_allowlist(tagged):
    proofs = refusal_proofs(tagged)
    assert [p.domain for p in proofs] == ["tailspintoys.com"]  # the other domains' deferrals are not selective
    proof = proofs[0]
    # the numbers, counted here from the events themselves rather than from the summary
    rows = domain_rows(tagged, ["tailspintoys.com"])
    exo = rows["exo_ip"].astype("string")
    from_52_100 = exo.str.match(r"^52\.(10[0-3])\.").fillna(False)
    defers = rows["event"].astype(str).eq("defer")
    delivers = rows["event"].astype(str).isin(["deliver", "send"])  # the extended report's SEND: handed over
    assert proof.refused == ["52.100.0.0/14"]
    assert proof.refusals == int((from_52_100 & defers).sum()) > 100
    assert not (from_52_100 & delivers).any() and (~from_52_100 & exo.notna() & delivers).sum() > 10
    assert set(proof.accepted) == {"40.107.0.0/16", "40.92.0.0/15", "104.47.0.0/17"}
    assert proof.gateway == "Cisco Secure Email (IronPort)" and proof.fmt == "ironport"
    assert "refused 172 of 172" in proof.sentence() and "lacks 52.100.0.0/14" in proof.sentence()


def test_the_corrected_list_is_in_the_appliance_format_and_holds_every_smtp_range(tagged):
    from analysis.audit.allowlist import audit_allowlist
    from analysis.reference.endpoints import Endpoints

    proof = refusal_proofs(tagged)[0]
    assert "ALLOWED_LIST:" in proof.corrected and "52.100.0.0/14" in proof.corrected
    again = audit_allowlist(proof.corrected, Endpoints.bundled())  # sniffed back as an IronPort sender group
    assert again.format == "ironport" and again.missing_cidrs == []


def test_the_proof_table_marks_the_refused_range(tagged):
    table = rates_table(refusal_proofs(tagged)[0])
    first = table.iloc[0]
    assert first["Exchange Online source range"] == "52.100.0.0/14" and first["refused share"] == "100 %"
    assert first["verdict"].startswith("REFUSED") and set(table["verdict"].iloc[1:]) == {"accepted"}


def test_no_proof_when_every_range_is_refused_or_none_is(tagged):
    rows = domain_rows(tagged, ["tailspintoys.com"])
    refused_only = rows[rows["exo_ip"].astype("string").str.startswith("52.").fillna(True)]
    assert refusal_proofs(refused_only) == []  # one range refused, none accepted: nothing proves selectivity
    assert refusal_proofs(domain_rows(tagged, ["gmail.com"])) == []


def test_findings_name_the_missing_range_and_use_plain_words(tagged):
    said = findings(tagged, proofs=refusal_proofs(tagged))
    act = " ".join(said["Who must act"])
    assert "52.100.0.0/14" in act
    assert "gateway_block" not in " ".join(said["What is wrong"] + said["Which domains"])
    assert cause_label("gateway_block") == "refused by the recipient's mail gateway"


@pytest.mark.parametrize(("minutes", "words"), [
    (1440.97, "1 d"), (1441.0, "1 d"), (60 * 24 + 61, "1 d 1 h"), (24 * 60 - 59, "23 h 1 min"), (0.5, "30 s"),
    (12.2, "12 min"), (120, "2 h"), (None, ""), (float("nan"), ""),
])
def test_human_durations(minutes, words):
    assert human_duration(minutes) == words


# ---------------------------------------------------------------- inputs

def test_files_are_named_by_format_and_date_never_by_path(loaded, sample_dir):
    events, report = loaded
    labels = file_labels(report, events)
    assert len(set(labels.values())) == len(labels)
    for path, label in labels.items():
        assert Path(path).name not in label and str(sample_dir) not in label
    assert labels[str(sample_dir / "eac_extended_tailspintoys.csv")].startswith("EAC historical search")
    assert "tailspintoys" not in " ".join(labels.values())
    assert any(label.endswith("2026-11-16 to 2026-11-22") for label in labels.values())
    table = load_table(report, labels)
    assert (table["rows_read"] >= table["rows_loaded"] + table["rows_rejected"] + table["duplicates"]).all()


def test_duplicates_are_explained(tmp_path, sample_dir):
    source = sample_dir / "messagetrace_ps51_en-US.csv"
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_bytes(source.read_bytes())
    events, report = load_trace(tmp_path, errors="report", with_report=True)
    table = load_table(report, file_labels(report, events))
    second = table.iloc[1]
    assert second["rows_loaded"] == 0 and second["duplicates"] == second["rows_read"] > 0
    assert "already loaded from another file" in second["outcome"]
    assert input_problems(report, len(events), file_labels(report, events)) == []


@pytest.mark.parametrize(("name", "content", "said"), [
    ("empty.csv", b"", "did not load: the file is empty"),
    ("unrelated.csv", b"a,b\n1,2\n", "did not load: line 1: unknown header"),
    ("picture.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "did not load: this is a PNG image"),
    ("header_only.csv", PS51_HEADER.encode(), "did not load: line 2: the file has a header but no data rows"),
    ("damaged.csv", None, "loaded no rows (1 read, 1 rejected)"),  # an EAC summary cut after 300 bytes
])
def test_inputs_that_did_not_load_are_problems(tmp_path, sample_dir, name, content, said):
    damaged = (sample_dir / "eac_summary.csv").read_bytes()[:300]
    (tmp_path / name).write_bytes(damaged if content is None else content)
    events, report = load_trace(tmp_path / name, errors="report", with_report=True)
    problems = input_problems(report, len(events), file_labels(report, events))
    assert any(said in p for p in problems), problems
    assert any("No message-trace event was loaded" in p for p in problems)
    assert name not in " ".join(problems) and "This report is incomplete" in problems_html(problems)


def test_a_partner_absent_from_the_trace_is_a_problem(loaded):
    events, report = loaded
    problems = input_problems(report, len(events), file_labels(report, events), ["nowhere.example"], 0)
    assert problems == ["nowhere.example does not appear in the trace: no message to this domain was found."]


def test_endpoint_data_says_its_age_relative_to_the_trace():
    endpoints = SimpleNamespace(instance="Worldwide", version="2025013000", date=dt.date(2025, 1, 30),
                                source="bundled", fallback=None)
    text, stale = endpoints_note(endpoints, pd.Timestamp("2026-11-22 23:51", tz="UTC"))
    assert stale and "version 2025013000 of 2025-01-30" in text and "661 days older" in text and "WARNING" in text
    text, stale = endpoints_note(endpoints, pd.Timestamp("2025-02-20", tz="UTC"))
    assert not stale and "21 days older" in text and "WARNING" not in text
    assert "Endpoints(" not in text


def test_the_scope_check_finds_whole_domain_names_only(tagged):
    hidden = other_domains(tagged, ["tailspintoys.com"])
    assert "gmail.com" in hidden and "tailspintoys.com" not in hidden and "contoso.com" not in hidden
    assert scope_leaks("mail to bob@gmail.com", hidden) == ["gmail.com"]
    assert scope_leaks("mail-am6eur05on2041.outbound.protection.outlook.com", {"outlook.com"}) == []
    assert scope_leaks("see ironlabs.de", {"labs.de"}) == []


# ---------------------------------------------------------------- the journey shows the mechanism

def test_the_journey_offers_first_a_message_deferred_from_one_range_and_delivered_from_another(tagged):
    from analysis.ui import JourneyView

    telling = telling_messages(tagged)
    assert telling and all(" → " in key for key in telling)
    view = JourneyView(tagged, name=None)
    assert view.message == telling[0]
    journey = view.journey
    attempts = journey[journey["exo_ip"].notna()]
    deferred = set(attempts.loc[attempts["event"].astype(str).eq("defer"), "exo_range"])
    delivered = set(attempts.loc[attempts["event"].astype(str).isin(["deliver", "send"]), "exo_range"])
    assert deferred == {"52.100.0.0/14"} and delivered and not delivered & deferred
    assert (attempts["cause"].astype(str)[attempts["event"].astype(str).eq("defer")] == "gateway_block").all()
    assert "deferred from 52.100.0.0/14, delivered from 40." in view.caption.value
    assert "exo_range" in view.events.value and "52.100.0.0/14" in view.events.value


def test_source_ranges_name_the_published_range_or_say_not_published():
    ranges = source_ranges(pd.Series(["52.101.3.4", "40.107.1.2", "198.51.100.7", None], dtype="string"))
    assert ranges.tolist()[:3] == ["52.100.0.0/14", "40.107.0.0/16", "not published"] and pd.isna(ranges.iloc[3])


def test_low_confidence_causes_are_counted_and_said(tagged):
    from analysis.report.findings import remedy_table
    from analysis.ui.panels import remedy_html

    doubtful = tagged.copy()
    rows = (doubtful["cause"].astype(str).eq("tls_required") & doubtful["event"].astype(str).eq("defer")
            & doubtful["direction"].astype(str).eq("outbound"))
    doubtful.loc[rows[rows].index[:7], "cause_confidence"] = "class"
    table = remedy_table(doubtful).set_index("cause")
    assert table.loc["tls_required", "low_confidence_events"] == 7
    assert table["low_confidence_events"].drop("tls_required").eq(0).all()
    said = remedy_html(next(remedy_table(doubtful).query("cause == 'tls_required'").itertuples()))
    assert "Low confidence:</i> 7 of its 188 events" in said
    assert "Low confidence" not in remedy_html(next(remedy_table(tagged).itertuples()))
