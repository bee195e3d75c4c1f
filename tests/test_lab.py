"""``exo-deferrals lab [FOLDER]``: the bundled notebooks copied into a folder the user owns, JupyterLab (or, with
``--app``, Voila) started there on a free loopback port, its URL printed and answering; stopping the command stops
the server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, jupyter_env

from analysis.cli import main
from analysis.cli.lab import (
    APP_TEMPLATE,
    CULL_IDLE,
    FIRST_APP,
    FIRST_NOTEBOOK,
    MARKER,
    jupyter_command,
    prepare,
    voila_command,
    voila_data,
)
from analysis.core.bundled import notebooks_dir, sample_dir

NOTEBOOKS = sorted(p.name for p in notebooks_dir().glob("*.ipynb"))
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def start_lab(folder: Path, port: int, env: dict[str, str], *options: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Run ``exo-deferrals lab FOLDER --no-browser --port PORT [options]`` until it prints the URL it serves."""
    process = subprocess.Popen([sys.executable, "-m", "analysis.cli", "lab", str(folder), "--no-browser",
                                "--port", str(port), *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if " is running: " in line:
            break
    return process, lines[-1].split(" is running: ", 1)[-1].strip(), lines


def stop_lab(process: subprocess.Popen, port: int) -> None:
    """SIGTERM to the command, not its process group: it must stop its server, and exit 0."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    with pytest.raises(OSError):
        DIRECT.open(f"http://127.0.0.1:{port}/", timeout=5)


def test_lab_starts_jupyterlab_in_the_folder_and_prints_its_url(tmp_path):
    folder, port = tmp_path / "my lab", free_port()  # a space in the path, as in "C:\Users\Jane Doe"
    process, url, lines = start_lab(folder, port, jupyter_env(tmp_path / "jupyter"))
    try:
        assert url.startswith(f"http://127.0.0.1:{port}/lab/tree/notebooks/{FIRST_NOTEBOOK}?token="), lines
        with DIRECT.open(url, timeout=30) as page:
            assert page.status == 200 and "JupyterLab" in page.read().decode()
        token = url.rsplit("token=", 1)[1]
        with DIRECT.open(f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}", timeout=30) as answer:
            listed = sorted(item["name"] for item in json.load(answer)["content"])
        assert listed == NOTEBOOKS  # JupyterLab serves the copied folder
        assert sorted(p.name for p in (folder / "data" / "sample").iterdir()) == sorted(
            p.name for p in sample_dir().iterdir())
        with pytest.raises(urllib.error.HTTPError):  # the token is needed
            DIRECT.open(f"http://127.0.0.1:{port}/api/contents/notebooks", timeout=30)
    finally:
        stop_lab(process, port)


def test_lab_app_serves_the_notebooks_with_voila_offline(tmp_path):
    """``--app``: Voila with the kit's template, whose page links Font Awesome from the server, never a CDN (the
    browser side: tests/test_voila_app.py)."""
    folder, port = tmp_path / "my app", free_port()
    process, url, lines = start_lab(folder, port, jupyter_env(tmp_path / "jupyter"), "--app")
    try:
        assert url.startswith(f"http://127.0.0.1:{port}/voila/render/{FIRST_APP}?token="), lines
        with DIRECT.open(url, timeout=120) as page:
            html = page.read().decode()
        assert page.status == 200 and 'class="exo-file-picker' not in html  # widgets render in the browser
        assert "cdn.jsdelivr.net" not in html and "https://" not in html.split("<body", 1)[0]
        assert 'href="/voila/static/fontawesome/css/all.min.css"' in html
        with DIRECT.open(f"http://127.0.0.1:{port}/voila/static/fontawesome/css/all.min.css", timeout=30) as css:
            assert "Font Awesome Free 5" in css.read().decode()
        with DIRECT.open(f"http://127.0.0.1:{port}/voila/static/fontawesome/webfonts/fa-solid-900.woff2",
                         timeout=30) as font:
            assert font.read(4) == b"wOF2"
        no_token = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as refused:  # the token is needed
            no_token.open(url.split("?", 1)[0], timeout=30)
        assert refused.value.code in (302, 403)
    finally:
        stop_lab(process, port)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_the_app_command_line_culls_kernels_and_the_template_is_written(tmp_path):
    argv = voila_command(tmp_path, port=8866, ip="127.0.0.1", browser=False)
    assert argv[:3] == [sys.executable, "-m", "voila"] and str(tmp_path / "notebooks") in argv
    assert f"--template={APP_TEMPLATE}" in argv and "--no-browser" in argv
    assert f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE}" in argv
    assert not any(part.startswith(("--token", "--Voila.token")) for part in argv)  # the token: in the environment
    template = voila_data(tmp_path / "data") / "voila" / "templates" / APP_TEMPLATE
    assert json.loads((template / "conf.json").read_text())["base_template"] == "lab"
    assert (template / "static" / "fontawesome" / "LICENSE.txt").is_file()


def test_a_second_run_keeps_the_users_work_and_does_not_bring_the_sample_back(tmp_path):
    first = prepare(tmp_path)
    assert sorted(p.name for p in first.copied) == NOTEBOOKS and first.sample == tmp_path / "data" / "sample"
    assert (tmp_path / MARKER).is_file()
    edited = tmp_path / "notebooks" / FIRST_NOTEBOOK
    edited.write_text("my own notes", encoding="utf-8")
    (tmp_path / "notebooks" / NOTEBOOKS[-1]).unlink()
    for path in (tmp_path / "data" / "sample").iterdir():
        path.unlink()
    second = prepare(tmp_path)
    assert [p.name for p in second.copied] == [NOTEBOOKS[-1]] and second.sample is None
    assert len(second.kept) == len(NOTEBOOKS) - 1 and edited.read_text(encoding="utf-8") == "my own notes"
    assert not any((tmp_path / "data" / "sample").iterdir())


def test_the_checkout_itself_is_served_in_place():
    root = notebooks_dir().parent
    assert prepare(root).copied == [] and not (root / MARKER).exists()


def test_root_gets_allow_root_and_the_token_stays_off_the_command_line(tmp_path):
    as_root = jupyter_command(tmp_path, port=8888, ip="127.0.0.1", browser=False, root=True)
    as_user = jupyter_command(tmp_path, port=8888, ip="127.0.0.1", browser=True, root=False)
    assert "--allow-root" in as_root and "--allow-root" not in as_user
    assert "--no-browser" in as_root and "--no-browser" not in as_user
    assert not any("token" in part.lower() for part in as_root)
    assert as_root[:3] == [sys.executable, "-m", "jupyterlab"]  # no shell, no script path: any OS


def test_a_file_as_folder_is_a_usage_error(tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("x", encoding="utf-8")
    assert main(["lab", str(afile), "--no-browser"]) == 2
    assert capsys.readouterr().err == (f"exo-deferrals lab: {afile.resolve()}: is a file (expected a folder for "
                                       "the notebooks)\n")

