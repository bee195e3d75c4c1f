"""``exo-deferrals sample``: the sample story in every export format, or a big trace for benchmarks."""

from __future__ import annotations

from pathlib import Path

from analysis.cli.common import OK, USAGE, CommandError, Parser, at_least, command, positive_int
from analysis.sample.generator import (
    DEFAULT_MESSAGES,
    DEFAULT_SEED,
    FORMATS,
    file_rows,
    generate_story,
    write_big,
    write_formats,
)
from analysis.sample.truth import readme_text, story_facts, story_section


@command("sample")
def main(argv: list[str] | None = None) -> int:
    """Write the sample story in every export format, or a big trace (--rows)."""
    parser = Parser("sample", "Write the sample story (docs/sample-story.md) in every export format and its numbers "
                              "into README.md beside them (between the story markers), or with --rows a big trace "
                              "for benchmarks. The same seed writes the same bytes.")
    parser.add_argument("--out", default="exo-deferrals-sample", help="folder to write (default: %(default)s)")
    parser.add_argument("--seed", type=at_least(0), default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    parser.add_argument("--messages", type=positive_int, default=DEFAULT_MESSAGES,
                        help="messages in the story (default: %(default)s)")
    parser.add_argument("--rows", type=positive_int, help="big trace: at least this many rows of each chosen format")
    parser.add_argument("--formats", help=f"comma-separated, some of {','.join(FORMATS)} "
                                          "(default: all; with --rows: messagetrace,detail)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out}: is a file (expected a folder to write the sample into)", USAGE)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()] if args.formats else None
    try:
        if args.rows:
            counts = write_big(out, args.rows, seed=args.seed, formats=formats or ("messagetrace", "detail"))
            for name, n in counts.items():
                print(f"{out / name}: {n} rows")
        else:
            story = generate_story(args.seed, messages=args.messages)
            readme = out / "README.md"
            text = readme_text(readme, story_section(story_facts(story), file_rows(story), seed=args.seed,
                                                     messages=args.messages))
            paths = write_formats(story, out, formats=formats)
            for path in paths.values():
                print(f"{path}: {path.stat().st_size} bytes")
            readme.write_text(text, encoding="utf-8")
            print(f"{readme}: the story's numbers, counted on its truth")
    except ValueError as exc:
        raise CommandError(f"{exc}", USAGE) from None
    return OK

