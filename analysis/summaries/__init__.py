"""Summaries of a tagged trace: one table per question, the same code on pandas and Dask.

:mod:`analysis.summaries.tables` holds the pandas functions (each dispatching on its input's type,
:mod:`analysis.backends.dispatch`); importing this package registers their Dask versions
(:mod:`analysis.summaries.on_dask`, :mod:`analysis.summaries.selections`).
"""

from analysis.summaries import on_dask, selections  # noqa: F401  (registers the Dask versions)
from analysis.summaries.tables import (
    AGE_BUCKETS,
    IMPACT_WEIGHTS,
    OUTCOMES,
    by_connector,
    by_gateway,
    deferral_rate_by_source_range,
    deferrals_by_hour,
    headline,
    journey_rows,
    message_journey,
    message_timelines,
    normalize_replies,
    queue_ages,
    retry_intervals,
    summarize_causes,
    summarize_domains,
    top_replies,
)

__all__ = ["AGE_BUCKETS", "IMPACT_WEIGHTS", "OUTCOMES", "by_connector", "by_gateway", "deferral_rate_by_source_range",
           "deferrals_by_hour", "headline", "journey_rows", "message_journey", "message_timelines",
           "normalize_replies", "queue_ages", "retry_intervals", "summarize_causes", "summarize_domains",
           "top_replies"]
