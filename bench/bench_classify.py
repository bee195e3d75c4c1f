"""Benchmark analysis.reference.causes.classify_replies against a naive per-row baseline.

Run: ``.venv/bin/python bench/bench_classify.py``. Two workloads built from realistic reply templates with
varying ids, IPs and addresses: 1,000,000 replies with about 3,000 distinct, and 100,000 all distinct. The
naive baseline applies every rule's regex to every row in a Python loop; it runs on a sample and is
extrapolated (said so in the table). Times are the best of 3 runs. A second table splits the time into the stages the
pipeline shares with other modules (parse_replies, identify_gateways) and the rule engine itself.
Prints markdown tables and writes bench/out/classify.json.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.reference.causes import RuleSet, classify_replies, default_rules
from analysis.reference.gateways import identify_gateways
from analysis.reference.replies import parse_replies

SEED = 20261116
NAIVE_SAMPLE = 20_000
REPEAT = 3  # best of
OUT = Path(__file__).parent / "out" / "classify.json"
GOALS = {"1M rows, ~3k distinct": 2.0, "100k rows, all distinct": 10.0}
MIN_SPEEDUP = 20.0

TEMPLATES = [
    "Reason: [{{LED=450 4.4.316 Connection refused [Message=Socket error code 10061] [LastAttemptedServerName="
    "mx{a}.{dom}] [LastAttemptedIP={ip}:25] [{exo}.eop-eur05.prod.protection.outlook.com 2026-11-17T10:{m:02d}:"
    "{s:02d}.{ms:03d}Z 08DB1DF24DB{hex}]}};{{MSG=}};{{FQDN=}};{{IP=}};{{LRT=11/17/2026 10:{m:02d}:{s:02d} AM}}]",
    "450 4.4.315 Connection timed out [Message=Socket error code 10060] [LastAttemptedServerName=mail.{dom}] "
    "[LastAttemptedIP={ip}:25] [{exo}.eop-nam12.prod.protection.outlook.com 2026-11-17T06:{m:02d}:{s:02d}Z {hex}]",
    "450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail] "
    "[LastAttemptedServerName=mail.{dom}] [LastAttemptedIP={ip}:25] [{exo}.eop-eur04.prod.protection.outlook.com]",
    "550 5.1.1 <{user}@{dom}>: Recipient address rejected: User unknown in virtual mailbox table",
    "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {user}@{dom} not found by SMTP address lookup",
    "450 4.2.0 <{user}@{dom}>: Recipient address rejected: Greylisted, see http://postgrey.example/help/{dom}.html",
    "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints - "
    "4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
    "550 5.7.26 Unauthenticated email from {dom} is not accepted due to domain's DMARC policy. Please contact the "
    "administrator of {dom} domain. {hex} - gsmtp",
    "452 4.2.2 The email account that you tried to reach is over quota. {hex} - gsmtp",
    "552 5.3.4 Message size exceeds fixed maximum message size ({a}0000000 bytes) [{exo}.{hex}]",
    "550 5.2.1 <{user}@{dom}>: mailbox disabled ({hex})",
    "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/{ip}",
    "421 {dom} Your access to this mail system from {ip} has been rejected due to the sending MTA's poor reputation.",
    "451 4.7.500 Server busy. Please try again later from [{ip}]. (AS{a}{m}{s}) [{exo}.prod.protection.outlook.com]",
    "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. "
    "[{exo}.namprd07.prod.outlook.com 2026-11-17T10:{m:02d}:{s:02d}Z {hex}]",
    "554 5.7.1 <{user}@{dom}>: Relay access denied",
    "550 5.7.1 Message rejected: virus Win.Trojan.Agent-{a}{m}{s} found in attachment",
    "451 Internal resource is temporarily unavailable - https://community.mimecast.com/docs/DOC-1369#451 [{hex}.us{a}]",
    "550 4.4.7 QUEUE.Expired; message expired [{exo}.eop-eur05.prod.protection.outlook.com]",
    "421 Too many concurrent SMTP connections from this IP address ({ip}); please try again later",
]
DOMAINS = ["tailspintoys.com", "fourthcoffee.com", "litware.com", "gmail.com", "yahoo.com", "wingtiptoys.com",
           "adventure-works.com", "northwind.example", "fabrikam.com", "woodgrovebank.com"]


def make_replies(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct replies from the templates with random ids, IPs, addresses and times."""
    replies: dict[str, None] = {}
    while len(replies) < n:
        replies.update(dict.fromkeys(_draw(n - len(replies), rng)))
    return list(replies)


def _draw(n: int, rng: np.random.Generator) -> list[str]:
    template = rng.integers(0, len(TEMPLATES), n)
    ip = rng.integers(0, 2**32, n, dtype=np.uint64)
    numbers = rng.integers(0, 1 << 62, n, dtype=np.int64)
    out = []
    for i in range(n):
        value = int(ip[i])
        number = int(numbers[i])
        out.append(TEMPLATES[template[i]].format(
            a=number % 9 + 1, m=number % 60, s=(number >> 6) % 60, ms=(number >> 12) % 1000,
            hex=f"{number:016X}", ip=f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}",
            dom=DOMAINS[(number >> 20) % len(DOMAINS)], user=f"user{(number >> 24) % 100000}",
            exo=f"AM{(number >> 30) % 10}EUR05FT0{(number >> 34) % 100:02d}",
        ))
    return out


# --- the naive baseline: every rule's regex against every row, in Python ------------------------------------
_CODES = re.compile(r"(?<![\d.])([245]\d\d)[ -]#?([245]\.\d{1,3}\.\d{1,3})")


def naive_classify(replies: list[str], ruleset: RuleSet) -> list[str]:
    """Per row: every rule's regex, then the first code pair against each rule's codes; keep the best score."""
    compiled = [(rule, re.compile(rule.text, re.I) if rule.text else None) for rule in ruleset.rules]
    tier = {"generic": 1, "outer": 2, "vendor": 3, "code": 4, "text": 5}
    result = []
    for reply in replies:
        m = _CODES.search(reply)
        basic = int(m.group(1)) if m else -1
        parts = tuple(int(p) for p in m.group(2).split(".")) if m else (-1, -1, -1)
        best, cause = -1, "unknown"
        texts = [pattern is None or pattern.search(reply) is not None for _, pattern in compiled]
        for (rule, _), text_hit in zip(compiled, texts, strict=True):
            if rule.vendors or not text_hit:
                continue
            if rule.codes and not any(
                parts[0] in c.classes and c.subject[0] <= parts[1] <= c.subject[1]
                and c.detail[0] <= parts[2] <= c.detail[1] for c in rule.codes
            ):
                continue
            if rule.smtp and not any(lo <= basic <= hi for lo, hi in rule.smtp):
                continue
            score = tier[rule.tier] * 1000 + rule.priority
            if score > best:
                best, cause = score, rule.cause
        result.append(cause)
    return result


def timed(function, *args, repeat: int = 1, **kwargs) -> tuple[float, object]:
    """The best wall time of ``repeat`` calls (the machine may be shared) and the last result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        value = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, value


def main() -> int:
    rng = np.random.default_rng(SEED)
    ruleset = default_rules()
    distinct = make_replies(3_000, rng)
    workloads = {
        "1M rows, ~3k distinct": pd.Series(np.asarray(distinct, dtype=object)[rng.integers(0, 3_000, 1_000_000)]),
        "100k rows, all distinct": pd.Series(make_replies(100_000, rng), dtype=object),
    }
    classify_replies(distinct[:50])  # warm-up: rule file, imports
    rows = []
    for name, replies in workloads.items():
        seconds, found = timed(classify_replies, replies, repeat=REPEAT)
        uniques = pd.Series(pd.unique(replies), dtype=object)
        parse_seconds, parsed = timed(parse_replies, uniques, repeat=REPEAT)
        gateway_seconds, _ = timed(identify_gateways, parsed["remote_host"], uniques.astype("string"), repeat=REPEAT)
        engine_seconds = max(seconds - parse_seconds - gateway_seconds, 0.001)
        sample = replies.sample(min(NAIVE_SAMPLE, len(replies)), random_state=SEED).tolist()
        naive_seconds, naive_causes = timed(naive_classify, sample, ruleset)
        naive_total = naive_seconds * len(replies) / len(sample)
        agree = float(np.mean(found.loc[replies.sample(len(sample), random_state=SEED).index, "cause"].astype(str)
                              .to_numpy() == np.asarray(naive_causes)))
        rows.append({
            "workload": name, "rows": len(replies), "distinct": int(replies.nunique()),
            "seconds": round(seconds, 3), "rows_per_second": round(len(replies) / seconds),
            "naive_seconds_extrapolated": round(naive_total, 1), "naive_sample_rows": len(sample),
            "speedup": round(naive_total / seconds, 1), "goal_seconds": GOALS[name],
            "goal_met": seconds < GOALS[name] and naive_total / seconds >= MIN_SPEEDUP,
            "naive_agreement": round(agree, 4),
            "engine_speedup": round(naive_total / engine_seconds, 1),
            "stage_seconds": {"parse_replies": round(parse_seconds, 3), "identify_gateways": round(gateway_seconds, 3),
                              "rules_and_rest": round(engine_seconds, 3)},
        })
    print("| workload | rows | distinct | classify_replies | naive (extrapolated) | speed-up | goal | met |")
    print("|---|---:|---:|---:|---:|---:|---:|:-:|")
    for r in rows:
        print(f"| {r['workload']} | {r['rows']:,} | {r['distinct']:,} | {r['seconds']:.2f} s | "
              f"{r['naive_seconds_extrapolated']:.0f} s (from {r['naive_sample_rows']:,} rows) | "
              f"{r['speedup']:.0f}x | < {r['goal_seconds']:.0f} s, >= {MIN_SPEEDUP:.0f}x | "
              f"{'yes' if r['goal_met'] else 'NO'} |")
    print("\n| workload | parse_replies (uniques) | identify_gateways (uniques) | rule engine and the rest "
          "| engine vs naive |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        st = r["stage_seconds"]
        print(f"| {r['workload']} | {st['parse_replies']:.2f} s | {st['identify_gateways']:.2f} s | "
              f"{st['rules_and_rest']:.2f} s | {r['engine_speedup']:.0f}x |")
    print(f"\nnaive/classify cause agreement on the samples: {', '.join(str(r['naive_agreement']) for r in rows)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "benchmark": "classify_replies", "python": platform.python_version(), "pandas": pd.__version__,
        "machine": platform.machine(), "rules": len(ruleset.rules), "results": rows,
    }, indent=2) + "\n")
    print(f"written {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
