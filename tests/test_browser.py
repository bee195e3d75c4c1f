"""A real JupyterLab (and Voila) in headless Chromium: run the notebooks, drive their widgets, take screenshots.

Servers come from conftest (loopback, random port and token, temporary Jupyter dirs). Chromium is Debian's
(/usr/bin/chromium); without it these tests skip, except under CI=true where they fail.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Locator, Page, expect

from analysis.reference.endpoints import Endpoints

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
READY = 60_000  # ms: JupyterLab loaded, kernel idle
RUN = 180_000  # ms: a notebook run on the sample
ACT = 60_000  # ms: one widget interaction round trip through the kernel


@pytest.fixture
def page(page: Page) -> Iterator[Page]:
    """pytest-playwright's page, large enough for the notebooks; no alert/confirm/prompt may open (trace text
    such as ``<script>alert(1)</script>`` must never run)."""
    page.set_viewport_size({"width": 1400, "height": 1000})
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        if dialog.type != "beforeunload":
            dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield page
    assert not dialogs, f"dialogs opened: {dialogs}"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=False)


def open_notebook(page: Page, url: str) -> None:
    """Open one notebook alone: ``?reset`` drops the workspace an earlier test left (its notebooks would stay open in
    other tabs, and their unrun cells would match the prompts ``run_all`` waits for)."""
    if "reset" not in url:
        url += ("&" if "?" in url else "?") + "reset"
    page.goto(url)
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=READY)


def run_all(page: Page) -> None:
    """Run ▸ Run All Cells in the open notebook, and wait until every cell has run."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").click()
    page.locator('li[data-command="runmenu:run-all"]').click()
    prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt")
    expect(prompts.last).to_have_text(re.compile(r"\[\d+\]"), timeout=RUN)
    expect(page.locator(".jp-Notebook .jp-InputPrompt", has_text="[*]")).to_have_count(0, timeout=RUN)
    assert not page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                            has_text="Traceback").count()


def choose(select: Locator, starting_with: str) -> str:
    """Select the option whose label starts with ``starting_with``; returns the label."""
    label = next(text for text in select.locator("option").all_inner_texts() if text.startswith(starting_with))
    select.select_option(label=label)
    return label


def wait_for_domain(page: Page, domain: str) -> None:
    """Wait until every recipient of the drill-down's messages table is at ``domain``."""
    page.wait_for_function(
        """suffix => {
            const cells = [...document.querySelectorAll(
                ".exo-drill-messages table.exo-table tbody tr td:nth-child(2)")];
            return cells.length > 0 && cells.every(td => td.textContent.endsWith(suffix));
        }""", arg=f"@{domain}", timeout=ACT)


def test_drill_down_to_the_ironport_partner(page, lab_server):
    open_notebook(page, lab_server.address("/lab/tree/notebooks/02_why_deferred.ipynb"))
    run_all(page)
    domain = page.locator(".exo-domain select")
    caption = page.locator(".exo-journey .exo-info").first
    image = page.locator(".exo-journey img")

    choose(domain, "adventure-works.com")  # the greylisted partner first, so that the IronPort one is a change
    wait_for_domain(page, "adventure-works.com")
    expect(caption).to_contain_text("@adventure-works.com", timeout=ACT)
    expect(image).to_have_attribute("src", re.compile("^blob:"), timeout=ACT)
    before = image.get_attribute("src")

    label = choose(domain, "tailspintoys.com")
    wait_for_domain(page, "tailspintoys.com")
    expect(caption).to_contain_text("@tailspintoys.com", timeout=ACT)
    expect(image).not_to_have_attribute("src", before, timeout=ACT)
    image.scroll_into_view_if_needed()
    screenshot(page, "02_why_deferred_tailspintoys")

    run_all(page)  # re-running the cells keeps the choice
    expect(page.locator(".exo-domain select option:checked")).to_have_text(label, timeout=ACT)
    wait_for_domain(page, "tailspintoys.com")

    # the domain narrows the causes, and the cause the domains: every pair offered has messages
    # (all), gateway_block: the causes table of the domain (its "unknown" summary rows are superseded by detail)
    expect(page.locator(".exo-cause select option")).to_have_count(2, timeout=ACT)
    choose(page.locator(".exo-cause select"), "gateway_block")
    expect(page.locator(".exo-domain select option")).to_have_count(2, timeout=ACT)  # (all), tailspintoys.com
    wait_for_domain(page, "tailspintoys.com")
    expect(image).to_be_visible()
    page.locator(".exo-domain-cause").scroll_into_view_if_needed()
    screenshot(page, "02_why_deferred_narrowed_choices")

    reset = page.locator(".exo-reset")  # the visible reset of remembered choices, under the setup line
    reset.get_by_role("button", name="Reset remembered choices").click()
    expect(reset).to_contain_text("Forgot the choices of 02.drill", timeout=ACT)
    run_all(page)
    expect(page.locator(".exo-domain select option:checked")).to_have_text("(all domains)", timeout=ACT)
    expect(page.locator(".exo-cause select option:checked")).to_have_text("(all causes)", timeout=ACT)


def test_a_saved_notebook_reopens_with_its_last_tables(page, lab_server, notebook_root):
    """Save after a choice, close the kernel, reopen: each widget is "model not found", its saved copy shows the
    tables and charts the widget last showed (while the widget lives, the copy is hidden)."""
    folder = notebook_root / "notebooks"
    saved = folder / "02_saved.ipynb"
    shutil.copy(folder / "02_why_deferred.ipynb", saved)
    open_notebook(page, lab_server.address(f"/lab/tree/notebooks/{saved.name}?reset"))  # no other notebook open
    run_all(page)
    choose(page.locator(".exo-domain select"), "adventure-works.com")
    wait_for_domain(page, "adventure-works.com")
    copies = page.locator(".exo-saved-copy")
    assert copies.count() >= 3
    for n in range(copies.count()):
        expect(copies.nth(n)).to_be_hidden()
    expect(copies.filter(has_text="Domain: adventure-works.com")).to_have_count(1, timeout=ACT)  # follows, hidden
    page.locator(".lm-MenuBar-itemLabel", has_text="File").click()
    page.locator('li[data-command="docmanager:save"]').click()
    for _ in range(ACT // 500):  # the server writes the file a moment after the click
        if "Domain: adventure-works.com" in saved.read_text(encoding="utf-8"):
            break
        page.wait_for_timeout(500)
    text = saved.read_text(encoding="utf-8")
    assert "Domain: adventure-works.com" in text and "@adventure-works.com" in text  # the copy as last shown

    for session in page.request.get(lab_server.address("/api/sessions")).json():
        if session["path"].endswith(saved.name):
            assert page.request.delete(lab_server.address(f"/api/sessions/{session['id']}")).ok
    page.reload(timeout=READY)
    expect(page.locator(".jp-Notebook")).to_contain_text("model not found", timeout=READY)
    drill_copy = page.locator(".exo-saved-copy", has_text="Domain: adventure-works.com")
    expect(drill_copy).to_be_visible(timeout=ACT)
    expect(drill_copy.locator("table.exo-table").first).to_contain_text("@adventure-works.com")
    expect(drill_copy.locator("img")).to_be_visible()  # the journey chart, embedded
    drill_copy.scroll_into_view_if_needed()
    screenshot(page, "02_reopened_without_kernel")


def test_paste_an_allowlist_and_see_the_missing_range(page, lab_server, sample_dir):
    open_notebook(page, lab_server.address("/lab/tree/notebooks/03_gateways_and_exchange_ranges.ipynb"))
    run_all(page)
    box = page.locator(".exo-allowlist")
    text = box.locator("textarea")
    status = box.locator(".exo-error, .exo-ok").first
    complete = "\n".join(Endpoints.bundled().exchange_mail_flow_ranges(port=25))
    text.fill(complete)
    box.get_by_role("button", name="Audit").click()
    expect(status).to_contain_text("Every Exchange Online SMTP range is allowed", timeout=ACT)

    text.fill((sample_dir / "partner_allowlist_ironport.txt").read_text())
    box.get_by_role("button", name="Audit").click()
    expect(status).to_contain_text("missing from the list: 52.100.0.0/14", timeout=ACT)
    missing = box.locator("h4", has_text="Missing Exchange Online ranges").locator("xpath=following-sibling::table[1]")
    expect(missing).to_contain_text("52.100.0.0/14")
    expect(box.get_by_text(re.compile("^Download allowlist-corrected"))).to_be_visible()
    missing.scroll_into_view_if_needed()
    screenshot(page, "03_allowlist_audit")


def test_voila_serves_load_and_triage_as_a_live_app(page, voila_server):
    page.goto(voila_server.address("/"), timeout=RUN)
    picker = page.locator(".exo-file-picker")
    expect(picker.locator(".exo-ok")).to_contain_text("Loaded", timeout=RUN)
    assert not page.locator("text=from analysis import").count()  # an app: code hidden
    events = page.locator(".exo-table-view", has_text="All events")
    search = events.locator(".widget-text input").first
    search.fill("alert(1)")
    search.press("Enter")
    expect(events.locator("table.exo-table")).to_contain_text("<script>alert(1)</script>", timeout=ACT)
    assert "filtered from" in events.inner_text()
    events.scroll_into_view_if_needed()
    screenshot(page, "01_voila_search")

    picker.locator(".widget-text input").first.fill("no-such-folder/")
    picker.get_by_role("button", name=re.compile(r"^\W*Load$")).click()
    expect(picker.locator(".exo-error").first).to_contain_text("No events were loaded", timeout=ACT)


def test_voila_slider_redraws_the_trend_and_the_domains(page, voila_server):
    """In the app no cell is re-run: moving the time slider must redraw the charts and the table below it."""
    page.goto(voila_server.address("/"), timeout=RUN)
    expect(page.locator(".exo-file-picker .exo-ok")).to_contain_text("Loaded", timeout=RUN)
    trend = page.locator(".exo-window-chart").first
    caption, image = trend.locator(".exo-info").first, trend.locator("img").first
    expect(caption).to_contain_text("5,474 events", timeout=ACT)
    before = image.get_attribute("src")
    handle = page.locator(".exo-time-range .noUi-handle-upper")
    handle.focus()
    for _ in range(60):  # an hour per step: the last two and a half days leave the window
        handle.press("ArrowLeft")
    expect(caption).not_to_contain_text("5,474 events", timeout=ACT)
    expect(caption).to_contain_text(re.compile(r"Window 2026-11-16 00:00 to 2026-11-20 \d\d:00 UTC: [\d,]+ events"))
    expect(image).not_to_have_attribute("src", before, timeout=ACT)
    domains = page.locator(".exo-window-chart").nth(1)
    expect(domains.locator(".exo-info").first).to_have_text(caption.inner_text(), timeout=ACT)
    copies = page.locator(".exo-saved-copy")  # the copies a saved notebook keeps stay hidden in the app
    assert copies.count() >= 3 and not any(copies.nth(n).is_visible() for n in range(copies.count()))
    trend.scroll_into_view_if_needed()
    screenshot(page, "01_voila_slider")
