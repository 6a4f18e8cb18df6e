"""Admission: comparisons generate only while every local answer keeps its speed; the rest wait in line,
told their place and the estimated wait (playground/admission.py), on the real server."""

from __future__ import annotations

import re

import pytest
from gradio_client import Client

from app import settings_from
from playground.admission import Admission, Place
from playground.server import create_app
from tests.browsers import PHONE, WIDE, paced_app
from tests.fakes import words_streamer
from tests.page_api import answers
from tests.servers import free_port
from tests.waiting import until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stream(admission: Admission, clock: Clock, ticket, tokens: int, rate: float, panes=(0, 1)) -> None:
    """`tokens` tokens on each pane at `rate` tokens/s, the clock moving with them."""
    for _ in range(tokens):
        clock.now += 1 / rate
        for position in panes:
            admission.tick(ticket, position)


def test_the_first_comparison_goes_at_once_and_the_next_waits_until_the_first_panes_show_their_speed():
    clock = Clock()
    admission = Admission(max_running=8, min_tokens_per_s=5, clock=clock)
    first = admission.join((0, 1))
    assert first.admitted.is_set()
    second = admission.join((0, 1))
    assert admission.place(second) == Place(1, None)  # nothing measured yet, nothing finished yet
    stream(admission, clock, first, 2, rate=20)
    assert admission.place(second) is not None  # 2 tokens are not a measurement
    stream(admission, clock, first, 4, rate=20)
    assert admission.place(second) is None  # 20 tok/s shared with 2 more streams: 10 >= 5
    assert second.admitted.is_set() and admission.running == 2 and admission.waiting == 0


def test_a_comparison_that_would_slow_the_slowest_pane_below_the_floor_waits_until_one_ends():
    clock = Clock()
    admission = Admission(max_running=8, min_tokens_per_s=5, clock=clock)
    first = admission.join((0, 1))
    stream(admission, clock, first, 10, rate=8)
    second = admission.join((0, 1))  # 8 tok/s over 2 streams becomes 4 over 4: below 5
    assert admission.place(second) == Place(1, None)
    third = admission.join((0, 1))
    assert admission.place(third) == Place(2, None)
    clock.now += 10.0
    admission.leave(first)  # ran 11.25 s: the expected duration from now on
    assert second.admitted.is_set() and admission.place(third) == Place(1, pytest.approx(11.25))
    assert admission.expected_s == pytest.approx(11.25)


def test_the_estimate_serves_the_line_in_order_as_running_comparisons_end():
    clock = Clock()
    admission = Admission(max_running=2, min_tokens_per_s=0, clock=clock)
    done = admission.join((0,))
    clock.now += 10.0
    admission.leave(done)  # comparisons take 10 s
    a = admission.join((0,))
    clock.now += 4.0
    b = admission.join((0,))
    clock.now += 1.0  # a ends in 5 s, b in 9 s; then each next one 10 s after the place it took
    waiters = [admission.join((0,)) for _ in range(3)]
    assert a.admitted.is_set() and b.admitted.is_set()
    assert [admission.place(w).estimate_s for w in waiters] == pytest.approx([5.0, 9.0, 15.0])


def test_a_pane_that_finished_early_does_not_hold_the_line_and_remote_panes_are_not_measured():
    clock = Clock()
    admission = Admission(max_running=2, min_tokens_per_s=5, clock=clock)
    first = admission.join((0, 1))
    stream(admission, clock, first, 1, rate=50, panes=(0,))  # pane 0 answered one token and ended
    admission.finish(first, 0)
    stream(admission, clock, first, 10, rate=30, panes=(1,))
    second = admission.join((0, 1))
    assert second.admitted.is_set()  # 30 tok/s over 1 stream, shared with 2 more: 10
    remote = admission.join(())
    assert admission.place(remote) == Place(1, None)  # remote panes are not measured, but the cap holds
    admission.leave(first)
    assert remote.admitted.is_set()


def test_a_waiter_that_leaves_gives_its_place_to_the_next():
    admission = Admission(max_running=1, min_tokens_per_s=0)
    running = admission.join((0,))
    gone, kept = admission.join((0,)), admission.join((0,))
    admission.leave(gone)
    assert admission.place(kept) == Place(1, None)
    admission.leave(running)
    assert kept.admitted.is_set() and not gone.admitted.is_set()


def hint(output) -> str:
    return output[6]  # two panes: chatbots, stats, parameters, then the hint


def test_a_second_visitor_waits_told_its_place_and_then_gets_its_answers(tmp_path):
    """Panes at 10 tok/s with a floor of 8: a second comparison would leave each pane 5, so it waits
    until the first ends; the second time the wait is estimated from the first comparison's time."""
    argv = ["--data-dir", str(tmp_path), "--port", str(free_port()), "--model", "org/one", "--model", "org/two"]
    settings = settings_from(argv + ["--min-tokens-per-s", "8"], {})
    prompt = " ".join(f"word{i}" for i in range(30))  # 32 tokens a pane at 10 tok/s
    with create_app(settings, streamer=words_streamer(delay=0.1), log=lambda m: None) as app:
        for round_ in range(2):
            first, second = Client(app.url, verbose=False), Client(app.url, verbose=False)
            running = first.submit(prompt, "", "", api_name="/ask")
            until(lambda: app.core.admission.running == 1 and app.core.admission.slowest_rate() is not None)
            waiting = second.submit(prompt, "", "", api_name="/ask")
            until(lambda: any("waits for a free place" in hint(o) for o in waiting.outputs()), timeout_s=30)
            assert app.core.admission.waiting == 1 and app.core.admission.running == 1
            shown = next(hint(o) for o in waiting.outputs() if "waits for a free place" in hint(o))
            assert "next in line" in shown
            if round_ == 0:
                assert "estimating the wait" in shown
            else:
                estimate = float(re.search(r"about (\d+) s to wait", shown).group(1))
                assert 1 <= estimate <= 4, shown  # a comparison took about 3.3 s, and this one began before
            assert running.result()[6] == ""  # the first one was never held back
            result = waiting.result()
            assert "waits for a free place" not in hint(result)
            assert all(text.endswith("word29") for text in answers(result))
        assert app.core.admission.running == 0 and app.core.admission.waiting == 0


def slow_streamer(contender, messages, params, *, stop, seed):
    """40 words at 10 tok/s on every pane."""
    yield from words_streamer(delay=0.1)(contender, messages, params, stop=stop, seed=seed)


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["wide", "phone"])
def test_in_chromium_the_waiting_visitor_sees_its_place_then_its_answers(browser, tmp_path_factory, viewport):
    argv = ["--model", "org/one", "--model", "org/two", "--min-tokens-per-s", "8"]
    with paced_app(tmp_path_factory, *argv, streamer=slow_streamer) as app:
        prompt = " ".join(f"word{i}" for i in range(38))
        pages = [browser.new_page(viewport=viewport), browser.new_page(viewport=viewport)]
        for page in pages:
            page.goto(app.url)
            page.locator("#pane-1").wait_for()
        for round_ in range(2):  # twice in a row: the second comparison of each page too
            first, second = pages
            first.locator("#prompt textarea").fill(f"{prompt} round{round_}")
            first.locator("#send").click()
            until(lambda: app.core.admission.slowest_rate() is not None)
            second.locator("#prompt textarea").fill(f"{prompt} round{round_}")
            second.locator("#send").click()
            waiting = second.locator("#vote-hint").get_by_text("waits for a free place")
            waiting.wait_for(state="visible", timeout=20_000)
            assert "next in line" in second.locator("#vote-hint").inner_text()
            second.locator("#stats-0").get_by_text("waits for a free place").wait_for(state="visible", timeout=10_000)
            assert second.locator("#stats-0").is_visible() and second.locator("#stats-0").bounding_box()["y"] < 900
            assert second.locator("#prompt textarea").input_value().endswith(f"round{round_}")  # kept while it waits
            second.screenshot(path=str(tmp_path_factory.getbasetemp() / f"waiting-{viewport['width']}-{round_}.png"))
            for page in pages:
                for position in (0, 1):
                    page.locator(f"#stats-{position}").get_by_text("tok/s").wait_for(timeout=60_000)
            assert not waiting.is_visible()
            assert second.locator("#prompt textarea").input_value() == ""
            assert f"round{round_}" in second.locator("#pane-0").inner_text()
            pages.reverse()  # the other page asks first next time
        for page in pages:
            page.close()
