"""Report benchmark: wall time of ``exo-deferrals report`` on the sample and on a big trace, and what it writes.

Each render runs as its own process (the command a user types), so its time includes starting Python, the
kernel and the notebook; peak memory is the largest process of the run (the command or its kernel). Run:
``python bench/bench_report.py`` (``--rows N`` for the big trace, default 1,000,000 Get-MessageTrace rows).
Prints a markdown table and writes bench/out/report.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import publish

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20
ALLOWLIST_FILE = "partner_allowlist_ironport.txt"  # written into the sample folder by `exo-deferrals sample`

# the child prints its own wall time and its descendants' peak RSS (the kernel is one of them)
_RUN = r"""
import re, resource, sys, time
from analysis.cli import main
t = time.perf_counter()
code = main(["report", *sys.argv[1:]])
own = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))  # not inherited over exec
peak = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # the kernel's peak is a child's
print("BENCH", code, time.perf_counter() - t, peak * 1024)
"""


def render(trace: Path, folder: Path, *options: str) -> dict[str, float]:
    """Run the report command; its time, peak memory and the sizes of what it wrote."""
    output = folder / "report.html"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RUN, str(trace), "-o", str(output), *options], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH ")]
    if done.returncode or not line or line[-1].split()[1] != "0":
        raise SystemExit(f"report failed ({done.returncode}):\n{done.stderr[-3000:]}")
    _, _, seconds, peak = line[-1].split()
    charts = sorted((folder / "report_charts").iterdir())
    return {
        "seconds": wall, "seconds_in_command": float(seconds), "peak_mb": float(peak) / MB,
        "html_mb": output.stat().st_size / MB, "charts": len(charts),
        "charts_mb": sum(p.stat().st_size for p in charts) / MB,
        "events_csv_mb": (folder / "report_events.csv").stat().st_size / MB,
        "events_parquet_mb": (folder / "report_events.parquet").stat().st_size / MB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big trace (0: skip it)")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        base = Path(tmp)
        # inputs are written by other processes: Linux keeps a process's peak RSS across fork and exec, so a
        # bench process that had built them would pass its own peak on to every report it starts
        exo = [sys.executable, "-m", "analysis.cli", "sample"]
        subprocess.run([*exo, "--out", str(base / "sample")], cwd=ROOT, check=True, capture_output=True)
        (base / "sample" / ALLOWLIST_FILE).unlink(missing_ok=True)  # a trace folder: the allow-list is no trace
        traces = {"sample (every export format)": base / "sample"}
        if args.rows:
            subprocess.run([*exo, "--out", str(base / "big"), "--rows", str(args.rows), "--formats", "messagetrace"],
                           cwd=ROOT, check=True, capture_output=True)
            traces[f"{args.rows:,} rows (Get-MessageTrace CSV)"] = next((base / "big").glob("*.csv"))
        for label, trace in traces.items():
            size = sum(p.stat().st_size for p in ([trace] if trace.is_file() else trace.iterdir())) / MB
            for mode, options in (("plain", ()), ("--redact", ("--redact",))):
                name = f"{label}, {mode}"
                print(f"== {name}", file=sys.stderr, flush=True)
                results[name] = {"input_mb": size, **render(trace, base / "out" / str(len(results)), *options)}
    lines = ["`exo-deferrals report` (one process per run; peak = largest process: the command or its kernel).", "",
             "| trace, mode | input | wall time | peak memory | HTML | charts (PNG+SVG) | events CSV / Parquet |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['input_mb']:.1f} MB | {r['seconds']:.1f} s | {r['peak_mb']:.0f} MB | {r['html_mb']:.2f} MB "
            f"| {r['charts']:.0f} files, {r['charts_mb']:.1f} MB | {r['events_csv_mb']:.1f} / "
            f"{r['events_parquet_mb']:.1f} MB |")
    return publish("report", lines, results)


if __name__ == "__main__":
    raise SystemExit(main())
