"""analysis.summaries.tables: hand-built tagged traces with known times, bad input, and the sample story."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis.summaries.tables as summaries
from analysis.core.schema import CAUSES, EVENT_COLUMNS, TAG_COLUMNS, conform
from analysis.summaries.tables import (
    AGE_BUCKETS,
    by_connector,
    by_gateway,
    deferral_rate_by_source_range,
    deferrals_by_hour,
    headline,
    message_journey,
    message_timelines,
    normalize_replies,
    queue_ages,
    retry_intervals,
    summarize_causes,
    summarize_domains,
    top_replies,
)
from analysis.tagging.tag import tag

T0 = pd.Timestamp("2026-11-16 08:00", tz="UTC")


def event(minute: float | None, kind: str, recipient: str = "a@x.example", trace: str | None = "t1", *,
          cause: str | None = None, reply: str | None = None, **extra: object) -> dict:
    """One event row, ``minute`` minutes after T0 (None: undated)."""
    return {
        "timestamp": None if minute is None else T0 + pd.Timedelta(minutes=minute), "event": kind,
        "recipient": recipient, "recipient_domain": recipient.rsplit("@", 1)[-1], "trace_id": trace,
        "direction": "outbound", "sender": "someone@contoso.com", "source_format": "messagetrace_detail",
        "cause": cause, "reply": reply, **extra,
    }


def tagged(rows: list[dict]) -> pd.DataFrame:
    """A tagged events table in the canonical dtypes."""
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(index=pd.RangeIndex(0))
    return conform(frame, {**EVENT_COLUMNS, **TAG_COLUMNS})


def story() -> pd.DataFrame:
    """Five message+recipients with known outcomes.

    t1 a@x: greylisted at +1, delivered at +11. t2 b@y: gateway refusals at +2 (from 52.100.1.2) and +32 (from
    52.100.9.9), expired at +1442. t3 c@y: deferred at +5, still pending. t4 d@z: rejected at once (bad address).
    t5 e@x: delivered at once.
    """
    return tagged([
        event(0, "receive"),
        event(1, "defer", cause="greylisting", reply="450 4.2.0 <a@x.example>: Greylisted", exo_ip="40.107.3.3"),
        event(11, "send", exo_ip="40.92.1.1", remote_host="mx.x.example", remote_ip="192.0.2.10"),
        event(0, "receive", "b@y.example", "t2"),
        event(2, "defer", "b@y.example", "t2", cause="gateway_block", exo_ip="52.100.1.2",
              reply="451 4.7.1 Client host 52.100.1.2 rejected", gateway="Cisco Secure Email (IronPort)"),
        event(32, "defer", "b@y.example", "t2", cause="gateway_block", exo_ip="52.100.9.9",
              reply="451 4.7.1 Client host 52.100.9.9 rejected", gateway="Cisco Secure Email (IronPort)"),
        event(1442, "fail", "b@y.example", "t2", cause="gateway_block", reply="550 4.4.7 Message expired"),
        event(5, "defer", "c@y.example", "t3", cause="recipient_server_down", exo_ip="52.100.7.7",
              reply="450 4.4.315 Connection timed out", gateway="Cisco Secure Email (IronPort)"),
        event(0, "fail", "d@z.example", "t4", cause="bad_address", reply="550 5.1.1 User unknown"),
        event(3, "send", "e@x.example", "t5", exo_ip="40.92.1.1"),
    ])


# ---------------------------------------------------------------- message timelines

def test_timelines_outcomes_attempts_and_intervals():
    rows = message_timelines(story()).set_index("recipient")
    assert rows.loc["a@x.example", "outcome"] == "delivered"
    assert rows.loc["b@y.example", "outcome"] == "expired"
    assert rows.loc["c@y.example", "outcome"] == "pending"
    assert rows.loc["d@z.example", "outcome"] == "failed"
    assert rows.loc["e@x.example", "outcome"] == "delivered"
    assert rows["deferrals"].to_dict() == {"a@x.example": 1, "b@y.example": 2, "c@y.example": 1,
                                           "d@z.example": 0, "e@x.example": 0}
    # attempts: deferrals plus the final delivery or rejection, never the expiry
    assert rows["attempts"].to_dict() == {"a@x.example": 2, "b@y.example": 2, "c@y.example": 1,
                                          "d@z.example": 1, "e@x.example": 1}
    assert rows.loc["a@x.example", "mean_retry_minutes"] == 10.0
    assert rows.loc["b@y.example", "mean_retry_minutes"] == 30.0
    assert np.isnan(rows.loc["c@y.example", "mean_retry_minutes"])
    assert rows.loc["a@x.example", "to_outcome_minutes"] == 11.0
    assert rows.loc["b@y.example", "to_outcome_minutes"] == 1442.0
    assert np.isnan(rows.loc["c@y.example", "to_outcome_minutes"])
    assert rows.loc["b@y.example", "outcome_at"] == T0 + pd.Timedelta(minutes=1442)
    assert rows.loc["b@y.example", "first_deferral"] == T0 + pd.Timedelta(minutes=2)
    assert rows.loc["b@y.example", "exo_ips"] == "52.100.1.2, 52.100.9.9"
    assert rows.loc["a@x.example", "exo_ips"] == "40.107.3.3, 40.92.1.1"
    assert rows.loc["a@x.example", "remote_hosts"] == "mx.x.example"
    assert rows.loc["b@y.example", "final_cause"] == "gateway_block"
    assert rows.loc["b@y.example", "last_reply"] == "550 4.4.7 Message expired"
    assert pd.isna(rows.loc["e@x.example", "causes"])


def test_timelines_causes_in_order_of_first_appearance():
    frame = tagged([
        event(30, "defer", cause="gateway_block"),  # input order is not time order
        event(0, "defer", cause="greylisting"),
        event(60, "defer", cause="greylisting"),
        event(90, "fail", cause="gateway_block", reply="550 5.7.1 rejected"),
    ])
    row = message_timelines(frame).iloc[0]
    assert row["causes"] == "greylisting → gateway_block"
    assert row["final_cause"] == "gateway_block"
    assert row["outcome"] == "failed"
    assert row["mean_retry_minutes"] == 30.0


@pytest.mark.parametrize("reply, code", [
    ("550 4.4.7 Message expired", None),
    ("550 5.4.300 Message expired", None),
    ("550 5.4.316 Message expired, connection refused(Socket error code 10061)", None),
    ("#550 4.4.7 QUEUE.Expired; message expired ##", None),
    ("Expired", "4.4.7"),
])
def test_expiry_is_recognized(reply, code):
    frame = tagged([event(0, "defer", cause="recipient_server_down"),
                    event(1440, "fail", cause="recipient_server_down", reply=reply, enhanced_code=code)])
    assert message_timelines(frame)["outcome"].iloc[0] == "expired"


def test_a_rejection_is_no_expiry():
    frame = tagged([event(0, "fail", cause="tls_required", reply="550 5.4.317 Cannot connect to remote server")])
    assert message_timelines(frame)["outcome"].iloc[0] == "failed"


def test_summary_rows_only_stand_in_when_no_event_rows():
    summary = {"source_format": "messagetrace", "status": "delivered"}
    frame = tagged([
        # t1: summary (Received, Delivered) + detail events: the detail events decide
        event(0, "deliver", "a@x.example", "t1", **summary),
        event(1, "defer", "a@x.example", "t1", cause="greylisting", status="delivered"),
        event(9, "send", "a@x.example", "t1", status="delivered"),
        # t2: only a summary row, Pending: a deferral dated at Received
        event(4, "defer", "b@x.example", "t2", source_format="messagetrace", status="pending"),
        # t3: only a summary row, Delivered: delivered, but the delivery time is unknown
        event(5, "deliver", "c@x.example", "t3", **summary),
    ])
    rows = message_timelines(frame).set_index("recipient")
    assert rows.loc["a@x.example", "deferrals"] == 1
    assert rows.loc["a@x.example", "to_outcome_minutes"] == 9.0
    assert rows.loc["a@x.example", "first_seen"] == T0
    assert rows.loc["b@x.example", "outcome"] == "pending"
    assert rows.loc["b@x.example", "first_deferral"] == T0 + pd.Timedelta(minutes=4)
    assert rows.loc["c@x.example", "outcome"] == "delivered"
    assert pd.isna(rows.loc["c@x.example", "outcome_at"])
    journey = message_journey(frame, "t1")
    assert journey["source_format"].tolist() == ["messagetrace_detail"] * 2


def test_status_decides_when_there_is_no_delivery_event():
    frame = tagged([event(0, "receive", status="quarantined"), event(0, "receive", "b@x.example", "t2",
                                                                     status="failed")])
    rows = message_timelines(frame).set_index("recipient")
    assert rows.loc["a@x.example", "outcome"] == "other"
    assert rows.loc["b@x.example", "outcome"] == "failed"


def test_pairs_are_keyed_by_trace_id_else_message_id():
    frame = tagged([
        event(0, "defer", "a@x.example", None, message_id="<m1@contoso.com>", cause="greylisting"),
        event(10, "send", "a@x.example", None, message_id="<m1@contoso.com>"),
        event(0, "send", "b@x.example", None, message_id="<m1@contoso.com>"),
    ])
    rows = message_timelines(frame)
    assert len(rows) == 2
    assert set(rows["message"]) == {"<m1@contoso.com>"}
    assert headline(frame)["messages"] == 1


def test_retry_intervals_one_row_per_gap_with_the_retried_cause():
    gaps = retry_intervals(story())
    assert gaps[["recipient", "interval_minutes", "cause"]].values.tolist() == [
        ["a@x.example", 10.0, "greylisting"], ["b@y.example", 30.0, "gateway_block"]]
    assert gaps["at"].tolist() == [T0 + pd.Timedelta(minutes=11), T0 + pd.Timedelta(minutes=32)]


def test_repeated_calls_see_changes_made_to_the_table_in_place():
    frame = story()
    assert len(message_timelines(frame)) == 5
    moved = (frame["trace_id"] == "t5").to_numpy()
    frame.loc[moved, "trace_id"] = "t1"  # e@x's delivery becomes a second recipient of message t1 ...
    assert message_timelines(frame)["message"].value_counts()["t1"] == 2
    frame.loc[moved, "recipient"] = "a@x.example"  # ... and then a second delivery to a@x
    rows = message_timelines(frame)
    assert len(rows) == 4 and rows.set_index("recipient").loc["a@x.example", "attempts"] == 3


# ---------------------------------------------------------------- message journey

def test_journey_finds_a_message_by_trace_id_or_message_id():
    frame = tagged([
        event(0, "receive", "a@x.example", "abc-def", message_id="<m1@contoso.com>"),
        event(5, "defer", "a@x.example", "abc-def", message_id="<m1@contoso.com>", cause="greylisting"),
        event(3, "receive", "b@x.example", "abc-def", message_id="<m1@contoso.com>"),
        event(1, "receive", "c@x.example", "other", message_id="<m2@contoso.com>"),
    ])
    by_trace = message_journey(frame, "ABC-DEF")
    assert by_trace["recipient"].tolist() == ["a@x.example", "b@x.example", "a@x.example"]
    assert by_trace["elapsed_minutes"].tolist() == [0.0, 3.0, 5.0]
    assert by_trace.attrs["message"] == "ABC-DEF"
    assert len(message_journey(frame, "m1@contoso.com")) == 3
    assert len(message_journey(frame, "<m1@contoso.com>", recipient="A@X.example")) == 2
    missing = message_journey(frame, "nope")
    assert missing.empty and list(missing.columns) == list(by_trace.columns)


# ---------------------------------------------------------------- domains, gateways, connectors, causes

def test_domain_summary_counts_add_up_and_rank_by_impact():
    domains = summarize_domains(story())
    assert domains["recipient_domain"].tolist() == ["y.example", "z.example", "x.example"]
    y = domains.iloc[0]
    counts = ["recipients", "messages", "pending", "failed", "expired", "deferrals"]
    assert y[counts].tolist() == [2, 2, 1, 1, 1, 3]
    assert y["impact"] == 3 * 1 + 2 * 1
    assert y["gateway"] == "Cisco Secure Email (IronPort)"
    assert y["first_deferral"] == T0 + pd.Timedelta(minutes=2) and y["last_deferral"] == T0 + pd.Timedelta(minutes=32)
    # one recipient each hit by gateway_block and recipient_server_down: the tie goes to the taxonomy order
    assert y["dominant_cause"] == "recipient_server_down" and y["dominant_cause_share"] == 0.5
    x = domains.set_index("recipient_domain").loc["x.example"]
    assert (x["delivered_first_time"], x["delivered_after_deferral"], x["impact"]) == (1, 1, 1)
    delays = ["mean_delay_minutes", "median_delay_minutes", "max_delay_minutes"]
    assert x[delays].tolist() == [5.5, 5.5, 11.0]  # delivered after 11 and after 0 minutes
    parts = ["delivered_first_time", "delivered_after_deferral", "pending", "failed", "other"]
    assert (domains[parts].sum(axis=1) == domains["recipients"]).all()
    assert summarize_domains(story(), sort="name")["recipient_domain"].tolist() == [
        "x.example", "y.example", "z.example"]
    assert summarize_domains(story(), sort="deferrals")["recipient_domain"].iloc[0] == "y.example"
    with pytest.raises(ValueError, match="sort 'size'"):
        summarize_domains(story(), sort="size")


def test_direction_selects_rows():
    frame = story()
    frame.loc[frame["trace_id"] == "t4", "direction"] = "inbound"
    assert "z.example" not in set(summarize_domains(frame)["recipient_domain"])
    assert "z.example" in set(summarize_domains(frame, direction=None)["recipient_domain"])
    assert headline(frame, direction="inbound")["recipients"] == 1
    with pytest.raises(ValueError, match="direction 'out'"):
        headline(frame, direction="out")


def test_by_gateway_and_by_connector():
    gateways = by_gateway(story()).set_index("gateway")
    assert gateways.loc["Cisco Secure Email (IronPort)", ["recipients", "domains", "deferrals"]].tolist() == [2, 1, 3]
    assert gateways.loc["(not identified)", "recipients"] == 3
    connectors = by_connector(story())
    assert connectors["connector"].tolist() == ["(none)"] and connectors["recipients"].iloc[0] == 5


def test_cause_summary():
    causes = summarize_causes(story()).set_index("cause")
    assert causes.loc["gateway_block", ["events", "deferrals", "failures", "recipients", "domains"]].tolist() == [
        3, 2, 1, 1, 1]
    assert causes.loc["gateway_block", "top_domains"] == "y.example (3)"
    assert causes["events_share"].sum() == pytest.approx(1.0)
    assert set(causes.index) == {"gateway_block", "greylisting", "recipient_server_down", "bad_address"}


def test_headline():
    numbers = headline(story())
    assert numbers == {
        "messages": 5, "recipients": 5, "deferred": 3, "deferrals": 4, "delivered": 2,
        "delivered_after_deferral": 1, "failed": 2, "expired": 1, "pending": 1, "domains": 3,
        "worst_domain": "y.example", "worst_domain_impact": 5, "dominant_cause": "bad_address",
        "dominant_cause_share": 0.25, "start": T0, "end": T0 + pd.Timedelta(minutes=1442),
    }


# ---------------------------------------------------------------- queue ages (qshape)

AGES = {"a": 0, "b": 4.99, "c": 5, "d": 9.5, "e": 10, "f": 639, "g": 640, "h": 1279.9, "i": 1280, "j": 5000}
EXPECTED_BUCKET = {"a": "5", "b": "5", "c": "10", "d": "10", "e": "20", "f": "640", "g": "1280", "h": "1280",
                   "i": "1280+", "j": "1280+"}
NOW = T0 + pd.Timedelta(minutes=6000)


def test_queue_ages_use_qshape_buckets():
    rows = [event(6000 - age, "defer", f"{name}@{name}.example", f"t{name}", cause="unknown")
            for name, age in AGES.items()]
    ages = queue_ages(tagged(rows), now=NOW)
    assert list(ages.columns) == ["T", *AGE_BUCKETS]
    for name, bucket in EXPECTED_BUCKET.items():
        row = ages.loc[f"{name}.example"]
        assert row[bucket] == 1 and row["T"] == 1 and row.drop(["T", bucket]).sum() == 0, name
    assert ages.index[0] == "TOTAL" and ages.loc["TOTAL", "T"] == len(AGES)
    assert ages.loc["TOTAL", "1280+"] == 2
    assert ages.attrs["now"] == NOW


def test_queue_ages_pending_at_now_only():
    frame = tagged([
        event(0, "defer", "a@x.example", "t1", cause="unknown"),  # pending, 100 min old at now
        event(200, "send", "a@x.example", "t1"),  # delivered after now: still pending at now
        event(0, "defer", "b@x.example", "t2", cause="unknown"),
        event(50, "send", "b@x.example", "t2"),  # delivered before now: not pending
        event(150, "defer", "c@x.example", "t3", cause="unknown"),  # deferred after now: not yet in the queue
        event(10, "defer", "d@y.example", "t4", cause="unknown"),
        event(90, "fail", "d@y.example", "t4", cause="unknown", reply="550 4.4.7 Message expired"),
    ])
    ages = queue_ages(frame, now="2026-11-16 09:40")  # naive: UTC, 100 minutes after T0
    assert ages.index.tolist() == ["TOTAL", "x.example"]
    assert ages.loc["x.example", "160"] == 1 and ages.loc["x.example", "T"] == 1
    # default now: the last timestamp of the trace (+200): everything ended
    assert queue_ages(frame).loc["TOTAL", "T"] == 1  # c@x, deferred at +150, never ended


def test_queue_ages_sort_like_qshape_and_roll_up_parents():
    rows = []
    for i, domain in enumerate(["a.example.com", "bb.example.com", "c.example.com", "example.com", "solo.org"]):
        for n in range(i + 1 if domain != "example.com" else 1):
            rows.append(event(0, "defer", f"u{n}@{domain}", f"t{i}-{n}", cause="unknown"))
    frame = tagged(rows)
    ages = queue_ages(frame, now=T0 + pd.Timedelta(minutes=1))
    # by total, then by name length (qshape): example.com and a.example.com both hold one
    assert ages.index.tolist() == ["TOTAL", "solo.org", "c.example.com", "bb.example.com", "example.com",
                                   "a.example.com"]
    rolled = queue_ages(frame, now=T0 + pd.Timedelta(minutes=1), rollup_parent=True, min_subdomains=3)
    assert rolled.loc[".example.com", "T"] == 1 + 2 + 3  # proper subdomains only, not example.com itself
    assert rolled.loc["TOTAL", "T"] == ages.loc["TOTAL", "T"]  # parent rows are not counted twice
    assert ".com" not in rolled.index and ".org" not in rolled.index
    assert ".example.com" not in queue_ages(frame, rollup_parent=True, min_subdomains=4).index


# ---------------------------------------------------------------- replies

VARIANTS = [
    "451 4.4.0 Primary target IP address responded with: \"421 Your access from 52.100.1.2 has been rejected.\""
    " The last endpoint attempted was 68.232.140.21:25 [AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]"
    " session 1f3a9c2e-8b7d-4e61-a0c5-77d2e9b1f004 at 2026-11-16T08:01:02Z for <anna@tailspintoys.com> [4711]",
    "451 4.4.0 Primary target IP address responded with: \"421 Your access from 2a01:111:f403::1c has been"
    " rejected.\" The last endpoint attempted was 68.232.140.22:25"
    " [DB5EUR03FT009.eop-EUR03.prod.protection.outlook.com] session 0a7e4b1c-1111-4e61-a0c5-77d2e9b1f999"
    " at 2026-11-17 13:45:00 for <ben.novak@tailspintoys.com> [12]",
]


def test_normalize_merges_replies_that_differ_only_in_ids_addresses_and_ips():
    normalized = normalize_replies(pd.Series(VARIANTS))
    assert normalized.iloc[0] == normalized.iloc[1]
    text = normalized.iloc[0]
    for placeholder in ("<ip>", "<exo-server>", "<guid>", "<time>", "<address>", "[<n>]"):
        assert placeholder in text, placeholder
    gmail = pd.Series([
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1  "
        "https://support.google.com/mail/?p=NoSuchUser a640c23a62f3a-7ab1c3e5f2esi1234567.166 - gsmtp",
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1  "
        "https://support.google.com/mail/?p=NoSuchUser 5b1f17b1804b1-42b3f2e0a5bsi98765.33 - gsmtp"])
    assert normalize_replies(gmail).nunique() == 1
    assert "\n" not in normalize_replies(gmail).iloc[0]
    # what tells replies apart survives: codes and socket errors
    distinct = normalize_replies(pd.Series(["450 4.4.316 Socket error code 10061",
                                            "450 4.4.315 Socket error code 10060"]))
    assert distinct.nunique() == 2


def test_top_replies_group_by_cause_and_normalized_text_on_unique_replies(monkeypatch):
    rows = [event(i, "defer", f"u{i}@tailspintoys.com", f"t{i}", cause="gateway_block", reply=VARIANTS[i % 2])
            for i in range(6)]
    rows += [event(0, "defer", "x@other.example", "tx", cause="reputation_blocklist", reply=VARIANTS[0]),
             event(1, "fail", "y@z.example", "ty", cause="bad_address", reply="550 5.1.1 <y@z.example>: User unknown"),
             event(2, "fail", "w@z.example", "tw", cause="bad_address", reply="550 5.1.1 <w@z.example>: User unknown")]
    seen = []
    real = summaries.map_unique

    def spy(values, transform):
        return real(values, lambda uniques: (seen.append(len(uniques)), transform(uniques))[1])
    monkeypatch.setattr(summaries, "map_unique", spy)
    top = top_replies(tagged(rows))
    assert top[["cause", "events", "deferrals", "failures", "recipients", "domains"]].values.tolist() == [
        ["gateway_block", 6, 6, 0, 6, 1], ["bad_address", 2, 0, 2, 2, 1], ["reputation_blocklist", 1, 1, 0, 1, 1]]
    assert top["reply"].iloc[1] == "550 5.1.1 <address>: User unknown"
    assert top["top_domains"].iloc[0] == "tailspintoys.com (6)"
    assert top["example"].iloc[0] == VARIANTS[0]
    assert top["first_seen"].iloc[0] == T0 and top["last_seen"].iloc[0] == T0 + pd.Timedelta(minutes=5)
    assert 4 in seen  # the 9 replies hold 4 distinct texts: only those were normalized
    assert len(top_replies(tagged(rows), n=1)) == 1
    assert top_replies(tagged(rows), n=0).empty


# ---------------------------------------------------------------- trends and source ranges

def test_deferrals_by_hour_by_cause_over_the_whole_span():
    frame = tagged([
        event(0, "defer", cause="greylisting"), event(30, "defer", cause="greylisting"),
        event(70, "defer", "b@x.example", "t2", cause=None), event(190, "send", "b@x.example", "t2"),
        event(None, "defer", "c@x.example", "t3", cause="greylisting"),
    ])
    hours = deferrals_by_hour(frame)
    assert list(hours.columns) == list(CAUSES)
    assert hours.index.tolist() == [T0 + pd.Timedelta(hours=h) for h in range(4)]
    assert hours["greylisting"].tolist() == [2, 0, 0, 0]
    assert hours["unknown"].tolist() == [0, 1, 0, 0]  # a deferral without a cause counts as unknown
    assert hours.to_numpy().sum() == 3  # the undated deferral is left out
    assert deferrals_by_hour(frame, freq="1D").iloc[0].sum() == 3
    with pytest.raises(ValueError, match="freq"):
        deferrals_by_hour(frame, freq="-1h")


def test_deferral_rate_by_source_range():
    rows = [event(i, "defer", f"u{i}@tailspintoys.com", f"t{i}", cause="gateway_block", exo_ip=f"52.100.3.{i}",
                  exo_ip_published=True) for i in range(4)]
    rows += [event(10 + i, "send", f"u{i}@tailspintoys.com", f"t{i}", exo_ip=f"40.92.0.{i}", exo_ip_published=True)
             for i in range(2)]
    rows += [event(20, "send", "v@x.example", "tv", exo_ip="203.0.113.77", exo_ip_published=False),
             event(21, "defer", "w@x.example", "tw", exo_ip="2001:db8:1:2::5", exo_ip_published=False,
                   cause="unknown"),
             event(1500, "fail", "u0@tailspintoys.com", "t0", cause="gateway_block", reply="550 4.4.7 Message expired",
                   exo_ip="52.100.3.0")]  # an expiry is no attempt
    rates = deferral_rate_by_source_range(tagged(rows)).set_index("source_range")
    assert rates.loc["52.100.0.0/14", ["attempts", "deferred", "delivered", "exo_ips", "domains"]].tolist() == [
        4, 4, 0, 4, 1]
    assert rates.loc["52.100.0.0/14", "deferral_rate"] == 1.0
    assert rates.loc["52.100.0.0/14", "dominant_cause"] == "gateway_block"
    assert rates.loc["40.92.0.0/15", "deferral_rate"] == 0.0
    assert rates.loc["203.0.113.0/24", "attempts"] == 1  # unpublished IPv4: its /24
    assert rates.loc["2001:db8:1::/48", "deferred"] == 1  # unpublished IPv6: its /48
    assert rates["exo_ip_published"].to_dict() == {"52.100.0.0/14": True, "40.92.0.0/15": True,
                                                   "2001:db8:1::/48": False, "203.0.113.0/24": False}
    published = deferral_rate_by_source_range(tagged(rows), by="published").set_index("published")
    assert published.loc["published", ["attempts", "deferred"]].tolist() == [6, 4]
    assert published.loc["not published", ["attempts", "deferred"]].tolist() == [2, 1]
    with pytest.raises(ValueError, match="by 'cidr'"):
        deferral_rate_by_source_range(tagged(rows), by="cidr")


# ---------------------------------------------------------------- bad input

FRAMES = {
    "summarize_domains": summarize_domains, "queue_ages": queue_ages, "message_timelines": message_timelines,
    "retry_intervals": retry_intervals, "top_replies": top_replies, "summarize_causes": summarize_causes,
    "deferrals_by_hour": deferrals_by_hour, "deferral_rate_by_source_range": deferral_rate_by_source_range,
    "by_gateway": by_gateway, "by_connector": by_connector,
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_missing_tag_columns_say_run_tag_first(name):
    untagged = story().drop(columns=list(TAG_COLUMNS))
    with pytest.raises(ValueError, match=r"cause.*run analysis\.tag\(events\) first"):
        FRAMES[name](untagged)


def test_missing_event_columns_and_wrong_types_are_named():
    with pytest.raises(ValueError, match=r"lacks column.*recipient.*load_trace"):
        headline(story().drop(columns=["recipient"]))
    with pytest.raises(TypeError, match="DataFrame"):
        headline([{"event": "defer"}])


@pytest.mark.parametrize("name", sorted(FRAMES))
@pytest.mark.parametrize("case", ["empty", "no deferrals", "single event", "undated"])
def test_degenerate_traces_give_well_formed_results(name, case):
    full = FRAMES[name](story())
    frame = {
        "empty": story().iloc[:0],
        "no deferrals": tagged([event(0, "receive"), event(3, "send", exo_ip="40.92.1.1")]),
        "single event": tagged([event(0, "defer", cause="greylisting", reply="451 greylisted")]),
        "undated": tagged([event(None, "defer", cause="greylisting", reply="451 x"), event(None, "send")]),
    }[case]
    result = FRAMES[name](frame)
    assert list(result.columns) == list(full.columns)
    assert result.dtypes.astype(str).tolist() == full.dtypes.astype(str).tolist()


def test_degenerate_traces_in_numbers():
    assert queue_ages(story().iloc[:0]).to_dict("index") == {"TOTAL": {c: 0 for c in ["T", *AGE_BUCKETS]}}
    clean = tagged([event(0, "receive"), event(3, "send")])
    assert queue_ages(clean).loc["TOTAL", "T"] == 0 and retry_intervals(clean).empty and top_replies(clean).empty
    assert deferrals_by_hour(clean).to_numpy().sum() == 0
    assert headline(clean)["worst_domain"] is None and headline(clean)["dominant_cause"] is None
    assert headline(story().iloc[:0])["start"] is None
    undated = tagged([event(None, "defer", cause="greylisting"), event(None, "send")])
    assert message_timelines(undated)["outcome"].tolist() == ["delivered"]
    assert deferrals_by_hour(undated).empty and queue_ages(undated).loc["TOTAL", "T"] == 0
    single = tagged([event(0, "defer", cause="greylisting")])
    assert queue_ages(single).loc["x.example", "5"] == 1
    assert summarize_domains(single)["pending"].tolist() == [1]


# ---------------------------------------------------------------- the sample story (data/sample, real pipeline)

@pytest.fixture(scope="module")
def sample_tagged(sample_dir: Path) -> pd.DataFrame:
    """The whole sample folder, as the notebooks load it: every export, overlaps merged by the loader."""
    from analysis import load_trace, tag

    return tag(load_trace(sample_dir))


def test_story_ironport_partner_has_the_most_impact(sample_tagged):
    domains = summarize_domains(sample_tagged)
    top = domains.iloc[0]
    assert top["recipient_domain"] == "tailspintoys.com", domains.head(5)[["recipient_domain", "impact"]]
    assert top["dominant_cause"] == "gateway_block"
    assert top["gateway"] == "Cisco Secure Email (IronPort)"
    assert top["expired"] > 0 and top["delivered_after_deferral"] > 0
    assert headline(sample_tagged)["worst_domain"] == "tailspintoys.com"


def test_story_greylisting_domain_is_deferred_once_then_delivered(sample_tagged):
    rows = message_timelines(sample_tagged)
    grey = rows[rows["recipient_domain"] == "adventure-works.com"]
    assert len(grey) > 0
    assert (grey["outcome"] == "delivered").all()
    assert (grey["deferrals"] == 1).all()
    assert (grey["causes"] == "greylisting").all()
    assert grey["mean_retry_minutes"].between(5, 15).all()
    domain = summarize_domains(sample_tagged).set_index("recipient_domain").loc["adventure-works.com"]
    assert domain["delivered_after_deferral"] == domain["recipients"]


def test_story_down_server_expires_after_about_a_day(sample_tagged):
    rows = message_timelines(sample_tagged)
    down = rows[rows["recipient_domain"] == "fourthcoffee.com"]
    expired = down[down["outcome"] == "expired"]
    assert len(expired) > 0
    hours = expired["to_outcome_minutes"] / 60
    assert hours.between(22, 26).all(), hours.describe()
    assert (expired["final_cause"] == "recipient_server_down").all()
    assert (down["outcome"] == "delivered").any()  # messages sent later in the outage got through
    # during the outage the queue holds fourthcoffee.com, some of it for many hours
    during = queue_ages(sample_tagged, now="2026-11-17 12:00")
    assert during.loc["fourthcoffee.com", "T"] > 0
    assert during.loc["fourthcoffee.com", ["320", "640"]].sum() > 0


@pytest.fixture(scope="module")
def extended_tagged(sample_dir: Path) -> pd.DataFrame:
    """The EAC extended report of tailspintoys.com: the export that carries Exchange Online source IPs."""
    from analysis import load_trace, tag

    return tag(load_trace(sample_dir / "eac_extended_tailspintoys.csv"))


def test_story_partner_refuses_exactly_one_exchange_online_range(extended_tagged):
    rates = deferral_rate_by_source_range(extended_tagged).set_index("source_range")
    refused = rates.loc["52.100.0.0/14"]
    assert refused["deferral_rate"] == 1.0 and refused["deferred"] > 100 and refused["exo_ip_published"]
    assert refused["dominant_cause"] == "gateway_block"
    others = rates.drop(index="52.100.0.0/14")
    assert len(others) >= 2 and (others["deferral_rate"] == 0).all() and (others["delivered"] > 0).all()
    assert summarize_domains(extended_tagged).iloc[0]["dominant_cause"] == "gateway_block"


# ---------------------------------------------------------------- one definition of expiry (issue 13)

# A DNS deferral as Exchange Online writes it (Microsoft, "Fix error code 451 4.4.0 DNS query failed in Exchange
# Online": https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/
# fix-error-code-451-4-4-0-dns-query-failed), then the failure that ended the message: either Exchange Online's own
# expiry (4.4.7, "Message expired", same source) or the recipient's server refusing for an expired *account* (the
# reply issue 13 quotes). Only the first is the expiry of the message.
DNS_DEFERRAL = "451 4.4.0 DNS query failed. The error was: DNS query failed with error: ErrorRetry"
EXPIRY_CASES = {
    "message expired": ("550 4.4.7 Message expired", "4.4.7", True),
    "account expired": ("550 5.7.1 Sender account expired", "5.7.1", False),
}


@pytest.mark.parametrize("case", sorted(EXPIRY_CASES))
def test_expiry_is_one_concept_in_tagging_and_every_summary(case):
    reply, code, is_expiry = EXPIRY_CASES[case]
    rows = [event(0, "receive"), event(1, "defer", reply=DNS_DEFERRAL, enhanced_code="4.4.0"),
            event(60, "defer", reply=DNS_DEFERRAL, enhanced_code="4.4.0"),
            event(1440, "fail", reply=reply, enhanced_code=code)]
    events = conform(pd.DataFrame(rows).drop(columns=["cause"]))
    out = tag(events)
    failure = out.iloc[3]
    assert out["cause"].iloc[1] == "dns_failure"
    # tagging: an expiry takes the cause of its deferrals; a refusal keeps its own
    assert str(failure["cause_rule"]).startswith("expiry-inherits:") is is_expiry
    assert (failure["cause"] == "dns_failure") is is_expiry
    # every summary: the same failure is "expired" exactly when tagging treated it as an expiry
    outcome = "expired" if is_expiry else "failed"
    assert message_timelines(out)["outcome"].tolist() == [outcome]
    numbers = headline(out)
    assert (numbers["failed"], numbers["expired"]) == (1, int(is_expiry))
    for table in (summarize_domains(out), by_gateway(out), by_connector(out)):
        assert table[["failed", "expired"]].to_numpy().tolist() == [[1, int(is_expiry)]]
    causes = summarize_causes(out).set_index("cause")
    assert causes.loc[failure["cause"], "failures"] == 1
    replies = top_replies(out)
    final = replies[replies["reply"].str.startswith("550").to_numpy(dtype=bool)]
    assert final[["cause", "failures", "deferrals"]].astype(object).to_numpy().tolist() == [[failure["cause"], 1, 0]]
    assert queue_ages(out)["T"].tolist() == [0]  # it ended: nothing pending
    rates = deferral_rate_by_source_range(out)  # no Exchange Online IP in these rows: no attempts to count
    assert rates.empty
    # an expiry is no delivery attempt, a refusal is: the retry after the last deferral
    assert len(retry_intervals(out)) == (1 if is_expiry else 2)
    assert message_timelines(out)["attempts"].tolist() == [2 if is_expiry else 3]


def test_a_path_that_is_no_store_is_named(tmp_path: Path):
    """Summaries dispatch on the input's type: a store folder goes to Dask, any other path is an error naming it."""
    with pytest.raises(TypeError, match=r"headline: '.*nothing-here' is no store folder"):
        headline(str(tmp_path / "nothing-here"))
    with pytest.raises(TypeError, match="is no store folder"):
        summarize_domains(tmp_path)
    with pytest.raises(TypeError, match="expected the tagged events DataFrame, got list"):
        summarize_causes([1, 2, 3])
