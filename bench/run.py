"""Run every benchmark (bench/bench_*.py) in one go and write their tables into README.md.

Each benchmark prints a markdown section on stdout; this script puts them, with the machine and date, between
the ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers of the README. Figures are ratios measured in
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
    only = set(argv if argv is not None else sys.argv[1:])
    sections = []
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True)
        output = done.stdout.strip() if done.returncode == 0 else f"FAILED (exit {done.returncode}):\n\n```\n" \
            f"{(done.stderr or done.stdout)[-2000:]}\n```"
        print(output, flush=True)
        sections.append(f"#### {name}\n\n{output}")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"run {datetime.date.today().isoformat()} with `make bench`")
    block = f"{START}\n_{machine}._\n\n" + "\n\n".join(sections) + f"\n{END}"
    readme = ROOT / "README.md"
    text = readme.read_text()
    if only:
        print("(a subset was run: README not updated)")
        return 0
    readme.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
