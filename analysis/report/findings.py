"""What the numbers say, in words: the headline card, the per-cause remedies and the report's summary.

Pure functions over the tagged events (and an optional allow-list audit) returning DataFrames or escaped HTML;
the notebooks display them and the shared report puts the summary first.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from analysis.core.schema import STRING
from analysis.reference.causes import default_rules
from analysis.summaries.tables import headline, message_timelines, summarize_causes, summarize_domains

ACTORS = {"sender": "the sender's side (your tenant)", "recipient": "the recipient's admins",
          "either": "both sides (compare settings)", "nobody": "nobody (Exchange Online retries)"}


def _when(stamp: Any) -> str:
    return "unknown" if stamp is None or pd.isna(stamp) else f"{pd.Timestamp(stamp):%Y-%m-%d %H:%M} UTC"


def headline_table(numbers: dict[str, Any]) -> pd.DataFrame:
    """The :func:`analysis.summaries.tables.headline` numbers as a two-column table for people."""
    share = numbers.get("dominant_cause_share")
    rows = [
        ("Messages", f"{numbers['messages']:,}"),
        ("Recipients (message + recipient)", f"{numbers['recipients']:,}"),
        ("Deferred at least once", f"{numbers['deferred']:,} ({numbers['deferrals']:,} deferral events)"),
        ("Delivered", f"{numbers['delivered']:,} ({numbers['delivered_after_deferral']:,} of them late)"),
        ("Failed", f"{numbers['failed']:,} ({numbers['expired']:,} expired after retrying)"),
        ("Still pending", f"{numbers['pending']:,}"),
        ("Recipient domains", f"{numbers['domains']:,}"),
        ("Most affected domain", numbers.get("worst_domain") or "none"),
        ("Most common cause", f"{numbers['dominant_cause']} ({share:.0%} of deferrals and failures)"
         if numbers.get("dominant_cause") else "none"),
        ("Trace covers", f"{_when(numbers.get('start'))} to {_when(numbers.get('end'))}"),
    ]
    return pd.DataFrame(rows, columns=["measure", "value"])


def remedy_table(tagged: pd.DataFrame) -> pd.DataFrame:
    """One row per cause seen on deferrals and failures: who acts, what it means, what to do, what it touched.

    Columns: cause, who_acts, explanation, remedy, recipients, events, top_domains; most recipients first.
    """
    texts = default_rules().causes
    causes = summarize_causes(tagged)
    names = causes["cause"].astype(str).tolist()
    return pd.DataFrame({
        "cause": names,
        "who_acts": [texts[c].actor for c in names],
        "explanation": [texts[c].explanation for c in names],
        "remedy": [texts[c].remedy for c in names],
        "recipients": causes["recipients"].to_numpy(),
        "events": causes["events"].to_numpy(),
        "top_domains": causes["top_domains"].astype(STRING).to_numpy(),
    })


def findings(tagged: pd.DataFrame, *, audit: Any = None, top: int = 5) -> dict[str, list[str]]:
    """The report's summary as plain sentences: what is wrong, which domains, since when, who must act.

    ``audit``: an :class:`analysis.audit.allowlist.AllowListAudit` whose missing ranges are named in the actions.
    """
    numbers = headline(tagged)
    if not numbers["recipients"]:
        return {"What is wrong": [f"No messages to report: the trace holds no outbound mail ({len(tagged):,} events "
                                  "loaded in all)."]}
    if not numbers["deferred"] and not numbers["failed"]:
        return {"What is wrong": [f"Nothing was deferred or failed: {numbers['recipients']:,} recipients, "
                                  f"{_when(numbers['start'])} to {_when(numbers['end'])}."]}
    share = numbers["dominant_cause_share"] or 0.0
    wrong = [f"Of {numbers['recipients']:,} recipients, {numbers['deferred']:,} were deferred at least once: "
             f"{numbers['delivered_after_deferral']:,} got the mail late, {numbers['failed']:,} never got it "
             f"({numbers['expired']:,} expired after Exchange Online retried for about a day) and "
             f"{numbers['pending']:,} are still waiting.",
             f"The most common cause is {numbers['dominant_cause']} ({share:.0%} of deferrals and failures)."]
    domains = summarize_domains(tagged)
    domains = domains[domains["impact"] > 0].head(top)
    texts = default_rules().causes
    which, since, act = [], [], []
    for d in domains.itertuples():
        cause = str(d.dominant_cause) if pd.notna(d.dominant_cause) else "unknown"
        gateway = f", behind {d.gateway}" if pd.notna(d.gateway) and d.gateway else ""
        which.append(f"{d.recipient_domain}: {d.failed:,} failed, {d.pending:,} pending, "
                     f"{d.delivered_after_deferral:,} late, mostly {cause}{gateway}.")
        since.append(f"{d.recipient_domain}: deferred from {_when(d.first_deferral)} to {_when(d.last_deferral)}."
                     if pd.notna(d.first_deferral) else f"{d.recipient_domain}: refused at once, never deferred.")
        action = texts[cause].remedy
        if cause == "gateway_block" and audit is not None and audit.missing_cidrs:
            action += f" Their allow-list lacks {', '.join(audit.missing_cidrs)}: send them the corrected list."
        act.append(f"{d.recipient_domain} → {ACTORS[texts[cause].actor]}: {action}")
    return {"What is wrong": wrong, "Which domains": which, "Since when": since, "Who must act": act}


AFFECTED_COLUMNS = ["first_seen", "recipient", "subject", "deferrals", "outcome", "to_outcome_minutes", "final_cause",
                    "remote_hosts"]


OUTCOME_SEVERITY = {"expired": 0, "pending": 1, "failed": 2}  # then delivered after deferrals


def affected_messages(tagged: pd.DataFrame) -> pd.DataFrame:
    """The messages (one row per recipient) that were deferred or did not arrive.

    Expired first, then still pending, failed, and delivered late; most deferred first within each.
    """
    timelines = message_timelines(tagged)
    outcome = timelines["outcome"].astype(str)
    hit = (timelines["deferrals"] > 0) | outcome.isin(OUTCOME_SEVERITY.keys())
    severity = outcome.map(OUTCOME_SEVERITY).fillna(len(OUTCOME_SEVERITY)).astype(int)
    rows = timelines.assign(_severity=severity)[hit.to_numpy()]
    rows = rows.sort_values(["_severity", "deferrals", "first_seen"], ascending=[True, False, True], kind="stable")
    return rows[AFFECTED_COLUMNS].reset_index(drop=True)


def findings_html(tagged: pd.DataFrame, *, audit: Any = None, top: int = 5) -> str:
    """:func:`findings` as escaped HTML sections."""
    parts = []
    for title, lines in findings(tagged, audit=audit, top=top).items():
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        parts.append(f"<h3>{html.escape(title)}</h3><ul>{items}</ul>")
    return "".join(parts)


def focus_domain(tagged: pd.DataFrame) -> str | None:
    """The domain to look at first: the most affected one whose main cause is gateway_block, else the most affected."""
    domains = summarize_domains(tagged)
    domains = domains[domains["impact"] > 0]
    blocked = domains[domains["dominant_cause"].astype(STRING).eq("gateway_block").fillna(False)]
    chosen = blocked if len(blocked) else domains
    return None if chosen.empty else str(chosen["recipient_domain"].iloc[0])


def report_heading(title: str, numbers: dict[str, Any], *, redacted: bool) -> str:
    """The report's title block: title, the trace's time span, when it was made, and whether it is redacted."""
    made = pd.Timestamp.now(tz="UTC")
    note = (" Addresses, subjects and message ids are replaced by pseudonyms (the same value keeps the same "
            "pseudonym); IP addresses, codes and causes are kept." if redacted else "")
    return (f"<h1>{html.escape(title)}</h1><p>Trace from {_when(numbers.get('start'))} to "
            f"{_when(numbers.get('end'))}; report made {_when(made)}.{html.escape(note)}</p>")
