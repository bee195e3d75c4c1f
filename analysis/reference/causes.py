"""Classify SMTP replies and Exchange Online LEDs into the cause taxonomy with a data-driven rule table.

The rules are data (``analysis/reference/data/cause_rules.toml``, each with its public source); this module is the
small generic engine that applies them. Each UNIQUE reply is classified once: codes and the words the rules
read come from :func:`analysis.reference.replies.parse_replies` (the innermost remote reply when Exchange Online,
Amazon SES, Postfix, Exim, Sendmail or qmail wraps one; the wrapper's words only when it holds none), the
recipient gateway vendor from :func:`analysis.reference.gateways.identify_gateways`, and every rule is evaluated
as whole-array operations (RE2 regexes through pyarrow, codes as integer arrays).

Precedence, when several rules match one reply, the best tier wins:

1. **text** - a rule's reply-text pattern matched. The words are the most specific evidence: a
   ``550 5.1.1`` that says "mailbox disabled" is ``mailbox_disabled``, and the inner reply's words
   ("STARTTLS is required") beat Exchange Online's wrapper code (4.4.317).
2. **code** - an exact enhanced code or code range matched the most specific code (the inner reply's
   code when Exchange Online wraps one, else the only code).
3. **vendor** - a rule restricted to a recipient gateway vendor matched on codes alone (an IronPort,
   Mimecast, ... refusal whose text names no reason).
4. **outer** - a code rule matched only Exchange Online's own wrapper code (4.4.317 around an inner reply
   that no rule knows).
5. **generic** - class wildcards (``5.1.*``), bare basic codes (``421``) and rules marked ``generic``
   (weak phrases such as "try again later" or "access denied").

Inside a tier the higher ``priority`` wins, then the rule that comes first in the file. A rule's ``unless``
guard vetoes it where its regex matches (negations, an account that is "blocked", the server's disk). The
``confidence`` column says what decided (:data:`analysis.core.schema.CONFIDENCES`): ``text`` (words), ``code``
(an exact or a gateway's code), ``class`` (the RFC 3463 class and subject, or the basic code, when no words
matched) or ``none`` (``unknown``: neither a code nor a matching word).

``transient`` comes from the code Exchange Online reported for the event (4xx temporary, 5xx permanent; the basic
code first, so ``550 4.4.7`` is permanent), else from text cues.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.core.schema import CAUSES, CONFIDENCES, STRING
from analysis.reference.gateways import identify_gateways
from analysis.reference.replies import parse_replies

__all__ = [
    "ACTORS", "CLASSIFY_COLUMNS", "Rule", "RuleSet", "classify_replies", "default_rules", "load_rules",
]

ACTORS = ("sender", "recipient", "either", "nobody")
TIERS = ("generic", "outer", "vendor", "code", "text")  # worst to best
_TIER = {name: rank for rank, name in enumerate(TIERS, start=1)}
_PRIORITY_SPAN = 1000  # priorities are -100..100, so tier * span + priority keeps tiers apart
_EVIDENCE_CHARS = 200

CLASSIFY_COLUMNS: dict[str, object] = {
    "reply": STRING,
    "cause": pd.CategoricalDtype(CAUSES),
    "transient": "boolean",
    "smtp_code": "Int16",
    "enhanced_code": STRING,
    "rule": STRING,
    "explanation": "category",
    "remedy": "category",
    "actor": pd.CategoricalDtype(ACTORS),
    "evidence": STRING,
    "confidence": pd.CategoricalDtype(CONFIDENCES),
}

_CODE_SPEC = re.compile(r"\A(?P<c>[245x])\.(?:\*|(?P<s>\d{1,3})\.(?:\*|(?P<d>\d{1,3})(?:-(?P<e>\d{1,3}))?))\Z")
_SMTP_SPEC = re.compile(r"\A[245](?:xx|\dx|\d\d)\Z")
_ENHANCED = r"^(?P<c>[245])\.(?P<s>\d{1,3})\.(?P<d>\d{1,3})$"
_RULE_KEYS = {"id", "cause", "source", "priority", "generic", "vendor", "explanation", "remedy", "match"}
_MATCH_KEYS = {"codes", "smtp", "text", "unless"}


@dataclass(frozen=True)
class CodeRange:
    """One enhanced-code spec: classes, subject range and detail range (inclusive)."""

    classes: tuple[int, ...]
    subject: tuple[int, int]
    detail: tuple[int, int]
    wildcard: bool

    @classmethod
    def parse(cls, spec: str) -> CodeRange:
        m = _CODE_SPEC.match(spec)
        if not m:
            raise ValueError(f"bad enhanced code spec {spec!r} (use 5.7.26, 5.7.606-649, 5.1.*, x.4.316)")
        classes = (4, 5) if m["c"] == "x" else (int(m["c"]),)
        if m["s"] is None:
            return cls(classes, (0, 999), (0, 999), True)
        subject = (int(m["s"]), int(m["s"]))
        if m["d"] is None:
            return cls(classes, subject, (0, 999), True)
        low, high = int(m["d"]), int(m["e"] or m["d"])
        if high < low:
            raise ValueError(f"empty range in {spec!r}")
        return cls(classes, subject, (low, high), False)

    def hits(self, code: np.ndarray) -> np.ndarray:
        """Rows of an (n, 3) class/subject/detail array (-1 = no code) inside this spec."""
        return (
            np.isin(code[:, 0], self.classes)
            & (code[:, 1] >= self.subject[0]) & (code[:, 1] <= self.subject[1])
            & (code[:, 2] >= self.detail[0]) & (code[:, 2] <= self.detail[1])
        )


@dataclass(frozen=True)
class Rule:
    """One row of the rule table."""

    id: str
    cause: str
    source: str
    priority: int
    generic: bool
    vendors: frozenset[str]
    codes: tuple[CodeRange, ...]
    smtp: tuple[tuple[int, int], ...]
    text: str | None  # one case-insensitive regex (the rule's alternatives joined)
    unless: str | None  # guard: where this regex matches, the rule does not (negations, someone else's "blocked")
    explanation: str | None
    remedy: str | None

    @property
    def tier(self) -> str:
        """The tier this rule reaches (a code rule drops to "outer" when only the wrapper code matched)."""
        if self.generic or (self.text is None and not self.vendors and (not self.codes or self.codes[0].wildcard)):
            return "generic"
        if self.text is not None:
            return "text"
        return "vendor" if self.vendors else "code"

    @property
    def confidence(self) -> str:
        """``text``: rules on words; ``code``: exact codes or a known gateway's code; ``class``: class/subject
        wildcards and basic codes."""
        if self.text is not None:
            return "text"
        return "code" if self.vendors or (self.codes and not self.codes[0].wildcard) else "class"


@dataclass(frozen=True)
class CauseText:
    actor: str
    explanation: str
    remedy: str


@dataclass(frozen=True)
class RuleSet:
    """The parsed rule file: rules in file order, per-cause text and the transient text cues."""

    rules: tuple[Rule, ...]
    causes: dict[str, CauseText]
    temporary: str
    permanent: str


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and validate a rule file (default: the bundled ``analysis/reference/data/cause_rules.toml``).

    Raises ``ValueError`` naming the rule and the problem when the file breaks the format.
    """
    if path is None:
        data = tomllib.loads(files("analysis.reference").joinpath("data", "cause_rules.toml").read_text("utf-8"))
    else:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    causes = {}
    for name, entry in data.get("causes", {}).items():
        if name not in CAUSES:
            raise ValueError(f"[causes.{name}]: not a cause of the taxonomy")
        if entry.get("actor") not in ACTORS:
            raise ValueError(f"[causes.{name}]: actor must be one of {ACTORS}")
        causes[name] = CauseText(entry["actor"], entry["explanation"], entry["remedy"])
    missing = set(CAUSES) - set(causes)
    if missing:
        raise ValueError(f"[causes]: no text for {sorted(missing)}")
    rules = tuple(_parse_rule(raw) for raw in data.get("rules", []))
    ids = [rule.id for rule in rules]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate rule ids: {duplicates}")
    cues = data.get("transient", {})
    return RuleSet(rules, causes, _joined(cues.get("temporary", [])), _joined(cues.get("permanent", [])))


def _parse_rule(raw: dict) -> Rule:
    rule_id = raw.get("id", "<no id>")
    where = f"rule {rule_id!r}"
    unknown = set(raw) - _RULE_KEYS or set(raw.get("match", {})) - _MATCH_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if not raw.get("id") or not raw.get("source"):
        raise ValueError(f"{where}: id and source are required")
    if raw.get("cause") not in CAUSES or raw["cause"] == "unknown":
        raise ValueError(f"{where}: cause {raw.get('cause')!r} is not a cause of the taxonomy")
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or not -100 <= priority <= 100:
        raise ValueError(f"{where}: priority must be an integer in -100..100")
    match = raw.get("match", {})
    if not match:
        raise ValueError(f"{where}: [rules.match] needs codes, smtp or text")
    try:
        codes = tuple(CodeRange.parse(spec) for spec in match.get("codes", []))
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if len({c.wildcard for c in codes}) > 1:
        raise ValueError(f"{where}: do not mix wildcard and exact codes in one rule")
    smtp = []
    for spec in match.get("smtp", []):
        if not _SMTP_SPEC.match(str(spec)):
            raise ValueError(f"{where}: bad basic code {spec!r} (use 550, 45x, 4xx)")
        text = str(spec)
        smtp.append((int(text.replace("x", "0")), int(text.replace("x", "9"))))
    patterns = match.get("text", [])
    guards = match.get("unless", [])
    if guards and not patterns:
        raise ValueError(f"{where}: unless needs text")
    for pattern in [*patterns, *guards]:
        try:
            compiled = re.compile(pattern, re.I)
        except re.error as error:
            raise ValueError(f"{where}: bad pattern {pattern!r}: {error}") from None
        if compiled.search(""):
            raise ValueError(f"{where}: pattern {pattern!r} matches the empty string")
    return Rule(
        id=rule_id, cause=raw["cause"], source=raw["source"], priority=priority,
        generic=bool(raw.get("generic", False)), vendors=frozenset(raw.get("vendor", [])),
        codes=codes, smtp=tuple(smtp), text=_joined(patterns) if patterns else None,
        unless=_joined(guards) if guards else None, explanation=raw.get("explanation"), remedy=raw.get("remedy"),
    )


def _joined(patterns: Iterable[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


@lru_cache(maxsize=1)
def default_rules() -> RuleSet:
    """The bundled rule table, parsed once."""
    return load_rules()


def classify_replies(
    replies: Iterable[object] | pd.Series,
    *,
    vendors: Iterable[object] | pd.Series | None = None,
    rules: RuleSet | None = None,
) -> pd.DataFrame:
    """Classify each reply into a cause; one row per input, same order (a Series' index is kept).

    ``replies``: raw Detail strings (``Reason: [{LED=...}]``), LEDs, or bare SMTP replies; None, NaN, empty
    and garbage give ``unknown``. ``vendors``: the recipient gateway vendor per reply (as from
    :func:`analysis.reference.gateways.identify_gateways`); when omitted it is identified from each reply's text and
    remote host. Columns: :data:`CLASSIFY_COLUMNS`.
    """
    series = replies if isinstance(replies, pd.Series) else pd.Series(list(replies), dtype=object)
    reply_codes, reply_uniques = pd.factorize(series, use_na_sentinel=True)
    key = reply_codes.astype(np.int64) + 1  # 0 = NA reply
    vendor_uniques: Sequence[object] = ()
    if vendors is not None:
        vendor_values = np.asarray(list(vendors), dtype=object)
        if len(vendor_values) != len(series):
            raise ValueError(f"vendors has {len(vendor_values)} values for {len(series)} replies")
        vendor_codes, vendor_uniques = pd.factorize(vendor_values, use_na_sentinel=True)
        key = key * (len(vendor_uniques) + 1) + vendor_codes + 1
    pair_codes, pair_keys = pd.factorize(key)
    stride = len(vendor_uniques) + 1
    reply_index = pair_keys // stride - 1
    unique_values = np.asarray(reply_uniques, dtype=object)
    texts = [None if i < 0 else _clean_text(unique_values[i]) for i in reply_index]
    unique_vendors = None
    if vendors is not None:
        unique_vendors = [None if i < 0 else str(vendor_uniques[i]) for i in pair_keys % stride - 1]
    table = _classify_unique(texts, unique_vendors, rules or default_rules())
    out = table.take(pair_codes)
    out.index = series.index
    return out


def _clean_text(value: object) -> str:
    """A reply as valid UTF-8 text (lone surrogates and other unencodable code points replaced)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _classify_unique(texts: list[str | None], vendors: list[str | None] | None, ruleset: RuleSet) -> pd.DataFrame:
    """Classify distinct replies (None = no reply)."""
    n = len(texts)
    replies = pd.Series(texts, dtype=object)
    parsed = parse_replies(replies)
    if vendors is None:
        vendors = identify_gateways(parsed["remote_host"], replies.astype(STRING)).astype(object).tolist()
    vendor_array = np.array([v if isinstance(v, str) else "" for v in vendors], dtype=object)
    # the words rules read: the innermost remote reply when a wrapper holds one, else the whole reply
    words = parsed["remote_reply"].fillna(parsed["led"])
    led = pa.array(words.astype(object).where(words.notna(), "").tolist(), pa.large_string())
    inner = _code_array(parsed["enhanced_code"])
    outer = _code_array(parsed["outer_enhanced_code"])
    smtp = np.stack([_int_array(parsed["smtp_code"]), _int_array(parsed["outer_code"])], axis=1)

    best = np.full(n, -1, dtype=np.int64)
    winner = np.full(n, -1, dtype=np.int64)
    outer_only = np.zeros(n, dtype=bool)
    # Rules run from the best possible score down (ties in file order), in waves: a rule only looks at the rows
    # where it could still win. The regexes run in pyarrow (RE2), which releases the GIL: a wave uses every core.
    order = sorted(range(len(ruleset.rules)), key=lambda i: (-_best_score(ruleset.rules[i]), i))
    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(order), 2 * workers):
            wave = order[start:start + 2 * workers]
            open_rows = [best < _best_score(ruleset.rules[i]) for i in wave]
            hits = pool.map(lambda i, rows: _rule_hits(ruleset.rules[i], led, inner, outer, smtp, vendor_array, rows),
                            wave, open_rows)
            for index, (hit, via_outer) in zip(wave, hits, strict=True):
                _keep_better(ruleset.rules[index], index, hit, via_outer, best, winner, outer_only)

    # per winner (the last slot, taken by winner -1, is "no rule": unknown)
    outcome = [(r.cause, r.id, r.explanation, r.remedy, r.confidence) for r in ruleset.rules]
    outcome.append(("unknown", None, None, None, "none"))
    rule_ids = np.array([o[1] for o in outcome], dtype=object)[winner]
    texts_of = {c: ruleset.causes[c] for c in CAUSES}
    explanation = _categorical([o[2] or texts_of[o[0]].explanation for o in outcome], winner)
    remedy = _categorical([o[3] or texts_of[o[0]].remedy for o in outcome], winner)
    actor = _categorical([texts_of[o[0]].actor for o in outcome], winner, ACTORS)
    columns = {
        "reply": pd.array(texts, dtype=STRING),
        "cause": _categorical([o[0] for o in outcome], winner, CAUSES),
        "transient": _transient(parsed, led, ruleset),
        "smtp_code": parsed["smtp_code"].array,
        "enhanced_code": parsed["enhanced_code"].array,
        "rule": pd.array(rule_ids, dtype=STRING),
        "explanation": explanation,
        "remedy": remedy,
        "actor": actor,
        "evidence": pd.array(_evidence(ruleset.rules, winner, outer_only, led, parsed, vendor_array), dtype=STRING),
        "confidence": _categorical([o[4] for o in outcome], winner, CONFIDENCES),
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(n))


def _best_score(rule: Rule) -> int:
    """The highest score a rule can reach (a code rule can drop to "outer" on some rows, never rise)."""
    return _TIER[rule.tier] * _PRIORITY_SPAN + rule.priority


def _keep_better(rule: Rule, index: int, hit: np.ndarray, via_outer: np.ndarray, best: np.ndarray,
                 winner: np.ndarray, outer_only: np.ndarray) -> None:
    """Make rule ``index`` the winner (in place) where it hits with a better score than the best so far."""
    tier = np.full(len(hit), _TIER[rule.tier], dtype=np.int64)
    if rule.tier == "code":
        tier[via_outer] = _TIER["outer"]
    score = tier * _PRIORITY_SPAN + rule.priority
    better = hit & (score > best)
    best[better] = score[better]
    winner[better] = index
    outer_only[better] = via_outer[better]


def _categorical(labels: list[str], winner: np.ndarray, categories: Sequence[str] | None = None) -> pd.Categorical:
    """``labels[winner]`` (one label per rule, plus the "no rule" label last) as a Categorical."""
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object))
    if categories is not None:
        codes = pd.Index(categories).get_indexer(uniques)[codes]
        uniques = list(categories)
    return pd.Categorical.from_codes(codes[winner], categories=uniques)


def _int_array(values: pd.Series) -> np.ndarray:
    return values.astype("Int64").fillna(-1).to_numpy(dtype=np.int64)


def _code_array(codes: pd.Series) -> np.ndarray:
    """Enhanced codes as an (n, 3) int array of class, subject, detail; -1 where there is no code."""
    parts = pc.extract_regex(pa.array(codes.astype(object).where(codes.notna(), None), pa.string()), _ENHANCED)
    return np.stack(
        [pc.fill_null(pc.cast(pc.struct_field(parts, f), pa.int64()), -1).to_numpy() for f in ("c", "s", "d")],
        axis=1,
    ).reshape(len(codes), 3)


def _rule_hits(
    rule: Rule, led: pa.Array, inner: np.ndarray, outer: np.ndarray, smtp: np.ndarray, vendors: np.ndarray,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Of ``rows`` (a mask), the ones the rule matches, and which matched through the wrapper (outer) code only."""
    n = len(led)
    hit = rows.copy()
    via_outer = np.zeros(n, dtype=bool)
    if rule.codes:
        inner_hit = np.logical_or.reduce([c.hits(inner) for c in rule.codes])
        outer_hit = np.logical_or.reduce([c.hits(outer) for c in rule.codes])
        hit &= inner_hit | outer_hit
        via_outer = outer_hit & ~inner_hit
    if rule.smtp:
        hit &= np.logical_or.reduce([(smtp >= lo) & (smtp <= hi) for lo, hi in rule.smtp]).any(axis=1)
    if rule.vendors:
        hit &= np.isin(vendors, list(rule.vendors))
    if rule.text is not None:
        rows = np.flatnonzero(hit)  # the regex only runs where every cheaper criterion already matched
        if len(rows):
            candidates = led if len(rows) == n else led.take(pa.array(rows))  # no copy for text-only rules
            found = pc.match_substring_regex(candidates, rule.text, ignore_case=True).to_numpy(zero_copy_only=False)
            if rule.unless is not None and found.any():
                found &= ~pc.match_substring_regex(candidates, rule.unless, ignore_case=True).to_numpy(
                    zero_copy_only=False)
            hit[rows] = found
    return hit, via_outer & hit


def _evidence(
    rules: tuple[Rule, ...], winner: np.ndarray, outer_only: np.ndarray, led: pa.Array, parsed: pd.DataFrame,
    vendors: np.ndarray,
) -> np.ndarray:
    """What matched: the text span for text rules, the code for code rules, vendor and code for vendor rules."""
    evidence = np.full(len(winner), None, dtype=object)
    inner_code = parsed["enhanced_code"].astype(object).to_numpy()
    outer_code = parsed["outer_enhanced_code"].astype(object).to_numpy()
    basic = parsed["outer_code"].fillna(parsed["smtp_code"]).astype(object).to_numpy()
    for index in np.unique(winner[winner >= 0]):
        rule = rules[index]
        rows = np.flatnonzero(winner == index)
        if rule.text is not None:
            spans = pc.extract_regex(led.take(pa.array(rows)), f"(?i)(?P<m>{rule.text})").field("m")
            evidence[rows] = [s[:_EVIDENCE_CHARS] for s in spans.to_pylist()]
        elif rule.codes:
            evidence[rows] = np.where(outer_only[rows], outer_code[rows], inner_code[rows])
        else:
            evidence[rows] = [str(b) for b in basic[rows]]
        if rule.vendors:
            evidence[rows] = [f"{vendors[r]} gateway: {e}" for r, e in zip(rows, evidence[rows], strict=True)]
    return evidence


def _transient(parsed: pd.DataFrame, led: pa.Array, ruleset: RuleSet) -> pd.arrays.BooleanArray:
    """4xx -> True, 5xx -> False from the reported basic code, else the enhanced class, else text cues."""
    basic = _int_array(parsed["outer_code"].fillna(parsed["smtp_code"])) // 100
    enhanced = _int_array(
        parsed["outer_enhanced_code"].fillna(parsed["enhanced_code"]).str.slice(0, 1).astype("Int64")
    )
    digit = np.where(basic > 0, basic, enhanced)
    temporary = pc.match_substring_regex(led, ruleset.temporary, ignore_case=True).to_numpy(zero_copy_only=False)
    permanent = pc.match_substring_regex(led, ruleset.permanent, ignore_case=True).to_numpy(zero_copy_only=False)
    value = np.where(digit == 4, True, np.where(digit == 5, False, temporary & ~permanent))
    known = (digit == 4) | (digit == 5) | (temporary != permanent)
    return pd.arrays.BooleanArray(value.astype(bool), ~known)
