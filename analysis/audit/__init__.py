"""Audit of a gateway allow-list against the published Exchange Online ranges."""

from analysis.audit.allowlist import FORMATS, AllowListAudit, Entry, audit_allowlist

__all__ = ["FORMATS", "AllowListAudit", "Entry", "audit_allowlist"]
