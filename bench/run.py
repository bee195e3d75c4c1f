"""Run every benchmark (bench/bench_*.py) in one go and write their tables into README.md.

Each benchmark prints a markdown section on stdout; this script puts it, with the machine and date, between
the ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers of the README (``bench/run.py NAME...`` runs and
replaces only those sections). Figures are ratios measured in
the same run (against the physical floor and a naive baseline), so a noisy shared machine still compares fairly.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks named in ``argv`` (default: all) and update their sections of the README."""
    only = set(argv if argv is not None else sys.argv[1:])
    readme = ROOT / "README.md"
    fresh: dict[str, str] = {}
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True)
        printed = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("written "))
        output = printed.strip() if done.returncode == 0 else f"FAILED (exit {done.returncode}):\n\n```\n" \
            f"{(done.stderr or done.stdout)[-2000:]}\n```"
        print(output, flush=True)
        run = f"_{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, " \
              f"run {datetime.date.today().isoformat()}._"
        fresh[name] = f"#### {name}\n\n{run}\n\n{output}"
    text = readme.read_text()  # read now: the README may have been edited while the benchmarks ran
    sections = _sections(text) | fresh
    intro = "_Each section says when it was last run (`make bench` runs all; `bench/run.py NAME...` some)._"
    block = f"{START}\n{intro}\n\n" + "\n\n".join(sections[name] for name in sorted(sections)) + f"\n{END}"
    readme.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    return 0


def _sections(readme: str) -> dict[str, str]:
    """The benchmark sections now in the README, by name (``#### name`` headings between the markers)."""
    found = re.search(re.escape(START) + "(.*?)" + re.escape(END), readme, flags=re.S)
    body = found.group(1) if found else ""
    parts = re.split(r"^(?=#### )", body, flags=re.M)
    return {part.split("\n", 1)[0].removeprefix("#### ").strip(): part.strip()
            for part in parts if part.startswith("#### ")}


if __name__ == "__main__":
    raise SystemExit(main())
