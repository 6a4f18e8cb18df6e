"""What a new user saw on the page (issue 19): a long prompt's bar over the page's bottom, a stray
"Textbox" label over a refused prompt, named panes out of line, and table headers broken mid-word."""

from __future__ import annotations

import os

import pytest

from models.loading import LoadOptions
from playground.server import Settings, create_app
from tests.browsers import CHROMIUM, PHONE, WIDE, paced_app
from tests.servers import free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
        reason="Debian's chromium is not installed (apt-get install chromium)",
    ),
]
DATA_BUTTONS = ("#show-data", "#delete-ratings", "#delete-all")


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """One --model under three presets whose parameter lines differ in length: named mode, three panes."""
    with paced_app(tmp_path_factory, "--model", "org/one") as app:
        yield app.url


@pytest.fixture(scope="module")
def tiny_presets(tmp_path_factory, tiny_mha):
    """A real tiny checkpoint, so the Models section holds the real table."""
    settings = Settings(
        models=(str(tiny_mha),),
        port=free_port(),
        data_dir=tmp_path_factory.mktemp("polish-data"),
        load=LoadOptions(dtype="float32"),
    )
    with create_app(settings, log=lambda m: None) as app:
        yield app.url


def uncovered(page, selector: str) -> bool:
    """Whether a person can click the middle of `selector`: it is in the window and nothing lies over it."""
    box = page.locator(selector).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    if not (0 <= y <= page.viewport_size["height"]):
        return False
    return page.evaluate(
        "([selector, x, y]) => { const hit = document.elementFromPoint(x, y);"
        " return hit !== null && document.querySelector(selector).contains(hit); }",
        [selector, x, y],
    )


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["1400", "420"])
def test_a_refused_long_prompt_leaves_the_bottom_of_the_page_in_reach(browser, presets, viewport, tmp_path):
    page = browser.new_page(viewport=viewport)
    page.goto(presets)
    page.locator("#pane-2").wait_for()
    page.locator("#prompt textarea").fill("x" * 20_000)
    page.locator("#send").click()
    page.get_by_text("the prompt is 20000 characters; the limit is 8000").wait_for(timeout=10_000)
    bar = page.locator("#prompt-row").bounding_box()
    assert bar["height"] < viewport["height"] / 3  # the prompt scrolls inside its box
    page.get_by_text("Your data", exact=True).click(timeout=10_000)  # the accordion's header was under the bar
    page.locator("#show-data").wait_for()
    shown = []
    for button in DATA_BUTTONS:  # as the browser scrolls to a button a person tabs to
        page.locator(button).scroll_into_view_if_needed()
        shown.append(uncovered(page, button))
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")  # the page's very end
    page.screenshot(path=str(tmp_path / f"long-prompt-{viewport['width']}.png"))
    assert shown == [True] * 3 and [uncovered(page, button) for button in DATA_BUTTONS] == [True] * 3
    page.locator("#show-data").click(timeout=10_000)
    page.locator("#your-data").get_by_text("Nothing is stored").wait_for(timeout=10_000)
    page.close()


def test_an_empty_prompt_is_refused_without_a_stray_label(browser, presets):
    page = browser.new_page(viewport=WIDE)
    page.goto(presets)
    page.locator("#pane-0").wait_for()
    textarea = page.locator("#prompt textarea")
    before = textarea.bounding_box()
    page.locator("#send").click()
    page.get_by_text("the prompt is empty").wait_for(timeout=10_000)
    shown = page.get_by_text("Textbox")
    assert not any(shown.nth(i).is_visible() for i in range(shown.count()))
    label = page.locator("#prompt [data-testid=block-info]")
    refusal = label.locator(".validation-error").bounding_box()
    # Nothing but the refusal above the box: the label's line (20 px when shown) takes no room.
    assert refusal["y"] - label.bounding_box()["y"] < 8
    assert textarea.bounding_box()["height"] == before["height"]
    page.close()


def top_offsets(page, selector: str, panes: int) -> list[float]:
    return [page.locator(selector.format(p)).bounding_box()["y"] for p in range(panes)]


def test_named_panes_and_their_stats_line_up_whatever_wraps(browser, presets, tmp_path):
    page = browser.new_page(viewport=WIDE)
    page.goto(presets)
    page.locator("#params-2").get_by_text("preset:").wait_for(timeout=10_000)
    page.locator("#prompt textarea").fill("Line up")
    page.locator("#send").click()
    for p in range(3):
        page.locator(f"#stats-{p}").get_by_text("tok/s").wait_for(timeout=30_000)
    heights = [page.locator(f"#params-{p}").bounding_box()["height"] for p in range(3)]
    assert max(heights) > min(heights) + 5  # a parameter line wraps in one pane and not in another
    page.screenshot(path=str(tmp_path / "named-1400.png"))
    panes, stats = top_offsets(page, "#pane-{}", 3), top_offsets(page, "#stats-{}", 3)
    assert max(panes) - min(panes) < 1 and max(stats) - min(stats) < 1, (panes, stats)
    page.close()


WORDS_BROKEN = """(cell) => {
  const broken = [];
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node !== null; node = walker.nextNode()) {
    for (const match of node.data.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const lines = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
      if (lines.size > 1) broken.push(match[0]);
    }
  }
  return broken;
}"""


def test_model_table_headers_break_only_between_words(browser, tiny_presets, tmp_path):
    for viewport in (WIDE, PHONE):
        page = browser.new_page(viewport=viewport)
        page.goto(tiny_presets)
        page.locator("#pane-2").wait_for()
        page.get_by_text("Models", exact=True).click()
        headers = page.locator("#models-info th")
        headers.first.wait_for()
        assert headers.count() == 8
        broken = [word for i in range(headers.count()) for word in headers.nth(i).evaluate(WORDS_BROKEN)]
        assert broken == [], f"at {viewport['width']} px"
        page.locator("#models-info").scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / f"models-{viewport['width']}.png"))
        table = page.locator("#models-info table").evaluate("t => [t.scrollWidth, t.clientWidth]")
        page_width = page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= viewport["width"]  # the table scrolls on its own, never the page
        if viewport is PHONE:
            assert table[0] > table[1]  # too wide for a phone: it scrolls sideways
        page.close()
