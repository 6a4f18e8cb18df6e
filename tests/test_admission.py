"""Admission: comparisons generate only while every local answer keeps its speed; the rest wait in line,
told their place and the estimated wait (playground/admission.py), on the real server."""

from __future__ import annotations

import re
import threading
import time

import pytest
from gradio_client import Client
from prometheus_client.parser import text_string_to_metric_families

from app import settings_from
from playground.admission import Admission, Place, StepTimes, Ticket, readable_wait
from playground.metrics import Metrics
from playground.server import create_app
from playground.view import waiting_line
from tests.browsers import PHONE, WIDE, paced_app
from tests.fakes import shared_engine_streamer, words_streamer
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
    assert admission.expected_s == pytest.approx(11.25)
    # The second waited 10 s for its place; one gap is too few for a pace: the second ends in 11.25 s.
    assert second.admitted.is_set() and admission.pace_s == pytest.approx(10.0)
    assert admission.place(third) == Place(1, pytest.approx(11.25))
    clock.now += 4.0
    assert admission.place(third) == Place(1, pytest.approx(7.25))
    fourth = admission.join((0, 1))
    assert admission.place(fourth) == Place(2, pytest.approx(18.5))


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


def test_step_times_assume_no_gain_from_one_batch_size_and_fit_a_line_through_more():
    steps = StepTimes()
    assert steps.seconds(3) is None and steps.slowdown(3, 3) == pytest.approx(0.5)  # nothing measured yet
    for _ in range(7):
        steps.observe(2, 0.1)
    assert steps.seconds(2) is None  # 7 gaps are not yet a measure
    steps.observe(2, 0.1)
    assert steps.seconds(4) == pytest.approx(0.2) and steps.slowdown(2, 2) == pytest.approx(0.5)
    for _ in range(8):
        steps.observe(6, 0.14)  # 0.08 s a step plus 0.01 s a stream
    assert steps.measured() == {2: pytest.approx(0.1), 6: pytest.approx(0.14)}
    assert steps.seconds(12) == pytest.approx(0.2) and steps.seconds(4) == pytest.approx(0.12)
    assert steps.slowdown(6, 6) == pytest.approx(0.14 / 0.2)
    steps.observe(6, 0.3)  # a batch size measured often enough is taken as measured, not from the line
    assert steps.seconds(6) == pytest.approx(1.42 / 9)
    for _ in range(64):
        steps.observe(10, 0.05)  # faster with more streams: noise; the step is never taken to shrink
    assert steps.seconds(10) == pytest.approx(0.05)
    assert steps.seconds(20) == pytest.approx(steps.seconds(40)) and steps.seconds(1) > 0


def engine_steps(admission: Admission, clock: Clock, steps: int, seconds) -> None:
    """`steps` steps of one engine whose step takes `seconds(streams)`: a token on every pane streaming."""
    for _ in range(steps):
        clock.now += seconds(admission._streams["local"])
        for ticket in list(admission._running):
            for position in ticket.local:
                if position not in ticket.finished:
                    admission.tick(ticket, position)


def step(streams: int) -> float:
    """An engine whose step takes 0.1 s plus 0.01 s a stream."""
    return 0.1 + 0.01 * streams


def one_streaming_one_waiting() -> tuple[Clock, Admission, Ticket, Ticket]:
    """A comparison of two panes 10 steps in at 2 streams (8.3 tok/s), and one that waits behind it:
    with one batch size seen, no gain is assumed, and 8.3 halved is below the floor of 5."""
    clock = Clock()
    admission = Admission(max_running=8, min_tokens_per_s=5, clock=clock)
    first = admission.join((0, 1))
    engine_steps(admission, clock, 10, step)
    second = admission.join((0, 1))
    assert admission.place(second) is not None
    return clock, admission, first, second


def test_the_batching_gain_learned_from_what_ran_lets_more_comparisons_in():
    """2 streams at 8.3 tok/s: assuming no gain, 2 more streams would leave 4.2 tok/s, below 5; measured
    at 1 and 2 streams, 4 streams keep 7.1."""
    clock, admission, first, second = one_streaming_one_waiting()
    admission.finish(first, 1)
    engine_steps(admission, clock, 10, step)  # its last pane alone: 1 stream
    admission.leave(first)  # the second goes in as the first ends
    assert second.admitted.is_set()
    engine_steps(admission, clock, 10, step)
    assert admission.steps["local"].measured() == {1: pytest.approx(0.11), 2: pytest.approx(0.12)}
    assert admission.steps["local"].seconds(4) == pytest.approx(step(4))
    third = admission.join((0, 1))
    assert third.admitted.is_set()  # 8.3 tok/s x 0.12 / 0.14 = 7.1 >= 5
    engine_steps(admission, clock, 10, step)
    assert admission.slowest_rate() == pytest.approx(1 / step(4))
    fourth = admission.join((0, 1, 2, 3))
    assert fourth.admitted.is_set()  # 7.1 x 0.14 / 0.18 = 5.6 >= 5 (assuming no gain: 3.6)
    engine_steps(admission, clock, 10, step)
    fifth = admission.join((0, 1, 2, 3))
    assert admission.place(fifth).position == 1  # 5.6 x 0.18 / 0.22 = 4.5 < 5
    assert admission.running == 3 and admission._streams["local"] == 8


def test_metrics_show_what_admission_learned():
    clock, admission, first, waiting = one_streaming_one_waiting()
    clock.now += 3.0
    admission.leave(first)
    assert waiting.admitted.is_set()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(Metrics().watch(admission=admission).text().decode())
        for s in family.samples
    }
    assert found[("playground_step_seconds", (("streams", "2"), ("weights", "local")))] == pytest.approx(0.12)
    assert found[("playground_queue_pace_seconds", ())] == pytest.approx(3.0)  # the one waiter waited 3 s


def test_each_engine_is_judged_by_its_own_streams():
    clock = Clock()
    admission = Admission(max_running=8, min_tokens_per_s=5, clock=clock)
    first = admission.join({0: "big", 1: "small"})
    for _ in range(10):
        clock.now += 0.15  # the big model at 6.7 tok/s, the small one twice as fast
        admission.tick(first, 0)
        admission.tick(first, 1)
        admission.tick(first, 1)
    on_small = admission.join({0: "small"})
    assert on_small.admitted.is_set()  # the small engine's 13 tok/s halves to 6.7; the big one is untouched
    on_big = admission.join({0: "big"})
    assert admission.place(on_big) is not None  # 6.7 halved: 3.3


def test_once_the_line_has_moved_three_times_its_measured_pace_estimates():
    """Durations vary with answer length and the rule decides how many run at once: how fast the line
    moved says more than how long comparisons ran."""
    clock = Clock()
    admission = Admission(max_running=2, min_tokens_per_s=0, clock=clock)
    a, b = admission.join((0,)), admission.join((0,))
    c, d, e, f = (admission.join((0,)) for _ in range(4))
    clock.now += 5.0
    admission.leave(a)  # took 5 s; c waited 5 s
    clock.now += 25.0
    admission.leave(b)  # took 30 s; d went in 25 s after c
    assert admission.expected_s == pytest.approx(12.5)
    # Two gaps: by durations, c is overdue (e goes any moment) and d ends in 12.5 s.
    assert [admission.place(w) for w in (e, f)] == [Place(1, 0.0), Place(2, pytest.approx(12.5))]
    clock.now += 15.0
    admission.leave(c)  # e went in 15 s after d: gaps of 5, 25 and 15 s, a place every 15 s
    assert e.admitted.is_set() and admission.pace_s == pytest.approx(15.0)
    g = admission.join((0,))
    assert [admission.place(w) for w in (f, g)] == [Place(1, pytest.approx(15.0)), Place(2, pytest.approx(30.0))]
    clock.now += 20.0  # overdue: the next place is due any moment
    assert admission.place(f) == Place(1, 0.0)


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
    learned = admission.learned()
    for _ in range(20):
        clock.now += 0.01
        admission.tick(remote, 0)  # a server's tokens teach nothing of local engines
    assert admission.learned() == learned and not remote.ticks


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
    """Panes on one engine without batching gain, 10 tok/s each, with a floor of 8: a second comparison
    would leave each pane 5, so it waits until the first ends, the second time too (what was learned
    says the same); the second time the wait is estimated from how long the first comparisons took."""
    argv = ["--data-dir", str(tmp_path), "--port", str(free_port()), "--model", "org/one", "--model", "org/two"]
    settings = settings_from(argv + ["--min-tokens-per-s", "8"], {})
    prompt = " ".join(f"word{i}" for i in range(30))  # 32 tokens a pane at 10 tok/s
    with create_app(settings, streamer=shared_engine_streamer(0.05), log=lambda m: None) as app:
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
                assert 1 <= estimate <= 4, shown  # a comparison took about 3.3 s, and this one joined later
            assert running.result()[6] == ""  # the first one was never held back
            result = waiting.result()
            assert "waits for a free place" not in hint(result)
            assert all(text.endswith("word29") for text in answers(result))
        assert app.core.admission.running == 0 and app.core.admission.waiting == 0


slow_streamer = shared_engine_streamer(0.05)  # 40 words a pane, 10 tok/s each with two panes streaming


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


def test_estimates_are_shown_as_precisely_as_a_person_reads_them():
    assert [readable_wait(s) for s in (None, 0.4, 7.6, 12.4, 13.0, 87.0, 92.0, 430.0)] == [
        None,
        0.0,
        8.0,
        10.0,
        15.0,
        85.0,
        120.0,
        420.0,
    ]
    assert "about 85 s to wait" in waiting_line(Place(2, 84.7).readable())
    assert "number 3 in line, about 7 min to wait" in waiting_line(Place(3, 430.0).readable())


def test_a_waiting_page_is_sent_again_only_when_its_place_reads_differently(tmp_path):
    """One comparison at a time; the first holds its place for 3 s. The second's place reads "next in
    line, estimating the wait…" all along (nothing has finished to estimate from): it is sent once, not
    once a second."""
    release = threading.Event()
    words = words_streamer()

    def held(contender, messages, params, *, stop, seed):
        if "hold" in messages[-1]["content"]:
            release.wait(30)
        yield from words(contender, messages, params, stop=stop, seed=seed)

    argv = ["--data-dir", str(tmp_path), "--model", "org/one", "--model", "org/two", "--max-concurrent", "1"]
    core = create_app(settings_from(argv, {}), streamer=held, log=lambda m: None).core
    first, second = core.new_conversation(), core.new_conversation()
    running = threading.Thread(target=lambda: list(core.ask(first, "hold this")))
    running.start()
    until(lambda: core.admission.running == 1)
    places = []
    waiting = threading.Thread(target=lambda: places.extend(c.queue_place for c in core.ask(second, "next")))
    waiting.start()
    until(lambda: core.admission.waiting == 1)
    time.sleep(3.0)
    release.set()
    running.join(30)
    waiting.join(30)
    assert [p for p in places if p is not None] == [Place(1, None)]
    assert second.panes[0].text.endswith("next")
