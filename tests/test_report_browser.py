"""The rendered report in headless Chromium: offline (every request that is not a file is blocked and counted),
charts drawn, summary visible, trace text shown as text and never run; and the PDF printed by Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_report import HOSTILE_REPLY, SCRIPT_SUBJECT, write_hostile_trace

from analysis.report.notebook import ReportResult, render_report

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "build" / "screenshots" / "report.png"


@pytest.fixture(scope="module")
def rendered(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    if not shutil.which("chromium"):
        reason = "chromium is missing (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("report-browser")
    return render_report([sample_dir, write_hostile_trace(folder / "hostile.csv")], folder / "out" / "report.html",
                         title="Sample: outbound deferrals", pdf=True)


@pytest.fixture
def opened(rendered, page):
    """The report open in a page that may load file: and data: URLs only; what else it asked for, its dialogs."""
    blocked: list[str] = []
    dialogs: list[str] = []

    def route(request_route):
        if request_route.request.url.startswith(("file:", "data:")):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(rendered.html.as_uri(), wait_until="load")
    return page, blocked, dialogs


def test_report_renders_offline_with_every_chart(opened):
    page, blocked, dialogs = opened
    images = page.locator("img")
    assert images.count() >= 1
    sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert all(complete and width > 0 and height > 0 for complete, width, height in sizes), sizes
    assert page.locator("h2", has_text="Summary").first.is_visible()
    assert page.get_by_text("tailspintoys.com").first.is_visible()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    assert blocked == [] and dialogs == []


def test_the_proof_is_visible_without_scrolling_past_the_summary(opened):
    """With the summary's heading at the top of a 1440 x 900 window, the refused range and its table are on
    screen: the reader meets the proof before anything else."""
    page, blocked, _ = opened
    page.set_viewport_size({"width": 1440, "height": 900})
    summary = page.locator("h2", has_text="Summary").first
    summary.evaluate("element => element.scrollIntoView({block: 'start'})")
    proof = page.locator(".exo-proof-finding").first
    finding = proof.get_by_text("refused 172 of 172 delivery attempts").first
    refused_row = proof.locator("table.exo-proof tr", has_text="52.100.0.0/14").first
    for element in (finding, refused_row):
        box = element.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, box
    assert "REFUSED" in refused_row.inner_text()
    page.screenshot(path=str(SCREENSHOT.with_name("report-proof.png")))
    assert blocked == []


def test_markup_in_a_reply_shows_as_text_and_never_runs(opened):
    page, blocked, dialogs = opened
    assert page.get_by_text(HOSTILE_REPLY).first.is_visible()
    assert page.evaluate("document.querySelectorAll('img[src=x], script').length") == 0
    page.wait_for_timeout(300)
    assert dialogs == [] and blocked == []


def test_the_samples_script_subject_shows_as_text_and_never_runs(opened):
    page, _, dialogs = opened
    assert page.get_by_text(SCRIPT_SUBJECT).first.is_visible()
    assert dialogs == []


def test_pdf_is_printed(rendered):
    assert rendered.pdf is not None and rendered.pdf.read_bytes().startswith(b"%PDF")
    assert rendered.pdf.stat().st_size > 10_000
