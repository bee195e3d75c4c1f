"""``exo-deferrals load``."""

from __future__ import annotations

import argparse

from analysis.core.errors import TraceLoadError
from analysis.io.loader import load_trace


def main(argv: list[str] | None = None) -> int:
    """``exo-deferrals load FILES...``: print the load report (and optionally write the events)."""

    parser = argparse.ArgumentParser(prog="exo-deferrals load", description=main.__doc__)
    parser.add_argument("paths", nargs="+", help="export files, folders or glob patterns")
    parser.add_argument("--dayfirst", choices=["yes", "no"], help="force day-first or month-first dates")
    parser.add_argument("--date-format", help="strptime pattern of the dates, e.g. '%%d.%%m.%%Y %%H:%%M:%%S'")
    parser.add_argument("--tz-offset", help="time zone of exports written in the admin's zone, e.g. +01:00")
    parser.add_argument("-o", "--output", help="write the events table (.csv or .parquet)")
    args = parser.parse_args(argv)
    dayfirst = None if args.dayfirst is None else args.dayfirst == "yes"
    try:
        events, report = load_trace(args.paths, dayfirst=dayfirst, format=args.date_format,
                                    tz_offset=args.tz_offset, errors="report", with_report=True)
    except TraceLoadError as exc:
        print(f"error: {exc}")
        return 2
    print(report.summary())
    print(f"{len(events)} events loaded")
    if args.output:
        from analysis.io.write import write_table

        write_table(events, args.output)
    return 0 if report.ok else 1

