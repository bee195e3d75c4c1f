"""Charts of the investigation summaries: each function takes a frame of :mod:`analysis.summaries.tables` and returns
a matplotlib Figure.

Only the object-oriented API is used (``Figure()``, never pyplot), so charts keep no global state and are safe
in threads and kernels. One style throughout: the title says what and when (the trace's time span, in the display
time zone of :mod:`analysis.core.zones`, UTC unless the user chose another, or in ``tz=``),
axes are labelled with units, every cause has the same colour in every chart (:data:`CAUSE_COLORS`, from the
colour-blind-safe Okabe-Ito and Paul Tol "muted" palettes), long lists are cut to the top N plus "other", and
empty input draws an explicit "nothing to show" figure. Text from the trace is escaped so that matplotlib
never reads it as mathtext. :func:`save` writes a figure as PNG and SVG.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.core.schema import CAUSES
from analysis.core.zones import display_zone, in_zone, zone_name
from analysis.summaries.tables import AGE_BUCKETS, IMPACT_WEIGHTS

__all__ = [
    "CAUSE_COLORS", "OTHER_COLOR", "plot_causes", "plot_journey", "plot_queue_ages", "plot_retry_intervals",
    "plot_source_ranges", "plot_top_domains", "plot_trend", "save",
]

# one fixed colour per cause: Okabe & Ito (2008) for the most frequent causes, Paul Tol's "muted" scheme for
# the rest, grey for unknown. The story's case, gateway_block, has the strongest colour (vermillion).
CAUSE_COLORS: dict[str, str] = {
    "gateway_block": "#D55E00",
    "recipient_server_down": "#0072B2",
    "greylisting": "#E69F00",
    "rate_limited": "#56B4E9",
    "dns_failure": "#009E73",
    "bad_address": "#CC79A7",
    "mailbox_disabled": "#882255",
    "mailbox_full": "#DDCC77",
    "reputation_blocklist": "#332288",
    "auth_policy": "#117733",
    "tls_required": "#44AA99",
    "content_rejected": "#999933",
    "message_too_large": "#88CCEE",
    "sender_restricted": "#AA4499",
    "routing_config": "#CC6677",
    "unknown": "#888888",
}
OTHER_COLOR = "#DDDDDD"  # "other" rows and bars (everything outside the top N)
NO_CAUSE_COLOR = "#333333"  # events that carry no cause (receive, submit, delivery)
TOP_DOMAINS = 15
TOP_ROWS = 20
TOP_CAUSES = 8
_LABEL_CHARS = 45
_EVENT_KINDS = {"defer": "deferral", "fail": "failure", "drop": "failure", "deliver": "delivery", "send": "delivery"}
_MARKERS = {"deferral": "o", "failure": "X", "delivery": "s", "other event": "."}  # journey markers per event kind
_OUTCOME_HATCHES = {"failed": None, "pending": "///", "delivered_after_deferral": "..."}  # top-domains segments
_HATCH_INK = (0.0, 0.0, 0.0, 0.55)
# retry-interval histogram bins (minutes) and their labels
_INTERVAL_EDGES = (0, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 240, 480, 1440, np.inf)
_INTERVAL_LABELS = ("<1", "1-2", "2-5", "5-10", "10-15", "15-20", "20-30", "30-45", "45-60", "60-90", "90-120",
                    "2-4 h", "4-8 h", "8-24 h", "≥24 h")

# ---------------------------------------------------------------- style helpers


def _escape(text: Any) -> str:
    """Trace text made safe for matplotlib: ``$`` never starts mathtext."""
    return str(text).replace("$", r"\$")


def _short(text: Any) -> str:
    text = str(text)
    return _escape(text if len(text) <= _LABEL_CHARS else text[:_LABEL_CHARS - 1] + "…")


def _zone(tz: str | None) -> str:
    """``tz`` checked (ValueError in one line for a name that is no time zone), else the display zone."""
    return zone_name(tz) if tz else display_zone()


def _span(start: Any, end: Any, tz: str | None) -> str:
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return "time span unknown"
    zone = _zone(tz)
    return f"{in_zone(start, zone):%Y-%m-%d %H:%M} – {in_zone(end, zone):%Y-%m-%d %H:%M} {zone}"


def _figure(label: str, width: float = 10.0, height: float = 5.5) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.set_label(label)
    return fig, fig.add_subplot()


def _title(ax: Axes, what: str, when: str) -> None:
    ax.set_title(f"{what}\n{when}", loc="left", fontsize=11)


def _nothing(label: str, what: str, when: str, why: str) -> Figure:
    """The explicit "nothing to show" figure."""
    fig, ax = _figure(label, height=3.0)
    _title(ax, what, when)
    ax.text(0.5, 0.5, f"Nothing to show: {why}", ha="center", va="center", fontsize=12, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _when(frame: pd.DataFrame, tz: str | None) -> str:
    return _span(frame.attrs.get("start"), frame.attrs.get("end"), tz)


def _cause_color(cause: Any) -> str:
    return CAUSE_COLORS.get(str(cause), OTHER_COLOR) if cause is not None and not pd.isna(cause) else OTHER_COLOR


def _date_axis(ax: Axes, tz: str | None) -> None:
    zone = _zone(tz)
    locator = mdates.AutoDateLocator(tz=zoneinfo.ZoneInfo(zone))
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zoneinfo.ZoneInfo(zone)))
    ax.set_xlabel(f"Time ({zone})")


def _date_numbers(stamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    naive = pd.DatetimeIndex(stamps).tz_convert("UTC").tz_localize(None)
    return mdates.date2num(naive.to_numpy(dtype="datetime64[ns]"))


def _top_causes(table: pd.DataFrame, top: int = TOP_CAUSES) -> pd.DataFrame:
    """Cause columns with any count, the ``top`` largest kept in taxonomy order, the rest summed as "other"."""
    totals = table.sum(axis=0)
    present = [c for c in table.columns if totals[c] > 0]
    kept = set(totals[present].sort_values(ascending=False, kind="stable").index[:top])
    out = table[[c for c in present if c in kept]].copy()
    rest = [c for c in present if c not in kept]
    if rest:
        out["other causes"] = table[rest].sum(axis=1)
    return out


def _stacked(ax: Axes, edges: np.ndarray, table: pd.DataFrame) -> None:
    """One filled step patch per cause column, stacked bottom-up in column order (labelled with the cause)."""
    baseline = np.zeros(len(table))
    for cause in table.columns:
        values = table[cause].to_numpy(dtype=float)
        ax.stairs(baseline + values, edges, baseline=baseline.copy(), fill=True, label=cause,
                  color=_cause_color(cause), linewidth=0)
        baseline = baseline + values
    ax.set_ylim(0, max(float(baseline.max()), 1.0) * 1.08)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], title="cause (top of the stack first)", loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=9, frameon=False)


def _counted(number: float) -> str:
    return f"{int(number):,}"


# ---------------------------------------------------------------- charts

def plot_trend(by_hour: pd.DataFrame, *, top: int = TOP_CAUSES, tz: str | None = None) -> Figure:
    """Deferrals per period stacked by cause, from :func:`analysis.summaries.tables.deferrals_by_hour`."""
    freq = pd.Timedelta(by_hour.attrs.get("freq", pd.Timedelta(hours=1)))
    unit = {pd.Timedelta(hours=1): "hour", pd.Timedelta(days=1): "day"}.get(freq, str(freq))
    what = f"Deferrals per {unit}, by cause"
    table = _top_causes(by_hour, top) if len(by_hour) else by_hour.iloc[:, :0]
    if table.empty or not table.to_numpy().any():
        return _nothing("deferrals-by-cause", what, _when(by_hour, tz), "no deferrals in this trace")
    fig, ax = _figure("deferrals-by-cause")
    edges = _date_numbers(by_hour.index.append(pd.DatetimeIndex([by_hour.index[-1] + freq])))
    _stacked(ax, edges, table)
    _date_axis(ax, tz)
    ax.set_ylabel(f"Deferral events per {unit}")
    _title(ax, what, _when(by_hour, tz))
    return fig


def plot_causes(causes: pd.DataFrame, *, tz: str | None = None) -> Figure:
    """Recipients affected per cause (horizontal bars in the cause colours), from ``summarize_causes``; each bar
    is labelled with its ``recipients`` and ``events`` (deferrals + failures), each number with its unit."""
    what = "Causes of deferrals and failures"
    rows = causes[causes["recipients"] > 0] if len(causes) else causes
    if rows.empty:
        return _nothing("causes", what, _when(causes, tz), "no deferrals or failures in this trace")
    rows = rows.sort_values("recipients", ascending=True, kind="stable")
    fig, ax = _figure("causes", height=max(3.0, 0.45 * len(rows) + 1.8))
    labels = [str(c) for c in rows["cause"]]
    bars = ax.barh(labels, rows["recipients"], color=[_cause_color(c) for c in labels])
    for bar, (_, row) in zip(bars, rows.iterrows(), strict=True):
        ax.annotate(f" {_counted(row['recipients'])} recipients, {_counted(row['events'])} events",
                    (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8)
    ax.set_xlabel("Recipients affected (message+recipient pairs)")
    ax.set_ylabel("Cause")
    ax.margins(x=0.25)
    _title(ax, what, _when(causes, tz))
    return fig


def plot_top_domains(domains: pd.DataFrame, *, top: int = TOP_DOMAINS, tz: str | None = None) -> Figure:
    """The recipient domains with the most impact: failed, pending and late recipients in the colour of the
    domain's dominant cause (failed plain, pending hatched, late dotted), the other domains as one "other" bar."""
    weights = " + ".join(f"{w}×{name.replace('_', ' ')}" for name, w in IMPACT_WEIGHTS.items())
    what = f"Recipient domains with the most impact ({weights})"
    hurt = domains[domains["impact"] > 0] if len(domains) else domains
    if hurt.empty:
        return _nothing("top-domains", what, _when(domains, tz), "no recipient domain had failed, pending or late mail")
    hurt = hurt.sort_values(["impact", "recipients"], ascending=False, kind="stable")
    shown = hurt.head(top)
    parts = ["failed", "pending", "delivered_after_deferral"]
    names = [_short(d) for d in shown["recipient_domain"]]
    values = shown[parts].to_numpy(dtype=float)
    colors = [_cause_color(c) for c in shown["dominant_cause"]]
    if len(hurt) > top:
        rest = hurt.iloc[top:]
        names.append(f"other ({len(rest):,} domains)")
        values = np.vstack([values, rest[parts].sum(axis=0).to_numpy(dtype=float)])
        colors.append(OTHER_COLOR)
    fig, ax = _figure("top-domains", height=max(3.0, 0.4 * len(names) + 2.0))
    position = np.arange(len(names))[::-1]
    left = np.zeros(len(names))
    for column, part in enumerate(parts):
        ax.barh(position, values[:, column], left=left, color=colors, edgecolor=_HATCH_INK, linewidth=0,
                hatch=_OUTCOME_HATCHES[part], label=part.replace("_", " "))
        left += values[:, column]
    for y, total in zip(position, left, strict=True):
        ax.annotate(f" {_counted(total)}", (total, y), va="center", fontsize=8)
    ax.set_yticks(position, labels=names)
    ax.set_xlabel("Recipients (message+recipient pairs)")
    ax.margins(x=0.1)
    causes = list(dict.fromkeys(str(c) for c in shown["dominant_cause"] if not pd.isna(c)))
    handles = [*(Patch(facecolor="white", edgecolor=_HATCH_INK, hatch=hatch, label=part.replace("_", " "))
                 for part, hatch in _OUTCOME_HATCHES.items()),
               *(Patch(facecolor=CAUSE_COLORS[c], label=c) for c in causes if c in CAUSE_COLORS)]
    ax.legend(handles=handles, title="outcome / dominant cause", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8, title_fontsize=9, frameon=False)
    _title(ax, what, _when(domains, tz))
    return fig


def plot_queue_ages(ages: pd.DataFrame, *, top: int = TOP_ROWS, tz: str | None = None) -> Figure:
    """qshape heat map from :func:`analysis.summaries.tables.queue_ages`: pending message+recipients per domain (top N,
    then "other") and age bucket, counts written in the cells; column labels carry the column totals."""
    now = ages.attrs.get("now")
    zone = _zone(tz)
    when = "at " + (f"{in_zone(now, zone):%Y-%m-%d %H:%M} {zone}" if now is not None else "an unknown time")
    total = int(ages.loc["TOTAL", "T"]) if "TOTAL" in ages.index else 0
    what = f"Still pending {when}: {total:,} message+recipients by age since first deferral"
    if total == 0:
        return _nothing("queue-ages", what, _when(ages, tz), "no message was waiting in the queue")
    rows = ages.drop(index="TOTAL")
    matrix = rows[list(AGE_BUCKETS)]
    names = [_short(d) for d in matrix.index[:top]]
    if len(matrix) > top:
        rest = matrix.iloc[top:]
        rest = rest[~rest.index.astype(str).str.startswith(".")]  # parent roll-ups would count twice
        names.append(f"other ({len(rest):,} domains)")
        matrix = pd.concat([matrix.iloc[:top], rest.sum(axis=0).to_frame().T])
    values = matrix.to_numpy(dtype=float)
    fig, ax = _figure("queue-ages", width=11.0, height=max(3.0, 0.4 * len(names) + 2.2))
    cmap = colormaps["viridis"].with_extremes(bad="white")  # empty cells (masked) stay blank
    image = ax.imshow(np.ma.masked_equal(values, 0), aspect="auto", cmap=cmap, interpolation="nearest")
    for (y, x), count in np.ndenumerate(values):
        if count:
            shade = image.cmap(image.norm(count))
            ink = "white" if 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5 else "black"
            ax.text(x, y, _counted(count), ha="center", va="center", fontsize=8, color=ink)
    column_totals = ages.loc["TOTAL", list(AGE_BUCKETS)]
    ax.set_xticks(range(len(AGE_BUCKETS)), labels=[f"{b}\n({_counted(n)})" for b, n in column_totals.items()])
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("Age since first deferral, minutes (column = upper limit, qshape buckets; column total)")
    ax.set_ylabel("Recipient domain")
    fig.colorbar(image, ax=ax, label="Message+recipients pending")
    _title(ax, what, _when(ages, tz))
    return fig


def plot_retry_intervals(intervals: pd.DataFrame, *, top: int = TOP_CAUSES, tz: str | None = None) -> Figure:
    """How long Exchange Online waited between attempts, stacked by the cause of the deferral before each retry
    (from :func:`analysis.summaries.tables.retry_intervals`)."""
    what = "Time between delivery attempts, by cause of the deferral retried"
    if intervals.empty:
        return _nothing("retry-intervals", what, _when(intervals, tz), "no message was retried")
    bins = pd.cut(intervals["interval_minutes"], list(_INTERVAL_EDGES), right=False, labels=list(_INTERVAL_LABELS))
    cause = intervals["cause"].astype(object).fillna("unknown")
    table = pd.crosstab(bins, cause).reindex(index=list(_INTERVAL_LABELS), fill_value=0)
    table = _top_causes(table[[c for c in CAUSES if c in table.columns]], top)
    fig, ax = _figure("retry-intervals")
    _stacked(ax, np.arange(len(_INTERVAL_LABELS) + 1, dtype=float), table)
    ax.set_xticks(np.arange(len(_INTERVAL_LABELS)) + 0.5, labels=list(_INTERVAL_LABELS), rotation=45, ha="right")
    ax.set_xlabel("Minutes between two attempts of a message+recipient (unless marked h = hours)")
    ax.set_ylabel("Retries")
    _title(ax, what, _when(intervals, tz))
    return fig


def plot_journey(journey: pd.DataFrame, *, top: int = TOP_ROWS, tz: str | None = None) -> Figure:
    """One message's events on a time axis, one row per recipient (top N by events, then "other recipients"),
    deferrals as circles, failures as crosses, deliveries as squares, coloured by cause (from ``message_journey``).
    """
    message = journey.attrs.get("message", "")
    what = f"Journey of message {_short(message)}" if message else "Journey of one message"
    dated = journey[journey["timestamp"].notna()] if len(journey) else journey
    if dated.empty:
        return _nothing("message-journey", what, _when(journey, tz), "no dated event of this message in the trace")
    recipients = dated["recipient"].astype(object).fillna("(no recipient)")
    ranked = list(recipients.value_counts(sort=False).sort_values(ascending=False, kind="stable").index[:top])
    row_names = [*(_short(r) for r in ranked)]
    other = len(set(recipients)) > len(ranked)
    if other:
        row_names.append(f"other recipients ({len(set(recipients)) - len(ranked):,})")
    position = {r: len(row_names) - 1 - i for i, r in enumerate(ranked)}
    y = recipients.map(position).fillna(0).to_numpy(dtype=float)
    x = _date_numbers(dated["timestamp"])
    colors = np.array([_cause_color(c) if not pd.isna(c) else NO_CAUSE_COLOR for c in dated["cause"]], dtype=object)
    kinds = dated["event"].astype(object).map(_EVENT_KINDS).fillna("other event").to_numpy(dtype=object)
    fig, ax = _figure("message-journey", height=max(3.0, 0.45 * len(row_names) + 2.2))
    handles = []
    for kind, marker in _MARKERS.items():
        chosen = kinds == kind
        if chosen.any():
            ax.scatter(x[chosen], y[chosen], marker=marker, c=list(colors[chosen]), s=90 if marker == "." else 60,
                       label=kind, zorder=3, edgecolors="none")
            handles.append(Line2D([], [], marker=marker, linestyle="", color=NO_CAUSE_COLOR, label=kind))
    ax.set_yticks(range(len(row_names)), labels=row_names[::-1])
    ax.set_ylim(-0.7, len(row_names) - 0.3)
    ax.grid(axis="x", color="#EEEEEE")
    _date_axis(ax, tz)
    present = set(dated["cause"].dropna().astype(str))
    handles += [Patch(facecolor=CAUSE_COLORS[c], label=c) for c in CAUSES if c in present]
    ax.legend(handles=handles, title="event / cause", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title_fontsize=9, frameon=False)
    _title(ax, what, _when(journey, tz))
    return fig


def plot_source_ranges(rates: pd.DataFrame, *, top: int = TOP_DOMAINS, tz: str | None = None) -> Figure:
    """Deferral rate per Exchange Online source range (top N by attempts, then "other"), bars in the colour of the
    range's dominant deferral cause, from :func:`analysis.summaries.tables.deferral_rate_by_source_range`."""
    what = "Deferral rate by Exchange Online source range"
    if rates.empty or not rates["attempts"].sum():
        why = "no delivery attempt with an Exchange Online source IP"
        return _nothing("source-ranges", what, _when(rates, tz), why)
    key = "source_range" if "source_range" in rates.columns else "published"
    ranked = rates.sort_values(["attempts", "deferred"], ascending=False, kind="stable")
    shown = ranked.head(top)
    names = [_short(r) for r in shown[key]]
    if "exo_ip_published" in shown:
        names = [f"{n} ({'published' if p else 'not published'})"
                 for n, p in zip(names, shown["exo_ip_published"].fillna(False), strict=True)]
    attempts = shown["attempts"].to_numpy(dtype=float)
    deferred = shown["deferred"].to_numpy(dtype=float)
    colors = [_cause_color(c) for c in shown["dominant_cause"]]
    if len(ranked) > top:
        rest = ranked.iloc[top:]
        names.append(f"other ({len(rest):,} ranges)")
        attempts = np.append(attempts, rest["attempts"].sum())
        deferred = np.append(deferred, rest["deferred"].sum())
        colors.append(OTHER_COLOR)
    rate = 100 * deferred / np.maximum(attempts, 1)
    fig, ax = _figure("source-ranges", height=max(3.0, 0.4 * len(names) + 2.0))
    position = np.arange(len(names))[::-1]
    ax.barh(position, rate, color=colors)
    for y, r, d, a in zip(position, rate, deferred, attempts, strict=True):
        ax.annotate(f" {r:.0f}% ({_counted(d)} of {_counted(a)} attempts)", (r, y), va="center", fontsize=8)
    ax.set_yticks(position, labels=names)
    ax.set_xlim(0, 130)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("Deferred attempts, % of delivery attempts from the range")
    causes = list(dict.fromkeys(str(c) for c in shown["dominant_cause"] if not pd.isna(c)))
    ax.legend(handles=[Patch(facecolor=CAUSE_COLORS[c], label=c) for c in causes if c in CAUSE_COLORS],
              title="dominant cause", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title_fontsize=9, frameon=False)
    _title(ax, what, _when(rates, tz))
    return fig


# ---------------------------------------------------------------- files

_FORMATS = ("png", "svg", "pdf")


def save(fig: Figure, folder: str | Path, formats: str | Iterable[str] = ("png", "svg"),
         name: str | None = None) -> list[Path]:
    """Write ``fig`` into ``folder`` (created if needed) once per format; returns the paths written.

    ``name`` defaults to the figure's label (e.g. "queue-ages"); it is reduced to letters, digits, ``-`` and ``_``.
    """
    chosen = [f.lower().lstrip(".") for f in ([formats] if isinstance(formats, str) else formats)]
    unknown = sorted(set(chosen) - set(_FORMATS))
    if unknown:
        raise ValueError(f"format(s) {', '.join(unknown)}: expected some of {', '.join(_FORMATS)}")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name or fig.get_label() or "chart").strip("-") or "chart"
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in chosen:
        path = target / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=150, metadata={"Date": None} if fmt in ("svg", "pdf") else None)
        paths.append(path)
    return paths
