"""Running the guided notebooks headless with papermill and reading their outputs (for the notebook tests)."""

from __future__ import annotations

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


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def html_text(nb: nbformat.NotebookNode) -> str:
    """Every HTML and text output of the cells, joined."""
    return "\n".join(str(o.get("data", {}).get("text/html", "")) + str(o.get("text", "")) for o in outputs(nb))


def pngs(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs(nb))
