"""exo-deferrals: why is Exchange Online outbound mail deferred or failing, and what exactly to change.

Public API (imported lazily so that ``import analysis`` and the CLI stay fast)::

    events = load_trace("data/sample/")          # canonical events table (+ events.attrs["load_report"])
    tagged = tag(events)                         # cause, transient, evidence, endpoint and gateway tags
    classify_replies(["451 4.7.1 ..."])          # one row per reply: cause, transient, rule, remedy
    Endpoints.bundled().match_ips(ips)           # Microsoft 365 endpoint matching
    audit_allowlist("allowlist.txt")             # missing / stale / over-broad Exchange Online ranges
    summarize_domains(tagged)                    # per-domain impact table; queue_ages, top_replies, ...
    analysis.charts.figures.plot_trend(...)              # charts return matplotlib Figures; charts.save(fig, folder)
    FilePicker(), TableView(frame), AllowListBox() ...  # widgets of the guided notebooks (analysis.ui)
    render_report(["trace.csv"], "report.html", redact=True)  # the shareable HTML report
    ingest(["traces/"], "store/"); open_store("store/")       # a Parquet store; Dask for traces beyond memory
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_trace": "analysis.io.loader",
    "open_trace": "analysis.store.ingest",
    "open_store": "analysis.store.ingest",
    "ingest": "analysis.store.ingest",
    "LoadReport": "analysis.io.loader",
    "FileReport": "analysis.io.loader",
    "TraceLoadError": "analysis.core.errors",
    "ExoDeferralsError": "analysis.core.errors",
    "AllowListError": "analysis.core.errors",
    "EndpointsError": "analysis.core.errors",
    "parse_replies": "analysis.reference.replies",
    "classify_replies": "analysis.reference.causes",
    "tag": "analysis.tagging.tag",
    "Endpoints": "analysis.reference.endpoints",
    "identify_gateways": "analysis.reference.gateways",
    "audit_allowlist": "analysis.audit.allowlist",
    "summarize_domains": "analysis.summaries.tables",
    "queue_ages": "analysis.summaries.tables",
    "message_timelines": "analysis.summaries.tables",
    "message_journey": "analysis.summaries.tables",
    "top_replies": "analysis.summaries.tables",
    "deferrals_by_hour": "analysis.summaries.tables",
    "deferral_rate_by_source_range": "analysis.summaries.tables",
    "by_gateway": "analysis.summaries.tables",
    "by_connector": "analysis.summaries.tables",
    "headline": "analysis.summaries.tables",
    "render_report": "analysis.report.notebook",
    "ReportError": "analysis.report.notebook",
    "Redactor": "analysis.report.redact",
    "NotATraceError": "analysis.core.errors",
    **{name: "analysis.ui" for name in ("FilePicker", "TimeRange", "DomainCauseFilter", "TableView", "AllowListBox",
                                        "JourneyView", "Drilldown", "RemedyChecklist")},
    "write_table": "analysis.io.write",
    "guard_formulas": "analysis.io.write",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
