"""transformers' continuous batching as the engine of weights that sit on one device.

One `ContinuousBatchingManager` per loaded weights: a paged KV cache, streams joining and leaving
between steps, prefill chunked into the decode batches. What we add around it:
- Sampling per stream with our own `TokenSampler`: transformers 5.24 drops the repetition penalty in
  continuous batching (or applies it to one token only) and has no per-request seed. A logits processor
  of ours lets each stream's sampler pick its token from the batch's logits and hands the manager a
  one-hot score row, which its greedy step takes. So a stream draws exactly what it would alone.
- One router thread reads the manager's output queue and hands each output to its stream: the
  manager's own per-request iterator reorders outputs under concurrency and never ends for a
  cancelled request.
- A request that cannot fit in the cache even alone is refused with a message (the manager would
  stop for every stream); one that fits waits for room.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from typing import Iterator

import torch
from transformers import GenerationConfig, LogitsProcessorList
from transformers.generation.configuration_utils import ContinuousBatchingConfig
from transformers.generation.continuous_batching import RequestStatus
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
)

from models.engine import EngineEvent, Finished, StreamRequest
from models.sampling import TokenSampler

log = logging.getLogger(__name__)
PAGE_SIZE = 64  # tokens per cache block


def _stop_quietly(manager) -> None:
    """At exit: stop a manager without its logger writing to streams the test runner already closed."""
    logging.getLogger("ContinuousBatchingLogger").disabled = True
    manager.stop(block=True, timeout=10)


class _StreamChoice(ContinuousBatchingLogitsProcessor):
    """Each stream's own sampler picks its next token; the row becomes one-hot for the manager's argmax."""

    supported_kwargs: dict[str, type] = {}
    ignored_kwargs: tuple[str, ...] = ()

    def __init__(self, samplers: dict[str, TokenSampler]) -> None:
        self.samplers = samplers
        self._rows: list[TokenSampler | None] = []

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.zero_()

    def prepare_tensor_args(self, requests_with_new_token: list) -> torch.Tensor:
        # Score rows follow this order (the manager appends logits indices in it).
        self._rows = [self.samplers.get(r.state.request_id) for r in requests_with_new_token]
        return torch.zeros(len(self._rows), dtype=torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        chosen = torch.full_like(scores, float("-inf"))  # (rows, vocab)
        for i, sampler in enumerate(self._rows[:scores.shape[0]]):
            token = sampler(scores[i]) if sampler is not None else int(scores[i].argmax())
            chosen[i, token] = 0.0
        return chosen


class ContinuousEngine:
    """Continuous batching over one model on one device, with our per-stream sampling."""

    def __init__(self, model: torch.nn.Module, *, cache_tokens: int, max_batch_tokens: int = 256,
                 max_requests: int = 32, threads: int | None = None) -> None:
        self.model, self.device = model, model.device
        self.cache_tokens = max(PAGE_SIZE, cache_tokens // PAGE_SIZE * PAGE_SIZE)
        self.config = ContinuousBatchingConfig(
            page_size=PAGE_SIZE, num_blocks=self.cache_tokens // PAGE_SIZE, max_batch_tokens=max_batch_tokens,
            max_requests_per_batch=max_requests, use_async_batching=False, auto_switch_to_flash=False)
        self.threads = threads
        self._samplers: dict[str, TokenSampler] = {}
        self._queues: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self._manager = None
        self._router: threading.Thread | None = None
        # One forward pass in the constructing thread before the manager's thread exists: without it,
        # decoding in that thread ran 30x slower on this CPU (bf16, 2 cores; bench/README.md).
        with torch.inference_mode():
            model(input_ids=torch.tensor([[0]], device=self.device))
        self._running_manager()

    @property
    def capacity(self) -> int:
        """The most prompt + answer tokens one stream may hold: the whole cache, or the model's positions."""
        positions = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        return min(self.cache_tokens, positions) if positions else self.cache_tokens

    def generate(self, request: StreamRequest) -> Iterator[EngineEvent]:
        """The stream's token ids as they are chosen, then a Finished event."""
        needed = len(request.prompt_ids) + request.max_new_tokens
        if needed > self.capacity:
            yield Finished("error", f"this stream needs {needed} tokens of cache (prompt {len(request.prompt_ids)} + "
                                    f"answer {request.max_new_tokens}); the engine holds {self.capacity}")
            return
        manager = self._running_manager()
        rid = uuid.uuid4().hex
        outputs: queue.Queue = queue.Queue()
        with self._lock:
            self._queues[rid] = outputs
            self._samplers[rid] = TokenSampler(request.prompt_ids, request.params, request.seed, self.device)
        sent, done = 0, False
        try:
            added = manager.add_request([int(t) for t in request.prompt_ids], request_id=rid,
                                        max_new_tokens=request.max_new_tokens, streaming=True,
                                        eos_token_id=sorted(request.eos) or -1)
            if added is None:
                done = True
                yield Finished("error", "the generation engine is not running; try again in a moment")
                return
            while True:
                if request.stop.is_set():
                    yield Finished("stopped")
                    return
                try:
                    item = outputs.get(timeout=0.02)
                except queue.Empty:
                    continue
                if isinstance(item, Finished):  # the manager stopped under this stream
                    done = True
                    yield item
                    return
                tokens = item.generated_tokens  # cumulative, the stop token included
                for token in tokens[sent:]:
                    yield int(token)
                sent = len(tokens)
                if item.status == RequestStatus.FAILED:
                    done = True
                    yield Finished("error", str(item.error or "the request failed in the engine"))
                    return
                if item.status == RequestStatus.FINISHED:
                    done = True
                    yield Finished("stop" if tokens and tokens[-1] in request.eos else "length")
                    return
        finally:
            if not done:  # stopped, or the consumer went away: free its cache now
                manager.cancel_request(rid)
            with self._lock:
                self._queues.pop(rid, None)
                self._samplers.pop(rid, None)

    def close(self) -> None:
        """Stop the manager's thread (it is not a daemon: a process that never closes it never exits)."""
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            for rid in list(self._queues):
                manager.cancel_request(rid)
            manager.stop(block=True, timeout=30)

    def _running_manager(self):
        with self._lock:
            if self._manager is not None and self._manager.is_running():
                return self._manager
            if self._manager is not None:  # it died of a fatal error: every stream in it has been told
                log.error("continuous batching stopped (%r); restarting it",
                          self._manager.background_thread_status.fatal_error)
                self._manager.stop(block=False)
            self._manager = self._start()
            return self._manager

    def _start(self):
        eos = self.model.generation_config.eos_token_id
        config = GenerationConfig(do_sample=False, eos_token_id=eos if eos is not None else -1)
        manager = self.model.init_continuous_batching(generation_config=config,
                                                      continuous_batching_config=self.config)
        # Our processor replaces whatever the manager built: sampling is per stream (see module docstring).
        processors = ContinuousBatchingLogitsProcessorList(LogitsProcessorList([_StreamChoice(self._samplers)]))
        processors.tensors_required = 1
        manager.logit_processor = processors
        if self.threads:
            torch.set_num_threads(self.threads)  # the loop thread keeps the count it starts with
        manager.start()
        # The manager's thread is not a daemon: stop it before the interpreter waits for such threads.
        threading._register_atexit(_stop_quietly, manager)
        self._router = threading.Thread(target=self._route, args=(manager,), daemon=True, name="cb-router")
        self._router.start()
        return manager

    def _route(self, manager) -> None:
        """Hand each output to its stream's queue; when the manager dies, tell every waiting stream."""
        while True:
            out = manager.get_result(timeout=0.1)
            if out is None:
                if manager.is_running():
                    continue
                error = manager.background_thread_status.fatal_error
                with self._lock:
                    waiting = list(self._queues.values()) if self._manager is manager or self._manager is None else []
                for outputs in waiting:
                    outputs.put(Finished("error", f"the generation engine stopped: {error!r}" if error
                                         else "the generation engine was stopped"))
                return
            with self._lock:
                outputs = self._queues.get(out.request_id)
            if outputs is not None:  # late outputs of cancelled streams are dropped
                outputs.put(out)
