"""Calibration: each local engine's step time at 1, 2, 4... comparisons' streams, measured once the page
serves (playground/calibration.py), so admission knows a batch's cost before a crowd comes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from gradio_client import Client
from prometheus_client.parser import text_string_to_metric_families

from app import settings_from
from models.engines import BatchedLoop, step_gaps
from models.loading import LoadOptions, load_weights
from models.specs import ContenderSpec, EndpointSpec, WeightsSpec
from playground.admission import Admission
from playground.calibration import EngineProbe, calibrate, probes_for
from playground.server import create_app
from tests.fakes import shared_engine_streamer
from tests.servers import free_port
from tests.test_admission import Clock, stream
from tests.test_metrics import TOKEN, scrape
from tests.waiting import until

ONE, TWO = WeightsSpec("org/one"), WeightsSpec("org/two")


def contender(name: str, weights: WeightsSpec | None = None, server: str | None = None) -> ContenderSpec:
    return ContenderSpec(name=name, weights=weights, endpoint=EndpointSpec(server, "m") if server else None)


def cpu_like(streams: int) -> list[float]:
    """Gaps of an engine that gains from batching as a CPU's did: 15 tok/s a stream at 3, 10 at 12."""
    return [0.06 + 0.0035 * (streams - 3)] * 20


def test_each_local_engine_is_probed_at_one_two_four_comparisons_streams_up_to_the_limits():
    lineup = [contender("a", ONE), contender("b", ONE), contender("c", ONE), contender("r", server="http://x/v1")]
    (probe,) = probes_for(lineup, panes=4, max_running=10, max_batch={ONE: 32})
    assert probe.engine == ONE and probe.contender.name == "a"
    assert probe.sizes == (3, 6, 12, 24)  # the remote pane is no stream of this engine; 48 > the batch
    arena = probes_for([contender("a", ONE), contender("b", ONE), contender("c", TWO)], 2, 3, {})
    assert [(p.engine, p.sizes) for p in arena] == [(ONE, (2, 4)), (TWO, (1, 2))]  # 3 comparisons at most


def test_with_calibration_a_second_comparison_is_admitted_that_live_learning_alone_keeps_waiting():
    clock = Clock()
    probe = EngineProbe(ONE, contender("a", ONE), (3, 6, 12, 24))
    for calibrated in (False, True):
        admission = Admission(max_running=8, min_tokens_per_s=5, clock=clock)
        if calibrated:
            calibrate(admission, lambda c, streams, tokens: cpu_like(streams), [probe])
        panes = {0: ONE, 1: ONE, 2: ONE}
        first = admission.join(panes)
        stream(admission, clock, first, 20, rate=8, panes=(0, 1, 2))  # 8 tok/s each in the page
        second = admission.join(panes)
        # Unmeasured: 6 streams are taken to halve the rate (4 < 5); measured: 0.06/0.0705 of 8 is 6.8.
        assert second.admitted.is_set() is calibrated
        assert admission.running == (2 if calibrated else 1)


def test_calibration_stops_an_engine_where_a_stream_falls_below_the_floor():
    asked = []

    def measure(c, streams, tokens):
        asked.append(streams)
        return [0.25] * 10 if streams >= 6 else [0.1] * 10  # 4 tok/s at 6 streams: below 5

    admission = Admission(max_running=8, min_tokens_per_s=5)
    found = calibrate(admission, measure, [EngineProbe(ONE, contender("a", ONE), (3, 6, 12, 24))])
    assert asked == [3, 6] and found == {ONE: {3: pytest.approx(0.1), 6: pytest.approx(0.25)}}
    assert admission.learned() == {ONE: {3: pytest.approx(0.1), 6: pytest.approx(0.25)}}


def test_calibration_measures_only_while_no_comparison_runs_and_drops_a_measure_someone_joined():
    admission = Admission(max_running=8, min_tokens_per_s=5)
    running = admission.join({0: ONE})
    asked, joined = [], []

    def measure(c, streams, tokens):
        asked.append((streams, admission.running))
        if streams == 3 and not joined:  # a visitor arrives while the probe decodes
            joined.append(admission.join({0: ONE}))
        return [0.1] * 10

    done = threading.Event()
    probe = EngineProbe(ONE, contender("a", ONE), (3, 6))
    thread = threading.Thread(target=lambda: (calibrate(admission, measure, [probe], quiet_poll_s=0.01), done.set()))
    thread.start()
    assert not done.wait(0.3) and asked == []  # a comparison runs: nothing measured
    admission.leave(running)
    until(lambda: len(asked) == 1)
    admission.leave(joined[0])
    thread.join(5)
    assert asked == [(3, 0), (6, 0)]
    assert admission.learned() == {ONE: {6: pytest.approx(0.1)}}  # the 3-stream measure had a visitor in it


def test_calibration_ends_at_its_budget_or_when_stopped():
    admission = Admission(max_running=8, min_tokens_per_s=5)
    admission.join({0: ONE})  # never leaves
    probe = EngineProbe(ONE, contender("a", ONE), (3,))
    assert calibrate(admission, lambda *a: [0.1], [probe], budget_s=0.2, quiet_poll_s=0.01) == {}
    stop = threading.Event()
    stop.set()
    assert calibrate(Admission(8, 5), lambda *a: [0.1], [probe], stop=stop) == {}


def test_step_gaps_measures_a_real_engine_with_every_stream_in_the_batch(tiny_mha: Path):
    loaded = load_weights(WeightsSpec(str(tiny_mha)), LoadOptions(device_map="cpu", dtype="float32"))
    engine = BatchedLoop(loaded.model, loaded.input_device)
    try:
        prompt = loaded.tokenizer("How are you today?")["input_ids"]
        gaps = step_gaps(engine, prompt, streams=3, tokens=8)
        # At most tokens 2 - 8 of each stream come from steps all three share: 6 gaps each (fewer where a
        # stream joined a step later than the others).
        assert 3 <= len(gaps) <= 18 and all(0 < gap < 5 for gap in gaps)
        assert engine.peak_batch == 3
        engine.close()
        assert step_gaps(engine, prompt, streams=2, tokens=8) == []  # a closed engine ends streams at once
    finally:
        engine.close()


def measured_streamer():
    """The shared-engine words streamer, with a measure as the real streamer has."""
    words = shared_engine_streamer(0.01)
    asked = []

    def streamer(*args, **kwargs):
        return words(*args, **kwargs)

    def measure(c, streams, tokens):
        asked.append(streams)
        return [0.02 * streams] * 8

    streamer.step_gaps, streamer.asked = measure, asked
    return streamer


@pytest.mark.parametrize("option", [[], ["--no-calibrate"], ["--min-tokens-per-s", "0"]])
def test_the_served_app_calibrates_unless_told_not_to_or_speed_is_not_checked(tmp_path, option):
    argv = ["--data-dir", str(tmp_path), "--port", str(free_port()), "--model", "org/one", "--model", "org/two"]
    argv += ["--admin", "--max-concurrent", "4"]
    lines = []
    streamer = measured_streamer()
    env = {"PLAYGROUND_ADMIN_TOKEN": TOKEN}
    with create_app(settings_from(argv + option, env), streamer=streamer, log=lines.append) as app:
        if option:
            assert app.calibration is None
            Client(app.url, verbose=False).predict("Hello", "", "", api_name="/ask")
            assert streamer.asked == []
            return
        until(lambda: any("admission measured" in line for line in lines))
        # One pane a comparison on each weights; 1, 2 and 4 comparisons (--max-concurrent 4).
        assert streamer.asked == [1, 2, 4, 1, 2, 4]
        assert "org/one: 1 streams 50.0 tok/s each, 2 streams 25.0 tok/s each, 4 streams 12.5 tok/s each" in lines[-1]
        status, text = scrape(app, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        steps = {
            (s.labels["weights"], s.labels["streams"]): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "playground_step_seconds"
        }
        assert steps[("org/one@main", "4")] == pytest.approx(0.08)
        assert steps[("org/two@main", "1")] == pytest.approx(0.02)
