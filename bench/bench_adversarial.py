"""Adversarial replies: does classifying a reply take time linear in its length (no catastrophic backtracking)?

Run: ``.venv/bin/python bench/bench_adversarial.py``. Each adversarial unit (pieces of the LED / NDR grammar that
make regexes try hard: unclosed brackets, repeated openers, nested wrappers, long runs of codes) is repeated into
one reply of 100 KB, 1 MB and 4 MB, which ``classify_replies`` (parsing, gateway fingerprints, rules) classifies
alone. Linear work grows 4x from 1 MB to 4 MB; quadratic work would grow 16x. Best of 3 runs. Prints a
markdown table and writes bench/out/adversarial.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common import publish

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.reference.causes import classify_replies

SIZES = (100_000, 1_000_000, 4_000_000)
LINEAR_ENOUGH = 6.0  # growth 1 MB -> 4 MB: 4 is linear, 16 quadratic
REPEAT = 3
UNITS = {
    "unclosed [Message=[": "[Message=[",
    "repeated {LED=": "{LED=450 4.4.316 ",
    "nested Server at ... returned '": "Server at mx.example.org (192.0.2.1) returned '",
    "open parentheses after expired": "expired, (",
    "code pairs": "550 5.7.1 ",
    "arrows": " -> 451 4.4.400 ",
    "EXO brackets": "[AB1CD.eop-nam1.prod.protection.outlook.com 2024-01-01T00:00:00.000Z",
    "dots and digits": "5.5.5.5.",
    "LastAttempted facts": "[LastAttemptedIP=[[[",
    "quotes": "responded with: \"'",
    "other MTAs' wrappers": "host mx said: SMTP error from remote mail server after RCPT TO:<a@b>: Deferred: ",
}


def seconds(reply: str) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        classify_replies([reply])
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    classify_replies(["warm-up 550 5.1.1 user unknown"])
    baseline = seconds("550 5.1.1 user unknown")  # the fixed cost of one call
    results = {}
    for name, unit in UNITS.items():
        times = {size: seconds((unit * (size // len(unit) + 1))[:size]) for size in SIZES}
        growth = (times[SIZES[2]] - baseline) / max(times[SIZES[1]] - baseline, 1e-6)
        results[name] = {"seconds": {str(k): round(v, 4) for k, v in times.items()}, "growth": round(growth, 1),
                         "linear_enough": growth < LINEAR_ENOUGH}
    lines = [f"One reply of each size, `classify_replies` alone (fixed cost of a call: {baseline * 1000:.1f} ms). "
             f"Growth 1 MB -> 4 MB: 4x is linear, 16x quadratic.", "",
             "| adversarial unit | 100 KB | 1 MB | 4 MB | growth 1 MB -> 4 MB | linear-ish |",
             "|---|---:|---:|---:|---:|:-:|"]
    for name, r in results.items():
        t = r["seconds"]
        lines.append(f"| {name} | {t[str(SIZES[0])]:.3f} s | {t[str(SIZES[1])]:.3f} s | {t[str(SIZES[2])]:.3f} s "
                     f"| {r['growth']:.1f}x | {'yes' if r['linear_enough'] else 'NO'} |")
    return publish("adversarial", lines, results)


if __name__ == "__main__":
    raise SystemExit(main())
