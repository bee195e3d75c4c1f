"""``exo-deferrals load``: read exports (or a store made by ``ingest``), print the load report."""

from __future__ import annotations

from typing import Any

from analysis.backends.dask import is_dask
from analysis.cli.common import (
    FINDINGS,
    OK,
    UNUSABLE,
    USAGE,
    CommandError,
    Parser,
    add_load_options,
    check_output,
    command,
    load_options,
    paths_exist,
    trace_error,
)
from analysis.core.errors import TraceLoadError
from analysis.io.loader import LoadReport, load_trace
from analysis.io.write import write_table
from analysis.store import open_store, open_trace, read_manifest, store_load_report

OUTPUTS = (".csv", ".parquet")


@command("load")
def main(argv: list[str] | None = None) -> int:
    """Print the load report of FILES (and write the events with -o)."""
    parser = Parser("load", "Read trace exports (files, folders, glob patterns or ZIP archives) or a store made by "
                            "`exo-deferrals ingest`, and print the load report: format, encoding, dates, rows "
                            "read / loaded / rejected per file.")
    parser.add_argument("paths", nargs="+", help="export files, folders or glob patterns, or one store folder")
    add_load_options(parser)
    parser.add_argument("--scheduler", help="a store: the Dask scheduler (tcp://host:8786, or 'local') that "
                                            "computes the events for -o (default: read them in this process)")
    parser.add_argument("-o", "--output", help="also write the events table to this .csv or .parquet file")
    args = parser.parse_args(argv)
    output = check_output(args.output, OUTPUTS) if args.output else None
    paths_exist(args.paths)
    if len(args.paths) == 1 and is_dask(args.paths[0]):
        if load_options(args):
            raise CommandError(f"{args.paths[0]}: a store was read with the options of its ingest "
                               "(expected no --dayfirst, --date-format or --tz-offset)", USAGE)
        events, count, report = _store(args.paths[0], args.scheduler, output is not None)
    else:
        if args.scheduler:
            raise CommandError(f"--scheduler reads a store (expected one folder made by `exo-deferrals ingest`, "
                               f"not {', '.join(args.paths)})", USAGE)
        try:
            events, report = load_trace(args.paths, errors="report", with_report=True, **load_options(args))
        except TraceLoadError as exc:
            raise trace_error(exc, args.paths) from None
        count = len(events)
    print(report.summary())
    print(f"{count} events loaded")
    if not count and not report.ok:
        raise CommandError(f"nothing could be loaded from {', '.join(args.paths)} (the load report above says why)",
                           UNUSABLE)
    if output is not None:
        write_table(events, output)
        print(f"events written to {output}")
    return OK if report.ok else FINDINGS


def _store(store: str, scheduler: str | None, events_needed: bool) -> tuple[Any, int, LoadReport]:
    """The events of a store (read only when they will be written; on ``scheduler`` when given, else in this
    process), their number and the store's load report."""
    report = store_load_report(store)
    if scheduler:
        frame, _ = open_trace(store, dask_scheduler=scheduler)
        events = frame.compute() if events_needed else None
        return events, len(frame) if events is None else len(events), report
    if events_needed:
        events = open_store(store, engine="pandas")
        return events, len(events), report
    return None, int(read_manifest(store).get("events", 0)), report
