"""Each engine's streams and KV cache in use, as `stats()` and as /metrics shows them, on a tiny
checkpoint: held mid-stream (its sampler waits), then after the stream ended."""

from __future__ import annotations

import threading

import pytest
from gradio_client import Client
from prometheus_client.parser import text_string_to_metric_families

from models.engines import BatchedLoop, ContinuousEngine, StreamRequest, TokenSampler
from models.engines.protocol import EngineStats
from models.loading import LoadOptions
from playground.metrics import Metrics
from playground.server import Settings, create_app
from tests.servers import free_port
from tests.test_engines import greedy, load
from tests.test_metrics import samples, scrape, value
from tests.waiting import until

PROMPT, HELD_AT = 100, 5  # prompt tokens; the stream is held while its sampler picks token HELD_AT + 1


def engine_of(kind: str, loaded):
    if kind == "continuous":
        return ContinuousEngine(loaded.model, cache_tokens=1024, max_batch_tokens=64)
    return BatchedLoop(loaded.model, loaded.input_device)


@pytest.mark.parametrize("kind", ["continuous", "loop"])
def test_stats_while_a_stream_decodes_and_after_it_ended(tiny_gqa, kind, monkeypatch):
    loaded = load(tiny_gqa)
    engine = engine_of(kind, loaded)
    reached, release = threading.Event(), threading.Event()
    choose = TokenSampler.__call__

    def held(sampler, logits):  # runs in the engine's own thread: the stream waits there, its cache held
        if sampler.ids.shape[1] == PROMPT + HELD_AT:
            reached.set()
            release.wait(60)
        return choose(sampler, logits)

    monkeypatch.setattr(TokenSampler, "__call__", held)
    request = StreamRequest(
        prompt_ids=[5] * PROMPT, params=greedy(20), seed=0, stop=threading.Event(), max_new_tokens=20
    )
    events: list = []
    consumer = threading.Thread(target=lambda: events.extend(engine.generate(request)))
    try:
        consumer.start()
        assert reached.wait(60)
        during = engine.stats()
        metrics = Metrics().watch(engines={"tiny": engine})
        text = metrics.text().decode()
        found = {
            (s.name, tuple(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
        }
        release.set()
        consumer.join(60)
        after = until(lambda: (s := engine.stats()).streams == 0 and s.cache_used_tokens == 0 and s, what="freed")
    finally:
        release.set()
        engine.close()
    assert len(events) == 21  # 20 tokens and Finished: holding it changed nothing
    if kind == "continuous":
        # 105 tokens in the cache: two pages of 64, of 16 pages
        assert during == EngineStats(streams=1, cache_used_tokens=128, cache_tokens=1024)
        assert after == EngineStats(0, 0, 1024)
        assert found[("playground_kv_cache_capacity_tokens", (("weights", "tiny"),))] == 1024
    else:
        # one row as long as the prompt and the tokens fed so far; the cache has no fixed size
        assert during == EngineStats(streams=1, cache_used_tokens=PROMPT + HELD_AT, cache_tokens=None)
        assert after == EngineStats(0, 0, None)
        assert ("playground_kv_cache_capacity_tokens", (("weights", "tiny"),)) not in found
    assert found[("playground_engine_streams", (("weights", "tiny"),))] == 1
    assert found[("playground_kv_cache_used_tokens", (("weights", "tiny"),))] == during.cache_used_tokens


def test_the_app_shows_its_engines_and_real_answers(tmp_path, tiny_mha, tiny_gqa):
    """The real app on two tiny checkpoints: /metrics names each weights' engine, and counts the tokens
    and first-token times of real answers."""
    models = (str(tiny_mha), str(tiny_gqa))
    settings = Settings(models=models, port=free_port(), data_dir=tmp_path, load=LoadOptions(dtype="float32"))
    with create_app(settings, log=lambda m: None) as app:
        answer = Client(app.url, verbose=False).predict("What is the capital of France?", "", "", api_name="/ask")
        labels = [w.describe() for w in app.core.lineup.weights]

        def idle() -> dict | None:  # an engine lets a stream go just after handing out its end
            found = samples(scrape(app)[1])
            return found if all(value(found, "playground_engine_streams", weights=w) == 0 for w in labels) else None

        found = until(idle, what="every engine idle")
    tokens = {
        c.name: value(found, "playground_generated_tokens_total", contender=c.name) for c in app.core.lineup.contenders
    }
    assert all(n > 0 for n in tokens.values()) and len(answer) > 2
    for contender in tokens:
        assert value(found, "playground_time_to_first_token_seconds_count", contender=contender) == 1
    for weights in labels:  # each engine shows, whichever kind the placement chose
        assert ("playground_kv_cache_used_tokens", frozenset({("weights", weights)})) in found
