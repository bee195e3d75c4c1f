"""Every guided notebook executed headless with papermill on the sample: all cells, no errors, charts as PNG.

The notebooks run from a throw-away copy (``notebook_root``) so that exports they write stay out of the
repository. Headless runs leave static copies of the widgets (HTML tables, PNG charts) in the cell outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from notebook_helpers import RAW_SCRIPT, execute, html_text, outputs, pngs, run_once, sample_headline

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("00_start_here", "01_load_and_triage", "02_why_deferred", "03_gateways_and_exchange_ranges",
         "04_share_report")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the executed notebooks (and the report's charts) are written."""
    return tmp_path_factory.mktemp("executed")


@pytest.fixture(scope="module")
def executed(notebook_root: Path, sample_dir: Path, out: Path, sample_runs, monkeypatch_module
             ) -> dict[str, nbformat.NotebookNode]:
    """Each notebook run once with its defaults (the sample given as an absolute path); test_notebooks_dask compares
    its Dask runs of 01-03 with these same runs."""
    allowlist = str(sample_dir / "partner_allowlist_ironport.txt")
    extra = {"03_gateways_and_exchange_ranges": {"allowlist": allowlist},
             "04_share_report": {"allowlist": allowlist, "charts_dir": str(out / "charts")}}
    return {name: run_once(sample_runs, notebook_root, name, out, paths=str(sample_dir), **extra.get(name, {}))
            for name in NAMES}


def test_notebooks_are_committed_without_outputs():
    files = sorted(str(p) for p in NOTEBOOKS.glob("*.ipynb"))
    assert [Path(f).stem for f in files] == list(NAMES)
    done = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", NAMES)
def test_notebook_starts_with_papermill_parameters_defaulting_to_the_sample(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", [])
    assert 'paths = "../data/sample/"' in first_code.source


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_headless_without_errors(executed, name):
    nb = executed[name]
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "every code cell ran"
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    assert not [o for o in outputs(nb) if o.get("name") == "stderr" and "Traceback" in o.get("text", "")]
    assert RAW_SCRIPT not in html_text(nb)
    assert RAW_SCRIPT not in json.dumps(nb.metadata.get("widgets", {}))


@pytest.mark.parametrize("name, charts", [("01_load_and_triage", 2), ("02_why_deferred", 3),
                                          ("03_gateways_and_exchange_ranges", 1), ("04_share_report", 5)])
def test_charts_are_png_outputs(executed, name, charts):
    assert pngs(executed[name]) >= charts


def test_widgets_leave_static_copies_and_their_state(executed):
    nb = executed["02_why_deferred"]
    text = html_text(nb)
    assert "headless run" in text
    assert "Loaded " in text and "Load report" in text  # FilePicker
    assert "Domain: all domains; cause: all causes" in text and "Journey of " in text  # Drilldown
    assert "☐ <b>" in text  # RemedyChecklist
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any(model["model_name"] == "DropdownModel" for model in state.values())


def test_allowlist_audit_and_report(executed, out):
    audit = html_text(executed["03_gateways_and_exchange_ranges"])
    assert "52.100.0.0/14" in audit and "Missing Exchange Online ranges" in audit and "Download allowlist-corrected" \
        in audit
    report = html_text(executed["04_share_report"])
    for section in ("What is wrong", "Which domains", "Since when", "Who must act"):
        assert f"<h3>{section}</h3>" in report
    assert "tailspintoys.com" in report and "52.100.0.0/14" in report
    assert "REFUSED: missing from the allow-list" in report and "Audit of the allow-list given" in report
    charts = sorted(p.name for p in (out / "charts").iterdir())
    assert len(charts) == 10 and {p.rsplit(".", 1)[1] for p in charts} == {"png", "svg"}
    assert {"source-ranges-1.png", "source-ranges-1.svg"} <= set(charts)


def test_papermill_parameters_are_honoured(notebook_root, sample_dir, tmp_path, monkeypatch_module):
    nb = execute(notebook_root, "02_why_deferred", tmp_path, paths=str(sample_dir), domain="tailspintoys.com",
                 cause="gateway_block")
    text = html_text(nb)
    assert "Domain: tailspintoys.com; cause: gateway_block" in text
    messages = text.split("Messages (one row per recipient)", 1)[1].split("Their deferral and failure replies")[0]
    assert "@tailspintoys.com" in messages and "@gmail.com" not in messages
    assert "Journey of " in text and "@tailspintoys.com:" in text.split("Journey of ", 1)[1][:200]


def test_broken_file_shows_the_load_report_and_the_rest_runs(notebook_root, sample_dir, tmp_path, monkeypatch_module):
    broken = tmp_path / "broken_export.csv"
    broken.write_bytes(b'"Foo";"Bar"\r\n"1";"2"\r\n\x00\xff\xfe garbage')
    nb = execute(notebook_root, "01_load_and_triage", tmp_path, paths=[str(sample_dir), str(broken)],
                 search="<script>")
    text = html_text(nb)
    assert "could not be loaded (the others were):" in text and "broken_export.csv" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the hostile subject, found and shown as text
    assert "Load report" in text and "Traceback" not in text
    assert not [o for o in outputs(nb) if o.output_type == "error"]
    assert pngs(nb) >= 2  # the trend and the domains still drawn from the files that loaded


@pytest.mark.parametrize("name", ["01_load_and_triage", "02_why_deferred", "03_gateways_and_exchange_ranges"])
def test_notebooks_open_with_what_is_wrong_and_where_to_look_next(executed, name):
    text = html_text(executed[name])
    triage = text.split("Where to look next", 1)[1][:2000]
    h = sample_headline()  # the numbers the package's summaries give for the sample
    assert (f"Of {h['recipients']:,} recipients, {h['deferred']:,} were deferred at least once"
            in text.split("Where to look next", 1)[0])
    assert "tailspintoys.com: its gateway refuses every attempt from 52.100.0.0/14" in triage
    assert "--partner tailspintoys.com" in triage and "gmail.com: mostly SPF/DKIM/DMARC failure" in triage
    assert "Endpoints(" not in text


@pytest.mark.parametrize("name, charts", [("01_load_and_triage", 2), ("02_why_deferred", 2),
                                          ("03_gateways_and_exchange_ranges", 1)])
def test_every_chart_of_the_notebooks_can_be_downloaded_as_png_and_svg(executed, name, charts):
    text = html_text(executed[name])
    assert text.count('class="exo-chart-downloads"') == charts
    assert text.count('download="') >= 2 * charts and ".svg" in text and "image/svg+xml" in text
