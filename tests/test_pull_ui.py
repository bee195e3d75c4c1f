"""``PullPanel`` (notebook 01's "pull from Microsoft 365") against the loopback service, without a browser."""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time
from pathlib import Path

from analysis.ui import FilePicker, PullPanel

sys.path.insert(0, str(Path(__file__).parent))
from graph_service import App, GraphService, make_traces

SECRET = "panel-secret-0123456789abcdef"


def test_panel_pulls_with_a_secret_from_the_environment_and_loads_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PANEL_SECRET", SECRET)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    now = dt.datetime.now(dt.UTC)
    traces = make_traces(300, days=1.5, now=now, seed=5)
    with GraphService(tmp_path, traces, apps={"app-1": App("app-1", secret=SECRET)}) as svc:
        files = FilePicker(None, name=None, load=False)
        panel = PullPanel(files, out=str(tmp_path / "pulled"), name=None, graph_url=svc.graph_url,
                          login_url=svc.login_url, ca_bundle=str(svc.ca))
        assert panel.sign_in == "device"  # the default: an Exchange admin signs in in a browser
        panel.tenant, panel.client_id, panel.sign_in = svc.tenant, "app-1", "secret"
        panel.secret_env_box.value = "PANEL_SECRET"
        panel.window = "2d"
        report = panel.pull()
        assert panel.error is None and report is not None
        served = sum(1 for k, _, s in svc.log if k in ("list", "details"))
    assert panel.progress.value == served and panel.progress.max == 100
    assert "requests in the last 5 minutes" in panel.progress_text.value
    statuses = files.events.loc[files.events["source_format"] == "graph_messagetrace", "status"]
    assert len(statuses) == 300 and files.error is None
    shown = panel.widget.children
    assert SECRET not in repr([getattr(w, "value", "") for w in shown]) + panel.status.value


def test_panel_device_code_shows_the_code_then_clears_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    now = dt.datetime.now(dt.UTC)
    with GraphService(tmp_path, make_traces(20, days=1, now=now), apps={"pub": App("pub")}) as svc:
        panel = PullPanel(None, out=str(tmp_path / "pulled"), name=None, graph_url=svc.graph_url,
                          login_url=svc.login_url, ca_bundle=str(svc.ca))
        panel.tenant, panel.client_id = svc.tenant, "pub"
        seen = []

        def admin() -> None:  # reads the code off the panel and signs in
            deadline = time.monotonic() + 20
            while "enter the code" not in panel.prompt_html.value and time.monotonic() < deadline:
                time.sleep(0.05)
            seen.append(panel.prompt_html.value)
            svc.approve(panel.prompt_html.value.split("enter the code ")[1].split()[0])

        helper = threading.Thread(target=admin)
        helper.start()
        report = panel.pull()
        helper.join()
    assert panel.error is None and report is not None and report.rows_total == 20
    assert "devicelogin" in seen[0] and panel.prompt_html.value == ""


def test_panel_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    panel = PullPanel(None, out=str(tmp_path / "pulled"), name=None)
    assert panel.pull() is None and "tenant and the client ID" in panel.error
    panel.tenant, panel.client_id, panel.sign_in = "contoso.onmicrosoft.com", "app", "secret"
    panel.secret_env_box.value = "NOT_SET_ANYWHERE"
    assert panel.pull() is None and "NOT_SET_ANYWHERE" in panel.error and "\n" not in panel.error
    assert "exo-error" in panel.status.value
