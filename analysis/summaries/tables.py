"""Investigation analytics on the tagged events table: per-domain delivery, queue ages, retry timelines, replies.

Every function takes the table :func:`analysis.tag` returns and answers with a DataFrame (``headline``: a dict),
computed on whole columns (groupby / bincount on integer codes; text work on unique values only). Each summary is
written once, as a per-partition step and a combine step (:class:`analysis.backends.dispatch.Summary`): on pandas
it is ``combine([step(table)])``, on Dask :func:`analysis.backends.dask.run_summary` runs the same two steps on
partitions holding whole recipient domains (rows in table order: ``_seq``), so a step may count a recipient
domain or a message+recipient whole, but a message (several recipients) only through its keys.
Conventions shared by all of them:

* A *message+recipient* ("pair") is keyed by ``trace_id`` (else ``message_id``) and ``recipient``.
* Summary exports (Get-MessageTrace, new EAC) hold one row per pair whose event stands for its status at
  export time, stamped with the Received time. When the pair also has event-level rows (Get-MessageTraceDetail,
  EAC reports, tracking logs) its summary rows only count for "first seen"; alone they stand in for the events
  (a Pending row is a deferral dated at Received, and no delivery time is known).
* The *outcome* of a pair is its latest final event: deliver/send = ``delivered``; fail/drop = ``failed``, or
  ``expired`` when the failure is a queue expiry (:func:`analysis.core.concepts.is_expiry`). With no
  final event it is ``pending`` if it was deferred, else its exported status, else ``other`` (e.g. quarantined).
* ``direction="outbound"`` (the default) keeps outbound rows only; ``None`` keeps every direction.
* Rows without a timestamp are counted but left out of everything measured in time.
* Results carry ``attrs["start"]`` and ``attrs["end"]``: the time span of the whole trace (UTC), for titles.
* Input without the tag columns raises ValueError naming them (run :func:`analysis.tag` first); empty input,
  input without deferrals or with a single event gives an empty result with the same columns.
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis.backends.dispatch import Summary, dispatch, summary
from analysis.backends.partitions import SEQ
from analysis.core.columns import map_unique, to_arrow
from analysis.core.concepts import as_utc, covering_network, is_expiry, message_key
from analysis.core.schema import CAUSES, DIRECTIONS, STRING, TAG_COLUMNS
from analysis.io.formats import BY_NAME
from analysis.reference.endpoints import Endpoints

__all__ = [
    "AGE_BUCKETS", "IMPACT_WEIGHTS", "OUTCOMES", "by_connector", "by_gateway", "deferral_rate_by_source_range",
    "deferrals_by_hour", "headline", "journey_rows", "message_journey", "message_timelines", "normalize_replies",
    "problem_counts", "queue_ages", "retry_intervals", "summarize_causes", "summarize_domains", "top_replies",
]

# qshape's default buckets: the first holds ages in [0, 5) minutes, each next one twice as long ([5, 10),
# [10, 20), ... [640, 1280)), the last has no limit (>= 1280 minutes, about 21 h). A column is named by its
# exclusive upper limit, as qshape prints it.
AGE_LIMITS_MINUTES = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
AGE_BUCKETS = (*(str(m) for m in AGE_LIMITS_MINUTES), "1280+")
OUTCOMES = ("delivered", "failed", "expired", "pending", "other")
# impact of a recipient domain (or gateway, connector): recipients who never got the mail weigh most,
# those still waiting next, those who got it late least; first-time deliveries weigh nothing
IMPACT_WEIGHTS = {"failed": 3, "pending": 2, "delivered_after_deferral": 1}
SUMMARY_FORMATS = tuple(name for name, fmt in BY_NAME.items() if fmt.layout == "summary")

REQUIRED = ("timestamp", "trace_id", "message_id", "recipient", "recipient_domain", "direction", "event",
             "status", "reply", "enhanced_code", "source_format", "cause")
OTHER_KIND, DEFER, DELIVERED, FAILED, EXPIRED = range(5)  # row kinds
PENDING, _OTHER_OUTCOME = OUTCOMES.index("pending"), OUTCOMES.index("other")
_KIND_OUTCOME = np.array([_OTHER_OUTCOME, PENDING, *map(OUTCOMES.index, ("delivered", "failed", "expired"))])
_STATUS_OUTCOME = {"delivered": 0, "failed": 1, "pending": PENDING}
_ARROW = " → "
NOT_AN_IP = "(not an IP address)"  # the source range of an exo_ip that is no IP address

# reply normalization (RE2 syntax, applied in this order, one pass per placeholder): what varies between
# otherwise equal replies
_REPLY_NOISE = (
    (r"\s*\r?\n\d{3}[ -](?:\d\.\d{1,3}\.\d{1,3} +)?|\s{2,}|[\t\r\n\f\v]", " "),  # joins lines, collapses space
    (r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<guid>"),
    (r"<?[A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}>?", "<address>"),
    (r"(?i)\b\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?: ?(?:Z|UTC|[+-]\d{2}:?\d{2}))?"
     r"|\b(?:mon|tue|wed|thu|fri|sat|sun),? \d{1,2} [a-z]{3} \d{4} \d{1,2}:\d{2}(?::\d{2})?(?: ?[+-]\d{4})?"
     r"(?: ?\([a-z]+\))?|\b\d{1,2}[./]\d{1,2}[./]\d{2,4},? \d{1,2}:\d{2}(?::\d{2})?(?: ?[ap]m)?"
     r"|\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b", "<time>"),
    (r"(?i)\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.prod\.(?:protection\.)?outlook\.com\b", "<exo-server>"),
    (r"(?i)\b[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}\b|(?:\b[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?::"
     r"(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}\b)?|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b", "<ip>"),
    (r"\S+ - gsmtp", "<id> - gsmtp"),
    (r"\[\d+\]", "[<n>]"),
    (r"(?i)\b\d{6,}\b|\b[0-9a-f]{8,}\b|\b(?:[a-z]+[0-9]+|[0-9]+[a-z]+)[a-z0-9]{8,}\b", "<id>"),
)


# ---------------------------------------------------------------- preparation shared by every function

@dataclass
class Trace:
    """The selected event-level rows (positions into the caller's table), their pair codes and row kinds.

    Columns are read from the caller's table only when a function needs them, as integer codes or nanoseconds
    wherever possible, so no function copies more than it reads.
    """

    source: pd.DataFrame  # the caller's tagged table, untouched
    positions: np.ndarray  # positions in ``source`` of the selected rows, ascending
    pair: np.ndarray  # pair code per selected row (0 .. n_pairs-1)
    summary: np.ndarray  # True: a summary-export row (stamped with Received, not with the event's time)
    n_pairs: int
    first_row: np.ndarray  # per pair, its first selected row
    pair_message: np.ndarray  # message code per pair (pairs without a message id get their own code)
    first_seen: np.ndarray  # per pair, ns, over every row including summary rows
    start: pd.Timestamp  # span of the whole trace (NaT when nothing is dated)
    end: pd.Timestamp
    every: np.ndarray  # positions in ``source`` of every row of the direction (summary rows passed over too)
    every_pair: np.ndarray  # their pair codes (numbered in order of first appearance)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> np.ndarray:
        """DEFER / DELIVERED / FAILED / EXPIRED / OTHER_KIND per selected row."""
        if "kind" not in self._cache:
            self._cache["kind"] = _kinds(self)
        return self._cache["kind"]

    def ns(self) -> np.ndarray:
        """Timestamps of the selected rows as ns since the epoch (NaT: the smallest int64)."""
        if "ns" not in self._cache:
            self._cache["ns"] = _ns(self.source["timestamp"])[self.positions]
        return self._cache["ns"]

    def codes(self, name: str) -> tuple[np.ndarray, pd.Index]:
        """Codes (-1: NA) of column ``name`` on the selected rows, and their labels."""
        if name not in self._cache:
            codes, labels = _codes(self.source[name])
            self._cache[name] = (codes[self.positions], labels)
        return self._cache[name]

    def causes(self) -> np.ndarray:
        """Per selected row, the index of its cause in CAUSES (-1: none)."""
        if "causes" not in self._cache:
            codes, labels = self.codes("cause")
            self._cache["causes"] = _cause_positions(labels)[codes]
        return self._cache["causes"]

    def notna(self, name: str) -> np.ndarray:
        return self.source[name].notna().to_numpy(dtype=bool)[self.positions]

    def at(self, rows: np.ndarray, *names: str) -> pd.DataFrame:
        """Columns ``names`` of the selected rows numbered ``rows`` (RangeIndex)."""
        return pd.DataFrame({name: _take(self.source[name], self.positions[rows]) for name in names})

    def per_pair(self, name: str) -> pd.Series:
        """Column ``name`` of each pair's first row (a pair has one recipient, hence one domain)."""
        return _take(self.source[name], self.positions[self.first_row])

    def stamp(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame.attrs.update(start=or_none(self.start), end=or_none(self.end))
        return frame

    def pair_order(self) -> np.ndarray:
        """Per pair, where its first row lies in the whole table: its ``_seq`` (the table order of a partition,
        :data:`analysis.backends.partitions.SEQ`), else its position."""
        pair = self.every_pair
        first = np.flatnonzero(np.r_[True, pair[1:] > np.maximum.accumulate(pair)[:-1]]) if len(pair) else pair
        rows = self.every[first]
        return self.source[SEQ].to_numpy()[rows] if SEQ in self.source else rows

    def message_keys(self) -> pd.Series:
        """Per row of ``source``, its message (:func:`analysis.core.concepts.message_key`)."""
        if "message_keys" not in self._cache:
            self._cache["message_keys"] = message_key(self.source["trace_id"], self.source["message_id"])
        return self._cache["message_keys"]

    def messages(self, pairs: np.ndarray) -> np.ndarray:
        """The message of each of ``pairs`` as text that names it in every partition alike: its message key, else
        "p" + :meth:`pair_order` (a message of its own)."""
        key = _take(self.message_keys(), self.positions[self.first_row[pairs]]).to_numpy(dtype=object,
                                                                                         na_value=None)
        unnamed = np.flatnonzero(pd.isna(key))
        if len(unnamed):
            key[unnamed] = ("p" + pd.Series(self.pair_order()[pairs[unnamed]]).astype(STRING)).to_numpy(dtype=object)
        return key


def _take(series: pd.Series, positions: np.ndarray) -> pd.Series:
    if len(positions) == len(series) and (positions == np.arange(len(series))).all():  # every row, in order
        return series.reset_index(drop=True)
    return series.iloc[positions].reset_index(drop=True)


def check_tagged(tagged: Any, needed: tuple[str, ...]) -> None:
    if not isinstance(tagged, pd.DataFrame):
        raise TypeError(f"expected the tagged events DataFrame, got {type(tagged).__name__}")
    missing = [c for c in dict.fromkeys((*REQUIRED, *needed)) if c not in tagged.columns]
    if not missing:
        return
    tags = [c for c in missing if c in TAG_COLUMNS]
    text = f"the events table lacks column(s) {', '.join(missing)}"
    if tags:
        text += f"; {', '.join(tags)} come from tagging: run analysis.tag(events) first"
    if len(tags) < len(missing):
        text += "; the other columns come from analysis.load_trace()"
    raise ValueError(text)


def check_input(frame: Any, *, needed: tuple[str, ...] = (), direction: str | None = "outbound",
                sort: str | None = None, freq: str | None = None, by: str | None = None, **_: Any) -> None:
    """What every summary checks before anything is computed (on a Dask DataFrame: on its empty ``_meta``): the
    columns it reads (:func:`check_tagged`) and its options ``direction``, ``sort``, ``freq``, ``by``."""
    if freq is not None and pd.Timedelta(freq) <= pd.Timedelta(0):
        raise ValueError(f"freq {freq!r}: expected a positive period such as '1h' or '1D'")
    if by is not None and by not in ("range", "published"):
        raise ValueError(f"by {by!r}: expected 'range' or 'published'")
    check_tagged(frame, needed)
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: expected one of {', '.join(DIRECTIONS)} or None")
    if sort is not None and sort not in SORTS:
        raise ValueError(f"sort {sort!r}: expected one of {', '.join(SORTS)}")


def _span(parts: list[Any]) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The whole trace's start and end from the ``attrs`` of every partition's result."""
    starts = [p.attrs["start"] for p in parts if p.attrs.get("start") is not None]
    ends = [p.attrs["end"] for p in parts if p.attrs.get("end") is not None]
    return (min(starts) if starts else None), (max(ends) if ends else None)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The partitions' frames one after the other (a single one as it is: pandas would copy it)."""
    return parts[0].reset_index(drop=True) if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _stamped(frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    frame.attrs.update(start=start, end=end)
    return frame


def _whole_span(start: pd.Timestamp | None, end: pd.Timestamp | None, options: dict[str, Any]) -> dict[str, Any]:
    """For a summary whose steps see only some rows of the trace (regrouped): the trace's span, to stamp."""
    return {**options, "span": (start, end)}


def prepare(tagged: pd.DataFrame, direction: str | None, needed: tuple[str, ...] = ()) -> Trace:
    check_tagged(tagged, needed)
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: expected one of {', '.join(DIRECTIONS)} or None")
    ns = _ns(tagged["timestamp"])
    dated = ns[ns != NAT]
    start, end = (_stamp(dated.min()), _stamp(dated.max())) if len(dated) else (pd.NaT, pd.NaT)
    chosen = np.arange(len(tagged)) if direction is None else np.flatnonzero(
        tagged["direction"].isin([direction]).to_numpy(dtype=bool))
    message = _codes(tagged["trace_id"])[0][chosen]
    keys = None
    if (message < 0).any():  # rows without a trace id: the message key decides (concepts.message_key)
        keys = message_key(tagged["trace_id"], tagged["message_id"])
        message = pd.factorize(_take(keys, chosen))[0]
    recipient = _codes(tagged["recipient"])[0][chosen]
    pair = pd.factorize((message + 1) * (int(recipient.max(initial=0)) + 2) + (recipient + 1))[0]
    n_pairs = int(pair.max()) + 1 if len(pair) else 0
    first_seen = _group_min(pair, ns[chosen], n_pairs)
    pair_message = np.zeros(n_pairs, dtype=np.int64)
    pair_message[pair] = np.where(message < 0, 2 * len(tagged) + pair, message)  # equal within a pair
    summary = _take(tagged["source_format"], chosen).isin(SUMMARY_FORMATS).to_numpy(dtype=bool)
    detailed = np.bincount(pair[~summary], minlength=n_pairs) > 0
    keep = ~summary | ~detailed[pair]
    kept = pair[keep]
    first_row = np.full(n_pairs, len(kept), dtype=np.int64)
    np.minimum.at(first_row, kept, np.arange(len(kept)))
    return Trace(tagged, chosen[keep], kept, summary[keep], n_pairs, first_row, pair_message, first_seen, start, end,
                 every=chosen, every_pair=pair, _cache={} if keys is None else {"message_keys": keys})


def _kinds(t: Trace) -> np.ndarray:
    codes, labels = t.codes("event")
    index = {name: i for i, name in enumerate(labels)}
    lookup = np.full(len(labels) + 1, OTHER_KIND, dtype=np.int8)  # the extra slot: NA (code -1)
    for names, kind in ((("defer",), DEFER), (("deliver", "send"), DELIVERED), (("fail", "drop"), FAILED)):
        lookup[[index[n] for n in names if n in index]] = kind
    kind = lookup[codes]
    failed = np.flatnonzero(kind == FAILED)
    if len(failed):
        sub = t.at(failed, "event", "enhanced_code", "reply")
        kind[failed[is_expiry(sub["event"], sub["enhanced_code"], sub["reply"])]] = EXPIRED
    return kind


# ---------------------------------------------------------------- small whole-column helpers

NAT = np.iinfo(np.int64).min
NEVER = np.iinfo(np.int64).max
# factorized Arrow-backed columns: id(arrow array) -> (weak reference to it, codes, labels), oldest first
_FACTORIZED: dict[int, tuple[weakref.ref, np.ndarray, pd.Index]] = {}
_FACTORIZED_KEEP = 8
_FACTORIZED_LOCK = threading.RLock()


def or_none(value: pd.Timestamp) -> pd.Timestamp | None:
    return None if pd.isna(value) else value


def _ns(stamps: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch (NaT: the smallest int64, so undated rows sort first)."""
    return stamps.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view(np.int64)


def _stamp(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


def stamps(ns: np.ndarray) -> pd.Series:
    """UTC timestamps from ns since the epoch (the smallest int64: NaT)."""
    return pd.Series(pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]")).tz_localize("UTC"))


def _minutes(ns: np.ndarray) -> np.ndarray:
    """A duration in ns as minutes (NaN where either end was NaT, marked by a negative value)."""
    return np.where(ns >= 0, ns / 60e9, np.nan)


def _elapsed(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """``later - earlier`` in ns, -1 where either is NaT."""
    known = (later != NAT) & (earlier != NAT)
    return np.where(known, later - np.where(known, earlier, 0), -1)


def _group_min(groups: np.ndarray, ns: np.ndarray, n_groups: int) -> np.ndarray:
    """Earliest dated ns per group (NaT when none)."""
    out = np.full(n_groups, NEVER, dtype=np.int64)
    np.minimum.at(out, groups, np.where(ns == NAT, NEVER, ns))
    out[out == NEVER] = NAT
    return out


def _group_max(groups: np.ndarray, ns: np.ndarray, n_groups: int) -> np.ndarray:
    """Latest dated ns per group (NaT when none)."""
    out = np.full(n_groups, NAT, dtype=np.int64)
    np.maximum.at(out, groups, ns)
    return out


def _order(groups: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """The permutation sorting rows by group, then time (undated first), then input order; cheap when the
    rows are already in that order or in time order."""
    if len(groups) < 2:
        return np.arange(len(groups))
    later_group = groups[1:] > groups[:-1]
    if (later_group | ((groups[1:] == groups[:-1]) & (ns[1:] >= ns[:-1]))).all():
        return np.arange(len(groups))
    if (ns[1:] >= ns[:-1]).all():
        return np.argsort(groups, kind="stable")
    return np.lexsort((ns, groups))


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 for NA) and their labels: a categorical's categories, else the values in order of first
    appearance. An Arrow-backed column is factorized once while its (immutable) Arrow array lives: the result is
    cached under the array's identity, checked through a weak reference, and its codes are read-only."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(dtype=np.int64), pd.Index(values.cat.categories)
    dtype = values.dtype
    arrow = values.array.__arrow_array__() if isinstance(dtype, pd.ArrowDtype) or (
        isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow") else None
    with _FACTORIZED_LOCK:
        hit = _FACTORIZED.get(id(arrow)) if arrow is not None else None
    if hit is not None and hit[0]() is arrow:
        return hit[1], hit[2]
    codes, uniques = pd.factorize(values)
    codes = codes.astype(np.int64)
    codes.flags.writeable = False
    if arrow is not None:
        key = id(arrow)

        def forget(ref: weakref.ref, key: int = key) -> None:
            with _FACTORIZED_LOCK:
                if _FACTORIZED.get(key, (None,))[0] is ref:
                    del _FACTORIZED[key]
        with _FACTORIZED_LOCK:
            _FACTORIZED[key] = (weakref.ref(arrow, forget), codes, pd.Index(uniques))
            while len(_FACTORIZED) > _FACTORIZED_KEEP:
                _FACTORIZED.pop(next(iter(_FACTORIZED)), None)
    return codes, pd.Index(uniques)


def _label(codes: np.ndarray, labels: pd.Index | tuple) -> np.ndarray:
    """The label of each code (None for -1)."""
    out = np.full(len(codes), None, dtype=object)
    known = codes >= 0
    out[known] = np.asarray(labels, dtype=object)[codes[known]]
    return out


def with_na_label(codes: np.ndarray, labels: pd.Index, na_label: str) -> tuple[np.ndarray, pd.Index]:
    """Codes where NA (-1) becomes one more label, ``na_label``."""
    if not (codes < 0).any():
        return codes, labels
    return np.where(codes < 0, len(labels), codes), pd.Index([*map(str, labels), na_label], dtype=object)


def _cause_positions(labels: pd.Index) -> np.ndarray:
    """For codes of ``labels`` (and -1 last): their index in CAUSES; a label outside the taxonomy is unknown."""
    known = [CAUSES.index(c) if c in CAUSES else CAUSES.index("unknown") for c in labels]
    return np.array([*known, -1], dtype=np.int64)


def cause_categorical(codes: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=CAUSES)


def mode_per_group(groups: np.ndarray, codes: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent code per group (ties: the lower code; -1 when none) and how often it occurs."""
    mode, count = np.full(n_groups, -1, dtype=np.int64), np.zeros(n_groups, dtype=np.int64)
    ok = (groups >= 0) & (codes >= 0)
    if not ok.any():
        return mode, count
    width = int(codes[ok].max()) + 1
    counts = pd.Series(groups[ok] * width + codes[ok]).value_counts(sort=False)
    key, n = counts.index.to_numpy(), counts.to_numpy()
    group, code = key // width, key % width
    order = np.lexsort((code, -n, group))
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    mode[group[first]], count[group[first]] = code[first], n[first]
    return mode, count


def distinct_pairs(groups: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (group, code) combinations with a code (>= 0), in order of first appearance."""
    ok = codes >= 0
    width = int(codes[ok].max()) + 1 if ok.any() else 1
    keys = pd.unique(groups[ok] * width + codes[ok])
    return keys // width, keys % width


def _nunique(groups: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct codes (>= 0) per group."""
    return np.bincount(distinct_pairs(groups, codes)[0], minlength=n_groups)


def _join_in_order(groups: np.ndarray, codes: np.ndarray, labels: Any, n_groups: int, sep: str) -> pd.Series:
    """Per group, the labels of its distinct codes in the order the rows come, joined with ``sep`` (NA: none)."""
    group, code = distinct_pairs(groups, codes)
    if (group[1:] < group[:-1]).any():
        keep = np.argsort(group, kind="stable")  # groups together, each in order of first appearance
        group, code = group[keep], code[keep]
    text = _arrow_strings(labels).take(pa.array(code, type=pa.int64()))
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.zeros(0, dtype=np.int64)
    offsets = pa.array(np.r_[starts, len(group)], type=pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, text), pa.scalar(sep, type=text.type))
    slot = np.full(n_groups, -1, dtype=np.int64)
    slot[group[starts]] = np.arange(len(starts))
    return pd.Series(pd.array(joined.take(pa.array(slot, mask=slot < 0)), dtype=STRING))


def _arrow_strings(labels: Any) -> pa.Array:
    """Labels (an Index, a sequence) as an Arrow string array, without copying Arrow-backed ones."""
    if isinstance(labels, pd.Index) and isinstance(labels.dtype, pd.StringDtype | pd.ArrowDtype):
        arrow = labels.array.__arrow_array__()
        return arrow.combine_chunks() if isinstance(arrow, pa.ChunkedArray) else arrow
    return pa.array(np.asarray(labels, dtype=object), type=pa.string())


# ---------------------------------------------------------------- per message+recipient

@dataclass
class Pairs:
    """Per pair: outcome (index in OUTCOMES), deferrals, and times in ns (NaT: the smallest int64)."""

    outcome: np.ndarray
    deferrals: np.ndarray
    first_seen: np.ndarray
    first_deferral: np.ndarray
    last_deferral: np.ndarray
    outcome_at: np.ndarray
    to_outcome: np.ndarray  # ns from first seen to outcome, -1 when unknown


def pair_outcomes(t: Trace) -> Pairs:
    n, pair, kind, ns = t.n_pairs, t.pair, t.kind, t.ns()
    defer = kind == DEFER
    status_codes, status_labels = _codes(t.per_pair("status"))
    by_status = np.array([_STATUS_OUTCOME.get(str(s), _OTHER_OUTCOME) for s in status_labels] + [_OTHER_OUTCOME])
    outcome = by_status[status_codes]
    deferrals = np.bincount(pair[defer], minlength=n)
    outcome[deferrals > 0] = PENDING
    # each pair's latest final event (undated ones count as earliest; ties: the last in the input)
    final = np.flatnonzero(kind >= DELIVERED)
    latest_time = _group_max(pair[final], ns[final], n)
    candidates = final[ns[final] == latest_time[pair[final]]]
    latest = np.full(n, -1, dtype=np.int64)
    np.maximum.at(latest, pair[candidates], candidates)
    ended = latest >= 0
    outcome[ended] = _KIND_OUTCOME[kind[latest[ended]]]
    outcome_at = np.full(n, NAT, dtype=np.int64)
    rows = latest[ended]
    outcome_at[ended] = np.where(t.summary[rows], NAT, ns[rows])
    return Pairs(outcome, deferrals, t.first_seen, _group_min(pair[defer], ns[defer], n),
                  _group_max(pair[defer], ns[defer], n), outcome_at, _elapsed(outcome_at, t.first_seen))


_TIMELINE_COLUMNS = ("sender", "subject", "remote_host", "remote_ip", "exo_host", "exo_ip")


def _timelines_step(tagged: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    """A partition's message+recipients, with their first row's place in the table (``_first_seq``) to sort by."""
    t = prepare(tagged, direction, _TIMELINE_COLUMNS)
    pairs = pair_outcomes(t)
    n = t.n_pairs
    order = _order(t.pair, t.ns())
    pair, kind, ns, cause = t.pair[order], t.kind[order], t.ns()[order], t.causes()[order]
    attempt = np.isin(kind, (DEFER, DELIVERED, FAILED))
    dated = attempt & ~t.summary[order] & (ns != NAT)
    n_dated = np.bincount(pair[dated], minlength=n)
    span = _elapsed(_group_max(pair[dated], ns[dated], n), _group_min(pair[dated], ns[dated], n))
    refused = np.isin(kind, (DEFER, FAILED, EXPIRED))
    last_refusal = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_refusal, pair[refused], np.flatnonzero(refused))
    has_refusal = last_refusal >= 0
    last_reply = pd.Series(pd.NA, index=range(n), dtype=STRING)
    last_reply[has_refusal] = t.at(order[last_refusal[has_refusal]], "reply")["reply"].astype(STRING).to_numpy()
    trace_id, message_id = t.per_pair("trace_id").astype(STRING), t.per_pair("message_id").astype(STRING)

    def in_order(column: str) -> pd.Series:
        codes, labels = t.codes(column)
        return _join_in_order(pair, codes[order], labels, n, ", ")

    out = pd.DataFrame({
        "message": _take(t.message_keys(), t.positions[t.first_row]).astype(STRING),
        "trace_id": trace_id,
        "message_id": message_id,
        "recipient": t.per_pair("recipient").astype(STRING),
        "recipient_domain": t.per_pair("recipient_domain").astype(STRING),
        "sender": t.per_pair("sender").astype(STRING),
        "subject": t.per_pair("subject").astype(STRING),
        "first_seen": stamps(pairs.first_seen),
        "first_deferral": stamps(pairs.first_deferral),
        "deferrals": pairs.deferrals,
        "attempts": np.bincount(pair[attempt], minlength=n),
        "mean_retry_minutes": _minutes(span) / np.where(n_dated > 1, n_dated - 1, np.nan),
        "outcome": pd.Categorical.from_codes(pairs.outcome, categories=OUTCOMES),
        "outcome_at": stamps(pairs.outcome_at),
        "to_outcome_minutes": _minutes(pairs.to_outcome),
        "causes": _join_in_order(pair[refused], cause[refused], CAUSES, n, _ARROW),
        "final_cause": cause_categorical(np.where(has_refusal, cause[np.maximum(last_refusal, 0)], -1)),
        "last_reply": last_reply,
        "remote_hosts": in_order("remote_host"),
        "remote_ips": in_order("remote_ip"),
        "exo_hosts": in_order("exo_host"),
        "exo_ips": in_order("exo_ip"),
        "_first_seq": t.pair_order(),
    })
    return t.stamp(out)


def _timelines_combine(parts: list[pd.DataFrame], direction: str | None) -> pd.DataFrame:
    """Every partition's message+recipients, by first seen, recipient, then their first row in the table."""
    out = _concat(parts)
    seen = _ns(out["first_seen"])
    order = np.lexsort((out["_first_seq"].to_numpy(), out["recipient"].to_numpy(dtype=object, na_value=""),
                        np.where(seen == NAT, NEVER, seen)))
    return _stamped(out.iloc[order].drop(columns="_first_seq").reset_index(drop=True), *_span(parts))


@summary(Summary(_timelines_step, _timelines_combine, functools.partial(check_input, needed=_TIMELINE_COLUMNS),
                 (*REQUIRED, *_TIMELINE_COLUMNS)))
def message_timelines(tagged: pd.DataFrame, *, direction: str | None = "outbound") -> pd.DataFrame:
    """One row per message+recipient: its retries, what it ran into and how it ended.

    Columns: message (trace id, else message id), trace_id, message_id, recipient, recipient_domain, sender,
    subject, first_seen, first_deferral, deferrals, attempts (deferrals plus the final delivery or rejection;
    an expiry is no attempt), mean_retry_minutes (mean gap between dated attempts), outcome (see OUTCOMES),
    outcome_at, to_outcome_minutes (first seen to outcome), causes (distinct causes of its deferrals and
    failures, in order), final_cause, last_reply, remote_hosts, remote_ips (recipient side, in order tried),
    exo_hosts, exo_ips (Exchange Online servers and source IPs used). Identity columns come from the first row
    of each message+recipient. Sorted by first seen.
    """


def _retries_step(tagged: pd.DataFrame, direction: str | None) -> pd.DataFrame:
    """A partition's retries, with their message+recipient's first row in the table (``_first_seq``)."""
    t = prepare(tagged, direction)
    ns = t.ns()
    dated = np.flatnonzero(np.isin(t.kind, (DEFER, DELIVERED, FAILED)) & ~t.summary & (ns != NAT))
    dated = dated[_order(t.pair[dated], ns[dated])]
    pair, stamp, cause = t.pair[dated], ns[dated], t.causes()[dated]
    retry = np.flatnonzero(pair[1:] == pair[:-1]) + 1
    rows = t.at(dated[retry], "recipient", "recipient_domain")
    out = pd.DataFrame({
        "message": _take(t.message_keys(), t.positions[dated[retry]]).astype(STRING),
        "recipient": rows["recipient"].astype(STRING),
        "recipient_domain": rows["recipient_domain"].astype(STRING),
        "at": stamps(stamp[retry]),
        "interval_minutes": (stamp[retry] - stamp[retry - 1]) / 60e9,
        "cause": cause_categorical(cause[retry - 1]),
        "_first_seq": t.pair_order()[pair[retry]],
    })
    return t.stamp(out)


def _retries_combine(parts: list[pd.DataFrame], direction: str | None) -> pd.DataFrame:
    """Every partition's retries, by their message+recipient's first row in the table (then time, as they come)."""
    out = _concat(parts)
    first = out["_first_seq"].to_numpy()
    if (first[1:] < first[:-1]).any():
        out = out.iloc[np.argsort(first, kind="stable")]
    return _stamped(out.drop(columns="_first_seq").reset_index(drop=True), *_span(parts))


@summary(Summary(_retries_step, _retries_combine, check_input, REQUIRED))
def retry_intervals(tagged: pd.DataFrame, *, direction: str | None = "outbound") -> pd.DataFrame:
    """One row per retry: the gap between two consecutive dated delivery attempts of a message+recipient.

    Columns: message, recipient, recipient_domain, at (the retry), interval_minutes, cause (of the attempt that
    was retried, i.e. the deferral before the gap). Sorted by message+recipient, then time.
    """


@dispatch
def message_journey(tagged: pd.DataFrame, trace_id_or_message_id: str, recipient: str | None = None) -> pd.DataFrame:
    """Every event of one message (any direction), oldest first, with ``elapsed_minutes`` since it was first seen.

    ``trace_id_or_message_id``: a MessageTraceId / network message id (any case) or a Message-ID (with or without
    angle brackets); ``recipient`` narrows it to one recipient. Summary-export rows are left out when the message
    has event-level rows. No such message: an empty table with the same columns. ``attrs``: message, start, end.
    """
    check_tagged(tagged, ())
    wanted = str(trace_id_or_message_id).strip()
    t = prepare(journey_rows(tagged, wanted, recipient), None)
    ns = t.ns()
    order = np.lexsort((t.per_pair("recipient").astype(object).fillna("").to_numpy()[t.pair].astype(str), ns))
    rows = t.at(order, *tagged.columns)
    first = ns[ns != NAT].min() if (ns != NAT).any() else NAT
    rows["elapsed_minutes"] = _minutes(_elapsed(ns[order], np.full(len(order), first)))
    rows.attrs.update(message=wanted, start=or_none(rows["timestamp"].min()), end=or_none(rows["timestamp"].max()))
    return rows


def journey_rows(tagged: pd.DataFrame, trace_id_or_message_id: str, recipient: str | None = None) -> pd.DataFrame:
    """The rows of one message (and recipient) as :func:`message_journey` finds them, in table order."""
    wanted = str(trace_id_or_message_id).strip()
    found = tagged["trace_id"].str.lower().eq(wanted.lower()).fillna(False)
    found |= tagged["message_id"].str.strip("<>").eq(wanted.strip("<>")).fillna(False)
    if recipient is not None:
        found &= tagged["recipient"].str.lower().eq(recipient.strip().lower()).fillna(False)
    return tagged[found.to_numpy(dtype=bool)]


# ---------------------------------------------------------------- per domain, gateway, connector

SORTS = {
    "impact": (["impact", "recipients", "deferrals"], False),
    "deferrals": (["deferrals", "impact"], False),
    "failed": (["failed", "impact"], False),
    "pending": (["pending", "impact"], False),
    "recipients": (["recipients", "impact"], False),
    "max_delay": (["max_delay_minutes", "impact"], False),
    "first_deferral": (["first_deferral"], True),
    "name": ([], True),
}


def _dominant_cause(t: Trace, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group of pairs: the cause that hit the most of its deferred or failed pairs, and the share of those
    pairs it hit (a pair hit by two causes counts for both)."""
    hit = np.isin(t.kind, (DEFER, FAILED, EXPIRED))
    pair, cause = distinct_pairs(t.pair[hit], t.causes()[hit])
    mode, count = mode_per_group(group[pair], cause, n_groups)
    hit_pairs = np.bincount(group[np.unique(pair)], minlength=n_groups)
    return mode, np.where(hit_pairs > 0, count / np.maximum(hit_pairs, 1), np.nan)


def group_summary(t: Trace, pairs: Pairs, group: np.ndarray, labels: pd.Index, name: str,
                   sort: str) -> pd.DataFrame:
    """Per group of pairs (``group``: a code per pair): recipients by outcome, deferrals, delays, dominant cause."""
    if sort not in SORTS:
        raise ValueError(f"sort {sort!r}: expected one of {', '.join(SORTS)}")
    k = len(labels)
    outcome, deferred = pairs.outcome, pairs.deferrals > 0
    delivered = outcome == OUTCOMES.index("delivered")

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(group[mask], minlength=k)

    timed = delivered & (pairs.to_outcome >= 0)
    delays = pd.Series(pairs.to_outcome[timed] / 60e9).groupby(group[timed]).agg(["mean", "median", "max"])
    cause, share = _dominant_cause(t, group, k)
    defer = t.kind == DEFER
    defer_group, defer_ns = group[t.pair[defer]], t.ns()[defer]
    failed = count(np.isin(outcome, (OUTCOMES.index("failed"), OUTCOMES.index("expired"))))
    pending = count(outcome == PENDING)
    late = count(delivered & deferred)
    out = pd.DataFrame({
        name: pd.array(np.asarray(labels, dtype=object), dtype=STRING),
        "impact": IMPACT_WEIGHTS["failed"] * failed + IMPACT_WEIGHTS["pending"] * pending
        + IMPACT_WEIGHTS["delivered_after_deferral"] * late,
        "messages": _nunique(group, t.pair_message, k),
        "recipients": np.bincount(group, minlength=k),
        "delivered_first_time": count(delivered & ~deferred),
        "delivered_after_deferral": late,
        "pending": pending,
        "failed": failed,
        "expired": count(outcome == OUTCOMES.index("expired")),
        "other": count(outcome == _OTHER_OUTCOME),
        "deferrals": np.bincount(group, weights=pairs.deferrals, minlength=k).astype(np.int64),
        "mean_delay_minutes": delays["mean"].reindex(range(k)).to_numpy(),
        "median_delay_minutes": delays["median"].reindex(range(k)).to_numpy(),
        "max_delay_minutes": delays["max"].reindex(range(k)).to_numpy(),
        "dominant_cause": cause_categorical(cause),
        "dominant_cause_share": share,
        "first_deferral": stamps(_group_min(defer_group, defer_ns, k)),
        "last_deferral": stamps(_group_max(defer_group, defer_ns, k)),
    })
    keys, ascending = SORTS[sort]
    out = out[out["recipients"].to_numpy() > 0]
    return out.sort_values([*keys, name], ascending=[ascending] * len(keys) + [True], na_position="last",
                           kind="stable", ignore_index=True)


def pair_domains(t: Trace) -> tuple[np.ndarray, pd.Index]:
    """Per pair, its recipient domain's code, and the labels (a missing domain is "(no domain)")."""
    codes, labels = t.codes("recipient_domain")
    return with_na_label(codes[t.first_row], labels, "(no domain)")


def _domains_step(tagged: pd.DataFrame, sort: str, direction: str | None) -> pd.DataFrame:
    t = prepare(tagged, direction, ("gateway",))
    group, labels = pair_domains(t)
    out = group_summary(t, pair_outcomes(t), group, labels, "recipient_domain", sort)
    codes, gateways = t.codes("gateway")
    gateway = pd.Series(_label(mode_per_group(group[t.pair], codes, len(labels))[0], gateways),
                        index=pd.Index(labels, dtype=object))
    out["gateway"] = pd.array(gateway.reindex(out["recipient_domain"].to_numpy(dtype=object)).to_numpy(),
                              dtype=STRING)
    return t.stamp(out)


def _sorted_groups(parts: list[pd.DataFrame], name: str, sort: str) -> pd.DataFrame:
    """Every partition's groups (none in two partitions) in the order of ``sort`` (:data:`SORTS`), ties by name."""
    keys, ascending = SORTS[sort]
    return _concat(parts).sort_values(
        [*keys, name], ascending=[ascending] * len(keys) + [True], na_position="last", kind="stable",
        ignore_index=True)


def _domains_combine(parts: list[pd.DataFrame], sort: str, direction: str | None) -> pd.DataFrame:
    return _stamped(_sorted_groups(parts, "recipient_domain", sort), *_span(parts))


@summary(Summary(_domains_step, _domains_combine, functools.partial(check_input, needed=("gateway",)),
                 (*REQUIRED, "gateway")))
def summarize_domains(tagged: pd.DataFrame, *, sort: str = "impact", direction: str | None = "outbound"
                      ) -> pd.DataFrame:
    """One row per recipient domain: delivery outcomes, deferrals, delays, dominant cause and gateway.

    Columns: recipient_domain, impact, messages, recipients (message+recipient pairs), delivered_first_time,
    delivered_after_deferral, pending, failed (expired included), expired, other (no delivery seen),
    deferrals (deferral events), mean/median/max_delay_minutes (first seen to delivered, over delivered
    recipients with a known delivery time), dominant_cause (the cause that hit most of the domain's deferred or
    failed recipients) and dominant_cause_share (the share of those it hit), first_deferral, last_deferral,
    gateway (most frequent recipient gateway).

    ``impact`` = 3 x failed + 2 x pending + 1 x delivered after deferral (:data:`IMPACT_WEIGHTS`): who never got
    the mail weighs most, who still waits next, who got it late least. ``sort``: impact (default; ties by
    recipients, deferrals), deferrals, failed, pending, recipients, max_delay, first_deferral or name.
    """


def _pair_groups(t: Trace, column: str, na_label: str, by_domain: bool) -> tuple[np.ndarray, pd.Index]:
    """Per pair, its group: its most frequent ``column`` (``na_label`` when none), and the groups' labels. With
    ``by_domain``, a pair with a recipient domain takes its domain's most frequent value instead (summarize_domains'
    column of that name), so a group's rows add up to the domain rows behind it."""
    codes, labels = t.codes(column)
    group = mode_per_group(t.pair, codes, t.n_pairs)[0]
    if by_domain:
        domain, domains = pair_domains(t)
        of_domain = mode_per_group(domain[t.pair], codes, len(domains))[0]
        group = np.where(t.per_pair("recipient_domain").notna().to_numpy(dtype=bool), of_domain[domain], group)
    return with_na_label(group, labels, na_label)


def _breakdown_key(tagged: pd.DataFrame, column: str, na_label: str, by_domain: bool, direction: str | None,
                   **_: Any) -> pd.Series:
    """Each row's group, its message+recipient's (:func:`_pair_groups`); rows of another direction: NA. (Summary
    rows the summaries pass over go with their message+recipient: they count for its first time.)"""
    t = prepare(tagged, direction, (column,))
    group, labels = _pair_groups(t, column, na_label, by_domain)
    out = np.full(len(tagged), None, dtype=object)
    out[t.every] = np.asarray(labels, dtype=object)[group[t.every_pair]]
    return pd.Series(out, index=tagged.index)


def _breakdown_step(tagged: pd.DataFrame, groups: pd.Series | None, column: str, na_label: str, by_domain: bool,
                    sort: str, direction: str | None, **_: Any) -> pd.DataFrame:
    """The domain summary per group, on whole groups: ``groups`` from :func:`_breakdown_key` (None: found here)."""
    t = prepare(tagged, direction, (column,))
    if groups is None:
        group, labels = _pair_groups(t, column, na_label, by_domain)
    else:
        group, labels = pd.factorize(groups.to_numpy(dtype=object)[t.positions[t.first_row]])
    out = group_summary(t, pair_outcomes(t), group, pd.Index(labels, dtype=object), column, sort)
    domains = pd.Series(_nunique(group, pair_domains(t)[0], len(labels)), index=pd.Index(labels, dtype=object))
    out.insert(2, "domains", domains.reindex(out[column].to_numpy(dtype=object)).to_numpy())
    return out


def _breakdown_combine(parts: list[pd.DataFrame], column: str, span: tuple[Any, Any], sort: str, **_: Any
                       ) -> pd.DataFrame:
    return _stamped(_sorted_groups(parts, column, sort), *span)


def _breakdown(column: str, na_label: str, by_domain: bool) -> Summary:
    """A domain summary per group of message+recipients that spans sites (a gateway, a connector)."""
    names = {"column": column, "na_label": na_label, "by_domain": by_domain}
    return Summary(functools.partial(_breakdown_step, **names), functools.partial(_breakdown_combine, column=column),
                   functools.partial(check_input, needed=(column,)), (*REQUIRED, column),
                   regroup=functools.partial(_breakdown_key, **names), whole=_whole_span)


@summary(_breakdown("gateway", "(not identified)", by_domain=True))
def by_gateway(tagged: pd.DataFrame, *, sort: str = "impact", direction: str | None = "outbound") -> pd.DataFrame:
    """The domain summary per recipient gateway vendor, plus ``domains``: a gateway stands in front of a recipient
    domain, so each message+recipient counts under its domain's gateway (summarize_domains' ``gateway``; without
    a domain, its own most frequent one; "(not identified)" when none was recognized), and a gateway's row is
    the sum of its domains' rows."""


@summary(_breakdown("connector", "(none)", by_domain=False))
def by_connector(tagged: pd.DataFrame, *, sort: str = "impact", direction: str | None = "outbound") -> pd.DataFrame:
    """The domain summary per outbound connector, plus ``domains`` ("(none)" when the export names no connector)."""


_REFUSED = (DEFER, FAILED, EXPIRED)  # the row kinds top_replies, summarize_causes and dominant causes count
_GROUP_KEYS = ["text", "cause"]  # a group of refusals: normalized reply ("" when by cause) and cause (-1: none)
TOP_DOMAINS = 3  # domains named per group of refusals (top_domains)


def _refusals_step(tagged: pd.DataFrame, direction: str | None, by: str, **_: Any
                   ) -> tuple[tuple[pd.DataFrame, pd.DataFrame], pd.DataFrame]:
    """A partition's deferrals and failures grouped by normalized reply and cause (``by="reply"``) or by cause:
    per group its counts, times and earliest reply (stamped with the span), per group and domain its events; and
    the keys, its distinct group+message pairs (a message can span partitions; pairs and domains cannot)."""
    t = prepare(tagged, direction)
    cause = t.causes()
    refused = np.isin(t.kind, _REFUSED)
    if by == "reply":
        chosen = np.flatnonzero(refused & t.notna("reply"))
        replies = t.at(chosen, "reply")["reply"]
        text_codes, texts = pd.factorize(normalize_replies(replies))
    else:
        chosen = np.flatnonzero(refused & (cause >= 0))
        replies = pd.Series(np.full(len(chosen), None, dtype=object))
        text_codes, texts = np.zeros(len(chosen), dtype=np.int64), pd.Index([""])
    width = len(CAUSES) + 1
    group, keys = pd.factorize(text_codes * width + (cause[chosen] + 1))
    k, pair, ns = len(keys), t.pair[chosen], t.ns()[chosen]
    seq = t.source[SEQ].to_numpy()[t.positions[chosen]] if SEQ in t.source else t.positions[chosen]
    first = np.full(k, len(chosen), dtype=np.int64)
    np.minimum.at(first, group, np.arange(len(chosen)))
    domain, domain_labels = pair_domains(t)
    earliest = _group_min(group, ns, k)
    groups = pd.DataFrame({
        "text": _label(keys // width, texts),
        "cause": (keys % width - 1).astype(np.int64),
        "events": np.bincount(group, minlength=k),
        "deferrals": np.bincount(group[t.kind[chosen] == DEFER], minlength=k),
        "recipients": _nunique(group, pair, k),
        "domains": _nunique(group, domain[pair], k),
        "first_seq": seq[first].astype(np.int64),
        "first_ns": np.where(earliest == NAT, NEVER, earliest),
        "last_ns": _group_max(group, ns, k),
        "example": replies.iloc[first].astype(object).to_numpy(),
    })
    # the recipients deferred or failed at all (whatever the cause): the unit of shares of recipients, as headline
    groups.attrs["refused_recipients"] = len(np.unique(t.pair[refused]))
    # per group its TOP_DOMAINS domains here: a domain lies in one partition, so the top ones of every partition
    # hold the top ones of the whole trace (the same order: most events, then name, "(no domain)" last)
    labels = np.asarray(domain_labels, dtype=object)
    rank = np.empty(len(labels), dtype=np.int64)
    rank[np.lexsort((labels.astype(str), labels == "(no domain)"))] = np.arange(len(labels))
    counts = pd.Series(group * max(len(labels), 1) + domain[pair]).value_counts(sort=False)
    per_group, per_domain = np.divmod(counts.index.to_numpy(), max(len(labels), 1))
    n = counts.to_numpy(dtype=np.int64)
    order = np.lexsort((rank[per_domain], -n, per_group))
    starts = np.searchsorted(per_group[order], per_group[order], side="left")
    order = order[np.arange(len(order)) - starts < TOP_DOMAINS]
    domains = pd.DataFrame({"text": groups["text"].to_numpy()[per_group[order]],
                            "cause": groups["cause"].to_numpy()[per_group[order]],
                            "domain": labels[per_domain[order]], "n": n[order]})
    message = t.pair_message[pair]
    distinct = pd.Series(group * (int(message.max(initial=0)) + 1) + message).drop_duplicates().index.to_numpy()
    messages = pd.DataFrame({"text": groups["text"].to_numpy()[group[distinct]],
                             "cause": groups["cause"].to_numpy()[group[distinct]],
                             "message": t.messages(pair[distinct])})
    return (t.stamp(groups), domains), messages


def _messages_per_group(keys: Any) -> Any:
    """Distinct messages per group of refusals, from every partition's keys (a pandas or a Dask DataFrame)."""
    return keys.drop_duplicates().groupby(_GROUP_KEYS).size()


def _refusal_totals(parts: list[tuple[pd.DataFrame, pd.DataFrame]], counted: pd.Series
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every partition's groups added up (with the earliest example and the distinct messages ``counted``), and
    the events per group and domain."""
    groups = _concat([g for g, _ in parts])
    if len(groups):
        code, keys = pd.factorize(pd.MultiIndex.from_frame(groups[_GROUP_KEYS]))
    else:  # (pandas 2.2 cannot factorize an empty MultiIndex)
        code, keys = np.zeros(0, dtype=np.int64), pd.MultiIndex.from_arrays([[], []], names=_GROUP_KEYS)
    k = len(keys)

    def added(name: str) -> np.ndarray:
        return np.bincount(code, weights=groups[name].to_numpy(), minlength=k).astype(np.int64)

    first_seq = groups["first_seq"].to_numpy()
    earliest = np.full(k, NEVER, dtype=np.int64)
    np.minimum.at(earliest, code, first_seq)
    example = np.flatnonzero(first_seq == earliest[code])  # the row of each group's earliest reply
    first_ns, last_ns = np.full(k, NEVER, dtype=np.int64), np.full(k, NAT, dtype=np.int64)
    np.minimum.at(first_ns, code, groups["first_ns"].to_numpy())
    np.maximum.at(last_ns, code, groups["last_ns"].to_numpy())
    totals = pd.DataFrame({
        "text": keys.get_level_values(0).to_numpy(dtype=object), "cause": keys.get_level_values(1).to_numpy(),
        **{name: added(name) for name in ("events", "deferrals", "recipients", "domains")},
        "first_seq": earliest, "first_ns": first_ns, "last_ns": last_ns,
        "example": pd.Series(groups["example"].to_numpy()[example], index=code[example]).reindex(range(k)).to_numpy(),
        "messages": counted.reindex(keys, fill_value=0).to_numpy(dtype=np.int64),
    })
    return totals, _concat([d for _, d in parts])


def _top_domains(domains: pd.DataFrame, keys: list[str], groups: pd.DataFrame, top: int = TOP_DOMAINS
                 ) -> pd.Series:
    """Per group (rows of ``groups``): its ``top`` domains as ``"a.com (12), b.com (3)"``, most events first, ties
    by name ("(no domain)" last)."""
    def index(frame: pd.DataFrame) -> pd.Index:
        return pd.MultiIndex.from_frame(frame[keys]) if len(keys) > 1 else pd.Index(frame[keys[0]])

    domains = domains[index(domains).isin(index(groups))]  # only the groups asked for
    if not len(domains):
        return pd.Series(pd.array([pd.NA] * len(groups), dtype=STRING))
    ranked = domains.assign(_none=domains["domain"].eq("(no domain)"))
    ranked = ranked.sort_values([*keys, "n", "_none", "domain"], ascending=[True] * len(keys) + [False, True, True],
                                kind="stable")
    ranked = ranked[ranked.groupby(keys, sort=False).cumcount().to_numpy() < top]
    text = ranked["domain"].astype(str) + " (" + ranked["n"].astype(str) + ")"
    joined = text.groupby([ranked[k] for k in keys], sort=False).agg(", ".join)
    return pd.Series(pd.array(joined.reindex(index(groups)).to_numpy(dtype=object), dtype=STRING))


def _stamps(ns: pd.Series) -> pd.Series:
    """UTC timestamps from ns (the largest or smallest int64: NaT)."""
    values = ns.to_numpy(dtype=np.int64)
    return stamps(np.where(values == NEVER, NAT, values))


def _causes_combine(parts: list[tuple[pd.DataFrame, pd.DataFrame]], counted: pd.Series, **_: Any) -> pd.DataFrame:
    groups, domains = _refusal_totals(parts, counted)
    k = len(CAUSES)
    full = groups.set_index("cause").reindex(range(k))
    events = full["events"].fillna(0).to_numpy(dtype=np.int64)
    deferrals = full["deferrals"].fillna(0).to_numpy(dtype=np.int64)
    recipients = full["recipients"].fillna(0).to_numpy(dtype=np.int64)
    out = pd.DataFrame({
        "cause": cause_categorical(np.arange(k)),
        "events": events,
        "deferrals": deferrals,
        "failures": events - deferrals,
        "recipients": recipients,
        "messages": full["messages"].fillna(0).to_numpy(dtype=np.int64),
        "domains": full["domains"].fillna(0).to_numpy(dtype=np.int64),
        "recipients_share": recipients / max(sum(g.attrs["refused_recipients"] for g, _ in parts), 1),
        "events_share": events / max(int(events.sum()), 1),
        "top_domains": _top_domains(domains, ["cause"], pd.DataFrame({"cause": np.arange(k)})),
    })
    out = out[events > 0].sort_values(["recipients", "events"], ascending=False, kind="stable", ignore_index=True)
    return _stamped(out, *_span([g for g, _ in parts]))


@summary(Summary(functools.partial(_refusals_step, by="cause"), _causes_combine, check_input, REQUIRED,
                 count=_messages_per_group))
def summarize_causes(tagged: pd.DataFrame, *, direction: str | None = "outbound") -> pd.DataFrame:
    """One row per cause seen on deferrals and failures, most recipients first.

    Columns: cause, events (deferrals + failures), deferrals, failures (expiries included), recipients and
    messages affected, domains, recipients_share (of the recipients deferred or failed, headline's
    dominant_cause_share for its cause; a recipient hit by two causes counts for both), events_share (of all
    deferral and failure events), top_domains (three, with counts).
    """


_VALUE_KEYS = ["value"]  # the distinct value+message keys of problem_counts


def _problems_step(tagged: pd.DataFrame, column: str, cause: str | None, direction: str | None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A partition's deferrals and failures (the rows the summaries count; with ``cause``, only its rows) per value
    of ``column``, with every value that occurs there; the keys: its distinct value+message pairs."""
    t = prepare(tagged, direction, (column,))
    every, labels = _codes(tagged[column])
    refused = np.isin(t.kind, _REFUSED)
    if cause:
        refused &= t.causes() == (CAUSES.index(cause) if cause in CAUSES else -2)
    refused = np.flatnonzero(refused)
    codes = every[t.positions[refused]]
    named = codes >= 0
    values = np.asarray(labels, dtype=object).astype(str)
    partial = pd.DataFrame({"value": values, "problem_events": np.bincount(codes[named], minlength=len(labels))})
    partial = partial[np.isin(np.arange(len(labels)), every)]  # values that occur (a categorical's unused: not)
    keys = pd.DataFrame({"value": values[codes[named]], "message": t.messages(t.pair[refused[named]])})
    return partial, keys.drop_duplicates()


def _messages_per_value(keys: Any) -> Any:
    """Distinct messages per value, from every partition's keys (a pandas or a Dask DataFrame)."""
    return keys.drop_duplicates().groupby(_VALUE_KEYS).size()


def _problems_combine(parts: list[pd.DataFrame], counted: pd.Series, column: str, **_: Any) -> pd.DataFrame:
    events = _concat(parts).groupby("value", sort=False)["problem_events"].sum()
    out = pd.DataFrame({column: events.index.to_numpy(dtype=object), "problem_events": events.to_numpy(np.int64),
                        "problem_messages": counted.reindex(events.index, fill_value=0).to_numpy(dtype=np.int64)})
    return out.sort_values(["problem_events", column], ascending=[False, True], kind="stable", ignore_index=True)


def _check_problems(frame: Any, *, column: str, **options: Any) -> None:
    check_input(frame, needed=(column,), **options)


@summary(Summary(_problems_step, _problems_combine, _check_problems, (*REQUIRED, "gateway", "connector"),
                 count=_messages_per_value))
def problem_counts(tagged: pd.DataFrame, column: str, *, cause: str | None = None,
                   direction: str | None = "outbound") -> pd.DataFrame:
    """Per value of ``column`` (every value that occurs): ``problem_events``, the deferrals and failures the
    summaries count (summarize_causes' events for a cause; with ``cause``, only those of that cause), and
    ``problem_messages``, the distinct messages they hit; most affected first, then A-Z."""


def _headline_step(tagged: pd.DataFrame, direction: str | None) -> tuple[dict[str, Any], pd.DataFrame]:
    """A partition's share of headline: its domain summary, pair counts and causes; the keys: its messages."""
    t = prepare(tagged, direction)
    pairs = pair_outcomes(t)
    group, labels = pair_domains(t)
    outcome, deferred = pairs.outcome, pairs.deferrals > 0
    delivered = outcome == OUTCOMES.index("delivered")
    hit = np.isin(t.kind, _REFUSED)
    pair, cause = distinct_pairs(t.pair[hit], t.causes()[hit])
    numbers = {
        "domains": t.stamp(group_summary(t, pairs, group, labels, "recipient_domain", "impact")),
        "recipients": t.n_pairs,
        "deferred": int(deferred.sum()),
        "deferrals": int(pairs.deferrals.sum()),
        "delivered": int(delivered.sum()),
        "delivered_after_deferral": int((delivered & deferred).sum()),
        "failed": int(np.isin(outcome, (OUTCOMES.index("failed"), OUTCOMES.index("expired"))).sum()),
        "expired": int((outcome == OUTCOMES.index("expired")).sum()),
        "pending": int((outcome == PENDING).sum()),
        "cause_pairs": np.bincount(cause[cause >= 0], minlength=len(CAUSES)),
        "hit_pairs": len(np.unique(pair)),
    }
    one_pair = pd.Series(t.pair_message).drop_duplicates().index.to_numpy()  # a pair of each message
    return numbers, pd.DataFrame({"message": t.messages(one_pair)})


def _distinct_messages(keys: Any) -> Any:
    """The number of distinct messages in every partition's keys (a pandas or a Dask DataFrame)."""
    return keys["message"].nunique()


def _headline_combine(parts: list[dict[str, Any]], counted: int, direction: str | None) -> dict[str, Any]:
    domains = _sorted_groups([p["domains"] for p in parts], "recipient_domain", "impact")
    hits = np.sum([p["cause_pairs"] for p in parts], axis=0)
    cause = int(np.argmax(hits)) if hits.max(initial=0) > 0 else -1  # ties: the lower code, as mode_per_group
    worst = domains.iloc[0] if len(domains) and domains["impact"].iloc[0] > 0 else None
    start, end = _span([p["domains"] for p in parts])
    return {
        "messages": int(counted),
        **{name: int(sum(p[name] for p in parts)) for name in (
            "recipients", "deferred", "deferrals", "delivered", "delivered_after_deferral", "failed", "expired",
            "pending")},
        "domains": len(domains),
        "worst_domain": None if worst is None else str(worst["recipient_domain"]),
        "worst_domain_impact": 0 if worst is None else int(worst["impact"]),
        "dominant_cause": None if cause < 0 else CAUSES[cause],
        "dominant_cause_share": None if cause < 0 else float(hits[cause] / max(sum(p["hit_pairs"] for p in parts), 1)),
        "start": start,
        "end": end,
    }


@summary(Summary(_headline_step, _headline_combine, check_input, REQUIRED, count=_distinct_messages))
def headline(tagged: pd.DataFrame, *, direction: str | None = "outbound") -> dict[str, Any]:
    """The numbers for a first screen: messages, recipients, deferred (recipients), deferrals (events), delivered,
    delivered_after_deferral, failed, expired, pending, domains, worst_domain (by impact) and its impact,
    dominant_cause and the share of deferred or failed recipients it hit, and the trace's start and end (UTC)."""


# ---------------------------------------------------------------- queue ages (qshape)

def _queue_now(start: pd.Timestamp | None, end: pd.Timestamp | None, options: dict[str, Any]) -> dict[str, Any]:
    """``now``: as given (naive: UTC), else the trace's last timestamp; NaT when neither is known."""
    now = end if options["now"] is None else as_utc(options["now"])
    return {**options, "now": pd.NaT if now is None else now}


def _queue_step(tagged: pd.DataFrame, now: pd.Timestamp, direction: str | None, **_: Any) -> pd.DataFrame:
    """A partition's pending message+recipients at ``now`` per recipient domain and age bucket (domains with any)."""
    t = prepare(tagged, direction)
    counts = pd.DataFrame(np.zeros((0, len(AGE_BUCKETS)), dtype=np.int64), columns=list(AGE_BUCKETS),
                          index=pd.Index([], dtype=object))
    if not pd.isna(now) and t.n_pairs:
        ns, n = t.ns(), t.n_pairs
        known = (ns != NAT) & (ns <= now.value)
        defer, final = known & (t.kind == DEFER), known & (t.kind >= DELIVERED)
        pending = (np.bincount(t.pair[defer], minlength=n) > 0) & (np.bincount(t.pair[final], minlength=n) == 0)
        age = now.value - _group_min(t.pair[defer], ns[defer], n)[pending]
        bucket = np.searchsorted(np.array(AGE_LIMITS_MINUTES, dtype=np.int64) * 60_000_000_000, age, side="right")
        group, labels = pair_domains(t)
        k, b = len(labels), len(AGE_BUCKETS)
        matrix = np.bincount(group[pending] * b + bucket, minlength=k * b).reshape(k, b)
        counts = pd.DataFrame(matrix, index=pd.Index(labels, dtype=object), columns=list(AGE_BUCKETS))
        counts = counts[counts.sum(axis=1).to_numpy() > 0]
    return t.stamp(counts)


def _queue_combine(parts: list[pd.DataFrame], now: pd.Timestamp, rollup_parent: bool, min_subdomains: int,
                   **_: Any) -> pd.DataFrame:
    out = _stamped(queue_table(pd.concat(parts), rollup_parent, min_subdomains), *_span(parts))
    out.attrs["now"] = or_none(now)
    return out


@summary(Summary(_queue_step, _queue_combine, check_input, REQUIRED, whole=_queue_now))
def queue_ages(tagged: pd.DataFrame, now: Any = None, *, rollup_parent: bool = False, min_subdomains: int = 5,
               direction: str | None = "outbound") -> pd.DataFrame:
    """qshape for Exchange Online: message+recipients still pending at ``now``, by recipient domain and age.

    A pair is pending at ``now`` (default: the trace's last timestamp; naive times are UTC) when it was deferred
    at or before ``now`` and had no final event (delivered, failed, expired) by then; its age is ``now`` minus its
    first deferral. Columns are qshape's: ``T`` (the row total), then ``5``, ``10``, ... ``1280`` holding ages in
    [0, 5), [5, 10), ... [640, 1280) minutes (named by the exclusive upper limit, each twice the previous) and
    ``1280+`` for 1280 minutes (about 21 h) or more. The first row is ``TOTAL``; domains follow by total, then
    name length and name, as qshape sorts them. ``rollup_parent=True`` adds qshape -p rows: ``.parent`` (such as
    ``.example.com``; never a top-level domain) summing its proper subdomains, shown when it has at least
    ``min_subdomains`` of them (qshape -m). Nothing pending: only the TOTAL row, all zero. ``attrs["now"]``:
    the reference time.
    """


def queue_table(counts: pd.DataFrame, rollup_parent: bool, min_subdomains: int) -> pd.DataFrame:
    """The queue_ages table from per-domain bucket counts: TOTAL first, parents optional, biggest first, T column."""
    total = pd.DataFrame([counts.sum(axis=0).to_numpy()], index=["TOTAL"], columns=list(AGE_BUCKETS))
    if rollup_parent:
        counts = pd.concat([counts, _parents(counts, min_subdomains)])
    totals = counts.sum(axis=1)
    order = pd.DataFrame({"t": totals.to_numpy(), "len": totals.index.str.len(), "name": totals.index})
    counts = counts.iloc[order.sort_values(["t", "len", "name"], ascending=[False, True, True]).index.to_numpy()]
    out = pd.concat([total, counts]).astype(np.int64)
    out.insert(0, "T", out.sum(axis=1))
    out.index.name, out.columns.name = "recipient_domain", "age_minutes"
    return out


def _parents(counts: pd.DataFrame, min_subdomains: int) -> pd.DataFrame:
    """qshape -p rows: ``.parent`` summing every proper subdomain of ``parent`` (top-level domains excluded)."""
    links = [(domain, "." + ".".join(labels[depth:]))
             for domain in counts.index for labels in [str(domain).strip(".").split(".")]
             for depth in range(1, len(labels) - 1)]
    if not links:
        return counts.iloc[:0]
    link = pd.DataFrame(links, columns=["domain", "parent"])
    rolled = counts.loc[link["domain"]].groupby(link["parent"].to_numpy()).sum()
    enough = link.groupby("parent")["domain"].nunique() >= min_subdomains
    return rolled[enough.reindex(rolled.index).to_numpy(dtype=bool)]


# ---------------------------------------------------------------- replies (pflogsumm's deferral detail)

def normalize_replies(replies: pd.Series) -> pd.Series:
    """Replies with what varies between otherwise equal replies replaced by placeholders (unique values only).

    Multi-line replies are joined; GUIDs become ``<guid>``, addresses ``<address>``, dates and times ``<time>``,
    Exchange Online server names (``*.prod.outlook.com``, ``*.prod.protection.outlook.com``) ``<exo-server>``,
    IPv4/IPv6 addresses (with a port) ``<ip>``, Gmail session ids ``<id> - gsmtp``, numbers in brackets
    ``[<n>]``, numbers of six or more digits and hex or letter-digit ids ``<id>``; white space collapses.
    """
    def normalize(uniques: pd.Series) -> pd.Series:
        text = to_arrow(uniques)
        for pattern, placeholder in _REPLY_NOISE:
            text = pc.replace_substring_regex(text, pattern, placeholder)
        return pd.Series(pd.array(pc.utf8_trim_whitespace(text), dtype=STRING))
    return map_unique(pd.Series(replies, dtype=STRING), normalize).astype(STRING)


def _replies_combine(parts: list[tuple[pd.DataFrame, pd.DataFrame]], counted: pd.Series, n: int, **_: Any
                     ) -> pd.DataFrame:
    groups, domains = _refusal_totals(parts, counted)
    events = groups["events"].to_numpy(dtype=np.int64)
    top = np.lexsort((groups["first_seq"].to_numpy(), groups["text"].astype(str).to_numpy(), -events))[:max(n, 0)]
    chosen = groups.iloc[top].reset_index(drop=True)
    out = pd.DataFrame({
        "reply": pd.array(chosen["text"].to_numpy(dtype=object), dtype=STRING),
        "cause": cause_categorical(chosen["cause"].to_numpy(dtype=np.int64)),
        "events": chosen["events"].to_numpy(dtype=np.int64),
        "deferrals": chosen["deferrals"].to_numpy(dtype=np.int64),
        "failures": (chosen["events"] - chosen["deferrals"]).to_numpy(dtype=np.int64),
        "messages": chosen["messages"].to_numpy(dtype=np.int64),
        "recipients": chosen["recipients"].to_numpy(dtype=np.int64),
        "domains": chosen["domains"].to_numpy(dtype=np.int64),
        "top_domains": _top_domains(domains, _GROUP_KEYS, chosen),
        "example": pd.array(chosen["example"].to_numpy(dtype=object), dtype=STRING),
        "first_seen": _stamps(chosen["first_ns"]),
        "last_seen": _stamps(chosen["last_ns"]),
    })
    return _stamped(out, *_span([g for g, _ in parts]))


@summary(Summary(functools.partial(_refusals_step, by="reply"), _replies_combine, check_input, REQUIRED,
                 count=_messages_per_group))
def top_replies(tagged: pd.DataFrame, n: int = 20, *, direction: str | None = "outbound") -> pd.DataFrame:
    """The ``n`` most frequent deferral and failure replies, grouped by cause and normalized text.

    pflogsumm's "message deferral detail" nested as {cause} -> {normalized reply} (see :func:`normalize_replies`).
    Columns: reply (normalized), cause, events, deferrals, failures, messages, recipients, domains,
    top_domains (three, with counts), example (one original reply), first_seen, last_seen. Most events first.
    """


# ---------------------------------------------------------------- trends and breakdowns

def _hours_step(tagged: pd.DataFrame, freq: str, direction: str | None) -> pd.DataFrame:
    """A partition's deferrals per period and cause, over the partition's own span."""
    step = pd.Timedelta(freq)
    t = prepare(tagged, direction)
    if pd.isna(t.start):
        return t.stamp(pd.DataFrame(np.zeros((0, len(CAUSES)), dtype=np.int64), columns=list(CAUSES)))
    first = t.start.floor(step)
    periods = int((t.end.floor(step) - first) // step) + 1
    ns = t.ns()
    chosen = (t.kind == DEFER) & (ns != NAT)
    slot = (ns[chosen] - first.value) // step.value
    cause = t.causes()[chosen]
    cause[cause < 0] = CAUSES.index("unknown")
    matrix = np.bincount(slot * len(CAUSES) + cause, minlength=periods * len(CAUSES))
    index = pd.date_range(first, periods=periods, freq=step, name="period")
    return t.stamp(pd.DataFrame(matrix.reshape(periods, len(CAUSES)), index=index, columns=list(CAUSES)))


def _hours_combine(parts: list[pd.DataFrame], freq: str, direction: str | None) -> pd.DataFrame:
    """Every partition's counts added up over every period of the whole trace's span."""
    step = pd.Timedelta(freq)
    start, end = _span(parts)
    if start is None:
        index = pd.DatetimeIndex([], tz="UTC", name="period")
        out = pd.DataFrame(np.zeros((0, len(CAUSES)), dtype=np.int64), index=index, columns=list(CAUSES))
    else:
        first = start.floor(step)
        index = pd.date_range(first, periods=int((end.floor(step) - first) // step) + 1, freq=step, name="period")
        matrix = np.zeros((len(index), len(CAUSES)), dtype=np.int64)
        for part in parts:
            if len(part):
                matrix += part.reindex(index=index, fill_value=0).to_numpy(dtype=np.int64)
        out = pd.DataFrame(matrix, index=index, columns=list(CAUSES))
    out.columns.name = "cause"
    _stamped(out, start, end)
    out.attrs["freq"] = step
    return out


@summary(Summary(_hours_step, _hours_combine, check_input, REQUIRED))
def deferrals_by_hour(tagged: pd.DataFrame, *, freq: str = "1h", direction: str | None = "outbound"
                      ) -> pd.DataFrame:
    """Deferral events per hour (or per ``freq``, e.g. "1D") by cause, over the whole trace span.

    Index ``period``: the start of each period (UTC), every period from the trace's first to its last timestamp,
    empty ones as 0. Columns: every cause of :data:`analysis.core.schema.CAUSES`, in that order (a deferral without a
    cause counts as unknown). Undated deferrals are left out. ``attrs["freq"]``: the period as a Timedelta.
    """


def _rates_key(tagged: pd.DataFrame, endpoints: Any, by: str, direction: str | None, **_: Any) -> pd.Series:
    """Each attempt's group (its source range or published flag); other rows NA."""
    t, chosen, _, group, labels, _ = _attempts(tagged, endpoints, by, direction)
    out = np.full(len(tagged), None, dtype=object)
    out[t.positions[chosen]] = np.asarray(labels, dtype=object)[group]
    return pd.Series(out, index=tagged.index)


def _rates_step(tagged: pd.DataFrame, groups: pd.Series | None, endpoints: Any, by: str, direction: str | None,
                **_: Any) -> pd.DataFrame:
    """Attempts and deferrals per group, on whole groups (``groups`` only brought the rows together)."""
    t, chosen, ip, group, labels, published = _attempts(tagged, endpoints, by, direction)
    kind, cause = t.kind[chosen], t.causes()[chosen]
    k = len(labels)
    defer = kind == DEFER
    attempts, deferred = np.bincount(group, minlength=k), np.bincount(group[defer], minlength=k)
    out = pd.DataFrame({
        _RATE_NAMES[by]: pd.array(np.asarray(labels, dtype=object), dtype=STRING),
        "attempts": attempts,
        "deferred": deferred,
        "delivered": np.bincount(group[kind == DELIVERED], minlength=k),
        "failed": np.bincount(group[kind == FAILED], minlength=k),
        "deferral_rate": deferred / np.maximum(attempts, 1),
        "exo_ips": _nunique(group, ip, k),
        "domains": _nunique(group, pair_domains(t)[0][t.pair[chosen]], k),
        "dominant_cause": cause_categorical(mode_per_group(group[defer], cause[defer], k)[0]),
    })
    if by == "range":
        out.insert(1, "exo_ip_published", pd.array(published, dtype="boolean"))
    return out


def _rates_combine(parts: list[pd.DataFrame], by: str, span: tuple[Any, Any], **_: Any) -> pd.DataFrame:
    out = _concat(parts).sort_values(["deferred", "attempts", _RATE_NAMES[by]],
                                                          ascending=[False, False, True], kind="stable",
                                                          ignore_index=True)
    return _stamped(out, *span)


_RATE_NAMES = {"range": "source_range", "published": "published"}
_RATE_COLUMNS = ("exo_ip", "exo_ip_published")


@summary(Summary(_rates_step, _rates_combine, functools.partial(check_input, needed=_RATE_COLUMNS),
                 (*REQUIRED, *_RATE_COLUMNS), regroup=_rates_key, whole=_whole_span))
def deferral_rate_by_source_range(tagged: pd.DataFrame, endpoints: Any = None, *,
                                  by: Literal["range", "published"] = "range",
                                  direction: str | None = "outbound") -> pd.DataFrame:
    """Delivery attempts and deferrals per Exchange Online source range (or per ``exo_ip_published``).

    An attempt is a deferral, delivery or rejection (not an expiry) with an Exchange Online source IP. Its
    source range is the published range holding ``exo_ip`` (``endpoints``: an :class:`analysis.Endpoints`,
    default the bundled snapshot), else its /24 (IPv4) or /48 (IPv6). ``by="published"`` groups by the tag
    ``exo_ip_published`` instead (published / not published / unknown). Columns: source_range (or published),
    exo_ip_published (range rows: any of its IPs in a published mail-flow range), attempts, deferred,
    delivered, failed, deferral_rate, exo_ips, domains, dominant_cause (of the deferrals). Most deferrals first.
    Filter ``tagged`` to one recipient domain to see a partner refusing some ranges and accepting others.
    """


def _attempts(tagged: pd.DataFrame, endpoints: Any, by: str, direction: str | None
              ) -> tuple[Trace, np.ndarray, np.ndarray, np.ndarray, pd.Index, np.ndarray | None]:
    """The attempts :func:`deferral_rate_by_source_range` counts: the trace, their positions in it, their IP
    codes, their group codes and labels (source ranges, or published flags), and per range whether any of its
    IPs is published (None for flags)."""
    t = prepare(tagged, direction, _RATE_COLUMNS)
    ip_codes, ips = t.codes("exo_ip")
    chosen = np.flatnonzero(np.isin(t.kind, (DEFER, DELIVERED, FAILED)) & (ip_codes >= 0))
    ip = ip_codes[chosen]
    if by == "published":
        flag = t.at(chosen, "exo_ip_published")["exo_ip_published"].astype("boolean")
        text = np.where(flag.isna().to_numpy(), "unknown",
                        np.where(flag.fillna(False).to_numpy(dtype=bool), "published", "not published"))
        group, labels = pd.factorize(text)
        return t, chosen, ip, group, pd.Index(labels), None
    used = np.unique(ip)
    ranges, published = _source_ranges(pd.Series(np.asarray(ips, dtype=object)[used], dtype=STRING), endpoints)
    range_codes, labels = pd.factorize(ranges)
    range_of_ip = np.full(len(ips), -1, dtype=np.int64)
    range_of_ip[used] = range_codes
    published = np.bincount(range_codes, weights=published, minlength=len(labels)) > 0
    return t, chosen, ip, range_of_ip[ip], pd.Index(labels), published


def _source_ranges(ips: pd.Series, endpoints: Any) -> tuple[np.ndarray, np.ndarray]:
    """For unique IPs: the published range holding each (else its /24 or /48) and whether it is EXO mail flow."""
    if endpoints is None:
        endpoints = Endpoints.bundled()
    matched = endpoints.match_ips(ips)
    cidr = np.array(matched["cidr"].astype(object), dtype=object)
    unpublished = np.flatnonzero(pd.isna(cidr))
    cidr[unpublished] = [covering_network(ip) or NOT_AN_IP for ip in ips.iloc[unpublished]]  # once per unique IP
    return cidr, matched["exo_mail_flow"].fillna(False).to_numpy(dtype=bool)

