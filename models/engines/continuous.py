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
- Failures stay with their stream. A sampler that fails ends its own stream. A forward pass that fails
  (out of memory, most often) would stop the manager and every stream in it: instead the request being
  prefilled in that step (else the newest) ends with a message, and the others in the step go on as
  new requests that carry their answer so far, with the same sampler, so their tokens do not change.
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

from models.engines.protocol import EngineEvent, EngineStats, Finished, StreamRequest, failure_message
from models.engines.sampling import TokenSampler

log = logging.getLogger(__name__)
PAGE_SIZE = 64  # tokens per cache block
_RESUME = "resume"  # verdict for a stream that shared a failed step without causing it
MAX_RESUMES = 3  # a stream resumed this often ends, so that repeated failures cannot loop


class _StepFailed(Exception):
    """A forward pass failed; raised through the manager's loop to our handler (never past it)."""


def _stop_quietly(manager) -> None:
    """At exit: stop a manager without its logger writing to streams the test runner already closed."""
    logging.getLogger("ContinuousBatchingLogger").disabled = True
    manager.stop(block=True, timeout=10)


def _held_fraction(cache) -> float:
    """The share of a PagedAttentionCache's bytes in blocks that requests hold. Blocks kept only for
    prefix sharing are left out: the cache gives them up whenever a stream needs room."""
    capacity = cache.num_sectors * cache.bytes_per_sector
    held = 0
    for allocator in cache.cache_allocators.values():
        for _ in range(3):  # the manager's thread changes the tables meanwhile; a copy rarely fails
            try:
                tables = list(allocator.block_table.values())
                break
            except RuntimeError:
                continue
        else:
            tables = []
        held += len({block for table in tables for block in table}) * allocator.bytes_per_block
    return min(1.0, held / capacity) if capacity else 0.0


class _StreamChoice(ContinuousBatchingLogitsProcessor):
    """Each stream's own sampler picks its next token; the row becomes one-hot for the manager's argmax."""

    supported_kwargs: dict[str, type] = {}
    ignored_kwargs: tuple[str, ...] = ()

    def __init__(self, samplers: dict[str, TokenSampler], verdicts: dict[str, str]) -> None:
        self.samplers, self.verdicts = samplers, verdicts
        self._rows: list[tuple[str, TokenSampler | None]] = []

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.zero_()

    def prepare_tensor_args(self, requests_with_new_token: list) -> torch.Tensor:
        # Score rows follow this order (the manager appends logits indices in it).
        self._rows = [(r.state.request_id, self.samplers.get(r.state.request_id)) for r in requests_with_new_token]
        return torch.zeros(len(self._rows), dtype=torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        chosen = torch.full_like(scores, float("-inf"))  # (rows, vocab)
        for i, (rid, sampler) in enumerate(self._rows[: scores.shape[0]]):
            if rid in self.verdicts:  # ended: its sampler keeps the tokens it chose before, no more
                chosen[i, 0] = 0.0
                continue
            try:
                token = sampler(scores[i]) if sampler is not None else int(scores[i].argmax())
            except Exception as error:  # this stream's own choice failed: only it ends (its token is dropped)
                log.exception("sampling failed for one stream")
                self.verdicts[rid] = failure_message(error)
                token = 0
            chosen[i, token] = 0.0
        return chosen


class ContinuousEngine:
    """Continuous batching over one model on one device, with our per-stream sampling."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        cache_tokens: int,
        max_batch_tokens: int = 256,
        max_requests: int = 32,
        threads: int | None = None,
        compile_level: int = 0,
    ) -> None:
        self.model, self.device = model, model.device
        self.cache_tokens = max(PAGE_SIZE, cache_tokens // PAGE_SIZE * PAGE_SIZE)
        self.config = ContinuousBatchingConfig(
            page_size=PAGE_SIZE,
            num_blocks=self.cache_tokens // PAGE_SIZE,
            max_batch_tokens=max_batch_tokens,
            max_requests_per_batch=max_requests,
            use_async_batching=False,
            auto_switch_to_flash=False,
            default_compile_level=compile_level,
        )
        self.threads = threads
        self._samplers: dict[str, TokenSampler] = {}
        self._queues: dict[str, queue.Queue] = {}
        self._verdicts: dict[str, str] = {}  # request id -> _RESUME or the message that ends it
        self.failed_steps = 0  # forward passes that failed and were recovered from
        self._lock = threading.Lock()
        self._manager = None
        self._router: threading.Thread | None = None
        self._closed = False
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

    def stats(self) -> EngineStats:
        """Streams this engine holds, and the paged cache's blocks that streams hold now (in tokens)."""
        with self._lock:
            streams, manager = len(self._queues), self._manager
        processor = getattr(manager, "batch_processor", None)  # None until its loop starts, and after
        cache = getattr(processor, "cache", None)
        if cache is None:
            return EngineStats(streams, 0, self.cache_tokens)
        total = cache.num_blocks * PAGE_SIZE  # num_blocks: whole-model blocks of PAGE_SIZE tokens
        return EngineStats(streams, round(_held_fraction(cache) * total), total)

    def generate(self, request: StreamRequest) -> Iterator[EngineEvent]:
        """The stream's token ids as they are chosen, then a Finished event."""
        needed = len(request.prompt_ids) + request.max_new_tokens
        if needed > self.capacity:
            yield Finished(
                "error",
                f"this stream needs {needed} tokens of cache (prompt {len(request.prompt_ids)} + "
                f"answer {request.max_new_tokens}); the engine holds {self.capacity}",
            )
            return
        if self._closed:
            yield Finished("stopped")
            return
        sampler = TokenSampler(request.prompt_ids, request.params, request.seed, self.device)
        answer: list[int] = []
        for _ in range(MAX_RESUMES + 1):
            # Each pass is one manager request; a resumed pass carries the answer so far as prompt.
            ended = yield from self._run(request, sampler, answer)
            if ended:
                return
        yield Finished("error", "the model failed on this answer several times; try again")

    def _run(self, request: StreamRequest, sampler: TokenSampler, answer: list[int]):
        """One manager request for this stream; True when the stream ended, False to resume it."""
        manager = self._running_manager()
        if manager is None:  # closed meanwhile
            yield Finished("stopped")
            return True
        rid = uuid.uuid4().hex
        outputs: queue.Queue = queue.Queue()
        with self._lock:
            self._queues[rid] = outputs
            self._samplers[rid] = sampler
        sent, done = 0, False
        try:
            added = manager.add_request(
                [int(t) for t in (*request.prompt_ids, *answer)],
                request_id=rid,
                max_new_tokens=request.max_new_tokens - len(answer),
                streaming=True,
                eos_token_id=sorted(request.eos) or -1,
            )
            if added is None:
                done = True
                yield Finished("error", "the generation engine is not running; try again in a moment")
                return True
            while True:
                if request.stop.is_set():
                    yield Finished("stopped")
                    return True
                try:
                    item = outputs.get(timeout=0.02)
                except queue.Empty:
                    continue
                if isinstance(item, Finished):  # the manager stopped under this stream
                    done = True
                    yield item
                    return True
                tokens = item.generated_tokens  # cumulative, the stop token included
                verdict = self._verdicts.pop(rid, None)
                if verdict not in (None, _RESUME) and item.status != RequestStatus.FAILED:
                    # Its sampler failed: the tokens it chose are the answer; what follows them is a
                    # placeholder. Counted from the sampler, since this output may be older than the failure.
                    chosen = sampler.ids.shape[1] - len(request.prompt_ids) - (len(answer) - sent)
                    tokens = tokens[: max(chosen, 0)]
                for token in tokens[sent:]:
                    answer.append(int(token))
                    yield int(token)
                sent = len(tokens)
                if verdict == _RESUME:  # a step it shared failed; its cache is gone: go on as a new request
                    done = True
                    return False
                if verdict is not None:
                    yield Finished("error", verdict)
                    return True
                if item.status == RequestStatus.FAILED:
                    done = True
                    yield Finished("error", str(item.error or "the request failed in the engine"))
                    return True
                if item.status == RequestStatus.FINISHED:
                    done = True
                    yield Finished("stop" if tokens and tokens[-1] in request.eos else "length")
                    return True
        finally:
            if not done:  # stopped, failed, or the consumer went away: free its cache now
                manager.cancel_request(rid)
            with self._lock:
                self._queues.pop(rid, None)
                self._samplers.pop(rid, None)
                self._verdicts.pop(rid, None)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the manager's thread (it is not a daemon: a process that never closes it never exits) and
        the router's; streams still running end as stopped, later ones at once. Safe to call twice."""
        with self._lock:
            self._closed = True
            manager, self._manager = self._manager, None
            router, self._router = self._router, None
        if manager is not None:
            for rid in list(self._queues):
                manager.cancel_request(rid)
            manager.stop(block=True, timeout=timeout_s)
        if router is not None and router is not threading.current_thread():
            router.join(timeout_s)  # it tells the streams still waiting, then ends

    def _running_manager(self):
        """The manager, started again if it died; None once the engine is closed."""
        with self._lock:
            if self._closed:
                return None
            if self._manager is not None and self._manager.is_running():
                return self._manager
            if self._manager is not None:  # it died of a fatal error: every stream in it has been told
                log.error(
                    "continuous batching stopped (%r); restarting it",
                    self._manager.background_thread_status.fatal_error,
                )
                self._manager.stop(block=False)
            self._manager = self._start()
            return self._manager

    def _start(self):
        eos = self.model.generation_config.eos_token_id
        config = GenerationConfig(do_sample=False, eos_token_id=eos if eos is not None else -1)
        manager = self.model.init_continuous_batching(generation_config=config, continuous_batching_config=self.config)
        # Our processor replaces whatever the manager built: sampling is per stream (see module docstring).
        processors = ContinuousBatchingLogitsProcessorList(
            LogitsProcessorList([_StreamChoice(self._samplers, self._verdicts)])
        )
        processors.tensors_required = 1
        manager.logit_processor = processors
        self._guard(manager)
        if self.threads:
            torch.set_num_threads(self.threads)  # the loop thread keeps the count it starts with
        with torch.inference_mode():  # the loop thread runs in the mode it was started in: no autograd state
            manager.start()
        # The manager's thread is not a daemon: stop it before the interpreter waits for such threads.
        threading._register_atexit(_stop_quietly, manager)
        self._router = threading.Thread(target=self._route, args=(manager,), daemon=True, name="cb-router")
        self._router.start()
        return manager

    def _guard(self, manager) -> None:
        """Keep a failed forward pass from stopping the manager: it ends one request, not all of them."""
        step, body = manager._generation_step, manager._generation_loop_body

        def guarded_step() -> None:
            try:
                step()
            except Exception as error:
                raise _StepFailed() from error

        def guarded_body(batch_processor, bootstrapping: bool) -> bool:
            try:
                return body(batch_processor, bootstrapping)
            except _StepFailed as failed:
                self._recover(batch_processor, failed.__cause__)
                return True

        manager._generation_step, manager._generation_loop_body = guarded_step, guarded_body

    def _recover(self, batch_processor, error: BaseException) -> None:
        """End the request that made the step fail; the others in the step resume as new requests."""
        log.error("a forward pass of continuous batching failed", exc_info=error)
        self.failed_steps += 1
        states = [future.state for future in batch_processor.inputs_and_outputs.prepare_batch_update()[0]]
        prefilling = [s for s in states if s.generated_len() == 0]
        newest = [max(states, key=lambda s: s.created_time)] if states else []
        culprits = {s.request_id for s in (prefilling or newest)}
        with self._lock:
            for state in states:
                self._verdicts[state.request_id] = failure_message(error) if state.request_id in culprits else _RESUME
        for state in states:  # frees their cache blocks; each stream hears of it through the router
            batch_processor._handle_request_error(error, state)
            batch_processor.scheduler.finish_request(state.request_id)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

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
                if error:
                    ended = Finished("error", f"the generation engine stopped: {error!r}")
                elif self._closed:  # close(): the app is stopping, so each answer stands as it is
                    ended = Finished("stopped")
                else:
                    ended = Finished("error", "the generation engine was stopped")
                for outputs in waiting:
                    outputs.put(ended)
                return
            with self._lock:
                outputs = self._queues.get(out.request_id)
            if outputs is not None:  # late outputs of cancelled streams are dropped
                outputs.put(out)
