"""``exo-deferrals lab [FOLDER]``: the guided notebooks in a folder the user owns, opened in JupyterLab.

The bundled notebooks (:func:`analysis.core.bundled.notebooks_dir`) are copied into ``FOLDER/notebooks`` (a
notebook already there is the user's work and is kept), and on the first run the sample trace into
``FOLDER/data/sample`` (the notebooks' default ``paths``); a marker file records that first run, so a sample the
user deleted does not come back. Then JupyterLab starts there (``sys.executable -m jupyterlab``: no shell, any
OS; ``--allow-root`` when run as root) and the command prints the URL once the server answers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from analysis.cli.common import MISSING, OK, USAGE, CommandError, Parser, command
from analysis.core.bundled import kit_root, notebooks_dir, sample_dir

MARKER = ".exo-deferrals-lab"  # in FOLDER: the sample was copied once
FIRST_NOTEBOOK = "00_start_here.ipynb"
START_TIMEOUT = 120.0  # seconds until JupyterLab must answer
DEFAULT_FOLDER = "exo-deferrals-lab"


@dataclass
class Prepared:
    """What :func:`prepare` did in the working folder."""

    folder: Path
    copied: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    sample: Path | None = None  # where the sample was copied (first run only)


def prepare(folder: Path) -> Prepared:
    """Copy the bundled notebooks (missing ones only) and, on the first run, the sample into ``folder``.

    ``folder`` being the source checkout itself (``make lab``) copies nothing."""
    done = Prepared(folder)
    if folder.resolve() == kit_root().resolve():
        return done
    target = folder / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(notebooks_dir().glob("*.ipynb")):
        copy = target / notebook.name
        if copy.exists():
            done.kept.append(copy)
        else:
            shutil.copyfile(notebook, copy)
            done.copied.append(copy)
    marker = folder / MARKER
    if not marker.exists():
        done.sample = folder / "data" / "sample"
        shutil.copytree(sample_dir(), done.sample, dirs_exist_ok=True)
        marker.write_text("the sample was copied here by `exo-deferrals lab`; delete data/sample if you wish\n",
                          encoding="utf-8")
    return done


def jupyter_command(folder: Path, *, port: int, ip: str, browser: bool, root: bool) -> list[str]:
    """The JupyterLab command line: serving ``folder``, opening the start notebook (the token goes in the
    environment, ``JUPYTER_TOKEN``, not on the command line that ``ps`` shows)."""
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={folder}", f"--ServerApp.ip={ip}",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--ServerApp.default_url=/lab/tree/notebooks/{FIRST_NOTEBOOK}", "--ServerApp.log_level=WARN"]
    if not browser:
        argv.append("--no-browser")
    if root:
        argv.append("--allow-root")  # containers and WSL run as root; Jupyter refuses without it
    return argv


def free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


@command("lab")
def main(argv: list[str] | None = None) -> int:
    """Copy the notebooks (and the sample) into FOLDER and open JupyterLab there."""
    parser = Parser("lab", "Copy the guided notebooks (and, on the first run, the sample trace) into FOLDER, then "
                           "start JupyterLab there and print its address. Notebooks already in FOLDER are kept. "
                           "Stop it with Ctrl+C.")
    parser.add_argument("folder", nargs="?", default=DEFAULT_FOLDER,
                        help="the working folder (default: %(default)s in the current folder)")
    parser.add_argument("--port", type=int, help="the port (default: a free one)")
    parser.add_argument("--ip", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args = parser.parse_args(argv)
    folder = Path(args.folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"{folder}: is a file (expected a folder for the notebooks)", USAGE)
    if args.port is not None and not 0 < args.port < 65536:
        raise CommandError(f"--port {args.port}: expected 1 .. 65535", USAGE)
    try:
        done = prepare(folder)
    except OSError as exc:
        raise CommandError(f"{folder}: cannot copy the notebooks there: {exc.strerror or exc}", USAGE) from None
    for path in done.copied:
        print(f"copied {path}")
    if done.kept:
        print(f"kept your {len(done.kept)} notebook(s) in {folder / 'notebooks'}")
    if done.sample:
        print(f"copied the sample trace into {done.sample}")
    port = args.port or free_port(args.ip)
    token = secrets.token_hex(24)
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    env = {**os.environ, "JUPYTER_TOKEN": token, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    process = subprocess.Popen(jupyter_command(folder, port=port, ip=args.ip, browser=not args.no_browser, root=root),
                               cwd=folder, env=env)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` / a service manager: stop JupyterLab too
    try:
        host = f"[{args.ip}]" if ":" in args.ip else args.ip
        base = f"http://{host}:{port}"
        if not _ready(process, f"{base}/api/status?token={token}"):
            process.terminate()
            raise CommandError(f"JupyterLab did not start (exit {process.poll()}; its messages are above)", MISSING)
        print(f"JupyterLab is running: {base}/lab/tree/notebooks/{FIRST_NOTEBOOK}?token={token}", flush=True)
        print("Stop it with Ctrl+C.", flush=True)
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
    finally:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ready(process: subprocess.Popen, url: str) -> bool:
    """Poll ``url`` until it answers 200 (True) or the process ends / the time is up (False)."""
    deadline = time.monotonic() + START_TIMEOUT
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with direct.open(url, timeout=5) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False
