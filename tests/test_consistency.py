"""One number for one thing, in every view (issue 14, point 6).

The same question must get the same number in the headline, the causes table and chart, the domain table, the
gateway table, the drill-down choices, the report and data/sample/README.md. Every assertion here is a relation
between two views of one trace (or between a view and the generator's truth), never a number copied from output.
Two traces: the bundled sample (data/sample, every export format, loaded and tagged) and a generated trace of
100,000 rows (50,000 of Get-MessageTrace and 50,000 of Get-MessageTraceDetail, ``write_big``).

Asserts that need a change in the summaries or the report (being restructured) are marked
``xfail(strict=True, reason="needs ...")``: they fail today for the reason given, and turn the suite red the
day the change lands, so the mark is removed with it.
"""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import load_trace, tag
from analysis.charts.figures import plot_causes, plot_top_domains, plot_trend
from analysis.cli import main as cli_main
from analysis.report.findings import findings, findings_html, headline_table
from analysis.sample.generator import (
    DEFAULT_MESSAGES,
    DEFAULT_SEED,
    file_rows,
    generate_story,
    intended_messages,
    write_big,
)
from analysis.sample.truth import BEGIN, ELEMENTS, END, story_facts, story_section
from analysis.summaries.tables import (
    by_gateway,
    deferrals_by_hour,
    headline,
    message_timelines,
    summarize_causes,
    summarize_domains,
)
from analysis.ui.views import DomainCauseFilter

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
BIG_ROWS_PER_FORMAT = 50_000  # two formats: a 100,000-row trace
OUTCOME_COLUMNS = ("recipients", "delivered_first_time", "delivered_after_deferral", "pending", "failed", "expired",
                   "other", "deferrals")
TRACES = ("sample", "big")


def needs(reason: str, *params: str) -> list:
    """``TRACES`` as parameters, the ones named in ``params`` (all when none) marked strict xfail for ``reason``."""
    mark = pytest.mark.xfail(strict=True, reason=f"needs {reason}")
    return [pytest.param(t, marks=mark) if not params or t in params else t for t in TRACES]


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return tag(load_trace(SAMPLE))


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("big")
    written = write_big(folder, BIG_ROWS_PER_FORMAT, formats=("messagetrace", "detail"))
    assert sum(written.values()) >= 2 * BIG_ROWS_PER_FORMAT
    return tag(load_trace(folder))


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return generate_story()


@pytest.fixture(params=TRACES)
def trace(request) -> pd.DataFrame:
    return request.getfixturevalue(request.param)


def tagged_trace(request, name: str) -> pd.DataFrame:
    return request.getfixturevalue(name)


def problem_recipients(tagged: pd.DataFrame) -> int:
    """Message+recipients deferred at least once or failed: the denominator of the headline's cause share."""
    timelines = message_timelines(tagged)
    return int(((timelines["deferrals"] > 0) | timelines["outcome"].isin(["failed", "expired"])).sum())


# ---------------------------------------------------------------- headline == domain table == causes table

def test_headline_counts_are_the_domain_table_sums(trace):
    h, domains = headline(trace), summarize_domains(trace)
    assert h["recipients"] == domains["recipients"].sum()
    assert h["deferrals"] == domains["deferrals"].sum()
    assert h["delivered"] == domains["delivered_first_time"].sum() + domains["delivered_after_deferral"].sum()
    for column in ("delivered_after_deferral", "failed", "expired", "pending"):
        assert h[column] == domains[column].sum(), column
    assert h["domains"] == len(domains)
    # a message to several domains counts once in the headline and once in each domain's row
    assert domains["messages"].max() <= h["messages"] <= domains["messages"].sum()
    worst = domains.sort_values("impact", ascending=False, kind="stable").iloc[0]
    assert (h["worst_domain"], h["worst_domain_impact"]) == (worst["recipient_domain"], worst["impact"])


def test_headline_deferrals_are_the_causes_table_deferrals(trace):
    h, causes = headline(trace), summarize_causes(trace)
    assert h["deferrals"] == causes["deferrals"].sum()  # every deferral event carries one cause
    assert (causes["events"] == causes["deferrals"] + causes["failures"]).all()
    # recipients (pairs) of a cause: never more than the pairs deferred or failed
    assert causes["recipients"].max() <= problem_recipients(trace)


def test_dominant_cause_is_the_causes_table_first_row(trace):
    h, causes = headline(trace), summarize_causes(trace)
    top = causes[causes["recipients"] == causes["recipients"].max()]
    assert h["dominant_cause"] in set(top["cause"].astype(str))
    # the headline's share is of recipients: the cause's recipients over the recipients deferred or failed
    row = causes.set_index(causes["cause"].astype(str)).loc[h["dominant_cause"]]
    assert h["dominant_cause_share"] == pytest.approx(row["recipients"] / problem_recipients(trace))


@pytest.mark.parametrize("name", TRACES)
def test_causes_table_states_the_headline_share_in_its_unit(request, name):
    trace = tagged_trace(request, name)
    h, causes = headline(trace), summarize_causes(trace)
    assert "share" not in causes.columns and "events_share" in causes.columns
    row = causes.set_index(causes["cause"].astype(str)).loc[h["dominant_cause"]]
    assert row["recipients_share"] == pytest.approx(h["dominant_cause_share"])
    assert row["events_share"] == pytest.approx(row["events"] / causes["events"].sum())


# ---------------------------------------------------------------- charts == the table column they claim

def bar_labels(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_yticklabels()]


def test_cause_chart_bars_are_the_recipients_column(trace):
    causes = summarize_causes(trace)
    fig = plot_causes(causes)
    ax = fig.axes[0]
    table = causes.set_index(causes["cause"].astype(str))
    widths = dict(zip(bar_labels(fig), (bar.get_width() for bar in ax.patches), strict=True))
    assert widths == table["recipients"].astype(float).to_dict()
    assert ax.get_xlabel().startswith("Recipients")
    notes = {t.get_text().strip() for t in ax.texts}
    assert notes == {f"{r:,} recipients, {e:,} events" for r, e in zip(table["recipients"], table["events"],
                                                                        strict=True)}


def test_top_domains_chart_bars_are_the_domain_table_columns(trace):
    domains = summarize_domains(trace)
    fig = plot_top_domains(domains, top=5)
    ax = fig.axes[0]
    shown = domains[domains["impact"] > 0].sort_values(["impact", "recipients"], ascending=False,
                                                       kind="stable").head(5)
    parts = ("failed", "pending", "delivered_after_deferral")
    widths = np.array([bar.get_width() for bar in ax.patches]).reshape(len(parts), -1)[:, :len(shown)]
    assert (shown[list(parts)].to_numpy(dtype=float) == widths.T).all()
    assert ax.get_xlabel().startswith("Recipients")


def test_trend_chart_sums_to_the_headline_deferrals(trace):
    by_hour = deferrals_by_hour(trace)
    fig = plot_trend(by_hour, top=len(by_hour.columns))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Deferral events per hour"
    heights = {p.get_label(): p.get_data().values - p.get_data().baseline for p in ax.patches}  # stacked stairs
    assert {c: h.sum() for c, h in heights.items()} == {c: by_hour[c].sum() for c in by_hour if by_hour[c].sum()}
    assert sum(h.sum() for h in heights.values()) == headline(trace)["deferrals"]


# ---------------------------------------------------------------- drill-down choices == causes table

CHOICE = re.compile(r"^(?P<value>.+?)(?: — (?P<messages>[\d,]+) messages?, (?P<events>[\d,]+) deferrals/failures)?$")


def choice_counts(options) -> dict[str, tuple[int, int]]:
    """(messages, events) per value of a drop-down's options, read from their labels."""
    out = {}
    for label, value in options:
        if value:
            m = CHOICE.match(label)
            assert m and m["events"], label
            out[value] = (int(m["messages"].replace(",", "")), int(m["events"].replace(",", "")))
    return out


def test_every_offered_cause_is_in_the_causes_table_with_its_counts(trace):
    causes = summarize_causes(trace)
    offered = choice_counts(DomainCauseFilter(trace, name=None).cause_box.options)
    assert offered == {str(c): (int(m), int(e)) for c, m, e in zip(causes["cause"], causes["messages"],
                                                                      causes["events"], strict=True)}


def test_a_domain_offers_the_causes_of_its_domain_table_row(trace):
    domains = summarize_domains(trace).set_index("recipient_domain")
    picker = DomainCauseFilter(trace, name=None)
    for domain in domains.index[:5]:
        picker.domain_box.value = domain
        offered = choice_counts(picker.cause_box.options)
        mine = summarize_causes(trace[trace["recipient_domain"].eq(domain).to_numpy(dtype=bool)])
        assert offered == {str(c): (int(m), int(e)) for c, m, e in zip(mine["cause"], mine["messages"],
                                                                          mine["events"], strict=True)}
        if domains.loc[domain, "deferrals"] or domains.loc[domain, "failed"]:
            assert str(domains.loc[domain, "dominant_cause"]) in offered
        picker.domain_box.value = ""


@pytest.mark.parametrize("name", TRACES)
def test_domains_offered_for_a_cause_add_up_to_its_causes_table_row(request, name):
    trace = tagged_trace(request, name)
    causes = summarize_causes(trace)
    picker = DomainCauseFilter(trace, name=None)
    for cause, events in zip(causes["cause"].astype(str), causes["events"], strict=True):
        picker.cause_box.value = cause
        offered = choice_counts(picker.domain_box.options)
        assert sum(e for _, e in offered.values()) == events, cause
        picker.cause_box.value = ""


@pytest.mark.parametrize("name", TRACES)
def test_domain_choice_messages_are_messages(request, name):
    trace = tagged_trace(request, name)
    cause = str(summarize_causes(trace)["cause"].iloc[0])
    picker = DomainCauseFilter(trace, cause=cause, name=None)
    for domain, (messages, _) in choice_counts(picker.domain_box.options).items():
        mine = summarize_causes(trace[trace["recipient_domain"].eq(domain).to_numpy(dtype=bool)])
        assert messages == mine.set_index(mine["cause"].astype(str)).loc[cause, "messages"], domain


# ---------------------------------------------------------------- gateway table == its domains' rows

@pytest.mark.parametrize("name", TRACES)
def test_gateway_row_is_the_sum_of_its_domain_rows(request, name):
    trace = tagged_trace(request, name)
    domains, gateways = summarize_domains(trace), by_gateway(trace)
    label = domains["gateway"].astype(object).fillna("(not identified)")
    for row in gateways.itertuples():
        behind = domains[(label == row.gateway).to_numpy()]
        assert row.domains == len(behind), row.gateway
        for column in OUTCOME_COLUMNS:
            assert getattr(row, column) == behind[column].sum(), (row.gateway, column)
        assert behind["messages"].max() <= row.messages <= behind["messages"].sum()


def test_gateway_table_adds_up_to_the_headline(trace):
    h, gateways = headline(trace), by_gateway(trace)
    for column in ("recipients", "deferrals", "failed", "expired", "pending", "delivered_after_deferral"):
        assert gateways[column].sum() == h[column], column


# ---------------------------------------------------------------- the report's numbers == the summaries'

def test_report_headline_numbers_are_the_summaries(trace):
    h = headline(trace)
    table = dict(headline_table(h).itertuples(index=False))
    assert table["Recipients (message + recipient)"] == f"{h['recipients']:,}"
    assert table["Deferred at least once"] == f"{h['deferred']:,} ({h['deferrals']:,} deferral events)"
    assert table["Failed"] == f"{h['failed']:,} ({h['expired']:,} expired after retrying)"
    said = findings(trace)
    assert said["What is wrong"][0].startswith(f"Of {h['recipients']:,} recipients, {h['deferred']:,} were deferred")
    assert html.escape(said["What is wrong"][0]) in findings_html(trace)  # the report's summary says the same
    domains = summarize_domains(trace).set_index("recipient_domain")
    for line in said.get("Which domains", []):
        domain, rest = line.split(": ", 1)
        row = domains.loc[domain]
        assert rest.startswith(f"{row['failed']:,} failed, {row['pending']:,} pending, "
                               f"{row['delivered_after_deferral']:,} late"), line


@pytest.mark.parametrize("name", TRACES)
def test_report_names_the_unit_of_the_cause_share(request, name):
    h = headline(tagged_trace(request, name))
    share = f"{h['dominant_cause_share']:.0%} of deferred or failed recipients"
    assert share in dict(headline_table(h).itertuples(index=False))["Most common cause"]
    assert share in findings(tagged_trace(request, name))["What is wrong"][1]


# ---------------------------------------------------------------- data/sample/README.md == the generator's truth

def readme_story() -> str:
    text = (SAMPLE / "README.md").read_text(encoding="utf-8")
    return text[text.index(BEGIN):text.index(END) + len(END)] + "\n"


def test_readme_story_is_the_generators_truth(truth):
    assert readme_story() == story_section(story_facts(truth), file_rows(truth), seed=DEFAULT_SEED,
                                           messages=DEFAULT_MESSAGES)


def test_story_facts_count_the_truth(truth):
    facts = story_facts(truth)
    pairs = truth.drop_duplicates(["message_id", "recipient"])
    assert facts["messages"] == truth["message_id"].nunique() == DEFAULT_MESSAGES
    assert facts["recipients"] == len(pairs) == sum(facts["recipients_by_direction"].values())
    assert sum(facts["events"].values()) == len(truth)
    assert sum(facts["statuses"].values()) == len(pairs)
    for name, e in facts["elements"].items():
        assert e["recipients"] == e["delivered"] + e["failed"] + e["pending"], name
        assert e["expired"] <= e["failed"] and e["delivered_after_deferral"] <= e["delivered"], name
        mine = truth[truth["recipient_domain"].isin(e["domains"]).to_numpy(dtype=bool)]
        assert e["deferrals"] <= int(mine["event"].eq("defer").sum()), name
    iron = facts["ironport"]
    assert iron["deferrals"] == facts["elements"]["stale IronPort allow-list"]["deferrals"]
    assert iron["deferrals_in_range"] == iron["deferrals"] and iron["sends_in_range"] == 0  # the story's claim


@pytest.mark.parametrize("messages", [DEFAULT_MESSAGES, 300])
def test_story_elements_hold_the_messages_the_generator_intends(messages):
    intended = intended_messages(messages)
    elements = story_facts(truth := generate_story(messages=messages))["elements"]
    assert {e.name: elements[e.name]["messages"] for e in ELEMENTS} == {
        e.name: sum(intended[b] for b in e.blocks) for e in ELEMENTS}
    # the hostile subjects are in the STARTTLS element's messages, so the report's expired list shows them
    litware = truth[truth["recipient_domain"].eq("litware.com").to_numpy(dtype=bool)]
    assert litware["subject"].str.contains("<script>", regex=False).any()


def data_records(path: Path) -> int:
    """Records after the header of a committed export, read with the csv module (tracking logs: non-# lines)."""
    raw = path.read_bytes()
    text = raw.decode("utf-16") if raw[:2] == b"\xff\xfe" else raw.decode("utf-8-sig")
    if path.suffix == ".LOG":
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    lines = text.split("\n", 1)[1] if text.startswith("#TYPE") else text
    delimiter = ";" if lines.split("\n", 1)[0].count(";") > lines.split("\n", 1)[0].count(",") else ","
    return sum(1 for _ in csv.reader(io.StringIO(lines, newline=""), delimiter=delimiter)) - 1


def test_readme_file_rows_are_the_committed_files(truth):
    rows = file_rows(truth)
    assert set(rows) == {p.name for p in SAMPLE.iterdir() if p.suffix in (".csv", ".LOG")}
    for name, n in rows.items():
        assert data_records(SAMPLE / name) == n, name
        assert f"| `{name}` | {n:,} |" in readme_story()


def test_sample_command_writes_the_story_into_the_readme(capsys, tmp_path, truth):
    out = tmp_path / "s"
    assert cli_main(["sample", "--out", str(out), "--formats", "allowlist"]) == 0
    assert (out / "README.md").read_text(encoding="utf-8") == story_section(
        story_facts(truth), file_rows(truth), seed=DEFAULT_SEED, messages=DEFAULT_MESSAGES)
    # an existing README keeps its own text around the markers; only the section between them is replaced
    (out / "README.md").write_text(f"# Mine\n\n{BEGIN}\nstale: 34 messages, 4 expired\n{END}\n\nkept\n",
                                   encoding="utf-8")
    assert cli_main(["sample", "--out", str(out), "--formats", "allowlist", "--messages", "300"]) == 0
    small = generate_story(messages=300)
    assert (out / "README.md").read_text(encoding="utf-8") == "# Mine\n\n" + story_section(
        story_facts(small), file_rows(small), seed=DEFAULT_SEED, messages=300) + "\nkept\n"
    capsys.readouterr()


def test_sample_command_refuses_a_readme_without_markers(capsys, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "README.md").write_text("# Mine, no markers\n", encoding="utf-8")
    assert cli_main(["sample", "--out", str(out), "--formats", "allowlist"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exo-deferrals sample: ") and "README.md: no '<!-- story:" in err and err.count("\n") == 1
    assert (out / "README.md").read_text(encoding="utf-8") == "# Mine, no markers\n"


STORY_DOMAINS = [e for e in ELEMENTS if e.domain and not e.codes and not e.recipient]
COLUMNS_OF_FACTS = {"messages": "messages", "recipients": "recipients", "deferrals": "deferrals",
                    "delivered_after_deferral": "delivered_after_deferral", "failed": "failed", "expired": "expired",
                    "pending": "pending"}


@pytest.mark.parametrize("element", STORY_DOMAINS, ids=lambda e: e.domain)
def test_sample_domain_rows_are_the_story(sample, truth, element):
    facts = story_facts(truth)["elements"][element.name]
    row = summarize_domains(sample).set_index("recipient_domain").loc[element.domain]
    assert {fact: int(row[column]) for fact, column in COLUMNS_OF_FACTS.items()} == {
        fact: facts[fact] for fact in COLUMNS_OF_FACTS}


@pytest.mark.xfail(strict=True, reason="generator: the 'blast_other' block sends 8 messages marked outbound to "
                                       "contoso.com, the tenant's own domain, which the loader rightly reads as "
                                       "internal (2,701 outbound recipients vs 2,709); fixing it regenerates "
                                       "data/sample")
def test_sample_headline_is_the_story(sample, truth):
    h, facts = headline(sample), story_facts(truth)
    outbound = truth[truth["direction"].eq("outbound").to_numpy(dtype=bool)]
    assert h["recipients"] == facts["recipients_by_direction"]["outbound"]
    assert h["messages"] == outbound["message_id"].nunique()
    assert h["deferrals"] == facts["events"]["defer"]
