"""``exo-deferrals audit-allowlist``: a gateway allow-list against Microsoft's current Exchange Online ranges."""

from __future__ import annotations

import io
import sys
import warnings

from analysis.audit.allowlist import FORMATS, audit_allowlist
from analysis.cli.common import FINDINGS, MISSING, OK, UNUSABLE, CommandError, Parser, check_output, command, read_text
from analysis.core.errors import AllowListError, EndpointsError
from analysis.reference.endpoints import INSTANCES, Endpoints, EndpointsFallbackWarning


@command("audit-allowlist")
def main(argv: list[str] | None = None) -> int:
    """Print the audit of FILE; with --format or -o also write the corrected list."""
    parser = Parser("audit-allowlist", "Check a gateway allow-list against Microsoft's current Exchange Online "
                                       "ranges: missing, stale and over-broad entries, lines that could not be "
                                       "read. Exit 1 when ranges are missing or lines were skipped.")
    parser.add_argument("file", help="the allow-list (text, CSV, IronPort HAT export or Postfix table; UTF-8, "
                                     "UTF-16 or cp1252)")
    parser.add_argument("--format", choices=FORMATS, help="write the corrected list in this format: to -o FILE, "
                                                          "else to standard output (the audit then goes to "
                                                          "standard error)")
    parser.add_argument("--input-format", choices=FORMATS, help="read the file as this format (default: sniff)")
    parser.add_argument("-o", "--output", help="write the corrected list to this file (in --format, else in the "
                                               "input's format) and print the audit")
    parser.add_argument("--instance", default="Worldwide", choices=INSTANCES, help="the Microsoft 365 instance")
    parser.add_argument("--offline", action="store_true", help="use the cached or bundled endpoints only")
    args = parser.parse_args(argv)
    output = check_output(args.output) if args.output else None
    name, text = read_text(args.file)
    source = io.StringIO(text)
    source.name = name
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EndpointsFallbackWarning)
            endpoints = Endpoints.fetch(args.instance, offline=args.offline)
    except EndpointsError as exc:
        raise CommandError(str(exc), MISSING) from None
    for warning in caught:
        if not (args.offline and issubclass(warning.category, EndpointsFallbackWarning)):
            print(f"warning: {warning.message}", file=sys.stderr)
    try:
        audit = audit_allowlist(source, endpoints, fmt=args.input_format)
    except AllowListError as exc:
        raise CommandError(f"{exc} (expected IP addresses, CIDR ranges or host names, one entry a line)",
                           UNUSABLE) from None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(audit.corrected(args.format), encoding="utf-8", newline="")
        print(audit.summary(), end="")
        print(f"\ncorrected list ({args.format or audit.format}) written to {output}")
    elif args.format:
        print(audit.summary(), end="", file=sys.stderr)
        print(audit.corrected(args.format), end="")
    else:
        print(audit.summary(), end="")
    return FINDINGS if audit.missing_cidrs or len(audit.rejects) else OK
