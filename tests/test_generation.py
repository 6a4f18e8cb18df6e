"""The decode loop against `model.generate`, on tiny real checkpoints loaded through our loader."""

from __future__ import annotations

import threading

import pytest
import torch

from models.lineups import weights_from_reference
from models.loading import LoadOptions, load_weights
from models.local import (
    ContextTooLong,
    GenerationResult,
    LocalStreamer,
    PromptReady,
    _TextStream,
    stream_tokens,
)
from models.specs import ContenderSpec, GenerationParams

GREEDY = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=24)


def _load(path):
    return load_weights(weights_from_reference(str(path)), LoadOptions(dtype="float32"), log=lambda m: None)


def _run(loaded, ids, params, seed=0, stop=None, context_length=512):
    events = list(
        stream_tokens(loaded, ids, params, stop=stop or threading.Event(), seed=seed, context_length=context_length)
    )
    result = events[-1]
    assert isinstance(result, GenerationResult)
    assert "".join(events[:-1]) == result.text  # the deltas add up to the answer
    return result


@pytest.mark.parametrize("checkpoint", ["tiny_mha", "tiny_gqa"])
def test_greedy_tokens_equal_generate(checkpoint, request):
    loaded = _load(request.getfixturevalue(checkpoint))
    ids = loaded.tokenizer.encode("What is the capital of France?")
    reference = loaded.model.generate(
        torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=2
    )[0, len(ids) :].tolist()
    # Our loop stops at EOS; compare up to where generate (told to ignore EOS) would have stopped.
    result = _run(loaded, ids, GREEDY)
    expected = reference[: result.completion_tokens]
    if result.finish_reason == "stop":
        assert expected[-1] in (2,)
        expected = expected[:-1]
    assert result.text == loaded.tokenizer.decode(expected, skip_special_tokens=True)
    assert result.completion_tokens >= 1 and result.prompt_tokens == len(ids)


def test_length_stop_and_timings(tiny_mha):
    loaded = _load(tiny_mha)
    ids = loaded.tokenizer.encode("Tell me a story")
    loaded.model.generation_config.eos_token_id = None
    saved, loaded.tokenizer.eos_token_id = loaded.tokenizer.eos_token_id, None
    try:
        result = _run(loaded, ids, GREEDY.with_overrides(max_new_tokens=10))
    finally:
        loaded.tokenizer.eos_token_id = saved
    assert result.finish_reason == "length" and result.completion_tokens == 10
    assert 0 < result.time_to_first_token_s <= result.duration_s
    assert result.tokens_per_s and result.tokens_per_s > 0


def test_stop_event_ends_between_tokens(tiny_mha):
    loaded = _load(tiny_mha)
    stop = threading.Event()
    stop.set()
    result = _run(loaded, loaded.tokenizer.encode("hi"), GREEDY, stop=stop)
    assert result.finish_reason == "stopped" and result.completion_tokens == 0


def test_sampling_is_reproducible_from_the_seed(tiny_gqa):
    loaded = _load(tiny_gqa)
    ids = loaded.tokenizer.encode("Tell me a story")
    params = GenerationParams(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=20)
    first, again = _run(loaded, ids, params, seed=7), _run(loaded, ids, params, seed=7)
    other = [_run(loaded, ids, params, seed=s).text for s in (8, 9, 10)]
    assert first.text == again.text and first.seed == 7
    assert any(text != first.text for text in other)


def test_context_too_long_is_explained(tiny_mha):
    loaded = _load(tiny_mha)
    with pytest.raises(ContextTooLong, match="press Clear"):
        _run(loaded, list(range(3, 40)), GREEDY, context_length=30)


def test_max_new_tokens_is_clamped_to_the_context(tiny_mha):
    loaded = _load(tiny_mha)
    loaded.model.generation_config.eos_token_id = None
    saved, loaded.tokenizer.eos_token_id = loaded.tokenizer.eos_token_id, None
    try:
        result = _run(loaded, list(range(3, 23)), GREEDY, context_length=25)
    finally:
        loaded.tokenizer.eos_token_id = saved
    assert result.completion_tokens == 5 and result.finish_reason == "length"


def test_incremental_decoder_matches_full_decode(tiny_mha):
    tokenizer = _load(tiny_mha).tokenizer
    text = "Ünïcödé: café, naïve, 東京, emoji 🙂. The quick brown fox."
    ids = tokenizer.encode(text, add_special_tokens=False)
    stream = _TextStream(tokenizer)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) == tokenizer.decode(ids) and stream.finish() == ""
    assert all("\ufffd" not in piece for piece in pieces)


def test_local_streamer_renders_then_streams_through_the_engine(tiny_mha):
    loaded = _load(tiny_mha)
    contender = ContenderSpec(name="tiny", weights=loaded.spec, params=GREEDY)
    streamer = LocalStreamer({loaded.spec: loaded}, kv_cache_gib=0.01)
    messages = [{"role": "user", "content": "hi"}]
    try:
        events = list(streamer(contender, messages, GREEDY, stop=threading.Event(), seed=1))
    finally:
        streamer.close()
    assert isinstance(events[0], PromptReady) and events[0].text == "<s><|user|>hi<|end|><|assistant|>"
    result = events[-1]
    assert isinstance(result, GenerationResult) and result.prompt_tokens == events[0].tokens
    alone = _run(loaded, streamer.render(contender, messages).input_ids, GREEDY, seed=1)
    assert (result.text, result.completion_tokens, result.finish_reason) == (
        alone.text,
        alone.completion_tokens,
        alone.finish_reason,
    )
    assert "".join(e for e in events if isinstance(e, str)) == result.text


def test_the_oldest_exchanges_are_left_out_to_fit_the_context(tiny_mha):
    from dataclasses import replace

    loaded = _load(tiny_mha)
    spec = replace(loaded.spec, context_length=160)
    contender = ContenderSpec(name="tiny", weights=spec, params=GREEDY.with_overrides(max_new_tokens=24))
    streamer = LocalStreamer({spec: loaded}, kv_cache_gib=0.01)
    system = {"role": "system", "content": "Be brief."}
    exchanges = [
        [
            {"role": "user", "content": f"Question number {n} about the sea and the sky?"},
            {"role": "assistant", "content": f"Answer number {n}: the sea is blue, the sky too."},
        ]
        for n in range(6)
    ]
    messages = [system, *[m for pair in exchanges for m in pair], {"role": "user", "content": "And now?"}]
    try:
        events = list(streamer(contender, messages, contender.params, stop=threading.Event(), seed=1))
        ready = events[0]
        assert isinstance(ready, PromptReady) and 0 < ready.dropped_exchanges < 6
        kept = [system, *[m for pair in exchanges[ready.dropped_exchanges :] for m in pair], messages[-1]]
        assert ready.text == streamer.render(contender, kept).text  # the system prompt and the newest stay
        assert ready.tokens + 24 <= 160 < len(streamer.render(contender, messages).input_ids)
        assert isinstance(events[-1], GenerationResult)
        # Even the newest message alone does not fit: refused with the numbers, as a plain sentence.
        huge = [system, {"role": "user", "content": "sea and sky " * 200}]
        with pytest.raises(ContextTooLong, match=r"the conversation is \d+ tokens and the model's context is 160"):
            list(streamer(contender, huge, contender.params, stop=threading.Event(), seed=1))
    finally:
        streamer.close()
