"""Dask benchmark: generated events ingested into the Parquet store and summarized on a LocalCluster.

Run: ``.venv/bin/python bench/bench_dask.py`` (``--events N`` or ``EXO_BENCH_DASK_EVENTS=N``, default 10,000,000;
``--data DIR`` keeps the generated exports between runs). The trace is ``exo-deferrals sample --rows``: half
Get-MessageTrace rows (one per message+recipient), half Get-MessageTraceDetail rows (events), a week of a big tenant,
written as two CSV files that ingest cuts into pieces. The Dask run starts the kit's LocalCluster
(``analysis.backends.dask.connect("local")``: 2 worker processes x 1 thread on 127.0.0.1), then times ``ingest``
(load, stage, shuffle by site, cross-file steps, tags, write by day) and the notebooks' summaries on the store
(headline, summarize_domains, summarize_causes, queue_ages, top_replies, deferrals_by_hour) the way the notebooks
call them, ``summary(tag(open_store(store)))`` (counted in the totals), and on the store folder, ``summary(store)``.
The pandas run does the same in one process (``load_trace`` of both files, ``tag``, the summaries) on
``--pandas-events`` events (default 1,000,000: 10,000,000 do not fit in memory); the Dask run is repeated at that
size for the ratio. Peak memory: the resident memory of the whole process tree (this process, the scheduler in it,
the workers) sampled every 20 ms (the goal: under 4 GB), and the sum of each process's own peak (VmHWM), an upper
bound that adds peaks reached at different times. Prints markdown and writes bench/out/dask.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from common import PeakRSS, publish  # noqa: E402

EVENTS = int(os.environ.get("EXO_BENCH_DASK_EVENTS", 10_000_000))
PANDAS_EVENTS = 1_000_000
WORKERS = 2
MEMORY_GOAL = 4 * 2**30
SUMMARIES = ("headline", "summarize_domains", "summarize_causes", "queue_ages", "top_replies", "deferrals_by_hour")
CLUSTER_SIZES = (64, 512)  # cores of the clusters in the paper estimate
CLUSTER_EFFICIENCY = 0.7  # share of linear scaling assumed there (shuffle over the network, stragglers)


def vmhwm() -> int:
    """This process's own peak resident memory."""
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


SAMPLE = "import sys; from analysis.cli.sample import main; sys.exit(main(sys.argv[1:]))"  # exo-deferrals sample


def generate(folder: Path, events: int) -> tuple[list[Path], float]:
    """Get-MessageTrace and Get-MessageTraceDetail exports of about ``events`` rows (two processes at once)."""
    rows = max(events // 2, 1)
    marker = folder / f"rows-{rows}.done"
    files = [folder / "summary" / "messagetrace_ps51_en-US.csv", folder / "detail" / "messagetrace_detail.csv"]
    if marker.exists() and all(f.exists() for f in files):
        return files, 0.0
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    jobs = [subprocess.Popen([sys.executable, "-c", SAMPLE, "--rows", str(rows), "--formats", kind,
                              "--out", str(folder / sub)], cwd=ROOT, stdout=subprocess.DEVNULL)
            for kind, sub in (("messagetrace", "summary"), ("detail", "detail"))]
    if any(job.wait() for job in jobs):
        raise RuntimeError("generating the trace failed")
    marker.touch()
    return files, time.perf_counter() - started


def run_dask(files: list[Path], store: Path) -> dict:
    """ingest + summaries on a LocalCluster; times, throughput and peak memory of the process tree."""
    from analysis import tag
    from analysis.backends import dask as engine
    from analysis.store import ingest, open_store, read_manifest
    from analysis.summaries import tables as summaries

    with PeakRSS(tree=True, interval=0.02) as peak:
        started = time.perf_counter()
        client = engine.connect("local", n_workers=WORKERS, threads_per_worker=1, processes=True)
        startup = time.perf_counter() - started
        started = time.perf_counter()
        report = ingest(files, store)
        ingest_seconds = time.perf_counter() - started
        if not report.ok:
            raise RuntimeError(report.summary())
        times, on_folder = {}, {}
        for name in SUMMARIES:  # the notebooks' path: tag(the store's events), then the summary
            started = time.perf_counter()
            getattr(summaries, name)(tag(open_store(store)))
            times[name] = time.perf_counter() - started
        for name in SUMMARIES:  # the store folder given to the summary
            started = time.perf_counter()
            getattr(summaries, name)(str(store))
            on_folder[name] = time.perf_counter() - started
        worker_peaks = client.run(vmhwm)  # (a LocalCluster's nannies and scheduler live in this process)
        engine.close(client)
    own_peaks = vmhwm() + sum(worker_peaks.values())
    manifest = read_manifest(store)
    store_bytes = sum(p.stat().st_size for p in store.rglob("*.parquet"))
    return {"events": manifest["events"], "partitions": manifest["partitions"], "days": len(manifest["days"]),
            "cluster_start_seconds": startup, "ingest_seconds": ingest_seconds, "summaries": times,
            "summaries_on_folder": on_folder, "summaries_on_folder_seconds": sum(on_folder.values()),
            "summaries_seconds": sum(times.values()), "peak_tree_bytes": peak.peak,
            "sum_of_process_peaks_bytes": own_peaks, "store_bytes": store_bytes,
            "input_bytes": sum(f.stat().st_size for f in files)}


PANDAS_CHILD = r"""
import json, re, sys, time
from pathlib import Path
def vmhwm():
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
from analysis import load_trace, tag
from analysis.summaries import tables as summaries
files = sys.argv[2:]
started = time.perf_counter()
events = load_trace(files)
tagged = tag(events)
ingest = time.perf_counter() - started
times = {}
for name in sys.argv[1].split(","):
    started = time.perf_counter()
    getattr(summaries, name)(tagged)
    times[name] = time.perf_counter() - started
print(json.dumps({"events": len(tagged), "ingest_seconds": ingest, "summaries": times,
                  "summaries_seconds": sum(times.values()), "peak_bytes": vmhwm()}))
"""


def run_pandas(files: list[Path]) -> dict:
    """load_trace + tag + summaries in one fresh process."""
    done = subprocess.run([sys.executable, "-c", PANDAS_CHILD, ",".join(SUMMARIES), *map(str, files)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=EVENTS, help="events to generate (default %(default)s)")
    parser.add_argument("--pandas-events", type=int, default=PANDAS_EVENTS,
                        help="events of the pandas comparison (default %(default)s)")
    parser.add_argument("--data", type=Path, help="folder for the generated exports (kept; default: temporary)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="exo-bench-dask-") as tmp:
        data = args.data or Path(tmp) / "data"
        files, generate_seconds = generate(data / "big", args.events)
        big = run_dask(files, Path(tmp) / "store-big")
        small_files, small_generate = (files, 0.0) if args.pandas_events >= args.events else \
            generate(data / "small", args.pandas_events)
        small = big if small_files == files else run_dask(small_files, Path(tmp) / "store-small")
        pandas = run_pandas(small_files)
    results = {"dask": big, "dask_small": small, "pandas": pandas, "generate_seconds": generate_seconds,
               "workers": WORKERS, "cores": psutil.cpu_count(), "python": platform.python_version(),
               "load_average": list(psutil.getloadavg())}
    lines = _markdown(args.events, big, small, pandas, generate_seconds + small_generate)
    results["estimate_1e9"] = _estimate(big)
    return publish("dask", lines, results)


def _rate(run: dict) -> float:
    return run["events"] / (run["ingest_seconds"] + run["summaries_seconds"])


def _estimate(run: dict) -> dict:
    per_core = _rate(run) / WORKERS
    return {"events_per_second_per_core": per_core,
            **{f"hours_on_{cores}_cores": 1e9 / (per_core * cores * CLUSTER_EFFICIENCY) / 3600
               for cores in CLUSTER_SIZES},
            "store_gb": run["store_bytes"] / run["events"] * 1e9 / 2**30}


def _markdown(requested: int, big: dict, small: dict, pandas: dict, generate_seconds: float) -> list[str]:
    gb = 2**30

    def row(label: str, run: dict, cores: int, peak: int, bound: int | None) -> str:
        total = run["ingest_seconds"] + run["summaries_seconds"]
        return (f"| {label} | {run['events']:,} | {run['ingest_seconds']:.0f} s | {run['summaries_seconds']:.1f} s "
                f"| {total:.0f} s | {run['events'] / total:,.0f} | {run['events'] / total / cores:,.0f} "
                f"| {peak / gb:.2f} GB" + (f" ({bound / gb:.2f} GB)" if bound else "") + " |")

    estimate = _estimate(big)
    ratio_wall = (pandas["ingest_seconds"] + pandas["summaries_seconds"]) / (
        small["ingest_seconds"] + small["summaries_seconds"])
    lines = [
        f"{requested:,} events requested: generated Get-MessageTrace + Get-MessageTraceDetail exports "
        f"({big['input_bytes'] / gb:.1f} GB of CSV, "
        + (f"generated in {generate_seconds:.0f} s, not timed" if generate_seconds else "generated earlier (--data)")
        + "), ingested into "
        f"the Parquet store ({big['store_bytes'] / gb:.2f} GB, {big['days']} days, {big['partitions']} partitions) "
        f"and summarized ({', '.join(SUMMARIES)}) on a LocalCluster of {WORKERS} worker processes x 1 thread. "
        "pandas: `load_trace` + `tag` + the same summaries in one process. Peak memory: the process tree's resident "
        "memory (sampled every 20 ms), in brackets the sum of every process's own peak.",
        "",
        "| run | events | ingest (load + tag + write) | summaries | total | events/s | events/s per core "
        "| peak memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row("Dask store, 2 workers", big, WORKERS, big["peak_tree_bytes"], big["sum_of_process_peaks_bytes"]),
    ]
    if small is not big:
        lines.append(row("Dask store, 2 workers", small, WORKERS, small["peak_tree_bytes"],
                         small["sum_of_process_peaks_bytes"]))
    lines.append(row("pandas, 1 process", pandas, 1, pandas["peak_bytes"], None))
    met = big["peak_tree_bytes"] < MEMORY_GOAL
    lines += [
        "",
        f"Dask / pandas at {pandas['events']:,} events: {ratio_wall:.2f}x the pandas speed on {WORKERS} cores "
        f"({ratio_wall / WORKERS:.2f}x per core); pandas needs {pandas['peak_bytes'] / pandas['events']:,.0f} bytes "
        f"per event, {pandas['peak_bytes'] / pandas['events'] * big['events'] / gb:.0f} GB for "
        f"{big['events']:,} events. Goal: the process tree's peak under {MEMORY_GOAL / gb:.0f} GB at "
        f"{big['events']:,} events: {'met' if met else 'NOT met'} ({big['peak_tree_bytes'] / gb:.2f} GB; the sum of "
        f"each process's own peak, reached at different times, is {big['sum_of_process_peaks_bytes'] / gb:.2f} GB). "
        f"Load average at the end: {', '.join(f'{x:.1f}' for x in psutil.getloadavg())} (a busy machine slows "
        "every run).",
        "",
        "Summaries on the store as the notebooks call them, `summary(tag(open_store(store)))` (s): "
        + ", ".join(f"{name} {big['summaries'][name]:.1f}" for name in SUMMARIES)
        + "; on the store folder, `summary(store)`: "
        + ", ".join(f"{name} {big['summaries_on_folder'][name]:.1f}" for name in SUMMARIES)
        + f" (total {big['summaries_on_folder_seconds']:.1f} s); cluster start {big['cluster_start_seconds']:.1f} s "
        "(not counted).",
        "",
        f"Paper estimate for 1,000,000,000 events: {estimate['events_per_second_per_core']:,.0f} events/s per core "
        "(this run, ingest and summaries) x cores x "
        f"{CLUSTER_EFFICIENCY:.0%} scaling efficiency: "
        + ", ".join(f"{estimate[f'hours_on_{c}_cores']:.1f} h on {c} cores" for c in CLUSTER_SIZES)
        + f"; a {estimate['store_gb']:.0f} GB store. Ingest and tags keep a worker's memory to a partition (250,000 "
        "events; a bigger domain is cut into slices of messages when exact); the summaries read each recipient domain "
        "whole (about 13 columns), so at that scale a domain of 100 million events needs a worker of tens of GB.",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
