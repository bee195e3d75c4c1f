"""analysis.charts.figures: what each chart plots (the data behind the axes), the fixed cause colours, empty input,
escaping of trace text, and rendering to PNG and SVG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import StepPatch
from test_summaries import (  # noqa: F401 (fixtures)
    AGES,
    NOW,
    T0,
    event,
    extended_tagged,
    sample_tagged,
    story,
    tagged,
)

from analysis.charts.figures import (
    CAUSE_COLORS,
    NO_CAUSE_COLOR,
    OTHER_COLOR,
    plot_causes,
    plot_journey,
    plot_queue_ages,
    plot_retry_intervals,
    plot_source_ranges,
    plot_top_domains,
    plot_trend,
    save,
)
from analysis.core import zones
from analysis.core.schema import CAUSES
from analysis.summaries.tables import (
    AGE_BUCKETS,
    deferral_rate_by_source_range,
    deferrals_by_hour,
    message_journey,
    message_timelines,
    queue_ages,
    retry_intervals,
    summarize_causes,
    summarize_domains,
)

ROOT = Path(__file__).resolve().parent.parent


def texts(fig: Figure) -> str:
    """Every text of a figure (titles, labels, annotations, ticks), joined."""
    found = [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text") and callable(o.get_text))]
    return "\n".join(found)


def hex_of(color) -> str:
    return to_hex(color, keep_alpha=False).lower()


def stairs(fig: Figure) -> dict[str, np.ndarray]:
    """Per StepPatch label, the heights it adds (values minus baseline)."""
    out = {}
    for patch in fig.axes[0].patches:
        if isinstance(patch, StepPatch):
            values, _, baseline = patch.get_data()
            out[patch.get_label()] = values - baseline
    return out


def step_colors(fig: Figure) -> dict[str, str]:
    return {p.get_label(): hex_of(p.get_facecolor()) for p in fig.axes[0].patches if isinstance(p, StepPatch)}


def many_domains(n: int) -> pd.DataFrame:
    """``n`` domains: domain i has i % 3 + 1 failed recipients (bad address); d0 has 3 and one pending too."""
    rows = [event(0, "fail", f"u{k}@d{i}.example", f"t{i}-{k}", cause="bad_address", reply="550 5.1.1 unknown")
            for i in range(n) for k in range(3 if i == 0 else i % 3 + 1)]
    rows.append(event(5, "defer", "p@d0.example", "tp", cause="recipient_server_down"))
    return tagged(rows)


# ---------------------------------------------------------------- palette

def test_every_cause_has_its_own_fixed_colour():
    assert set(CAUSE_COLORS) == set(CAUSES)
    colours = [c.lower() for c in CAUSE_COLORS.values()]
    assert len(set(colours)) == len(CAUSES)
    assert OTHER_COLOR.lower() not in colours and NO_CAUSE_COLOR.lower() not in colours


# ---------------------------------------------------------------- what each chart plots

def test_trend_stacks_deferrals_per_hour_by_cause():
    hours = deferrals_by_hour(story())
    fig = plot_trend(hours)
    plotted = stairs(fig)
    assert set(plotted) == {"greylisting", "gateway_block", "recipient_server_down"}
    for cause, heights in plotted.items():
        np.testing.assert_array_equal(heights, hours[cause].to_numpy())
        assert step_colors(fig)[cause] == CAUSE_COLORS[cause].lower()
    _, edges, _ = fig.axes[0].patches[0].get_data()
    assert edges[0] == mdates.date2num(T0.tz_localize(None).to_datetime64())
    assert len(edges) == len(hours) + 1
    ax = fig.axes[0]
    assert "Deferrals per hour" in ax.get_title(loc="left") and "2026-11-16 08:00" in ax.get_title(loc="left")
    assert "UTC" in ax.get_title(loc="left") and ax.get_xlabel() == "Time (UTC)" and "per hour" in ax.get_ylabel()


def test_charts_follow_the_chosen_time_zone():
    """Title spans and date axes in the zone chosen (explicitly or as the display zone), the data unchanged:
    08:00 UTC on 16 November is 09:00 in Berlin (CET, UTC+1) and 03:00 in New York (EST, UTC-5)."""
    hours = deferrals_by_hour(story())
    berlin = plot_trend(hours, tz="Europe/Berlin").axes[0]
    assert "2026-11-16 09:00" in berlin.get_title(loc="left") and "Europe/Berlin" in berlin.get_title(loc="left")
    assert berlin.get_xlabel() == "Time (Europe/Berlin)"
    assert berlin.xaxis.get_major_formatter()._tz.key == "Europe/Berlin"
    np.testing.assert_array_equal(stairs(plot_trend(hours, tz="Europe/Berlin"))["gateway_block"],
                                  hours["gateway_block"].to_numpy())
    zones.set_display_zone("America/New_York")
    try:
        chosen = plot_trend(hours).axes[0]
        ages = plot_queue_ages(queue_ages(tagged([event(0, "defer", "a@a.example", "t1", cause="unknown")]), now=NOW))
    finally:
        zones.set_display_zone("UTC")
    assert "2026-11-16 03:00" in chosen.get_title(loc="left") and chosen.get_xlabel() == "Time (America/New_York)"
    assert "at 2026-11-20 07:00 America/New_York" in ages.axes[0].get_title(loc="left")
    assert plot_trend(hours).axes[0].get_xlabel() == "Time (UTC)"
    with pytest.raises(ValueError, match=r"^unknown time zone 'Mars/Olympus': expected an IANA name"):
        plot_trend(hours, tz="Mars/Olympus")


def test_trend_keeps_the_top_causes_and_sums_the_rest():
    causes = [c for c in CAUSES if c != "unknown"][:10]
    rows = [event(i, "defer", f"u{i}-{k}@x.example", f"t{i}-{k}", cause=cause)
            for i, cause in enumerate(causes) for k in range(i + 1)]
    hours = deferrals_by_hour(tagged(rows))
    plotted = stairs(plot_trend(hours, top=8))
    assert set(plotted) == {*causes[2:], "other causes"}
    assert plotted["other causes"].sum() == 1 + 2  # the two smallest causes
    assert step_colors(plot_trend(hours, top=8))["other causes"] == OTHER_COLOR.lower()


def test_cause_breakdown_bars():
    causes = summarize_causes(story())
    fig = plot_causes(causes)
    bars = fig.axes[0].patches
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    widths = dict(zip(labels, [b.get_width() for b in bars], strict=True))
    assert widths == dict(zip(causes["cause"].astype(str), causes["recipients"].astype(float), strict=True))
    for label, bar in zip(labels, bars, strict=True):
        assert hex_of(bar.get_facecolor()) == CAUSE_COLORS[label].lower()


def bar_rows(fig: Figure) -> tuple[list[str], np.ndarray, list[str]]:
    """Top-to-bottom labels, per row the widths of each stacked segment, and each row's colour."""
    ax = fig.axes[0]
    containers = ax.containers
    ticks = {round(y): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)}
    ys = [round(p.get_y() + p.get_height() / 2) for p in containers[0].patches]
    widths = np.array([[p.get_width() for p in c.patches] for c in containers]).T
    colors = [hex_of(p.get_facecolor()) for p in containers[0].patches]
    order = np.argsort(ys)[::-1]
    return [ticks[ys[i]] for i in order], widths[order], [colors[i] for i in order]


def test_top_domains_one_domain():
    fig = plot_top_domains(summarize_domains(tagged([event(0, "defer", cause="greylisting"),
                                                     event(9, "send")])))
    labels, widths, colors = bar_rows(fig)
    assert labels == ["x.example"]
    assert widths.tolist() == [[0, 0, 1]]  # failed, pending, delivered after deferral
    assert colors == [CAUSE_COLORS["greylisting"].lower()]


def test_top_domains_five_thousand_domains_show_top_n_plus_other():
    domains = summarize_domains(many_domains(5000))
    fig = plot_top_domains(domains, top=15)
    labels, widths, colors = bar_rows(fig)
    assert len(labels) == 16 and labels[-1] == "other (4,985 domains)"
    assert labels[0] == "d0.example"  # 3 failed + 1 pending: impact 11
    assert widths[0].tolist() == [3, 1, 0]
    assert set(labels[1:15]) <= {f"d{i}.example" for i in range(2, 5000, 3)}  # three failed each
    assert widths[:, 0].sum() + widths[:, 1].sum() == domains["failed"].sum() + domains["pending"].sum()
    assert colors[-1] == OTHER_COLOR.lower()
    assert colors[1] == CAUSE_COLORS["bad_address"].lower()
    assert fig.get_figheight() < 12


def test_queue_age_heat_map_holds_the_matrix():
    rows = [event(6000 - age, "defer", f"{name}@{name}.example", f"t{name}", cause="unknown")
            for name, age in AGES.items()]
    ages = queue_ages(tagged(rows), now=NOW)
    fig = plot_queue_ages(ages)
    image = next(a for a in fig.axes[0].get_children() if isinstance(a, AxesImage))
    data = image.get_array()
    expected = ages.drop(index="TOTAL")[list(AGE_BUCKETS)].to_numpy(dtype=float)
    np.testing.assert_array_equal(data.filled(0), expected)
    assert data.mask.sum() == expected.size - len(AGES)  # empty cells are blank
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == list(ages.index[1:])
    assert [t.get_text().split("\n")[0] for t in fig.axes[0].get_xticklabels()] == list(AGE_BUCKETS)
    title = fig.axes[0].get_title(loc="left")
    assert "at 2026-11-20 12:00 UTC" in title and "10 message+recipients" in title


def test_queue_age_heat_map_top_rows_plus_other():
    rows = [event(0, "defer", f"u{k}@d{i:02d}.example", f"t{i}-{k}", cause="unknown")
            for i in range(25) for k in range(25 - i)]
    ages = queue_ages(tagged(rows), now=T0 + pd.Timedelta(minutes=7))
    image = next(a for a in plot_queue_ages(ages, top=20).axes[0].get_children() if isinstance(a, AxesImage))
    column = image.get_array().filled(0)[:, AGE_BUCKETS.index("10")]
    assert column.tolist() == [*range(25, 5, -1), 5 + 4 + 3 + 2 + 1]


def test_retry_interval_histogram():
    fig = plot_retry_intervals(retry_intervals(story()))
    plotted = stairs(fig)
    assert set(plotted) == {"greylisting", "gateway_block"}
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert plotted["greylisting"][labels.index("10-15")] == 1 and plotted["greylisting"].sum() == 1
    assert plotted["gateway_block"][labels.index("30-45")] == 1 and plotted["gateway_block"].sum() == 1
    assert step_colors(fig)["gateway_block"] == CAUSE_COLORS["gateway_block"].lower()


def test_journey_places_events_in_time_coloured_by_cause():
    fig = plot_journey(message_journey(story(), "t2"))
    scatters = {c.get_label(): c for c in fig.axes[0].collections if isinstance(c, PathCollection)}
    assert set(scatters) == {"deferral", "failure", "other event"}
    x = scatters["deferral"].get_offsets()[:, 0]
    expected = [mdates.date2num((T0 + pd.Timedelta(minutes=m)).tz_localize(None).to_datetime64()) for m in (2, 32)]
    np.testing.assert_allclose(x, expected)
    assert {hex_of(c) for c in scatters["deferral"].get_facecolors()} == {CAUSE_COLORS["gateway_block"].lower()}
    assert {hex_of(c) for c in scatters["other event"].get_facecolors()} == {NO_CAUSE_COLOR.lower()}
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["b@y.example"]
    assert "Journey of message t2" in fig.axes[0].get_title(loc="left")


def test_source_range_rates():
    rows = [event(i, "defer", f"u{i}@t.example", f"t{i}", cause="gateway_block", exo_ip=f"52.100.3.{i}",
                  exo_ip_published=True) for i in range(3)]
    rows += [event(10, "send", "u0@t.example", "t0", exo_ip="40.92.0.1", exo_ip_published=True)]
    rates = deferral_rate_by_source_range(tagged(rows))
    fig = plot_source_ranges(rates)
    labels, widths, colors = bar_rows(fig)
    assert labels == ["52.100.0.0/14 (published)", "40.92.0.0/15 (published)"]
    assert widths[:, 0].tolist() == [100.0, 0.0]
    assert colors[0] == CAUSE_COLORS["gateway_block"].lower()
    by_flag = plot_source_ranges(deferral_rate_by_source_range(tagged(rows), by="published"))
    assert bar_rows(by_flag)[0] == ["published"]


# ---------------------------------------------------------------- empty input, escaping, files

def all_charts(frame: pd.DataFrame, message: str = "t2") -> dict[str, Figure]:
    return {
        "trend": plot_trend(deferrals_by_hour(frame)),
        "causes": plot_causes(summarize_causes(frame)),
        "domains": plot_top_domains(summarize_domains(frame)),
        "queue": plot_queue_ages(queue_ages(frame)),
        "retries": plot_retry_intervals(retry_intervals(frame)),
        "journey": plot_journey(message_journey(frame, message)),
        "ranges": plot_source_ranges(deferral_rate_by_source_range(frame)),
    }


@pytest.mark.parametrize("case", ["empty", "no deferrals"])
def test_every_chart_says_when_there_is_nothing_to_show(case):
    frame = story().iloc[:0] if case == "empty" else tagged([event(0, "receive", trace="t9"),
                                                             event(1, "send", trace="t9")])
    for name, fig in all_charts(frame).items():
        if name == "journey" and case == "no deferrals":
            continue  # a message without deferrals still has a journey
        assert "Nothing to show" in texts(fig), name
        assert not fig.axes[0].axison, name


def test_trace_text_is_never_mathtext(tmp_path):
    odd = r"x$\notacommand{$@a$b$.example"
    frame = tagged([event(0, "defer", odd, "$t$", cause="gateway_block", exo_ip="52.100.0.9"),
                    event(1440, "fail", odd, "$t$", cause="gateway_block", reply="550 4.4.7 Message expired")])
    for name, fig in all_charts(frame, message="$t$").items():
        save(fig, tmp_path, formats=("png",), name=name)  # unescaped, mathtext would fail to parse
    domains = plot_top_domains(summarize_domains(frame))
    assert bar_rows(domains)[0] == [r"a\$b\$.example"]
    journey = plot_journey(message_journey(frame, "$t$"))
    assert [t.get_text() for t in journey.axes[0].get_yticklabels()] == [r"x\$\notacommand{\$@a\$b\$.example"]


def test_every_chart_renders_to_png_and_svg(tmp_path):
    for name, fig in all_charts(story()).items():
        paths = save(fig, tmp_path / name)
        assert [p.suffix for p in paths] == [".png", ".svg"]
        assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = paths[1].read_bytes()
        assert svg.startswith(b"<?xml") and b"<svg" in svg
        assert all(p.stat().st_size > 1000 for p in paths)
        assert paths[0].stem == fig.get_label()


def test_save_names_and_formats(tmp_path):
    fig = plot_causes(summarize_causes(story()))
    assert save(fig, tmp_path / "new" / "dir", formats="svg", name="Causes: week 47!") == [
        tmp_path / "new" / "dir" / "Causes-week-47.svg"]
    assert save(fig, tmp_path, formats=[".PDF"])[0].read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match="jpg"):
        save(fig, tmp_path, formats=("jpg",))


def test_charts_use_no_pyplot_state():
    code = "import sys, analysis.charts.figures; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_sample_story_charts(sample_tagged, tmp_path):  # noqa: F811 (fixture)
    domains = summarize_domains(sample_tagged)
    labels, _, colors = bar_rows(plot_top_domains(domains))
    assert labels[0] == domains.iloc[0]["recipient_domain"] and "tailspintoys.com" in labels
    assert colors[0] == CAUSE_COLORS[domains.iloc[0]["dominant_cause"]].lower()
    hours = deferrals_by_hour(sample_tagged)
    plotted = stairs(plot_trend(hours, top=len(CAUSES)))
    assert {c: h.sum() for c, h in plotted.items()} == {c: n for c, n in hours.sum().items() if n}
    timelines = message_timelines(sample_tagged)
    worst = timelines[timelines["recipient_domain"] == "tailspintoys.com"].nlargest(1, "deferrals").iloc[0]
    journey = plot_journey(message_journey(sample_tagged, worst["message"], worst["recipient"]))
    deferrals = next(c for c in journey.axes[0].collections if c.get_label() == "deferral")
    assert len(deferrals.get_offsets()) == worst["deferrals"] > 20
    for name, fig in all_charts(sample_tagged, message=worst["message"]).items():
        assert save(fig, tmp_path, name=name)


def test_sample_story_source_range_chart(extended_tagged):  # noqa: F811 (fixture)
    labels, widths, colors = bar_rows(plot_source_ranges(deferral_rate_by_source_range(extended_tagged)))
    assert labels[0] == "52.100.0.0/14 (published)" and widths[0, 0] == 100.0
    assert colors[0] == CAUSE_COLORS["gateway_block"].lower()
    assert (widths[1:, 0] == 0).all()
