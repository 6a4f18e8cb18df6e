"""On a CUDA GPU: device_map="auto" and the plan put models there, and greedy answers match the CPU's.

Run by scripts/gpu_check.sh; skipped without CUDA.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from models.lineups import adhoc_lineup, get_lineup, weights_from_reference
from models.loading import LoadOptions, load_weights, planned_options
from models.local import stream_tokens
from models.specs import GenerationParams

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
GREEDY = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=32)


@pytest.fixture(autouse=True)
def exact_matmuls():
    # TF32 would change float32 results on the GPU; the comparison is about placement, not precision.
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


def answer(loaded, text: str, max_new_tokens: int = 32):
    ids = loaded.tokenizer.encode(text)
    params = GREEDY.with_overrides(max_new_tokens=max_new_tokens)
    *_, result = stream_tokens(loaded, ids, params, stop=threading.Event(), seed=0, context_length=2048)
    return result


@pytest.mark.parametrize("checkpoint", ["tiny_mha", "tiny_gqa"])
def test_tiny_checkpoint_on_the_gpu_matches_the_cpu(checkpoint, request):
    weights = weights_from_reference(str(request.getfixturevalue(checkpoint)))
    cpu = load_weights(weights, LoadOptions(dtype="float32", device_map="cpu"), log=lambda m: None)
    gpu = load_weights(weights, LoadOptions(dtype="float32", device_map="auto"), log=lambda m: None)
    assert gpu.input_device.type == "cuda"
    assert answer(gpu, "What is the capital of France?").text == answer(cpu, "What is the capital of France?").text


def test_the_plan_places_a_lineup_on_the_visible_gpus(tiny_mha, tiny_gqa):
    lineup = adhoc_lineup([str(tiny_mha), str(tiny_gqa)])
    plan, options = planned_options(lineup, LoadOptions(dtype="float32"))
    for weights, option in options.items():
        assert all(isinstance(device, int) for device in option.device_map.values()), plan
        loaded = load_weights(weights, option, log=lambda m: None)
        assert loaded.input_device.type == "cuda"
        assert answer(loaded, "hello").completion_tokens > 0


@pytest.mark.slow
def test_embedded_model_on_the_gpu_matches_the_cpu_and_reports_speed(embedded_cache):
    weights = get_lineup("demo").contenders[0].weights
    options = dict(dtype="float32", cache_dir=embedded_cache)
    cpu = load_weights(weights, LoadOptions(device_map="cpu", **options), log=lambda m: None)
    gpu = load_weights(weights, LoadOptions(device_map="auto", **options), log=lambda m: None)
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    on_cpu, on_gpu = answer(cpu, prompt), answer(gpu, prompt)
    assert on_gpu.text == on_cpu.text and "Paris" in on_gpu.text
    half = load_weights(
        weights, LoadOptions(device_map="auto", dtype="float16", cache_dir=embedded_cache), log=lambda m: None
    )
    answer(half, prompt, 8)  # warm-up
    started = time.perf_counter()
    result = answer(half, "Write a story about a lighthouse keeper.", 128)
    print(
        f"\nembedded model on {torch.cuda.get_device_name(0)}, float16: "
        f"{result.completion_tokens} tokens in {time.perf_counter() - started:.2f} s, "
        f"{result.tokens_per_s:.1f} tok/s after a first token at {result.time_to_first_token_s * 1000:.0f} ms"
    )


@pytest.mark.parametrize("checkpoint", ["tiny_mha", "tiny_gqa"])
def test_sixteen_streams_on_the_gpu_engine_equal_generate_alone(checkpoint, request):
    """Continuous batching on CUDA: 16 greedy streams joining mid-decode, each equal to `generate` alone;
    prints 1 against 16 streams' tokens/s together."""
    from models.engines import ContinuousEngine
    from tests.test_engines import PROMPTS, greedy, reference, run_staggered
    from tests.test_engines import request as stream_request

    weights = weights_from_reference(str(request.getfixturevalue(checkpoint)))
    gpu = load_weights(weights, LoadOptions(dtype="float32", device_map="cuda:0"), log=lambda m: None)
    cpu = load_weights(weights, LoadOptions(dtype="float32", device_map="cpu"), log=lambda m: None)
    engine = ContinuousEngine(gpu.model, cache_tokens=16 * 256, max_batch_tokens=512)
    try:
        requests = [
            stream_request(gpu, PROMPTS[i % len(PROMPTS)], greedy(24 + i, 1.0 + 0.1 * (i % 2))) for i in range(16)
        ]
        started = time.perf_counter()
        alone = run_staggered(engine, requests[:1])
        one = sum(len(r) - 1 for r in alone) / (time.perf_counter() - started)
        started = time.perf_counter()
        results = run_staggered(engine, requests, join_after=1)
        together = sum(len(r) - 1 for r in results) / (time.perf_counter() - started)
        for req, events in zip(requests, results):
            assert events[:-1] == reference(cpu, list(req.prompt_ids), req.params)
        print(
            f"\n{checkpoint} on {torch.cuda.get_device_name(0)}: 1 stream {one:.0f} tok/s, "
            f"16 streams {together:.0f} tok/s together"
        )
    finally:
        engine.close()
