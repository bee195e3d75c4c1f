"""``exo-deferrals classify``: SMTP replies, one per line, into causes, as CSV."""

from __future__ import annotations

from analysis.cli.common import OK, USAGE, CommandError, Parser, check_output, command, read_text, write_stdout
from analysis.io.write import to_safe_csv
from analysis.reference.causes import classify_replies, default_rules, load_rules


@command("classify")
def main(argv: list[str] | None = None) -> int:
    """Classify the replies of FILES (standard input without files) and write them as CSV."""
    parser = Parser("classify", "Classify SMTP replies or Exchange Online Detail/LED texts, one per line, into "
                                "causes. Files may be UTF-8, UTF-16 (as PowerShell 5.1's > writes) or cp1252. "
                                "Writes CSV with the columns of classify_replies: rows end in CRLF, cells a "
                                "spreadsheet would run as a formula start with an apostrophe.")
    parser.add_argument("files", nargs="*", help="text files with one reply per line (default: standard input)")
    parser.add_argument("--rules", help="a rule file (TOML) to use instead of the bundled cause_rules.toml")
    parser.add_argument("-o", "--output", help="write the CSV to this file (default: standard output)")
    args = parser.parse_args(argv)
    output = check_output(args.output, (".csv",)) if args.output else None
    try:
        ruleset = load_rules(args.rules) if args.rules else default_rules()
    except (OSError, ValueError) as error:
        raise CommandError(f"{args.rules}: {error} (expected a cause rule file in TOML)", USAGE) from None
    lines = [line for name in (args.files or [None]) for line in _lines(read_text(name)[1])]
    text = to_safe_csv(classify_replies(lines, rules=ruleset)) or ""
    if output is None:
        write_stdout(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(text.encode("utf-8"))
    return OK


def _lines(text: str) -> list[str]:
    """The lines of ``text`` split on LF (CR LF and a lone CR end a line too), without a trailing empty one."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines
