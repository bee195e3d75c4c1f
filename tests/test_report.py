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
from notebook_helpers import sample_headline

from analysis.cli.report import main
from analysis.io.loader import load_trace
from analysis.io.write import FORMULA_PREFIXES
from analysis.report import notebook as report
from analysis.report.notebook import ReportError, export_html, render_report
from analysis.report.redact import MIN_BARE_LOCAL

pytestmark = pytest.mark.slow

ALLOWLIST = "partner_allowlist_ironport.txt"
PARTNER = "tailspintoys.com"  # behind an IronPort that lacks 52.100.0.0/14 (docs/sample-story.md)
MISSING_RANGE = "52.100.0.0/14"
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
def partner(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> report.ReportResult:
    """The report for tailspintoys.com's admin, without an allow-list."""
    return render_report(sample_dir, tmp_path_factory.mktemp("partner") / "report.html", partners=[PARTNER])


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


def test_input_files_are_named_by_format_and_date_never_by_path_or_name(redacted, plain, sample_dir, raw):
    """Folders (user names, share names) and file names (eac_extended_tailspintoys.csv) stay out of every report
    (the sample names two files after their format id, which the events' source_format column holds)."""
    names = {p.name.lower() for p in sample_dir.iterdir()} | {p.stem.lower() for p in sample_dir.iterdir()}
    names -= set(raw["source_format"].astype(str))
    for result in (plain, redacted):
        texts = visible_text(result)
        assert found_in(texts, {str(sample_dir.resolve()).lower(), str(sample_dir.parent).lower()}) == {}
        assert found_in(texts, {n for n in names if len(n) > 8}) == {}
        assert "get-messagetrace / get-messagetracev2 (export-csv), 2026-11-16 to 2026-11-22" in texts["report.html"]


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

def page_text(path: Path) -> str:
    """The words of a page, its style sheets left out."""
    page = re.sub(r"<style\b.*?</style>", " ", path.read_text(encoding="utf-8"), flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_inputs_that_did_not_load_are_said_at_the_top_and_exit_non_zero(tmp_path, capsys, sample_dir):
    """An empty file, a PNG, an unrelated CSV, a header-only export and a damaged one: each said before the
    summary, by format (never by file name), and the command exits 1."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.csv").write_bytes(b"")
    (folder / "picture.png").write_bytes(PNG_SIGNATURE + b"\0\0\0\rIHDR")
    (folder / "broken_trace.csv").write_text("this,is,not\na,message,trace\n", encoding="utf-8")
    (folder / "header_only.csv").write_text(PS51_HEADER, encoding="ascii")
    (folder / "cut_summary.csv").write_bytes((sample_dir / "eac_summary.csv").read_bytes()[:300])
    files = [str(path) for path in sorted(folder.iterdir())]
    assert main([*files, "-o", str(tmp_path / "out" / "report.html")]) in (1, 3)  # written, inputs unusable
    err = capsys.readouterr().err
    assert err.count("did not load") == 4 and "loaded no rows" in err
    text = page_text(tmp_path / "out" / "report.html")
    top = text[:text.index("Summary")]
    assert "This report is incomplete" in top and "No message-trace event was loaded" in top
    for said in ("the file is empty", "this is a PNG image", "unknown header", "header but no data rows",
                 "EAC historical search: summary report loaded no rows (1 read, 1 rejected)"):
        assert said in top, said
    assert "broken_trace" not in text and "no remedies needed" not in text
    assert pd.read_parquet(tmp_path / "out" / "report_events.parquet").empty


def test_a_folder_of_no_trace_export_says_what_was_skipped(tmp_path, capsys):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "notes.txt").write_text("a,b\n1,2\n", encoding="utf-8")
    (folder / "picture.png").write_bytes(PNG_SIGNATURE + b"\0\0\0\rIHDR")
    assert main([str(folder), "-o", str(tmp_path / "out" / "report.html")]) == 1
    assert capsys.readouterr().err.count("was skipped") == 2
    top = page_text(tmp_path / "out" / "report.html").split("Summary")[0]
    assert top.count("was skipped") == 2 and "No message-trace event was loaded" in top


def test_a_partner_absent_from_the_trace_is_said_at_the_top_and_exits_non_zero(tmp_path, capsys, sample_dir):
    assert main([str(sample_dir), "-o", str(tmp_path / "report.html"), "--partner", "nowhere.example"]) == 1
    assert "nowhere.example does not appear in the trace" in capsys.readouterr().err
    text = page_text(tmp_path / "report.html")
    assert text.index("nowhere.example does not appear in the trace") < text.index("Summary")


# ---------------------------------------------------------------- the proof, and the report for one partner

def test_the_proof_is_in_the_report_without_an_allowlist(partner):
    text = page_text(partner.html)
    proof = text.index("The proof: refusals by Exchange Online source range")
    assert text.index("Summary") < proof < text.index("Which domains")  # right after what is wrong
    assert f"refused 172 of 172 delivery attempts from Exchange Online's published range {MISSING_RANGE}" in text
    assert f"Its allow-list lacks {MISSING_RANGE}" in text and "REFUSED: missing from the allow-list" in text
    appendix = text[text.index("Appendix: the corrected allow-list"):]
    assert "(ironport format)" in appendix and "ALLOWED_LIST:" in appendix and MISSING_RANGE in appendix
    assert {p.name for p in partner.charts} >= {"source-ranges-1.png", "source-ranges-1.svg"}


def test_the_report_with_an_allowlist_appends_the_audit_and_its_corrected_list(plain):
    text = page_text(plain.html)
    appendix = text[text.index("Appendix: the corrected allow-list"):]
    assert "Audit of the allow-list given" in appendix and "Missing Exchange Online ranges" in appendix
    assert "added by exo-deferrals" in appendix or "exo-deferrals: checked against" in appendix


def test_the_partner_report_holds_no_other_recipient_domain(partner, raw):
    texts = visible_text(partner)
    assert set(texts) >= {"report.html", "report_events.csv", "report_events.parquet", "report_domains.csv",
                          "source-ranges-1.svg"}
    outbound_senders = raw.loc[raw["direction"].astype(str).eq("outbound"), "sender"].dropna().str.rpartition("@")[2]
    others = {d.lower() for d in raw["recipient_domain"].dropna().astype(str).unique()} - {PARTNER}
    others -= set(outbound_senders.str.lower())  # the tenant's own domains: the sender of every message
    assert len(others) > 100
    whole = {name: [d for d in others if whole_name_in(d, text)] for name, text in texts.items()}
    assert {name: hits for name, hits in whole.items() if hits} == {}
    other_subjects = set(raw.loc[~raw["recipient_domain"].astype(str).eq(PARTNER), "subject"].dropna().str.lower())
    other_subjects -= set(raw.loc[raw["recipient_domain"].astype(str).eq(PARTNER), "subject"].dropna().str.lower())
    assert found_in(texts, {s for s in other_subjects if len(s) >= 12}) == {}
    events = pd.read_parquet(partner.html.parent / "report_events.parquet")
    assert set(events["recipient_domain"].astype(str)) == {PARTNER} and partner.problems == []
    assert "For the mail administrators of tailspintoys.com" in page_text(partner.html)


def test_the_partner_report_with_hidden_domains_names_no_partner_in_any_file_name(sample_dir, tmp_path):
    result = render_report(sample_dir, tmp_path / "out" / "report.html", partners=[PARTNER], redact_domains=True)
    texts = visible_text(result)
    assert all("tailspintoys" not in path.name for path in result.files)
    assert found_in(texts, {"tailspintoys"}) == {}
    assert MISSING_RANGE in texts["report.html"] and "domain-" in texts["report.html"]


def test_no_python_repr_reaches_the_report(plain, partner):
    for result in (plain, partner):
        text = page_text(result.html)
        assert not re.search(r"\b[A-Z]\w*\((?:\w+=|')", text), re.findall(r"\b[A-Z]\w*\([^)]{0,40}", text)[:3]
        assert "<NA>" not in text and " nan " not in f" {text} ".lower() and "NaT" not in text
        assert re.search(r"version 2025013000 of 2025-01-30, from the bundled data; \d+ days older", text)


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
        nbformat.v4.new_output("stream", name="stderr", text="site-packages/dask/_expr.py:1277: UserWarning: ..."),
        nbformat.v4.new_output("stream", name="stdout", text="printed ALLOWED_LIST"),
    ]
    silent = nbformat.v4.new_code_cell("x = 1")
    notebook.cells = [nbformat.v4.new_markdown_cell("# Heading & more"), code, silent]
    page = export_html(notebook, "A <title>")
    assert "<script" not in page and "anna@x.com" not in page and "alert(1)" not in page and "VBox" not in page
    assert "secret_source_code" not in page and "x = 1" not in page and "UserWarning" not in page
    assert "printed ALLOWED_LIST" in page  # what a cell prints is the report (the corrected allow-list)
    assert "<b>kept &lt;script&gt;</b>" in page and "Heading &amp; more" in page
    assert "<title>A &lt;title&gt;</title>" in page and 'src="data:image/png;base64,' in page


# ---------------------------------------------------------------- command line and refusals

def test_cli_refuses_clearly(tmp_path, monkeypatch, capsys, sample_dir):
    out = tmp_path / "out"
    assert main([str(tmp_path / "missing.csv"), "-o", str(out / "r.html")]) == 3
    assert "missing.csv" in capsys.readouterr().err
    assert main([str(sample_dir), "-o", str(out / "r.pdf")]) == 2
    assert ".html" in capsys.readouterr().err
    assert main([str(sample_dir), "-o", str(out / "r.html"), "--notebook", str(tmp_path / "nope.ipynb")]) == 3
    assert "nope.ipynb" in capsys.readouterr().err
    monkeypatch.setattr(report.shutil, "which", lambda name: None)
    assert main([str(sample_dir), "-o", str(out / "r.html"), "--pdf"]) == 4
    assert "chromium" in capsys.readouterr().err.lower()
    assert not out.exists() or list(out.iterdir()) == []


# ---------------------------------------------------------------- a store made by `exo-deferrals ingest`

PROOF_SENTENCE = re.compile(r"refused (\d+) of (\d+) delivery attempts from Exchange Online's published range "
                            r"([\d.]+/\d+)")


@pytest.fixture(scope="module")
def from_store(sample_store: Path, sample_dir: Path, client, tmp_path_factory: pytest.TempPathFactory
               ) -> report.ReportResult:
    """The report of the sample's store (made by `exo-deferrals ingest`, conftest) with the sample's allow-list,
    computed on the test's cluster (its address, as an admin gives theirs)."""
    return render_report(sample_store, tmp_path_factory.mktemp("from-store") / "report.html",
                         allowlist=sample_dir / ALLOWLIST, title="Sample: outbound deferrals",
                         dask_scheduler=client.scheduler.address)


def section(text: str, start: str, end: str | None = None) -> str:
    """The words of a page from the heading ``start`` to the heading ``end`` (or to the end)."""
    return text[text.index(start):text.index(end) if end else None]


def test_the_report_of_a_store_says_what_the_report_of_its_exports_says(from_store, plain, client):
    assert (from_store.events, from_store.problems) == (plain.events, plain.problems)
    store_text, exports_text = page_text(from_store.html), page_text(plain.html)
    # which domains, since when, who must act, and the headline numbers
    numbers = section(store_text, "The numbers, and where", "What to do, per cause")
    h = sample_headline()  # the numbers the package's summaries give for the sample
    assert f"Recipients (message + recipient) {h['recipients']:,} Deferred at least once {h['deferred']:,}" in numbers
    assert numbers == section(exports_text, "The numbers, and where", "What to do, per cause")
    proofs = PROOF_SENTENCE.findall(store_text)
    assert ("172", "172", MISSING_RANGE) in proofs and proofs == PROOF_SENTENCE.findall(exports_text)
    audit = section(store_text, "Audit of the allow-list given", "About this report")
    assert "Missing Exchange Online ranges" in audit and MISSING_RANGE in audit
    assert audit == section(exports_text, "Audit of the allow-list given", "About this report")
    domains = [pd.read_csv(r.html.parent / "report_domains.csv") for r in (from_store, plain)]
    pd.testing.assert_frame_equal(*domains)
    prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert any(p.startswith("exo-store") for p in prefixes), prefixes  # the cluster's workers read the store


def test_the_partner_report_of_a_store_on_a_local_cluster_is_scoped_and_redacted(sample_store, raw, tmp_path,
                                                                                   capsys):
    out = tmp_path / "report.html"
    assert main([str(sample_store), "-o", str(out), "--partner", PARTNER, "--redact"]) == 0  # no --scheduler: local
    assert capsys.readouterr().out.splitlines()[0] == str(out.resolve())
    text = page_text(out)
    assert f"refused 172 of 172 delivery attempts from Exchange Online's published range {MISSING_RANGE}" in text
    assert "For the mail administrators of tailspintoys.com" in text
    written = report.ReportResult(html=out, charts=sorted((tmp_path / "report_charts").iterdir()),
                                  tables=sorted(tmp_path.glob("report_*.*")))
    texts = visible_text(written)
    assert set(texts) >= {"report.html", "report_events.csv", "report_events.parquet", "source-ranges-1.svg"}
    addresses, locals_, subjects = sensitive(raw)
    assert found_in(texts, addresses | locals_ | subjects) == {}
    outbound_senders = raw.loc[raw["direction"].astype(str).eq("outbound"), "sender"].dropna().str.rpartition("@")[2]
    others = {d.lower() for d in raw["recipient_domain"].dropna().astype(str).unique()} - {PARTNER}
    others -= set(outbound_senders.str.lower())
    whole = {name: [d for d in others if whole_name_in(d, text)] for name, text in texts.items()}
    assert {name: hits for name, hits in whole.items() if hits} == {}
    events = pd.read_parquet(tmp_path / "report_events.parquet")
    assert set(events["recipient_domain"].astype(str)) == {PARTNER}
