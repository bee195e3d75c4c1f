"""``exo-deferrals report``: trace exports into a shareable HTML report."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator

from analysis.backends.dask import ENV_SCHEDULER
from analysis.cli.common import (
    FINDINGS,
    MISSING,
    OK,
    UNUSABLE,
    USAGE,
    CommandError,
    Parser,
    check_output,
    command,
    paths_exist,
    require_extra,
    trace_error,
)
from analysis.core.errors import TraceLoadError
from analysis.report.notebook import CHROMIUM, REPORT_NOTEBOOK, ReportError, render_report, store_of

# what the notebook kernel and Jupyter write to standard error about themselves, not about the report
JUPYTER_NOISE = re.compile(r"Kernel is running over TCP without encryption|^\[\w+App\]|^\s*$|DeprecationWarning|"
                           r"warnings\.warn\(|Debugger warning|frozen modules|PYDEVD_DISABLE_FILE_VALIDATION|"
                           r"-Xfrozen_modules|to python to disable frozen modules|Note: Debugging will proceed")


@command("report")
def main(argv: list[str] | None = None) -> int:
    """Render the investigation of TRACE into a shareable HTML report."""
    parser = Parser("report", "Run the report notebook on the trace exports (or on a store made by ingest, on a "
                              "Dask cluster; needs the dask extra) and write a self-contained HTML "
                              "report (no scripts, images embedded), its charts and tables beside it. Exit 1 "
                              "when the report is written but some inputs did not load or a --partner is "
                              "absent (said at its top and on standard error).")
    parser.add_argument("paths", nargs="+", metavar="TRACE",
                        help="trace export files, folders or glob patterns; or one store made by ingest")
    parser.add_argument("-o", "--output", required=True, help="the HTML report to write (e.g. build/report.html)")
    parser.add_argument("--allowlist", metavar="FILE", help="the recipient gateway's allow-list to audit")
    parser.add_argument("--redact", action="store_true", help="pseudonymize addresses, subjects and message ids")
    parser.add_argument("--redact-domains", action="store_true", help="also pseudonymize domains (implies --redact)")
    parser.add_argument("--partner", action="append", default=[], metavar="DOMAIN",
                        help="only the messages to this recipient domain, for its admin (repeatable)")
    parser.add_argument("--title", help="the report's title")
    parser.add_argument("--pdf", action="store_true", help="also print the report to PDF with Chromium")
    parser.add_argument("--notebook", help=f"the report notebook (default {REPORT_NOTEBOOK})")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="for a store: the Dask scheduler to compute on (tcp://host:8786) or 'local' for a "
                             f"cluster on this machine (default: ${ENV_SCHEDULER}, else local)")
    args = parser.parse_args(argv)
    check_output(args.output, (".html", ".htm"))
    paths_exist(args.paths)
    try:
        store = store_of(args.paths)
    except ReportError as error:
        raise CommandError(str(error), USAGE) from None
    if args.scheduler and store is None:
        raise CommandError(f"--scheduler {args.scheduler}: computes on a store (expected one store made by "
                           "`exo-deferrals ingest` as TRACE)", USAGE)
    if store is not None:
        require_extra("dask", "dask.dataframe", "distributed")
    for option, path in (("--allowlist", args.allowlist), ("--notebook", args.notebook)):
        if path and not os.path.isfile(path):
            raise CommandError(f"{option} {path}: no such file", UNUSABLE)
    if args.pdf and not shutil.which(CHROMIUM):
        raise CommandError(f"--pdf needs Chromium ({CHROMIUM!r} is not on PATH; on Debian: apt-get install "
                           "chromium)", MISSING)
    try:
        with _quiet_jupyter():
            result = render_report(args.paths, args.output, allowlist=args.allowlist, redact=args.redact,
                                   redact_domains=args.redact_domains, title=args.title, pdf=args.pdf,
                                   notebook=args.notebook, partners=args.partner, dask_scheduler=args.scheduler)
    except TraceLoadError as error:
        raise trace_error(error, args.paths) from None
    except ReportError as error:
        raise CommandError(str(error), MISSING) from None
    for path in result.files:
        print(path)
    print(f"{result.events:,} events{' (redacted)' if result.redacted else ''}, {result.seconds:.1f} s",
          file=sys.stderr)
    for problem in result.problems:
        print(f"exo-deferrals report: {problem}", file=sys.stderr)
    return FINDINGS if result.problems else OK


@contextlib.contextmanager
def _quiet_jupyter() -> Iterator[None]:
    """Standard error of this process and of the notebook kernel it starts (which inherits it) goes to a
    temporary file; afterwards every line but Jupyter's messages about itself is shown."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", errors="replace").splitlines()
                    if not JUPYTER_NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)
