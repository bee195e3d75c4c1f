"""exo-deferrals: why is Exchange Online outbound mail deferred or failing, and what exactly to change.

Public API (imported lazily so that ``import analysis`` and the CLI stay fast)::

    events = load_trace("data/sample/")          # canonical events table (+ events.attrs["load_report"])
    tagged = tag(events)                         # cause, transient, evidence, endpoint and gateway tags
    classify_replies(["451 4.7.1 ..."])          # one row per reply: cause, transient, rule, remedy
    Endpoints.bundled().match_ips(ips)           # Microsoft 365 endpoint matching
    audit_allowlist("allowlist.txt")             # missing / stale / over-broad Exchange Online ranges
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_trace": "analysis.loader",
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
