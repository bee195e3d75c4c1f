"""Summaries of a tagged trace: one table per question, the same code on pandas and Dask.

:mod:`analysis.summaries.tables` declares every summary once, as a per-partition step and a combine step
(:class:`analysis.backends.dispatch.Summary`): pandas runs it on one partition, the Dask backend distributes it.
:mod:`analysis.summaries.selections` chooses events for the views (importing it registers its Dask versions).
"""

from analysis.summaries import selections  # noqa: F401  (registers the Dask versions)
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
