"""Both engines against `generate` run alone, on tiny checkpoints: transformers' continuous batching
(weights on one device) and our own batched loop (weights split by device_map)."""

from __future__ import annotations

import gc
import io
import logging
import os
import threading
import time
import weakref

import pytest
import torch

from models.engines import (
    BatchedLoop,
    ContinuousEngine,
    Finished,
    StreamRequest,
    TokenSampler,
    build_engines,
    describe_engine,
)
from models.lineups import weights_from_reference
from models.loading import LoadOptions, load_weights
from models.local import decode_alone
from models.specs import GenerationParams

PROMPTS = [
    "What is the capital of France?",
    "Tell me a story about a brave little robot who learns to paint.",
    "Hi",
    "Explain gradient descent in one sentence.",
]
OFFLOAD_MAP = {
    "model.embed_tokens": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.layers.2": "cpu",
    "model.layers.3": "disk",
    "model.norm": "cpu",
    "model.rotary_emb": "cpu",
    "lm_head": "disk",
}


def greedy(max_new_tokens: int, repetition_penalty: float = 1.0) -> GenerationParams:
    return GenerationParams(
        temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens
    )


def reference(loaded, ids, params: GenerationParams) -> list[int]:
    """`generate` alone, stopping at EOS like the engine (EOS included)."""
    out = loaded.model.generate(
        torch.tensor([ids]),
        max_new_tokens=params.max_new_tokens,
        do_sample=False,
        repetition_penalty=params.repetition_penalty,
        eos_token_id=2,
        pad_token_id=2,
    )
    return out[0, len(ids) :].tolist()


def run_staggered(engine, requests, join_after: int = 3, before_start=lambda i: None):
    """Start each stream once the one before has produced `join_after` tokens; collect every stream."""
    results: list[list] = [[] for _ in requests]
    started = [threading.Event() for _ in requests]

    def consume(i):
        for event in engine.generate(requests[i]):
            results[i].append(event)
            if len(results[i]) == join_after and i + 1 < len(requests):
                started[i + 1].set()
        if i + 1 < len(requests):
            started[i + 1].set()

    threads = []
    for i in range(len(requests)):
        if i:
            assert started[i].wait(60)
        before_start(i)
        thread = threading.Thread(target=consume, args=(i,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(120)
    return results


def request(loaded, prompt, params, seed=0, stop=None):
    ids = loaded.tokenizer.encode(prompt)
    return StreamRequest(
        prompt_ids=ids,
        params=params,
        seed=seed,
        stop=stop or threading.Event(),
        max_new_tokens=params.max_new_tokens,
        eos=frozenset({2}),
    )


def load(path, **options):
    return load_weights(weights_from_reference(str(path)), LoadOptions(dtype="float32", **options), log=lambda m: None)


@pytest.fixture(params=["continuous", "loop"])
def engine_kind(request):
    return request.param


@pytest.fixture
def make_engine(engine_kind):
    made = []

    def make(loaded):
        if engine_kind == "loop":
            engine = BatchedLoop(loaded.model, loaded.input_device)
        else:
            engine = ContinuousEngine(loaded.model, cache_tokens=2048, max_batch_tokens=64)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


@pytest.mark.parametrize("checkpoint", ["tiny_mha", "tiny_gqa"])
@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_streams_joining_mid_decode_equal_generate_alone(checkpoint, penalty, request_fixture, make_engine):
    loaded = load(request_fixture.getfixturevalue(checkpoint))
    engine = make_engine(loaded)
    lengths = [20, 12, 30, 8]
    requests = [request(loaded, p, greedy(n, penalty)) for p, n in zip(PROMPTS, lengths)]
    results = run_staggered(engine, requests)
    for req, events in zip(requests, results):
        tokens, finish = events[:-1], events[-1]
        assert isinstance(finish, Finished) and finish.reason in ("stop", "length")
        assert tokens == reference(loaded, list(req.prompt_ids), req.params)
    if isinstance(engine, BatchedLoop):
        assert engine.active == 0 and engine.peak_batch >= 3  # they did decode together


def test_offloaded_weights_decode_in_one_batch_too(tiny_gqa, tmp_path):
    loaded = load(tiny_gqa, device_map=OFFLOAD_MAP, offload_folder=tmp_path / "offload")
    assert set(loaded.model.hf_device_map.values()) == {"cpu", "disk"}
    engine = BatchedLoop(loaded.model, loaded.input_device)
    requests = [request(loaded, p, greedy(n)) for p, n in zip(PROMPTS[:3], [16, 10, 20])]
    results = run_staggered(engine, requests, join_after=2)
    assert engine.peak_batch >= 2
    plain = load(tiny_gqa)
    for req, events in zip(requests, results):
        assert events[:-1] == reference(plain, list(req.prompt_ids), req.params)


def test_stopping_one_stream_leaves_the_others_unchanged(tiny_mha, make_engine):
    loaded = load(tiny_mha)
    engine = make_engine(loaded)
    stop = threading.Event()
    stopped = request(loaded, PROMPTS[1], greedy(200), stop=stop)
    kept = request(loaded, PROMPTS[0], greedy(40))
    stopped_events: list = []

    def consume_stopped():
        for event in engine.generate(stopped):
            stopped_events.append(event)
            if len(stopped_events) == 5:
                stop.set()

    thread = threading.Thread(target=consume_stopped)
    thread.start()
    while len(stopped_events) < 2:
        time.sleep(0.001)
    kept_events = list(engine.generate(kept))
    thread.join(60)
    assert stopped_events[-1] == Finished("stopped") and len(stopped_events) < 50
    assert kept_events[:-1] == reference(loaded, list(kept.prompt_ids), kept.params)


def test_a_sampled_stream_draws_the_same_tokens_alone_and_in_a_batch(tiny_mha, make_engine):
    loaded = load(tiny_mha)
    sampled = GenerationParams(temperature=1.0, top_p=0.95, top_k=40, repetition_penalty=1.1, max_new_tokens=24)
    alone = list(make_engine(loaded).generate(request(loaded, PROMPTS[0], sampled, seed=7)))
    single = list(stream_tokens_ids(loaded, PROMPTS[0], sampled, seed=7))
    assert alone[:-1] == single  # the single-stream loop draws the same tokens
    engine = make_engine(loaded)
    others = [request(loaded, p, greedy(30)) for p in PROMPTS[1:]]
    results = run_staggered(engine, [others[0], request(loaded, PROMPTS[0], sampled, seed=7), *others[1:]], 2)
    assert results[1] == alone


def test_a_failing_prefill_ends_only_its_stream(tiny_mha):
    loaded = load(tiny_mha)
    engine = BatchedLoop(loaded.model, loaded.input_device)
    bad = StreamRequest(prompt_ids=[10**6], params=greedy(5), seed=0, stop=threading.Event(), max_new_tokens=5)
    events = list(engine.generate(bad))
    assert events[-1] == Finished("error", "the model failed on this answer; the other answers went on. Try again")
    good = request(loaded, PROMPTS[0], greedy(10))
    assert list(engine.generate(good))[:-1] == reference(loaded, list(good.prompt_ids), good.params)


def test_a_failing_sampler_ends_only_its_stream(tiny_mha, make_engine, monkeypatch):
    loaded = load(tiny_mha)
    engine = make_engine(loaded)
    requests = [request(loaded, p, greedy(n, 1.3)) for p, n in zip(PROMPTS[:3], [20, 23, 16])]
    expected = [reference(loaded, list(r.prompt_ids), r.params) for r in requests]
    choose = TokenSampler.__call__

    def flaky(sampler, logits):  # the stream asking for 23 tokens fails on its fifth
        if sampler.params.max_new_tokens == 23 and sampler.ids.shape[1] == len(requests[1].prompt_ids) + 4:
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        return choose(sampler, logits)

    monkeypatch.setattr(TokenSampler, "__call__", flaky)
    results = run_staggered(engine, requests, join_after=2)
    assert results[1] == [
        *expected[1][:4],
        Finished("error", "the model failed on this answer; the other answers went on. Try again"),
    ]
    assert results[0][:-1] == expected[0] and results[2][:-1] == expected[2]
    later = request(loaded, PROMPTS[3], greedy(10))
    assert list(engine.generate(later))[:-1] == reference(loaded, list(later.prompt_ids), later.params)


def test_a_failed_step_ends_one_stream_and_the_others_go_on_unchanged(tiny_gqa, make_engine, engine_kind, monkeypatch):
    """Out of memory in a step shared by three streams: the newest ends, the two others lose nothing."""
    loaded = load(tiny_gqa)
    engine = make_engine(loaded)
    requests = [request(loaded, p, greedy(n, 1.3)) for p, n in zip(PROMPTS[:3], [24, 20, 16])]
    expected = [reference(loaded, list(r.prompt_ids), r.params) for r in requests]
    forward, armed, failed = loaded.model.forward, threading.Event(), []

    def failing_forward(*args, **kwargs):
        ids = kwargs["input_ids"]
        # Armed once the third stream is on its way: the loop fails its first step with three rows,
        # continuous batching the step that prefills it (more query tokens than the two decoding streams).
        if armed.is_set() and not failed and (ids.shape[0] == 3 if engine_kind == "loop" else ids.numel() > 2):
            failed.append(ids.shape)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", failing_forward)
    results = run_staggered(engine, requests, join_after=3, before_start=lambda i: i == 2 and armed.set())
    assert failed and engine.failed_steps == 1
    assert results[2][-1] == Finished(
        "error",
        "the model ran out of memory on this answer; the other answers went "
        "on. Try a shorter conversation or fewer tokens",
    )
    assert results[0][:-1] == expected[0] and results[1][:-1] == expected[1]
    assert results[0][-1].reason in ("stop", "length") and results[1][-1].reason in ("stop", "length")
    later = request(loaded, PROMPTS[3], greedy(10))
    assert list(engine.generate(later))[:-1] == reference(loaded, list(later.prompt_ids), later.params)


def test_out_of_memory_frees_what_the_failed_step_held_and_the_next_stream_works(tiny_gqa, make_engine, monkeypatch):
    """The step's tensors must not outlive the failure: a kept exception keeps its traceback's frames,
    and with them every activation of the step (on a GPU, the memory the next answer needs)."""
    # Log as the app does, to a stream that formats each record at once; pytest's own capture keeps the
    # records, and with them the exception this test is about.
    logged = io.StringIO()
    for name in ("models.engines.continuous", "models.engines.batched_loop"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "propagate", False)
        monkeypatch.setattr(logger, "handlers", [logging.StreamHandler(logged)])
    loaded = load(tiny_gqa)
    engine = make_engine(loaded)
    forward, held = loaded.model.forward, []

    def failing_forward(*args, **kwargs):
        if not held:
            activations = torch.ones(64, 1024, 1024)  # 256 MiB, as a step's activations would hold
            held.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", failing_forward)
    failed = list(engine.generate(request(loaded, PROMPTS[0], greedy(12))))
    assert failed == [
        Finished(
            "error",
            "the model ran out of memory on this answer; the other answers went on. "
            "Try a shorter conversation or fewer tokens",
        )
    ]
    for _ in range(100):  # the engine's thread may still be leaving its except block
        gc.collect()
        if held[0]() is None:
            break
        time.sleep(0.02)
    assert held[0]() is None  # nothing kept the failed step's tensors
    assert "Traceback" in logged.getvalue() and "OutOfMemoryError" in logged.getvalue()  # the server's log has it
    later = request(loaded, PROMPTS[3], greedy(10))
    assert list(engine.generate(later))[:-1] == reference(loaded, list(later.prompt_ids), later.params)


@pytest.fixture
def request_fixture(request):
    return request


def stream_tokens_ids(loaded, prompt, params, seed):
    """Token ids the single-stream reference loop picks, through its own sampler."""
    return list(decode_alone(loaded, request(loaded, prompt, params, seed=seed)))[:-1]


def test_continuous_engine_refuses_a_stream_larger_than_its_cache_and_keeps_serving(tiny_gqa):
    loaded = load(tiny_gqa)
    engine = ContinuousEngine(loaded.model, cache_tokens=128, max_batch_tokens=64)
    try:
        big = StreamRequest(
            prompt_ids=[5] * 100,
            params=greedy(64),
            seed=0,
            stop=threading.Event(),
            max_new_tokens=64,
            eos=frozenset({2}),
        )
        events = list(engine.generate(big))
        assert events == [
            Finished("error", "this stream needs 164 tokens of cache (prompt 100 + answer 64); the engine holds 128")
        ]
        small = request(loaded, PROMPTS[0], greedy(10))
        assert list(engine.generate(small))[:-1] == reference(loaded, list(small.prompt_ids), small.params)
    finally:
        engine.close()


def test_streams_that_fit_one_at_a_time_wait_for_cache_and_all_finish(tiny_gqa):
    """A 128-token cache, three streams of 110 tokens each at once: they take turns, none fails."""
    loaded = load(tiny_gqa)
    engine = ContinuousEngine(loaded.model, cache_tokens=128, max_batch_tokens=64)
    try:
        requests = [
            StreamRequest(prompt_ids=[5 + i] * 20, params=greedy(90), seed=0, stop=threading.Event(), max_new_tokens=90)
            for i in range(3)
        ]
        results = run_staggered(engine, requests, join_after=1)
        for req, events in zip(requests, results):
            assert events[-1] == Finished("length")
            assert events[:-1] == reference(loaded, list(req.prompt_ids), req.params)[:90]
    finally:
        engine.close()


def test_weights_on_the_cpu_get_the_batched_loop_with_the_cores_shared(tiny_mha, tiny_gqa):
    """On a CPU the batched loop measures faster than continuous batching (bench/batched_streams.py); two
    CPU weights split the cores between their decode threads."""
    first, second = load(tiny_mha), load(tiny_gqa)
    engines = build_engines({first.spec: first, second.spec: second})
    try:
        assert all(isinstance(engine, BatchedLoop) for engine in engines.values())
        assert {engine.threads for engine in engines.values()} == {max(1, (os.cpu_count() or 1) // 2)}
        assert describe_engine(engines[first.spec]) == "batched loop (on the CPU), up to 32 streams at once"
        stream = request(first, PROMPTS[0], greedy(6))
        assert list(engines[first.spec].generate(stream))[:-1] == reference(first, stream.prompt_ids, greedy(6))
    finally:
        for engine in engines.values():
            engine.close()
