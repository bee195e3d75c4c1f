"""Widget views for the guided notebooks (ipywidgets), testable without a browser.

Every view is a plain class with properties and callbacks; ``view.widget`` is the box a notebook shows, and
displaying the view itself (``view`` as the last line of a cell) also leaves a static copy when the notebook is
run headless. Views built with ``name=`` remember their values across re-runs of the cell.
"""

from analysis.ui.core import forget, headless, setup, show_chart, show_table
from analysis.ui.panels import AllowListBox, Drilldown, JourneyView, RemedyChecklist
from analysis.ui.pull import PullPanel
from analysis.ui.views import DomainCauseFilter, FilePicker, TableView, TimeRange

__all__ = ["AllowListBox", "DomainCauseFilter", "Drilldown", "FilePicker", "JourneyView", "PullPanel",
           "RemedyChecklist", "TableView", "TimeRange", "forget", "headless", "setup", "show_chart", "show_table"]
