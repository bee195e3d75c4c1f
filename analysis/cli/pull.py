"""``exo-deferrals pull``: message traces from Microsoft 365 (Graph message-trace API) into a folder.

The folder loads like any export (``exo-deferrals load DIR``); how the pull works: :mod:`analysis.pull.run`;
the one-time onboarding of the tenant and the errors an admin meets: docs/graph.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from analysis.cli.common import FINDINGS, OK, USAGE, CommandError, Parser, command, positive_int, require_extra
from analysis.pull.auth import SignIn
from analysis.pull.client import PullError, ThrottledError
from analysis.pull.run import (
    GRAPH_URL,
    LOGIN_URL,
    MAX_TOP,
    Progress,
    parse_last,
    parse_statuses,
    parse_time,
    pull,
)


def _quota(text: str) -> tuple[int, float]:
    try:
        count, seconds = text.split("/")
        return int(count), float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected REQUESTS/SECONDS such as 100/300") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: expected 0 or more seconds")
    return value


@command("pull")
def main(argv: list[str] | None = None) -> int:
    """``exo-deferrals pull``: pull message traces (and details) from Microsoft Graph into a folder."""
    parser = Parser("pull", "Pull message traces from Microsoft 365 (Graph message-trace API) into a folder that "
                            "loads like any export. Resumable: run it again to continue or to add what changed.")
    parser.add_argument("--tenant", required=True, help="tenant ID (GUID) or its onmicrosoft.com domain")
    parser.add_argument("--client-id", required=True, help="the application (client) ID of your app registration")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--client-secret-env", metavar="VAR", help="name of the environment variable holding the "
                                                                "client secret (never the secret itself)")
    how.add_argument("--certificate", metavar="PEM", help="PEM file with the private key and the certificate")
    how.add_argument("--device-code", action="store_true", help="sign in as an Exchange admin (delegated)")
    parser.add_argument("--certificate-thumbprint", metavar="HEX", help="SHA-1 thumbprint (when the PEM has only "
                                                                         "the key)")
    parser.add_argument("--start", help="window start, ISO 8601 (UTC unless a zone is given)")
    parser.add_argument("--end", help="window end, ISO 8601")
    parser.add_argument("--last", help="window ending now: 2d, 36h, 90m")
    parser.add_argument("--status", help="only these statuses, comma-separated (e.g. pending,failed)")
    parser.add_argument("--details", choices=["auto", "all", "none"], default="auto",
                        help="auto: recipients that failed, are pending or were deferred, most informative first "
                             "(default); all: every recipient; none")
    parser.add_argument("--out", required=True, help="output folder (created; run again with it to resume)")
    parser.add_argument("--graph-url", default=GRAPH_URL, help=f"default {GRAPH_URL}")
    parser.add_argument("--login-url", default=LOGIN_URL, help=f"default {LOGIN_URL} (authority LOGIN_URL/TENANT)")
    parser.add_argument("--ca-bundle", metavar="PEM", help="CA certificates to trust (a TLS-inspecting proxy)")
    parser.add_argument("--no-token-cache", action="store_true", help="keep no token cache on disk")
    parser.add_argument("--page-size", type=positive_int, default=MAX_TOP, help=f"$top, 1..{MAX_TOP}")
    parser.add_argument("--max-requests", type=positive_int, help="requests this run may make (auto: 300)")
    parser.add_argument("--max-wait", type=_seconds, default=900.0,
                        help="longest wait for the quota before stopping (seconds, default 900)")
    parser.add_argument("--reread-hours", type=_seconds, default=6.0,
                        help="hours before each listing read again by the next pull (statuses change; default 6)")
    parser.add_argument("--quota", type=_quota, default=(100, 300.0), help=argparse.SUPPRESS)  # Graph's: 100/300
    parser.add_argument("--backoff", type=_seconds, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=_seconds, default=60.0, help="seconds to wait for one answer (60)")
    args = parser.parse_args(argv)
    if args.certificate_thumbprint and not args.certificate:
        raise CommandError("--certificate-thumbprint goes with --certificate", USAGE)
    require_extra("graph", "msal")
    try:
        now = datetime.now(UTC)
        if args.last and (args.start or args.end):
            raise CommandError("give either --last or --start and --end", USAGE)
        if args.last:
            start, end = now - parse_last(args.last), now
        elif args.start and args.end:
            start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
        else:
            raise CommandError("the window is missing: give --start and --end, or --last", USAGE)
        sign_in = SignIn(args.tenant, args.client_id, args.client_secret_env, args.certificate,
                         args.certificate_thumbprint, args.device_code)
        bar = _Bar()
        report = pull(sign_in, args.out, start=start, end=end, statuses=parse_statuses(args.status),
                      details=args.details, graph_url=args.graph_url, login_url=args.login_url,
                      ca_bundle=args.ca_bundle, token_cache=not args.no_token_cache, page_size=args.page_size,
                      max_requests=args.max_requests or (300 if args.details == "auto" else None),
                      max_wait=args.max_wait, reread_hours=args.reread_hours, quota=args.quota,
                      timeout=args.timeout, backoff=args.backoff, progress=bar, prompt=_prompt, now=now)
    except ThrottledError as exc:
        print(f"exo-deferrals pull: {exc}", file=sys.stderr)  # done partly: what was pulled is kept
        return FINDINGS
    except PullError as exc:
        raise CommandError(str(exc)) from None
    bar.close()
    print(report.summary())
    return OK if report.stopped is None and not report.not_fetched else FINDINGS


def _prompt(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Bar:
    """One status line on standard error: requests used of the quota, waits, rows and details."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, state: Progress) -> None:
        text = f"[{state.used}/{state.limit} requests of the quota] {state.message}"
        if text == self.last:
            return
        self.last = text
        if self.tty:
            print(f"\r{text[:110]:<110}", end="", file=sys.stderr, flush=True)
        elif state.wait and state.phase != "done":  # a log: only the waits
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
