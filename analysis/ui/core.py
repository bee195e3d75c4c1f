"""Machinery shared by the widget views: remembered values, headless detection, safe HTML, PNG and downloads.

Remembered values (msticpy's ``RegisteredWidget`` idea): a view built with ``name=`` stores what the user chose
in a registry that lives as long as the kernel, keyed by that name. Re-running the cell builds a new view that
starts from the stored values, unless the presets the notebook passed (papermill parameters) changed since the
last run: a new parameter value wins, otherwise the user's choice survives.

Headless runs (nbclient, papermill, ``nbconvert --execute``) have no one to look at the widgets and an exported
notebook cannot run them, so a view displayed there also leaves a static copy (tables as HTML, charts as PNG).
A run counts as headless when the execute request carries no ``cellId`` (JupyterLab sends one with every cell;
nbclient and papermill do not) and the kernel was not started by Voila. An editor that sends no ``cellId`` is
taken for headless and shows the static copies too; ``EXO_DEFERRALS_STATIC=0`` (or ``=1``) overrides the guess.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import os
import platform
import re
import weakref
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython import get_ipython
from IPython.display import HTML, Image, display

import analysis
from analysis.charts.figures import save
from analysis.core.zones import DEFAULT_ZONE, display_zone, set_display_zone, zone_name
from analysis.io.write import write_table
from analysis.reference.endpoints import Endpoints

STATIC_ENV = "EXO_DEFERRALS_STATIC"
CELL_TEXT_LIMIT = 160  # characters of one table cell shown before "…"
DATA_URI_LIMIT = 8 * 1024 * 1024  # bytes of a download embedded as a data: link; bigger files are linked by path
EXPORTS_DIR = Path("exports")


# ---------------------------------------------------------------- remembered values

@dataclass
class _Saved:
    presets: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, _Saved] = {}


def recall(name: str | None, presets: dict[str, Any]) -> dict[str, Any]:
    """Starting values of the view ``name``: the user's last values, or ``presets`` when they are new or changed."""
    if name is None:
        return dict(presets)
    saved = _REGISTRY.get(name)
    if saved is None or saved.presets != presets:
        _REGISTRY[name] = _Saved(dict(presets), dict(presets))
        return dict(presets)
    return {**presets, **saved.values}


def remember(name: str | None, **values: Any) -> None:
    """Store the current values of the view ``name`` (no-op for unnamed views)."""
    if name is not None:
        _REGISTRY.setdefault(name, _Saved({})).values.update(values)


def forget(name: str | None = None) -> None:
    """Drop the remembered values of one view, or of all views."""
    if name is None:
        _REGISTRY.clear()
    else:
        _REGISTRY.pop(name, None)


# ---------------------------------------------------------------- headless detection

def headless() -> bool:
    """True when no person sees the widgets live (see the module docstring)."""
    forced = os.environ.get(STATIC_ENV)
    if forced is not None:
        return forced.strip().lower() not in ("", "0", "false", "no")
    if os.environ.get("SERVER_SOFTWARE", "").startswith("voila"):
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return True
    parent = kernel.get_parent("shell") or {}
    return "cellId" not in (parent.get("metadata") or {})


SAVED_COPY_STYLE = ("<style>.jp-OutputArea-child:has(.exo-live) + .jp-OutputArea-child .exo-saved-copy"
                    "{display:none}</style>")


def saved_copy_html(items: Iterable[Any]) -> str:
    """The :meth:`View.static` items as one HTML block (charts as embedded PNG) that a saved notebook keeps in
    place of a live widget: hidden while the widget above it is alive, shown when the notebook reopens without
    a kernel (where the widget itself can only say "model not found")."""
    parts = [item_html(item) for item in items]
    note = message_html("Saved copy of the widget above as it was last shown; run the notebook to use it live.",
                        "info")
    return f'{SAVED_COPY_STYLE}<div class="exo-saved-copy">{note}{"".join(parts)}</div>'


def app_mode() -> bool:
    """True in a Voila app: no cell can be run again there."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("voila")


OUT_OF_DATE_CLASS = "exo-out-of-date"


def out_of_date_text(before: str) -> str:
    """What a view fed by the files loaded before says once other files are loaded."""
    if app_mode():
        return (f"Out of date: this shows the files loaded before ({before}); this app cannot run the steps "
                "again. Open the notebook in JupyterLab (exo-deferrals lab) to see the files loaded now.")
    return (f"Out of date: this shows the files loaded before ({before}). Run the steps below again "
            "(Run ▸ Run Selected Cell and All Below) to see the files loaded now.")


# what was shown live in this kernel, in order: views (held weakly) and ShownOutput blocks (the last SHOWN_LIMIT)
_SHOWN: list[Callable[[], Any]] = []
SHOWN_LIMIT = 500


def _register(ref: Callable[[], Any]) -> None:
    _SHOWN.append(ref)
    del _SHOWN[:-SHOWN_LIMIT]


def shown_after(view: View) -> list[Any]:
    """The views and :class:`ShownOutput` blocks still alive that were shown after ``view`` (the cells below it,
    once run); each has ``mark_out_of_date(text)``."""
    _SHOWN[:] = [ref for ref in _SHOWN if ref() is not None]
    items = [ref() for ref in _SHOWN]
    position = next((n for n, item in enumerate(items) if item is view), None)
    return [] if position is None else items[position + 1:]


def out_of_date_html(text: str) -> str:
    return f'<div class="{OUT_OF_DATE_CLASS}">{message_html(text, "warning")}</div>'


def item_html(item: Any) -> str:
    """An IPython HTML or PNG Image display object as HTML (the image embedded)."""
    if isinstance(item, Image):
        data = base64.b64encode(item.data).decode("ascii")
        return f'<img alt="chart" style="max-width:100%" src="data:image/png;base64,{data}">'
    return item.data


class ShownOutput:
    """A table, chart or HTML block shown by :func:`show_table`, :func:`show_chart` or :func:`show_html` while
    someone watches. Like a view it can be marked out of date: its output then shows a banner above the same
    content (``out_of_date``: the banner's text, or None). In a notebook the output is replaced through its display
    id; a Voila app applies no such update to what it rendered with the page, so there the block is an HTML widget.
    """

    def __init__(self, item: Any):
        self.item, self.out_of_date = item, None
        self.handle: Any = None
        self.live: widgets.HTML | None = None
        if app_mode():
            self.live = widgets.HTML(item_html(item))
            display(self.live)
        else:
            self.handle = display(item, display_id=True)
        _register(lambda: self)

    def mark_out_of_date(self, text: str) -> None:
        self.out_of_date = text
        marked = out_of_date_html(text) + item_html(self.item)
        if self.live is not None:
            self.live.value = marked
        else:
            self.handle.update(HTML(marked))


def show(item: Any) -> None:
    """Display ``item`` (an IPython HTML or Image); shown live, as a :class:`ShownOutput`."""
    if headless():
        display(item)
    else:
        ShownOutput(item)


def _watch(widget: widgets.Widget, callback: Any) -> None:
    """Call ``callback`` whenever the value of any HTML or Image widget inside ``widget`` changes."""
    if isinstance(widget, widgets.HTML | widgets.Image):
        widget.observe(callback, names="value")
    for child in getattr(widget, "children", ()):
        _watch(child, callback)


class View:
    """Base of the widget views: ``widget`` is what the frontend shows, :meth:`static` the headless copy.

    Shown live, a view also leaves its static copy as a saved copy (:func:`saved_copy_html`) kept up to date
    with what the widget shows, so a saved notebook reopens with the last tables and charts.
    """

    widget: widgets.Widget
    saved_copy: Any = None  # the DisplayHandle of the saved copy, once shown live
    out_of_date: str | None = None  # why the view no longer shows the loaded data (see mark_out_of_date)

    def static(self) -> list[Any]:
        """What an exported notebook shows instead of the live widget (IPython display objects)."""
        return []

    def mark_out_of_date(self, text: str) -> None:
        """Say at the top of the widget (and of its saved copy) that it shows data no longer loaded."""
        self.out_of_date = text
        banner = widgets.HTML(message_html(text, "warning")).add_class(OUT_OF_DATE_CLASS)
        if isinstance(self.widget, widgets.Box):
            kept = [c for c in self.widget.children if OUT_OF_DATE_CLASS not in getattr(c, "_dom_classes", ())]
            self.widget.children = (banner, *kept)
        if self.saved_copy is not None:
            self._copy_now()

    def _ipython_display_(self) -> None:
        _register(weakref.ref(self))
        display(self.widget)
        if headless():
            for item in self.static():
                display(item)
            return
        self.widget.add_class("exo-live")
        self.saved_copy = display(HTML(saved_copy_html(self.static())), display_id=True)
        self._stale = False
        _watch(self.widget, lambda change: self._copy_later())

    def _copy_later(self) -> None:
        """Update the saved copy once after the widget changes (one update for the many changes of one click)."""
        if self._stale:
            return
        self._stale = True
        try:
            asyncio.get_running_loop().call_soon(self._copy_now)
        except RuntimeError:  # no event loop (driven from plain Python): update at once
            self._copy_now()

    def _copy_now(self) -> None:
        self._stale = False
        banner = [HTML(out_of_date_html(self.out_of_date))] if self.out_of_date else []
        self.saved_copy.update(HTML(saved_copy_html([*banner, *self.static()])))


# ---------------------------------------------------------------- safe HTML

def for_display(frame: pd.DataFrame, *, text_limit: int = CELL_TEXT_LIMIT, as_html: bool = False,
                tz: str | None = None) -> pd.DataFrame:
    """Copy of ``frame`` as display text: times to the second in ``tz`` (default :func:`display_zone`; naive times
    are UTC; outside UTC each time names its zone), NA blank, long text cut. ``as_html``: text escaped, times kept on
    one line, and a long text cut in a ``<details>`` block whose summary opens the full text on demand."""
    zone = zone_name(tz) if tz else display_zone()
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
            aware = series if isinstance(series.dtype, pd.DatetimeTZDtype) else series.dt.tz_localize("UTC")
            text = aware.dt.tz_convert(zone).dt.strftime("%Y-%m-%d %H:%M:%S" + ("" if zone == "UTC" else " %Z"))
            if as_html:  # a time never wraps
                text = '<span style="white-space:nowrap">' + text + "</span>"
        elif isinstance(series.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(series.dtype):
            text = series.astype("string")
            long = text.str.len().fillna(0).astype(int) > text_limit
            cut = text.str.slice(0, text_limit - 1) + "…"
            if as_html:
                full = text.astype(object).map(html.escape, na_action="ignore")
                cut = "<details><summary>" + cut.astype(object).map(html.escape, na_action="ignore") + \
                    "</summary>" + full + "</details>"
                text = full
            if long.any():
                text = text.where(~long, cut)
        elif pd.api.types.is_float_dtype(series.dtype):
            text = series.round(2).astype("string")
        else:
            text = series.astype("string")
        out[str(column)] = text.astype(object).where(text.notna(), "")
    return out


TABLE_STYLE = ("<style>.exo-table{border-collapse:collapse;font-size:12px}.exo-table td,.exo-table th"
               "{border-bottom:1px solid #ddd;padding:2px 6px;text-align:left!important;vertical-align:top;"
               "max-width:40em;overflow-wrap:break-word}</style>")


def table_html(frame: pd.DataFrame, *, max_rows: int | None = None, empty: str = "no rows",
               text_limit: int = CELL_TEXT_LIMIT, tz: str | None = None) -> str:
    """An HTML table of ``frame`` with every header and cell escaped (trace text is data), times in ``tz``
    (default :func:`display_zone`)."""
    if frame.empty:
        return message_html(empty, "info")
    shown = frame if max_rows is None else frame.head(max_rows)
    cells = for_display(shown, text_limit=text_limit, as_html=True, tz=tz)
    cells.columns = [html.escape(column) for column in cells.columns]
    body = cells.to_html(index=False, escape=False, border=0, classes="exo-table")
    more = "" if max_rows is None or len(frame) <= max_rows else message_html(
        f"first {max_rows:,} of {len(frame):,} rows", "info")
    return TABLE_STYLE + body + more


_COLORS = {"error": "#b00020", "warning": "#8a5a00", "info": "#555555", "ok": "#1b5e20"}


def message_html(text: str, kind: str = "info") -> str:
    """One escaped line of text, coloured by ``kind`` (error, warning, info, ok)."""
    return f'<div class="exo-{kind}" style="color:{_COLORS[kind]}">{html.escape(text)}</div>'


def lines_html(lines: Iterable[str], kind: str = "info") -> str:
    return "".join(message_html(line, kind) for line in lines)


# ---------------------------------------------------------------- figures

def figure_png(figure: Any) -> bytes:
    """PNG bytes of a matplotlib Figure, which is then closed (so the inline backend does not show it again)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def png_image(png: bytes) -> Image:
    return Image(data=png, format="png")


def static_html(text: str) -> HTML:
    return HTML(text)


# ---------------------------------------------------------------- downloads

def export_file_name(label: str, suffix: str = ".csv") -> str:
    """A file name from ``label`` (letters, digits, dots, dashes) and the UTC time."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", label).strip("-.").lower() or "export"
    return f"{slug[:60]}-{datetime.now(UTC):%Y%m%d-%H%M%S}{suffix}"


def export_table(frame: pd.DataFrame, label: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """Write ``frame`` as guarded CSV into ``directory`` (default ./exports) and return the path."""
    return write_table(frame, Path(directory or EXPORTS_DIR) / export_file_name(label))


def export_text(text: str, label: str, suffix: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """Write ``text`` (UTF-8) into ``directory`` (default ./exports) and return the path."""
    path = Path(directory or EXPORTS_DIR) / export_file_name(label, suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def download_html(path: Path, *, mime: str = "text/csv") -> str:
    """A download link for a written file: embedded as a data: link when small, else linked by its path."""
    name = html.escape(path.name)
    size = path.stat().st_size
    if size <= DATA_URI_LIMIT:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        href = f"data:{mime};base64,{data}"
    else:
        href = html.escape(_relative(path).as_posix())
    return (f'<a download="{name}" href="{href}" target="_blank">Download {name}</a> '
            f'<span style="color:#555">({size:,} bytes, saved as {html.escape(str(_relative(path)))})</span>')


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


# ---------------------------------------------------------------- notebook helpers

class ResetChoices(View):
    """The "Reset remembered choices" button: :func:`forget` every view's remembered values, so that the cells
    run next start from the notebook's parameters again (a kernel remembers them across browser sessions).

    Properties: ``remembered`` (names of the views whose values differ from their presets). ``reset()`` (also the
    button) forgets them and says what to run next in ``status``.
    """

    def __init__(self) -> None:
        self.button = widgets.Button(description="Reset remembered choices",
                                     tooltip="forget the choices made in the widgets; then run the cells again")
        self.status = widgets.HTML()
        self.widget = widgets.HBox([self.button, self.status]).add_class("exo-reset")
        self.button.on_click(lambda _: self.reset())
        names = self.remembered
        self.status.value = message_html(
            f"Remembered from earlier runs in this kernel: {', '.join(names)}." if names
            else "No remembered choices: the widgets start from the notebook's parameters.", "info")

    @property
    def remembered(self) -> list[str]:
        return sorted(name for name, saved in _REGISTRY.items() if {**saved.presets, **saved.values} != saved.presets)

    def reset(self) -> list[str]:
        """Forget every remembered value; returns the names of the views that had changed values."""
        names = self.remembered
        forget()
        self.status.value = message_html(
            (f"Forgot the choices of {', '.join(names)}. " if names else "Nothing was remembered. ")
            + "Run the cells below again (Run ▸ Run All Cells) to start from the notebook's parameters.", "ok")
        return names


class TimeZoneChoice(View):
    """The time zone every table and time window of the notebook shows times in: UTC by default, or any IANA name
    (typed or picked from the list). A name that is not a time zone is refused in one line; the zone stays.

    Properties: ``zone`` (settable; :func:`display_zone`), ``error`` (why the last name was refused, or None).
    """

    def __init__(self, zone: str | None = None, *, name: str | None = "zone"):
        self.name = name
        self.error: str | None = None
        state = recall(name, {"zone": zone or DEFAULT_ZONE})
        self.box = widgets.Combobox(value=state["zone"], options=sorted(zoneinfo.available_timezones()),
                                    description="Time zone", placeholder="UTC, Europe/Berlin, America/New_York…",
                                    ensure_option=False, continuous_update=False,
                                    style={"description_width": "initial"})
        self.note = widgets.HTML()
        self.widget = widgets.HBox([self.box, self.note]).add_class("exo-time-zone")
        self.box.observe(lambda change: self._chosen(change["new"]), names="value")
        self._chosen(state["zone"])

    @property
    def zone(self) -> str:
        return display_zone()

    @zone.setter
    def zone(self, value: str) -> None:
        self.box.value = value

    def static(self) -> list[Any]:
        return [static_html(message_html(f"Times in {self.zone}.", "info"))]

    def _chosen(self, value: str) -> None:
        try:
            zone = zone_name(value)
            if zone != display_zone():
                set_display_zone(zone)
        except ValueError as exc:
            self.error = str(exc)
            self.note.value = message_html(f"{exc}; times stay in {display_zone()}.", "error")
            return
        self.error = None
        remember(self.name, zone=zone)
        self.note.value = message_html(f"Tables and time windows show times in {zone}.", "info")


def setup() -> None:
    """The standard first cell of every notebook: table display options, one line saying what is in use and, when
    someone sees the widgets, the :class:`ResetChoices` button."""
    pd.set_option("display.max_colwidth", 120)
    pd.set_option("display.max_columns", 40)
    endpoints = Endpoints.bundled()
    display(HTML(message_html(
        f"exo-deferrals {analysis.__version__} · Python {platform.python_version()} · pandas {pd.__version__} · "
        f"ipywidgets {widgets.__version__} · Microsoft 365 endpoints snapshot {endpoints.version} "
        f"({endpoints.date:%Y-%m-%d}) · {'headless run: widgets also leave static copies' if headless() else 'live'}",
        "ok")))
    if not headless():
        display(ResetChoices().widget)
        display(TimeZoneChoice().widget)


def show_table(frame: pd.DataFrame, *, max_rows: int | None = None, empty: str = "no rows") -> None:
    """Display ``frame`` as an escaped HTML table (no index), marked out of date when other files are loaded."""
    show(HTML(table_html(frame, max_rows=max_rows, empty=empty)))


def show_html(text: str) -> None:
    """Display ``text`` (HTML made by the kit), marked out of date when other files are loaded."""
    show(HTML(text))


CHART_MIMES = {".png": "image/png", ".svg": "image/svg+xml"}


def chart_downloads_html(figure: Any, name: str | None = None, directory: str | os.PathLike[str] | None = None
                         ) -> str:
    """Download links for ``figure`` as PNG and SVG, saved into ``directory`` (default ./exports) under its name
    (default its label) and the UTC time."""
    stem = export_file_name(name or figure.get_label() or "chart", "")
    paths = save(figure, directory or EXPORTS_DIR, name=stem)
    return '<div class="exo-chart-downloads">' + " · ".join(
        download_html(path, mime=CHART_MIMES[path.suffix]) for path in paths) + "</div>"


def show_chart(figure: Any, charts_dir: str | os.PathLike[str] | None = None, name: str | None = None, *,
               downloads: bool = True) -> None:
    """Display a chart once, as PNG, with PNG and SVG download links (``downloads``); with ``charts_dir`` also
    save it there as PNG and SVG (see charts.save). Marked out of date when other files are loaded."""
    if charts_dir:
        save(figure, charts_dir, name=name)
    show(png_image(figure_png(figure)))
    if downloads:
        display(HTML(chart_downloads_html(figure, name)))
