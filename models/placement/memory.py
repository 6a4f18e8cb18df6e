"""Byte arithmetic for placement: models on the meta device, weights per precision, KV cache, activations.

Nothing here touches a GPU or reads weights: sizes come from a model built on the meta device
(`accelerate.init_empty_weights`), so a 70B model is counted in about a second on any machine.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import torch
from accelerate import init_empty_weights
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4

Quantization = Literal["int8", "int4"]

DTYPE_BYTES: dict[str, int] = {"float16": 2, "bfloat16": 2, "float32": 4}

# bitsandbytes NF4 keeps one float32 absmax per block of 64 weights (bnb_4bit_use_double_quant=False).
NF4_BLOCK_SIZE = 64

_UNITS = {
    "": None,
    "b": 1,
    "k": KiB,
    "kb": KiB,
    "kib": KiB,
    "m": MiB,
    "mb": MiB,
    "mib": MiB,
    "g": GiB,
    "gb": GiB,
    "gib": GiB,
    "t": TiB,
    "tb": TiB,
    "tib": TiB,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes from "80GiB", "24GB", "40000MiB".

    GB and MB are read as GiB and MiB, as GPU makers use them: an "80GB" A100 has 80 GiB (81,920 MiB).
    """
    match = _SIZE.match(text)
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS or _UNITS[unit] is None:
        raise ValueError(f"cannot read {text!r} as a memory size: write a number and a unit, e.g. 80GiB or 24GB")
    return int(float(match.group(1)) * _UNITS[unit])


def format_gib(size: float) -> str:
    """A byte count as GiB with one decimal."""
    return f"{size / GiB:.1f}"


def format_size(size: float) -> str:
    """A byte count for people: GiB from 1 GiB up, MiB below."""
    return f"{size / GiB:.1f} GiB" if size >= GiB else f"{size / MiB:.1f} MiB"


def meta_model(config: PretrainedConfig) -> PreTrainedModel:
    """The model for `config` built on the meta device: shapes and dtypes, no memory, no weights read."""
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config)


def count_parameters(model: torch.nn.Module) -> int:
    """Exact parameter count (tied weights once)."""
    return sum(p.numel() for p in model.parameters())


def no_split_classes(model: PreTrainedModel) -> list[str]:
    """Module classes a device map must not cut (Llama: LlamaDecoderLayer, because of the residual stream)."""
    return sorted(getattr(model, "_no_split_modules", None) or [])


def decoder_layers(model: PreTrainedModel) -> dict[str, torch.nn.Module]:
    """The no-split blocks by module name, in model order ("model.layers.0", ...)."""
    classes = set(no_split_classes(model))
    return {name: module for name, module in model.named_modules() if type(module).__name__ in classes}


def quantized_linears(model: PreTrainedModel) -> dict[str, torch.nn.Linear]:
    """The nn.Linear layers bitsandbytes converts: all but the output embeddings and tied weights.

    Mirrors transformers' `get_keys_to_not_convert`: lm_head (and the embeddings) stay 16-bit.
    """
    keep = {id(model.get_output_embeddings())}
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and id(module) not in keep
    }


def quantization_constant_bytes(linear: torch.nn.Linear, quantization: Quantization | None) -> int:
    """Bytes bitsandbytes keeps next to one quantized weight (scales), beyond the weight itself."""
    if quantization == "int8":
        return 4 * linear.out_features  # LLM.int8: one float32 scale (SCB) per output row
    if quantization == "int4":
        return 4 * math.ceil(linear.weight.numel() / NF4_BLOCK_SIZE)  # NF4: float32 absmax per block
    return 0


def weights_bytes(model: PreTrainedModel, dtype: str, quantization: Quantization | None = None) -> int:
    """Bytes of all weights as loaded: quantized linears plus their constants, the rest in `dtype`."""
    quantized = {f"{name}.weight" for name in quantized_linears(model)} if quantization else set()
    weight_bytes = {"int8": 1.0, "int4": 0.5}.get(quantization or "", 0.0)
    total = 0.0
    for name, param in model.named_parameters():
        total += param.numel() * (weight_bytes if name in quantized else DTYPE_BYTES[dtype])
    constants = sum(quantization_constant_bytes(m, quantization) for m in quantized_linears(model).values())
    return int(total) + (constants if quantization else 0)


def largest_quantized_weight_bytes(model: PreTrainedModel, dtype: str) -> int:
    """16-bit bytes of the biggest linear weight: bitsandbytes holds one such copy while quantizing it on load."""
    sizes = [m.weight.numel() for m in quantized_linears(model).values()]
    return max(sizes, default=0) * DTYPE_BYTES[dtype]


def _text_config(config: PretrainedConfig) -> PretrainedConfig:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def head_dim(config: PretrainedConfig) -> int:
    config = _text_config(config)
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def kv_heads(config: PretrainedConfig) -> int:
    """Key/value heads: fewer than attention heads under grouped-query attention (Llama 2 70B: 8 of 64)."""
    config = _text_config(config)
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def kv_cache_bytes_per_layer(config: PretrainedConfig, context_length: int, batch_size: int, dtype_bytes: int) -> int:
    """Keys and values of one decoder layer: 2 x kv_heads x head_dim x bytes x context x batch."""
    return 2 * kv_heads(config) * head_dim(config) * dtype_bytes * context_length * batch_size


def kv_cache_bytes(config: PretrainedConfig, context_length: int, batch_size: int, dtype_bytes: int) -> int:
    """The whole KV cache at full context: 2 x layers x kv_heads x head_dim x bytes x context x batch."""
    layers = _text_config(config).num_hidden_layers
    return layers * kv_cache_bytes_per_layer(config, context_length, batch_size, dtype_bytes)


def activation_bytes(config: PretrainedConfig, context_length: int, batch_size: int, dtype_bytes: int) -> int:
    """Peak activations of one decoder layer while prefilling a full-context prompt.

    With SDPA (transformers' default) attention scores are not materialised; the MLP is the peak: gate, up
    and their product ([batch, context, intermediate] each) beside about four [batch, context, hidden]
    tensors (residual, normed input, attention output, MLP output). 70B at 4096 tokens: about 0.9 GiB.
    """
    config = _text_config(config)
    intermediate = getattr(config, "intermediate_size", None) or 4 * config.hidden_size
    return batch_size * context_length * (3 * intermediate + 4 * config.hidden_size) * dtype_bytes
