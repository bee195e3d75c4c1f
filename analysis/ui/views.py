"""Widget views for the guided notebooks: pick files, a time range, a domain and cause, and page through tables.

Each view is a small class: ``.widget`` is the ipywidgets box a notebook shows, the values are plain Python
properties, ``observe``/``on_load`` register callbacks, and the heavy lifting is in :mod:`analysis.ui.render`.
A view built with ``name=`` remembers its values across re-runs of its cell (see :mod:`analysis.ui.core`).
"""

from __future__ import annotations

import html
import os
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython.display import display

from analysis.backends.operations import row_count
from analysis.backends.rows import columns_of, first_rows
from analysis.core.errors import ExoDeferralsError, TraceLoadError
from analysis.core.schema import empty_events
from analysis.core.zones import display_zone, in_zone, on_zone_change
from analysis.io.loader import TRACE_SUFFIXES, LoadReport
from analysis.store.ingest import open_trace
from analysis.summaries.tables import summarize_causes
from analysis.ui.core import (
    View,
    chart_downloads_html,
    download_html,
    export_table,
    figure_png,
    headless,
    lines_html,
    message_html,
    out_of_date_text,
    png_image,
    recall,
    remember,
    shown_after,
    static_html,
    table_html,
)
from analysis.ui.render import (
    as_utc,
    choice_label,
    filter_rows,
    in_time,
    page_count,
    page_rows,
    problem_counts,
    select_messages,
    sort_rows,
    time_steps,
)

PathsLike = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
WIDE = widgets.Layout(width="95%")


def _heading(title: str) -> str:
    return f"<b>{html.escape(title)}</b>" if title else ""


# ---------------------------------------------------------------- files

def paths_text(paths: PathsLike | None) -> str:
    """The path box text for ``paths``: several paths are separated by ``;``."""
    if paths is None:
        return ""
    if isinstance(paths, str | os.PathLike):
        return os.fspath(paths)
    return "; ".join(os.fspath(p) for p in paths)


def split_paths(text: str) -> list[str]:
    """The paths typed in the path box (separated by ``;`` or new lines)."""
    return [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]


def folder_listing(folder: Path) -> list[tuple[str, str]]:
    """(label, path) of the parent, the sub-folders and the trace-like files of ``folder``, for the browser."""
    entries = [(".. (up one folder)", str(folder.parent))] if folder.parent != folder else []
    try:
        children = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
    except OSError:
        return entries
    for child in children:
        if child.name.startswith("."):
            continue
        if child.is_dir():
            entries.append((f"{child.name}/", str(child)))
        elif child.suffix.lower() in TRACE_SUFFIXES:
            entries.append((f"{child.name}  ({child.stat().st_size / 1024:,.0f} KB)", str(child)))
    return entries


def load_problems(report: LoadReport | None) -> list[str]:
    """Plain-language problems of a load: files not loaded, event/status values not known, rejected rows."""
    if report is None:
        return []
    lines = []
    failed = [f for f in report.files if f.error]
    if failed:
        if len(failed) < len(report.files):
            lines.append(f"{len(failed)} of {len(report.files)} files could not be loaded (the others were):")
        else:
            lines.append("The file could not be loaded:" if len(failed) == 1 else "No file could be loaded:")
        lines += [f"• {f.path}: {f.error.removeprefix(f.path).lstrip(':, ')}" for f in failed]
    skipped = [f for f in report.files if f.skipped]
    if skipped:
        lines.append(f"{len(skipped)} file(s) found beside the exports are not trace exports and were skipped: "
                     + ", ".join(Path(f.path).name for f in skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    lines += [f"• {Path(f.path).name}: {w}" for f in report.files for w in f.unknown_values]
    rejected = sum(f.rows_rejected for f in report.files)
    if rejected:
        lines.append(f"{rejected:,} rows were rejected: the table below says where and why.")
    return lines


REPORT_COLUMNS = ("file", "format", "encoding", "delimiter", "date_order", "time_zone", "rows_read", "rows_loaded",
                  "rows_rejected", "duplicates_removed", "events", "warnings", "error", "skipped")


def report_html(report: LoadReport, *, max_rejects: int = 20) -> str:
    """The load report as escaped HTML: one row per file, then the first rejected rows."""
    html_text = "<b>Load report</b>" + table_html(report.to_frame()[list(REPORT_COLUMNS)], text_limit=100)
    rejects = report.rejects_frame()
    if len(rejects):
        html_text += "<b>Rejected rows</b>" + table_html(rejects, max_rows=max_rejects)
    return html_text


class FilePicker(View):
    """Choose trace exports (path box, folder browser or upload), load them and show the load report.

    Properties: ``paths`` (list of str), ``events`` (the canonical events table; empty until something loads),
    ``report`` (:class:`~analysis.io.loader.LoadReport` or None), ``error`` (why nothing was loaded, or None),
    ``problems`` (files not loaded, rejected rows: friendly lines) and ``rows`` (the number of events).
    Callbacks: ``on_load(callback)``, called with ``(events, report)`` after every load. When the picker loads
    again, every view shown below it (displayed after it, except the ones that feed it, whose ``target`` is the
    picker) is marked out of date (:meth:`~analysis.ui.core.View.mark_out_of_date`) until its cell runs again.
    Loading never raises: failures show as a message, and the files that could be read are loaded.
    With ``dask_scheduler`` (a scheduler address, or "local") the path names a store made by
    ``exo-deferrals ingest``: ``events`` is its tagged events as a Dask DataFrame on that cluster
    (:func:`analysis.store.ingest.open_trace`).
    """

    def __init__(self, paths: PathsLike | None = "../data/sample/", *, name: str | None = "files",
                 load: bool = True, dask_scheduler: str | None = None, **load_options: Any):
        self.name = name
        self.dask_scheduler = dask_scheduler
        self.load_options = load_options
        state = recall(name, {"paths": paths_text(paths)})
        self.events: pd.DataFrame = empty_events()
        self.rows = 0
        self.report: LoadReport | None = None
        self.error: str | None = None
        self.problems: list[str] = []
        self.exception: BaseException | None = None
        self._callbacks: list[Callable[[pd.DataFrame, LoadReport | None], None]] = []
        self._upload_dir: Path | None = None
        self._displayed = False
        self._loaded: str | None = None  # what the last load gave, in words

        self.path_box = widgets.Text(value=state["paths"], description="Files",
                                     placeholder="a file, folder or glob; several separated by ;", layout=WIDE)
        self.browser = widgets.Select(options=[], rows=8, description="Browse", layout=WIDE)
        self.upload = widgets.FileUpload(accept=",".join(sorted(TRACE_SUFFIXES)), multiple=True, description="Upload")
        self.load_button = widgets.Button(description="Load", button_style="primary", icon="folder-open")
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="Loading")
        self.progress_text = widgets.HTML()
        self.progress_box = widgets.HBox([self.progress, self.progress_text], layout=widgets.Layout(display="none"))
        self.status = widgets.HTML()
        self.report_html = widgets.HTML()
        self.widget = widgets.VBox([
            self.path_box, self.browser,
            widgets.HBox([self.load_button, self.upload]), self.progress_box,
            self.status, self.report_html,
        ]).add_class("exo-file-picker")
        self._browse(self._start_folder())
        self.browser.observe(self._on_browse, names="value")
        self.load_button.on_click(lambda _: self.load())
        self.upload.observe(self._on_upload, names="value")
        if load:
            self.load()

    @property
    def paths(self) -> list[str]:
        return split_paths(self.path_box.value)

    @paths.setter
    def paths(self, value: PathsLike) -> None:
        self.path_box.value = paths_text(value)

    def on_load(self, callback: Callable[[pd.DataFrame, LoadReport | None], None]) -> None:
        self._callbacks.append(callback)

    def load(self) -> pd.DataFrame:
        """Load the files in the path box; returns the events (also in ``events``)."""
        remember(self.name, paths=self.path_box.value)
        self.error, self.exception, self.report = None, None, None
        events = empty_events()
        if not self.paths:
            self.error = "Enter a file, a folder or a glob pattern (several separated by ;), or upload files."
        else:
            self.progress_box.layout.display = "flex"
            if not self._displayed and not headless():  # the first load runs before the cell shows the picker
                display(self.progress_box)
            try:
                events, self.report = open_trace(self.paths, dask_scheduler=self.dask_scheduler,
                                                 progress=self._progress, **self.load_options)
                self.rows = row_count(events)
            except TraceLoadError as exc:
                expected = f" (expected {exc.expected})" if exc.expected else ""
                self.error = f"Nothing was loaded from {self.path_box.value}: {exc.problem}{expected}"
            except (ExoDeferralsError, OSError, ValueError, TypeError) as exc:
                self.error = f"Nothing was loaded: {exc}"
                self.exception = exc
            except Exception as exc:  # a notebook step must end in a message, never in a traceback
                self.error = (f"Nothing was loaded because of an unexpected problem ({type(exc).__name__}: {exc}). "
                              "Please report it with the file; this picker's details() has the technical details.")
                self.exception = exc
            finally:
                self.progress_box.layout.display = "none"
        self.events = events
        if self.error:
            self.rows = 0
        self.problems = load_problems(self.report)
        if self.error is None and not self.rows:
            self.error = ("The store holds no events." if self.dask_scheduler else
                          "No events were loaded: check that these files are message-trace exports.")
        self._show()
        self._outdate_below()
        for callback in self._callbacks:
            callback(self.events, self.report)
        return self.events

    def _outdate_below(self) -> None:
        """Mark the views shown below out of date: they were fed by the events of the previous load."""
        before, self._loaded = self._loaded, f"{self.rows:,} events from {self.path_box.value}"
        if before is None:
            return
        for view in shown_after(self):
            if getattr(view, "target", None) is not self:
                view.mark_out_of_date(out_of_date_text(before))

    def details(self) -> str:
        """The traceback of an unexpected loading problem (for a bug report), else ""."""
        exc = self.exception
        return "".join(traceback.format_exception(exc)) if exc else ""

    def static(self) -> list[Any]:
        return [static_html(self.status.value + self.report_html.value)]

    def _ipython_display_(self) -> None:
        self._displayed = True
        super()._ipython_display_()

    # -- internals

    def _show(self) -> None:
        if self.error:
            self.status.value = message_html(self.error, "error") + lines_html(self.problems, "error")
        else:
            loaded = len(self.report.loaded_files) if self.report else 0
            where = (f" (the store {self.paths[0]}, computed on the Dask cluster {self.dask_scheduler})"
                     if self.dask_scheduler else "")
            self.status.value = message_html(f"Loaded {self.rows:,} events from {loaded} files{where}.", "ok") + \
                lines_html(self.problems, "warning")
        self.report_html.value = "" if self.report is None else report_html(self.report)

    def _progress(self, done: int, total: int, current: str) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = done
        self.progress.description = f"{done}/{total}"
        self.progress_text.value = message_html(f"reading {current}…" if current else "combining the files…", "info")

    def _start_folder(self) -> Path:
        first = Path(self.paths[0]) if self.paths else Path.cwd()
        folder = first if first.is_dir() else first.parent
        return folder if folder.is_dir() else Path.cwd()

    def _browse(self, folder: Path) -> None:
        self._navigating = True
        try:
            self.browser.options = folder_listing(folder)
            self.browser.value = None
        finally:
            self._navigating = False

    def _on_browse(self, change: dict) -> None:
        if self._navigating or not change["new"]:
            return
        chosen = Path(change["new"])
        self.path_box.value = str(chosen)
        if chosen.is_dir():
            self._browse(chosen)

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if not files:
            return
        if self._upload_dir is None:
            self._upload_dir = Path(tempfile.mkdtemp(prefix="exo-deferrals-upload-"))
        written = []
        for item in files:
            target = self._upload_dir / Path(item["name"]).name
            target.write_bytes(bytes(item["content"]))
            written.append(str(target))
        self.paths = written
        self.load()


# ---------------------------------------------------------------- time range

def window_caption(start: pd.Timestamp | None, end: pd.Timestamp | None, rows: int, tz: str = "UTC") -> str:
    """"Window 2026-11-16 00:00 to 2026-11-20 12:00 UTC: 5,474 events", the times in ``tz``."""
    if start is None or end is None:
        return "No times in the trace."
    return f"Window {in_zone(start, tz):%Y-%m-%d %H:%M} to {in_zone(end, tz):%Y-%m-%d %H:%M} {tz}: {rows:,} events"


def step_labels(steps: list[pd.Timestamp], tz: str = "UTC") -> list[tuple[str, pd.Timestamp]]:
    """The time slider's (label, UTC stop) options, labelled in ``tz``."""
    return [(f"{in_zone(s, tz):%Y-%m-%d %H:%M}", s) for s in steps]


class TimeRange(View):
    """A time window over the trace (hourly stops; daily for traces longer than a month), labelled in the display
    time zone (:func:`analysis.ui.core.display_zone`, UTC by default) and following its changes.

    Properties: ``start``, ``end`` (UTC Timestamps, None without data). ``apply(frame)`` keeps the rows
    inside the window. Callbacks: ``observe(callback)``, called with ``(start, end)``.
    """

    def __init__(self, events: pd.DataFrame, *, start: object = None, end: object = None,
                 name: str | None = "time"):
        self.name = name
        self._callbacks: list[Callable[[pd.Timestamp | None, pd.Timestamp | None], None]] = []
        self.steps = time_steps(events["timestamp"])
        state = recall(name, {"start": as_utc(start), "end": as_utc(end)})
        options = step_labels(self.steps, display_zone()) or [("no times in the trace", None)]
        self._relabeling = False
        self.slider = widgets.SelectionRangeSlider(
            options=options, index=(self._index(state["start"], 0), self._index(state["end"], len(options) - 1)),
            description=f"Time ({display_zone()})", continuous_update=False, disabled=not self.steps, layout=WIDE,
            style={"description_width": "initial"})
        self.widget = widgets.VBox([self.slider]).add_class("exo-time-range")
        self.slider.observe(self._changed, names="value")
        on_zone_change(self._relabel)

    @property
    def start(self) -> pd.Timestamp | None:
        return self.slider.value[0]

    @start.setter
    def start(self, value: object) -> None:
        self.slider.index = (self._index(as_utc(value), 0), self.slider.index[1])

    @property
    def end(self) -> pd.Timestamp | None:
        return self.slider.value[1]

    @end.setter
    def end(self, value: object) -> None:
        self.slider.index = (self.slider.index[0], self._index(as_utc(value), len(self.slider.options) - 1))

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        return in_time(frame, self.start, self.end)

    def observe(self, callback: Callable[[pd.Timestamp | None, pd.Timestamp | None], None]) -> None:
        self._callbacks.append(callback)

    def static(self) -> list[Any]:
        if not self.steps:
            return [static_html(message_html("no times in the trace", "info"))]
        return [static_html(message_html(f"Time window ({display_zone()}): {in_zone(self.start):%Y-%m-%d %H:%M} "
                                         f"to {in_zone(self.end):%Y-%m-%d %H:%M}", "info"))]

    def _relabel(self) -> None:
        """Label the stops in the display zone again; the window itself does not move."""
        if not self.steps or self.slider.description == f"Time ({display_zone()})":
            return
        index = self.slider.index
        self._relabeling = True
        try:
            self.slider.options = step_labels(self.steps, display_zone())
            self.slider.index = index
        finally:
            self._relabeling = False
        self.slider.description = f"Time ({display_zone()})"

    def _index(self, stamp: pd.Timestamp | None, default: int) -> int:
        if stamp is None or not self.steps:
            return default
        position = pd.DatetimeIndex(self.steps).searchsorted(stamp, side="right") - 1
        return min(max(int(position), 0), len(self.steps) - 1)

    def _changed(self, change: dict) -> None:
        if self._relabeling:
            return
        remember(self.name, start=self.start, end=self.end)
        for callback in self._callbacks:
            callback(self.start, self.end)


# ---------------------------------------------------------------- domain and cause

ALL = ""  # the "(all ...)" choice of a dropdown


def narrowed_choices(tagged: pd.DataFrame, column: str, domain: str | None = None,
                     cause: str | None = None) -> list[tuple[str, str]]:
    """Dropdown choices (label, value) of ``column`` ("recipient_domain" or "cause"): "(all …)", then the values
    most affected first.

    The other choice narrows them, with counts of that pair: with a cause, only the domains that had it; with a
    domain, only the causes it had. Without one, every domain that occurs. The causes are the rows of the causes
    table (:func:`analysis.summaries.tables.summarize_causes`) with its messages and events, so a cause is offered
    with the same numbers, and only where, the causes table shows it.
    """
    by_domain = column == "recipient_domain"
    if not by_domain:
        causes = summarize_causes(select_messages(tagged, domain=domain) if domain else tagged)
        return [("(all causes)", ALL)] + [
            (choice_label(label, events, messages), label) for label, events, messages in
            zip(causes["cause"].astype(str), causes["events"], causes["messages"], strict=True)]
    counts = problem_counts(tagged, column, cause=cause or None)
    if cause:
        counts = counts[counts["problem_events"] > 0]
    values = counts[column].str.lower()
    return [("(all domains)", ALL)] + [
        (choice_label(label, events, messages), value) for label, value, events, messages in
        zip(counts[column], values, counts["problem_events"], counts["problem_messages"], strict=True)]


class DomainCauseFilter(View):
    """Choose a recipient domain and/or a cause; the choices come from the tagged trace, most affected first, and
    narrow each other (:func:`narrowed_choices`): a domain offers only its causes, a cause only its domains.

    Properties: ``domain``, ``cause`` (str, None for all). ``selection(tagged)`` returns every event of the
    matching messages. Callbacks: ``observe(callback)``, called with ``(domain, cause)``. A preset or remembered
    pair that has no deferral or failure keeps the domain and says so in ``note``.
    """

    def __init__(self, tagged: pd.DataFrame, *, domain: str | None = None, cause: str | None = None,
                 name: str | None = "domain_cause"):
        self.name = name
        self.tagged = tagged
        self._callbacks: list[Callable[[str | None, str | None], None]] = []
        self._updating = False
        self._domains = narrowed_choices(tagged, "recipient_domain")
        self._causes = narrowed_choices(tagged, "cause")
        self.domain_box = widgets.Dropdown(options=self._domains, description="Domain", layout=WIDE)
        self.cause_box = widgets.Dropdown(options=self._causes, description="Cause", layout=WIDE)
        self.note = widgets.HTML()
        state = recall(name, {"domain": (domain or "").strip().lower(), "cause": (cause or "").strip()})
        self._choose(state["domain"], state["cause"])
        self.domain_box.add_class("exo-domain")
        self.cause_box.add_class("exo-cause")
        self.widget = widgets.VBox([self.domain_box, self.cause_box, self.note]).add_class("exo-domain-cause")
        self.domain_box.observe(self._changed, names="value")
        self.cause_box.observe(self._changed, names="value")

    @property
    def domain(self) -> str | None:
        return self.domain_box.value or None

    @domain.setter
    def domain(self, value: str | None) -> None:
        self._choose((value or "").strip().lower(), self.cause_box.value)
        self._announce()

    @property
    def cause(self) -> str | None:
        return self.cause_box.value or None

    @cause.setter
    def cause(self, value: str | None) -> None:
        self._choose(self.domain_box.value, (value or "").strip())
        self._announce()

    def selection(self, tagged: pd.DataFrame) -> pd.DataFrame:
        return select_messages(tagged, self.domain, self.cause)

    def observe(self, callback: Callable[[str | None, str | None], None]) -> None:
        self._callbacks.append(callback)

    def static(self) -> list[Any]:
        text = f"Domain: {self.domain or 'all domains'}; cause: {self.cause or 'all causes'}"
        return [static_html(message_html(text, "info") + self.note.value)]

    def _choose(self, domain: str, cause: str) -> None:
        """Set both boxes: unknown values fall back to all; a domain without that cause keeps the domain."""
        missing = []
        domains, causes = [v for _, v in self._domains], [v for _, v in self._causes]
        if domain not in domains:
            missing.append(f"domain {domain!r} does not occur in this trace; showing all.")
            domain = ALL
        if cause not in causes:
            missing.append(f"cause {cause!r} does not occur in this trace; showing all.")
            cause = ALL
        if domain and cause and cause not in [v for _, v in narrowed_choices(self.tagged, "cause", domain=domain)]:
            missing.append(f"no message to {domain} was deferred or failed for {cause}; showing all its causes.")
            cause = ALL
        self._narrow(domain, cause)
        self.note.value = lines_html(missing, "warning")

    def _narrow(self, domain: str, cause: str) -> None:
        """Offer the domains of ``cause`` and the causes of ``domain``, and select them, without callbacks."""
        self._updating = True
        try:
            self.domain_box.options = narrowed_choices(self.tagged, "recipient_domain", cause=cause) if cause \
                else self._domains
            self.cause_box.options = narrowed_choices(self.tagged, "cause", domain=domain) if domain else self._causes
            self.domain_box.value, self.cause_box.value = domain, cause
        finally:
            self._updating = False

    def _changed(self, change: dict) -> None:
        if self._updating:
            return
        self.note.value = ""
        self._narrow(self.domain_box.value, self.cause_box.value)
        self._announce()

    def _announce(self) -> None:
        remember(self.name, domain=self.domain_box.value, cause=self.cause_box.value)
        for callback in self._callbacks:
            callback(self.domain, self.cause)


# ---------------------------------------------------------------- tables

PAGE_SIZES = (10, 25, 50, 100, 500)


class WindowChart(View):
    """A chart of the rows inside a :class:`TimeRange`, redrawn in the kernel whenever the window moves (so it also
    works in a Voila app, where no cell is re-run), with its PNG and SVG downloads.

    ``chart(frame) -> Figure``; ``table(frame) -> DataFrame`` (optional) fills ``table_view``, a
    :class:`TableView`. Properties: ``frame`` (the rows in the window), ``png``, ``caption``.
    """

    def __init__(self, window: TimeRange, events: pd.DataFrame, chart: Callable[[pd.DataFrame], Any], *,
                 table: Callable[[pd.DataFrame], pd.DataFrame] | None = None, table_view: TableView | None = None):
        self.window, self.events, self.chart, self.table, self.table_view = window, events, chart, table, table_view
        self.caption = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.downloads = widgets.HTML()
        self.frame, self.png = events, b""
        children = [self.caption, self.image, self.downloads,
                    *([table_view.widget] if table_view is not None else [])]
        self.widget = widgets.VBox(children).add_class("exo-window-chart")
        window.observe(lambda start, end: self.refresh())
        on_zone_change(self.refresh)  # the caption, the chart's axis and title follow the zone
        self.refresh()

    def refresh(self) -> None:
        """Recompute from the window: the caption says which window the chart shows."""
        self.frame = self.window.apply(self.events)
        self._recaption()
        figure = self.chart(self.frame)
        self.png = figure_png(figure)
        self.image.value = self.png
        self.downloads.value = chart_downloads_html(figure)
        if self.table is not None and self.table_view is not None:
            self.table_view.data = self.table(self.frame)

    def _recaption(self) -> None:
        self.caption.value = message_html(
            window_caption(self.window.start, self.window.end, len(self.frame), display_zone()), "info")

    def static(self) -> list[Any]:
        items = [static_html(self.caption.value), png_image(self.png), static_html(self.downloads.value)]
        return items + (self.table_view.static() if self.table_view is not None else [])


class TableView(View):
    """A filterable, sortable, paged table with export of the filtered rows as guarded CSV.

    ``columns`` limits the columns offered; ``key_columns`` come first (so they show without scrolling sideways at
    1440 px), the others after them in their order. The "Columns shown" chooser (collapsed under the table) hides
    and shows columns; hidden columns are remembered by name, so a column new to the data shows. The table scrolls
    sideways inside its own box, never the controls above it. Properties: ``data`` (settable), ``filter_text``,
    ``filter_column`` (None: any text column), ``sort_by``, ``ascending``, ``page``, ``page_size``,
    ``shown_columns`` (settable); read-only ``filtered`` (all rows passing the filter, sorted, every column),
    ``visible`` (the shown columns of the rows of the current page), ``pages``, ``matches`` (rows passing the
    filter), ``last_export``. ``export()`` writes the filtered rows with the shown columns (also the Export button)
    and shows a download link.

    ``data`` may be a Dask DataFrame or a store: the filter then runs on the cluster and ``filtered`` holds the
    first ``max_rows`` matching rows in table order (sorting and export work on those; the page line says so).
    """

    def __init__(self, data: pd.DataFrame, *, title: str = "", name: str | None = None, page_size: int = 25,
                 sort_by: str | None = None, ascending: bool = True, filter_text: str = "",
                 filter_column: str | None = None, columns: Sequence[str] | None = None,
                 key_columns: Sequence[str] = (), export_dir: str | os.PathLike[str] | None = None,
                 max_rows: int = 100_000):
        self.name = name
        self.title = title
        self.columns = list(columns) if columns is not None else None
        self.key_columns = list(key_columns)
        self.export_dir = export_dir
        self.max_rows = max_rows
        self.last_export: Path | None = None
        self._take(data)
        self._filtered = self._data
        self.matches = 0
        state = recall(name, {"filter_text": filter_text, "filter_column": filter_column or ALL,
                              "sort_by": sort_by or ALL, "ascending": ascending, "page_size": page_size,
                              "hidden_columns": []})
        self._hidden = [str(c) for c in state["hidden_columns"]]
        self.heading = widgets.HTML(_heading(title))
        self.filter_box = widgets.Text(value=state["filter_text"], description="Filter", placeholder="contains…",
                                       continuous_update=False)
        self.column_box = widgets.Dropdown(description="in")
        self.sort_box = widgets.Dropdown(description="Sort by")
        self.order_box = widgets.ToggleButtons(options=[("↑", True), ("↓", False)], value=state["ascending"],
                                               style={"button_width": "32px"})
        self.size_box = widgets.Dropdown(options=sorted({*PAGE_SIZES, state["page_size"]}),
                                         value=state["page_size"], description="Rows",
                                         layout=widgets.Layout(width="150px"))
        self.previous_button = widgets.Button(description="◀", layout=widgets.Layout(width="40px"))
        self.next_button = widgets.Button(description="▶", layout=widgets.Layout(width="40px"))
        self.page_label = widgets.HTML()
        self.table = widgets.HTML(layout=widgets.Layout(max_width="100%", overflow="auto"))
        self.table.add_class("exo-table-scroll")
        self.export_button = widgets.Button(description="Export CSV", icon="download",
                                            tooltip="write the filtered rows as CSV")
        self.export_link = widgets.HTML()
        self.columns_box = widgets.SelectMultiple(description="Show", rows=8,
                                                  layout=widgets.Layout(width="420px"))
        columns_help = widgets.HTML(message_html(
            "Ctrl-click (⌘-click) to show or hide a column; Shift-click for a run.", "info"))
        self.columns_panel = widgets.Accordion(children=[widgets.VBox([columns_help, self.columns_box])],
                                               titles=("Columns shown",), selected_index=None)
        self._page = 1
        self._set_columns(state["filter_column"], state["sort_by"])
        self.widget = widgets.VBox([
            self.heading,
            widgets.HBox([self.filter_box, self.column_box]),
            widgets.HBox([self.sort_box, self.order_box, self.size_box]),
            self.table,
            widgets.HBox([self.previous_button, self.page_label, self.next_button, self.export_button]),
            self.export_link,
            self.columns_panel,
        ]).add_class("exo-table-view")
        for box in (self.filter_box, self.column_box, self.sort_box, self.order_box):
            box.observe(self._refilter, names="value")
        self.size_box.observe(self._resize, names="value")
        self.columns_box.observe(self._rechoose, names="value")
        self.previous_button.on_click(lambda _: setattr(self, "page", self._page - 1))
        self.next_button.on_click(lambda _: setattr(self, "page", self._page + 1))
        self.export_button.on_click(lambda _: self._export_clicked())
        on_zone_change(self._render)
        self._refilter()

    # -- values

    @property
    def data(self) -> pd.DataFrame:
        return self._data if self._source is None else self._source

    @data.setter
    def data(self, frame: pd.DataFrame) -> None:
        self._take(frame)
        self._set_columns(self.column_box.value, self.sort_box.value)
        self._refilter()

    @property
    def filter_text(self) -> str:
        return self.filter_box.value

    @filter_text.setter
    def filter_text(self, value: str) -> None:
        self.filter_box.value = value

    @property
    def filter_column(self) -> str | None:
        return self.column_box.value or None

    @filter_column.setter
    def filter_column(self, value: str | None) -> None:
        self.column_box.value = value or ALL

    @property
    def sort_by(self) -> str | None:
        return self.sort_box.value or None

    @sort_by.setter
    def sort_by(self, value: str | None) -> None:
        self.sort_box.value = value or ALL

    @property
    def ascending(self) -> bool:
        return self.order_box.value

    @ascending.setter
    def ascending(self, value: bool) -> None:
        self.order_box.value = bool(value)

    @property
    def page_size(self) -> int:
        return self.size_box.value

    @page_size.setter
    def page_size(self, value: int) -> None:
        if value not in self.size_box.options:
            self.size_box.options = sorted({*self.size_box.options, value})
        self.size_box.value = value

    @property
    def shown_columns(self) -> list[str]:
        return list(self.columns_box.value)

    @shown_columns.setter
    def shown_columns(self, names: Sequence[str]) -> None:
        offered = [str(c) for c in self._data.columns]
        unknown = [str(n) for n in names if str(n) not in offered]
        if unknown:
            raise ValueError(f"no column {', '.join(unknown)}: expected some of {', '.join(offered)}")
        self.columns_box.value = tuple(c for c in offered if c in {str(n) for n in names})

    @property
    def page(self) -> int:
        return self._page

    @page.setter
    def page(self, value: int) -> None:
        self._page = min(max(1, int(value)), self.pages)
        self._render()

    @property
    def pages(self) -> int:
        return page_count(len(self._filtered), self.page_size)

    @property
    def filtered(self) -> pd.DataFrame:
        return self._filtered

    @property
    def visible(self) -> pd.DataFrame:
        return page_rows(self._filtered, self._page, self.page_size)[self.shown_columns]  # one page copied

    def export(self, directory: str | os.PathLike[str] | None = None) -> Path:
        """Write the filtered rows (all pages, the shown columns) as guarded CSV; returns the file and shows a
        download link."""
        self.last_export = export_table(self._filtered[self.shown_columns], self.title or self.name or "table",
                                        directory or self.export_dir)
        self.export_link.value = download_html(self.last_export)
        return self.last_export

    def static(self) -> list[Any]:
        return [static_html(self.heading.value + self.table.value + self.page_label.value)]

    # -- internals

    def _shown(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns = [c for c in (self.columns if self.columns is not None else frame.columns) if c in frame.columns]
        first = [c for c in self.key_columns if c in columns]
        if self.columns is None and not first:
            return frame
        return frame[first + [c for c in columns if c not in first]]

    def _take(self, frame: Any) -> None:
        """Hold ``frame``: a pandas DataFrame as it is shown; of a Dask one its columns, and how many rows."""
        self._source = None if isinstance(frame, pd.DataFrame) else frame
        self._fetched: tuple[tuple[str, str | None], pd.DataFrame, int] | None = None
        self._data = self._shown(frame) if self._source is None else self._shown(columns_of(frame))
        self._rows = row_count(frame)

    def _set_columns(self, filter_column: str, sort_by: str) -> None:
        columns = [str(c) for c in self._data.columns]
        self._choosing = True  # offering new columns is not the user hiding any
        try:  # first: the boxes below redraw the table, with the shown columns of this data
            self.columns_box.options = columns
            self.columns_box.value = tuple(c for c in columns if c not in self._hidden)
        finally:
            self._choosing = False
        self.column_box.options = [("any column", ALL)] + [(c, c) for c in columns]
        self.column_box.value = filter_column if filter_column in columns else ALL
        self.sort_box.options = [("(as is)", ALL)] + [(c, c) for c in columns]
        self.sort_box.value = sort_by if sort_by in columns else ALL

    def _refilter(self, change: dict | None = None) -> None:
        if self._source is None:
            rows = filter_rows(self._data, self.filter_text, self.filter_column)
            self.matches = len(rows)
        else:  # ask the cluster only when the filter changed, not to sort
            wanted = (self.filter_text.strip(), self.filter_column)
            if self._fetched is None or self._fetched[0] != wanted:
                self._fetched = wanted, *first_rows(self._source, self.max_rows, filter_rows, *wanted,
                                                    columns=list(self._data.columns))
            rows, self.matches = self._fetched[1:]
        self._filtered = sort_rows(rows, self.sort_by, self.ascending)
        self._page = 1
        remember(self.name, filter_text=self.filter_text, filter_column=self.column_box.value,
                 sort_by=self.sort_box.value, ascending=self.ascending, page_size=self.page_size)
        self._render()

    def _rechoose(self, change: dict) -> None:
        if self._choosing:
            return
        offered = list(self.columns_box.options)
        shown = set(self.columns_box.value)
        # columns of other data hidden earlier stay hidden; of this data, what the user left out
        self._hidden = [c for c in self._hidden if c not in offered] + [c for c in offered if c not in shown]
        remember(self.name, hidden_columns=self._hidden)
        self._render()

    def _resize(self, change: dict) -> None:
        remember(self.name, page_size=self.page_size)
        self.page = 1

    def _render(self) -> None:
        rows = len(self._filtered)
        first = (self._page - 1) * self.page_size
        self.table.value = table_html(self.visible, empty="no rows match") if self.shown_columns else \
            message_html("No column is shown: pick some under \"Columns shown\" below.", "warning")
        shown = f"rows {first + 1:,}–{min(first + self.page_size, rows):,} of {rows:,}" if rows else "0 rows"
        if self.matches > rows:
            shown += f", the first {rows:,} of {self.matches:,} matching rows in trace order (filter to narrow)"
        if self.matches != self._rows:
            shown += f" (filtered from {self._rows:,})"
        self.page_label.value = message_html(f"page {self._page} of {self.pages} · {shown}", "info")
        self.previous_button.disabled = self._page <= 1
        self.next_button.disabled = self._page >= self.pages

    def _export_clicked(self) -> None:
        try:
            self.export()
        except OSError as exc:
            self.export_link.value = message_html(f"Could not write the export: {exc}", "error")
