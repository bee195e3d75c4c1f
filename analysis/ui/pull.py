"""``PullPanel``: pull message traces from Microsoft 365 (Graph) beside the file picker of notebook 01.

The panel asks for the tenant, the app's client ID, how to sign in (device code by default: an Exchange admin
signs in in a browser; or a client secret *named* by an environment variable, never typed here; or a certificate
file), the window and the statuses. It runs :func:`analysis.pull.run.pull` in a background thread and shows
the requests used of Graph's quota and any wait on a progress bar; the pulled folder is then loaded by the file
picker given. Errors show as one line in the panel. The onboarding the tenant needs first: docs/graph.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from analysis.pull.auth import SignIn
from analysis.pull.client import PullError
from analysis.pull.run import STATUSES, Progress, PullReport, parse_last, pull
from analysis.ui.core import View, message_html, recall, remember

WINDOWS = {"last 1 day": "1d", "last 2 days": "2d", "last 7 days": "7d", "last 10 days": "10d",
           "last 30 days": "30d", "last 90 days": "89d"}
SIGN_IN = {"device code (Exchange admin)": "device", "client secret (environment variable)": "secret",
           "certificate (PEM file)": "certificate"}


class PullPanel(View):
    """Tenant, client ID, sign-in, window and statuses; **Pull** fills ``out`` and loads it into ``target``.

    Properties: ``tenant``, ``client_id``, ``sign_in`` ("device", "secret" or "certificate"), ``window`` (a
    ``--last`` value such as "2d"), ``statuses`` (tuple of Graph statuses; empty: all), ``out`` (folder),
    ``report`` (the last :class:`~analysis.pull.run.PullReport`), ``error`` (the last one-line error or None).
    Callbacks: ``on_pulled(callback)``, called with the output folder after a pull. :meth:`pull` runs in this
    thread (tests, scripts); the button runs it in a background thread.
    """

    def __init__(self, target: Any = None, *, out: str = "../data/pulled/", name: str | None = "pull",
                 graph_url: str | None = None, login_url: str | None = None, ca_bundle: str | None = None):
        self.target, self.name = target, name
        self.urls = {k: v for k, v in (("graph_url", graph_url), ("login_url", login_url)) if v}
        self.ca_bundle = ca_bundle
        state = recall(name, {"tenant": "", "client_id": "", "sign_in": "device", "window": "2d", "statuses": (),
                              "out": out, "secret_env": "EXO_PULL_SECRET", "certificate": ""})
        self.report: PullReport | None = None
        self.error: str | None = None
        self._callbacks: list[Callable[[str], None]] = []
        self._thread: threading.Thread | None = None
        wide = widgets.Layout(width="60%")
        self.tenant_box = widgets.Text(value=state["tenant"], description="Tenant",
                                       placeholder="contoso.onmicrosoft.com or the tenant ID", layout=wide)
        self.client_box = widgets.Text(value=state["client_id"], description="Client ID",
                                       placeholder="application (client) ID of your app registration", layout=wide)
        self.sign_in_box = widgets.Dropdown(options=list(SIGN_IN.items()), value=state["sign_in"],
                                            description="Sign in")
        self.secret_env_box = widgets.Text(value=state["secret_env"], description="Secret in",
                                           placeholder="name of the environment variable holding the secret")
        self.certificate_box = widgets.Text(value=state["certificate"], description="Certificate",
                                            placeholder="PEM file with the private key and the certificate")
        self.window_box = widgets.Dropdown(options=list(WINDOWS.items()), value=state["window"],
                                           description="Window")
        self.status_box = widgets.SelectMultiple(options=STATUSES, value=tuple(state["statuses"]), rows=4,
                                                 description="Status", tooltip="none selected: every status")
        self.out_box = widgets.Text(value=state["out"], description="Into", layout=wide)
        self.pull_button = widgets.Button(description="Pull", button_style="primary", icon="cloud-download")
        self.progress = widgets.IntProgress(value=0, min=0, max=100, description="Quota")
        self.progress_text = widgets.HTML()
        self.prompt_html = widgets.HTML()
        self.status = widgets.HTML(message_html("Pull from Microsoft 365: the tenant needs a one-time setup first "
                                                "(docs/graph.md).", "info"))
        self.widget = widgets.VBox([
            widgets.HTML("<b>Pull from Microsoft 365 (Graph message trace)</b>"),
            self.tenant_box, self.client_box, widgets.HBox([self.sign_in_box, self.secret_env_box,
                                                            self.certificate_box]),
            widgets.HBox([self.window_box, self.status_box]), self.out_box,
            widgets.HBox([self.pull_button, self.progress, self.progress_text]), self.prompt_html, self.status,
        ]).add_class("exo-pull")
        self.sign_in_box.observe(lambda _: self._show_credential_boxes(), names="value")
        self._show_credential_boxes()
        self.pull_button.on_click(lambda _: self.start())

    # ------------------------------------------------------------ properties
    tenant = property(lambda self: self.tenant_box.value.strip(),
                      lambda self, v: setattr(self.tenant_box, "value", v))
    client_id = property(lambda self: self.client_box.value.strip(),
                         lambda self, v: setattr(self.client_box, "value", v))
    sign_in = property(lambda self: self.sign_in_box.value, lambda self, v: setattr(self.sign_in_box, "value", v))
    window = property(lambda self: self.window_box.value, lambda self, v: setattr(self.window_box, "value", v))
    statuses = property(lambda self: tuple(self.status_box.value),
                        lambda self, v: setattr(self.status_box, "value", tuple(v)))
    out = property(lambda self: self.out_box.value.strip(), lambda self, v: setattr(self.out_box, "value", v))

    def on_pulled(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    def _show_credential_boxes(self) -> None:
        self.secret_env_box.layout.display = "" if self.sign_in == "secret" else "none"
        self.certificate_box.layout.display = "" if self.sign_in == "certificate" else "none"

    # ------------------------------------------------------------ pulling
    def start(self) -> None:
        """Pull in a background thread (the button); the panel shows progress and the outcome."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self.pull, daemon=True)
        self._thread.start()

    def pull(self) -> PullReport | None:
        """Pull now, in this thread; never raises: the outcome is in ``report`` / ``error`` and on the panel."""
        remember(self.name, tenant=self.tenant, client_id=self.client_id, sign_in=self.sign_in, window=self.window,
                 statuses=self.statuses, out=self.out, secret_env=self.secret_env_box.value,
                 certificate=self.certificate_box.value)
        self.error, self.report = None, None
        self.pull_button.disabled = True
        try:
            if not self.tenant or not self.client_id:
                raise PullError("give the tenant and the client ID of your app registration (docs/graph.md)")
            sign_in = SignIn(self.tenant, self.client_id,
                             secret_env=self.secret_env_box.value.strip() if self.sign_in == "secret" else None,
                             certificate=self.certificate_box.value.strip() if self.sign_in == "certificate" else None,
                             device_code=self.sign_in == "device")
            now = datetime.now(UTC)
            self._say(f"signing in to {self.tenant} …", "info")
            self.report = pull(sign_in, self.out, start=now - parse_last(self.window), end=now,
                               statuses=self.statuses, ca_bundle=self.ca_bundle, progress=self._progress,
                               prompt=self._prompt, now=now, max_requests=300, **self.urls)
        except PullError as exc:
            self.error = str(exc)
            self._say(self.error, "error")
            return None
        except ImportError as exc:
            self.error = f'needs the optional package {exc.name!r}: pip install "exo-deferrals[graph]"'
            self._say(self.error, "error")
            return None
        except Exception as exc:  # shown as one line: a widget never shows a traceback
            self.error = f"the pull failed unexpectedly ({type(exc).__name__}); run `exo-deferrals pull` for details"
            self._say(self.error, "error")
            return None
        finally:
            self.pull_button.disabled = False
            self.prompt_html.value = ""  # the device code is spent: do not leave it in the notebook
        kind = "ok" if not self.report.stopped and not self.report.not_fetched else "warning"
        self._say(self.report.summary().replace("\n", " · "), kind)
        if self.target is not None:
            self.target.paths = self.out
            self.target.load()
        for callback in self._callbacks:
            callback(self.out)
        return self.report

    def _progress(self, state: Progress) -> None:
        self.progress.max = state.limit
        self.progress.value = min(state.used, state.limit)
        wait = f" · waiting {state.wait:.0f} s for the quota" if state.wait and state.phase != "done" else ""
        self.progress_text.value = message_html(f"{state.used} of {state.limit} requests in the last 5 minutes"
                                                f"{wait} · {state.message}", "info")

    def _prompt(self, message: str) -> None:
        self.prompt_html.value = message_html(message, "warning")

    def _say(self, text: str, kind: str) -> None:
        self.status.value = message_html(text, kind)

    def static(self) -> list[Any]:
        from IPython.display import HTML

        where = Path(self.out)
        return [HTML(message_html(f"Pull from Microsoft 365: run this notebook in JupyterLab to pull into {where}.",
                                  "info"))]
