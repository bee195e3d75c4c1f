"""Tagging: cause, endpoint and gateway tags on every event, with cross-event reasoning."""

from analysis.tagging.tag import EXTRA_TAG_COLUMNS, tag

__all__ = ["EXTRA_TAG_COLUMNS", "tag"]
