"""The proof a partner's admin acts on: refusals by Exchange Online source range, per recipient domain.

A recipient gateway that refuses every delivery attempt from some published Exchange Online ranges and accepts
attempts from others has an allow-list that lacks the refused ranges (docs/design.md, "Cause taxonomy": EXO IPs
refused selectively). :func:`refusal_proofs` finds those domains from the trace alone, with no allow-list: per
domain the table of :func:`analysis.summaries.tables.deferral_rate_by_source_range`, the refused and accepted
ranges, the published ranges the trace never tried, and the corrected allow-list in the appliance's format
(:mod:`analysis.audit.allowlist`). Pure functions returning DataFrames, text and escaped HTML.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.audit.allowlist import MARK, AllowListAudit, audit_allowlist
from analysis.backends.operations import each_partition, rows_of, unused_categories_removed
from analysis.charts.figures import plot_source_ranges
from analysis.reference.endpoints import Endpoints
from analysis.report.findings import cause_label, findings
from analysis.summaries.selections import message_keys
from analysis.summaries.tables import deferral_rate_by_source_range, summarize_domains

__all__ = ["APPLIANCE_FORMATS", "RefusalProof", "appliance_format", "domain_rows", "proof_figure", "proof_html",
           "rates_table", "refusal_proofs", "source_ranges", "telling_messages", "triage", "triage_html",
           "with_source_ranges"]

# the allow-list format of analysis.audit.allowlist each identified gateway vendor (gateways.toml) reads
APPLIANCE_FORMATS = {"Cisco Secure Email (IronPort)": "ironport"}
GATEWAY_BLOCK = "gateway_block"  # the cause tag() gives refusals it found selective (analysis/tagging/tag.py)
CANDIDATES = 10  # domains with deferrals or failures examined, most affected first


def appliance_format(gateway: str | None) -> str:
    """The allow-list format for ``gateway`` (a vendor of analysis/reference/data/gateways.toml); plain text
    (one range a line, what every appliance imports) when the vendor has no format of its own."""
    return APPLIANCE_FORMATS.get(gateway or "", "text")


@dataclass
class RefusalProof:
    """One recipient domain whose gateway refuses some Exchange Online source ranges and accepts others."""

    domain: str
    gateway: str | None
    rates: pd.DataFrame  # deferral_rate_by_source_range of the domain's events
    refused: list[str]  # published ranges: refused on every attempt, never delivered
    accepted: list[str]  # published ranges with deliveries
    untried: list[str]  # Exchange Online SMTP ranges the trace never tried for this domain
    corrected: str  # the allow-list the appliance needs, in ``fmt``
    fmt: str

    @property
    def refusals(self) -> int:
        return int(self.rates.loc[self.rates["source_range"].isin(self.refused), "deferred"].sum()
                   + self.rates.loc[self.rates["source_range"].isin(self.refused), "failed"].sum())

    @property
    def refused_attempts(self) -> int:
        return int(self.rates.loc[self.rates["source_range"].isin(self.refused), "attempts"].sum())

    @property
    def accepted_attempts(self) -> int:
        return int(self.rates.loc[self.rates["source_range"].isin(self.accepted), "attempts"].sum())

    def sentence(self) -> str:
        """The finding in one sentence, addressed to the domain's mail admin."""
        behind = f"the {self.gateway} gateway" if self.gateway else "the mail gateway"
        return (f"{self.domain}: {behind} refused {self.refusals:,} of {self.refused_attempts:,} delivery attempts "
                f"from Exchange Online's published range{'s' if len(self.refused) > 1 else ''} "
                f"{', '.join(self.refused)} and accepted attempts from {', '.join(self.accepted)}. "
                f"Its allow-list lacks {', '.join(self.refused)}: add "
                f"{'them' if len(self.refused) > 1 else 'it'} (and every other current Exchange Online range, "
                "appendix).")


def domain_rows(tagged: Any, domains: list[str] | tuple[str, ...] | set[str]) -> Any:
    """The rows of ``tagged`` (pandas or Dask) whose recipient domain is one of ``domains`` (case-insensitive);
    on pandas, categorical columns keep only the categories these rows use."""
    wanted = sorted({d.strip().lower() for d in domains})
    # categories of other rows would still name other domains (and their files) in a written table
    return unused_categories_removed(each_partition(tagged, _of_domains, wanted))


def _of_domains(rows: pd.DataFrame, wanted: list[str]) -> pd.DataFrame:
    return rows[rows["recipient_domain"].astype("string").str.lower().isin(wanted).fillna(False).to_numpy(dtype=bool)]


def _published_smtp(endpoints: Any) -> list[str]:
    return endpoints.exchange_mail_flow_ranges(port=25) or endpoints.exchange_mail_flow_ranges()


def refusal_proofs(tagged: Any, endpoints: Any = None, *, audit: AllowListAudit | None = None,
                   candidates: int = CANDIDATES) -> list[RefusalProof]:
    """The domains whose gateway refuses selectively by Exchange Online source range, most refusals first.

    A published range counts as refused when it has no delivery and its refusals are gateway_block (tag's
    cross-event rule decides when a split by source range is clear); the domain is selective when another
    published range has deliveries. ``audit`` (of the partner's real list) gives the
    corrected list in the list's own format; without it the list is built from the ranges the gateway was seen
    accepting plus every other Exchange Online SMTP range of ``endpoints`` (default: the bundled snapshot).
    """
    if endpoints is None:
        endpoints = Endpoints.bundled()
    domains = summarize_domains(tagged)
    domains = domains[domains["impact"] > 0].head(candidates)
    published = _published_smtp(endpoints)
    proofs = []
    for row in domains.itertuples():
        domain = str(row.recipient_domain)
        rates = deferral_rate_by_source_range(domain_rows(tagged, [domain]), endpoints)
        if rates.empty:
            continue
        known = rates["exo_ip_published"].fillna(False).to_numpy(dtype=bool)
        blocked = rates["dominant_cause"].astype("string").eq(GATEWAY_BLOCK).fillna(False).to_numpy(dtype=bool)
        refusing = known & blocked & (rates["delivered"] == 0).to_numpy()
        accepting = known & (rates["delivered"] > 0).to_numpy()
        if not refusing.any() or not accepting.any():
            continue
        refused = rates.loc[refusing, "source_range"].astype(str).tolist()
        accepted = rates.loc[accepting, "source_range"].astype(str).tolist()
        gateway = None if pd.isna(row.gateway) else str(row.gateway)
        if audit is not None:
            fmt, corrected = audit.format, audit.corrected()
        else:
            fmt = appliance_format(gateway)
            corrected = _complete_list(published, refused, fmt, endpoints)
        untried = [r for r in published if r not in set(rates["source_range"].astype(str))]
        proofs.append(RefusalProof(domain, gateway, rates, refused, accepted, untried, corrected, fmt))
    return sorted(proofs, key=lambda p: -p.refusals)


def _complete_list(published: list[str], refused: list[str], fmt: str, endpoints: Any) -> str:
    """Every published Exchange Online SMTP range as an allow-list in ``fmt``, its first comment (formats that
    have one) saying so and naming the refused ranges."""
    text = audit_allowlist("\n".join(published), endpoints, fmt="text").corrected(fmt)
    note = (f"# {MARK}: every Exchange Online SMTP range of Microsoft 365 endpoints {endpoints.instance} version "
            f"{endpoints.version}; refused in the trace: {', '.join(refused)}")
    first, _, rest = text.partition("\n")
    return f"{note}\n{rest}" if first.startswith(f"# {MARK}") else text  # CSV has no comment line


RATE_COLUMNS = {"source_range": "Exchange Online source range", "exo_ip_published": "published by Microsoft",
                "attempts": "attempts", "deferred": "refused (deferred)", "delivered": "delivered",
                "failed": "failed", "deferral_rate": "refused share", "exo_ips": "source IPs"}


def rates_table(proof: RefusalProof) -> pd.DataFrame:
    """The proof's table for people: one row per source range, the refused ranges first, shares as percentages."""
    rates = proof.rates[list(RATE_COLUMNS)].rename(columns=RATE_COLUMNS)
    rates["published by Microsoft"] = rates["published by Microsoft"].map({True: "yes", False: "no"}).fillna("unknown")
    rates["refused share"] = (100 * proof.rates["deferral_rate"]).round(0).astype(int).astype(str) + " %"
    verdict = ["REFUSED: missing from the allow-list" if r in proof.refused else
               "accepted" if r in proof.accepted else "" for r in proof.rates["source_range"].astype(str)]
    rates.insert(1, "verdict", verdict)
    return rates


def proof_html(proof: RefusalProof) -> str:
    """The proof of one domain as escaped HTML: the sentence, the missing ranges and the table."""
    esc = html.escape
    missing = "".join(f"<li><b>{esc(r)}</b> (published by Microsoft for Exchange Online mail flow; every "
                      "attempt refused)</li>" for r in proof.refused)
    untried = (f"<p>Also required, not tried by Exchange Online in this trace: {esc(', '.join(proof.untried))}.</p>"
               if proof.untried else "")
    table = rates_table(proof).to_html(index=False, escape=True, border=0, classes="exo-table exo-proof")
    return (f'<div class="exo-proof-finding"><p><b>{esc(proof.sentence())}</b></p>'
            f"<p>Missing Exchange Online ranges:</p><ul>{missing}</ul>{untried}{table}</div>")


def proof_figure(proof: RefusalProof) -> Any:
    """:func:`analysis.charts.figures.plot_source_ranges` of the proof, its title naming the domain (a chart
    saved on its own keeps its context)."""
    figure = plot_source_ranges(proof.rates)
    for ax in figure.axes[:1]:
        for loc in ("left", "center"):
            if ax.get_title(loc=loc):
                ax.set_title(f"{proof.domain}: {ax.get_title(loc=loc)}", loc=loc)
    return figure


NOTEBOOK_STEPS = {  # where each finding is looked at in the guided notebooks (notebooks/*.ipynb)
    "proof": "03_gateways_and_exchange_ranges, step 4 (the proof) and step 5 (the allow-list audit)",
    "causes": "02_why_deferred, step 6 (drill down to the messages and their replies)",
    "report": "04_share_report (or `exo-deferrals report TRACE -o report.html --partner {domain}`)",
}


def triage(tagged: Any, endpoints: Any = None) -> dict[str, list[str]]:
    """What is wrong and where to look next, computed from the trace: the opening of notebooks 01-03."""
    said = findings(tagged)
    wrong = said["What is wrong"]
    if "Which domains" not in said:
        return {"What is wrong": wrong, "Where to look next": ["Nothing to chase in this trace."]}
    proofs = refusal_proofs(tagged, endpoints)
    steps = [f"{p.domain}: its gateway refuses every attempt from {', '.join(p.refused)} - the proof and the fix "
             f"are in {NOTEBOOK_STEPS['proof']}; then send {NOTEBOOK_STEPS['report'].format(domain=p.domain)}."
             for p in proofs]
    domains = summarize_domains(tagged)
    proven = {p.domain for p in proofs}
    others = domains[(domains["impact"] > 0) & ~domains["recipient_domain"].astype(str).isin(proven)].head(3)
    steps += [f"{d.recipient_domain}: mostly {cause_label(d.dominant_cause)} - see {NOTEBOOK_STEPS['causes']}."
              for d in others.itertuples()]
    return {"What is wrong": wrong, "Where to look next": steps}


def triage_html(tagged: Any, endpoints: Any = None) -> str:
    """:func:`triage` as escaped HTML."""
    parts = [f"<h4>{html.escape(title)}</h4><ul>{''.join(f'<li>{html.escape(s)}</li>' for s in lines)}</ul>"
             for title, lines in triage(tagged, endpoints).items()]
    return f'<div class="exo-triage">{"".join(parts)}</div>'


# ---------------------------------------------------------------- one message's attempts by source range

NOT_PUBLISHED = "not published"
DELIVERED_EVENTS = ("deliver", "send")  # send: the EAC extended report's hand-over to the remote server


def _endpoints(endpoints: Any) -> Any:
    if endpoints is not None:
        return endpoints
    return Endpoints.bundled()


def source_ranges(ips: pd.Series, endpoints: Any = None) -> pd.Series:
    """Per Exchange Online source IP: the published range holding it (``"not published"`` when none; NA without an
    IP), matched once per distinct IP."""
    text = ips.astype("string")
    uniques = pd.Series(text.dropna().unique(), dtype="string")
    matched = _endpoints(endpoints).match_ips(uniques)
    ranges = matched["cidr"].astype("string").fillna(NOT_PUBLISHED)
    return pd.Series(text.map(dict(zip(uniques, ranges, strict=True))), index=ips.index, dtype="string")


def with_source_ranges(journey: pd.DataFrame, endpoints: Any = None) -> pd.DataFrame:
    """``journey`` (rows of :func:`analysis.summaries.tables.message_journey`) with ``exo_range`` after ``exo_ip``:
    the published Exchange Online range each attempt came from."""
    if "exo_ip" not in journey.columns:
        return journey
    out = journey.copy()
    out.insert(out.columns.get_loc("exo_ip") + 1, "exo_range", source_ranges(journey["exo_ip"], endpoints))
    return out


def telling_messages(tagged: Any, endpoints: Any = None) -> list[str]:
    """The message+recipient keys (:func:`analysis.summaries.selections.message_keys`) deferred from one source
    range and delivered from another - the journey that shows the mechanism - gateway refusals first, then the
    most deferred."""
    rows = rows_of(tagged, ["trace_id", "message_id", "recipient", "exo_ip", "event", "cause"], _attempts)
    if rows.empty:
        return []
    frame = pd.DataFrame({"key": message_keys(rows).to_numpy(), "range": source_ranges(rows["exo_ip"], endpoints),
                          "deferred": rows["event"].astype("string").eq("defer").to_numpy(),
                          "blocked": rows["cause"].astype("string").eq(GATEWAY_BLOCK).fillna(False).to_numpy()},
                         index=rows.index)
    # gateway refusals first (the mechanism this kit is about), then the most deferred
    deferrals = frame[frame["deferred"]].groupby("key").agg(blocked=("blocked", "any"), deferrals=("blocked", "size"))
    deferred = frame[frame["deferred"]][["key", "range"]].drop_duplicates()
    delivered = frame[~frame["deferred"] & frame["key"].isin(deferrals.index)][["key", "range"]].drop_duplicates()
    other = delivered.merge(deferred, on=["key", "range"], how="left", indicator=True)
    keys = other.loc[other["_merge"].eq("left_only"), "key"].unique()
    ranked = deferrals.reindex(keys).rename_axis("key").reset_index()  # ties by key: the same on any engine
    ranked = ranked.sort_values(["blocked", "deferrals", "key"], ascending=[False, False, True], kind="stable")
    return ranked["key"].tolist()


def _attempts(rows: pd.DataFrame) -> pd.DataFrame:
    """The delivery attempts with a source IP: deferrals and deliveries."""
    event = rows["event"].astype("string")
    return rows[(rows["exo_ip"].notna() & event.isin(["defer", *DELIVERED_EVENTS])).fillna(False).to_numpy(dtype=bool)]
