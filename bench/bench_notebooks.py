"""Notebook benchmark: each guided notebook executed headless (papermill) on the sample, and 02_why_deferred on
a big generated trace (``exo-deferrals sample --rows N``; goal: under 2 minutes for 1,000,000 rows).

The notebooks run from a temporary copy (their exports stay out of the repository); the times include starting
the kernel. Run: ``python bench/bench_notebooks.py`` (``--rows N`` for the big trace, ``--rows 0`` to skip it).
Prints a markdown table and writes bench/out/notebooks.json. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "out"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BIG_NOTEBOOK = "02_why_deferred"


def sample(target: Path, *extra: str) -> float:
    """Write the sample (or a big trace) into ``target`` with the kit's own generator; returns the seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "analysis.sample.generator", "--out", str(target), *extra], check=True,
                   capture_output=True)
    return time.perf_counter() - started


def execute(notebook: Path, workdir: Path, **parameters: object) -> dict[str, object]:
    """Run ``notebook`` from ``workdir``; returns its wall time, the slowest cell and whether it failed."""
    target = workdir / f"{notebook.stem}.out.ipynb"
    started = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(str(notebook), str(target), parameters=parameters, cwd=str(workdir),
                                   kernel_name="python3", progress_bar=False)
    except papermill.PapermillExecutionError as exc:
        error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    seconds = time.perf_counter() - started
    cells = [c for c in nbformat.read(target, as_version=4).cells if c.cell_type == "code"]
    durations = [(c.metadata.get("papermill", {}).get("duration") or 0.0, c.source.splitlines()[0] if c.source
                  else "") for c in cells]
    slowest = max(durations, default=(0.0, ""))
    return {"notebook": notebook.stem, "seconds": round(seconds, 2), "cells": len(cells),
            "slowest_cell_seconds": round(slowest[0], 2), "slowest_cell": slowest[1][:60], "error": error,
            "cell_seconds": [[first[:60], round(d, 2)] for d, first in durations]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big trace (0: skip it)")
    args = parser.parse_args(argv)
    results: dict[str, object] = {"sample": [], "big": None}
    with tempfile.TemporaryDirectory(prefix="bench-notebooks-") as tmp:
        work = Path(tmp) / "notebooks"
        work.mkdir()
        for notebook in NOTEBOOKS:
            shutil.copy(notebook, work)
        data = Path(tmp) / "sample"
        sample(data)
        allowlist = str(data / "partner_allowlist_ironport.txt")
        for notebook in NOTEBOOKS:
            extra = {"allowlist": allowlist} if notebook.stem.startswith(("03", "04")) else {}
            results["sample"].append(execute(work / notebook.name, work, paths=str(data), **extra))
        if args.rows:
            big = Path(tmp) / "big"
            generated = sample(big, "--rows", str(args.rows))
            files = sorted(big.iterdir())
            run = execute(work / f"{BIG_NOTEBOOK}.ipynb", work, paths=str(big))
            run.update(rows_per_file=args.rows, files=[f.name for f in files],
                       megabytes=round(sum(f.stat().st_size for f in files) / 1e6, 1),
                       generate_seconds=round(generated, 2))
            results["big"] = run
    OUT.mkdir(exist_ok=True)
    (OUT / "notebooks.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    lines = ["Headless execution with papermill (kernel start included), the sample story:", "",
             "| notebook | seconds | code cells | slowest cell (s) | slowest cell | error |",
             "|---|---:|---:|---:|---|---|"]
    lines += [f"| {r['notebook']} | {r['seconds']:.1f} | {r['cells']} | {r['slowest_cell_seconds']:.1f} | "
              f"`{r['slowest_cell']}` | {r['error'] or ''} |" for r in results["sample"]]
    big = results["big"]
    if big:
        lines += ["", f"{big['notebook']} on a generated trace of {big['rows_per_file']:,} rows per file "
                      f"({', '.join(big['files'])}; {big['megabytes']:,} MB; generated in "
                      f"{big['generate_seconds']:.0f} s, not counted): **{big['seconds']:.1f} s** (goal: under 120 s); "
                      f"slowest cell {big['slowest_cell_seconds']:.1f} s (`{big['slowest_cell']}`)"
                      + (f"; FAILED: {big['error']}" if big["error"] else "") + ".", "",
                  "| cell | seconds |", "|---|---:|"]
        lines += [f"| `{first}` | {seconds:.1f} |" for first, seconds in big["cell_seconds"] if seconds >= 0.5]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
