"""Shared fixtures: the sample trace folder, and JupyterLab / Voila servers for the browser tests.

Servers run on 127.0.0.1 with a random free port and token, temporary config/runtime/settings/workspace
dirs, and are stopped (process group) when the session ends. Start-up waits are bounded.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SAMPLE = ROOT / "data" / "sample"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_TIMEOUT = 60.0


def pytest_configure(config: pytest.Config) -> None:
    # pytest-playwright 0.10 defines its session fixture base_url as a method; pytest 9 warns about it
    config.addinivalue_line("filterwarnings", "ignore:Session-scoped fixtures defined as instance methods")
    # tests (and the notebooks and servers they start, which inherit this) never reach Microsoft: the endpoints
    # tests that fetch point the client at a loopback server and lift this themselves
    os.environ["EXO_DEFERRALS_OFFLINE"] = "1"
    os.environ["EXO_DEFERRALS_CACHE"] = tempfile.mkdtemp(prefix="exo-deferrals-cache-")
    socket.socket.connect = _loopback_only(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _loopback_only(socket.socket.connect_ex)  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Nothing of the session is left in the system's temporary folder (pytest's own files: --basetemp)."""
    cache = os.environ.get("EXO_DEFERRALS_CACHE", "")
    if Path(cache).name.startswith("exo-deferrals-cache-"):  # the one pytest_configure made
        shutil.rmtree(cache, ignore_errors=True)


LOOPBACK = ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")


def _loopback_only(connect: Callable) -> Callable:
    """``socket.connect`` that refuses any address but loopback (network tests only ever touch 127.0.0.1)."""
    def guarded(sock: socket.socket, address: object) -> object:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            host = str(address[0]).split("%")[0]
            try:
                allowed = any(ipaddress.ip_address(host) in net for net in LOOPBACK)
            except ValueError:  # a name: resolve it like connect would
                allowed = host == "localhost"
            if not allowed:
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
        return connect(sock, address)
    return guarded


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """data/sample/: the sample story in every export format (written by `make sample`)."""
    if not any(SAMPLE.glob("messagetrace*.csv")):
        pytest.fail(f"{SAMPLE} holds no sample trace: run `make sample`")
    return SAMPLE


@pytest.fixture(scope="session")
def client():
    """A dask.distributed LocalCluster of 2 single-threaded worker processes on 127.0.0.1 and its client, one for the
    session (starting one takes seconds): Dask computations of the tests that ask for it go to it."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, memory_limit="2GB")
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


@pytest.fixture(scope="session")
def sample_store(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The sample ingested by the command a user runs (``exo-deferrals ingest``), cut into several partitions; the
    tests only read it. Made once per run: pytest-xdist workers share it (pytest-xdist's documented recipe, the
    first worker to ask ingests while the other waits on the lock; pytest empties --basetemp at each run)."""
    pytest.importorskip("distributed")
    from filelock import FileLock

    from analysis.backends.store import STORE_MANIFEST
    from analysis.cli import main

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    store = shared / "sample-store" / "store"
    with FileLock(str(shared / "sample-store.lock")):
        if not (store / STORE_MANIFEST).is_file():
            assert main(["ingest", str(sample_dir), "--store", str(store), "--partition-rows", "1200"]) == 0
    return store


@pytest.fixture(scope="session")
def sample_runs() -> dict[tuple, object]:
    """Notebooks executed on the sample, by (name, parameters): test modules that run a notebook with the same
    parameters in one process (one pytest-xdist worker) share one run (see ``notebook_helpers.run_once``)."""
    return {}


@pytest.fixture(scope="module")
def monkeypatch_module():
    """No forced static mode and no Agg backend: notebook kernels must detect the headless run themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("EXO_DEFERRALS_STATIC", raising=False)
        patch.delenv("MPLBACKEND", raising=False)
        yield patch


@pytest.fixture(scope="session")
def notebook_root(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """A throw-away copy of the repository layout the notebooks expect: notebooks/ and data/sample/."""
    root = tmp_path_factory.mktemp("lab-root")
    shutil.copytree(NOTEBOOKS, root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "data").mkdir()
    (root / "data" / "sample").symlink_to(sample_dir, target_is_directory=True)
    return root


# ---------------------------------------------------------------- browser and servers

@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """pytest-playwright launch options: Debian's Chromium (never `playwright install`)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return {"executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS, "headless": True}


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen
    log: Path

    def address(self, path: str) -> str:
        return f"{self.url}{path}{'&' if '?' in path else '?'}token={self.token}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jupyter_env(base: Path) -> dict[str, str]:
    """Environment with private Jupyter dirs, the JupyterLab news toast off and notebook windowing off."""
    settings = base / "settings"
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))  # every cell in the DOM, for the selectors
    dirs = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_RUNTIME_DIR": "runtime", "JUPYTERLAB_WORKSPACES_DIR":
            "workspaces", "IPYTHONDIR": "ipython", "MPLCONFIGDIR": "mpl"}
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    for name, sub in dirs.items():
        (base / sub).mkdir()
        env[name] = str(base / sub)
    env.pop("MPLBACKEND", None)
    return env


def start_server(argv: list[str], base: Path, ready_path: str, cwd: Path) -> Iterator[Server]:
    """Run ``argv`` ({port} and {token} filled in) until the session ends; yields once ``ready_path`` answers."""
    port, token = free_port(), secrets.token_hex(16)
    log = base / "server.log"
    command = [part.format(port=port, token=token) for part in argv]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=jupyter_env(base), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", token, process, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"{argv[2]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(server.address(ready_path), timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{argv[2]} not ready after {SERVER_START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@pytest.fixture(scope="session")
def lab_server(notebook_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """JupyterLab serving the copied notebooks."""
    base = tmp_path_factory.mktemp("lab")
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebook_root}", "--no-browser",
            "--allow-root", "--ip=127.0.0.1", "--port={port}", "--ServerApp.port_retries=0",
            "--ServerApp.token={token}"]
    yield from start_server(argv, base, "/api/status", notebook_root)


@pytest.fixture(scope="session")
def voila_server(notebook_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Voila serving 01_load_and_triage as an app."""
    base = tmp_path_factory.mktemp("voila")
    notebook = notebook_root / "notebooks" / "01_load_and_triage.ipynb"
    argv = [sys.executable, "-m", "voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1", "--port={port}",
            "--Voila.port_retries=0", "--token={token}"]
    yield from start_server(argv, base, "/voila/static/voila.js", notebook.parent)
