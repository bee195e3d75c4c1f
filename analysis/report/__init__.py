"""The shareable report: findings, redaction, and the report notebook rendered to HTML."""

from analysis.report.notebook import REPORT_NOTEBOOK, ReportError, ReportResult, render_report

__all__ = ["REPORT_NOTEBOOK", "ReportError", "ReportResult", "render_report"]
