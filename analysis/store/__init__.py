"""The Parquet store of tagged events: ``ingest`` exports into it, ``open_store`` / ``open_trace`` read it."""

from analysis.store.ingest import (
    IngestReport,
    ingest,
    load_reports,
    open_store,
    open_trace,
    read_manifest,
    store_load_report,
)

__all__ = ["IngestReport", "ingest", "load_reports", "open_store", "open_trace", "read_manifest", "store_load_report"]
