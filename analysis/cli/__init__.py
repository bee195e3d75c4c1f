"""``exo-deferrals``: one command, a sub-command per task. Each sub-command lives in its own module.

The contract every sub-command shares is in :mod:`analysis.cli.common` (exit codes, one-line errors, a missing
optional extra named); the dispatcher adds ``--version``, usage on standard error with exit 2 when no command is
given, and a closed output pipe (``| head``) ending the command quietly.
"""

from __future__ import annotations

import importlib
import os
import sys

from analysis import __version__
from analysis.cli import common
from analysis.cli.common import OK, USAGE, exit_codes_text

# sub-command -> (module whose ``main(argv) -> int`` runs it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "lab": ("analysis.cli.lab", "copy the guided notebooks (and the sample) into a folder, open JupyterLab there"),
    "load": ("analysis.cli.load", "read trace exports and print the load report"),
    "classify": ("analysis.cli.classify", "classify SMTP replies (one per line) into causes, as CSV"),
    "endpoints": ("analysis.cli.endpoints", "show or update Microsoft 365 endpoint data, show changes"),
    "audit-allowlist": ("analysis.cli.audit_allowlist", "audit a gateway allow-list against Exchange Online ranges"),
    "report": ("analysis.cli.report", "render the investigation of trace files into a shareable HTML report"),
    "sample": ("analysis.cli.sample", "write the bundled sample trace (or a big one for benchmarks)"),
    "ingest": ("analysis.cli.ingest", "add trace exports to a Parquet store of tagged events (Dask, any size)"),
    "pull": ("analysis.cli.pull", "pull message traces from Microsoft 365 (Graph) into a folder, resumable"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: exo-deferrals COMMAND [options]", "       exo-deferrals --version", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`exo-deferrals COMMAND --help` for a command's options.", "", exit_codes_text()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(usage(), file=sys.stderr)
        return USAGE
    if args[0] in ("-h", "--help"):
        print(usage())
        return OK
    if args[0] in ("-V", "--version"):
        print(f"exo-deferrals {__version__}")
        return OK
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"exo-deferrals: unknown command {command!r} (expected one of {', '.join(COMMANDS)}; "
              "see `exo-deferrals --help`)", file=sys.stderr)
        return USAGE
    try:
        # every sub-command gets the contract, also one whose main() is not decorated with `command`
        code = int(common.command(command)(importlib.import_module(COMMANDS[command][0]).main)(rest) or OK)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader closed the pipe (`| head`): what it read is what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout at exit: into devnull, not the broken pipe
        return OK
    except KeyboardInterrupt:
        print(f"exo-deferrals {command}: interrupted", file=sys.stderr)
        return 130
    return code
