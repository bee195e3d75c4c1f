"""Benchmark Endpoints.match_ips against netaddr's per-row ``ip in IPSet``.

Run: ``.venv/bin/python bench/bench_endpoints.py``. Two workloads of 1,000,000 IP texts (IPv4 and IPv6
mixed, 10% garbage: blanks, host names, ``ip:port`` typos, out-of-range octets), as a pyarrow-backed string
column like the readers produce:

* realistic repetition: about 20,000 distinct values drawn with a skewed (Zipf-like) frequency, most of
  them inside the Exchange Online ranges, as in a week of message trace;
* all distinct: 1,000,000 different values.

``match_ips`` tags every row against all endpoint sets of the bundled snapshot (set, service area,
category, mail flow, most specific CIDR). The floor is one pass that only encodes the column
(``pyarrow.compute.dictionary_encode``). The naive baseline parses every row with ``netaddr.IPAddress``
and tests ``ip in IPSet`` (membership only, less than match_ips returns); it runs on a sample of rows and
is extrapolated - said so in the table. Prints markdown and writes bench/out/endpoints.json.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import netaddr
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.reference.endpoints import Endpoints

SEED = 20261116
ROWS = 1_000_000
NAIVE_SAMPLE = 20_000
GOAL_SECONDS = 0.5
REPEATS = 5
OUT = Path(__file__).parent / "out" / "endpoints.json"
EXO_V4 = ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"]


def _v4(ints: np.ndarray) -> list[str]:
    return [f"{i >> 24}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in ints.tolist()]


def _v6(rng: np.random.Generator, n: int, exo: bool) -> list[str]:
    words = rng.integers(0, 65536, size=(n, 4)).tolist()
    if exo:
        return [f"2a01:111:f403:{a:x}::{b:x}:{c:x}" for a, b, c, _ in words]
    return [f"2001:db8:{a:x}:{b:x}::{c:x}:{d:x}" for a, b, c, d in words]


def _garbage(rng: np.random.Generator, n: int, unique: bool) -> list[str]:
    forms = ["", "N/A", "mx1.hc4112-47.iphmx.com", "52.100.1.{i}:25", "300.1.2.{i}", "unknown-{i}",
             "40.107.{i}", "2a01:111:f403::{i}::1", "[{i}]", "ip={i}"]
    picks = rng.integers(0, len(forms), n).tolist()
    if unique:
        return [f"junk-{k}-" + forms[p].format(i=k % 250) for k, p in enumerate(picks)]
    return [forms[p].format(i=k % 250) for k, p in enumerate(picks)]


def _inside(rng: np.random.Generator, n: int) -> np.ndarray:
    networks = [netaddr.IPNetwork(c) for c in EXO_V4]
    which = rng.integers(0, len(networks), n)
    firsts = np.array([net.first for net in networks], dtype=np.uint64)[which]
    sizes = np.array([net.size for net in networks], dtype=np.uint64)[which]
    return (firsts + rng.integers(0, 2**62, n).astype(np.uint64) % sizes).astype(np.uint64)


def realistic(rng: np.random.Generator) -> pd.Series:
    """1M rows, ~20k distinct values, skewed frequencies, 10% garbage rows."""
    valid = (_v4(_inside(rng, 14_000)) + _v4(rng.integers(0, 2**32, 2_000, dtype=np.uint64))
             + _v6(rng, 3_000, exo=True) + _v6(rng, 1_000, exo=False))
    garbage = _garbage(rng, 500, unique=False)
    weights = 1.0 / np.arange(1, len(valid) + 1) ** 0.6
    rows = np.asarray(valid, dtype=object)[rng.choice(len(valid), ROWS, p=weights / weights.sum())]
    bad = rng.random(ROWS) < 0.10
    rows[bad] = np.asarray(garbage, dtype=object)[rng.integers(0, len(garbage), int(bad.sum()))]
    return pd.Series(rows, dtype=pd.StringDtype("pyarrow"))


def all_distinct(rng: np.random.Generator) -> pd.Series:
    """1M different values: 60% IPv4, 30% IPv6, 10% garbage, shuffled."""
    v4 = np.unique(rng.integers(0, 2**32, int(ROWS * 0.65), dtype=np.uint64))[: int(ROWS * 0.6)]
    v6 = list(dict.fromkeys(_v6(rng, int(ROWS * 0.31), exo=True)))[: int(ROWS * 0.3)]
    values = _v4(v4) + v6 + _garbage(rng, ROWS - len(v4) - len(v6), unique=True)
    order = rng.permutation(len(values))
    return pd.Series(np.asarray(values, dtype=object)[order], dtype=pd.StringDtype("pyarrow"))


def naive(values: list[str | None], ipset: netaddr.IPSet) -> list[bool | None]:
    """The per-row baseline: parse with netaddr, test membership with ``in``."""
    out: list[bool | None] = []
    for value in values:
        try:
            out.append(netaddr.IPAddress(value) in ipset)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            out.append(None)
    return out


def best_of(function, *args) -> tuple[float, float, object]:
    """Best wall-clock and best CPU seconds of REPEATS runs (CPU time is steadier on a shared machine)."""
    wall, cpu, value = float("inf"), float("inf"), None
    for _ in range(REPEATS):
        start, start_cpu = time.perf_counter(), time.process_time()
        value = function(*args)
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, value


def main() -> int:
    rng = np.random.default_rng(SEED)
    endpoints = Endpoints.bundled()
    ipset = endpoints.ip_set()
    endpoints.match_ips(["40.107.1.1", "2a01:111:f403::1", "x"])  # warm-up: builds the range table
    rows = []
    for name, values in (("1M rows, realistic repetition", realistic(rng)), ("1M rows, all distinct",
                                                                              all_distinct(rng))):
        seconds, cpu, frame = best_of(endpoints.match_ips, values)
        floor, _, _ = best_of(lambda v: pc.dictionary_encode(pa.array(v)), values)
        sample = values.sample(NAIVE_SAMPLE, random_state=SEED)
        start = time.perf_counter()
        baseline = naive(sample.tolist(), ipset)
        naive_total = (time.perf_counter() - start) * len(values) / len(sample)
        ours = frame.loc[sample.index, "in_m365"].tolist()
        judged = [(a, b) for a, b in zip(baseline, ours, strict=True) if a is not None]
        agreement = sum(a == b for a, b in judged) / len(judged)
        rows.append({
            "workload": name, "rows": len(values), "distinct": int(values.nunique(dropna=False)),
            "garbage_rows": int((~frame["valid"]).sum()), "invalid_counted": frame.attrs["invalid"],
            "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "floor_seconds": round(floor, 3),
            "vs_floor": round(seconds / floor, 1),
            "naive_seconds_extrapolated": round(naive_total, 1), "naive_sample_rows": len(sample),
            "speedup": round(naive_total / seconds, 1), "naive_agreement": round(agreement, 4),
            "goal_seconds": GOAL_SECONDS, "goal_met": seconds < GOAL_SECONDS,
        })
    print("| workload | rows | distinct | match_ips (CPU) | floor (encode only) | naive `ip in IPSet` (extrapolated) "
          "| speed-up | goal | met |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|:-:|")
    for r in rows:
        print(f"| {r['workload']} | {r['rows']:,} | {r['distinct']:,} | "
              f"{r['seconds']:.2f} s ({r['cpu_seconds']:.2f} s) | "
              f"{r['floor_seconds']:.2f} s ({r['vs_floor']:.1f}x) | {r['naive_seconds_extrapolated']:.1f} s "
              f"(from {r['naive_sample_rows']:,} rows) | {r['speedup']:.0f}x | < {GOAL_SECONDS} s | "
              f"{'yes' if r['goal_met'] else 'NO'} |")
    print(f"\nnaive/match_ips agreement on in_m365 (rows netaddr could parse): "
          f"{', '.join(str(r['naive_agreement']) for r in rows)}; best of {REPEATS} runs; "
          f"{len(endpoints.sets)} endpoint sets, version {endpoints.version}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "benchmark": "Endpoints.match_ips", "python": platform.python_version(), "pandas": pd.__version__,
        "pyarrow": pa.__version__, "numpy": np.__version__, "netaddr": netaddr.__version__,
        "machine": platform.machine(), "endpoints_version": endpoints.version, "results": rows,
    }, indent=2) + "\n")
    print(f"written {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
