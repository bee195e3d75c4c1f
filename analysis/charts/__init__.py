"""Charts of the summaries: pure functions returning matplotlib Figures, and ``save``."""

from analysis.charts.figures import (
    CAUSE_COLORS,
    OTHER_COLOR,
    plot_causes,
    plot_journey,
    plot_queue_ages,
    plot_retry_intervals,
    plot_source_ranges,
    plot_top_domains,
    plot_trend,
    save,
)

__all__ = ["CAUSE_COLORS", "OTHER_COLOR", "plot_causes", "plot_journey", "plot_queue_ages", "plot_retry_intervals",
           "plot_source_ranges", "plot_top_domains", "plot_trend", "save"]
