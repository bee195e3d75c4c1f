"""``exo-deferrals classify``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.io.write import to_safe_csv
from analysis.reference.causes import classify_replies, default_rules, load_rules


def main(argv: list[str] | None = None) -> int:
    """``exo-deferrals classify [FILES...]``: replies one per line (stdin without files) -> CSV on stdout."""
    parser = argparse.ArgumentParser(
        prog="exo-deferrals classify",
        description="Classify SMTP replies or Exchange Online Detail/LED texts, one per line, into causes. "
        "Writes CSV (formula cells neutralized) with the columns of classify_replies.",
    )
    parser.add_argument("files", nargs="*", help="text files with one reply per line (default: standard input)")
    parser.add_argument("--rules", help="a rule file to use instead of the bundled cause_rules.toml")
    args = parser.parse_args(argv)
    try:
        ruleset = load_rules(args.rules) if args.rules else default_rules()
        chunks = [Path(f).read_bytes() for f in args.files] if args.files else [sys.stdin.buffer.read()]
    except (OSError, ValueError) as error:
        print(f"exo-deferrals classify: {error}", file=sys.stderr)
        return 2
    lines = [line for chunk in chunks for line in _lines(chunk)]
    table = classify_replies(lines, rules=ruleset)
    sys.stdout.write(to_safe_csv(table, lineterminator="\n") or "")
    return 0


def _lines(raw: bytes) -> list[str]:
    """The lines of a UTF-8 (optionally BOM-prefixed) text, split on LF only; bad bytes become U+FFFD."""
    lines = raw.decode("utf-8-sig", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


if __name__ == "__main__":
    raise SystemExit(main())
