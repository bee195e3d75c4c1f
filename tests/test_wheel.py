"""The wheel is complete (issue 13 point 6): built from the files a release ships, installed (not editable) into a
fresh virtual environment and run from another folder, ``exo-deferrals`` writes the sample, renders a report and
copies notebooks that run.

No network: the wheel is built without build isolation, installed with ``--no-deps``, and the fresh environment
borrows the dependencies of the test environment through a ``.pth`` line (its ``.pth`` files, the editable install
of the checkout among them, are not processed: only the wheel's ``analysis`` can be imported) and their data files
(nbconvert's templates) through ``JUPYTER_PATH``. CI (``.ci/run``)
does the same with a full ``pip install`` of the wheel's dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["analysis", "notebooks", "data/sample", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md"]
IGNORED = {"analysis": ["kit"], "notebooks": [".ipynb_checkpoints", "exports", "charts"]}  # git-ignored there

pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(bin folder of a fresh venv holding only the installed wheel, the environment to run it in)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # only what is shipped: no build/ leftovers or stray files of the checkout
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns(*IGNORED.get(name, ()),
                                                                                     "__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
          str(base / "dist"), str(source)], base, env)
    wheel = next((base / "dist").glob("exo_deferrals-*.whl"))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)], base,
         env)
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env)
    Path(site.stdout.strip(), "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")  # the borrowed packages' data (templates)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return python.parent, env


def test_the_installed_kit_is_the_wheel_not_the_checkout(kit, tmp_path):
    bin_dir, env = kit
    done = _run([str(bin_dir / "python"), "-c", "import analysis, analysis.core.bundled as b; "
                 "print(analysis.__file__); print(b.notebooks_dir()); print(b.sample_dir())"], tmp_path, env)
    package, notebooks, sample = (Path(line) for line in done.stdout.split())
    venv = bin_dir.parent
    assert package.is_relative_to(venv) and notebooks.is_relative_to(venv) and sample.is_relative_to(venv)
    assert sorted(p.name for p in notebooks.glob("*.ipynb")) == sorted(p.name for p in (ROOT / "notebooks")
                                                                        .glob("*.ipynb"))
    assert sorted(p.name for p in sample.iterdir()) == sorted(p.name for p in (ROOT / "data" / "sample").iterdir())
    assert _run([str(bin_dir / "exo-deferrals"), "--version"], tmp_path, env).stdout.startswith("exo-deferrals ")


def test_sample_and_report_from_another_folder(kit, tmp_path):
    bin_dir, env = kit
    command = str(bin_dir / "exo-deferrals")
    _run([command, "sample", "--out", "sample"], tmp_path, env)
    written = sorted(p.name for p in (tmp_path / "sample").iterdir())
    assert written == sorted(p.name for p in (ROOT / "data" / "sample").iterdir())  # README.md: the story's numbers
    done = _run([command, "report", "sample", "--allowlist", "sample/partner_allowlist_ironport.txt",
                 "-o", "out/report.html"], tmp_path, env)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "tailspintoys.com" in page and "<script" not in page
    assert "without encryption" not in done.stderr and "Traceback" not in done.stderr  # Jupyter's noise hidden
    assert done.stderr.splitlines()[-1].endswith(" s") and "events" in done.stderr


def test_the_bundled_notebooks_run_from_a_folder_made_by_lab(kit, tmp_path):
    bin_dir, env = kit
    python = str(bin_dir / "python")
    _run([python, "-c", "from pathlib import Path; from analysis.cli.lab import prepare; prepare(Path('work'))"],
         tmp_path, env)
    notebook = tmp_path / "work" / "notebooks" / "01_load_and_triage.ipynb"
    _run([python, "-m", "papermill", "--cwd", str(notebook.parent), "--no-progress-bar", str(notebook),
          str(tmp_path / "executed.ipynb")], tmp_path, env)
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    shown = "\n".join(str(o.get("data", {}).get("text/html", "")) + str(o.get("text", ""))
                      for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "Loaded 5,474 events from" in shown  # the copied sample, read through the notebook's default paths
