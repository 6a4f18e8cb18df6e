"""Streaming generation: a plain decode loop that yields text as it is produced.

One loop per contender, run by the caller in its own thread. Writing the loop (instead of
`generate` + `TextIteratorStreamer` in a second thread) keeps one thread per stream, lets the stop
button act between two tokens, and decodes text incrementally rather than re-decoding the line.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, Sequence

import torch

from models.loading import LoadedWeights
from models.prompt_format import RenderedPrompt, render_prompt
from models.sampling import TokenSampler
from models.specs import ContenderSpec, GenerationParams, WeightsSpec
from models.streaming import GenerationResult, PromptReady, StreamEvent, Streamer

__all__ = ["ContextTooLong", "CoreShare", "GenerationResult", "LocalStreamer", "PromptReady", "StreamEvent",
           "Streamer", "stream_tokens"]


class ContextTooLong(ValueError):
    """The conversation leaves no room for an answer in the model's context."""


def _eos_ids(loaded: LoadedWeights) -> set[int]:
    ids = loaded.model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if loaded.tokenizer.eos_token_id is not None:
        found.add(loaded.tokenizer.eos_token_id)
    return found


class _TextDecoder:
    """Incremental detokenizer: emits only complete characters, decoding a short window each step."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.ids, self.prefix, self.read = tokenizer, [], 0, 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        # Decode from a little before the unread part so that spacing at the seam is right.
        before = self.tokenizer.decode(self.ids[self.prefix:self.read], skip_special_tokens=True)
        after = self.tokenizer.decode(self.ids[self.prefix:], skip_special_tokens=True)
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""  # an unfinished multi-byte character, or nothing printable yet
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]


@torch.inference_mode()
def stream_tokens(loaded: LoadedWeights, prompt_ids: Sequence[int], params: GenerationParams, *,
                  stop: threading.Event, seed: int, context_length: int,
                  before_step: Callable[[], None] | None = None) -> Iterator[str | GenerationResult]:
    """Decode token by token from `prompt_ids`; yield text deltas, then a GenerationResult.

    `before_step` runs before every forward pass (the CPU core split uses it).
    """
    started = time.perf_counter()
    room = context_length - len(prompt_ids)
    if room <= 0:
        raise ContextTooLong(f"the conversation is {len(prompt_ids)} tokens, the model's context is "
                             f"{context_length}; press Clear to start a new conversation")
    max_new = min(params.max_new_tokens, room)
    model, device = loaded.model, loaded.input_device
    sampler, eos = TokenSampler(prompt_ids, params, seed, device), _eos_ids(loaded)
    decoder = _TextDecoder(loaded.tokenizer)
    step_input = torch.tensor([list(prompt_ids)], device=device)  # (1, prompt_len)
    cache, new_tokens, first_token_s = None, 0, None
    text, finish = [], "length"
    while new_tokens < max_new:
        if stop.is_set():
            finish = "stopped"
            break
        if before_step is not None:
            before_step()
        # Prefill on the first step, then one token at a time against the KV cache.
        # logits_to_keep=1: only the last position's logits are needed, not the prompt's.
        out = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
        cache = out.cache
        token = sampler(out.logits[0, -1, :])
        new_tokens += 1
        if first_token_s is None:
            first_token_s = time.perf_counter() - started
        if token in eos:
            finish = "stop"
            break
        step_input = torch.tensor([[token]], device=device)
        delta = decoder.push(token)
        if delta:
            text.append(delta)
            yield delta
    yield GenerationResult(text="".join(text), finish_reason=finish, prompt_tokens=len(prompt_ids),
                           completion_tokens=new_tokens, time_to_first_token_s=first_token_s,
                           duration_s=time.perf_counter() - started, seed=seed)


class CoreShare:
    """Splits the CPU's cores between the streams running now, re-checked before every token.

    PyTorch's OpenMP thread count is per thread: three streams of 2 threads each on 2 cores thrash,
    while one stream left alone (the others finished) should get every core back.
    """

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or os.cpu_count() or 1
        self.active = 0
        self._lock = threading.Lock()

    @contextmanager
    def stream(self) -> Iterator[Callable[[], None]]:
        """Count this stream as running; yields the per-token adjustment."""
        with self._lock:
            self.active += 1
        try:
            yield self.adjust
        finally:
            with self._lock:
                self.active -= 1

    def adjust(self) -> None:
        wanted = max(1, self.cores // max(1, self.active))
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)


class LocalStreamer:
    """The real Streamer: renders each contender's prompt and decodes on its loaded weights."""

    def __init__(self, loaded: Mapping[WeightsSpec, LoadedWeights], cpu_cores: int | None = None) -> None:
        self.loaded = dict(loaded)
        self.share = CoreShare(cpu_cores)

    def render(self, contender: ContenderSpec, messages: Sequence[Mapping[str, str]]) -> RenderedPrompt:
        return render_prompt(contender.prompt_format, messages, self.loaded[contender.weights].tokenizer)

    def __call__(self, contender: ContenderSpec, messages: Sequence[Mapping[str, str]],
                 params: GenerationParams, *, stop: threading.Event, seed: int) -> Iterator[StreamEvent]:
        loaded = self.loaded[contender.weights]
        # Count this stream before rendering: the panes of a comparison start together, and a stream
        # that began its prefill believing it was alone would take every core from the others.
        with self.share.stream() as adjust:
            prompt = self.render(contender, messages)
            yield PromptReady(text=prompt.text, tokens=len(prompt.input_ids))
            context = getattr(loaded.model.config, "max_position_embeddings", None) or contender.weights.context_length
            on_cpu = loaded.input_device.type == "cpu"
            yield from stream_tokens(loaded, prompt.input_ids, params, stop=stop, seed=seed,
                                     context_length=min(context, contender.weights.context_length),
                                     before_step=adjust if on_cpu else None)
