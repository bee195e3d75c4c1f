"""What every sub-command shares: the exit codes, one-line errors, argument parsing, output checks, text input.

The contract (README "Command line"): a user mistake ends in one line on standard error, ``exo-deferrals
COMMAND: what is wrong (what was expected)``, and an exit code from :data:`EXIT_CODES`; never a traceback.
Output paths are checked before any work; a reader that closes the pipe early (``| head``) ends the command
quietly.
"""

from __future__ import annotations

import argparse
import functools
import glob
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from analysis.core.errors import TraceLoadError
from analysis.io.textio import decode

OK = 0
FINDINGS = 1
USAGE = 2
UNUSABLE = 3
MISSING = 4

EXIT_CODES = {
    OK: "done",
    FINDINGS: "done, with findings or partly: files or lines not read, ranges missing from an allow-list, "
              "endpoints from a fall-back",
    USAGE: "usage: unknown command or option, a bad value, an output path that cannot be written",
    UNUSABLE: "input unusable: missing, not text, not an export or allow-list, nothing could be read",
    MISSING: "cannot run here: an optional extra, Chromium, the network or a notebook kernel is missing or failed",
}

# optional dependency (top-level module) -> the extra that installs it
EXTRAS = {"dask": "dask", "distributed": "dask", "msal": "graph", "cryptography": "graph", "playwright": "browser",
          "voila": "app"}


def exit_codes_text() -> str:
    """The exit-code table as shown in ``--help``."""
    return "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


class CommandError(Exception):
    """A user mistake or an unusable input: ``message`` is the one line shown, ``code`` the exit code."""

    def __init__(self, message: str, code: int = UNUSABLE):
        super().__init__(message)
        self.code = code


def command(name: str) -> Callable[[Callable[[list[str] | None], int]], Callable[[list[str] | None], int]]:
    """Decorate a sub-command's ``main(argv) -> int``: a :class:`CommandError` or a missing optional extra becomes
    one line on standard error and its exit code."""
    def decorate(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except CommandError as error:
                print(f"exo-deferrals {name}: {error}", file=sys.stderr)
                return error.code
            except ModuleNotFoundError as error:
                if not error.name or error.name.split(".")[0] not in EXTRAS:
                    raise
                print(f"exo-deferrals {name}: {missing_extra(error.name)}", file=sys.stderr)
                return MISSING
        return run
    return decorate


class Parser(argparse.ArgumentParser):
    """``argparse`` with the kit's contract: usage errors are one line (exit 2), help ends with the exit codes."""

    def __init__(self, command: str, description: str, **kwargs: object):
        super().__init__(prog=f"exo-deferrals {command}", description=description, epilog=exit_codes_text(),
                         formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CommandError(f"{message} (see `{self.prog} --help`)", USAGE)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: expected a whole number of at least {minimum}")
        return value
    return whole_number


positive_int = at_least(1)


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """The options of :func:`analysis.io.loader.load_trace` that a command passes on (see :func:`load_options`)."""
    parser.add_argument("--dayfirst", choices=["yes", "no"], help="force day-first or month-first dates")
    parser.add_argument("--date-format", help="strptime pattern of the dates, e.g. '%%d.%%m.%%Y %%H:%%M:%%S'")
    parser.add_argument("--tz-offset", help="time zone of exports written in the admin's zone, e.g. +01:00")


def load_options(args: argparse.Namespace) -> dict[str, object]:
    """The load options given on the command line, as keyword arguments of ``load_trace``."""
    given = {"dayfirst": None if args.dayfirst is None else args.dayfirst == "yes", "format": args.date_format,
             "tz_offset": args.tz_offset}
    return {name: value for name, value in given.items() if value is not None}


def require_extra(extra: str, *modules: str) -> None:
    """Import ``modules`` now, before any work; a missing one is a one-line error naming the extra to install."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise missing_extra(exc.name or name, extra) from None


def missing_extra(module: str, extra: str | None = None) -> CommandError:
    extra = extra or EXTRAS.get(module.split(".")[0])
    hint = f': pip install "exo-deferrals[{extra}]"' if extra else ""
    return CommandError(f"needs the optional package {module.split('.')[0]!r}{hint}", MISSING)


def check_output(path: str | os.PathLike[str], suffixes: Sequence[str] | None = None) -> Path:
    """``path`` if a file (of one of ``suffixes``, when given) can be written there (its folder may still be
    missing), else a usage error; checked before any work is done."""
    target = Path(path)
    wanted = f"a {' or '.join(suffixes)} file name" if suffixes else "a file name"
    if suffixes and target.suffix.lower() not in suffixes:
        shown = target.suffix or "no extension"
        raise CommandError(f"{target}: cannot write {shown} (expected {wanted})", USAGE)
    if target.is_dir():
        raise CommandError(f"{target}: is a folder (expected {wanted})", USAGE)
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{target}: cannot write into {folder} (permission denied or not a folder)", USAGE)
    return target


def read_text(path: str | None) -> tuple[str, str]:
    """``(name, text)`` of a text file (standard input for None), its encoding sniffed as the loader does
    (UTF-8 with or without BOM, UTF-16 with or without BOM, cp1252); a binary file is refused."""
    name = path or "<stdin>"
    try:
        raw = Path(path).read_bytes() if path else sys.stdin.buffer.read()
    except OSError as exc:
        raise CommandError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if not raw:
        return name, ""
    try:
        return name, decode(raw, name).data.decode("utf-8")
    except TraceLoadError as exc:
        raise CommandError(f"{name}: {exc.problem} (expected a text file)") from None


def write_stdout(text: str) -> None:
    """Write ``text`` to standard output byte for byte (no newline translation: CRLF stays CRLF on Windows)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def trace_error(error: TraceLoadError, paths: Sequence[str]) -> CommandError:
    """The one-line error of a trace that could not be loaded, naming the files as the user gave them."""
    where = ", ".join(paths) if error.path in (str(paths), str(list(paths))) else error.path
    if error.line is not None:
        where += f", line {error.line}"
    expected = f" (expected {error.expected})" if error.expected else ""
    return CommandError(f"{where}: {error.problem}{expected}", UNUSABLE)


def paths_exist(paths: Iterable[str]) -> None:
    """Refuse, before any work, a named file or folder that does not exist and a glob pattern that matches
    nothing."""
    for path in paths:
        if any(ch in path for ch in "*?["):
            if not glob.glob(path, recursive=True):
                raise CommandError(f"{path}: the pattern matches no file (expected export files)")
        elif not Path(path).exists():
            raise CommandError(f"{path}: no such file or folder (expected an export file, a folder or a glob)")
