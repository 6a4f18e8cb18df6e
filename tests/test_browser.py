"""What only a browser shows: panes side by side (wrapping when narrow), streaming, the rating box."""

from __future__ import annotations

import os

import pytest

from models.loading import LoadOptions
from playground.server import Settings, create_app, launch
from tests.test_app_e2e import free_port

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed "
                       "(apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, tiny_mha, tiny_gqa):
    settings = Settings(models=(str(tiny_mha), str(tiny_gqa)), port=free_port(),
                        data_dir=tmp_path_factory.mktemp("browser-data"), load=LoadOptions(dtype="float32"))
    demo, _ = create_app(settings, log=lambda m: None)
    launch(demo, settings, block=False)
    yield f"http://127.0.0.1:{settings.port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        # A persistent context would need its own profile folder; a plain launch gets a fresh one.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def test_ask_stream_and_rate_in_a_browser(browser, page_url, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(page_url)
    page.locator("#storage-notice").wait_for()
    assert "stored" in page.locator("#storage-notice").inner_text()
    left, right = page.locator("#pane-0").bounding_box(), page.locator("#pane-1").bounding_box()
    assert abs(left["y"] - right["y"]) < 5 and right["x"] > left["x"] + left["width"] - 5  # side by side
    assert not page.locator("#rating").is_visible()
    page.get_by_text("Models", exact=True).click()  # the accordion: where each model lives
    models = page.locator("#models-info").inner_text()
    assert "cpu" in models and "loaded in" in models and "tiny-mha" in models
    page.locator("#prompt textarea").fill("What is the capital of France?")
    page.locator("#send").click()
    for position in (0, 1):
        page.locator(f"#stats-{position}").get_by_text("tok/s").wait_for(timeout=60_000)
    page.locator("#rating:visible").first.wait_for(state="visible")
    page.screenshot(path=str(tmp_path / "rated.png"), full_page=True)
    page.get_by_label("A is better").check()
    page.get_by_label("Significantly better").check()
    page.locator("#submit-rating").click()
    page.locator("#rating-status").get_by_text("your rating is stored").wait_for(timeout=20_000)
    page.close()


def test_panes_wrap_on_a_narrow_screen(browser, page_url):
    page = browser.new_page(viewport={"width": 420, "height": 900})
    page.goto(page_url)
    page.locator("#pane-1").wait_for()
    top, below = page.locator("#pane-0").bounding_box(), page.locator("#pane-1").bounding_box()
    assert below["y"] >= top["y"] + top["height"] - 5  # stacked, not squeezed
    assert below["width"] > 300
    page.close()


def test_markup_in_answers_is_not_executed(browser, page_url):
    page = browser.new_page()
    page.goto(page_url)
    page.locator("#prompt textarea").fill('<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>')
    page.locator("#send").click()
    page.locator("#stats-0").get_by_text("tok/s").wait_for(timeout=60_000)
    assert page.evaluate("window.__pwned === undefined")
    page.close()
