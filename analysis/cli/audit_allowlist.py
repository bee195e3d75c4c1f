"""``exo-deferrals audit-allowlist``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from analysis.audit.allowlist import FORMATS, audit_allowlist
from analysis.core.errors import AllowListError, EndpointsError
from analysis.reference.endpoints import Endpoints, EndpointsFallbackWarning


def main(argv: list[str] | None = None) -> int:
    """``exo-deferrals audit-allowlist``: print the audit; with --format/-o also write the corrected list."""
    parser = argparse.ArgumentParser(
        prog="exo-deferrals audit-allowlist",
        description="Check a gateway allow-list against Microsoft's current Exchange Online ranges.")
    parser.add_argument("file", help="the allow-list (text, CSV, IronPort HAT export or Postfix table)")
    parser.add_argument("--format", choices=FORMATS, help="write the corrected list in this format")
    parser.add_argument("--input-format", choices=FORMATS, help="read the file as this format (default: sniff)")
    parser.add_argument("-o", "--output", help="write the corrected list here (default: standard output)")
    parser.add_argument("--instance", default="Worldwide", help="Microsoft 365 instance (default Worldwide)")
    parser.add_argument("--offline", action="store_true", help="use the cached or bundled endpoints only")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EndpointsFallbackWarning)
            endpoints = Endpoints.fetch(args.instance, offline=args.offline)
        for warning in caught:
            if not (args.offline and issubclass(warning.category, EndpointsFallbackWarning)):
                print(f"warning: {warning.message}", file=sys.stderr)
        audit = audit_allowlist(args.file, endpoints, fmt=args.input_format)
        if args.format or args.output:
            text = audit.corrected(args.format)
            if args.output:
                Path(args.output).write_text(text, encoding="utf-8")
                print(audit.summary(), end="")
                print(f"\ncorrected list ({args.format or audit.format}) written to {args.output}")
            else:
                print(audit.summary(), end="", file=sys.stderr)
                print(text, end="")
        else:
            print(audit.summary(), end="")
    except (AllowListError, EndpointsError) as exc:
        print(f"exo-deferrals audit-allowlist: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"exo-deferrals audit-allowlist: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    return 0
