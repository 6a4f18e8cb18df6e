"""Which engine each loaded weights gets, and how much KV cache it holds.

- Weights on one GPU: transformers' continuous batching (`ContinuousEngine`), with a paged cache of
  `cache_tokens` tokens (and its compile levels, where it wins).
- Weights on the CPU: our own batched loop (`BatchedLoop`). On 2 cores it decoded 1, 3 and 8 streams
  at 1.3-1.5x the tokens/s of continuous batching (bench/batched_streams.py, bench/README.md): a paged
  cache's bookkeeping costs more than it saves where the batch is small and the matmuls are slow.
- Weights that device_map splits over several devices (two GPUs, or the CPU and the disk): the batched
  loop too, since the paged cache lives on one device; its cache grows with the streams it decodes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch

from models.engines.batched_loop import BatchedLoop
from models.engines.continuous import ContinuousEngine
from models.engines.protocol import Engine
from models.loading import LoadedWeights
from models.placement.memory import head_dim, kv_heads
from models.specs import WeightsSpec

# A CPU's cache is sized for this many full streams at most: a larger paged cache only makes each
# step's attention mask bigger on a CPU, where the batch is small anyway.
CPU_STREAMS, GPU_STREAMS = 16, 64
# The batched loop on a CPU decodes up to this many streams in one step; how many run is the app's
# admission's to say (playground/admission.py), by the speed each stream keeps.
CPU_BATCH = 32
STREAM_TOKENS = 2048  # tokens a typical stream holds: prompt with some history, plus its answer


@dataclass(frozen=True)
class CachePlan:
    """What one engine was given: tokens of KV cache and the bytes they take."""

    tokens: int
    bytes_per_token: int

    @property
    def gib(self) -> float:
        return self.tokens * self.bytes_per_token / 2**30


def kv_bytes_per_token(loaded: LoadedWeights) -> int:
    """Keys and values of every layer for one token, in the model's dtype."""
    config = loaded.model.config.get_text_config()
    dtype_bytes = torch.finfo(loaded.model.dtype).bits // 8 if loaded.model.dtype.is_floating_point else 2
    return 2 * config.num_hidden_layers * kv_heads(config) * head_dim(config) * dtype_bytes


def devices_of(loaded: LoadedWeights) -> set[str]:
    placed = getattr(loaded.model, "hf_device_map", None) or {"": str(loaded.input_device)}
    return {str(device) for device in placed.values()}


def plan_cache(loaded: LoadedWeights, sharing: int = 1, kv_cache_gib: float | None = None) -> CachePlan:
    """Cache tokens for one engine: `--kv-cache-gib`, else from free memory shared by `sharing` engines."""
    per_token = kv_bytes_per_token(loaded)
    device = loaded.input_device
    context = getattr(loaded.model.config.get_text_config(), "max_position_embeddings", None) or STREAM_TOKENS
    stream = min(context, STREAM_TOKENS)
    if kv_cache_gib:
        budget = int(kv_cache_gib * 2**30)
    elif device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(int(free * 0.8 / sharing), GPU_STREAMS * stream * per_token)
    else:
        import psutil  # also needed by transformers' continuous batching on a CPU

        budget = min(int(psutil.virtual_memory().available * 0.25 / sharing), CPU_STREAMS * stream * per_token)
    return CachePlan(tokens=max(stream, budget // per_token), bytes_per_token=per_token)


def build_engines(
    loaded: Mapping[WeightsSpec, LoadedWeights], kv_cache_gib: float | None = None
) -> dict[WeightsSpec, Engine]:
    """One engine per loaded weights; CPU engines share the cores between them."""
    single = [w for w, item in loaded.items() if len(devices_of(item)) == 1]
    on_cpu = [w for w in single if loaded[w].input_device.type == "cpu"]
    threads = max(1, (os.cpu_count() or 1) // len(on_cpu)) if on_cpu else None
    engines: dict[WeightsSpec, Engine] = {}
    for weights, item in loaded.items():
        if weights in on_cpu:
            engines[weights] = BatchedLoop(item.model, item.input_device, max_batch=CPU_BATCH, threads=threads)
        elif weights not in single:
            engines[weights] = BatchedLoop(item.model, item.input_device)
        else:
            sharing = sum(1 for w in single if loaded[w].input_device == item.input_device)
            plan = plan_cache(item, sharing, kv_cache_gib)
            engines[weights] = ContinuousEngine(item.model, cache_tokens=plan.tokens)
    return engines


def describe_engine(engine: Engine) -> str:
    """For the page's Models section and the terminal."""
    if isinstance(engine, ContinuousEngine):
        return f"continuous batching, {engine.cache_tokens:,} cache tokens"
    placed = {str(d) for d in (getattr(engine.model, "hf_device_map", None) or {}).values()}
    where = "split weights" if len(placed) > 1 else "on the CPU"
    return f"batched loop ({where}), up to {engine.max_batch} streams at once"
