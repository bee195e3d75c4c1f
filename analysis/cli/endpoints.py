"""``exo-deferrals endpoints``."""

from __future__ import annotations

import argparse
import sys
import warnings

from analysis.core.errors import EndpointsError
from analysis.reference.endpoints import DEFAULT_BASE_URL, INSTANCES, Endpoints, EndpointsFallbackWarning


def main(argv: list[str] | None = None) -> int:
    """``exo-deferrals endpoints``: show the endpoints in use, update the cache, list changes."""
    parser = argparse.ArgumentParser(
        prog="exo-deferrals endpoints",
        description="Show which Microsoft 365 endpoints version is in use (cache or bundled snapshot); "
                    "--update asks the web service and refreshes the cache; --changes-since lists changes.")
    parser.add_argument("--instance", default="Worldwide", help=f"one of {', '.join(INSTANCES)}")
    parser.add_argument("--update", action="store_true", help="ask the web service, refresh the cache")
    parser.add_argument("--changes-since", metavar="VERSION", help="list changes since VERSION (YYYYMMDDNN)")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="web service base URL (https)")
    parser.add_argument("--cache-dir", help="cache directory (default: $EXO_DEFERRALS_CACHE or user cache)")
    parser.add_argument("--offline", action="store_true", help="never use the network")
    args = parser.parse_args(argv)
    online = (args.update or args.changes_since) and not args.offline
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", EndpointsFallbackWarning)
            endpoints = Endpoints.fetch(args.instance, base_url=args.base_url, cache_dir=args.cache_dir,
                                        offline=not online)
        for warning in caught:
            if online or not issubclass(warning.category, EndpointsFallbackWarning):
                print(f"warning: {warning.message}", file=sys.stderr)
        _print_summary(endpoints, online=bool(online))
        if args.changes_since:
            if args.offline:
                raise EndpointsError("--changes-since needs the network; drop --offline")
            changes = endpoints.changes_since(args.changes_since)
            print(f"\nchanges since {args.changes_since}: {len(changes)} row(s)")
            if len(changes):
                print(changes.to_string(index=False))
    except EndpointsError as exc:
        print(f"exo-deferrals endpoints: {exc}", file=sys.stderr)
        return 1
    return 1 if args.update and not args.offline and endpoints.fallback else 0


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
