"""The admin tab's Activity plots in Chromium, after a real run through the page: hidden until the token
is entered, then four vega-lite plots with their marks, wide and at 420 px."""

from __future__ import annotations

import os
import re

import pytest

from app import settings_from
from playground.server import create_app
from tests.browsers import CHROMIUM, PHONE, WIDE, paced_streamer
from tests.servers import free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
        reason="Debian's chromium is not installed (apt-get install chromium)",
    ),
]
TOKEN = "activity-admin-token-0123456789"
MARKS = """(id) => Array.from(document.querySelectorAll('#' + id + ' svg.marks g.role-mark.plot_marks path'))
    .filter(path => (path.getAttribute('d') || '').length > 0).length"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    argv = ["--data-dir", str(tmp_path_factory.mktemp("activity")), "--port", str(free_port()), "--admin"]
    argv += ["--model", "org/one", "--model", "org/two"]
    settings = settings_from(argv, {"PLAYGROUND_ADMIN_TOKEN": TOKEN})
    with create_app(settings, streamer=paced_streamer, log=lambda m: None) as served:
        yield served


def open_admin_tab(page) -> None:
    """By its tab, or at phone width from the menu of tabs that do not fit."""
    tab = page.get_by_role("tab", name="Data (admin)")
    if tab.count():
        tab.click()
    else:
        page.locator("button[aria-label='More tabs']").click()
        page.locator(".overflow-dropdown button", has_text="Data (admin)").click()


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["wide", "phone"])
def test_activity_plots_after_a_run_through_the_page(browser, app, viewport, tmp_path):
    page = browser.new_page(viewport=viewport)
    page.goto(app.url)
    page.locator("#prompt textarea").fill("What is the capital of France?")
    page.locator("#send").click()
    for position in (0, 1):
        page.locator(f"#stats-{position}").get_by_text("tok/s").wait_for(timeout=60_000)
    page.get_by_label("A is better").check()
    page.locator("#submit-rating").click()
    page.locator("#rating-status").get_by_text("your rating is stored").wait_for(timeout=20_000)

    open_admin_tab(page)
    assert not page.locator("#activity-hourly").is_visible()  # nothing shows before the token
    page.locator("#admin-token input").fill(TOKEN)
    page.locator("#admin-token input").press("Enter")
    page.locator("#activity-summary").get_by_text("in the last 48 hours").wait_for(timeout=30_000)
    for plot in ("hourly", "ratings", "latency", "share"):
        page.locator(f"#activity-{plot} svg.marks").wait_for(timeout=20_000)
    page.locator("#activity-share").scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "activity.png"), full_page=True)
    assert page.evaluate(MARKS, "activity-hourly") == 1  # one line through 48 hours
    assert page.evaluate(MARKS, "activity-ratings") == 60  # 30 days, counted and set aside (0 high but drawn)
    assert page.evaluate(MARKS, "activity-latency") == 4  # p50 and p95 of each contender, today
    assert page.evaluate(MARKS, "activity-share") == 2  # the share of A today, and the 50% mark
    assert page.get_by_text(re.compile(r"^No .* in the last")).count() == 0  # no plot gave way to a sentence
    page.close()
