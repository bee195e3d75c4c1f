"""What the report stands on: which inputs loaded (said at the top when they did not), the input files named by
format and date (never by path), the endpoint data's age, and the scope of a report for one partner.

Pure functions over the :class:`analysis.io.loader.LoadReport` and the tagged events, returning text, escaped
HTML or DataFrames; :mod:`analysis.report.notebook` and ``notebooks/04_share_report.ipynb`` use them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

import pandas as pd

from analysis.backends.operations import rows_of

__all__ = ["ENDPOINTS_STALE_DAYS", "endpoints_note", "file_labels", "input_problems", "load_table",
           "other_domains", "problems_html", "scope_leaks"]

ENDPOINTS_STALE_DAYS = 30  # endpoint data older than the trace by more than this is flagged


def _dates(events: Any) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """First and last timestamp per source file."""
    frame = rows_of(events, ["source_file", "timestamp"])
    if frame.empty:
        return {}
    spans = frame.groupby(frame["source_file"].astype(str), observed=True, sort=False)["timestamp"].agg(["min", "max"])
    return {str(k): (r["min"], r["max"]) for k, r in spans.iterrows()}


def file_labels(load_report: Any, events: Any) -> dict[str, str]:
    """Each input file's name for a shared report: its format and the dates it covers, never its path or name
    (a path names people and partners). Same format and dates twice: numbered."""
    spans = _dates(events) if len(load_report.files) else {}
    labels: dict[str, str] = {}
    for f in load_report.files:
        suffix = "".join(PurePath(f.path).suffixes[-2:]).lower()
        kind = f.format_label or f.format or f"unrecognized {suffix + ' ' if 0 < len(suffix) <= 9 else ''}file"
        span = spans.get(f.path)
        when = (f", {span[0]:%Y-%m-%d} to {span[1]:%Y-%m-%d}" if span and pd.notna(span[0]) else "")
        label = f"{kind}{when}"
        n, unique = 2, label
        while unique in labels.values():
            unique, n = f"{label} (#{n})", n + 1
        labels[f.path] = unique
    return labels


def _outcome(f: Any) -> str:
    if f.error:
        return f"NOT LOADED: {f.error}"
    if f.skipped:
        return f"skipped, not a trace export: {f.skipped}"
    parts = []
    if f.rows_read and not f.rows_loaded and not f.duplicates_removed:
        parts.append("NOTHING LOADED")
    if f.rows_rejected:
        parts.append(f"{f.rows_rejected:,} row(s) rejected (damaged or unreadable lines)")
    if f.duplicates_removed:
        parts.append(f"{f.duplicates_removed:,} row(s) already loaded from another file (overlapping exports): "
                     "counted once")
    if not f.rows_read:
        parts.append("NOTHING LOADED: no data rows (header only?)")
    return "; ".join(parts) or "loaded"


def load_table(load_report: Any, labels: dict[str, str]) -> pd.DataFrame:
    """One row per input file for people: its label, format facts, rows read = loaded + rejected + duplicates,
    and the outcome in words (what a duplicate is, why nothing loaded)."""
    rows = [{"input": labels.get(f.path, f.path), "encoding": f.encoding or "", "time_zone": f.time_zone or "",
             "rows_read": f.rows_read, "rows_loaded": f.rows_loaded, "rows_rejected": f.rows_rejected,
             "duplicates": f.duplicates_removed, "outcome": _outcome(f)} for f in load_report.files]
    return pd.DataFrame(rows, columns=["input", "encoding", "time_zone", "rows_read", "rows_loaded", "rows_rejected",
                                       "duplicates", "outcome"])


def input_problems(load_report: Any, events_count: int, labels: dict[str, str],
                   partners: Iterable[str] = (), partner_events: int | None = None) -> list[str]:
    """Why this report cannot be trusted as it stands, one sentence each (empty: nothing wrong).

    Every file that did not load, loaded nothing or holds event/status values the kit does not know, no event at
    all (then also the files of a folder that were skipped as no trace export), and partners absent from the trace."""
    problems = []
    for f in load_report.files:
        if f.skipped:
            if not events_count:
                problems.append(f"{labels.get(f.path, 'an input file')} was skipped: {f.skipped}")
            continue
        if f.error:
            problems.append(f"{labels.get(f.path, 'an input file')} did not load: {f.error}")
        elif not f.rows_loaded and not f.duplicates_removed:
            problems.append(f"{labels.get(f.path, 'an input file')} loaded no rows ({f.rows_read:,} read, "
                            f"{f.rows_rejected:,} rejected).")
        problems += [f"{labels.get(f.path, 'an input file')}: {w}" for w in f.unknown_values]
    if not load_report.files:
        problems.append("No input file was found.")
    elif not events_count:
        problems.append("No message-trace event was loaded: everything below is empty, not good news.")
    partners = list(partners)
    if partners and events_count and not partner_events:
        problems.append(f"{', '.join(partners)} does not appear in the trace: no message to "
                        f"{'this domain' if len(partners) == 1 else 'these domains'} was found.")
    return problems


def problems_html(problems: list[str]) -> str:
    """The problems as a red box for the top of the report (nothing when there are none)."""
    if not problems:
        return ""
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return ('<div class="exo-problems" style="border:2px solid #b00020;padding:0.5em 1em;color:#b00020">'
            "<b>This report is incomplete: its inputs did not load as expected.</b>"
            f"<ul>{items}</ul></div>")


def endpoints_note(endpoints: Any, trace_end: Any) -> tuple[str, bool]:
    """The endpoint data in words (instance, version, date, where from) and its age relative to the trace's last
    event; True when it is more than :data:`ENDPOINTS_STALE_DAYS` days older than the trace."""
    date = pd.Timestamp(endpoints.date)
    text = (f"Microsoft 365 endpoints: {endpoints.instance} instance, version {endpoints.version} of "
            f"{date:%Y-%m-%d}, from the {endpoints.source} data")
    if getattr(endpoints, "fallback", None):
        text += f" (not live: {endpoints.fallback})"
    stale = False
    if trace_end is not None and pd.notna(trace_end):
        end = pd.Timestamp(trace_end).tz_localize(None).normalize()
        days = int((end - date).days)
        stale = days > ENDPOINTS_STALE_DAYS
        text += (f"; {days:,} days older than the trace's last day ({end:%Y-%m-%d})" if days > 0 else
                 "; not older than the trace")
        if stale:
            text += (". WARNING: Microsoft may have added ranges since; check the current list "
                     "(exo-deferrals endpoints --update) before sending the allow-list")
    return text + ".", stale


def other_domains(tagged: Any, partners: Iterable[str]) -> set[str]:
    """The recipient domains of the input other than ``partners`` and the tenant's own (the senders of outbound
    mail): what a report for ``partners`` must not show."""
    frame = rows_of(tagged, ["recipient_domain", "sender", "direction"])
    domains = set(frame["recipient_domain"].astype("string").dropna().str.lower())
    outbound = frame["direction"].astype("string").eq("outbound").fillna(False).to_numpy(dtype=bool)
    senders = set(frame["sender"][outbound].astype("string").dropna().str.lower().str.rpartition("@")[2])
    return domains - {p.strip().lower() for p in partners} - senders


def scope_leaks(text: str, domains: Iterable[str]) -> list[str]:
    """The ``domains`` that occur in ``text`` as whole names (``labs.de`` does not match ``ironlabs.de``)."""
    lowered = text.lower()
    found = []
    for domain in sorted(domains):
        if domain and domain in lowered and re.search(rf"(?<![\w.-]){re.escape(domain)}(?![\w-])", lowered):
            found.append(domain)
    return found
