"""``exo-deferrals ingest``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from analysis.backends import dask as dask_engine
from analysis.core.errors import TraceLoadError
from analysis.store.ingest import CHUNK_ROWS, PARTITION_ROWS, ingest


def main(argv: list[str] | None = None) -> int:
    """``exo-deferrals ingest TRACE... --store DIR``: add exports to a Parquet store (Dask), print the report."""

    parser = argparse.ArgumentParser(prog="exo-deferrals ingest", description=main.__doc__)
    parser.add_argument("paths", nargs="+", help="export files, folders or glob patterns")
    parser.add_argument("--store", required=True, help="the store folder (created when missing)")
    parser.add_argument("--scheduler", default=os.environ.get(dask_engine.ENV_SCHEDULER),
                        help="Dask scheduler address (tcp://host:8786) or 'local' for a local cluster "
                             f"(default: ${dask_engine.ENV_SCHEDULER}, else threads in this process)")
    parser.add_argument("--tenant-domain", action="append", dest="tenant_domains", metavar="DOMAIN",
                        help="one of your accepted domains (repeat; kept by the store; default: inferred)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help="rows per piece of a big CSV")
    parser.add_argument("--partition-rows", type=int, default=PARTITION_ROWS, help="events per store partition")
    parser.add_argument("--dayfirst", choices=["yes", "no"], help="force day-first or month-first dates")
    parser.add_argument("--date-format", help="strptime pattern of the dates, e.g. '%%d.%%m.%%Y %%H:%%M:%%S'")
    parser.add_argument("--tz-offset", help="time zone of exports written in the admin's zone, e.g. +01:00")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {}
    if args.dayfirst:
        options["dayfirst"] = args.dayfirst == "yes"
    if args.date_format:
        options["format"] = args.date_format
    if args.tz_offset:
        options["tz_offset"] = args.tz_offset
    client = dask_engine.connect(args.scheduler) if args.scheduler else None
    try:
        result = ingest(args.paths, args.store, chunk_rows=args.chunk_rows, partition_rows=args.partition_rows,
                        tenant_domains=args.tenant_domains, **options)
    except (TraceLoadError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    finally:
        if client is not None:
            dask_engine.close(client)
    print(result.summary())
    return 0 if result.ok else 1
