"""Our own batched decode loop, for weights that `device_map` splits over devices (or offloads).

transformers' continuous batching keeps its paged cache on one device, so it cannot serve a model
whose layers sit on two GPUs, or on the CPU and the disk. Here one thread decodes every stream that
runs on such weights as one batch: a new stream is prefilled alone, then joins the batch between two
steps, left-padded to the batch's cache length; the attention mask hides the padding and each row
keeps its own positions. A finished or stopped stream leaves at once, and its cache rows are freed.
A failure stays with its stream: a failed prefill or sampler ends that stream; a failed batch step
(out of memory, most often) ends the newest stream, and the others are prefilled again from their
prompt and answer so far and go on with the same sampler, so their tokens do not change.
The thread is a daemon, so an idle loop never holds the process open; `close` (also at exit) ends it
between two steps.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from transformers import DynamicCache

from models.engines.protocol import (
    EngineEvent,
    EngineStats,
    Finished,
    StreamRequest,
    close_at_exit,
    failure_message,
)
from models.engines.sampling import TokenSampler

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Row:
    """One stream in the batch."""

    request: StreamRequest
    sampler: TokenSampler
    out: queue.Queue[EngineEvent] = field(default_factory=queue.Queue)
    generated: int = 0
    length: int = 0  # prompt + tokens fed so far: this row's next position

    def emit(self, token: int) -> str | None:
        """Hand a token to the stream; the finish reason when this token ends it."""
        self.generated += 1
        self.out.put(token)
        if token in self.request.eos:
            return "stop"
        if self.generated >= self.request.max_new_tokens:
            return "length"
        return None


class BatchedLoop:
    """Decodes every stream on one model in a shared batch; streams join and leave between steps."""

    def __init__(
        self, model: torch.nn.Module, input_device: torch.device, max_batch: int = 16, threads: int | None = None
    ) -> None:
        self.model, self.device, self.max_batch = model, input_device, max_batch
        self.threads = threads  # torch threads of the decode thread: CPU engines share the cores
        self._incoming: queue.Queue[_Row | None] = queue.Queue()  # None only wakes the loop (close)
        self._rows: list[_Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # (rows, cache length): 0 where a row is left padding
        self._next: list[int] = []  # each row's token to feed on the next step
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.peak_batch = 0  # most streams decoded in one step so far
        self.failed_steps = 0  # batch steps that failed and were recovered from
        close_at_exit(self)

    def generate(self, request: StreamRequest) -> Iterator[EngineEvent]:
        """The stream's token ids as they are chosen, then a Finished event."""
        row = _Row(request, TokenSampler(request.prompt_ids, request.params, request.seed, self.device))
        if not self._submit(row):
            yield Finished("stopped")
            return
        while True:
            event = row.out.get()
            yield event
            if isinstance(event, Finished):
                return

    @property
    def active(self) -> int:
        return len(self._rows)

    def stats(self) -> EngineStats:
        """Streams in the batch or waiting to join it, and the tokens the batch's cache holds now: every
        row as long as the longest, left padding included (the cache grows with the streams)."""
        mask = self._mask  # replaced, never changed in place, by the decode thread
        held = mask.shape[0] * mask.shape[1] if mask is not None else 0
        return EngineStats(len(self._rows) + self._incoming.qsize(), held, None)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop decoding: running and waiting streams end as stopped, later ones at once; the decode
        thread ends after the step it is in, joined for at most `timeout_s`. Safe to call twice."""
        with self._lock:
            self._closed, thread = True, self._thread
        self._incoming.put(None)  # an idle loop waits on the queue: wake it now
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _submit(self, row: _Row) -> bool:
        """Queue a stream for the loop, starting the loop if it is not running; False once closed."""
        with self._lock:  # with close and the loop's idle exit: no row is queued after either looked
            if self._closed:
                return False
            self._incoming.put(row)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, daemon=True, name="batched-decode")
                self._thread.start()
        return True

    @torch.inference_mode()
    def _loop(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)  # each new decode thread sets its own count
        while True:
            if self._closed:
                self._end_all()
                return
            try:
                # Block only when nothing decodes; otherwise take whoever arrived since the last step.
                if self._rows and len(self._rows) >= self.max_batch:
                    raise queue.Empty  # full: newcomers wait until a row leaves
                row = self._incoming.get(timeout=30.0) if not self._rows else self._incoming.get_nowait()
            except queue.Empty:
                if not self._rows:
                    with self._lock:  # idle: let the thread end; the next stream starts a new one
                        if self._incoming.empty():
                            self._thread = None
                            return
                    continue
                row = None
            if row is not None and self._closed:  # taken as close came: it ends with the others, at the top
                row.out.put(Finished("stopped"))
                continue
            if row is not None:
                self._admit(row)
                if len(self._rows) < self.max_batch:
                    continue  # admit everyone waiting before the next step
            self._drop_stopped()
            if self._rows:
                self._step()

    def _end_all(self) -> None:
        """Closed: every stream in the batch or still queued ends as stopped, and the cache is freed."""
        with self._lock:
            waiting = []
            while not self._incoming.empty():
                waiting.append(self._incoming.get_nowait())
            self._thread = None
        for row in [*self._rows, *waiting]:
            if row is not None:
                row.out.put(Finished("stopped"))
        self._rows, self._next, self._cache, self._mask = [], [], None, None

    def _admit(self, row: _Row) -> None:
        """Prefill a new stream alone, hand out its first token, and join it to the batch."""
        request = row.request
        if request.stop.is_set():
            row.out.put(Finished("stopped"))
            return
        try:
            ids = torch.tensor([list(request.prompt_ids)], device=self.device)
            cache = DynamicCache()
            out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
            token = row.sampler(out.logits[0, -1, :])
        except Exception as error:  # this stream's prefill failed (too long, out of memory): only it ends
            log.exception("prefill failed")
            row.out.put(Finished("error", failure_message(error)))
            return
        row.length = len(request.prompt_ids)
        reason = row.emit(token)
        if reason is not None:
            row.out.put(Finished(reason))
            return
        self._join(row, out.cache, token)

    def _join(self, row: _Row, cache: DynamicCache, token: int) -> None:
        """Add a prefilled row to the batch cache, left-padding whichever side is shorter."""
        if self._cache is None:
            self._cache, self._mask = cache, torch.ones(1, row.length, dtype=torch.long, device=self.device)
        else:
            width = max(self._mask.shape[1], row.length)
            for batch_layer, new_layer in zip(self._cache.layers, cache.layers):
                batch_layer.keys = torch.cat([_pad_left(batch_layer.keys, width), _pad_left(new_layer.keys, width)])
                batch_layer.values = torch.cat(
                    [_pad_left(batch_layer.values, width), _pad_left(new_layer.values, width)]
                )
            new_mask = torch.ones(1, row.length, dtype=torch.long, device=self.device)
            self._mask = torch.cat([_pad_left(self._mask, width), _pad_left(new_mask, width)])
        self._rows.append(row)
        self._next.append(token)

    def _step(self) -> None:
        """One forward pass for every row; each row picks its own next token."""
        rows = list(self._rows)
        self.peak_batch = max(self.peak_batch, len(rows))
        mask = torch.cat([self._mask, torch.ones(len(rows), 1, dtype=torch.long, device=self.device)], dim=1)
        inputs = torch.tensor([[t] for t in self._next], device=self.device)  # (rows, 1)
        positions = torch.tensor([[r.length] for r in rows], device=self.device)  # (rows, 1)
        try:
            out = self.model(
                input_ids=inputs,
                attention_mask=mask,
                position_ids=positions,
                cache=self._cache,
                use_cache=True,
                logits_to_keep=1,
            )
        except Exception as error:  # the step failed (its cache may be half written): see _recover
            self._recover(error)
            return
        self._cache, self._mask = out.cache, mask
        finished = []
        for i, row in enumerate(rows):
            row.length += 1
            try:
                token = row.sampler(out.logits[i, -1, :])
            except Exception as error:  # this stream's own choice failed: only it ends
                log.exception("sampling failed for one stream")
                row.out.put(Finished("error", failure_message(error)))
                finished.append(i)
                continue
            self._next[i] = token
            reason = row.emit(token)
            if reason is not None:
                row.out.put(Finished(reason))
                finished.append(i)
        if finished:
            self._keep([i for i in range(len(rows)) if i not in finished])

    def _recover(self, error: Exception) -> None:
        """A batch step failed: end the newest stream, prefill the others again and let them go on."""
        log.error("a batched decode step failed", exc_info=error)
        self.failed_steps += 1
        rows, tokens = self._rows, self._next
        self._rows, self._next, self._cache, self._mask = [], [], None, None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        rows[-1].out.put(Finished("error", failure_message(error)))
        for row, token in zip(rows[:-1], tokens[:-1]):
            # Everything but the pending token is context; the pending token is fed at the next step.
            context = row.sampler.ids[0, :-1].to(self.device)[None, :]
            try:
                cache = DynamicCache()
                self.model(input_ids=context, cache=cache, use_cache=True, logits_to_keep=1)
            except Exception as again:
                log.exception("prefilling a stream again failed")
                row.out.put(Finished("error", failure_message(again)))
                continue
            row.length = context.shape[1]
            self._join(row, cache, token)

    def _drop_stopped(self) -> None:
        stopped = [i for i, row in enumerate(self._rows) if row.request.stop.is_set()]
        for i in stopped:
            self._rows[i].out.put(Finished("stopped"))
        if stopped:
            self._keep([i for i in range(len(self._rows)) if i not in stopped])

    def _keep(self, indices: Sequence[int]) -> None:
        """Keep only these rows: the others' cache is freed now, and all-padding columns are cut."""
        self._rows = [self._rows[i] for i in indices]
        self._next = [self._next[i] for i in indices]
        if not indices:
            self._cache, self._mask = None, None
            return
        index = torch.tensor(list(indices), device=self.device)
        self._mask = self._mask[index]
        # Columns that are padding in every remaining row hold nothing any row attends to.
        cut = int((self._mask.sum(dim=0) == 0).long().cumprod(dim=0).sum())
        self._mask = self._mask[:, cut:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[index.to(layer.keys.device), :, cut:, :]
            layer.values = layer.values[index.to(layer.values.device), :, cut:, :]


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros before the sequence dimension (-2 for cache tensors (B, H, T, D), -1 for masks (B, T))."""
    dim = -2 if tensor.dim() == 4 else -1
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
