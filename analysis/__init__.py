"""exo-deferrals: why is Exchange Online outbound mail deferred or failing, and what exactly to change.

Public API (imported lazily so that ``import analysis`` and the CLI stay fast)::

    events = load_trace("data/sample/")          # canonical events table (+ events.attrs["load_report"])
    tagged = tag(events)                         # cause, transient, evidence, endpoint and gateway tags
    classify_replies(["451 4.7.1 ..."])          # one row per reply: cause, transient, rule, remedy
    Endpoints.bundled().match_ips(ips)           # Microsoft 365 endpoint matching
    audit_allowlist("allowlist.txt")             # missing / stale / over-broad Exchange Online ranges
    summarize_domains(tagged)                    # per-domain impact table; queue_ages, top_replies, ...
    analysis.charts.plot_trend(...)              # charts return matplotlib Figures; charts.save(fig, folder)
    FilePicker(), TableView(frame), AllowListBox() ...  # widgets of the guided notebooks (analysis.ui)
    render_report(["trace.csv"], "report.html", redact=True)  # the shareable HTML report
    ingest(["traces/"], "store/"); open_store("store/")       # a Parquet store; Dask for traces beyond memory
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_trace": "analysis.loader",
    "open_trace": "analysis.store",
    "open_store": "analysis.store",
    "ingest": "analysis.store",
    "LoadReport": "analysis.loader",
    "FileReport": "analysis.loader",
    "TraceLoadError": "analysis.errors",
    "ExoDeferralsError": "analysis.errors",
    "AllowListError": "analysis.errors",
    "EndpointsError": "analysis.errors",
    "parse_replies": "analysis.replies",
    "classify_replies": "analysis.causes",
    "tag": "analysis.tagging",
    "Endpoints": "analysis.endpoints",
    "identify_gateways": "analysis.gateways",
    "audit_allowlist": "analysis.allowlist",
    "summarize_domains": "analysis.summaries",
    "queue_ages": "analysis.summaries",
    "message_timelines": "analysis.summaries",
    "message_journey": "analysis.summaries",
    "top_replies": "analysis.summaries",
    "deferrals_by_hour": "analysis.summaries",
    "deferral_rate_by_source_range": "analysis.summaries",
    "by_gateway": "analysis.summaries",
    "by_connector": "analysis.summaries",
    "headline": "analysis.summaries",
    "render_report": "analysis.report",
    "ReportError": "analysis.report",
    "Redactor": "analysis.redact",
    "NotATraceError": "analysis.errors",
    **{name: "analysis.ui" for name in ("FilePicker", "TimeRange", "DomainCauseFilter", "TableView", "AllowListBox",
                                        "JourneyView", "Drilldown", "RemedyChecklist")},
    "write_table": "analysis.exports",
    "guard_formulas": "analysis.exports",
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
