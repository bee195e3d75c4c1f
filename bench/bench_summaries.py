"""Benchmark every analysis.summaries.tables function on 1,000,000 tagged events.

Run: ``.venv/bin/python bench/bench_summaries.py`` (``--events N`` for another size). The tagged table is
generated directly with numpy (seeded), shaped like a week of Get-MessageTrace + Get-MessageTraceDetail exports
of a large tenant: one summary row per message+recipient plus its detail events (receive, submit, deferrals,
send or fail); 1-3 recipients per message; 5,000 recipient domains (Zipf-distributed, 5 % of them inbound
mail, which the outbound summaries leave out); 12 % of recipients deferred (1 to 40 retries at Exchange
Online's growing intervals; of those 70 % delivered late, 20 % expired after 24 h, 10 % still pending); 3 %
rejected at once; replies carrying varying IPs, ids, addresses and server names (so most deferral replies are
distinct); Exchange Online source IPs from the published ranges (2 % unpublished).

Times: each function's first call, in one process and in the order listed (a string column is factorized by
the first function that needs it and reused while the table lives), and the best of 3 calls. Peak memory: the
resident set above the loaded table while the function runs alone in a fresh process (psutil, sampled every
5 ms). Prints markdown and writes bench/out/summaries.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
from common import PeakRSS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.core.schema import CAUSES, EVENT_COLUMNS, TAG_COLUMNS, conform
from analysis.reference.endpoints import Endpoints
from analysis.summaries import tables as summaries

SEED = 20261116
EVENTS = 1_000_000
DOMAINS = 5_000
REPEAT = 3
GOAL_SECONDS = 5.0
OUT = Path(__file__).parent / "out" / "summaries.json"
START = pd.Timestamp("2026-11-16", tz="UTC").value
_MINUTE = 60 * 10**9
# deferral families: cause, reply template ({ip} the EXO source IP, {rip} the remote IP, {id} an id, {dom} domain)
DEFERRALS = (
    ("gateway_block", '451 4.4.0 Primary target IP address responded with: "421 Your access to this mail system from '
                      '{ip} has been rejected." The last endpoint attempted was {rip}:25 [{srv}] {id}'),
    ("recipient_server_down", "450 4.4.315 Connection timed out [Message=Socket error code 10060] "
                              "[LastAttemptedServerName=mx.{dom}] [LastAttemptedIP={rip}:25] [{srv}]"),
    ("greylisting", "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see http://postgrey/{dom}.html"),
    ("rate_limited", "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume {id}"),
    ("tls_required", "450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required] "
                     "[LastAttemptedServerName=mx.{dom}] [LastAttemptedIP={rip}:25] [{srv}]"),
)
REJECTIONS = (
    ("bad_address", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown {id}"),
    ("mailbox_disabled", "550 5.2.1 Mailbox disabled, not accepting messages {id}"),
    ("auth_policy", "550 5.7.26 Unauthenticated email from contoso.com is not accepted due to DMARC {id} - gsmtp"),
)
EXO_RANGES = (("40.92.0.0", 1 << 17), ("40.107.0.0", 1 << 16), ("52.100.0.0", 1 << 18), ("104.47.0.0", 1 << 15))


def _ipv4(ints: np.ndarray) -> pa.Array:
    parts = [pa.array(((ints >> shift) & 255).astype(np.int64)).cast(pa.string()) for shift in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*parts, ".")


def _fill(template: str, columns: dict[str, pa.Array], rows: np.ndarray) -> pa.Array:
    """``template`` with each ``{name}`` replaced by ``columns[name]`` at ``rows``, on whole columns."""
    pieces: list[pa.Array | str] = []
    text = template
    while "{" in text:
        before, rest = text.split("{", 1)
        name, text = rest.split("}", 1)
        pieces += [before, columns[name].take(pa.array(rows))]
    pieces.append(text)
    return pc.binary_join_element_wise(*pieces, "")


def generate(events: int, seed: int = SEED) -> tuple[pd.DataFrame, dict]:
    """A tagged events table of exactly ``events`` rows, and a description of its shape."""
    rng = np.random.default_rng(seed)
    deferred_share, late, expired = 0.12, 0.70, 0.20
    pairs = int(events / 4.5) + 1  # about 5.1 rows per pair: enough rows, cut to ``events`` below
    # message+recipient pairs
    recipients_per_message = rng.choice([1, 2, 3], size=pairs, p=[0.7, 0.2, 0.1])
    message = np.repeat(np.arange(pairs), recipients_per_message)[:pairs]
    weights = 1.0 / np.arange(1, DOMAINS + 1) ** 0.9
    domain = rng.choice(DOMAINS, size=pairs, p=weights / weights.sum())
    received = START + rng.integers(0, 7 * 24 * 60, pairs) * _MINUTE + rng.integers(0, _MINUTE, pairs)
    deferred = rng.random(pairs) < deferred_share
    retries = np.where(deferred, rng.choice([1, 2, 3, 4, 5, 25, 40], size=pairs,
                                            p=[0.5, 0.1, 0.1, 0.05, 0.05, 0.1, 0.1]), 0)
    fate = rng.random(pairs)
    outcome = np.where(deferred, np.where(fate < late, 0, np.where(fate < late + expired, 2, 3)),
                       np.where(fate < 0.03, 1, 0))  # 0 delivered, 1 rejected, 2 expired, 3 pending
    retries[outcome == 2] = np.maximum(retries[outcome == 2], 24)
    family = rng.integers(0, len(DEFERRALS), pairs)
    rejection = rng.integers(0, len(REJECTIONS), pairs)
    # rows per pair: summary, receive, submit, deferrals, final (none while pending)
    per_pair = 3 + retries + (outcome != 3)
    pair = np.repeat(np.arange(pairs), per_pair)
    step = np.arange(len(pair)) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
    n_defer = retries[pair]
    kind = np.select([step == 0, step == 1, step == 2, step < 3 + n_defer],
                     ["summary", "receive", "submit", "defer"], "final")
    # retry intervals grow from ~5 to 60 minutes; expiries land 24 h after Received
    gap = np.minimum(5 * 1.6 ** np.maximum(step - 3, 0), 60) * _MINUTE * rng.uniform(0.8, 1.2, len(pair))
    gap[step < 3] = 0
    offset = np.cumsum(gap.astype(np.int64))
    offset -= np.repeat(offset[np.cumsum(per_pair) - per_pair], per_pair)
    stamp = received[pair] + offset + np.where(step == 2, 10**9, 0)
    final_outcome = outcome[pair]
    stamp = np.where((kind == "final") & (final_outcome == 2), received[pair] + 24 * 60 * _MINUTE, stamp)
    keep = slice(0, events)
    pair, step, kind, stamp, final_outcome = pair[keep], step[keep], kind[keep], stamp[keep], final_outcome[keep]
    n = len(pair)

    event = np.select([kind == "summary", kind == "receive", kind == "submit", kind == "defer",
                       final_outcome == 0], [np.where(final_outcome == 0, "deliver",
                                                      np.where(final_outcome == 3, "defer", "fail")),
                                             "receive", "submit", "defer", "send"], "fail")
    status = np.array(["delivered", "failed", "failed", "pending"])[final_outcome]
    attempt = (kind == "defer") | (kind == "final")
    rejected = (kind == "final") & (final_outcome == 1)
    expiry = (kind == "final") & (final_outcome == 2)
    refusal = (kind == "defer") | rejected | expiry

    domains = pa.array([f"partner{i}.example" if i % 5 else f"mail{i}.co.uk" for i in range(DOMAINS)])
    exo_int = np.empty(n, dtype=np.int64)
    which = rng.integers(0, len(EXO_RANGES), n)
    for index, (first, size) in enumerate(EXO_RANGES):
        base = int.from_bytes(bytes(int(p) for p in first.split(".")), "big")
        chosen = which == index
        exo_int[chosen] = base + rng.integers(1, size - 1, int(chosen.sum()))
    unpublished = rng.random(n) < 0.02
    exo_int[unpublished] = (203 << 24 | 113 << 8) + rng.integers(1, 255, int(unpublished.sum()))
    columns = {
        "ip": _ipv4(exo_int),
        "rip": _ipv4((198 << 24 | 51 << 16 | 100 << 8) + domain[pair] % 250),
        "dom": domains.take(pa.array(domain[pair])),
        "rcpt": pc.binary_join_element_wise(pa.array(np.char.mod("u%d", pair)), domains.take(pa.array(domain[pair])),
                                            "@"),
        "id": pa.array(np.char.mod("%016x", rng.integers(0, 2**62, n))),
        "srv": pa.array(np.char.mod("AM6EUR05FT%03d.eop-eur05.prod.protection.outlook.com", rng.integers(0, 60, n))),
    }
    reply = np.full(n, None, dtype=object)
    cause = np.full(n, None, dtype=object)
    fam = family[pair]
    for index, (name, template) in enumerate(DEFERRALS):
        rows = np.flatnonzero(((kind == "defer") | expiry) & (fam == index))
        reply[rows] = _fill(template, columns, rows).to_numpy(zero_copy_only=False)
        cause[rows] = name
    reply[expiry] = "550 4.4.7 Message expired"
    rej = rejection[pair]
    for index, (name, template) in enumerate(REJECTIONS):
        rows = np.flatnonzero(rejected & (rej == index))
        reply[rows] = _fill(template, columns, rows).to_numpy(zero_copy_only=False)
        cause[rows] = name
    gateways = np.array([None, None, None, None, None, None, "Cisco Secure Email (IronPort)", "Mimecast",
                         "Proofpoint", "Microsoft 365"], dtype=object)
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(stamp, utc=True),
        "message_id": np.char.mod("<%d@contoso.com>", message[pair]),
        "trace_id": np.char.mod("%032x", message[pair] * 7919 + 12345),
        "sender": np.char.mod("user%d@contoso.com", message[pair] % 3000),
        "recipient": columns["rcpt"].to_pandas(),
        "recipient_domain": columns["dom"].to_pandas(),
        "direction": np.where(domain[pair] % 20 == 7, "inbound", "outbound"),
        "event": event,
        "status": status,
        "reply": reply,
        "exo_ip": pd.Series(columns["ip"].to_pandas()).where(attempt),
        "exo_ip_published": pd.array(np.where(attempt, ~unpublished, None), dtype="boolean"),
        "exo_host": pd.Series(columns["srv"].to_pandas()).where(attempt),
        "remote_ip": pd.Series(columns["rip"].to_pandas()).where(attempt),
        "remote_host": pd.Series("mx." + columns["dom"].to_pandas()).where(attempt),
        "connector": np.array(["To_DefaultOpportunisticTLS", "Partner TLS", None], dtype=object)[domain[pair] % 3],
        "source_format": np.where(kind == "summary", "messagetrace", "messagetrace_detail"),
        "source_row": np.arange(n),
        "cause": cause,
        "transient": pd.array(np.where(refusal, kind == "defer", None), dtype="boolean"),
        "gateway": gateways[domain[pair] % len(gateways)],
    })
    tagged = conform(frame, {**EVENT_COLUMNS, **TAG_COLUMNS})
    shape = {
        "events": n, "message_recipients": int(pair.max()) + 1, "messages": int(message[pair].max()) + 1,
        "domains": len(np.unique(domain[pair])), "deferral_events": int((event == "defer").sum()),
        "distinct_replies": int(tagged["reply"].nunique()), "distinct_exo_ips": int(tagged["exo_ip"].nunique()),
        "causes": sorted(c for c in CAUSES if (cause == c).any()),
    }
    return tagged, shape




def tasks(tagged: pd.DataFrame) -> dict[str, Callable[[], object]]:
    """Every summary, as a notebook would call it on the whole table."""
    endpoints = Endpoints.bundled()
    message = tagged.loc[tagged["event"].eq("defer").to_numpy(dtype=bool), "trace_id"].iloc[0]
    return {
        "summarize_domains": lambda: summaries.summarize_domains(tagged),
        "headline": lambda: summaries.headline(tagged),
        "queue_ages": lambda: summaries.queue_ages(tagged, rollup_parent=True),
        "message_timelines": lambda: summaries.message_timelines(tagged),
        "retry_intervals": lambda: summaries.retry_intervals(tagged),
        "message_journey": lambda: summaries.message_journey(tagged, message),
        "top_replies": lambda: summaries.top_replies(tagged),
        "summarize_causes": lambda: summaries.summarize_causes(tagged),
        "deferrals_by_hour": lambda: summaries.deferrals_by_hour(tagged),
        "deferral_rate_by_source_range": lambda: summaries.deferral_rate_by_source_range(tagged, endpoints),
        "by_gateway": lambda: summaries.by_gateway(tagged),
        "by_connector": lambda: summaries.by_connector(tagged),
    }


def _load(path: str) -> pd.DataFrame:
    return conform(pd.read_parquet(path), {**EVENT_COLUMNS, **TAG_COLUMNS})


def child(name: str, path: str) -> int:
    """In a fresh process: the peak resident memory of one summary above the loaded table, in bytes."""
    task = tasks(_load(path))[name]
    with PeakRSS() as peak:
        baseline = peak.peak
        task()
    print(peak.peak - baseline)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=EVENTS, help="rows of the tagged table (default 1,000,000)")
    parser.add_argument("--child", nargs=2, metavar=("FUNCTION", "PARQUET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    started = time.perf_counter()
    tagged, shape = generate(args.events)
    build = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "tagged.parquet")
        tagged.to_parquet(path)
        tagged = _load(path)  # what the children see
        runs = tasks(tagged)
        first = {name: _timed(task) for name, task in runs.items()}
        best = {name: min(_timed(task) for _ in range(REPEAT)) for name, task in runs.items()}
        peaks = {name: int(subprocess.run([sys.executable, __file__, "--child", name, path], check=True,
                                          capture_output=True, text=True).stdout.split()[-1]) for name in runs}
    results = [{"function": name, "first_call_seconds": round(first[name], 3),
                "best_of_3_seconds": round(best[name], 3),
                "peak_memory_mb": round(max(0, peaks[name]) / 2**20, 1)} for name in runs]
    total_first = round(sum(first.values()), 3)
    total_best = round(sum(best.values()), 3)
    met = total_first < GOAL_SECONDS
    print(f"{shape['events']:,} tagged events ({shape['message_recipients']:,} message+recipients, "
          f"{shape['messages']:,} messages, {shape['domains']:,} recipient domains, {shape['deferral_events']:,} "
          f"deferrals, {shape['distinct_replies']:,} distinct replies, {shape['distinct_exo_ips']:,} distinct "
          f"Exchange Online IPs), built in {build:.1f} s. First call: every function once, in this order, in one "
          f"process (string columns are factorized by the first function that needs them, then reused); best of "
          f"{REPEAT}: repeated calls; peak memory: resident memory above the loaded table, each function alone in "
          f"a fresh process.\n")
    print(f"| function | first call (s) | best of {REPEAT} (s) | peak memory |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['function']} | {r['first_call_seconds']:.2f} | {r['best_of_3_seconds']:.2f} | "
              f"{r['peak_memory_mb']:,.0f} MB |")
    print(f"| **total** | **{total_first:.2f}** | **{total_best:.2f}** | |")
    print(f"\ngoal: all summaries < {GOAL_SECONDS:.0f} s (first calls): {'met' if met else 'NOT met'}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "benchmark": "summaries", "python": platform.python_version(), "pandas": pd.__version__,
        "machine": platform.machine(), "cpus": psutil.cpu_count(), "load_average": list(psutil.getloadavg()),
        "shape": shape, "results": results, "total_first_call_seconds": total_first,
        "total_best_of_3_seconds": total_best, "goal_seconds": GOAL_SECONDS, "goal_met": met,
    }, indent=2) + "\n")
    print(f"written {OUT}")
    return 0


def _timed(task: Callable[[], object]) -> float:
    started = time.perf_counter()
    task()
    return time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())
