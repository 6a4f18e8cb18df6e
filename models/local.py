"""Streaming generation: the real Streamer over the engines, and a plain one-stream decode loop.

`LocalStreamer` renders a contender's prompt, sends the stream to its weights' engine (which decodes
every stream on those weights in one batch), and turns token ids into text incrementally.
`decode_alone` decodes one stream alone, the reference that engines are tested and measured against;
`stream_tokens` is the same as text.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator, Mapping, Sequence

import torch
from tokenizers.decoders import DecodeStream

from models.context import ContextTooLong, answer_reserve, answer_tokens, fit_messages
from models.engines import Engine, EngineEvent, Finished, StreamRequest, TokenSampler, build_engines, step_gaps
from models.loading import LoadedWeights
from models.prompt_format import RenderedPrompt, render_prompt
from models.specs import ContenderSpec, GenerationParams, WeightsSpec
from models.streaming import GenerationResult, PromptReady, Streamer, StreamEvent, StreamFailure

__all__ = [
    "ContextTooLong",
    "EngineFailure",
    "decode_alone",
    "GenerationResult",
    "LocalStreamer",
    "PromptReady",
    "StreamEvent",
    "Streamer",
    "stream_tokens",
]


PROBE_QUESTION = "Explain in two sentences why the sky is blue."  # a typical visitor's question


class EngineFailure(StreamFailure):
    """The engine ended this stream with an error; the other streams go on."""


def _eos_ids(loaded: LoadedWeights) -> set[int]:
    ids = loaded.model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        found.add(loaded.tokenizer.eos_token_id)
    return found


class _TextStream:
    """One answer's token ids as text: `push` returns only complete characters, `finish` what is held back.

    Fast tokenizers step the Rust `DecodeStream` of `tokenizers`. Slow ones (transformers 5 still loads a few
    for causal LMs a `--model` may name: BioGPT, CTRL, XLM) decode a short window of ids each step instead.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.ids, self.shown, self.held = tokenizer, [], 0, False
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            stream = DecodeStream(skip_special_tokens=True)
            self._step = lambda token_id: stream.step(backend, token_id)  # None until a character is complete
        else:
            self._step, self.prefix, self.read = self._window_step, 0, 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        delta = self._step(token_id) or ""
        self.shown, self.held = self.shown + len(delta), not delta
        return delta

    def finish(self) -> str:
        """The text still held back when the answer ends: an unfinished character shows as `decode` shows it
        (U+FFFD for a byte-level vocabulary), so the whole text always equals `decode` of every id."""
        if not self.held:
            return ""
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)[self.shown :]

    def _window_step(self, token_id: int) -> str:
        # Decode from a little before the unread part so that spacing at the seam is right.
        before = self.tokenizer.decode(self.ids[self.prefix : self.read], skip_special_tokens=True)
        after = self.tokenizer.decode(self.ids[self.prefix :], skip_special_tokens=True)
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""  # an unfinished multi-byte character, or nothing printable yet
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before) :]


@torch.inference_mode()
def decode_alone(loaded: LoadedWeights, request: StreamRequest) -> Iterator[EngineEvent]:
    """One stream decoded alone, outside any engine: its token ids (the stop token too), then Finished.

    The reference the engines are tested and measured against: the same events an engine yields.
    """
    model, device = loaded.model, loaded.input_device
    sampler = TokenSampler(request.prompt_ids, request.params, request.seed, device)
    step_input = torch.tensor([list(request.prompt_ids)], device=device)  # (1, prompt_len)
    cache = None
    for _ in range(request.max_new_tokens):
        if request.stop.is_set():
            yield Finished("stopped")
            return
        # Prefill on the first step, then one token at a time against the KV cache.
        # logits_to_keep=1: only the last position's logits are needed, not the prompt's.
        out = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
        cache = out.cache
        token = sampler(out.logits[0, -1, :])
        yield token
        if token in request.eos:
            yield Finished("stop")
            return
        step_input = torch.tensor([[token]], device=device)
    yield Finished("length")


def stream_tokens(
    loaded: LoadedWeights,
    prompt_ids: Sequence[int],
    params: GenerationParams,
    *,
    stop: threading.Event,
    seed: int,
    context_length: int,
) -> Iterator[str | GenerationResult]:
    """`decode_alone` as text: deltas as they are decoded, then a GenerationResult."""
    started = time.perf_counter()
    request = StreamRequest(
        prompt_ids=prompt_ids,
        params=params,
        seed=seed,
        stop=stop,
        max_new_tokens=answer_tokens(len(prompt_ids), params, context_length),
        eos=frozenset(_eos_ids(loaded)),
    )
    yield from _as_text(decode_alone(loaded, request), loaded.tokenizer, request, started)


def _as_text(
    events: Iterator[EngineEvent], tokenizer, request: StreamRequest, started: float
) -> Iterator[str | GenerationResult]:
    """A stream's token events as text deltas, then its GenerationResult (the stop token counts as
    generated but is not shown; the text equals `decode` of the other ids); an error event raises EngineFailure."""
    decoder, text, tokens, first_token_s, finished = _TextStream(tokenizer), [], 0, None, None
    for event in events:
        if isinstance(event, Finished):
            finished = event
            break
        tokens += 1
        if first_token_s is None:
            first_token_s = time.perf_counter() - started
        if event in request.eos:
            continue
        delta = decoder.push(event)
        if delta:
            text.append(delta)
            yield delta
    if finished is None or finished.reason == "error":
        raise EngineFailure(finished.error if finished else "the engine ended the stream without a reason")
    tail = decoder.finish()  # a stream cut mid-character (length, stop) ends as `decode` ends it
    if tail:
        text.append(tail)
        yield tail
    yield GenerationResult(
        text="".join(text),
        finish_reason=finished.reason,
        prompt_tokens=len(request.prompt_ids),
        completion_tokens=tokens,
        time_to_first_token_s=first_token_s,
        duration_s=time.perf_counter() - started,
        seed=request.seed,
    )


class LocalStreamer:
    """The real Streamer: renders each contender's prompt and decodes it on its weights' engine.

    Every stream on the same weights goes through one engine (models/engines/choice.py), which decodes the
    streams that run at the same time in one batch.
    """

    def __init__(
        self,
        loaded: Mapping[WeightsSpec, LoadedWeights],
        engines: Mapping[WeightsSpec, Engine] | None = None,
        *,
        kv_cache_gib: float | None = None,
    ) -> None:
        self.loaded = dict(loaded)
        self.engines = dict(engines) if engines is not None else build_engines(self.loaded, kv_cache_gib)

    def render(self, contender: ContenderSpec, messages: Sequence[Mapping[str, str]]) -> RenderedPrompt:
        return render_prompt(contender.prompt_format, messages, self.loaded[contender.weights].tokenizer)

    def __call__(
        self,
        contender: ContenderSpec,
        messages: Sequence[Mapping[str, str]],
        params: GenerationParams,
        *,
        stop: threading.Event,
        seed: int,
    ) -> Iterator[StreamEvent]:
        loaded, engine = self.loaded[contender.weights], self.engines[contender.weights]
        started = time.perf_counter()
        context = getattr(loaded.model.config, "max_position_embeddings", None) or contender.weights.context_length
        context = min(context, contender.weights.context_length)
        _, dropped, prompt = fit_messages(
            messages, lambda candidate: self.render(contender, candidate), context, answer_reserve(params, context)
        )
        yield PromptReady(text=prompt.text, tokens=len(prompt.input_ids), dropped_exchanges=dropped)
        max_new = answer_tokens(len(prompt.input_ids), params, context)
        request = StreamRequest(
            prompt_ids=prompt.input_ids,
            params=params,
            seed=seed,
            stop=stop,
            max_new_tokens=max_new,
            eos=frozenset(_eos_ids(loaded)),
        )
        yield from _as_text(engine.generate(request), loaded.tokenizer, request, started)

    def step_gaps(self, contender: ContenderSpec, streams: int, tokens: int = 16) -> list[float]:
        """Seconds between a stream's tokens with `streams` streams decoding together on `contender`'s
        weights (models/engines/probe.py), on a prompt of the length a short question has."""
        prompt = self.render(contender, [{"role": "user", "content": PROBE_QUESTION}])
        return step_gaps(self.engines[contender.weights], prompt.input_ids, streams, tokens)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop every engine: streams still running end as stopped, and each engine's threads are joined
        (at most about `timeout_s` each). Safe to call twice."""
        for engine in self.engines.values():
            engine.close(timeout_s)
