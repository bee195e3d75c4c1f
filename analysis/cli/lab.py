"""``exo-deferrals lab [FOLDER]``: the guided notebooks in a folder the user owns, opened in JupyterLab.

The bundled notebooks (:func:`analysis.core.bundled.notebooks_dir`) are copied into ``FOLDER/notebooks`` (a
notebook already there is the user's work and is kept), and on the first run the sample trace into
``FOLDER/data/sample`` (the notebooks' default ``paths``); a marker file records that first run, so a sample the
user deleted does not come back. Then JupyterLab starts there (``sys.executable -m jupyterlab``: no shell, any
OS; ``--allow-root`` when run as root) and the command prints the URL once the server answers.

``--app`` serves the notebooks as Voila apps instead (code hidden, the widgets live), fully offline: the kit's
Voila template (:data:`APP_TEMPLATE`, written at start into a private data folder put first on ``JUPYTER_PATH``)
takes Voila's ``lab`` template and points its Font Awesome links, which go to a CDN, at a local copy from the
``fontawesome-free`` package; a kernel is shut down when its page closes (Voila's beacon on ``beforeunload``) and
one left behind by a page that could not say so (a crashed browser) is culled after :data:`CULL_IDLE` seconds.
"""

from __future__ import annotations

import importlib.metadata
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
from dataclasses import dataclass, field
from pathlib import Path

from analysis.cli.common import MISSING, OK, USAGE, CommandError, Parser, command, require_extra
from analysis.core.bundled import kit_root, notebooks_dir, sample_dir

MARKER = ".exo-deferrals-lab"  # in FOLDER: the sample was copied once
FIRST_NOTEBOOK = "00_start_here.ipynb"
START_TIMEOUT = 120.0  # seconds until JupyterLab must answer
DEFAULT_FOLDER = "exo-deferrals-lab"
FIRST_APP = "01_load_and_triage.ipynb"
APP_TEMPLATE = "exo-deferrals"  # the kit's Voila template (written by voila_data)
FONT_CDN = "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/"  # in Voila's lab template
APP_TEMPLATE_FILES = {
    "conf.json": '{"base_template": "lab"}\n',
    "index.html.j2": ("{%- extends 'lab/index.html.j2' -%}\n"
                      "{%- block notebook_css -%}\n"
                      f"{{{{ super() | replace('{FONT_CDN}',\n"
                      "                       resources.base_url ~ 'voila/static/fontawesome/css/') }}\n"
                      "{%- endblock notebook_css -%}\n"
                      # nbconvert's loader of Mermaid from a CDN: the kit's notebooks draw no Mermaid diagram
                      "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n"
                      # Voila's page sets no _xsrf cookie, so the shutdown beacon a closing page sends is refused
                      # (voila-dashboards/voila#1458); its folder listing sets one
                      "{%- block footer_js -%}\n"
                      "<script>fetch('{{ resources.base_url }}voila/tree', {credentials: 'same-origin'});</script>\n"
                      "{%- endblock footer_js -%}\n"),
}
CULL_IDLE = 600  # seconds: a kernel whose page went away without closing it is shut down after this
CULL_INTERVAL = 60  # seconds between two looks for such kernels


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


def font_awesome() -> Path:
    """The Font Awesome 5 web fonts and CSS of the ``fontawesome-free`` package (what Voila's template asks a CDN
    for)."""
    try:
        static = importlib.metadata.distribution("fontawesome-free").locate_file("fontawesome-free/static")
    except importlib.metadata.PackageNotFoundError:
        raise CommandError("lab --app: needs the optional package 'fontawesome-free' (Voila's icons, offline): "
                           'pip install "exo-deferrals[app]"', MISSING) from None
    return Path(str(static)) / "fontawesome_free"


def voila_data(target: Path) -> Path:
    """Write the kit's Voila template, with Font Awesome beside it, under ``target``; returns the Jupyter data
    folder to put first on ``JUPYTER_PATH``."""
    data = target / "share" / "jupyter"
    template = data / "voila" / "templates" / APP_TEMPLATE
    template.mkdir(parents=True, exist_ok=True)
    for name, text in APP_TEMPLATE_FILES.items():
        (template / name).write_text(text, encoding="utf-8")
    fonts = font_awesome()
    for part in ("css", "webfonts"):
        shutil.copytree(fonts / part, template / "static" / "fontawesome" / part, dirs_exist_ok=True)
    shutil.copyfile(fonts / "LICENSE.txt", template / "static" / "fontawesome" / "LICENSE.txt")
    return data


def voila_command(folder: Path, *, port: int, ip: str, browser: bool) -> list[str]:
    """The Voila command line: the notebooks of ``folder`` as apps, with the kit's template and kernel culling (the
    token goes in the environment, ``JUPYTER_TOKEN``)."""
    argv = [sys.executable, "-m", "voila", str(folder / "notebooks"), f"--Voila.ip={ip}", f"--Voila.port={port}",
            "--Voila.port_retries=0", "--Voila.auto_token=True", f"--template={APP_TEMPLATE}",
            "--theme=light", "--Voila.log_level=WARN",
            f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE}",
            f"--MappingKernelManager.cull_interval={CULL_INTERVAL}"]
    if not browser:
        argv.append("--no-browser")
    return argv


def voila_env(data: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``data`` (see :func:`voila_data`) first on ``JUPYTER_PATH``."""
    return {**env, "JUPYTER_PATH": os.pathsep.join(filter(None, [str(data), env.get("JUPYTER_PATH", "")]))}


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
    parser.add_argument("--app", action="store_true",
                        help="serve the notebooks as Voila apps (code hidden, offline) instead of JupyterLab")
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
    if args.app:
        require_extra("app", "voila")
    token = secrets.token_hex(24)
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    env = {**os.environ, "JUPYTER_TOKEN": token, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    with tempfile.TemporaryDirectory(prefix="exo-deferrals-voila-") as scratch:
        if args.app:
            name, ready, start = "Voila", "/voila/static/voila.js", f"/voila/render/{FIRST_APP}"
            argv, env = voila_command(folder, port=port, ip=args.ip, browser=not args.no_browser), \
                voila_env(voila_data(Path(scratch)), env)
        else:
            name, ready, start = "JupyterLab", "/api/status", f"/lab/tree/notebooks/{FIRST_NOTEBOOK}"
            argv = jupyter_command(folder, port=port, ip=args.ip, browser=not args.no_browser, root=root)
        _serve(name, subprocess.Popen(argv, cwd=folder, env=env), args.ip, port, token, ready, start)
    return OK


def _serve(name: str, process: subprocess.Popen, ip: str, port: int, token: str, ready: str, start: str) -> None:
    """Wait until ``process`` answers ``ready``, print the ``start`` URL, then wait until it ends or is stopped."""
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` / a service manager: stop the server too
    try:
        host = f"[{ip}]" if ":" in ip else ip
        base = f"http://{host}:{port}"
        if not _ready(process, f"{base}{ready}?token={token}"):
            process.terminate()
            raise CommandError(f"{name} did not start (exit {process.poll()}; its messages are above)", MISSING)
        print(f"{name} is running: {base}{start}?token={token}", flush=True)
        print("Stop it with Ctrl+C.", flush=True)
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
    finally:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


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
