"""``exo-deferrals report``: trace files -> a shareable, self-contained HTML report (optionally redacted, and PDF).

:func:`render_report` runs the report notebook (``notebooks/04_share_report.ipynb``, located relative to this
package in a source checkout or an editable install; ``notebook=`` / ``--notebook`` for another copy) with
papermill, its working directory the notebook's folder, and exports it with nbconvert, code hidden. Next to
``report.html`` it writes:

* ``report_charts/``: every chart as PNG and SVG (the notebook saves them into its ``charts_dir`` parameter);
* ``report_events.csv|.parquet`` (the tagged events) and ``report_domains.csv|.parquet`` (the per-domain
  summary), formula cells guarded, redacted when the report is;
* ``report.pdf`` with ``pdf=True``, printed by Debian's Chromium.

``paths`` may instead name one store made by ``exo-deferrals ingest``: the notebook then computes on a Dask cluster
(``dask_scheduler``: an address such as ``tcp://host:8786``, or ``"local"``, the default without
``$EXO_DEFERRALS_DASK``, for one on this machine that the notebook's kernel and this process share), reads the
store's load reports, and says what it says on the exports the store was ingested from. The tables beside the
report are gathered from the cluster (the events of the report, in this process's memory). An unreachable
scheduler raises :class:`ReportError` before anything is written.

Input files are named by format and dates (:func:`analysis.report.inputs.file_labels`), never by path. With
``partners`` the report (and its tables) holds only the messages to those recipient domains, and every written
file is checked for every other recipient domain of the input (:func:`analysis.report.inputs.scope_leaks`); if one
is found, everything written is removed and :class:`ReportError` names the files. Inputs that did not load (and
partners absent from the trace) are said at the top of the report and listed in ``ReportResult.problems``: the
command exits non-zero on them.

The HTML needs no network: images are embedded, the template loads no require.js, MathJax, Mermaid or widget
renderer, widget state, JavaScript outputs and standard error (warnings, logs) are dropped, and a
Content-Security-Policy forbids every script and every request that is not a ``data:`` URI.

With ``redact=True`` the notebook gets the same secret as the tables (``redact_secret``), so pseudonyms agree
everywhere, and what the notebook wrote (HTML and charts) is checked for every address, subject and, with
``redact_domains``, name of the input (:meth:`analysis.report.redact.Redactor.leaks`); if one is found, everything
written is removed and :class:`ReportError` says how many values leaked, and where.
"""

from __future__ import annotations

import base64
import binascii
import copy
import html
import os
import re
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pandas as pd

from analysis.backends import dask as dask_engine
from analysis.backends.operations import columns_of, rows_of, unused_categories_removed
from analysis.backends.partitions import SEQ
from analysis.core.bundled import report_notebook
from analysis.core.errors import ExoDeferralsError
from analysis.io.loader import load_trace
from analysis.io.write import write_table
from analysis.report.inputs import file_labels, input_problems, other_domains, scope_leaks
from analysis.report.proof import domain_rows
from analysis.report.redact import Redactor
from analysis.store.ingest import open_store, store_load_report
from analysis.summaries.tables import summarize_domains
from analysis.tagging.tag import tag

__all__ = ["REPORT_NOTEBOOK", "ReportError", "ReportResult", "render_report", "store_of"]

REPORT_NOTEBOOK = report_notebook()
KERNEL = "python3"
DEFAULT_TITLE = "Outbound mail deferrals"
CHROMIUM = "chromium"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--run-all-compositor-stages-before-draw",
                 "--virtual-time-budget=10000", "--no-pdf-header-footer")
PDF_TIMEOUT = 120  # seconds
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; base-uri 'none'; "
       "form-action 'none'")

SCRIPTED = {"application/javascript", "application/vnd.jupyter.widget-view+json"}  # output mimetypes dropped

# nbconvert's lab template without anything that loads from the network or runs script
TEMPLATE_NAME = "exo_deferrals_report.html.j2"
TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
<meta http-equiv="Content-Security-Policy" content="__CSP__">
{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">
main { max-width: 1400px; margin: 0 auto; }
.jp-OutputArea-output { overflow-x: auto; }
.jp-OutputArea-output.jp-RenderedHTMLCommon table { border-collapse: collapse; font-size: 12px; table-layout: auto; }
.jp-OutputArea-output.jp-RenderedHTMLCommon td, .jp-OutputArea-output.jp-RenderedHTMLCommon th {
  max-width: 40em; overflow-wrap: anywhere; vertical-align: top; text-align: left; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
@media print {
  main { max-width: none; }
  .jp-OutputArea-output { overflow-x: visible; }
  .jp-OutputArea-output.jp-RenderedHTMLCommon table { width: 100%; font-size: 7px; }
  .jp-OutputArea-output.jp-RenderedHTMLCommon td, .jp-OutputArea-output.jp-RenderedHTMLCommon th {
    max-width: none; padding: 1px 3px; }
  .jp-OutputArea-output.jp-RenderedHTMLCommon tr, .jp-RenderedImage { break-inside: avoid; }
}
</style>
{%- endblock html_head_css -%}
""".replace("__CSP__", CSP)

_DATA_URI = re.compile(r"data:([\w.+/-]+)?(;base64)?,([A-Za-z0-9+/=%._~-]*)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ReportError(ExoDeferralsError):
    """The report could not be made (notebook missing or failing, Chromium missing, redaction check failed)."""


@dataclass
class ReportResult:
    """What :func:`render_report` wrote and what it found."""

    html: Path
    charts: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    pdf: Path | None = None
    events: int = 0
    load_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    redacted: bool = False
    seconds: float = 0.0

    @property
    def files(self) -> list[Path]:
        return [self.html, *self.charts, *self.tables, *([self.pdf] if self.pdf else [])]


def render_report(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    allowlist: str | os.PathLike[str] | None = None,
    redact: bool = False,
    redact_domains: bool = False,
    title: str | None = None,
    pdf: bool = False,
    secret: bytes | str | None = None,
    notebook: str | os.PathLike[str] | None = None,
    partners: Sequence[str] = (),
    dask_scheduler: str | None = None,
) -> ReportResult:
    """Render the report of the trace files ``paths`` into ``output`` (an .html path); see the module docstring.

    ``redact_domains`` implies ``redact``. ``secret`` keys the pseudonyms (default: random, new per report).
    ``partners``: recipient domains the report is for (only their messages). A file that cannot be loaded does
    not stop the report: it says so at the top (``load_errors``, ``problems``). ``dask_scheduler``: the cluster
    a store in ``paths`` is computed on (default ``$EXO_DEFERRALS_DASK``, else ``"local"``). Raises
    :class:`ReportError` when the report cannot be made, :class:`TraceLoadError` when ``paths`` name no file.
    """
    started = time.perf_counter()
    redact = redact or redact_domains
    sources = [Path(p).resolve() for p in ([paths] if isinstance(paths, str | os.PathLike) else paths)]
    output = Path(output).resolve()
    if output.suffix.lower() not in (".html", ".htm"):
        raise ReportError(f"{output}: the report is written as .html")
    if allowlist is not None and not Path(allowlist).is_file():
        raise ReportError(f"{allowlist}: allow-list file not found")
    notebook_path = _notebook(notebook)
    missing = [str(p) for p in sources if not p.exists() and not any(ch in str(p) for ch in "*?[")]
    if missing:
        raise ReportError(f"no such file or folder: {', '.join(missing)}")
    if pdf and not shutil.which(CHROMIUM):
        raise ReportError(f"--pdf needs Debian's Chromium ({CHROMIUM!r} is not on PATH): apt-get install chromium")
    store = store_of(sources)
    if dask_scheduler and store is None:
        raise ReportError("a Dask scheduler computes on a store: paths must name one store folder made by "
                          "`exo-deferrals ingest`")
    client = _connect_scheduler(dask_scheduler) if store else None
    try:
        return _render(sources, store, client, output, allowlist, redact, redact_domains, title, pdf, secret,
                       notebook_path, partners, started)
    finally:
        if client is not None:
            dask_engine.close(client)


def store_of(sources: Sequence[str | os.PathLike[str]]) -> Path | None:
    """The store folder ``sources`` name (one, alone), None when they name exports; :class:`ReportError` when
    they mix a store with other inputs."""
    stores = [Path(p) for p in sources if dask_engine.is_dask(p)]
    if stores and len(sources) > 1:
        raise ReportError(f"{stores[0]}: a store made by `exo-deferrals ingest` cannot be mixed with other inputs "
                          "(expected one store, or export files)")
    return stores[0] if stores else None


def _connect_scheduler(address: str | None) -> object:
    """A client of the Dask scheduler at ``address`` (default ``$EXO_DEFERRALS_DASK``, else a local cluster);
    :class:`ReportError` in one line when it cannot be reached."""
    address = address or os.environ.get(dask_engine.ENV_SCHEDULER) or "local"
    try:
        return dask_engine.connect(address)
    except OSError as error:  # distributed raises OSError (TimeoutError among them) for an unreachable address
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ReportError(f"cannot reach the Dask scheduler {address} ({reason}; expected the address of a running "
                          "scheduler, or 'local')") from None


def _render(sources: list[Path], store: Path | None, client: object, output: Path,
            allowlist: str | os.PathLike[str] | None, redact: bool, redact_domains: bool, title: str | None,
            pdf: bool, secret: bytes | str | None, notebook_path: Path, partners: Sequence[str],
            started: float) -> ReportResult:
    """render_report once its inputs are checked (and the cluster of a store is connected)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    charts_dir = output.with_name(f"{output.stem}_charts")
    shutil.rmtree(charts_dir, ignore_errors=True)
    charts_dir.mkdir()
    redactor = Redactor(secret, redact_domains=redact_domains) if redact else None
    parameters = {
        "paths": [str(p) for p in sources], "allowlist": str(Path(allowlist).resolve()) if allowlist else None,
        "title": title or DEFAULT_TITLE, "redact": redact, "redact_domains": redact_domains,
        "redact_secret": redactor.secret.hex() if redactor else None, "charts_dir": str(charts_dir),
        "partners": list(partners) or None,
        "dask_scheduler": client.scheduler.address if client is not None else None,  # type: ignore[attr-defined]
    }
    result = ReportResult(html=output, redacted=redact)
    written: list[Path] = []
    try:
        # the kernel runs the notebook while this process writes the tables: two cores, half the wait
        with ThreadPoolExecutor(max_workers=1) as pool:
            notebook_run = pool.submit(_execute, notebook_path, parameters, output)
            result.events, tables, result.load_errors, result.problems, hidden = _tables(sources, store, redactor,
                                                                                         partners)
            for name, frame in tables.items():
                for suffix in (".csv", ".parquet"):
                    written.append(write_table(frame, output.with_name(f"{output.stem}_{name}{suffix}")))
            result.tables = list(written)
            executed = notebook_run.result()
        output.write_text(export_html(executed, parameters["title"]), encoding="utf-8")
        written.append(output)
        result.charts = sorted(p for p in charts_dir.iterdir() if p.suffix in (".png", ".svg"))
        if redactor:
            _check_redaction(redactor, [output, *result.charts])
        if partners:
            _check_scope(hidden, [output, *result.charts, *result.tables])
        if pdf:
            result.pdf = print_pdf(output, output.with_suffix(".pdf"))
    except BaseException:
        shutil.rmtree(charts_dir, ignore_errors=True)
        for path in written:
            path.unlink(missing_ok=True)
        raise
    result.seconds = time.perf_counter() - started
    return result


def _notebook(notebook: str | os.PathLike[str] | None) -> Path:
    path = Path(notebook) if notebook else REPORT_NOTEBOOK
    if not path.is_file():
        raise ReportError(f"report notebook not found at {path}: run from a source checkout (or an editable "
                          "install), or pass --notebook PATH")
    return path.resolve()


def _tables(sources: list[Path], store: Path | None, redactor: Redactor | None, partners: Sequence[str]
            ) -> tuple[int, dict[str, pd.DataFrame], list[str], list[str], set[str]]:
    """Events loaded, the tables written next to the report (tagged events of ``partners`` or all, files named by
    label, and per-domain summary, redacted when a Redactor is given), the load errors (files by label), the
    problems to say at the top, and the other recipient domains a partner's report must not show. A ``store`` is
    read on the connected cluster; the rows the tables hold are gathered here."""
    if store is None:
        events, load_report = load_trace(sources, errors="report", with_report=True)
    else:
        events, load_report = open_store(store), store_load_report(store)
    labels = file_labels(load_report, events)
    tagged = tag(events)
    hidden = other_domains(tagged, partners) if partners else set()
    if partners:
        tagged = domain_rows(tagged, partners)
    # the rows the tables hold (a partner's only): from a store brought back here, in table order; categories only
    # of these rows (a written table names no other domain)
    tagged = unused_categories_removed(rows_of(tagged, [c for c in columns_of(tagged).columns if c != SEQ]))
    problems = input_problems(load_report, len(events), labels, partners, len(tagged))
    tagged = tagged.assign(source_file=tagged["source_file"].astype(str).map(labels).astype("category"))
    if redactor:
        tagged = redactor.learn(tagged).frame(tagged)
    tables = {"events": tagged, "domains": summarize_domains(tagged)}
    for frame in tables.values():
        frame.attrs = {}  # the load report, time spans: not table data (and Parquet cannot store them)
    errors = [f"{labels[f.path]}: {f.error}" for f in load_report.files if f.error]
    return len(events), tables, errors, problems, hidden


def _execute(notebook: Path, parameters: dict[str, object], output: Path) -> object:
    """The notebook executed by papermill in its own folder (on failure it is kept as ``<stem>_failed.ipynb``)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    with tempfile.TemporaryDirectory(prefix="exo-deferrals-report-") as tmp:
        executed = Path(tmp) / notebook.name
        try:
            return papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                              kernel_name=KERNEL, cwd=str(notebook.parent), progress_bar=False)
        except PapermillExecutionError as error:
            kept = output.with_name(f"{output.stem}_failed.ipynb")
            shutil.copyfile(executed, kept)
            raise ReportError(f"the report notebook failed in cell {error.exec_count}: {error.ename}: "
                              f"{_ANSI.sub('', str(error.evalue))} (executed notebook kept at {kept})") from None


def export_html(notebook: object, title: str) -> str:
    """Self-contained HTML of an executed notebook: outputs only, no scripts, no network (see module docstring)."""
    import jinja2
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(notebook)
    nb.metadata.pop("widgets", None)  # the widget state: data, and a script tag
    nb.metadata["title"] = title
    for cell in nb.cells:  # live widgets and scripts: nothing a static page can show (their text fallback either);
        if cell.cell_type == "code":  # standard error: Python's warnings and logs, about the run, not the trace
            cell.outputs = [out for out in cell.outputs if not SCRIPTED.intersection(out.get("data", {}))
                            and out.get("name") != "stderr"]
    nb.cells = [c for c in nb.cells if c.cell_type == "markdown" or c.get("outputs")]
    exporter = HTMLExporter(
        template_name="lab", exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
        embed_images=True, extra_loaders=[jinja2.DictLoader({TEMPLATE_NAME: TEMPLATE})], template_file=TEMPLATE_NAME,
    )
    body, _ = exporter.from_notebook_node(nb)
    return body


def print_pdf(page: Path, target: Path) -> Path:
    """Print ``page`` (an HTML file) to ``target`` with headless Chromium."""
    chromium = shutil.which(CHROMIUM)
    if not chromium:
        raise ReportError(f"PDF needs Debian's Chromium ({CHROMIUM!r} is not on PATH): apt-get install chromium")
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="exo-deferrals-chromium-") as profile:
        done = subprocess.run([chromium, *CHROMIUM_ARGS, f"--user-data-dir={profile}", f"--print-to-pdf={target}",
                               page.resolve().as_uri()], capture_output=True, text=True, timeout=PDF_TIMEOUT)
    if done.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
        raise ReportError(f"Chromium could not print {page} to PDF (exit {done.returncode}): {done.stderr[-1000:]}")
    return target


# ---------------------------------------------------------------- the redaction check

def _check_redaction(redactor: Redactor, files: Iterable[Path]) -> None:
    """Raise ReportError when a written file still holds an address or subject (or a hidden name) of the input."""
    texts = {path: _readable_text(path) for path in files}
    if not redactor.leaks("\n".join(texts.values())):  # one pass over everything; file by file only to explain
        return
    problems = []
    for path, text in texts.items():
        found = redactor.leaks(text)
        if found:
            counts = ", ".join(f"{len(values)} {kind}" for kind, values in found.items())
            problems.append(f"{path.name}: {counts}")
    if problems:
        raise ReportError("redaction check failed, nothing was kept: values of the input remain in "
                          + "; ".join(problems))


def _check_scope(hidden: set[str], files: Iterable[Path]) -> None:
    """Raise ReportError when a written file of a partner's report names another recipient domain of the input."""
    problems = []
    for path in files:
        found = scope_leaks(_readable_text(path), hidden)
        if found:
            problems.append(f"{path.name}: {len(found)} other domain(s), e.g. {found[0]}")
    if problems:
        raise ReportError("partner scope check failed, nothing was kept: other recipients' domains remain in "
                          + "; ".join(problems))


def _readable_text(path: Path) -> str:
    """Everything a reader of ``path`` could see, as text (HTML unescaped with its data: URIs decoded)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":  # the values, and the categories a column keeps even when no row uses them
        frame = pd.read_parquet(path)
        categories = [frame[c].cat.categories.astype(str) for c in frame.columns
                      if isinstance(frame[c].dtype, pd.CategoricalDtype)]
        return frame.to_csv(index=False) + "\n".join("\n".join(c) for c in categories)
    if suffix == ".png":
        return _png_text(path.read_bytes())
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix in (".html", ".htm"):
        text = html.unescape(text)
        decoded = [_data_uri_text(m) for m in _DATA_URI.finditer(text)]
        text = _DATA_URI.sub(" ", text) + "\n".join(decoded)
    return text


def _data_uri_text(match: re.Match[str]) -> str:
    mimetype, is_base64, payload = match.groups()
    if mimetype and mimetype.startswith("image/png") and is_base64:
        return _png_text(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    if is_base64:
        try:
            return base64.b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8", errors="replace")
        except binascii.Error:
            return payload
    return unquote(payload)


def _png_text(data: bytes) -> str:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG: the only place a PNG carries text a program can read."""
    texts, position = [], 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        chunk = data[position + 8:position + 8 + length]
        if kind == b"tEXt":
            texts.append(chunk.decode("latin-1"))
        elif kind == b"zTXt":
            key, _, rest = chunk.partition(b"\0")
            texts.append(key.decode("latin-1") + " " + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            key, _, rest = chunk.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\0")
            _, _, rest = rest.partition(b"\0")
            texts.append(key.decode("latin-1") + " " + (zlib.decompress(rest) if compressed else rest).decode())
        position += 12 + length
    return "\n".join(texts)


# ---------------------------------------------------------------- command line
