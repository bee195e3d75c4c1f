"""The load report: what happened to each input file of :func:`analysis.io.loader.load_trace`, row by row."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class FileReport:
    """What happened to one input file."""

    path: str
    format: str | None = None
    format_label: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    date_format: str | None = None
    date_order: str | None = None
    time_zone: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    duplicates_removed: int = 0
    events: int = 0
    rejects: list[tuple[int | None, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unknown_values: list[str] = field(default_factory=list)  # the warnings naming event/status values not known
    error: str | None = None
    skipped: str | None = None  # why a file found in a folder, glob or archive is not a trace export

    def reject(self, line: int | None, reason: str) -> None:
        self.rejects.append((line, reason))
        self.rows_rejected += 1

    @property
    def balanced(self) -> bool:
        """True when every row read is accounted for."""
        return self.rows_read == self.rows_loaded + self.rows_rejected + self.duplicates_removed


@dataclass
class LoadReport:
    """Per-file accounting of a :func:`load_trace` call."""

    files: list[FileReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return all(f.error is None for f in self.files)

    @property
    def errors(self) -> list[str]:
        return [f"{f.path}: {f.error}" for f in self.files if f.error]

    @property
    def loaded_files(self) -> list[FileReport]:
        """Files read as trace exports (not failed, not skipped)."""
        return [f for f in self.files if f.error is None and f.skipped is None]

    def to_frame(self) -> pd.DataFrame:
        """One row per file: format, encoding, delimiter, date order, row counts, warnings, error."""
        rows = [
            {
                "file": f.path, "format": f.format_label or f.format, "encoding": f.encoding,
                "delimiter": {",": "comma", ";": "semicolon", "\t": "tab"}.get(f.delimiter or "", f.delimiter),
                "date_format": f.date_format, "date_order": f.date_order, "time_zone": f.time_zone,
                "rows_read": f.rows_read, "rows_loaded": f.rows_loaded, "rows_rejected": f.rows_rejected,
                "duplicates_removed": f.duplicates_removed, "events": f.events,
                "warnings": "; ".join(f.warnings), "error": f.error or "",
                "skipped": f.skipped or "",
            }
            for f in self.files
        ]
        return pd.DataFrame(rows, columns=[
            "file", "format", "encoding", "delimiter", "date_format", "date_order", "time_zone", "rows_read",
            "rows_loaded", "rows_rejected", "duplicates_removed", "events", "warnings", "error", "skipped",
        ])

    def rejects_frame(self) -> pd.DataFrame:
        """One row per rejected input row: file, line, reason."""
        rows = [(f.path, line, reason) for f in self.files for line, reason in f.rejects]
        frame = pd.DataFrame(rows, columns=["file", "line", "reason"])
        frame["line"] = frame["line"].astype("Int64")
        return frame

    def summary(self) -> str:
        """Plain-text account, one paragraph per file."""
        parts = []
        for f in self.files:
            if f.error:
                parts.append(f"{f.path}: NOT LOADED: {f.error}")
                continue
            if f.skipped:
                parts.append(f"{f.path}: skipped, not a trace export: {f.skipped}")
                continue
            line = (f"{f.path}: {f.format_label} | {f.encoding}, delimiter {f.delimiter!r}, dates {f.date_format} "
                    f"({f.date_order}), {f.time_zone} | read {f.rows_read}, loaded {f.rows_loaded}, "
                    f"rejected {f.rows_rejected}, duplicates removed {f.duplicates_removed}, events {f.events}")
            parts.append("\n  ".join([line, *(f"warning: {w}" for w in f.warnings),
                                       *(f"line {ln}: {why}" for ln, why in f.rejects[:20]),
                                       *([f"... and {len(f.rejects) - 20} more rejected rows"]
                                         if len(f.rejects) > 20 else [])]))
        return "\n".join(parts) or "no files"

    __str__ = summary

    def _repr_html_(self) -> str:
        noteworthy = any(f.warnings or f.rejects or f.error or f.skipped for f in self.files)
        return self.to_frame().to_html(index=False, escape=True) + (
            f"<pre>{html.escape(self.summary())}</pre>" if noteworthy else "")
