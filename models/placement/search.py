"""The placement search behind `models.placement.plan_lineup`.

Degradations in the order they are tried (each only when everything before it fails):
1. every model on whole GPUs of its own, 16-bit (largest model first, fewest GPUs that hold it);
2. models sharing GPUs, 16-bit, where they fit together;
3. bitsandbytes 8-bit for some models, then 4-bit (fewest models quantized, larger models first);
4. CPU offload, then disk, for as few models as possible (16-bit; the rest as in 1-3).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations, product

import torch
from transformers import PretrainedConfig, PreTrainedModel

from models.placement.device_maps import Device, DeviceFit, DeviceMapper
from models.placement.memory import (
    DTYPE_BYTES,
    Quantization,
    activation_bytes,
    count_parameters,
    kv_cache_bytes,
    kv_cache_bytes_per_layer,
    largest_quantized_weight_bytes,
    meta_model,
    weights_bytes,
)
from models.placement.plans import Gpu, ModelRequest

_RANK: dict[Quantization | None, int] = {None: 0, "int8": 1, "int4": 2}

_META_CACHE: OrderedDict[str, PreTrainedModel] = OrderedDict()


def cached_meta_model(config: PretrainedConfig) -> PreTrainedModel:
    """meta_model(config), kept for the last few configurations (a 70B takes about a second to build)."""
    key = f"{type(config).__name__}:{config.to_json_string()}"
    if key not in _META_CACHE:
        _META_CACHE[key] = meta_model(config)
        while len(_META_CACHE) > 8:
            _META_CACHE.popitem(last=False)
    _META_CACHE.move_to_end(key)
    return _META_CACHE[key]


@dataclass(frozen=True)
class Measured:
    """A model on the meta device with the sizes the search needs."""

    name: str
    mapper: DeviceMapper = field(repr=False)
    dtype: str
    parameters: int
    weights: dict[Quantization | None, int]
    context_length: int
    kv_bytes: int
    kv_layer_bytes: int
    activation_bytes: int
    load_buffer_bytes: int  # bitsandbytes quantizes each 16-bit weight on the GPU while loading
    layers: int

    def reserve(self, quantization: Quantization | None) -> int:
        return self.activation_bytes + (self.load_buffer_bytes if quantization else 0)

    def need(self, quantization: Quantization | None) -> int:
        return self.weights[quantization] + self.kv_bytes + self.reserve(quantization)

    def layer_bytes(self, quantization: Quantization | None) -> int:
        return self.weights[quantization] // max(self.layers, 1) + self.kv_layer_bytes

    def offload_floor(self) -> int:
        """What an offloaded (16-bit) model keeps on the device it computes on: reserve, the whole KV
        cache, one layer of its own and the buffer offloaded layers are copied into."""
        return self.reserve(None) + self.kv_bytes + 2 * self.layer_bytes(None)


_Item = tuple[Measured, Quantization | None]  # a model and the quantization tried for it


@dataclass(frozen=True)
class Placed:
    """One model placed: precision, device map, and bytes per device including reserves."""

    model: Measured
    quantization: Quantization | None
    fit: DeviceFit
    used: dict[Device, int]  # fit.placed_bytes plus reserves


class Planner:
    """One planning run: the machine, the options, and a cache of device maps already computed."""

    def __init__(
        self,
        gpus: tuple[Gpu, ...],
        cpu_bytes: int,
        disk_bytes: int | None,
        batch_size: int,
        allow_quantization: bool,
        allow_offload: bool,
    ) -> None:
        self.gpus = gpus
        self.cpu_bytes = cpu_bytes
        self.disk_bytes = disk_bytes
        self.batch_size = batch_size
        self.allow_quantization = allow_quantization and bool(gpus)  # bitsandbytes needs a GPU
        self.allow_offload = allow_offload
        self._fits: dict[tuple, DeviceFit] = {}
        self._fewest: dict[tuple[str, Quantization | None], int | None] = {}

    def place(self, models: Sequence[Measured]) -> list[Placed] | None:
        """Where each model goes (in the order given), or None when nothing fits."""
        placed = self._search(sorted(models, key=lambda m: m.weights[None], reverse=True))
        if placed is None:
            return None
        order = {m.name: i for i, m in enumerate(models)}
        return sorted(placed, key=lambda p: order[p.model.name])

    def measure(self, request: ModelRequest) -> Measured:
        """The request's model on the meta device, with its sizes on this machine."""
        model = cached_meta_model(request.config)
        dtype = _dtype(request.config) if self.gpus else "bfloat16"  # bf16: fastest 16-bit on CPUs
        size = DTYPE_BYTES[dtype]
        config, context = request.config, request.context_length
        return Measured(
            name=request.name,
            mapper=DeviceMapper(model),
            dtype=dtype,
            parameters=count_parameters(model),
            weights={q: weights_bytes(model, dtype, q) for q in (None, "int8", "int4")},
            context_length=context,
            kv_bytes=kv_cache_bytes(config, context, self.batch_size, size),
            kv_layer_bytes=kv_cache_bytes_per_layer(config, context, self.batch_size, size),
            activation_bytes=activation_bytes(config, context, self.batch_size, size),
            load_buffer_bytes=largest_quantized_weight_bytes(model, dtype),
            layers=config.get_text_config().num_hidden_layers,
        )

    # -- the search -------------------------------------------------------------------------------------

    def _search(self, models: list[Measured]) -> list[Placed] | None:
        if not self.gpus:
            return self._with_offload(models, self._in_ram, first_without=True)
        placed = self._best_on_gpus(models)
        if placed is None and self.allow_offload:
            placed = self._with_offload(models, self._best_on_gpus, first_without=False)
        return placed

    def _best_on_gpus(self, models: list[Measured]) -> list[Placed] | None:
        free = {g.index: g.usable_bytes for g in self.gpus}
        for quantizations in self._precisions(models):
            items = sorted(zip(models, quantizations, strict=True), key=lambda mq: mq[0].need(mq[1]), reverse=True)
            # exclusive GPUs: each model needs at least as many as it takes on an empty machine
            exclusive = sum(self._fewest_gpus(m, q) or 0 for m, q in items) <= len(self.gpus)
            for shared in (False, True) if exclusive else (True,):
                placed = self._on_gpus(items, free, frozenset(), shared)
                if placed is not None:
                    return self._rebalanced(placed) if shared else placed
        return None

    def _rebalanced(self, placed: list[Placed]) -> list[Placed]:
        """Models left alone on several GPUs after packing get their layers balanced across them."""
        users: dict[int, int] = {}
        for p in placed:
            for gpu in p.fit.gpus:
                users[gpu] = users.get(gpu, 0) + 1
        result = []
        for p in placed:
            if len(p.fit.gpus) > 1 and all(users[g] == 1 for g in p.fit.gpus):
                free = {g.index: g.usable_bytes for g in self.gpus}
                p = next(self._placements(p.model, p.quantization, p.fit.gpus, free), p)
            result.append(p)
        return result

    def _precisions(self, models: list[Measured]) -> Iterator[tuple[Quantization | None, ...]]:
        """Quantization per model: 8-bit before any 4-bit, fewest models, larger models first."""
        levels: tuple[Quantization | None, ...] = (None, "int8", "int4") if self.allow_quantization else (None,)
        vectors = sorted(
            product(levels, repeat=len(models)),
            key=lambda v: (max((_RANK[q] for q in v), default=0), sum(_RANK[q] for q in v), [-_RANK[q] for q in v]),
        )
        usable = sum(g.usable_bytes for g in self.gpus)
        for vector in vectors:
            if sum(m.need(q) for m, q in zip(models, vector, strict=True)) > usable:
                continue
            if all(self._fewest_gpus(m, q) is not None for m, q in zip(models, vector, strict=True)):
                yield vector

    def _on_gpus(
        self, items: list[_Item], free: dict[int, int], touched: frozenset[int], shared: bool
    ) -> list[Placed] | None:
        """Depth-first: place the first model on the first GPU set that leaves room for the rest."""
        if not items:
            return []
        (model, quantization), rest = items[0], items[1:]
        if sum(m.need(q) for m, q in items) > sum(free.values()):
            return None
        for gpus in self._gpu_sets(model, quantization, free, touched, shared):
            for placed in self._placements(model, quantization, gpus, free, balanced_first=not shared):
                left = {g: b - placed.used.get(g, 0) for g, b in free.items()}
                tail = self._on_gpus(rest, left, touched | set(placed.fit.gpus), shared)
                if tail is not None:
                    return [placed, *tail]
        return None

    def _gpu_sets(
        self,
        model: Measured,
        quantization: Quantization | None,
        free: dict[int, int],
        touched: frozenset[int],
        shared: bool,
    ) -> Iterator[tuple[int, ...]]:
        """Candidate GPU sets, fewest GPUs first; then untouched GPUs, then the tightest fit."""
        fewest = self._fewest_gpus(model, quantization)
        if fewest is None:
            return
        reserve = model.reserve(quantization)
        need = model.weights[quantization] + model.kv_bytes
        pool = [g for g in self.gpus if free[g.index] > reserve and (shared or g.index not in touched)]
        # sharing may spread a model over one GPU more than it needs alone, never into every scrap left
        for k in range(fewest, min(len(pool), fewest + 1 if shared else len(pool)) + 1):
            options, seen = [], set()
            for combo in combinations(pool, k):
                room = sum(free[g.index] - reserve for g in combo)
                # GPUs in the same state are interchangeable: try one representative set
                signature = tuple(sorted((g.total_bytes, free[g.index], g.index in touched) for g in combo))
                if room >= need and signature not in seen:
                    seen.add(signature)
                    options.append((sum(g.index in touched for g in combo), room, tuple(g.index for g in combo)))
            yield from (gpus for _, _, gpus in sorted(options))

    def _fewest_gpus(self, model: Measured, quantization: Quantization | None) -> int | None:
        """How many GPUs the model needs on an empty machine (the largest first); None if it never fits."""
        key = (model.name, quantization)
        if key not in self._fewest:
            free = {g.index: g.usable_bytes for g in self.gpus}
            largest = sorted(self.gpus, key=lambda g: (-g.total_bytes, g.index))
            self._fewest[key] = next(
                (
                    k
                    for k in range(1, len(largest) + 1)
                    if any(self._placements(model, quantization, tuple(sorted(g.index for g in largest[:k])), free))
                ),
                None,
            )
        return self._fewest[key]

    def _placements(
        self,
        model: Measured,
        quantization: Quantization | None,
        gpus: tuple[int, ...],
        free: dict[int, int],
        balanced_first: bool = True,
    ) -> Iterator[Placed]:
        """The model on exactly these GPUs, two ways: layers balanced across them (even spare memory), and
        GPUs filled in order (leaves the last GPU's room in one piece for a model that shares it)."""
        reserve = model.reserve(quantization)
        caps = {g: free[g] - reserve for g in gpus}
        attempts = [caps]
        if len(gpus) > 1:
            # accelerate fills GPUs in order; cap all but the last near an even share (its get_balanced_memory)
            share = -(-(model.weights[quantization] + model.kv_bytes) // len(gpus)) + model.layer_bytes(quantization)
            balanced = {g: min(cap, share) if g != gpus[-1] else cap for g, cap in caps.items()}
            attempts.insert(0 if balanced_first else 1, balanced)
        maps = []
        for max_memory in attempts:
            fit = self._fit(model, quantization, max_memory, kv_on_layers=True)
            if set(fit.gpus) == set(gpus) and not fit.offloaded_bytes and fit.device_map not in maps:
                maps.append(fit.device_map)
                yield Placed(model, quantization, fit, _with_reserve(fit.placed_bytes, fit.gpus, reserve))

    def _fit(
        self, model: Measured, quantization: Quantization | None, max_memory: dict[Device, int], kv_on_layers: bool
    ) -> DeviceFit:
        max_memory = {d: max(int(b), 0) for d, b in max_memory.items()}
        key = (model.name, quantization, kv_on_layers, tuple(max_memory.items()))
        if key not in self._fits:
            self._fits[key] = model.mapper.fit(
                max_memory,
                dtype=model.dtype,
                quantization=quantization,
                kv_bytes_per_layer=model.kv_layer_bytes if kv_on_layers else 0,
            )
        return self._fits[key]

    # -- offload ----------------------------------------------------------------------------------------

    def _with_offload(
        self, models: list[Measured], place_rest: Callable[[list[Measured]], list[Placed] | None], first_without: bool
    ) -> list[Placed] | None:
        """Offload as few models as possible (largest first); the rest placed by `place_rest`."""
        sets: list[tuple[Measured, ...]] = [()] if first_without else []
        if self.allow_offload:
            sets += [c for k in range(1, len(models) + 1) for c in combinations(models, k)]
        for offloaded in sets:
            placed = place_rest([m for m in models if m not in offloaded])
            spilled = None if placed is None else self._spill(list(offloaded), placed)
            if spilled is not None:
                return placed + spilled
        return None

    def _in_ram(self, models: list[Measured]) -> list[Placed] | None:
        """Every model whole in CPU RAM (the no-GPU machine), or None."""
        placed: list[Placed] = []
        free = self.cpu_bytes
        for model in models:
            fit = self._fit(model, None, {"cpu": free - model.reserve(None)}, kv_on_layers=True)
            if set(fit.placed_bytes) != {"cpu"}:
                return None
            placed.append(Placed(model, None, fit, _with_reserve(fit.placed_bytes, ("cpu",), model.reserve(None))))
            free -= placed[-1].used["cpu"]
        return placed

    def _spill(self, models: list[Measured], placed: list[Placed]) -> list[Placed] | None:
        """Offloaded models in 16-bit: one GPU (if it can compute there), then CPU RAM, then disk.

        Smallest first, so that as few models as possible end up reading layers from disk.
        """
        total: dict[Device, int] = {g.index: g.usable_bytes for g in self.gpus} | {"cpu": self.cpu_bytes}
        spilled: list[Placed] = []
        order = sorted(models, key=lambda m: m.need(None))
        for i, model in enumerate(order):
            free = {d: b - sum(p.used.get(d, 0) for p in placed + spilled) for d, b in total.items()}
            free["cpu"] -= sum(m.offload_floor() for m in order[i + 1 :])  # keep RAM for those still to come
            one = self._offloaded(model, free)
            disk_left = (self.disk_bytes or 0) - sum(p.used.get("disk", 0) for p in spilled)
            if one is None or (self.disk_bytes is not None and one.used.get("disk", 0) > disk_left):
                return None
            spilled.append(one)
        return spilled

    def _offloaded(self, model: Measured, free: dict[Device, int]) -> Placed | None:
        """One model computing on the freest GPU (else the CPU), its other layers in RAM, then on disk.

        The computing device holds the reserve, the whole KV cache (keys and values of offloaded layers are
        computed there too) and a buffer that one offloaded layer at a time is copied into.
        """
        reserve, kv = model.reserve(None), model.kv_bytes
        gpu = max((g.index for g in self.gpus), key=lambda g: free[g], default=None)
        for home in ([gpu] if gpu is not None else []) + ["cpu"]:
            room = free[home] - reserve - kv
            if free[home] <= model.offload_floor():
                continue
            max_memory = {home: room} | ({"cpu": free["cpu"]} if home != "cpu" else {})
            fit = self._fit(model, None, max_memory, kv_on_layers=False)
            if home not in fit.placed_bytes:
                continue
            used = _with_reserve(fit.placed_bytes, (home,), reserve + kv)
            stream = fit.largest_layer_bytes  # accelerate keeps this room free on the computing device
            if set(used) - {home}:
                used[home] += stream
            if home != "cpu" and "disk" in used:
                used["cpu"] = used.get("cpu", 0) + stream  # disk layers pass through RAM
            if all(size <= free[device] for device, size in used.items() if device != "disk"):
                return Placed(model, None, fit, used)
        return None


def _with_reserve(placed: dict[Device, int], devices: Sequence[Device], reserve: int) -> dict[Device, int]:
    return {d: b + (reserve if d in devices else 0) for d, b in placed.items()}


def _dtype(config: PretrainedConfig) -> str:
    """16-bit dtype on GPUs: bfloat16 where the checkpoint is bfloat16, float16 otherwise (Llama 2)."""
    dtype = getattr(config, "dtype", None)
    return "bfloat16" if dtype in (torch.bfloat16, "bfloat16") else "float16"
