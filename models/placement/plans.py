"""The data of a placement plan (the machine, what is asked for, what each model gets) and its renderings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PretrainedConfig

from models.placement.device_maps import Device
from models.placement.memory import GiB, Quantization, format_gib

# Held back on every GPU the lineup uses, once per process: the CUDA context and cuBLAS workspace (about
# 0.5 GiB with recent drivers) plus headroom for the caching allocator's fragmentation. Activations and the
# KV cache are reserved per model on top of this (models.placement.memory.activation_bytes, kv_cache_bytes).
CUDA_CONTEXT_BYTES = 1 * GiB


@dataclass(frozen=True)
class Gpu:
    """One GPU of the machine, real or hypothetical."""

    index: int
    total_bytes: int

    @property
    def usable_bytes(self) -> int:
        return self.total_bytes - CUDA_CONTEXT_BYTES


def describe_gpus(gpus: Sequence[Gpu]) -> str:
    """ "2x80GiB,1x48GiB" (runs of equal GPUs), or "no GPU"."""
    groups: list[list[int]] = []
    for gpu in gpus:
        if groups and groups[-1][1] == gpu.total_bytes:
            groups[-1][0] += 1
        else:
            groups.append([1, gpu.total_bytes])
    return ",".join(f"{n}x{size / GiB:g}GiB" for n, size in groups) or "no GPU"


@dataclass(frozen=True)
class ModelRequest:
    """A model to place: its name in the plan, its configuration and the context to reserve KV cache for."""

    name: str
    config: PretrainedConfig
    context_length: int = 4096


class PlacementError(ValueError):
    """The lineup cannot be placed on this machine; the message gives needed and available memory."""

    def __init__(self, message: str, needed_bytes: int, available_bytes: int) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


@dataclass(frozen=True)
class ModelPlan:
    """How one model loads: precision, device map, and the memory it takes on each device."""

    name: str
    dtype: str  # "float16" / "bfloat16": unquantized weights, activations and KV cache
    quantization: Quantization | None  # bitsandbytes "int8" (LLM.int8) or "int4" (NF4)
    parameters: int
    weights_bytes: int  # as loaded, quantization scales included
    context_length: int  # tokens of KV cache reserved per sequence
    kv_cache_bytes: int  # at the full context length and the plan's batch size
    reserve_bytes: int  # on the devices it computes on: activations (+ bitsandbytes' load buffer)
    gpus: tuple[int, ...]
    device_map: dict[str, Device]  # for from_pretrained(device_map=...)
    max_memory: dict[Device, int]  # what infer_auto_device_map was given (reserves already taken off)
    layers_per_device: dict[Device, int]
    used_bytes: dict[Device, int]  # weights + KV cache + reserves this model puts on each device
    spare_bytes: dict[Device, int]  # left on each of its devices with the whole lineup loaded
    shares_gpus_with: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def precision(self) -> str:
        return self.quantization or self.dtype

    @property
    def offloaded_bytes(self) -> dict[str, int]:
        """Bytes on "cpu" / "disk" of a model that computes on a GPU (streamed in at every token)."""
        if not self.gpus:
            return {}
        return {d: b for d, b in self.used_bytes.items() if d in ("cpu", "disk")}


@dataclass(frozen=True)
class LineupPlan:
    """Placement of a whole lineup on one machine."""

    gpus: tuple[Gpu, ...]
    cpu_bytes: int
    batch_size: int
    models: tuple[ModelPlan, ...]
    warnings: tuple[str, ...] = ()  # every degradation, said out loud
    notes: tuple[str, ...] = ()  # facts that cost nothing (GPUs left unused)

    @property
    def machine(self) -> str:
        return describe_gpus(self.gpus)

    def used_bytes(self) -> dict[Device, int]:
        """Per device: every model's use, plus the CUDA context on each GPU in use."""
        used: dict[Device, int] = {}
        for model in self.models:
            for device, size in model.used_bytes.items():
                used[device] = used.get(device, 0) + size
        return {d: b + (CUDA_CONTEXT_BYTES if isinstance(d, int) else 0) for d, b in used.items()}

    def model(self, name: str) -> ModelPlan:
        """The plan of the model called `name`."""
        for plan in self.models:
            if plan.name == name:
                return plan
        raise KeyError(f"no model {name!r} in the plan; it has {[m.name for m in self.models]}")


def bitsandbytes_config(plan: ModelPlan) -> dict[str, object] | None:
    """Keyword arguments for transformers.BitsAndBytesConfig that load the model as planned (None: no bnb)."""
    if plan.quantization == "int8":
        return {"load_in_8bit": True}
    if plan.quantization == "int4":
        return {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": plan.dtype,
            "bnb_4bit_use_double_quant": False,  # the plan counts one float32 scale per 64 weights
        }
    return None


def _devices(values: dict[Device, object]) -> str:
    return " ".join(f"{d}:{v}" for d, v in values.items())


def format_plan(plan: LineupPlan) -> str:
    """The plan as a table (model, precision, weights, KV cache, GPUs, layers, spare), warnings below."""
    header = ("model", "dtype/quant", "weights GiB", "KV-cache GiB", "GPUs", "decoder layers per device", "spare GiB")
    rows = [
        (
            m.name,
            m.precision,
            format_gib(m.weights_bytes),
            format_gib(m.kv_cache_bytes),
            ",".join(map(str, m.gpus)) or "-",
            _devices(m.layers_per_device),
            _devices({d: format_gib(s) for d, s in m.spare_bytes.items() if d != "disk"}),
        )
        for m in plan.models
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    numeric = {2, 3}
    lines = [f"Plan for {plan.machine}, batch size {plan.batch_size}, CPU RAM {format_gib(plan.cpu_bytes)} GiB"]
    for row in (header, *rows):
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    for title, items in (("Warnings", plan.warnings), ("Notes", plan.notes)):
        if items:
            lines += ["", f"{title}:", *(f"  - {item}" for item in items)]
    return "\n".join(lines)


def plan_to_dict(plan: LineupPlan) -> dict[str, object]:
    """The plan as JSON-ready data (device keys as strings, sizes in bytes)."""

    def keyed(values: dict[Device, object]) -> dict[str, object]:
        return {str(k): v for k, v in values.items()}

    return {
        "machine": plan.machine,
        "gpus": [{"index": g.index, "total_bytes": g.total_bytes} for g in plan.gpus],
        "cpu_bytes": plan.cpu_bytes,
        "batch_size": plan.batch_size,
        "cuda_context_bytes": CUDA_CONTEXT_BYTES,
        "models": [
            {
                "name": m.name,
                "precision": m.precision,
                "dtype": m.dtype,
                "quantization": m.quantization,
                "bitsandbytes": bitsandbytes_config(m),
                "parameters": m.parameters,
                "weights_bytes": m.weights_bytes,
                "context_length": m.context_length,
                "kv_cache_bytes": m.kv_cache_bytes,
                "reserve_bytes": m.reserve_bytes,
                "gpus": list(m.gpus),
                "device_map": dict(m.device_map),
                "max_memory": keyed(m.max_memory),
                "layers_per_device": keyed(m.layers_per_device),
                "used_bytes": keyed(m.used_bytes),
                "spare_bytes": keyed(m.spare_bytes),
                "shares_gpus_with": list(m.shares_gpus_with),
                "warnings": list(m.warnings),
            }
            for m in plan.models
        ],
        "warnings": list(plan.warnings),
        "notes": list(plan.notes),
    }
