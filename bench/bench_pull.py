"""Pull benchmark: 100,000 traces with details for 2,000 recipients from the loopback Graph (tests/graph_service.py).

The service runs in this process with no artificial delay and no quota; the pull runs in a child process
(``analysis.pull.run.pull``, real msal and HTTPS), so its time and peak memory are its own. Figures: wall time,
requests made against the minimum possible (one list request per 5,000 rows of each 10-day window, one per
detail), against a naive client (Graph's default page of 1,000 rows), and the time the same requests would take
against a real tenant, bound by Graph's quota of 100 requests per 5 minutes. Run: ``python bench/bench_pull.py``
(``--rows N --details N``). Prints a markdown table and writes bench/out/pull.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from common import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from graph_service import App, GraphService, make_traces  # noqa: E402

QUOTA, PERIOD = 100, 300.0  # Graph's, per tenant [S1][S3][S6]
CHILD = r"""
import datetime as dt, json, os, re, sys, time
def rss():
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
from analysis.pull.auth import SignIn
from analysis.pull.run import pull
args = json.loads(sys.argv[1])
base = rss(); t = time.perf_counter()
report = pull(SignIn(args["tenant"], "bench", secret_env="BENCH_SECRET"), args["out"],
              start=dt.datetime.fromisoformat(args["start"]), end=dt.datetime.fromisoformat(args["end"]),
              graph_url=args["graph"], login_url=args["login"], ca_bundle=args["ca"], token_cache=False,
              quota=(10**9, 300.0), max_requests=None)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "peak_mb": (rss() - base) / 2**20, "list": report.list_requests,
                  "details": report.detail_requests, "rows": report.rows_total, "fetched": report.details_fetched}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--details", type=int, default=2_000)
    parser.add_argument("--days", type=float, default=25.0)
    options = parser.parse_args(argv)
    now = dt.datetime.now(dt.UTC)
    traces = make_traces(options.rows, days=options.days, now=now, seed=1)
    for index, row in enumerate(traces):  # exactly --details recipients that matter, spread over the period
        wanted = index % max(1, options.rows // options.details) == 0 and index // max(
            1, options.rows // options.details) < options.details
        row["status"] = ("failed" if index % 3 == 0 else "pending") if wanted else "delivered"
    with tempfile.TemporaryDirectory() as folder, GraphService(
            Path(folder), traces, apps={"bench": App("bench", secret="bench-secret")}, quota=(10**9, 300.0)) as svc:
        start = now - dt.timedelta(days=options.days)
        args = {"tenant": svc.tenant, "out": str(Path(folder) / "pulled"), "start": start.isoformat(),
                "end": dt.datetime.now(dt.UTC).isoformat(), "graph": svc.graph_url, "login": svc.login_url,
                "ca": str(svc.ca)}
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                              check=True, cwd=ROOT, env={"BENCH_SECRET": "bench-secret", "PATH": "/usr/bin:/bin"})
        result = json.loads(done.stdout.strip().splitlines()[-1])
        windows = sorted({(w["start"], w["end"]) for w in json.loads(
            (Path(folder) / "pulled" / "_pull_report.json").read_text())["windows"]})
        per_window = [len(svc.rows_between(dt.datetime.fromisoformat(a.replace("Z", "+00:00")),
                                           dt.datetime.fromisoformat(b.replace("Z", "+00:00")))) for a, b in windows]
        load_started = dt.datetime.now()
        from analysis import load_trace

        events = load_trace(Path(folder) / "pulled")
        load_seconds = (dt.datetime.now() - load_started).total_seconds()
    minimum = sum(math.ceil(n / 5000) for n in per_window) + options.details
    naive = sum(math.ceil(n / 1000) for n in per_window) + options.details
    made = result["list"] + result["details"]

    def quota_minutes(requests: int) -> float:  # the first 100 go at once, then 100 per 5 minutes
        return max(0, math.ceil(requests / QUOTA) - 1) * PERIOD / 60

    lines = [
        f"{options.rows:,} traces over {options.days:g} days ({len(windows)} windows of at most 10 days), details "
        f"for {options.details:,} recipients, from the loopback Graph over HTTPS (no delay, quota off):",
        "",
        "| figure | value |",
        "|---|---|",
        f"| wall time of the pull | {result['seconds']:.1f} s ({made / result['seconds']:.0f} requests/s) |",
        f"| requests made / minimum possible | {made:,} / {minimum:,} = {made / minimum:.2f} |",
        f"| requests of a naive client (Graph's default 1,000-row pages) | {naive:,} ({naive / minimum:.2f} x the "
        "minimum) |",
        f"| peak memory of the pull (above its start) | {result['peak_mb']:.0f} MB |",
        f"| quota-bound time against a real tenant (100 requests / 5 min) | {quota_minutes(made):.0f} min "
        f"(naive: {quota_minutes(naive):.0f} min) |",
        f"| load_trace of the pulled folder | {load_seconds:.1f} s, {len(events):,} events |",
    ]
    return publish("pull", lines, {**result, "minimum": minimum, "naive": naive, "made": made,
                                   "quota_minutes": quota_minutes(made), "load_seconds": load_seconds})


if __name__ == "__main__":
    raise SystemExit(main())
