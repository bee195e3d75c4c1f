"""``exo-deferrals``: one command, a sub-command per task. Each sub-command lives in its own module."""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module whose ``main(argv) -> int`` runs it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "load": ("analysis.cli.load", "read trace exports and print the load report"),
    "classify": ("analysis.cli.classify", "classify SMTP replies (one per line) into causes, as CSV"),
    "endpoints": ("analysis.cli.endpoints", "show or update Microsoft 365 endpoint data, show changes"),
    "audit-allowlist": ("analysis.cli.audit_allowlist", "audit a gateway allow-list against Exchange Online ranges"),
    "report": ("analysis.cli.report", "render the investigation of trace files into a shareable HTML report"),
    "sample": ("analysis.cli.sample", "write the bundled sample trace (or a big one for benchmarks)"),
    "ingest": ("analysis.cli.ingest", "add trace exports to a Parquet store of tagged events (Dask, any size)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: exo-deferrals COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`exo-deferrals COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"exo-deferrals: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
