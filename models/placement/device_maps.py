"""Device maps from accelerate's `infer_auto_device_map`, sized as the model will be once loaded.

accelerate sizes a model from its parameters and buffers. While a map is computed, the meta model is
dressed as it will load: each quantized weight becomes a meta tensor in bitsandbytes' storage (int8
[out, in], or NF4 packed two per byte), and each decoder layer carries an extra meta buffer holding
exactly its KV cache and quantization scales (both live on the layer's device). So the map never gives a
device more layers than it can hold with their caches, and a layer is never split. All of it is undone
afterwards.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from accelerate import infer_auto_device_map
from accelerate.utils import compute_module_sizes
from transformers import PreTrainedModel

from models.placement.memory import (
    Quantization,
    decoder_layers,
    no_split_classes,
    quantization_constant_bytes,
    quantized_linears,
)

Device = int | str  # a GPU index, "cpu" or "disk"

_EXTRA = "_placement_extra"  # name of the temporary buffer; never saved, never loaded
_LOCK = threading.Lock()  # the extra buffers live on shared (cached) meta models


@dataclass(frozen=True)
class DeviceFit:
    """One model's device map under a `max_memory`, and what it puts on each device."""

    device_map: dict[str, Device]
    max_memory: dict[Device, int]
    placed_bytes: dict[Device, int]  # weights, quantization scales and (per layer) KV cache
    layers: dict[Device, int]  # decoder layers per device
    largest_layer_bytes: int

    @property
    def gpus(self) -> tuple[int, ...]:
        return tuple(sorted(d for d in self.placed_bytes if isinstance(d, int)))

    @property
    def offloaded_bytes(self) -> dict[str, int]:
        return {d: b for d, b in self.placed_bytes.items() if d in ("cpu", "disk")}


class DeviceMapper:
    """Device maps for one meta model; what does not depend on `max_memory` is computed once."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.layer_names = list(decoder_layers(model))
        self._linears = quantized_linears(model)
        self._sizes: dict[tuple[str, Quantization | None, int], dict[str, float]] = {}

    def fit(
        self,
        max_memory: Mapping[Device, int],
        *,
        dtype: str,
        quantization: Quantization | None,
        kv_bytes_per_layer: int,
    ) -> DeviceFit:
        """`infer_auto_device_map` with each layer's KV cache and quantization scales counted in it."""
        with self._as_loaded(quantization, kv_bytes_per_layer):
            key = (dtype, quantization, kv_bytes_per_layer)
            if key not in self._sizes:
                self._sizes[key] = dict(compute_module_sizes(self.model, dtype=dtype))
            device_map = infer_auto_device_map(
                self.model,
                max_memory=dict(max_memory),
                no_split_module_classes=no_split_classes(self.model),
                dtype=dtype,
            )
        sizes = self._sizes[key]
        placed: dict[Device, int] = {}
        for name, device in device_map.items():
            placed[device] = placed.get(device, 0) + round(sizes[name])
        layers: dict[Device, int] = {}
        for device in layer_devices(device_map, self.layer_names).values():
            layers[device] = layers.get(device, 0) + 1
        return DeviceFit(
            device_map=dict(device_map),
            max_memory=dict(max_memory),
            placed_bytes=placed,
            layers=layers,
            largest_layer_bytes=max((round(sizes[n]) for n in self.layer_names), default=0),
        )

    @contextmanager
    def _as_loaded(self, quantization: Quantization | None, kv_bytes_per_layer: int) -> Iterator[None]:
        linears = self._linears if quantization else {}
        extras = {
            name: kv_bytes_per_layer
            + sum(quantization_constant_bytes(m, quantization) for n, m in linears.items() if n.startswith(name + "."))
            for name in self.layer_names
        }
        with _LOCK, _quantized_storage(linears, quantization), _layer_extras(self.model, extras), _quiet_accelerate():
            yield


def device_of(name: str, device_map: Mapping[str, Device]) -> Device:
    """The device of a module or parameter under a device map (longest matching prefix)."""
    parts = name.split(".")
    for end in range(len(parts), -1, -1):
        key = ".".join(parts[:end])
        if key in device_map:
            return device_map[key]
    raise KeyError(f"{name!r} is not covered by the device map {dict(device_map)}")


def layer_devices(device_map: Mapping[str, Device], layer_names: list[str]) -> dict[str, Device]:
    """Each decoder layer's device; raises if the map splits one across devices."""
    split = split_layers(device_map, layer_names)
    if split:
        raise ValueError(f"the device map splits decoder layers across devices: {split}")
    return {name: device_of(name, device_map) for name in layer_names}


def split_layers(device_map: Mapping[str, Device], layer_names: list[str]) -> list[str]:
    """Decoder layers whose parts the device map sends to different devices (should be none)."""
    split = []
    for layer in layer_names:
        inner = {device for key, device in device_map.items() if key.startswith(layer + ".")}
        if len(inner) > 1 or (inner and layer in device_map and inner != {device_map[layer]}):
            split.append(layer)
        elif inner and layer not in device_map and any(device_of(layer, device_map) != d for d in inner):
            split.append(layer)
    return split


@contextmanager
def _quantized_storage(linears: Mapping[str, torch.nn.Linear], quantization: Quantization | None) -> Iterator[None]:
    """Quantized weights as bitsandbytes stores them (accelerate counts integer tensors byte for byte)."""
    originals = {name: linear.weight for name, linear in linears.items()}
    try:
        for linear in linears.values():
            if quantization == "int8":
                stored = torch.empty(linear.weight.shape, dtype=torch.int8, device="meta")
            else:  # NF4: two 4-bit values per byte, as bitsandbytes' Params4bit packs them
                stored = torch.empty((linear.weight.numel() + 1) // 2, 1, dtype=torch.uint8, device="meta")
            linear._parameters["weight"] = torch.nn.Parameter(stored, requires_grad=False)
        yield
    finally:
        for name, weight in originals.items():
            linears[name]._parameters["weight"] = weight


@contextmanager
def _layer_extras(model: PreTrainedModel, extras: Mapping[str, int]) -> Iterator[None]:
    layers = decoder_layers(model)
    added = []
    try:
        for name, size in extras.items():
            if size > 0:
                # uint8 so that accelerate counts it byte for byte whatever dtype it sizes the rest in
                layers[name].register_buffer(_EXTRA, torch.empty(size, dtype=torch.uint8, device="meta"), False)
                added.append(layers[name])
        yield
    finally:
        for layer in added:
            del layer._buffers[_EXTRA]
            layer._non_persistent_buffers_set.discard(_EXTRA)


@contextmanager
def _quiet_accelerate() -> Iterator[None]:
    """Silence accelerate's "Device 0 is not available" while planning for GPUs this machine lacks."""
    logger = logging.getLogger("accelerate.utils.modeling")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*bytes of buffer for offloaded layers.*")
            yield
    finally:
        logger.setLevel(level)
