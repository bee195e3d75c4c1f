"""What the numbers say, in words: the headline card, the per-cause remedies and the report's summary.

Pure functions over the tagged events (and an optional allow-list audit) returning DataFrames or escaped HTML;
the notebooks display them and the shared report puts the summary first.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from analysis.backends.operations import columns_of, rows_of
from analysis.core.schema import STRING
from analysis.reference.causes import default_rules
from analysis.summaries.tables import headline, message_timelines, summarize_causes, summarize_domains

# the causes of docs/design.md's taxonomy in words, for prose (tables keep the contract's names)
CAUSE_LABELS = {
    "bad_address": "wrong recipient address", "mailbox_disabled": "recipient mailbox disabled or removed",
    "mailbox_full": "recipient mailbox full", "recipient_server_down": "recipient mail server unreachable",
    "dns_failure": "recipient DNS/MX problem", "gateway_block": "refused by the recipient's mail gateway",
    "reputation_blocklist": "sender IP on a blocklist", "greylisting": "greylisting",
    "rate_limited": "too much mail at once (rate limit)", "auth_policy": "SPF/DKIM/DMARC failure",
    "tls_required": "TLS problem", "content_rejected": "content rejected", "message_too_large": "message too large",
    "sender_restricted": "sender restricted by Microsoft", "routing_config": "connector or routing problem",
    "unknown": "unknown cause",
}

ACTORS = {"sender": "the sender's side (your tenant)", "recipient": "the recipient's admins",
          "either": "both sides (compare settings)", "nobody": "nobody (Exchange Online retries)"}


def cause_label(cause: Any) -> str:
    """A cause of the taxonomy in plain words (its own name when it is not one)."""
    return "unknown cause" if cause is None or pd.isna(cause) else CAUSE_LABELS.get(str(cause), str(cause))


def human_duration(minutes: Any) -> str:
    """Minutes as people say them: "45 s", "12 min", "24 h 1 min", "3 d 2 h"; empty when unknown."""
    if minutes is None or pd.isna(minutes):
        return ""
    seconds = round(float(minutes) * 60)
    if seconds < 60:
        return f"{seconds} s"
    total = seconds // 60
    days, hours, mins = total // 1440, total % 1440 // 60, total % 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


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
        ("Most common cause",
         f"{cause_label(numbers['dominant_cause'])} ({share:.0%} of deferred or failed recipients)"
         if numbers.get("dominant_cause") else "none"),
        ("Trace covers", f"{_when(numbers.get('start'))} to {_when(numbers.get('end'))}"),
    ]
    return pd.DataFrame(rows, columns=["measure", "value"])


LOW_CONFIDENCE = ("class", "none")  # cause_confidence (docs/design.md): only the code's class, or nothing, decided


def _low_confidence(tagged: Any, names: list[str]) -> list[int]:
    """Per cause: its outbound deferral and failure events whose cause only the code class (or nothing) decided;
    zeros when the trace has no ``cause_confidence``."""
    if "cause_confidence" not in columns_of(tagged).columns:
        return [0] * len(names)
    rows = rows_of(tagged, ["event", "direction", "cause_confidence", "cause"], _low_confidence_rows)
    counts = rows["cause"].astype(STRING).value_counts()
    return [int(counts.get(name, 0)) for name in names]


def _low_confidence_rows(rows: pd.DataFrame) -> pd.DataFrame:
    hit = (rows["event"].astype(STRING).isin(["defer", "fail"]) & rows["direction"].astype(STRING).eq("outbound")
           & rows["cause_confidence"].astype(STRING).isin(LOW_CONFIDENCE)).fillna(False).to_numpy(dtype=bool)
    return rows[hit]


def remedy_table(tagged: pd.DataFrame) -> pd.DataFrame:
    """One row per cause seen on deferrals and failures: who acts, what it means, what to do, what it touched.

    Columns: cause, who_acts, explanation, remedy, recipients, events, low_confidence_events (decided by the
    code's class only, or by nothing), top_domains; most recipients first.
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
        "low_confidence_events": _low_confidence(tagged, names),
        "top_domains": causes["top_domains"].astype(STRING).to_numpy(),
    })


def findings(tagged: pd.DataFrame, *, audit: Any = None, proofs: Any = (), top: int = 5) -> dict[str, list[str]]:
    """The report's summary as plain sentences: what is wrong, which domains, since when, who must act.

    ``audit``: an :class:`analysis.audit.allowlist.AllowListAudit` whose missing ranges are named in the actions;
    ``proofs``: the :class:`analysis.report.proof.RefusalProof` of the trace, whose refused ranges are named even
    without an allow-list.
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
             f"The most common cause is: {cause_label(numbers['dominant_cause'])} ({share:.0%} of deferred or "
             "failed recipients)."]
    domains = summarize_domains(tagged)
    domains = domains[domains["impact"] > 0].head(top)
    texts = default_rules().causes
    which, since, act = [], [], []
    for d in domains.itertuples():
        cause = str(d.dominant_cause) if pd.notna(d.dominant_cause) else "unknown"
        gateway = f", behind {d.gateway}" if pd.notna(d.gateway) and d.gateway else ""
        which.append(f"{d.recipient_domain}: {d.failed:,} failed, {d.pending:,} pending, "
                     f"{d.delivered_after_deferral:,} late, mostly {cause_label(cause)}{gateway}.")
        since.append(f"{d.recipient_domain}: deferred from {_when(d.first_deferral)} to {_when(d.last_deferral)}."
                     if pd.notna(d.first_deferral) else f"{d.recipient_domain}: refused at once, never deferred.")
        action = texts[cause].remedy
        refused = next((p.refused for p in proofs if p.domain == str(d.recipient_domain)), None)
        if cause == "gateway_block" and audit is not None and audit.missing_cidrs:
            action += f" Their allow-list lacks {', '.join(audit.missing_cidrs)}: send them the corrected list."
        elif cause == "gateway_block" and refused:
            action += (f" Every attempt from {', '.join(refused)} was refused: their allow-list lacks "
                       f"{'these ranges' if len(refused) > 1 else 'this range'}; send them the corrected list "
                       "(appendix).")
        act.append(f"{d.recipient_domain} → {ACTORS[texts[cause].actor]}: {action}")
    return {"What is wrong": wrong, "Which domains": which, "Since when": since, "Who must act": act}


AFFECTED_COLUMNS = ["first_seen", "recipient", "subject", "deferrals", "outcome", "time_to_outcome", "final_cause",
                    "remote_hosts"]


OUTCOME_SEVERITY = {"expired": 0, "pending": 1, "failed": 2}  # then delivered after deferrals


def affected_messages(tagged: pd.DataFrame) -> pd.DataFrame:
    """The messages (one row per recipient) that were deferred or did not arrive.

    Expired first, then still pending, failed, and delivered late; most deferred first within each.
    ``time_to_outcome`` in words ("24 h 1 min").
    """
    timelines = message_timelines(tagged)
    timelines["time_to_outcome"] = timelines["to_outcome_minutes"].map(human_duration).astype(STRING)
    outcome = timelines["outcome"].astype(str)
    hit = (timelines["deferrals"] > 0) | outcome.isin(OUTCOME_SEVERITY.keys())
    severity = outcome.map(OUTCOME_SEVERITY).fillna(len(OUTCOME_SEVERITY)).astype(int)
    rows = timelines.assign(_severity=severity)[hit.to_numpy()]
    rows = rows.sort_values(["_severity", "deferrals", "first_seen"], ascending=[True, False, True], kind="stable")
    return rows[AFFECTED_COLUMNS].reset_index(drop=True)


def findings_html(tagged: pd.DataFrame, *, audit: Any = None, proofs: Any = (), top: int = 5,
                  sections: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> str:
    """:func:`findings` as escaped HTML sections (only ``sections`` when given, never those in ``skip``)."""
    parts = []
    for title, lines in findings(tagged, audit=audit, proofs=proofs, top=top).items():
        if (sections is not None and title not in sections) or title in skip:
            continue
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        parts.append(f"<h3>{html.escape(title)}</h3><ul>{items}</ul>")
    return f'<div class="exo-findings">{FINDINGS_STYLE}{"".join(parts)}</div>'


# compact: the proof that follows the summary must be on the reader's first screen
FINDINGS_STYLE = ("<style>.exo-findings h3 { font-size: 1.05em; margin: 0.7em 0 0.2em; } "
                  ".exo-findings ul { margin: 0; } .exo-findings li { margin: 0; }</style>")


def focus_domain(tagged: pd.DataFrame) -> str | None:
    """The domain to look at first: the most affected one whose main cause is gateway_block, else the most affected."""
    domains = summarize_domains(tagged)
    domains = domains[domains["impact"] > 0]
    blocked = domains[domains["dominant_cause"].astype(STRING).eq("gateway_block").fillna(False)]
    chosen = blocked if len(blocked) else domains
    return None if chosen.empty else str(chosen["recipient_domain"].iloc[0])


def report_heading(title: str, numbers: dict[str, Any], *, redacted: bool, partners: list[str] | None = None) -> str:
    """The report's title block: title, who it is for (``partners``: the recipient domains it is scoped to), the
    trace's time span, when it was made, and whether it is redacted."""
    made = pd.Timestamp.now(tz="UTC")
    note = (" Addresses, subjects and message ids are replaced by pseudonyms (the same value keeps the same "
            "pseudonym); IP addresses, codes and causes are kept." if redacted else "")
    audience = (f"<p><b>For the mail administrators of {html.escape(', '.join(partners))}</b>: only the messages "
                "sent to your organisation are in this report.</p>" if partners else "")
    return (f"<h1>{html.escape(title)}</h1>{audience}<p>Trace from {_when(numbers.get('start'))} to "
            f"{_when(numbers.get('end'))}; report made {_when(made)}.{html.escape(note)}</p>")
