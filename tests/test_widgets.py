"""The widget views driven without a browser: set values, click buttons, check observers, state and outputs."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from analysis.core import zones
from analysis.core.schema import EVENT_COLUMNS, TAG_COLUMNS, conform
from analysis.summaries.tables import message_timelines
from analysis.ui import (
    AllowListBox,
    DomainCauseFilter,
    Drilldown,
    FilePicker,
    JourneyView,
    PullPanel,
    RemedyChecklist,
    TableView,
    TimeRange,
    core,
    forget,
    headless,
)
from analysis.ui.core import ResetChoices, TimeZoneChoice, for_display, recall, remember, table_html
from analysis.ui.render import filter_rows, page_rows, select_messages, sort_rows, time_steps

SCRIPT = "<script>alert(1)</script>"
PS51_HEADER = ('"Received","SenderAddress","RecipientAddress","Subject","Status","ToIP","FromIP","Size",'
               '"MessageId","MessageTraceId"')


@pytest.fixture(autouse=True)
def fresh_registry():
    forget()
    yield
    forget()


def event(minute: int, trace: str, recipient: str, kind: str, cause: str | None = None, subject: str = "Hello",
          reply: str | None = None) -> dict:
    return {"timestamp": pd.Timestamp("2026-11-16 08:00", tz="UTC") + pd.Timedelta(minutes=minute),
            "trace_id": trace, "message_id": f"<{trace}@contoso.com>", "sender": "anna@contoso.com",
            "recipient": recipient, "recipient_domain": recipient.split("@")[1], "subject": subject,
            "direction": "outbound", "event": kind, "status": {"defer": "pending", "fail": "failed"}.get(kind,
            "delivered"), "reply": reply or (f"451 4.7.0 refused ({cause})" if cause else "250 OK"),
            "cause": cause, "source_format": "messagetrace_detail"}


@pytest.fixture
def tagged() -> pd.DataFrame:
    rows = [
        event(0, "t1", "bob@tailspintoys.com", "defer", "gateway_block", SCRIPT),
        event(20, "t1", "bob@tailspintoys.com", "defer", "gateway_block", SCRIPT),
        event(40, "t1", "bob@tailspintoys.com", "deliver", subject=SCRIPT),
        event(5, "t2", "eve@tailspintoys.com", "defer", "gateway_block"),
        event(1500, "t2", "eve@tailspintoys.com", "fail", "gateway_block", reply="550 4.4.7 Message expired"),
        event(60, "t3", "max@adventure-works.com", "defer", "greylisting"),
        event(75, "t3", "max@adventure-works.com", "deliver"),
        event(90, "t4", "ida@gmail.com", "fail", "auth_policy"),
        event(3000, "t5", "joe@fabrikam.com", "deliver"),
    ]
    return conform(pd.DataFrame(rows), {**EVENT_COLUMNS, **TAG_COLUMNS})


def ps51_trace(path: Path, rows: int = 3) -> Path:
    lines = [PS51_HEADER] + [
        f'"11/16/2026 {8 + n}:00:00 AM","anna@contoso.com","bob{n}@tailspintoys.com","Invoice {n}","Delivered",'
        f'"68.232.140.21","40.107.1.{n}","1234","<m{n}@contoso.com>","0000000{n}-4c90-41bf-fef5-08d837917e7c"'
        for n in range(rows)]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def uploaded(name: str, data: bytes) -> tuple[dict, ...]:
    """A FileUpload value as the browser sends it."""
    return ({"name": name, "type": "text/plain", "size": len(data), "content": memoryview(data),
             "last_modified": datetime.now(UTC)},)


# ---------------------------------------------------------------- registry and headless

def test_registry_keeps_user_values_until_the_presets_change():
    assert recall("w", {"domain": "a.com"}) == {"domain": "a.com"}
    remember("w", domain="b.com")
    assert recall("w", {"domain": "a.com"}) == {"domain": "b.com"}  # re-run: the user's choice survives
    assert recall("w", {"domain": "c.com"}) == {"domain": "c.com"}  # a new parameter value wins
    assert recall(None, {"domain": "a.com"}) == {"domain": "a.com"}


def test_reset_remembered_choices(tagged):
    assert "No remembered choices" in ResetChoices().status.value
    picker = DomainCauseFilter(tagged, name="02.drill.filter")
    TableView(tagged, name="02.replies")  # built, never changed: nothing to forget
    picker.domain_box.value = "gmail.com"
    reset = ResetChoices()
    assert reset.remembered == ["02.drill.filter"] and "02.drill.filter" in reset.status.value
    reset.button.click()
    assert reset.remembered == [] and "Forgot the choices of 02.drill.filter" in reset.status.value
    assert "Run the cells below again" in reset.status.value
    assert DomainCauseFilter(tagged, name="02.drill.filter").domain is None  # the re-run starts from the presets
    assert reset.reset() == [] and "Nothing was remembered" in reset.status.value


def test_a_live_view_leaves_a_saved_copy_that_follows_it(tagged, monkeypatch):
    shown, copies = [], []

    class Handle:
        def update(self, item):
            copies.append(item.data)

    def display(item, display_id=False):
        shown.append(item)
        return Handle() if display_id else None

    def no_running_loop():
        raise RuntimeError("no running event loop")

    monkeypatch.setenv("EXO_DEFERRALS_STATIC", "0")  # live: someone sees the widget
    monkeypatch.setattr(core, "display", display)
    # driven from plain Python: the copy is updated at once. (Playwright's sync API, used by the browser tests of
    # the same session, leaves its event loop marked running in this thread; a kernel's loop would run the update.)
    monkeypatch.setattr(core.asyncio, "get_running_loop", no_running_loop)
    drill = Drilldown(tagged, name=None)
    drill._ipython_display_()
    assert shown[0] is drill.widget and "exo-live" in drill.widget._dom_classes
    first = shown[1].data
    assert 'class="exo-saved-copy"' in first and "Domain: all domains" in first
    assert '<img alt="chart"' in first and "data:image/png;base64," in first  # the journey chart, embedded
    assert "&lt;script&gt;" in first and SCRIPT not in first  # still escaped
    drill.filter.domain_box.value = "gmail.com"
    assert copies and "Domain: gmail.com" in copies[-1] and "ida@gmail.com" in copies[-1]
    assert "bob@tailspintoys.com" not in copies[-1]  # the copy shows what the widget shows now
    monkeypatch.setenv("EXO_DEFERRALS_STATIC", "1")  # headless: the static items themselves, no saved copy
    shown.clear()
    drill._ipython_display_()
    assert shown[0] is drill.widget and not any('class="exo-saved-copy"' in str(getattr(i, "data", ""))
                                                for i in shown[1:])


def test_headless_detection_and_override(monkeypatch):
    monkeypatch.delenv("EXO_DEFERRALS_STATIC", raising=False)
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    assert headless()  # no kernel at all
    monkeypatch.setenv("SERVER_SOFTWARE", "voila/0.5.13")
    assert not headless()
    monkeypatch.setenv("EXO_DEFERRALS_STATIC", "1")
    assert headless()
    monkeypatch.setenv("EXO_DEFERRALS_STATIC", "0")
    assert not headless()


def test_table_html_escapes_trace_text_and_headers():
    frame = pd.DataFrame({"subject": [SCRIPT, pd.NA], "<b>col</b>": ["x", "=1+1"]}).astype("string")
    text = table_html(frame)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;col&lt;/b&gt;" in text and "<NA>" not in text and "&lt;NA&gt;" not in text


def test_long_replies_are_cut_with_the_full_text_on_demand():
    reply = "451 4.7.1 <bob@tailspintoys.com>: Recipient address rejected: " + "policy " * 40 + SCRIPT
    text = table_html(pd.DataFrame({"reply": [reply, "250 OK"]}).astype("string"))
    cell = re.search(r"<td>(<details>.*?</details>)</td>", text, re.S).group(1)
    summary = re.search(r"<summary>(.*?)</summary>", cell, re.S).group(1)
    assert summary.endswith("…") and len(summary) < 200 and "&lt;bob@tailspintoys.com&gt;" in summary
    assert cell.endswith("&lt;script&gt;alert(1)&lt;/script&gt;</details>") and SCRIPT not in text  # full, escaped
    assert "<td>250 OK</td>" in text  # short text as it is


# ---------------------------------------------------------------- pure functions

def test_filter_sort_page(tagged):
    assert set(filter_rows(tagged, "TAILSPIN")["trace_id"]) == {"t1", "t2"}
    assert set(filter_rows(tagged, "expired", "reply")["trace_id"]) == {"t2"}
    assert filter_rows(tagged, "  ") is tagged
    assert set(filter_rows(tagged, "greylist")["trace_id"]) == {"t3"}  # categorical column
    ordered = sort_rows(tagged, "recipient", ascending=False)
    assert ordered["recipient"].iloc[0] == "max@adventure-works.com"
    assert list(page_rows(tagged, 2, 4).index) == [4, 5, 6, 7]
    assert list(page_rows(tagged, 99, 4).index) == [8]


def test_time_steps_are_hourly_for_a_week():
    steps = time_steps(pd.Series(pd.to_datetime(["2026-11-16 00:10", "2026-11-22 23:50"], utc=True)))
    assert steps[0] == pd.Timestamp("2026-11-16", tz="UTC") and steps[-1] == pd.Timestamp("2026-11-23", tz="UTC")
    assert len(steps) == 7 * 24 + 1
    assert time_steps(pd.Series([], dtype="datetime64[ns, UTC]")) == []


def test_select_messages_keeps_whole_messages(tagged):
    chosen = select_messages(tagged, "TailspinToys.com", None)
    assert set(chosen["trace_id"]) == {"t1", "t2"}
    chosen = select_messages(tagged, None, "greylisting")
    assert list(chosen["event"]) == ["defer", "deliver"]  # the delivery of the greylisted message too


# ---------------------------------------------------------------- FilePicker

def test_file_picker_loads_and_reports(tmp_path):
    ps51_trace(tmp_path / "trace.csv")
    picker = FilePicker(tmp_path / "trace.csv", name=None)
    assert picker.error is None and picker.problems == []
    assert len(picker.events) == 3
    assert "Loaded 3 events from 1 files" in picker.status.value
    assert "trace.csv" in picker.report_html.value and "<table" in picker.report_html.value
    assert picker.progress.value == picker.progress.max == 1 and picker.progress_box.layout.display == "none"
    assert "combining the files" in picker.progress_text.value


def test_file_picker_broken_file_is_a_friendly_message_and_the_rest_loads(tmp_path):
    ps51_trace(tmp_path / "good.csv")
    (tmp_path / "broken.csv").write_text('"Foo","Bar"\n"1","2"\n', encoding="utf-8")
    loads = []
    picker = FilePicker([tmp_path / "good.csv", tmp_path / "broken.csv"], name=None, load=False)
    picker.on_load(lambda events, report: loads.append((len(events), report.ok)))
    picker.load_button.click()
    assert loads == [(3, False)]
    assert picker.error is None
    assert picker.problems[0] == "1 of 2 files could not be loaded (the others were):"
    assert "broken.csv" in picker.problems[1] and "unknown header" in picker.problems[1]
    assert "Traceback" not in picker.status.value and "broken.csv" in picker.status.value


@pytest.mark.parametrize("paths, expected", [
    ("", "Enter a file, a folder or a glob pattern"),
    ("/no/such/folder/*.csv", "no files found"),
])
def test_file_picker_nothing_to_load(paths, expected):
    picker = FilePicker(paths, name=None)
    assert expected in picker.error and picker.events.empty
    assert "exo-error" in picker.status.value


def test_file_picker_unexpected_error_has_no_traceback(tmp_path, monkeypatch):
    ps51_trace(tmp_path / "trace.csv")

    def boom(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr("analysis.ui.views.open_trace", boom)  # what FilePicker loads with
    picker = FilePicker(tmp_path / "trace.csv", name=None)
    assert "unexpected problem (KeyError: 'surprise')" in picker.error
    assert "Traceback" not in picker.status.value and "KeyError" in picker.details()


def test_file_picker_browser_and_upload(tmp_path):
    (tmp_path / "sub").mkdir()
    ps51_trace(tmp_path / "sub" / "a.csv")
    (tmp_path / "notes.md").write_text("not a trace")
    picker = FilePicker(tmp_path, name=None, load=False)
    labels = [label for label, _ in picker.browser.options]
    assert labels[0].startswith("..") and "sub/" in labels and not any("notes" in lb for lb in labels)
    picker.browser.value = str(tmp_path / "sub")  # opens the folder
    assert picker.path_box.value == str(tmp_path / "sub")
    assert any(label.startswith("a.csv") for label, _ in picker.browser.options)
    picker.browser.value = str(tmp_path / "sub" / "a.csv")
    assert picker.paths == [str(tmp_path / "sub" / "a.csv")]

    picker.upload.value = uploaded("uploaded.csv", (tmp_path / "sub" / "a.csv").read_bytes())
    assert picker.paths[0].endswith("uploaded.csv") and len(picker.events) == 3


def test_file_picker_remembers_the_paths(tmp_path):
    ps51_trace(tmp_path / "a.csv")
    ps51_trace(tmp_path / "b.csv", rows=2)
    first = FilePicker(tmp_path / "a.csv", name="files")
    first.paths = tmp_path / "b.csv"
    first.load()
    rerun = FilePicker(tmp_path / "a.csv", name="files")  # the same cell run again
    assert rerun.paths == [str(tmp_path / "b.csv")] and len(rerun.events) == 2
    changed = FilePicker([tmp_path / "a.csv", tmp_path / "b.csv"], name="files")  # new parameter value
    assert len(changed.paths) == 2


# ---------------------------------------------------------------- TimeRange

def test_time_range(tagged):
    seen = []
    window = TimeRange(tagged, start="2026-11-16 10:30", name="time")
    window.observe(lambda start, end: seen.append((start, end)))
    assert window.start == pd.Timestamp("2026-11-16 10:00", tz="UTC")  # the hour it falls in
    assert window.end == pd.Timestamp("2026-11-18 10:00", tz="UTC")  # the last event, on the hour
    assert set(window.apply(tagged)["trace_id"]) == {"t2", "t5"}
    window.end = "2026-11-17 12:00"
    assert seen[-1] == (pd.Timestamp("2026-11-16 10:00", tz="UTC"), pd.Timestamp("2026-11-17 12:00", tz="UTC"))
    again = TimeRange(tagged, start="2026-11-16 10:30", name="time")
    assert again.end == pd.Timestamp("2026-11-17 12:00", tz="UTC")
    empty = TimeRange(tagged.iloc[:0], name=None)
    assert empty.start is None and empty.slider.disabled


# ---------------------------------------------------------------- DomainCauseFilter

def test_domain_cause_filter(tagged):
    chosen = []
    picker = DomainCauseFilter(tagged, name="drill")
    picker.observe(lambda domain, cause: chosen.append((domain, cause)))
    labels = [label for label, _ in picker.domain_box.options]
    assert labels[0] == "(all domains)"
    assert labels[1] == "tailspintoys.com — 2 messages, 4 deferrals/failures"  # most affected first
    assert "fabrikam.com" in labels  # domains without problems are choosable too
    assert [v for _, v in picker.cause_box.options][1] == "gateway_block"
    picker.domain_box.value = "adventure-works.com"
    assert chosen == [("adventure-works.com", None)]  # one callback, none for the narrowed cause list
    assert set(picker.selection(tagged)["trace_id"]) == {"t3"}
    assert [v for _, v in picker.cause_box.options] == ["", "greylisting"]  # the domain narrows the causes
    picker.cause = "gateway_block"  # not a cause of that domain: the domain stays, the note says why
    assert chosen[-1] == ("adventure-works.com", None) and set(picker.selection(tagged)["trace_id"]) == {"t3"}
    assert "no message to adventure-works.com was deferred or failed for gateway_block" in picker.note.value
    picker.cause_box.value = "greylisting"
    assert chosen[-1] == ("adventure-works.com", "greylisting")
    again = DomainCauseFilter(tagged, name="drill")
    assert (again.domain, again.cause) == ("adventure-works.com", "greylisting")


def test_domain_and_cause_choices_narrow_each_other(tagged):
    picker = DomainCauseFilter(tagged, name=None)
    picker.cause_box.value = "gateway_block"
    assert [label for label, _ in picker.domain_box.options] == [
        "(all domains)", "tailspintoys.com — 2 messages, 4 deferrals/failures"]
    picker.cause_box.value = ""  # back to all causes: every domain again, with its own counts
    assert len(picker.domain_box.options) == 5 and "fabrikam.com" in [v for _, v in picker.domain_box.options]
    picker.domain_box.value = "gmail.com"
    assert [label for label, _ in picker.cause_box.options] == [
        "(all causes)", "auth_policy — 1 message, 1 deferrals/failures"]
    picker.domain_box.value = "fabrikam.com"  # delivered only: no cause to narrow to
    assert [v for _, v in picker.cause_box.options] == [""]
    # every offered pair selects messages: no empty table is reachable from the boxes
    for domain in [v for _, v in DomainCauseFilter(tagged, name=None).domain_box.options]:
        picker.domain_box.value = domain
        for _, cause in picker.cause_box.options:
            picker.cause_box.value = cause
            assert not picker.selection(tagged).empty, (domain, cause)
        picker.cause_box.value = ""


def test_domain_cause_filter_preset_from_parameters(tagged):
    picker = DomainCauseFilter(tagged, domain="TailspinToys.com", name=None)
    assert picker.domain == "tailspintoys.com" and picker.cause is None
    unknown = DomainCauseFilter(tagged, domain="nowhere.example", cause="greylisting", name=None)
    assert unknown.domain is None and unknown.cause == "greylisting"
    assert "nowhere.example" in unknown.note.value and "does not occur" in unknown.note.value


# ---------------------------------------------------------------- TableView

def test_table_view_filter_sort_page_and_export(tagged, tmp_path):
    table = TableView(tagged[["trace_id", "recipient", "subject", "event"]], title="Events", page_size=10,
                      export_dir=tmp_path)
    assert table.pages == 1 and len(table.visible) == 9
    assert SCRIPT not in table.table.value and "&lt;script&gt;" in table.table.value
    table.filter_text = "tailspin"
    assert len(table.filtered) == 5 and "of 5 (filtered from 9)" in table.page_label.value
    table.sort_by, table.ascending = "recipient", False
    assert table.visible["recipient"].iloc[0] == "eve@tailspintoys.com"
    table.page_size = 2
    assert table.pages == 3 and table.page == 1
    table.next_button.click()
    table.next_button.click()
    assert table.page == 3 and len(table.visible) == 1 and table.next_button.disabled
    table.next_button.click()
    assert table.page == 3
    table.previous_button.click()
    assert table.page == 2

    table.export_button.click()
    written = table.last_export
    assert written.parent == tmp_path and written.suffix == ".csv"
    exported = pd.read_csv(written)
    assert len(exported) == 5 and list(exported["recipient"][:2]) == ["eve@tailspintoys.com"] * 2
    link = re.search(r'href="data:text/csv;base64,([^"]+)"', table.export_link.value)
    assert base64.b64decode(link[1]) == written.read_bytes()


def test_table_view_export_guards_formulas(tmp_path):
    table = TableView(pd.DataFrame({"subject": ['=HYPERLINK("http://x","y")', "fine"]}), export_dir=tmp_path)
    table.export()
    assert table.last_export.read_text().splitlines()[1].startswith('"\'=HYPERLINK')


def test_table_view_new_data_keeps_filter_and_remembers(tagged):
    table = TableView(tagged, name="events", filter_text="gmail")
    assert len(table.filtered) == 1
    table.filter_column = "recipient"
    table.data = tagged[tagged["recipient_domain"] != "gmail.com"]
    assert table.filtered.empty and "no rows match" in table.table.value
    again = TableView(tagged, name="events", filter_text="gmail")
    assert again.filter_column == "recipient" and len(again.filtered) == 1


def test_table_view_column_chooser_hides_exports_and_remembers(tagged, tmp_path):
    columns = ["trace_id", "recipient", "subject", "event"]
    table = TableView(tagged[columns], name="chooser", export_dir=tmp_path)
    assert table.shown_columns == columns and table.columns_panel.selected_index is None  # collapsed, all shown
    table.columns_box.value = ("recipient", "event")  # what a Ctrl-click in the list does
    assert list(table.visible.columns) == ["recipient", "event"]
    assert "<th>subject</th>" not in table.table.value and "<th>recipient</th>" in table.table.value
    assert list(table.filtered.columns) == columns  # filtering and sorting still see every column
    table.filter_text = "Hello"  # a hidden column still filters
    assert len(table.filtered) == 6
    assert list(pd.read_csv(table.export()).columns) == ["recipient", "event"]
    table.shown_columns = []
    assert "No column is shown" in table.table.value
    with pytest.raises(ValueError, match=r"^no column nope: expected some of trace_id, recipient, subject, event$"):
        table.shown_columns = ["nope"]
    table.shown_columns = ["subject"]
    wider = tagged[[*columns, "cause"]]
    again = TableView(wider, name="chooser")  # rebuilt (cell re-run) on data with a new column
    assert again.shown_columns == ["subject", "cause"]  # hidden ones stay hidden, the new column shows
    again.data = tagged[["recipient", "cause"]]  # other data (a new trace loaded): its own columns
    assert again.shown_columns == ["cause"] and list(again.visible.columns) == ["cause"]


# ---------------------------------------------------------------- AllowListBox

ALLOWLIST = """PARTNER_MICROSOFT365:
    40.92.0.0/15
    40.107.0.0/16
    104.47.0.0/17
    2a01:111:f403::/48
    157.0.0.0/8
    $TRUSTED
ALL
    $BLOCKED
"""


def test_allowlist_box_paste_and_audit(tmp_path):
    audits = []
    box = AllowListBox(name=None, export_dir=tmp_path)
    box.on_audit(audits.append)
    assert box.audit is None and box.status.value == ""
    box.text = ALLOWLIST
    box.audit_button.click()
    assert box.error is None and len(audits) == 1
    assert "52.100.0.0/14" in box.missing_cidrs
    assert "52.100.0.0/14" in box.findings.value and "157.0.0.0/8" in box.findings.value  # missing, over-broad
    corrected = box.corrected_path.read_text()
    assert "52.100.0.0/14" in corrected and "exo-deferrals" in corrected
    assert "Download allowlist-corrected" in box.download.value
    assert "version" in box.changes.value


def test_allowlist_box_upload_and_output_format(tmp_path):
    box = AllowListBox(name=None, export_dir=tmp_path, output_format="postfix")
    box.upload.value = uploaded("hat.txt", ALLOWLIST.encode("utf-16"))
    assert box.audit is not None and box.audit.source == "hat.txt"
    assert box.text.startswith("PARTNER_MICROSOFT365:")
    assert "52.100.0.0/14 OK" in box.corrected_path.read_text()


def test_allowlist_box_friendly_errors(tmp_path):
    box = AllowListBox(name=None, export_dir=tmp_path)
    box.run()
    assert "Paste the allow-list" in box.error
    box.text = "<b>nothing</b> useful"
    box.run()
    assert "could not be audited" in box.error and "<b>" not in box.status.value
    secret = tmp_path / "secret.txt"
    secret.write_text("10.0.0.0/8\n")
    box.text = str(secret)  # pasted text is the list itself, never a path to read
    box.run()
    assert box.audit is None and "10.0.0.0/8" not in box.text
    missing = AllowListBox(tmp_path / "nope.txt", name=None, export_dir=tmp_path)
    assert "cannot read" in missing.error and missing.audit is None


def test_allowlist_box_from_a_file_remembers_edits(tmp_path):
    path = tmp_path / "hat.txt"
    path.write_text(ALLOWLIST)
    box = AllowListBox(path, name="allow", export_dir=tmp_path)
    assert box.audit.source == str(path) and box.text == ALLOWLIST
    box.text = ALLOWLIST.replace("    40.92.0.0/15\n", "")
    box.run()
    rerun = AllowListBox(path, name="allow", export_dir=tmp_path)
    assert "40.92.0.0/15" in rerun.missing_cidrs


# ---------------------------------------------------------------- journey, drill-down, remedies

def test_journey_view_picks_the_most_deferred_message_and_draws_it(tagged):
    seen = []
    view = JourneyView(tagged, name="journey")
    view.observe(seen.append)
    assert view.message == "t1 → bob@tailspintoys.com"  # two deferrals, the most
    assert view.png.startswith(b"\x89PNG") and view.image.value == view.png
    assert list(view.journey["event"]) == ["defer", "defer", "deliver"]
    assert "Journey of t1 to bob@tailspintoys.com: 3 events" in view.caption.value
    assert "&lt;script&gt;" not in view.caption.value and SCRIPT not in view.events.value
    before = view.png
    view.picker.value = "t3 → max@adventure-works.com"
    assert seen == ["t3 → max@adventure-works.com"] and view.png != before
    view.message = "<t4@contoso.com>"  # a Message-ID picks that message
    assert view.message == "t4 → ida@gmail.com"
    again = JourneyView(tagged, name="journey")
    assert again.message == "t4 → ida@gmail.com"


def test_journey_view_without_messages(tagged):
    view = JourneyView(tagged, message_timelines(tagged).iloc[:0], name=None)
    assert view.message is None and view.png == b"" and "No messages match" in view.caption.value
    assert view.static()[0].data == view.caption.value


def test_drilldown_follows_the_domain_and_cause(tagged):
    drill = Drilldown(tagged, name=None)
    assert len(drill.messages.data) == 5 and drill.journey.message == "t1 → bob@tailspintoys.com"
    drill.filter.domain_box.value = "adventure-works.com"
    assert list(drill.messages.data["recipient"]) == ["max@adventure-works.com"]
    assert list(drill.replies.data["cause"].astype(str)) == ["greylisting"]
    assert drill.journey.message == "t3 → max@adventure-works.com"
    assert "adventure-works.com" in drill.journey.caption.value
    drill.filter.domain_box.value = ""
    drill.filter.cause_box.value = "auth_policy"
    assert list(drill.messages.data["recipient"]) == ["ida@gmail.com"]
    static = "".join(item.data for item in drill.static() if hasattr(item, "data") and isinstance(item.data, str))
    assert "ida@gmail.com" in static


def test_drilldown_empty_selection_says_so_and_shows_no_broken_image(tagged):
    drill = Drilldown(tagged[tagged["recipient_domain"].astype(str) != "gmail.com"], name=None)
    assert drill.journey.image.layout.display is None and not drill.empty.value
    drill.filter.domain_box.value = "fabrikam.com"  # delivered without deferral: its message shows
    assert list(drill.messages.data["recipient"]) == ["joe@fabrikam.com"]
    empty = Drilldown(tagged.iloc[:0], name=None)
    assert "This trace has no messages to show." in empty.empty.value
    assert empty.results.layout.display == "none" and empty.journey.image.layout.display == "none"
    assert [item.data for item in empty.static()][-1] == empty.empty.value


def test_drilldown_preset_from_parameters(tagged):
    drill = Drilldown(tagged, domain="tailspintoys.com", message="t2", name="drill")
    assert drill.filter.domain == "tailspintoys.com" and drill.journey.message == "t2 → eve@tailspintoys.com"
    assert set(drill.messages.data["recipient"]) == {"bob@tailspintoys.com", "eve@tailspintoys.com"}


def test_remedy_checklist(tagged):
    checklist = RemedyChecklist(tagged, name="remedies")
    assert checklist.remedies["cause"].iloc[0] == "gateway_block"  # two recipients, the most
    assert set(checklist.remedies["cause"]) == {"gateway_block", "auth_policy", "greylisting"}
    assert checklist.done == {"gateway_block": False, "auth_policy": False, "greylisting": False}
    checklist.boxes["gateway_block"].value = True
    assert "☑ <b>gateway_block</b>" in checklist.static()[0].data
    assert RemedyChecklist(tagged, name="remedies").done["gateway_block"]
    empty = RemedyChecklist(tagged[tagged["event"] == "deliver"], name=None)
    assert empty.boxes == {} and "no remedies needed" in empty.static()[0].data


def test_every_chart_gets_png_and_svg_downloads(tmp_path):
    import base64
    import re

    from matplotlib.figure import Figure

    from analysis.ui.core import chart_downloads_html

    figure = Figure(label="trend")
    figure.subplots().plot([0, 1], [1, 0])
    page = chart_downloads_html(figure, directory=tmp_path)
    written = sorted(p.suffix for p in tmp_path.iterdir())
    assert written == [".png", ".svg"] and all(p.name.startswith("trend-") for p in tmp_path.iterdir())
    links = dict(re.findall(r'download="[^"]+(\.png|\.svg)" href="data:[^;]+;base64,([^"]+)"', page))
    assert base64.b64decode(links[".png"]).startswith(b"\x89PNG") and b"<svg" in base64.b64decode(links[".svg"])


def test_window_chart_follows_the_slider_with_its_table(tagged, tmp_path, monkeypatch):
    from analysis.charts import plot_top_domains
    from analysis.summaries.tables import summarize_domains
    from analysis.ui.views import WindowChart

    monkeypatch.chdir(tmp_path)  # the chart downloads go to ./exports
    window = TimeRange(tagged, name=None)
    table = TableView(summarize_domains(tagged), name=None)
    view = WindowChart(window, tagged, lambda frame: plot_top_domains(summarize_domains(frame)),
                       table=summarize_domains, table_view=table)
    before, everything = view.png, len(view.frame)
    assert everything == len(tagged) and f"{everything:,} events" in view.caption.value
    window.end = window.start  # the first hour only: fewer events, another chart, another table
    assert len(view.frame) < everything and view.png != before
    assert f"{len(view.frame):,} events" in view.caption.value
    assert set(table.data["recipient_domain"]) == set(view.frame["recipient_domain"].astype(str))
    assert "image/svg+xml" in view.downloads.value and sorted(p.suffix for p in (tmp_path / "exports").iterdir())


def no_running_loop():
    raise RuntimeError("no running event loop")


def test_loading_other_files_marks_the_views_below_out_of_date(tmp_path, tagged, monkeypatch):
    from analysis import tag
    from analysis.charts import plot_top_domains
    from analysis.summaries.tables import summarize_domains

    copies: list[str] = []
    updated: dict[int, str] = {}  # display handle -> its last content

    class Handle:
        def update(self, item):
            copies.append(item.data)
            updated[id(self)] = item.data

    monkeypatch.setenv("EXO_DEFERRALS_STATIC", "0")  # live: someone sees the widgets
    monkeypatch.chdir(tmp_path)  # the chart downloads go to ./exports
    monkeypatch.setattr(core, "display", lambda item, display_id=False: Handle() if display_id else None)
    monkeypatch.setattr(core.asyncio, "get_running_loop", no_running_loop)
    above = TableView(tagged, name=None)  # a cell above the picker: not fed by it
    above._ipython_display_()
    files = FilePicker(str(ps51_trace(tmp_path / "first.csv", rows=3)), name=None, load=False)
    files._ipython_display_()
    files.load()
    events = TableView(files.events, title="All events", name=None)
    window = TimeRange(files.events, name=None)
    pull = PullPanel(files, name=None)  # feeds the picker: never out of date
    for view in (events, window, pull):
        view._ipython_display_()
    domains = summarize_domains(tag(files.events))
    core.show_table(domains)  # a table and a chart a cell below shows, static
    core.show_chart(plot_top_domains(domains))
    table, chart = core.shown_after(pull)
    assert events.out_of_date is None and window.out_of_date is None and table.out_of_date is None

    files.paths = str(ps51_trace(tmp_path / "second.csv", rows=5))
    assert len(files.load()) == 5
    for view in (events, window):
        assert view.out_of_date.startswith("Out of date: this shows the files loaded before (3 events from ")
        assert "first.csv" in view.out_of_date and "Run the steps below again" in view.out_of_date
        banner = view.widget.children[0]
        assert "exo-out-of-date" in banner._dom_classes and "Out of date" in banner.value
    assert "Out of date" in copies[-1]  # the saved copy says so too
    for static in (table, chart):  # shown again with the banner above the same content
        assert static.out_of_date == events.out_of_date
        shown = updated[id(static.handle)]
        assert shown.startswith('<div class="exo-out-of-date">') and "first.csv" in shown
    assert "tailspintoys.com" in updated[id(table.handle)] and "data:image/png;base64," in updated[id(chart.handle)]
    assert above.out_of_date is None and pull.out_of_date is None and files.out_of_date is None
    children = len(events.widget.children)
    files.load()  # once more: still one banner, now naming the second files
    assert len(events.widget.children) == children and "5 events from" in events.out_of_date

    monkeypatch.setenv("SERVER_SOFTWARE", "voila/0.5.13")  # in the app no cell can be run again: it says so
    core.show_html("<p>what is wrong</p>")  # and a block it shows is a widget (Voila applies no display update)
    block = core.shown_after(pull)[-1]
    assert block.handle is None and block.live.value == "<p>what is wrong</p>"
    files.load()
    assert "this app cannot run the steps again" in events.out_of_date
    assert block.live.value.startswith('<div class="exo-out-of-date">') and "<p>what is wrong</p>" in block.live.value


def test_for_display_shows_times_in_the_chosen_zone():
    frame = pd.DataFrame({"aware": pd.to_datetime(["2026-11-16 08:00", "2026-07-01 12:30"], utc=True),
                          "naive": pd.to_datetime(["2026-11-16 08:00", None])})  # naive times are UTC
    assert for_display(frame)["aware"].tolist() == ["2026-11-16 08:00:00", "2026-07-01 12:30:00"]
    shown = for_display(frame, tz="America/New_York")  # EST in November, EDT in July (IANA tz database)
    assert shown["aware"].tolist() == ["2026-11-16 03:00:00 EST", "2026-07-01 08:30:00 EDT"]
    assert shown["naive"].tolist() == ["2026-11-16 03:00:00 EST", ""]
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        for_display(frame, tz="Mars/Olympus")


def test_time_zone_choice_moves_every_table_and_window(tagged, tmp_path, monkeypatch):
    from analysis.charts import plot_top_domains
    from analysis.summaries.tables import summarize_domains
    from analysis.ui.views import WindowChart

    monkeypatch.chdir(tmp_path)  # the chart downloads go to ./exports
    window = TimeRange(tagged, name=None)
    table = TableView(tagged[["timestamp", "recipient"]], name=None, sort_by="timestamp", page_size=1)
    chart = WindowChart(window, tagged, lambda frame: plot_top_domains(summarize_domains(frame)))
    journey = JourneyView(tagged, name=None)
    assert '<td><span style="white-space:nowrap">2026-11-16 08:00:00</span></td>' in table.table.value
    assert "UTC" in chart.caption.value
    start, chart_png, journey_png = window.start, chart.png, journey.png
    choice = TimeZoneChoice(name=None)
    try:
        assert choice.zone == "UTC"  # the default
        choice.zone = "Europe/Berlin"  # CET, UTC+1 in November
        assert choice.zone == zones.display_zone() == "Europe/Berlin" and choice.error is None
        assert '<td><span style="white-space:nowrap">2026-11-16 09:00:00 CET</span></td>' in table.table.value
        assert window.slider.description == "Time (Europe/Berlin)" and window.slider.label[0] == "2026-11-16 09:00"
        assert window.start == start  # relabelled, not moved
        assert chart.caption.value.count("Europe/Berlin") == 1 and "Window 2026-11-16 09:00 to " in chart.caption.value
        assert "Europe/Berlin" in journey.caption.value and " CET</span></td>" in journey.events.value
        assert chart.png != chart_png and journey.png != journey_png  # the charts redrawn: titles, time axis
        choice.zone = "Mars/Olympus"  # not a zone: one line, and the zone stays
        assert choice.error.startswith("unknown time zone 'Mars/Olympus'") and choice.zone == "Europe/Berlin"
        assert "times stay in Europe/Berlin" in choice.note.value
    finally:
        zones.set_display_zone("UTC")
    assert '<td><span style="white-space:nowrap">2026-11-16 08:00:00</span></td>' in table.table.value
