"""``exo-deferrals sample``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.sample.generator import DEFAULT_MESSAGES, DEFAULT_SEED, FORMATS, generate_story, write_big, write_formats


def main(argv: list[str] | None = None) -> int:
    """exo-deferrals sample: write the sample story in every export format, or a big trace (--rows)."""
    parser = argparse.ArgumentParser(prog="exo-deferrals sample", description=main.__doc__)
    parser.add_argument("--out", default="exo-deferrals-sample", help="folder to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES,
                        help="messages in the story (default: %(default)s)")
    parser.add_argument("--rows", type=int, help="big trace: at least this many rows of each chosen format")
    parser.add_argument("--formats", help=f"comma-separated, some of {','.join(FORMATS)} "
                                          "(default: all; with --rows: messagetrace,detail)")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()] if args.formats else None
    try:
        if args.rows:
            counts = write_big(args.out, args.rows, seed=args.seed, formats=formats or ("messagetrace", "detail"))
            for name, n in counts.items():
                print(f"{Path(args.out) / name}: {n} rows")
        else:
            paths = write_formats(generate_story(args.seed, messages=args.messages), args.out, formats=formats)
            for path in paths.values():
                print(f"{path}: {path.stat().st_size} bytes")
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
