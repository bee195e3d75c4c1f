"""``exo-deferrals ingest``: add trace exports to a Parquet store of tagged events (Dask; any size)."""

from __future__ import annotations

import os
from pathlib import Path

from analysis.backends import dask as dask_engine
from analysis.cli.common import (
    FINDINGS,
    OK,
    UNUSABLE,
    USAGE,
    CommandError,
    Parser,
    add_load_options,
    command,
    load_options,
    paths_exist,
    positive_int,
    require_extra,
    trace_error,
)
from analysis.core.errors import TraceLoadError
from analysis.store.ingest import CHUNK_ROWS, PARTITION_ROWS, ingest


@command("ingest")
def main(argv: list[str] | None = None) -> int:
    """Add exports to a Parquet store (Dask) and print what each file added."""
    parser = Parser("ingest", "Add trace exports to a Parquet store of tagged events, partitioned by day, for "
                              "traces bigger than memory. Needs the dask extra: pip install \"exo-deferrals[dask]\". "
                              "Re-ingesting a file adds nothing.")
    parser.add_argument("paths", nargs="+", help="export files, folders or glob patterns")
    parser.add_argument("--store", required=True, help="the store folder (created when missing)")
    parser.add_argument("--scheduler", default=os.environ.get(dask_engine.ENV_SCHEDULER),
                        help="Dask scheduler address (tcp://host:8786) or 'local' for a local cluster "
                             f"(default: ${dask_engine.ENV_SCHEDULER}, else threads in this process)")
    parser.add_argument("--tenant-domain", action="append", dest="tenant_domains", metavar="DOMAIN",
                        help="one of your accepted domains (repeat; kept by the store; default: inferred)")
    parser.add_argument("--chunk-rows", type=positive_int, default=CHUNK_ROWS, help="rows per piece of a big CSV")
    parser.add_argument("--partition-rows", type=positive_int, default=PARTITION_ROWS,
                        help="events per store partition")
    add_load_options(parser)
    args = parser.parse_args(argv)
    require_extra("dask", "dask.dataframe", *(["distributed"] if args.scheduler else []))
    store = Path(args.store)
    if store.exists() and not dask_engine.is_dask(store) and (not store.is_dir() or any(store.iterdir())):
        raise CommandError(f"--store {store}: is not an exo-deferrals store (expected a new or empty folder, or a "
                           "store made by ingest)", USAGE)
    paths_exist(args.paths)
    client = dask_engine.connect(args.scheduler) if args.scheduler else None
    try:
        result = ingest(args.paths, store, chunk_rows=args.chunk_rows, partition_rows=args.partition_rows,
                        tenant_domains=args.tenant_domains, **load_options(args))
    except TraceLoadError as exc:
        raise trace_error(exc, args.paths) from None
    except ValueError as exc:
        raise CommandError(str(exc), UNUSABLE) from None
    finally:
        if client is not None:
            dask_engine.close(client)
    print(result.summary())
    return OK if result.ok else FINDINGS
