"""What only a browser shows: panes side by side (stacked when narrow), streaming, and the rating flow
used as a person would, twice in a row, in named and arena mode, wide and at 420 px."""

from __future__ import annotations

import os
import re
import sqlite3
import time

import pytest

from models.loading import LoadOptions
from playground.server import Settings, create_app
from tests.browsers import CHROMIUM, PHONE, WIDE, paced_app
from tests.servers import free_port
from tests.waiting import until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
        reason="Debian's chromium is not installed (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def tiny_app(tmp_path_factory, tiny_mha, tiny_gqa):
    """The real loading and decoding path on two tiny checkpoints."""
    settings = Settings(
        models=(str(tiny_mha), str(tiny_gqa)),
        port=free_port(),
        data_dir=tmp_path_factory.mktemp("browser-data"),
        load=LoadOptions(dtype="float32"),
    )
    with create_app(settings, log=lambda m: None) as app:
        yield app.url, settings


@pytest.fixture(scope="module")
def three_panes(tmp_path_factory):
    with paced_app(tmp_path_factory, "--model", "org/fast", "--model", "org/slow", "--model", "org/third") as app:
        yield app.url, app.settings, app


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    with paced_app(
        tmp_path_factory, "--mode", "arena", "--model", "org/one", "--model", "org/two", "--model", "org/three"
    ) as app:
        yield app.url, app.settings


def ratings(settings) -> list[tuple]:
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        rows = db.execute(
            "SELECT c.prompt, r.kind, r.choice, r.strength, r.comment, "
            "(SELECT group_concat(p.position || ':' || coalesce(j.rank, j.score, '') || ':' || j.unsafe, ' ') "
            " FROM answer_judgements j JOIN responses p ON p.id = j.response_id WHERE j.rating_id = r.id) "
            "FROM ratings r JOIN comparisons c ON c.id = r.comparison_id ORDER BY r.created_at"
        ).fetchall()
        return [row[:-1] + (" ".join(sorted(row[-1].split())),) for row in rows]


def ask(page, text: str, panes: int = 2) -> None:
    page.locator("#prompt textarea").fill(text)
    page.locator("#send").click()
    for position in range(panes):
        page.locator(f"#stats-{position}").get_by_text("tok/s").wait_for(timeout=60_000)
    page.locator("#rating:visible").first.wait_for(state="visible", timeout=20_000)


def within_view(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    bar = page.locator("#prompt-row").bounding_box()
    return box is not None and 0 <= box["y"] and box["y"] + box["height"] <= bar["y"] + 1


def test_rate_twice_in_a_row_wide(browser, tiny_app, tmp_path):
    url, settings = tiny_app
    page = browser.new_page(viewport=WIDE)
    page.goto(url)
    page.locator("#storage-notice").wait_for()
    left, right = page.locator("#pane-0").bounding_box(), page.locator("#pane-1").bounding_box()
    assert abs(left["y"] - right["y"]) < 5 and right["x"] > left["x"] + left["width"] - 5  # side by side
    assert not page.locator("#rating").first.is_visible()
    page.locator("#params-0").get_by_text(re.compile("greedy|temperature")).wait_for(timeout=10_000)
    page.get_by_text("Models", exact=True).click()  # the accordion: where each model lives
    models = page.locator("#models-info").inner_text()
    assert "cpu" in models and "loaded in" in models and "tiny-mha" in models

    ask(page, "What is the capital of France?")
    assert within_view(page, "#choice")  # the vote sits right under the answers, no scrolling
    page.screenshot(path=str(tmp_path / "wide-first.png"))
    page.get_by_label("A is better").check()
    page.get_by_label("Significantly better").check()
    page.locator("#unsafe-1 input").check()
    page.locator("#reason-1 textarea").fill("made up facts")
    page.locator("#comment textarea").fill("first answers")
    page.locator("#submit-rating").click()
    page.locator("#rating-status").get_by_text("your rating is stored").wait_for(timeout=20_000)

    ask(page, "And what about Germany?")
    assert page.locator("#rating-status").inner_text().strip() == ""  # the thank-you went with the answers
    assert not page.get_by_label("A is better").is_checked()
    assert not page.get_by_label("Significantly better").is_checked()
    assert not page.locator("#unsafe-1 input").is_checked()
    assert page.locator("#reason-1 textarea").input_value() == ""
    assert page.locator("#comment textarea").input_value() == ""
    page.locator("#submit-rating").click()  # an empty form is refused on the form itself
    page.get_by_text("pick a verdict first").first.wait_for(timeout=10_000)
    page.get_by_label("Tie").check()
    page.locator("#submit-rating").click()
    page.locator("#rating-status").get_by_text("your rating is stored").wait_for(timeout=20_000)
    page.close()
    assert ratings(settings) == [
        ("What is the capital of France?", "pairwise", "a", "significantly_better", "first answers", "0::0 1::1"),
        ("And what about Germany?", "pairwise", "tie", None, None, "0::0 1::0"),
    ]


def test_phone_width_keeps_the_prompt_in_reach(browser, tiny_app, tmp_path):
    url, _ = tiny_app
    page = browser.new_page(viewport=PHONE)
    page.goto(url)
    page.locator("#pane-1").wait_for()
    top, below = page.locator("#pane-0").bounding_box(), page.locator("#pane-1").bounding_box()
    assert below["y"] >= top["y"] + top["height"] - 5  # stacked, not squeezed
    assert below["width"] > 300
    prompt = page.locator("#prompt textarea").bounding_box()
    assert prompt["y"] + prompt["height"] <= PHONE["height"] and prompt["width"] > 200  # no scrolling needed
    for turn in ("Hello there", "Tell me more"):
        ask(page, turn)
        prompt = page.locator("#prompt textarea").bounding_box()
        assert 0 <= prompt["y"] and prompt["y"] + prompt["height"] <= PHONE["height"]
        page.locator("#choice").scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / f"phone-{turn[:5]}.png"))
        page.get_by_label("B is better").check()
        page.locator("#submit-rating").click()
        page.locator("#rating-status").get_by_text("your rating is stored").wait_for(timeout=20_000)
    page.close()


def test_an_empty_prompt_is_refused_and_the_panes_stay(browser, tiny_app):
    url, _ = tiny_app
    page = browser.new_page(viewport=WIDE)
    page.goto(url)
    page.locator("#pane-0").wait_for()
    ask(page, "Hello")
    before = [page.locator(f"#pane-{p}").inner_text() for p in (0, 1)]
    page.locator("#prompt textarea").fill("   ")
    page.locator("#send").click()
    page.get_by_text("the prompt is empty").first.wait_for(timeout=10_000)
    time.sleep(0.5)
    assert [page.locator(f"#pane-{p}").inner_text() for p in (0, 1)] == before  # labels and answers intact
    assert page.locator("#pane-0").get_by_text("Error", exact=True).count() == 0
    page.close()


def test_markup_in_answers_is_not_executed(browser, tiny_app):
    url, _ = tiny_app
    page = browser.new_page()
    page.goto(url)
    page.locator("#prompt textarea").fill('<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>')
    page.locator("#send").click()
    page.locator("#stats-0").get_by_text("tok/s").wait_for(timeout=60_000)
    assert page.evaluate("window.__pwned === undefined")
    page.close()


def test_stop_one_pane_then_rank_three_answers(browser, three_panes, tmp_path):
    url, settings, app = three_panes
    page = browser.new_page(viewport=WIDE)
    page.goto(url)
    page.get_by_text(": slow").wait_for(timeout=10_000)  # the labels come with the page's load event
    labels = [page.locator(f"#pane-{p}").inner_text() for p in range(3)]
    slow = next(p for p, text in enumerate(labels) if ": slow" in text)
    page.locator("#prompt textarea").fill("Which is best?")
    page.locator("#send").click()
    hint = page.locator("#vote-hint")
    hint.get_by_text(f"Press Stop under {'ABC'[slow]} to vote now").wait_for(timeout=20_000)
    page.screenshot(path=str(tmp_path / "waiting-for-one.png"))
    page.locator(f"#stop-{slow}").click()
    page.locator(f"#stats-{slow}").get_by_text("stopped by you").wait_for(timeout=20_000)
    page.locator("#rating:visible").first.wait_for(state="visible", timeout=20_000)
    page.get_by_label("Rank the answers").check()
    page.locator("#rank-0").wait_for(state="visible")
    ranks = {0: "1", 1: "1", 2: "3"}  # a tie for first
    for position, rank in ranks.items():
        page.locator(f"#rank-{position}").get_by_label(rank, exact=True).check()
    page.locator("#submit-rating").click()
    page.locator("#rating-status").get_by_text("your rating is stored").wait_for(timeout=20_000)
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        reasons = dict(db.execute("SELECT contender, finish_reason FROM responses").fetchall())
    assert reasons == {"fast": "stop", "slow": "stopped", "third": "stop"}
    assert ratings(settings)[-1][1:] == ("ranking", None, None, None, "0:1:0 1:1:0 2:3:0")
    held = len(app.conversations)
    page.close()  # the page unloads: its conversation goes with it
    until(lambda: len(app.conversations) < held, 10, what="the closed page's conversation to go")


def test_arena_continues_from_the_preferred_answer(browser, arena, tmp_path):
    url, settings = arena
    for viewport in (WIDE, PHONE):
        page = browser.new_page(viewport=viewport)
        page.goto(url)
        page.locator("#pane-1").wait_for()
        ask(page, "First question")
        assert page.locator("#pane-0").get_by_text("Model A").count() == 1  # names hidden until the vote
        page.get_by_label("B is better").check()
        page.locator("#submit-rating").click()
        status = page.locator("#rating-status")
        status.get_by_text("continues from answer B").wait_for(timeout=20_000)
        chosen = page.locator("#pane-1 .bot").last.inner_text()
        assert "answers: First question" in chosen and "B was" in status.inner_text()
        ask(page, "Second question")
        for position in (0, 1):  # every pane carries the chosen answer as its history
            assert page.locator(f"#pane-{position} .bot").first.inner_text() == chosen
        assert not page.get_by_label("B is better").is_checked()
        page.get_by_label("A is better").check()
        page.locator("#submit-rating").click()
        status.get_by_text("continues from answer A").wait_for(timeout=20_000)
        page.screenshot(path=str(tmp_path / f"arena-{viewport['width']}.png"))
        page.close()
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        turns = db.execute(
            "SELECT turn, history, continued_from IS NOT NULL FROM comparisons ORDER BY created_at"
        ).fetchall()
    assert turns == [(0, "own", 0), (1, "shared", 1)] * 2


def test_overriding_parameters_is_an_explicit_choice(browser, three_panes):
    url, _, _ = three_panes
    page = browser.new_page(viewport=WIDE)
    page.goto(url)
    page.locator("#pane-0").wait_for()
    page.get_by_text("System prompt and parameters").click()
    slider = page.locator("#param-temperature input[type=number]")
    assert slider.is_disabled()
    page.locator("#params-0").get_by_text("preset:").wait_for(timeout=10_000)
    page.locator("#override input").check()
    page.locator("#params-0").get_by_text("your override").wait_for(timeout=10_000)
    assert not slider.is_disabled()
    page.locator("#override input").uncheck()
    page.locator("#params-0").get_by_text("preset:").wait_for(timeout=10_000)
    page.close()


def test_many_clicks_on_send_start_one_comparison(browser, three_panes):
    url, settings, _ = three_panes
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        before = db.execute("SELECT count(*) FROM comparisons").fetchone()[0]
    page = browser.new_page(viewport=WIDE)
    page.goto(url)
    page.locator("#pane-2").wait_for()
    page.get_by_text(": slow").wait_for(timeout=10_000)
    page.locator("#prompt textarea").fill("Click, click, click")
    for _ in range(30):
        page.locator("#send").click(delay=0)
        page.locator("#prompt textarea").press("Enter")
    page.locator("#stop").click()
    page.locator("#rating:visible").first.wait_for(state="visible", timeout=30_000)
    time.sleep(1.0)  # any request still queued would have stored its comparison by now
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        after = db.execute("SELECT count(*) FROM comparisons").fetchone()[0]
    assert after - before == 1
    page.close()
