"""``exo-deferrals report``."""

from __future__ import annotations

import argparse
import sys

from analysis.core.errors import TraceLoadError
from analysis.report.notebook import REPORT_NOTEBOOK, ReportError, render_report


def main(argv: list[str] | None = None) -> int:
    """``exo-deferrals report``: 0 when the report is written (files that did not load are listed in it and on
    stderr), 2 when it cannot be."""
    parser = argparse.ArgumentParser(prog="exo-deferrals report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="TRACE", help="trace export files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, help="the HTML report to write (e.g. build/report.html)")
    parser.add_argument("--allowlist", metavar="FILE", help="the recipient gateway's allow-list to audit")
    parser.add_argument("--redact", action="store_true", help="pseudonymize addresses, subjects and message ids")
    parser.add_argument("--redact-domains", action="store_true", help="also pseudonymize domains (implies --redact)")
    parser.add_argument("--title", help="the report's title")
    parser.add_argument("--pdf", action="store_true", help="also print the report to PDF with Chromium")
    parser.add_argument("--notebook", help=f"the report notebook (default {REPORT_NOTEBOOK})")
    args = parser.parse_args(argv)
    try:
        result = render_report(args.paths, args.output, allowlist=args.allowlist, redact=args.redact,
                               redact_domains=args.redact_domains, title=args.title, pdf=args.pdf,
                               notebook=args.notebook)
    except (ReportError, TraceLoadError) as error:
        print(f"exo-deferrals report: {error}", file=sys.stderr)
        return 2
    for path in result.files:
        print(path)
    print(f"{result.events:,} events{' (redacted)' if result.redacted else ''}, {result.seconds:.1f} s",
          file=sys.stderr)
    for error in result.load_errors:
        print(f"not loaded: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
