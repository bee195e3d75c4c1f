"""Running the guided notebooks headless with papermill and reading their outputs (for the notebook tests)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import nbformat
import papermill
import pytest

CELL_TIMEOUT = 600  # seconds; a cell of the sample takes a few
RAW_SCRIPT = "<script>alert(1)</script>"


def execute(root: Path, name: str, out: Path, **parameters: object) -> nbformat.NotebookNode:
    """Run ``name`` from ``root``/notebooks with papermill; a failing cell fails the test with its error."""
    source = root / "notebooks" / f"{name}.ipynb"
    target = out / f"{name}.ipynb"
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters, cwd=str(source.parent),
                                   kernel_name="python3", progress_bar=False, execution_timeout=CELL_TIMEOUT)
    except papermill.PapermillExecutionError as exc:
        pytest.fail(f"{name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
    return nbformat.read(target, as_version=4)


def run_once(runs: dict[tuple, nbformat.NotebookNode], root: Path, name: str, out: Path,
             **parameters: object) -> nbformat.NotebookNode:
    """:func:`execute`, unless ``runs`` (conftest's session-wide ``sample_runs``) holds a run of ``name`` with the
    same parameters: the notebook tests and the Dask notebook tests compare against one pandas run each. The
    notebook returned is shared: read it, do not change it."""
    key = (name, json.dumps(parameters, sort_keys=True, default=str))
    if key not in runs:
        runs[key] = execute(root, name, out, **parameters)
    return runs[key]


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def html_text(nb: nbformat.NotebookNode) -> str:
    """Every HTML and text output of the cells, joined."""
    return "\n".join(str(o.get("data", {}).get("text/html", "")) + str(o.get("text", "")) for o in outputs(nb))


def pngs(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs(nb))


@functools.cache
def sample_headline() -> dict:
    """The headline of the bundled sample, as the package's summaries compute it (what the notebooks and the report
    must show)."""
    from analysis import headline, load_trace, tag

    return headline(tag(load_trace(Path(__file__).resolve().parents[1] / "data" / "sample")))
