"""The guided notebooks switched to Dask with one parameter: ``dask_scheduler`` and a store as ``paths``.

A LocalCluster (2 worker processes, loopback) stands in for an existing cluster: the notebooks get its scheduler
address, as an admin would give theirs. The sample is ingested into a store cut into several partitions, every
notebook runs headless on it, and the findings, tables and charts must equal those of the same notebook run on the
sample's exports with pandas. Only the load step differs (a store instead of files).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

distributed = pytest.importorskip("distributed")

from notebook_helpers import RAW_SCRIPT, execute, html_text, outputs, run_once  # noqa: E402

from analysis.store.ingest import read_manifest  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")]

NAMES = ("01_load_and_triage", "02_why_deferred", "03_gateways_and_exchange_ranges", "04_share_report")


@pytest.fixture(scope="module")
def store(sample_store: Path) -> Path:
    """The sample's store (conftest), in several partitions (5 or more)."""
    assert read_manifest(sample_store)["partitions"] > 3
    return sample_store


def parameters(name: str, sample_dir: Path, out: Path) -> dict:
    allowlist = str(sample_dir / "partner_allowlist_ironport.txt")
    return {"03_gateways_and_exchange_ranges": {"allowlist": allowlist},
            "04_share_report": {"allowlist": allowlist, "charts_dir": str(out / "charts"), "redact": True,
                                "redact_secret": "00" * 32}}.get(name, {})


@pytest.fixture(scope="module")
def runs(notebook_root: Path, sample_dir: Path, store: Path, client, tmp_path_factory: pytest.TempPathFactory,
         sample_runs, monkeypatch_module) -> Iterator[Callable[[str, str], nbformat.NotebookNode]]:
    """``run(engine, name)``: the notebook on the sample's exports (``"pandas"``) or on the store (``"dask"``, the
    test cluster's scheduler), run once. The pandas runs go one after the other in a background thread from the
    start, while the Dask runs (mostly waiting on the cluster) run in the test's thread: the two overlap. A pandas
    run test_notebooks made with the same parameters (01-03) is reused."""

    def execute_on(engine: str, name: str) -> nbformat.NotebookNode:
        out = tmp_path_factory.mktemp(f"{engine}-{name[:2]}")
        if engine == "pandas":
            return run_once(sample_runs, notebook_root, name, out, paths=str(sample_dir),
                            **parameters(name, sample_dir, out))
        return execute(notebook_root, name, out, paths=str(store), dask_scheduler=client.scheduler.address,
                       **parameters(name, sample_dir, out))

    with ThreadPoolExecutor(max_workers=1) as background:
        pandas_runs = {name: background.submit(execute_on, "pandas", name) for name in NAMES}
        done: dict[tuple[str, str], nbformat.NotebookNode] = {}

        def run(engine: str, name: str) -> nbformat.NotebookNode:
            if engine == "pandas":
                return pandas_runs[name].result()
            if (engine, name) not in done:
                done[engine, name] = execute_on(engine, name)
            return done[engine, name]

        yield run
        for future in pandas_runs.values():
            future.cancel()


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, list[str]]]:
    """(source, outputs as HTML or text; "image/png" for a chart) of every code cell but the parameters."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code" or {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", [])):
            continue
        shown = []
        for o in cell.outputs:
            data = o.get("data", {})
            shown.append(str(data.get("text/html") or o.get("text") or ("image/png" if "image/png" in data else "")))
        found.append((cell.source, shown))
    return found


# what differs by design: the run's own time ("report made ...", the names of downloads), temporary paths
VOLATILE = re.compile(r"report made [0-9: -]+|/tmp/[^\s\"'<]+|exo-deferrals-[a-z]+-[\w]+|-\d{8}-\d{6}\.|"
                      r'<div class="exo-chart-downloads">.*?</div>')  # a chart's downloads: compared as its image


def comparable(nb: nbformat.NotebookNode) -> list[tuple[str, list[str]]]:
    """Every code cell but the parameters and the load step (its report: a store keeps each file's own load
    report, rows de-duplicated across files are counted at ingest), with run-specific text masked."""
    kept = []
    for source, shown in cells(nb):
        if "FilePicker(" in source or "load_report.to_frame()" in source or "load_table(load_report" in source:
            continue
        kept.append((source, [VOLATILE.sub("…", text) for text in shown]))
    return kept


@pytest.mark.parametrize("name", NAMES)
def test_notebook_on_dask_equals_pandas(runs, name):
    on_dask, on_pandas = runs("dask", name), runs("pandas", name)
    assert not [o for o in outputs(on_dask) if o.output_type == "error"]
    assert RAW_SCRIPT not in html_text(on_dask)
    dask_cells, pandas_cells = comparable(on_dask), comparable(on_pandas)
    assert [s for s, _ in dask_cells] == [s for s, _ in pandas_cells]
    for (source, dask_out), (_, pandas_out) in zip(dask_cells, pandas_cells, strict=True):
        if dask_out != pandas_out:
            diff = difflib.unified_diff("\n".join(pandas_out).replace("><", ">\n<").splitlines(),
                                        "\n".join(dask_out).replace("><", ">\n<").splitlines(), "pandas", "dask",
                                        lineterm="", n=1)
            pytest.fail(f"{name}: the outputs of this cell differ on Dask:\n{source}\n" + "\n".join(list(diff)[:60]))
    assert sum("image/png" in text for _, shown in dask_cells for text in shown) >= 1


def test_notebooks_say_they_ran_on_the_cluster(runs, client, store):
    address = client.scheduler.address
    for name in NAMES[:3]:
        text = html_text(runs("dask", name))
        assert f"the store {store}, computed on the Dask cluster {address}" in text
        assert "Loaded 5,474 events from" in text
    report = html_text(runs("dask", "04_share_report"))
    # the report's load table lists the ingested files, by format and dates (never by name)
    assert "<td>EAC historical search: enhanced summary report, 2026-11-16 to 2026-11-22</td>" in report
    prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert any(p.startswith("exo-store") for p in prefixes), prefixes  # the store was read by the cluster's workers


def test_a_folder_of_exports_with_a_scheduler_is_refused_in_words(notebook_root, sample_dir, client, tmp_path,
                                                                   monkeypatch_module):
    nb = execute(notebook_root, "01_load_and_triage", tmp_path, paths=str(sample_dir),
                 dask_scheduler=client.scheduler.address)
    text = html_text(nb)
    assert "with a Dask scheduler, paths must name one store folder" in text
    assert "exo-deferrals ingest" in text and "Traceback" not in text
