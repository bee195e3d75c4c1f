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

import base64
import html
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython.display import HTML, Image, display

from analysis.io.write import write_table

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
    from IPython import get_ipython

    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None:
        return True
    parent = kernel.get_parent("shell") or {}
    return "cellId" not in (parent.get("metadata") or {})


class View:
    """Base of the widget views: ``widget`` is what the frontend shows, :meth:`static` the headless copy."""

    widget: widgets.Widget

    def static(self) -> list[Any]:
        """What an exported notebook shows instead of the live widget (IPython display objects)."""
        return []

    def _ipython_display_(self) -> None:
        display(self.widget)
        if headless():
            for item in self.static():
                display(item)


# ---------------------------------------------------------------- safe HTML

def for_display(frame: pd.DataFrame, *, text_limit: int = CELL_TEXT_LIMIT) -> pd.DataFrame:
    """Copy of ``frame`` as display text: times to the second (UTC), NA blank, long text cut."""
    out = pd.DataFrame(index=frame.index)
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
            text = series.dt.strftime("%Y-%m-%d %H:%M:%S")
        elif isinstance(series.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(series.dtype):
            text = series.astype("string")
            long = text.str.len().fillna(0).astype(int) > text_limit
            if long.any():
                text = text.where(~long, text.str.slice(0, text_limit - 1) + "…")
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
               text_limit: int = CELL_TEXT_LIMIT) -> str:
    """An HTML table of ``frame`` with every header and cell escaped (trace text is data)."""
    if frame.empty:
        return message_html(empty, "info")
    shown = frame if max_rows is None else frame.head(max_rows)
    body = for_display(shown, text_limit=text_limit).to_html(index=False, escape=True, border=0, classes="exo-table")
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

def setup() -> None:
    """The standard first cell of every notebook: table display options and one line saying what is in use."""
    import platform

    import analysis
    from analysis.reference.endpoints import Endpoints

    pd.set_option("display.max_colwidth", 120)
    pd.set_option("display.max_columns", 40)
    endpoints = Endpoints.bundled()
    display(HTML(message_html(
        f"exo-deferrals {analysis.__version__} · Python {platform.python_version()} · pandas {pd.__version__} · "
        f"ipywidgets {widgets.__version__} · Microsoft 365 endpoints snapshot {endpoints.version} "
        f"({endpoints.date:%Y-%m-%d}) · {'headless run: widgets also leave static copies' if headless() else 'live'}",
        "ok")))


def show_table(frame: pd.DataFrame, *, max_rows: int | None = None, empty: str = "no rows") -> None:
    """Display ``frame`` as an escaped HTML table (no index)."""
    display(HTML(table_html(frame, max_rows=max_rows, empty=empty)))


def show_chart(figure: Any, charts_dir: str | os.PathLike[str] | None = None, name: str | None = None) -> None:
    """Display a chart once, as PNG; with ``charts_dir`` also save it there as PNG and SVG (see charts.save)."""
    if charts_dir:
        from analysis.charts.figures import save

        save(figure, charts_dir, name=name)
    display(png_image(figure_png(figure)))
