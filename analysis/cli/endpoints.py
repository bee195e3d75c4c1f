"""``exo-deferrals endpoints``: the Microsoft 365 endpoints in use, an update of the cache, what changed."""

from __future__ import annotations

import sys
import warnings

from analysis.cli.common import FINDINGS, MISSING, OK, USAGE, CommandError, Parser, command
from analysis.core.errors import EndpointsError
from analysis.reference.endpoints import DEFAULT_BASE_URL, INSTANCES, Endpoints, EndpointsFallbackWarning


@command("endpoints")
def main(argv: list[str] | None = None) -> int:
    """Show the endpoints version in use; --update refreshes the cache; --changes-since lists changes."""
    parser = Parser("endpoints", "Show which Microsoft 365 endpoints version is in use (cache or bundled "
                                 "snapshot) and the Exchange Online mail-flow ranges; --update asks the web "
                                 "service and refreshes the cache; --changes-since lists the changes.")
    parser.add_argument("--instance", default="Worldwide", choices=INSTANCES, help="the Microsoft 365 instance")
    parser.add_argument("--update", action="store_true", help="ask the web service, refresh the cache")
    parser.add_argument("--changes-since", metavar="VERSION", help="list changes since VERSION (YYYYMMDDNN)")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="web service base URL (https)")
    parser.add_argument("--cache-dir", help="cache directory (default: $EXO_DEFERRALS_CACHE or user cache)")
    parser.add_argument("--offline", action="store_true", help="never use the network")
    args = parser.parse_args(argv)
    if args.changes_since and args.offline:
        raise CommandError("--changes-since needs the network (expected no --offline)", USAGE)
    if args.changes_since and not (args.changes_since.isdigit() and len(args.changes_since) == 10):
        raise CommandError(f"--changes-since {args.changes_since!r}: expected a version YYYYMMDDNN, "
                           "e.g. 2026110100", USAGE)
    online = bool(args.update or args.changes_since) and not args.offline
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EndpointsFallbackWarning)
            endpoints = Endpoints.fetch(args.instance, base_url=args.base_url, cache_dir=args.cache_dir,
                                        offline=not online)
        changes = endpoints.changes_since(args.changes_since) if args.changes_since else None
    except EndpointsError as exc:  # a refused --base-url is a usage mistake; else the service or cache failed
        raise CommandError(str(exc), USAGE if str(exc).startswith("refusing ") else MISSING) from None
    for warning in caught:
        if online or not issubclass(warning.category, EndpointsFallbackWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
    _print_summary(endpoints, online=online)
    if changes is not None:
        print(f"\nchanges since {args.changes_since}: {len(changes)} row(s)")
        if len(changes):
            print(changes.to_string(index=False))
    return FINDINGS if online and endpoints.fallback else OK


def _print_summary(endpoints: Endpoints, *, online: bool) -> None:
    fetched = f"{endpoints.fetched_at:%Y-%m-%d %H:%M} UTC" if endpoints.fetched_at else "-"
    print(f"instance:  {endpoints.instance}")
    print(f"version:   {endpoints.version} (published {endpoints.date:%Y-%m-%d})")
    print(f"source:    {endpoints.source}{'' if online else ' (not checked online; use --update)'}")
    print(f"fetched:   {fetched}")
    if endpoints.fallback and online:
        print(f"fallback:  {endpoints.fallback}")
    if endpoints.source == "bundled" and endpoints.provenance.get("derived"):
        print("note:      the bundled snapshot is partly derived (see its provenance)")
    print(f"sets:      {len(endpoints.sets)}")
    print("Exchange Online mail-flow ranges (TCP 25):")
    for cidr in endpoints.exchange_mail_flow_ranges(port=25):
        print(f"  {cidr}")
