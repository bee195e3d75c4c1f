"""Investigation panels: the allow-list audit, a message's journey, the domain/cause drill-down and remedies.

Like :mod:`analysis.ui.views`, each panel is a plain class (``.widget`` to show, properties, callbacks) over
the package's own functions; nothing here computes a diagnosis itself.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from analysis.audit.allowlist import FORMATS, AllowListAudit, audit_allowlist
from analysis.charts.figures import plot_journey
from analysis.core.errors import AllowListError, EndpointsError
from analysis.core.schema import STRING
from analysis.core.zones import display_zone, in_zone, on_zone_change
from analysis.reference.endpoints import Endpoints
from analysis.report.findings import remedy_table
from analysis.report.proof import telling_messages, with_source_ranges
from analysis.summaries.tables import message_journey, message_timelines, top_replies
from analysis.ui.core import (
    View,
    download_html,
    export_text,
    figure_png,
    message_html,
    png_image,
    recall,
    remember,
    static_html,
    table_html,
)
from analysis.ui.render import equals_text, message_key_set, pair_keys
from analysis.ui.views import DomainCauseFilter, TableView

WIDE = widgets.Layout(width="95%")
ALLOWLIST_SUFFIXES = (".txt", ".csv", ".cfg", ".conf", ".cidr", ".list", ".hat")


# ---------------------------------------------------------------- allow-list audit

def endpoint_changes(endpoints: Endpoints, since: dt.date | None) -> tuple[pd.DataFrame | None, str]:
    """Microsoft's changes to the endpoints since ``since`` (the day the allow-list was made), and a note.

    Needs the network (Microsoft's ``/changes`` service): offline the frame is None and the note says so.
    """
    current = (f"Microsoft 365 endpoints in use: {endpoints.instance} version {endpoints.version} "
               f"(published {endpoints.date:%Y-%m-%d}, {endpoints.source} copy).")
    if since is None:
        return None, current + " Give the date the allow-list was made to list Microsoft's changes since then."
    try:
        changes = endpoints.changes_since(f"{since:%Y%m%d}00")
    except EndpointsError as exc:
        return None, current + f" Microsoft's change log could not be read ({exc}); the audit above already " \
                               "compares the list with the version in use."
    ip_changes = changes[changes["kind"].eq("ip").fillna(False)]
    return ip_changes, current + f" {len(ip_changes):,} IP range changes since {since:%Y-%m-%d}."


def audit_html(audit: AllowListAudit) -> str:
    """The audit's findings as escaped HTML: coverage, then missing, over-broad, stale, host and unread entries."""
    coverage = audit.coverage.reset_index()
    coverage = coverage[coverage["required"] > 0]
    parts = [message_html(f"{r.family}: {r.percent:.1f}% of Exchange Online's {r.required:,} SMTP addresses "
                          f"allowed, {r.missing:,} missing", "error" if r.missing else "ok")
             for r in coverage.itertuples()]
    sections = [
        ("Missing Exchange Online ranges (add these)", audit.missing),
        ("Over-broad entries (they admit far more than Microsoft)", audit.over_broad),
        ("Stale entries (not Exchange Online mail-flow ranges)", audit.stale),
        ("Host-name entries", audit.host_entries),
        ("Lines that could not be read", audit.rejects),
    ]
    if audit.affected_messages is not None:
        sections.append(("Deferred/failed messages sent from a missing range", audit.affected_messages))
    for title, frame in sections:
        parts.append(f"<h4>{html.escape(title)} ({len(frame):,})</h4>"
                     + table_html(frame, max_rows=50, empty="none"))
    return "".join(parts)


class AllowListBox(View):
    """Paste or upload a partner's allow-list, audit it against Exchange Online's ranges, download it corrected.

    Properties: ``text`` (the list), ``audit`` (:class:`~analysis.audit.allowlist.AllowListAudit` or None), ``error``
    (friendly text or None), ``missing_cidrs``, ``corrected_path`` (the written corrected list), ``listed_on``
    (the day the list was made: Microsoft's changes since then are listed when the network allows).
    ``run()`` audits (also the Audit button and an upload). Callbacks: ``on_audit(callback)`` with the audit.
    """

    def __init__(self, source: str | os.PathLike[str] | None = None, *, endpoints: Endpoints | None = None,
                 tagged: pd.DataFrame | None = None, fmt: str | None = None, output_format: str | None = None,
                 listed_on: dt.date | str | None = None, name: str | None = "allowlist",
                 export_dir: str | os.PathLike[str] | None = None):
        self.name = name
        self.endpoints = endpoints or Endpoints.bundled()
        self.tagged = tagged
        self.export_dir = export_dir
        self.audit: AllowListAudit | None = None
        self.error: str | None = None
        self.corrected_path: Path | None = None
        self._callbacks: list[Callable[[AllowListAudit], None]] = []
        listed = pd.Timestamp(listed_on).date() if listed_on else None
        path = os.fspath(source) if source is not None else ""
        state = recall(name, {"source": path, "fmt": fmt or "", "output": output_format or "", "listed_on": listed})
        self.paste = widgets.Textarea(
            value=state.get("text", ""), rows=10, layout=WIDE,
            placeholder="Paste the partner's allow-list: IronPort HAT / sender group, Postfix access or cidr map, "
                        "CSV, or one IP, range or host name per line")
        self.upload = widgets.FileUpload(accept=",".join(ALLOWLIST_SUFFIXES), multiple=False,
                                         description="Upload list")
        self.format_box = widgets.Dropdown(options=[("detect", ""), *((f, f) for f in FORMATS)],
                                           value=state["fmt"], description="Format")
        self.output_box = widgets.Dropdown(options=[("same as input", ""), *((f, f) for f in FORMATS)],
                                           value=state["output"], description="Corrected as",
                                           style={"description_width": "initial"})
        self.date_box = widgets.DatePicker(value=state["listed_on"], description="List made on",
                                           style={"description_width": "initial"})
        self.audit_button = widgets.Button(description="Audit", button_style="primary", icon="check")
        self.status = widgets.HTML()
        self.findings = widgets.HTML()
        self.changes = widgets.HTML()
        self.download = widgets.HTML()
        self.widget = widgets.VBox([
            self.paste,
            widgets.HBox([self.upload, self.format_box, self.output_box]),
            widgets.HBox([self.date_box, self.audit_button]),
            self.status, self.findings, self.download, self.changes,
        ]).add_class("exo-allowlist")
        self.audit_button.on_click(lambda _: self.run())
        self.upload.observe(self._on_upload, names="value")
        if self.text.strip():
            self.run()
        elif path:
            self.run(Path(path))

    @property
    def text(self) -> str:
        return self.paste.value

    @text.setter
    def text(self, value: str) -> None:
        self.paste.value = value

    @property
    def listed_on(self) -> dt.date | None:
        return self.date_box.value

    @listed_on.setter
    def listed_on(self, value: dt.date | None) -> None:
        self.date_box.value = value

    @property
    def missing_cidrs(self) -> list[str]:
        return self.audit.missing_cidrs if self.audit else []

    def on_audit(self, callback: Callable[[AllowListAudit], None]) -> None:
        self._callbacks.append(callback)

    def run(self, source: os.PathLike[str] | io.IOBase | None = None) -> AllowListAudit | None:
        """Audit ``source`` (a path or file object; default: the pasted text); shows the findings or an error."""
        self.audit, self.error, self.corrected_path = None, None, None
        self.findings.value = self.download.value = self.changes.value = ""
        pasted = source is None
        if pasted:  # a file object, so that pasted text is never taken for a path
            source = io.StringIO(self.text)
            source.name = "the pasted list"
        if pasted and not self.text.strip():
            self.error = "Paste the allow-list above or upload its file, then press Audit."
        else:
            try:
                self.audit = audit_allowlist(source, self.endpoints, tagged=self.tagged,
                                             fmt=self.format_box.value or None)
            except (AllowListError, EndpointsError) as exc:
                self.error = f"The allow-list could not be audited: {exc}"
        if self.audit is not None and not pasted:
            self.paste.value = self.audit.text
        remember(self.name, text=self.text, fmt=self.format_box.value, output=self.output_box.value,
                 listed_on=self.listed_on)
        if self.audit is None:
            self.status.value = message_html(self.error or "", "error")
            return None
        self._show(self.audit)
        for callback in self._callbacks:
            callback(self.audit)
        return self.audit

    def static(self) -> list[Any]:
        return [static_html(self.status.value + self.findings.value + self.download.value + self.changes.value)]

    def _show(self, audit: AllowListAudit) -> None:
        missing = audit.missing_cidrs
        verdict = (f"{len(missing)} Exchange Online range(s) are missing from the list: {', '.join(missing)}"
                   if missing else "Every Exchange Online SMTP range is allowed.")
        self.status.value = message_html(f"Audited {audit.source} ({audit.format} format). {verdict}",
                                         "error" if missing else "ok")
        self.findings.value = audit_html(audit)
        output = self.output_box.value or audit.format
        try:
            self.corrected_path = export_text(audit.corrected(output), "allowlist-corrected",
                                              ".csv" if output == "csv" else ".txt", self.export_dir)
            self.download.value = "<h4>Corrected list</h4>" + download_html(
                self.corrected_path, mime="text/csv" if output == "csv" else "text/plain")
        except (AllowListError, OSError) as exc:
            self.download.value = message_html(f"The corrected list could not be written: {exc}", "error")
        changes, note = endpoint_changes(self.endpoints, self.listed_on)
        self.changes.value = "<h4>Endpoints version</h4>" + message_html(note, "info") + (
            "" if changes is None else table_html(changes, max_rows=100, empty="no IP range changes"))

    def _on_upload(self, change: dict) -> None:
        if change["new"]:
            item = change["new"][0]
            upload = io.BytesIO(bytes(item["content"]))
            upload.name = item["name"]
            self.run(upload)


# ---------------------------------------------------------------- a message's journey

JOURNEY_COLUMNS = ("timestamp", "elapsed_minutes", "event", "status", "exo_ip", "exo_range", "cause", "remote_host",
                   "remote_ip", "reply", "source_format")
MESSAGE_COLUMNS = ("first_seen", "recipient", "subject", "deferrals", "attempts", "outcome", "to_outcome_minutes",
                   "causes", "final_cause", "last_reply", "remote_hosts", "exo_ips", "message")


def journey_choices(timelines: pd.DataFrame, limit: int, first: list[str] = ()) -> list[tuple[str, str]]:
    """Dropdown choices (label, pair key) for messages, at most ``limit``: the keys in ``first`` (in that order),
    then the most deferred."""
    rank = pd.Series(range(len(first)), index=pd.Index(first, dtype=object), dtype="int64")
    keys = pair_keys(timelines)
    rows = timelines.assign(choice_key=keys, _first=keys.map(rank).fillna(len(first)).to_numpy())
    rows = rows.sort_values(["_first", "deferrals", "first_seen"], ascending=[True, False, True], kind="stable")
    rows = rows.head(limit)
    return [(f"{r.first_seen:%Y-%m-%d %H:%M}  {r.recipient}  ·  {r.deferrals} deferrals, {r.outcome}"
             if pd.notna(r.first_seen) else f"{r.recipient}  ·  {r.deferrals} deferrals, {r.outcome}", r.choice_key)
            for r in rows.itertuples()]


class JourneyView(View):
    """Pick one message+recipient and see its journey: the chart, a caption and its events, each attempt with its
    Exchange Online source IP and published range. Offered first: the messages deferred from one range and
    delivered from another (:func:`analysis.report.proof.telling_messages`).

    Properties: ``message`` (the chosen key, "<trace id> → <recipient>", settable; a trace id or Message-ID
    alone picks that message's first recipient), ``journey`` (its events), ``png`` (the chart).
    ``set_messages(timelines)`` replaces the choices (rows of :func:`analysis.summaries.tables.message_timelines`).
    Callbacks: ``observe(callback)`` with the key.
    """

    def __init__(self, tagged: pd.DataFrame, timelines: pd.DataFrame | None = None, *, message: str | None = None,
                 name: str | None = "journey", max_choices: int = 500):
        self.tagged = tagged
        self.name = name
        self.max_choices = max_choices
        self.journey = pd.DataFrame(columns=list(JOURNEY_COLUMNS))
        self.png = b""
        self._callbacks: list[Callable[[str | None], None]] = []
        self._updating = False
        self._timelines = timelines if timelines is not None else message_timelines(tagged)
        self._telling = telling_messages(tagged)
        self.picker = widgets.Dropdown(description="Message", layout=WIDE)
        self.caption = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.events = widgets.HTML()
        events_box = widgets.Accordion(children=[self.events], titles=("Events of this message",), selected_index=None)
        self.widget = widgets.VBox([self.picker, self.caption, self.image, events_box]).add_class("exo-journey")
        self._wanted = recall(name, {"message": message or ""})["message"]  # until the message is offered
        self.set_messages(self._timelines)
        self.picker.observe(self._changed, names="value")
        on_zone_change(self._render)

    @property
    def message(self) -> str | None:
        return self.picker.value or None

    @message.setter
    def message(self, value: str) -> None:
        self.picker.value = self._resolve(value) or self.picker.value

    def observe(self, callback: Callable[[str | None], None]) -> None:
        self._callbacks.append(callback)

    def set_messages(self, timelines: pd.DataFrame) -> None:
        """Offer the messages of ``timelines``; keeps the current (or preset) choice when it is offered."""
        self._timelines = timelines
        choices = journey_choices(timelines, self.max_choices, self._telling) or [("no messages match", "")]
        keep = self._resolve(self.picker.value or "", choices) or self._resolve(self._wanted, choices)
        self._updating = True
        try:
            self.picker.options = choices
            self.picker.value = keep or choices[0][1]
        finally:
            self._updating = False
        self._render()

    def static(self) -> list[Any]:
        items: list[Any] = [static_html(self.caption.value)]
        if self.png:
            items.append(png_image(self.png))
        return [*items, static_html(self.events.value)]

    def _resolve(self, value: str, choices: list[tuple[str, str]] | None = None) -> str | None:
        keys = [key for _, key in (choices or self.picker.options) if key]
        if not value:
            return None
        if value in keys:
            return value
        wanted = value.strip().strip("<>").lower()
        by_message = [k for k in keys if k.split(" → ")[0].strip("<>").lower() == wanted]
        if by_message:
            return by_message[0]
        rows = self._timelines[self._timelines["message_id"].astype(STRING).str.strip("<>").str.lower()
                               .eq(wanted).fillna(False).to_numpy(dtype=bool)]
        matches = [k for k in pair_keys(rows) if k in keys]
        return matches[0] if matches else None

    def _changed(self, change: dict) -> None:
        if self._updating:
            return
        self._render()
        remember(self.name, message=self.picker.value)
        for callback in self._callbacks:
            callback(self.message)

    def _render(self) -> None:
        key = self.picker.value
        if not key:
            self.journey, self.png = self.journey.iloc[:0], b""
            self.caption.value, self.image.value, self.events.value = message_html("No messages match.", "info"), \
                b"", ""
            self.image.layout.display = "none"  # an empty image is a broken-image icon
            return
        message, recipient = key.split(" → ", 1)
        self.journey = with_source_ranges(message_journey(self.tagged, message, recipient or None))
        self.png = figure_png(plot_journey(self.journey))
        self.image.value = self.png
        self.image.layout.display = None
        first, last = self.journey["timestamp"].min(), self.journey["timestamp"].max()
        span = "" if pd.isna(first) else \
            f", {in_zone(first):%Y-%m-%d %H:%M} to {in_zone(last):%Y-%m-%d %H:%M} {display_zone()}"
        ranges = self.journey.groupby(self.journey["event"].astype(str), observed=True)["exo_range"].agg(
            lambda r: ", ".join(r.dropna().unique())) if "exo_range" in self.journey else pd.Series(dtype=object)
        how = (f"; deferred from {ranges['defer']}, delivered from {ranges.get('deliver') or ranges.get('send')}"
               if key in self._telling and ranges.get("defer") else "")
        self.caption.value = message_html(
            f"Journey of {message} to {recipient}: {len(self.journey)} events{span}{how}", "info")
        shown = [c for c in JOURNEY_COLUMNS if c in self.journey.columns]
        self.events.value = table_html(self.journey[shown], max_rows=200)


# ---------------------------------------------------------------- drill-down

def empty_selection_text(domain: str | None, cause: str | None) -> str:
    """What an empty drill-down says instead of empty tables."""
    if domain and cause:
        return f"No message to {domain} was deferred or failed for {cause} in this trace. Choose another cause."
    if domain or cause:
        return f"No message {'to ' + domain if domain else 'with cause ' + str(cause)} in this trace."
    return "This trace has no messages to show."


class Drilldown(View):
    """Choose a domain and/or a cause and see its messages, their replies and one message's journey.

    Parts (each a view with its own properties): ``filter`` (:class:`DomainCauseFilter`), ``messages`` and
    ``replies`` (:class:`TableView`), ``journey`` (:class:`JourneyView`). ``selected`` holds the events of the
    chosen messages; ``refresh()`` runs on every change of the filter. When no message matches, ``results`` (the
    tables and the journey) is hidden and ``empty`` says so in words (:func:`empty_selection_text`).
    """

    def __init__(self, tagged: pd.DataFrame, *, domain: str | None = None, cause: str | None = None,
                 message: str | None = None, name: str | None = "drilldown", page_size: int = 10):
        self.tagged = tagged
        self.timelines = message_timelines(tagged)

        def part(suffix: str) -> str | None:
            return f"{name}.{suffix}" if name else None

        self.filter = DomainCauseFilter(tagged, domain=domain, cause=cause, name=part("filter"))
        self.messages = TableView(self.timelines.iloc[:0], title="Messages (one row per recipient)",
                                  name=part("messages"), page_size=page_size, sort_by="deferrals", ascending=False)
        self.replies = TableView(pd.DataFrame(), title="Their deferral and failure replies",
                                 name=part("replies"), page_size=page_size)
        self.journey = JourneyView(tagged, self.timelines.iloc[:0], message=message, name=part("journey"))
        self.selected = tagged
        self.empty = widgets.HTML()
        self.messages.widget.add_class("exo-drill-messages")
        self.replies.widget.add_class("exo-drill-replies")
        self.results = widgets.VBox([self.messages.widget, self.replies.widget,
                                      widgets.HTML("<b>One message's journey</b>"), self.journey.widget])
        self.widget = widgets.VBox([self.filter.widget, self.empty, self.results])
        self.filter.observe(lambda domain, cause: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        domain, cause = self.filter.domain, self.filter.cause
        self.selected = self.filter.selection(self.tagged)
        rows = self.timelines
        if domain:
            rows = rows[equals_text(rows["recipient_domain"], domain).to_numpy()]
        if cause:
            rows = rows[pair_keys(rows).isin(message_key_set(self.selected)).to_numpy()]
        self.messages.data = rows[[c for c in MESSAGE_COLUMNS if c in rows.columns]]
        self.replies.data = top_replies(self.selected, n=100)
        self.journey.set_messages(rows)
        self.empty.value = "" if len(rows) else message_html(empty_selection_text(domain, cause), "info")
        self.results.layout.display = None if len(rows) else "none"

    def static(self) -> list[Any]:
        if self.empty.value:
            return [*self.filter.static(), static_html(self.empty.value)]
        return [*self.filter.static(), *self.messages.static(), *self.replies.static(), *self.journey.static()]


# ---------------------------------------------------------------- remedies

def remedy_html(remedy: Any) -> str:
    """One remedy (a row of :func:`analysis.ui.render.remedy_table`) as escaped HTML."""
    domains = f" · {html.escape(str(remedy.top_domains))}" if pd.notna(remedy.top_domains) else ""
    low = getattr(remedy, "low_confidence_events", 0)
    doubt = (f"<br><i>Low confidence:</i> {low:,} of its {remedy.events:,} events were matched only by the code's "
             "class, or by nothing: read their replies before acting." if low else "")
    return (f"<b>{html.escape(remedy.cause)}</b> — {html.escape(remedy.who_acts)} acts · "
            f"{remedy.recipients:,} recipients{domains}<br>{html.escape(remedy.explanation)}<br>"
            f"<i>What to do:</i> {html.escape(remedy.remedy)}{doubt}")


def remedies_html(remedies: pd.DataFrame, done: dict[str, bool] | None = None) -> str:
    """The remedies as a checklist (☐ to do, ☑ done)."""
    if remedies.empty:
        return message_html("Nothing was deferred or failed: no remedies needed.", "ok")
    done = done or {}
    items = "".join(f"<li style='list-style:none;margin-bottom:6px'>{'☑' if done.get(r.cause) else '☐'} "
                    f"{remedy_html(r)}</li>" for r in remedies.itertuples())
    return f"<ul style='padding-left:0'>{items}</ul>"


class RemedyChecklist(View):
    """Each cause found, with who acts, what it means and what to do; tick the box when it is done.

    Properties: ``remedies`` (the table of :func:`analysis.ui.render.remedy_table`), ``done`` (cause -> ticked,
    remembered across re-runs).
    """

    def __init__(self, tagged: pd.DataFrame, *, name: str | None = "remedies"):
        self.name = name
        self.remedies = remedy_table(tagged)
        state = recall(name, {"done": {}})
        self.boxes: dict[str, widgets.Checkbox] = {}
        rows = []
        for r in self.remedies.itertuples():
            box = widgets.Checkbox(value=bool(state["done"].get(r.cause)), indent=False,
                                   layout=widgets.Layout(width="28px"))
            box.observe(self._ticked, names="value")
            self.boxes[r.cause] = box
            rows.append(widgets.HBox([box, widgets.HTML(remedy_html(r))]))
        self.widget = widgets.VBox(rows or [widgets.HTML(remedies_html(self.remedies))]).add_class("exo-remedies")

    @property
    def done(self) -> dict[str, bool]:
        return {cause: box.value for cause, box in self.boxes.items()}

    def static(self) -> list[Any]:
        return [static_html(remedies_html(self.remedies, self.done))]

    def _ticked(self, change: dict) -> None:
        remember(self.name, done=self.done)
