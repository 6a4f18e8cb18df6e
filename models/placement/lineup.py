"""Placement: which GPUs each model of a lineup gets, in which precision, with which device map.

Planned before anything loads, from models built on the meta device, so a plan for a hypothetical machine
("4x80GiB") runs on a laptop. Preference order, each step taken only when the previous cannot hold the
lineup: every model on its own whole GPUs in 16-bit; models sharing a GPU in 16-bit (only when they fit
together); 8-bit, then 4-bit bitsandbytes for the models that need it; CPU, then disk offload. Every
step past the first is a warning naming the model, the reason and the expected slowdown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import combinations

from transformers import PretrainedConfig

from models.placement.configs import load_config
from models.placement.device_maps import Device, split_layers
from models.placement.memory import Quantization, format_gib, format_size, parse_size
from models.placement.plans import (
    CUDA_CONTEXT_BYTES,
    Gpu,
    LineupPlan,
    ModelPlan,
    ModelRequest,
    PlacementError,
    bitsandbytes_config,
    describe_gpus,
    format_plan,
    plan_to_dict,
)
from models.placement.search import Measured, Placed, Planner
from models.specs import LineupSpec

_GPU_GROUP = re.compile(r"^\s*(?:(\d+)\s*[x×*]\s*)?(\d+(?:\.\d+)?\s*[a-zA-Z]+)\s*$")


def parse_gpus(text: str) -> tuple[Gpu, ...]:
    """GPUs from "4x80GiB", "8x24GB", "2x80GiB,1x48GiB" or "1x40000MiB", numbered from 0."""
    example = "write COUNTxSIZE groups separated by commas, e.g. 4x80GiB or 2x80GiB,1x48GiB"
    gpus: list[Gpu] = []
    for group in text.split(","):
        match = _GPU_GROUP.match(group)
        if not match:
            raise ValueError(f"cannot read {group.strip()!r} in --gpus {text!r}: {example}")
        count = int(match.group(1) or 1)
        try:
            size = parse_size(match.group(2))
        except ValueError as error:
            raise ValueError(f"cannot read the size in {group.strip()!r}: {example}") from error
        if count < 1 or size < 2 * CUDA_CONTEXT_BYTES:
            raise ValueError(f"{group.strip()!r} describes no usable GPU (count 1 or more, 2GiB or more): {example}")
        first = len(gpus)
        gpus.extend(Gpu(first + i, size) for i in range(count))
    return tuple(gpus)


def visible_gpus() -> tuple[Gpu, ...]:
    """The CUDA GPUs this process sees, with their total memory; empty without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(Gpu(i, torch.cuda.get_device_properties(i).total_memory) for i in range(torch.cuda.device_count()))


def model_requests(lineup: LineupSpec) -> tuple[ModelRequest, ...]:
    """One request per distinct weights of a lineup (each is loaded once), configs found offline."""
    ids = [w.id for w in lineup.weights]
    return tuple(
        ModelRequest(w.id if ids.count(w.id) == 1 else w.describe(), load_config(w), w.context_length)
        for w in lineup.weights
    )


def plan_lineup(
    models: Sequence[ModelRequest | tuple[str, PretrainedConfig, int]],
    gpus: Sequence[Gpu],
    *,
    batch_size: int = 1,
    cpu_bytes: int | None = None,
    disk_bytes: int | None = None,
    allow_quantization: bool = True,
    allow_offload: bool = True,
) -> LineupPlan:
    """Plan the lineup on `gpus` (empty: CPU only); raises PlacementError with the numbers if it cannot fit.

    cpu_bytes: RAM for CPU placement and offload (None: what this machine has available now).
    disk_bytes: room in the offload folder (None: unbounded).
    """
    requests = tuple(m if isinstance(m, ModelRequest) else ModelRequest(*m) for m in models)
    names = [r.name for r in requests]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"plan_lineup needs one or more models with distinct names, got {names}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    if cpu_bytes is None:
        import psutil

        cpu_bytes = psutil.virtual_memory().available
    planner = Planner(tuple(gpus), cpu_bytes, disk_bytes, batch_size, allow_quantization, allow_offload)
    models = [planner.measure(r) for r in requests]
    placed = planner.place(models)
    if placed is None:
        raise _refusal(planner, models)
    return _lineup_plan(planner, placed)


def _lineup_plan(planner: Planner, placed: list[Placed]) -> LineupPlan:
    spare: dict[Device, int] = {g.index: g.usable_bytes for g in planner.gpus} | {"cpu": planner.cpu_bytes}
    users: dict[int, list[str]] = {}
    for p in placed:
        for device, size in p.used.items():
            if device in spare:
                spare[device] -= size
        for gpu in p.fit.gpus:
            users.setdefault(gpu, []).append(p.model.name)
    shared = _sharing_warnings(placed, users)
    models = []
    for p in placed:
        others = sorted({name for g in p.fit.gpus for name in users[g]} - {p.model.name})
        notes = _degradation_warnings(planner, placed, p) + [w for names, w in shared if p.model.name in names]
        models.append(
            ModelPlan(
                name=p.model.name,
                dtype=p.model.dtype if p.fit.gpus else "bfloat16",  # bf16 is the fast 16-bit type on CPUs
                quantization=p.quantization,
                parameters=p.model.parameters,
                weights_bytes=p.model.weights[p.quantization],
                context_length=p.model.context_length,
                kv_cache_bytes=p.model.kv_bytes,
                reserve_bytes=p.model.reserve(p.quantization),
                gpus=p.fit.gpus,
                device_map=p.fit.device_map,
                max_memory=p.fit.max_memory,
                layers_per_device=p.fit.layers,
                used_bytes=dict(p.used),
                spare_bytes={d: spare[d] for d in p.used if d in spare},
                shares_gpus_with=tuple(others),
                warnings=tuple(notes),
            )
        )
    warnings = list(dict.fromkeys(w for m in models for w in m.warnings))
    if not planner.gpus:
        dtype = ", ".join(sorted({m.dtype for m in models}))
        warnings.append(f"no GPU: every model runs on the CPU in {dtype}, roughly 10-100x slower than on a GPU")
    unused = [g.index for g in planner.gpus if g.index not in users]
    listed = ", ".join(map(str, unused))
    notes = (
        [
            f"GPU {listed} left unused: the lineup fits without it"
            if len(unused) == 1
            else f"GPUs {listed} left unused: the lineup fits without them"
        ]
        if unused
        else []
    )
    return LineupPlan(planner.gpus, planner.cpu_bytes, planner.batch_size, tuple(models), tuple(warnings), tuple(notes))


def _sharing_warnings(placed: list[Placed], users: dict[int, list[str]]) -> list[tuple[tuple[str, ...], str]]:
    groups: dict[tuple[str, ...], list[int]] = {}
    for gpu, names in sorted(users.items()):
        if len(names) > 1:
            groups.setdefault(tuple(names), []).append(gpu)
    precision = {p.model.name: p.quantization or p.model.dtype for p in placed}
    return [
        (
            names,
            f"{' and '.join(f'{n} ({precision[n]})' for n in names)} share GPU{'s' * (len(gpus) > 1)}"
            f" {', '.join(map(str, gpus))}: they fit together, and when they answer at the same time they take"
            " turns on its compute (each up to about 2x slower)",
        )
        for names, gpus in groups.items()
    ]


def _degradation_warnings(planner: Planner, placed: list[Placed], p: Placed) -> list[str]:
    """Quantization and offload of one model: what, why (with the numbers) and the expected slowdown."""
    models = [q.model for q in placed]
    usable = sum(g.usable_bytes for g in planner.gpus)
    machine, name, dtype = describe_gpus(planner.gpus), p.model.name, p.model.dtype

    def shortfall(quantization: str | None) -> str:
        need = sum(m.need(quantization) for m in models)
        if need > usable:
            return f"needs {format_gib(need)} GiB with KV cache and reserves, {format_gib(usable)} GiB usable"
        return f"{format_gib(need)} of {format_gib(usable)} GiB usable, but not as whole decoder layers per GPU"

    if p.quantization == "int8":
        return [
            f"{name}: 8-bit (bitsandbytes LLM.int8) because the lineup does not fit on {machine} in 16-bit"
            f" ({shortfall(None)}); expect decoding about 1.5-4x slower than {dtype} and a small loss of quality"
        ]
    if p.quantization == "int4":
        return [
            f"{name}: 4-bit NF4 (bitsandbytes) because the lineup does not fit on {machine} in 16-bit"
            f" ({shortfall(None)}) or with 8-bit only ({shortfall('int8')}); expect decoding up to about 2x slower"
            f" than {dtype} and more quality loss than 8-bit"
        ]
    cpu, disk = (format_gib(p.used.get(d, 0)) for d in ("cpu", "disk"))
    on_disk = f", {disk} GiB of it on disk (read back at every token: roughly 100-1000x slower)"
    on_disk = on_disk if "disk" in p.used else ""
    if not planner.gpus:
        if "disk" not in p.used:
            return []
        return [
            f"{name}: {disk} GiB on disk because the lineup does not fit in {format_gib(planner.cpu_bytes)} GiB"
            " of CPU RAM; those layers are read back at every token: roughly 100-1000x slower decoding"
        ]
    fallback = "even in 4-bit" if planner.allow_quantization else "in 16-bit (quantization off)"
    if not p.fit.gpus:
        return [
            f"{name}: runs on the CPU in bfloat16{on_disk}, because no GPU of {machine} has room left for it"
            f" {fallback}; roughly 10-100x slower decoding than on a GPU"
        ]
    if p.fit.offloaded_bytes:
        return [
            f"{name}: {cpu} GiB of its weights in CPU RAM{on_disk}, because the lineup does not fit on the GPUs"
            f" of {machine} {fallback}; offloaded layers are copied to GPU {p.fit.gpus[0]} at every token:"
            " roughly 10-100x slower decoding"
        ]
    return []


def _refusal(planner: Planner, models: list[Measured]) -> PlacementError:
    """The error for a lineup that fits nowhere: the least it needs against what the machine has."""
    smallest: Quantization | None = "int4" if planner.allow_quantization else None
    gpu = sum(g.usable_bytes for g in planner.gpus)
    offload = planner.allow_offload or not planner.gpus
    unbounded_disk = planner.allow_offload and planner.disk_bytes is None
    disk = (planner.disk_bytes or 0) if planner.allow_offload else 0

    def need(m: Measured, out: tuple[Measured, ...]) -> int:
        if m not in out:
            return m.need(smallest)
        # offloaded: 16-bit (bitsandbytes layers are not offloaded); with endless disk only the floor counts
        return m.offload_floor() if unbounded_disk else m.need(None)

    choices: list[tuple[Measured, ...]] = [()] if planner.gpus else []
    choices += [out for k in range(1, len(models) + 1) for out in combinations(models, k)] if offload else []
    options = [  # what stays on the GPUs must fit them, unless nothing stays
        (sum(need(m, out) for m in models), out)
        for out in choices
        if out == choices[-1] or sum(m.need(smallest) for m in models if m not in out) <= gpu
    ]
    needed, out = min(options, key=lambda option: option[0])
    available = gpu + (planner.cpu_bytes + disk if offload else 0)
    have = [f"{format_size(gpu)} on the GPUs after {format_size(CUDA_CONTEXT_BYTES)} CUDA context each"]
    have = have if planner.gpus else []
    have += [f"{format_size(planner.cpu_bytes)} CPU RAM"] if offload else []
    have += [f"{format_size(disk)} disk"] if planner.allow_offload and planner.disk_bytes is not None else []
    have += [] if planner.allow_offload else ["offload off"]
    forms = []
    for m in models:
        q = None if m in out else smallest
        size = f"{format_size(m.weights[q])} weights + {format_size(m.kv_bytes)} KV cache"
        size += f" + {format_size(m.reserve(q))} reserve"
        if m in out and unbounded_disk:
            size = f"{format_size(need(m, out))} in memory (KV cache, reserve and two layers; the rest on disk)"
        forms.append(f"{m.name} {q or m.dtype}: {size}")
    how = f", offloading {', '.join(m.name for m in out)} in 16-bit" if out and planner.gpus else ""
    message = (
        f"cannot place the lineup on {describe_gpus(planner.gpus)}: it needs at least {format_size(needed)}{how}"
        f" ({', '.join(forms)}) and {format_size(available)} are available ({', '.join(have)})."
    )
    if needed <= available:
        message += (
            " The total would fit, but not device by device: each holds whole decoder layers, and the one"
            " a model computes on also its KV cache and reserve."
        )
    message += " Use more or larger GPUs, allow offload with more RAM or disk, or leave a model out."
    return PlacementError(message, needed, available)


__all__ = [
    "CUDA_CONTEXT_BYTES",
    "Gpu",
    "LineupPlan",
    "ModelPlan",
    "ModelRequest",
    "PlacementError",
    "bitsandbytes_config",
    "describe_gpus",
    "format_plan",
    "model_requests",
    "parse_gpus",
    "plan_lineup",
    "plan_to_dict",
    "split_layers",
    "visible_gpus",
]
