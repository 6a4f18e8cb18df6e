"""Loading weights with `from_pretrained`: each distinct weights once per process, any placement."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from models.embedded import EMBEDDED_ID, EmbeddedModelMissing, embedded_source, ensure_converted, unavailable
from models.specs import LineupSpec, WeightsSpec

Log = Callable[[str], None]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class WeightsNotFound(RuntimeError):
    """Weights that cannot be found or opened; the message says how to get them."""


@dataclass(frozen=True)
class LoadOptions:
    """How to place weights: passed straight to `from_pretrained`."""

    device_map: str | dict[str, Any] = "auto"
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    max_memory: Mapping[Any, str | int] | None = None
    quantization: Mapping[str, Any] | None = None  # BitsAndBytesConfig kwargs
    cache_dir: Path | None = None  # where the embedded model's conversion lives
    offload_folder: Path | None = None


@dataclass
class LoadedWeights:
    """A model and tokenizer in memory, with where they ended up."""

    spec: WeightsSpec
    model: PreTrainedModel
    tokenizer: Any
    load_seconds: float
    resolved_revision: str | None = None
    devices: tuple[str, ...] = field(default=())
    served_id: str | None = None  # the id it was loaded from when not spec.id (the embedded model from the Hub)

    @property
    def input_device(self) -> torch.device:
        """The device of the input embeddings: where input ids must go on a sharded model."""
        return self.model.get_input_embeddings().weight.device

    def memory_bytes(self) -> int:
        return self.model.get_memory_footprint()

    def describe(self) -> str:
        """What served: the spec, or the Hub id and commit it was loaded from instead."""
        if self.served_id is None:
            return self.spec.describe()
        return f"{self.served_id}@{self.resolved_revision}" if self.resolved_revision else self.served_id


def _source(spec: WeightsSpec, options: LoadOptions, log: Log) -> tuple[str, dict[str, Any], str | None]:
    """What to hand `from_pretrained`: a path or Hub id plus its keyword arguments, and the id answers
    record when it is not `spec.id` (the embedded model served from the Hub)."""
    if spec.id == EMBEDDED_ID:
        chosen = embedded_source(options.cache_dir)
        if chosen.from_hub:
            return chosen.id, {"revision": chosen.revision}, chosen.id
        try:
            return str(ensure_converted(options.cache_dir, log=log)), {}, None
        except EmbeddedModelMissing as missing:
            raise WeightsNotFound(str(missing)) from None
    if spec.gguf_file:
        path = Path(spec.id) / spec.gguf_file
        if not path.is_file():
            raise WeightsNotFound(f"GGUF file {path} does not exist; {spec.how_to_get}")
        return spec.id, {"gguf_file": spec.gguf_file}, None
    if Path(spec.id).is_absolute():
        if not (Path(spec.id) / "config.json").is_file():
            raise WeightsNotFound(f"{spec.id} has no config.json; {spec.how_to_get}")
        return spec.id, {}, None
    return spec.id, {"revision": spec.revision or "main"}, None


def check_available(spec: WeightsSpec, options: LoadOptions = LoadOptions(), log: Log = print) -> None:
    """Fail fast, before any model is loaded, when weights cannot be had."""
    source, kwargs, served = _source(spec, options, log)
    try:
        AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if served:  # the embedded model, with neither its package nor the Hub: both ways, in one line
            raise WeightsNotFound(unavailable(reason)) from None
        raise WeightsNotFound(
            f"cannot open weights {spec.describe()}: {reason}\nHow to get them: {spec.how_to_get}"
        ) from None


def load_tokenizer(spec: WeightsSpec, options: LoadOptions = LoadOptions(), log: Log = print) -> Any:
    """Only the tokenizer of `spec` (a remote contender's token counter): no model is loaded. (The
    embedded model's tokenizer lives in its conversion, made once on first use.)"""
    if Path(spec.id).is_absolute() and not spec.gguf_file:  # a folder may hold the tokenizer files alone
        source, kwargs = spec.id, {}
    else:
        source, kwargs, _ = _source(spec, options, log)
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:400] or type(error).__name__  # its reasons span several lines
        raise WeightsNotFound(
            f"cannot load the tokenizer of {spec.describe()}: {reason}\nHow to get it: {spec.how_to_get}"
        ) from None


def resolve_dtype(name: str, config: Any, on_gpu: bool) -> torch.dtype:
    """`auto`: the checkpoint's dtype on a GPU; bfloat16 on a CPU, where it decodes ~1.6x faster
    than float32 (DESIGN.md, measured) and float16 kernels are slow."""
    if name != "auto":
        if name not in DTYPES:
            raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}, got {name!r}")
        return DTYPES[name]
    if not on_gpu:
        return torch.bfloat16
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return DTYPES.get(str(stored).removeprefix("torch."), torch.float16)


def load_weights(spec: WeightsSpec, options: LoadOptions = LoadOptions(), log: Log = print) -> LoadedWeights:
    """Load one model and its tokenizer with the given placement."""
    started = time.perf_counter()
    source, kwargs, served = _source(spec, options, log)
    what = f"{spec.describe()} from {served}@{kwargs['revision']}" if served else spec.describe()
    on_gpu = torch.cuda.is_available() and options.device_map != "cpu"
    config = AutoConfig.from_pretrained(source, **kwargs)
    dtype = resolve_dtype(options.dtype, config, on_gpu)
    model_kwargs: dict[str, Any] = dict(kwargs, dtype=dtype, device_map=options.device_map)
    if options.max_memory:
        model_kwargs["max_memory"] = dict(options.max_memory)
    if options.offload_folder:
        model_kwargs["offload_folder"] = str(options.offload_folder)
    if options.quantization:
        from transformers import BitsAndBytesConfig  # only a quantized plan needs bitsandbytes

        model_kwargs["quantization_config"] = BitsAndBytesConfig(**options.quantization)
    log(
        f"loading {what} (dtype={str(dtype).removeprefix('torch.')}, "
        f"device_map={options.device_map if isinstance(options.device_map, str) else 'planned'})"
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, **model_kwargs)
    except OSError as error:
        raise WeightsNotFound(f"cannot load {what}: {error}\n{spec.how_to_get}") from None
    model.eval()
    device_map = getattr(model, "hf_device_map", None) or {"": str(model.device)}
    devices = tuple(dict.fromkeys(str(d) for d in device_map.values()))
    seconds = time.perf_counter() - started
    log(f"loaded {what} in {seconds:.1f} s on {', '.join(devices)} ({model.get_memory_footprint() / 2**30:.2f} GiB)")
    return LoadedWeights(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        load_seconds=seconds,
        # The Hub's own commit when it names one; a served copy's pin otherwise, never the spec's revision.
        resolved_revision=getattr(config, "_commit_hash", None) or (kwargs["revision"] if served else None),
        devices=devices,
        served_id=served,
    )


def check_lineup(
    lineup: LineupSpec, options: LoadOptions | Mapping[WeightsSpec, LoadOptions] = LoadOptions(), log: Log = print
) -> None:
    """Raise one WeightsNotFound naming every weights of the lineup that cannot be had."""
    per_weights = options if isinstance(options, Mapping) else {w: options for w in lineup.weights}
    missing = []
    for weights in lineup.weights:
        try:
            check_available(weights, per_weights[weights], log)
        except WeightsNotFound as error:
            missing.append(str(error))
    if missing:
        raise WeightsNotFound("\n\n".join(missing))


def planned_options(
    lineup: LineupSpec,
    base: LoadOptions = LoadOptions(),
    gpus: Sequence[Any] | None = None,
) -> tuple[Any, dict[WeightsSpec, LoadOptions]]:
    """Plan the lineup on `gpus` (None: the visible ones) and turn each model's plan into LoadOptions.

    An explicit `base.dtype` wins over the plan's; device map, memory limits and quantization come
    from the plan, so one call places 7B, 13B and 70B across the machine's GPUs together.
    """
    from models.placement import bitsandbytes_config, model_requests, plan_lineup, visible_gpus

    plan = plan_lineup(model_requests(lineup), visible_gpus() if gpus is None else gpus)
    options = {}
    for weights, model_plan in zip(lineup.weights, plan.models):
        uses_disk = "disk" in model_plan.used_bytes
        options[weights] = replace(
            base,
            device_map=dict(model_plan.device_map),
            max_memory=dict(model_plan.max_memory) or None,
            dtype=base.dtype if base.dtype != "auto" else model_plan.dtype,
            quantization=bitsandbytes_config(model_plan),
            offload_folder=(base.offload_folder or Path("offload") / model_plan.name.replace("/", "--"))
            if uses_disk
            else None,
        )
    return plan, options


def load_lineup(
    lineup: LineupSpec,
    options: LoadOptions | Mapping[WeightsSpec, LoadOptions] = LoadOptions(),
    log: Log = print,
    checked: bool = False,
) -> dict[WeightsSpec, LoadedWeights]:
    """Check every weights first (so a missing one fails before minutes of loading), then load each once.

    `checked=True` skips the check when the caller has just made it.
    """
    per_weights = options if isinstance(options, Mapping) else {w: options for w in lineup.weights}
    if not checked:
        check_lineup(lineup, per_weights, log)
    loaded = {}
    for n, weights in enumerate(lineup.weights, start=1):
        log(f"[{n}/{len(lineup.weights)}] {weights.describe()}")
        loaded[weights] = load_weights(weights, per_weights[weights], log)
    return loaded
