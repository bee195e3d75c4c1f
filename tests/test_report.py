"""analysis.report: the sample rendered into a self-contained HTML report, its charts and tables, redaction that
really removes what it claims to, bad and empty input, and the command line."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from analysis.cli.report import main
from analysis.io.loader import load_trace
from analysis.io.write import FORMULA_PREFIXES
from analysis.report import notebook as report
from analysis.report.notebook import ReportError, export_html, render_report
from analysis.report.redact import MIN_BARE_LOCAL

pytestmark = pytest.mark.slow

ALLOWLIST = "partner_allowlist_ironport.txt"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT_SUBJECT = "<script>alert(1)</script>"  # in a subject of the sample (docs/sample-story.md)
HOSTILE_REPLY = "<img src=x onerror=alert(2)> <script>alert(3)</script>"
DETAIL_HEADER = ('"Organization","MessageId","Date","Event","Action","Detail","Data","StartDate","EndDate",'
                 '"MessageTraceId","SenderAddress","RecipientAddress"')
PS51_HEADER = ('#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace\r\n"PSComputerName",'
               '"RunspaceId","PSShowComputerName","Organization","MessageId","Received","SenderAddress",'
               '"RecipientAddress","Subject","Status","ToIP","FromIP","Size","MessageTraceId","StartDate","EndDate",'
               '"Index"\r\n')


# ---------------------------------------------------------------- inputs and renders shared by the tests

def write_hostile_trace(path: Path, messages: int = 60) -> Path:
    """A Get-MessageTraceDetail export whose remote server answers with markup: ``messages`` deferred messages,
    so that the reply is among the most frequent ones a report shows."""
    rows = [DETAIL_HEADER]
    for n in range(messages):
        common = (f'"contoso.onmicrosoft.com","<hostile{n}@contoso.com>","11/20/2026 9:{n % 60:02d}:00 AM"')
        ids = f'"11/16/2026 12:00:00 AM","11/23/2026 12:00:00 AM","0badc0de-0000-4000-8000-{n:012d}"'
        people = '"eve.hostile@contoso.com","mallory.target@hostile.example"'
        rows.append(f'{common},"Receive","","Message received by: DB9PR02MB8012.eurprd02.prod.outlook.com","",'
                    f'{ids},{people}')
        rows.append(f'{common},"Defer","","Reason: [{{LED=451 4.7.1 {HOSTILE_REPLY} try later}};{{MSG=}};'
                    '{FQDN=mx.hostile.example};{IP=198.51.100.99};{LRT=11/20/2026 9:00:05 AM}]","",'
                    f'{ids},{people}')
    path.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    return path


def render(sample: Path, folder: Path, **options: object) -> report.ReportResult:
    allowlist = sample / ALLOWLIST
    return render_report(sample, folder / "report.html", allowlist=allowlist if allowlist.exists() else None,
                         title="Sample: outbound deferrals", **options)


@pytest.fixture(scope="module")
def plain(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> report.ReportResult:
    return render(sample_dir, tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def redacted(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> report.ReportResult:
    return render(sample_dir, tmp_path_factory.mktemp("redacted"), redact=True)


@pytest.fixture(scope="module")
def domains_redacted(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> report.ReportResult:
    return render(sample_dir, tmp_path_factory.mktemp("domains"), redact_domains=True)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> report.ReportResult:
    folder = tmp_path_factory.mktemp("hostile")
    return render_report(write_hostile_trace(folder / "hostile.csv"), folder / "out" / "report.html")


@pytest.fixture(scope="module")
def raw(sample_dir: Path) -> pd.DataFrame:
    return load_trace(sample_dir, errors="report")


# ---------------------------------------------------------------- what a reader can see in the written files

def png_text_chunks(data: bytes) -> list[bytes]:
    """``keyword\\0text`` of every tEXt / zTXt / iTXt chunk of a PNG (its own parser, not report._png_text)."""
    assert data.startswith(PNG_SIGNATURE)
    chunks, position = [], 8
    while position < len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        if kind == b"tEXt":
            chunks.append(body)
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            chunks.append(key + b"\0" + zlib.decompress(rest[1:]))
        elif kind == b"iTXt":
            chunks.append(body)
        position += 12 + length
    return chunks


def visible_text(result: report.ReportResult) -> dict[str, str]:
    """file name -> everything in it a reader could see: HTML unescaped with every data: URI decoded, SVG as
    text, PNG text chunks, CSV, and every text value of the Parquet files."""
    texts = {}
    for path in result.files:
        if path.suffix == ".html":
            page = path.read_text(encoding="utf-8")
            decoded = []
            for mime, payload in re.findall(r"data:([\w.+/-]*);base64,([A-Za-z0-9+/=]+)", page):
                data = base64.b64decode(payload)
                decoded.append(b"\n".join(png_text_chunks(data)).decode("latin-1") if mime == "image/png"
                               else data.decode("utf-8", errors="replace"))
            texts[path.name] = html.unescape(page) + "\n".join(decoded)
        elif path.suffix == ".png":
            texts[path.name] = b"\n".join(png_text_chunks(path.read_bytes())).decode("latin-1")
        elif path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            texts[path.name] = "\n".join(
                "\n".join(map(str, frame[c].cat.categories if isinstance(frame[c].dtype, pd.CategoricalDtype)
                              else frame[c].dropna().unique())) for c in frame.columns)
        elif path.suffix == ".csv":  # each distinct cell once: the same text, less to search
            rows = csv.reader(io.StringIO(path.read_text(encoding="utf-8")))
            texts[path.name] = "\n".join({cell for row in rows for cell in row})
        elif path.suffix == ".svg":
            texts[path.name] = path.read_text(encoding="utf-8")
    return {name: text.lower() for name, text in texts.items()}


def found_in(texts: dict[str, str], values: set[str]) -> dict[str, list[str]]:
    hits = {name: sorted(v for v in values if v in text) for name, text in texts.items()}
    return {name: values for name, values in hits.items() if values}


def whole_name_in(name: str, text: str) -> bool:
    """``name`` in ``text`` as a whole DNS name: not a label of a longer one (Microsoft's servers end in
    outlook.com and stay; outlook.com is also a recipient domain)."""
    for match in re.finditer(re.escape(name), text):
        before = text[match.start() - 1:match.start()]
        after = text[match.end():match.end() + 1]
        if not re.fullmatch(r"[\w.-]", before or " ") and not re.fullmatch(r"[\w-]", after or " "):
            return True
    return False


def sensitive(events: pd.DataFrame) -> tuple[set[str], set[str], set[str]]:
    """Every address, every local part long enough not to be a word, every subject of the input (lower case)."""
    addresses = {a.lower() for column in ("sender", "recipient") for a in events[column].dropna().unique()}
    locals_ = {a.split("@")[0] for a in addresses if len(a.split("@")[0]) >= MIN_BARE_LOCAL}
    subjects = {s.lower() for s in events["subject"].dropna().unique() if len(s) >= 8}
    return addresses, locals_, subjects


# ---------------------------------------------------------------- the plain report

def test_html_report_is_written_with_summary_and_code_hidden(plain):
    page = plain.html.read_text(encoding="utf-8")
    assert plain.html.name == "report.html" and plain.events > 1000
    assert "<title>Sample: outbound deferrals</title>" in page
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    worst = pd.read_csv(plain.html.parent / "report_domains.csv")["recipient_domain"].head(5)
    assert len(worst) == 5 and all(domain in text for domain in worst)  # the per-domain summary is shown
    assert "tailspintoys.com" in text and "Summary" in text
    code_cells = re.findall(r'class="jp-Cell jp-CodeCell[^"]*"', page)  # code hidden, prompts too
    assert code_cells and all("jp-mod-noInput" in cell for cell in code_cells)
    assert not re.search(r'class="[^"]*\b(?:jp-InputPrompt|jp-OutputPrompt)\b', page) and "load_trace(" not in text


def test_html_needs_no_network_and_runs_no_script(plain):
    page = plain.html.read_text(encoding="utf-8")
    assert "<script" not in page.lower()  # no require.js, MathJax, Mermaid, widget renderer, widget state
    tags = re.findall(r"<(?:link|script|img|iframe|embed|object|source|audio|video)\b[^>]*>", page, re.I)
    assert not [t for t in tags if re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", t, re.I)]
    assert not re.search(r"url\(\s*[\"']?\s*(?:https?:)?//", page, re.I)  # no CSS fetches
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_trace_text_is_escaped(hostile):
    page = hostile.html.read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<script" not in page
    assert html.escape(HOSTILE_REPLY, quote=False) in page


def test_the_samples_script_subject_shows_as_text(plain):
    """docs/sample-story.md: one subject holds <script>; the report must show it, escaped."""
    page = plain.html.read_text(encoding="utf-8")
    assert SCRIPT_SUBJECT not in page
    assert html.escape(SCRIPT_SUBJECT, quote=False) in page


def test_charts_are_embedded_and_written_as_png_and_svg(plain):
    page = plain.html.read_text(encoding="utf-8")
    embedded = re.findall(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in embedded)
    folder = plain.html.parent / "report_charts"
    pngs, svgs = sorted(folder.glob("*.png")), sorted(folder.glob("*.svg"))
    assert pngs and [p.stem for p in pngs] == [s.stem for s in svgs]
    assert set(plain.charts) == {*pngs, *svgs}
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in pngs)
    keywords = {chunk.partition(b"\0")[0] for p in pngs for chunk in png_text_chunks(p.read_bytes())}
    assert keywords <= {b"Software"}  # text chunks carry no data, only matplotlib's name
    assert all(ET.parse(s).getroot().tag.endswith("svg") for s in svgs)


def test_tables_are_written_guarded(plain, raw):
    folder = plain.html.parent
    names = {p.name for p in plain.tables}
    assert names == {"report_events.csv", "report_events.parquet", "report_domains.csv", "report_domains.parquet"}
    for name in ("report_events.csv", "report_domains.csv"):
        rows = list(csv.reader(io.StringIO((folder / name).read_text(encoding="utf-8"))))
        assert not [cell for row in rows for cell in row if cell.startswith(FORMULA_PREFIXES)]
    events = pd.read_parquet(folder / "report_events.parquet")
    assert len(events) == len(raw) == plain.events
    formula = [s for s in raw["subject"].dropna().unique() if s.startswith("=")]
    assert formula and set(events["subject"]) >= {"'" + s for s in formula}
    domains = pd.read_parquet(folder / "report_domains.parquet")
    assert "tailspintoys.com" in set(domains["recipient_domain"].astype(str))


# ---------------------------------------------------------------- redaction

def test_redacted_report_holds_no_address_local_part_or_subject(redacted, raw):
    texts = visible_text(redacted)
    assert set(texts) >= {"report.html", "report_events.csv", "report_events.parquet", "report_domains.csv"}
    assert any(name.endswith(".svg") for name in texts) and any(name.endswith(".png") for name in texts)
    addresses, locals_, subjects = sensitive(raw)
    assert len(addresses) > 100 and len(subjects) > 100 and any(SCRIPT_SUBJECT in s for s in subjects)
    assert found_in(texts, addresses) == {}
    assert found_in(texts, {f"{local}@" for local in locals_} | {f" {local} " for local in locals_}) == {}
    assert found_in(texts, subjects) == {}
    assert re.search(r"user-[0-9a-f]{8}@", texts["report_events.csv"])
    assert "tailspintoys.com" in texts["report.html"]  # domains stay unless --redact-domains
    assert redacted.redacted


def test_redacted_load_report_shows_file_names_not_folders(redacted, plain, sample_dir):
    """The folders a trace was loaded from (user names, share names) stay out of a redacted report."""
    folder = str(sample_dir.resolve())
    assert folder in plain.html.read_text(encoding="utf-8")  # the plain report shows where the files were
    page = redacted.html.read_text(encoding="utf-8")
    assert folder not in page and str(sample_dir.parent) not in page
    assert "messagetrace_ps51_en-US.csv" in page


def test_domains_redacted_report_holds_no_domain_or_remote_host(domains_redacted, raw):
    texts = visible_text(domains_redacted)
    addresses, _, subjects = sensitive(raw)
    assert found_in(texts, addresses | subjects) == {}
    domains = {d.lower() for d in raw["recipient_domain"].dropna().astype(str).unique()}
    whole = {name: [d for d in domains if whole_name_in(d, text)] for name, text in texts.items()}
    assert {name: hits for name, hits in whole.items() if hits} == {}
    assert found_in(texts, {h.lower() for h in raw["remote_host"].dropna().unique()}) == {}
    assert re.search(r"domain-[0-9a-f]{8}\.example", texts["report.html"])


def test_a_notebook_that_does_not_redact_fails_the_report(sample_dir, tmp_path):
    """The report checks its own files: a notebook showing raw addresses under --redact removes everything."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("paths = []")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(
        "from analysis import load_trace\nload_trace(paths, errors='report')[['recipient', 'subject']].head(20)")]
    path = tmp_path / "leaky.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(ReportError, match=r"redaction check failed.*report\.html: \d+ addresses"):
        render_report(sample_dir, tmp_path / "out" / "report.html", redact=True, notebook=path)
    assert list((tmp_path / "out").iterdir()) == []


# ---------------------------------------------------------------- bad and empty input

def test_a_trace_that_fails_to_load_gives_a_report_with_the_errors(tmp_path):
    bad = tmp_path / "broken_trace.csv"
    bad.write_text("this,is,not\na,message,trace\n", encoding="utf-8")
    assert main([str(bad), "-o", str(tmp_path / "out" / "report.html")]) == 0
    text = html.unescape((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert "broken_trace.csv" in text and "unknown header" in text


def test_an_empty_trace_gives_a_report_that_says_so(tmp_path):
    empty = tmp_path / "empty_trace.csv"
    empty.write_text(PS51_HEADER, encoding="ascii")
    result = render_report(empty, tmp_path / "out" / "report.html")
    assert result.events == 0
    text = html.unescape(re.sub(r"<[^>]+>", " ", result.html.read_text(encoding="utf-8")))
    assert re.search(r"\bno (?:events|messages)\b", text, re.I)
    assert pd.read_parquet(tmp_path / "out" / "report_events.parquet").empty


# ---------------------------------------------------------------- the exporter on its own

def test_export_drops_scripts_widgets_and_inputs():
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"w": "anna@x.com"}}}
    code = nbformat.v4.new_code_cell("secret_source_code()")
    code.outputs = [
        nbformat.v4.new_output("display_data", {"application/javascript": "alert(1)", "text/plain": "js"}),
        nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "w"},
                                                "text/plain": "VBox()"}),
        nbformat.v4.new_output("display_data", {"text/html": "<b>kept &lt;script&gt;</b>"}),
        nbformat.v4.new_output("display_data", {"image/png": base64.b64encode(PNG_SIGNATURE).decode()}),
    ]
    silent = nbformat.v4.new_code_cell("x = 1")
    notebook.cells = [nbformat.v4.new_markdown_cell("# Heading & more"), code, silent]
    page = export_html(notebook, "A <title>")
    assert "<script" not in page and "anna@x.com" not in page and "alert(1)" not in page and "VBox" not in page
    assert "secret_source_code" not in page and "x = 1" not in page
    assert "<b>kept &lt;script&gt;</b>" in page and "Heading &amp; more" in page
    assert "<title>A &lt;title&gt;</title>" in page and 'src="data:image/png;base64,' in page


# ---------------------------------------------------------------- command line and refusals

def test_cli_refuses_clearly(tmp_path, monkeypatch, capsys, sample_dir):
    out = tmp_path / "out"
    assert main([str(tmp_path / "missing.csv"), "-o", str(out / "r.html")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main([str(sample_dir), "-o", str(out / "r.pdf")]) == 2
    assert ".html" in capsys.readouterr().err
    assert main([str(sample_dir), "-o", str(out / "r.html"), "--notebook", str(tmp_path / "nope.ipynb")]) == 2
    assert "nope.ipynb" in capsys.readouterr().err
    monkeypatch.setattr(report.shutil, "which", lambda name: None)
    assert main([str(sample_dir), "-o", str(out / "r.html"), "--pdf"]) == 2
    assert "chromium" in capsys.readouterr().err.lower()
    assert not out.exists() or list(out.iterdir()) == []
