"""What the sample story holds, counted on its ground truth, and the README section that states it.

:func:`story_facts` counts the truth table of :func:`analysis.sample.generator.generate_story` (messages,
message+recipients, events, final statuses, and per story element its messages, recipients, deferrals and
outcomes); :func:`story_section` writes those numbers as the "The story" section of data/sample/README.md and
:func:`readme_text` puts it between the section's markers, so the README never states a number by hand.
Units follow the summaries: *messages* are distinct messages, *recipients* message+recipient pairs, *deferrals*
defer events (one per recipient of an attempt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.core.concepts import is_expiry
from analysis.core.schema import EVENTS, STATUSES
from analysis.sample.generator import IRONPORT_DOMAIN, REFUSED_RANGE

__all__ = ["BEGIN", "ELEMENTS", "END", "Element", "readme_text", "story_facts", "story_section"]

BEGIN = "<!-- story: generated from the truth by `exo-deferrals sample`; do not edit by hand -->"
END = "<!-- story: end -->"


@dataclass(frozen=True)
class Element:
    """One element of the story: the message+recipients it is made of, and what happens to them (no numbers)."""

    name: str
    what: str
    domain: str | None = None  # its recipients' domain (None: any)
    codes: tuple[str, ...] = ()  # enhanced codes one of its deferrals or failures carries (empty: any pair)
    recipient: str | None = None
    blocks: tuple[str, ...] = ()  # the generator's blocks it is made of (generator.intended_messages)


ELEMENTS = (
    Element("stale IronPort allow-list", "refused from EXO source IPs in 52.100.0.0/14 (`421` banner wrapped in "
            "`451 4.4.0`), retried for up to 24 h, then `550 4.4.7 Message expired`", IRONPORT_DOMAIN,
            blocks=("ironport",)),
    Element("greylisting", "each deferred once (`450 4.2.0 ... Greylisted`), delivered minutes later",
            "adventure-works.com", blocks=("greylist",)),
    Element("server down", "unreachable 2026-11-17 06:00 to 2026-11-18 12:00 UTC: `450 4.4.315 Connection timed "
            "out`, expiry `550 5.4.315 ...`", "fourthcoffee.com", blocks=("down", "down_early")),
    Element("typo addresses", "Gmail and Postfix `550 5.1.1`, EXO `550 5.1.10 RESOLVER.ADR.RecipientNotFound`, "
            "failed at once", codes=("5.1.1", "5.1.10"), blocks=("typo_gmail", "typo_postfix", "typo_exo")),
    Element("disabled mailbox", "`550 5.2.1 Mailbox disabled`, failed at once", "wingtiptoys.com", ("5.2.1",),
            blocks=("disabled",)),
    Element("Yahoo rate limiting", "Thursday 14:00 marketing blast: `421 4.7.0 [TSS04] Messages from <EXO IP> "
            "...`, delivered after 1-3 retries", "yahoo.com", ("4.7.0",), blocks=("blast_yahoo",)),
    Element("DMARC rejection", "the same blast from `news@marketing.contoso.com`: multi-line `550-5.7.26 ... DMARC "
            "policy`, failed at once", "gmail.com", ("5.7.26",), blocks=("blast_gmail",)),
    Element("STARTTLS required", "partner connector; `450 4.4.317 ... [Message=451 5.7.3 STARTTLS is required to "
            "send mail]`, expiry `550 5.4.317 Message expired, ...`", "litware.com",
            blocks=("starttls", "starttls_late", "hostile")),
    Element("full mailbox", "`452-4.2.2 ... over quota`, retried, then `550 4.4.7 Message expired`", "gmail.com",
            recipient="m.rossi.archive@gmail.com", blocks=("quota", "quota_late")),
    Element("oversized attachment", "`552 5.3.4 Message size exceeds fixed maximum message size`, failed at once",
            "lucernepublishing.com", ("5.3.4",), blocks=("too_large",)),
)
_OUTCOMES = ("messages", "recipients", "deferrals", "delivered", "delivered_after_deferral", "failed", "expired",
             "pending")


def _in_range(ips: pd.Series, cidr: str) -> np.ndarray:
    """Per IPv4 text: inside ``cidr`` (whole-column integer arithmetic; anything else is False)."""
    network, bits = cidr.split("/")
    octets = ips.astype(str).str.extract(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$").astype(float).to_numpy()
    value = octets @ np.array([1 << 24, 1 << 16, 1 << 8, 1], dtype=float)
    start = sum(int(o) << s for o, s in zip(network.split("."), (24, 16, 8, 0), strict=True))
    return (value >= start) & (value < start + (1 << (32 - int(bits))))


def _pairs(events: pd.DataFrame) -> pd.Series:
    return events["message_id"].astype(str) + "\n" + events["recipient"].astype(str)


def _element_rows(events: pd.DataFrame, pair: pd.Series, element: Element) -> np.ndarray:
    """The rows of every message+recipient that belongs to ``element``."""
    mine = np.ones(len(events), dtype=bool)
    if element.domain:
        mine &= events["recipient_domain"].eq(element.domain).to_numpy(dtype=bool)
    if element.recipient:
        mine &= events["recipient"].eq(element.recipient).to_numpy(dtype=bool)
    if element.codes:
        hit = mine & events["enhanced_code"].isin(element.codes).to_numpy(dtype=bool)
        mine &= pair.isin(set(pair[hit])).to_numpy(dtype=bool)
    return mine


def _outcomes(events: pd.DataFrame, pair: pd.Series, expired: np.ndarray) -> dict[str, int]:
    """Messages, recipients, deferrals and final outcomes of the pairs of ``events`` (all rows of each pair)."""
    first = ~pair.duplicated().to_numpy()
    status = events["status"].astype(str).to_numpy()[first]
    deferred = set(pair[events["event"].eq("defer").to_numpy(dtype=bool)])
    late = pair[first].isin(deferred).to_numpy() & (status == "delivered")
    return {
        "messages": int(events["message_id"].nunique()),
        "recipients": int(first.sum()),
        "deferrals": int(events["event"].eq("defer").sum()),
        "delivered": int((status == "delivered").sum()),
        "delivered_after_deferral": int(late.sum()),
        "failed": int((status == "failed").sum()),
        "expired": int(pair[expired].nunique()),
        "pending": int((status == "pending").sum()),
    }


def story_facts(events: pd.DataFrame) -> dict[str, Any]:
    """The story's numbers, counted on its truth table (``generate_story()``).

    Keys: messages, recipients (pairs) and recipients_by_direction, messages_with_several_recipients,
    outbound_domains, events (per event type that occurs), statuses (final status per pair), elements (per
    :data:`ELEMENTS` name: messages, recipients, deferrals, delivered, delivered_after_deferral, failed, expired,
    pending, domains) and ironport (deferrals and accepted deliveries of the IronPort element from inside
    REFUSED_RANGE and in all).
    """
    pair = _pairs(events)
    first = ~pair.duplicated().to_numpy()
    pairs = events[first]
    expired = is_expiry(events["event"], events["enhanced_code"], events["reply"])
    outbound = pairs["direction"].eq("outbound").to_numpy(dtype=bool)
    elements = {}
    for element in ELEMENTS:
        rows = _element_rows(events, pair, element)
        facts: dict[str, Any] = _outcomes(events[rows], pair[rows], expired[rows])
        facts["domains"] = sorted(events.loc[rows, "recipient_domain"].astype(str).unique())
        elements[element.name] = facts
    ironport = events[events["recipient_domain"].eq(IRONPORT_DOMAIN).to_numpy(dtype=bool)]
    refused = _in_range(ironport["exo_ip"], REFUSED_RANGE)
    defer, send = (ironport["event"].eq(e).to_numpy(dtype=bool) for e in ("defer", "send"))
    events_by_type = events["event"].astype(str).value_counts()
    statuses = pairs["status"].astype(str).value_counts()
    return {
        "messages": int(events["message_id"].nunique()),
        "recipients": int(first.sum()),
        "recipients_by_direction": pairs["direction"].astype(str).value_counts().to_dict(),
        "messages_with_several_recipients": int((pairs["message_id"].value_counts() > 1).sum()),
        "outbound_domains": int(pairs.loc[outbound, "recipient_domain"].nunique()),
        "events": {e: int(events_by_type[e]) for e in EVENTS if e in events_by_type},
        "statuses": {s: int(statuses[s]) for s in STATUSES if s in statuses},
        "elements": elements,
        "ironport": {"deferrals": int(defer.sum()), "deferrals_in_range": int((defer & refused).sum()),
                     "sends": int(send.sum()), "sends_in_range": int((send & refused).sum())},
    }


def _n(number: int) -> str:
    return f"{number:,}"


def story_section(facts: dict[str, Any], rows: dict[str, int], *, seed: int, messages: int) -> str:
    """The README's "The story" section (markers included) for ``story_facts(generate_story(seed, ...))`` and
    ``rows`` (:func:`analysis.sample.generator.file_rows` of the same story)."""
    direction = facts["recipients_by_direction"]
    events = ", ".join(f"{_n(n)} {e}" for e, n in facts["events"].items())
    statuses = ", ".join(f"{_n(n)} {s}" for s, n in facts["statuses"].items())
    iron = facts["ironport"]
    head = " | ".join(("element", "recipient domains", *(c.replace("_", " ") for c in _OUTCOMES), "what happens"))
    lines = [
        BEGIN,
        f"## The story (seed {seed}, {_n(messages)} messages)",
        "",
        f"{_n(facts['messages'])} messages ({_n(direction.get('outbound', 0))} outbound, "
        f"{_n(direction.get('internal', 0))} internal, {_n(direction.get('inbound', 0))} inbound message+recipients; "
        f"{_n(facts['recipients'])} in all, {_n(facts['messages_with_several_recipients'])} messages with several "
        f"recipients) to {_n(facts['outbound_domains'])} outbound recipient domains; "
        f"{_n(sum(facts['events'].values()))} events: {events}. Final status of the message+recipients: {statuses}.",
        "",
        "Per element of the story: *messages* are distinct messages, *recipients* message+recipient pairs, "
        "*deferrals* defer events (one per recipient of an attempt), the outcomes count recipients by their final "
        "status (*expired*: failed by the expiry after about 24 h, part of *failed*; *pending*: still queued at the "
        "trace end; *delivered after deferral*: part of *delivered*).",
        "",
        f"| {head} |",
        "|" + "---|" * (len(_OUTCOMES) + 3),
    ]
    for element in ELEMENTS:
        e = facts["elements"][element.name]
        lines.append("| " + " | ".join((element.name, ", ".join(f"`{d}`" for d in e["domains"]),
                                        *(_n(e[c]) for c in _OUTCOMES), element.what)) + " |")
    lines += [
        "",
        f"IronPort: {_n(iron['deferrals_in_range'])} of its {_n(iron['deferrals'])} deferrals came from Exchange "
        f"Online source IPs in {REFUSED_RANGE}, {_n(iron['sends_in_range'])} of its {_n(iron['sends'])} accepted "
        "deliveries did.",
        "",
        "Data rows per file (lines after the header; a summary export has one per message+recipient, the EAC "
        "summaries one per message, a tracking log and the Extended report one per event and its recipients):",
        "",
        "| file | data rows |",
        "|---|---|",
        *(f"| `{name}` | {_n(n)} |" for name, n in rows.items()),
        END,
    ]
    return "\n".join(lines) + "\n"


def readme_text(path: Path, section: str) -> str:
    """The text of ``path`` (a README beside the data) with ``section`` between its markers; only ``section`` when
    there is no such file. A README without the markers is refused (ValueError), so no text of it is lost."""
    if not path.exists():
        return section
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no '{BEGIN}' ... '{END}' markers around the story section")
    return text[:start] + section + text[end + len(END):].removeprefix("\n")
