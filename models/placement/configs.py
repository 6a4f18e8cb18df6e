"""Model configurations for planning, found without the network.

Where the weights are present (a local folder, or the Hugging Face cache) their own config.json is used;
otherwise the configurations that ship with the app (`models/placement/shipped_configs/*.json`, the three
Llama 2 chat models' config.json as published) let a plan be made before anything is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from models.embedded import EMBEDDED_ID
from models.specs import WeightsSpec

SHIPPED_DIR = Path(__file__).with_name("shipped_configs")

# Hub id -> shipped file. The architecture fields do not change between revisions of these repos.
SHIPPED_CONFIGS: dict[str, str] = {
    "meta-llama/Llama-2-7b-chat-hf": "llama-2-7b-chat-hf.json",
    "meta-llama/Llama-2-13b-chat-hf": "llama-2-13b-chat-hf.json",
    "meta-llama/Llama-2-70b-chat-hf": "llama-2-70b-chat-hf.json",
    # The embedded model's config as converted from its GGUF file: planning needs no conversion, and the
    # Hub copy that serves it where the package is missing (models.embedded.HUB_ID) has the same shapes.
    EMBEDDED_ID: "smollm2-135m-instruct.json",
}


class ConfigNotFoundError(FileNotFoundError):
    """No configuration for these weights on this machine (nothing was fetched)."""


def load_config(weights: WeightsSpec) -> PretrainedConfig:
    """The weights' configuration: local folder or GGUF, Hub cache, then the shipped copies; never the network."""
    local = Path(weights.id).expanduser()
    if local.is_dir():
        return _local_config(weights, local)
    cached = _cached_config(weights)
    if cached is not None:
        return cached
    shipped = shipped_config(weights.id)
    if shipped is not None:
        return shipped
    hint = f" To get the weights: {weights.how_to_get}" if weights.how_to_get else ""
    raise ConfigNotFoundError(
        f"no configuration for {weights.describe()}: it is not a local folder, not in the Hugging Face cache"
        f" (revision {weights.revision or 'main'}), and not one of the shipped configurations"
        f" ({', '.join(SHIPPED_CONFIGS)}). Download the weights (or just their config.json) first,"
        f" or give a local folder that holds config.json.{hint}"
    )


def shipped_config(hub_id: str) -> PretrainedConfig | None:
    """The config that ships with the app for this Hub id, if any."""
    name = SHIPPED_CONFIGS.get(hub_id)
    if name is None:
        return None
    data = json.loads((SHIPPED_DIR / name).read_text(encoding="utf-8"))
    return _config_from_dict(data)


def _config_from_dict(data: dict) -> PretrainedConfig:
    data = dict(data)
    # Older config.json files spell the dtype `torch_dtype`; transformers 5 calls it `dtype`.
    if "torch_dtype" in data and "dtype" not in data:
        data["dtype"] = data.pop("torch_dtype")
    model_type = data.pop("model_type")
    return AutoConfig.for_model(model_type, **data)


def _local_config(weights: WeightsSpec, folder: Path) -> PretrainedConfig:
    if weights.gguf_file:
        return AutoConfig.from_pretrained(str(folder), gguf_file=weights.gguf_file)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigNotFoundError(
            f"{folder} has no config.json: a weights folder needs the model's config.json"
            " (as written by save_pretrained) next to its safetensors files"
        )
    return _config_from_dict(json.loads(config_file.read_text(encoding="utf-8")))


def _cached_config(weights: WeightsSpec) -> PretrainedConfig | None:
    """The config from the Hugging Face cache only; None when it is not there."""
    if weights.gguf_file or weights.id == EMBEDDED_ID:
        return None  # a GGUF's configuration lives in the file; the embedded model's name is no Hub id
    try:
        return AutoConfig.from_pretrained(weights.id, revision=weights.revision, local_files_only=True)
    except (OSError, ValueError):
        return None
