"""Frozen specs: what weights are, how a contender samples, which contenders form a lineup."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

PromptFormat = Literal["llama2", "chat_template"]


@dataclass(frozen=True)
class WeightsSpec:
    """What `from_pretrained` loads: a Hub id (with revision), a local folder, or a GGUF file."""

    id: str  # Hub id, local folder path, or the embedded model's name
    revision: str | None = None  # Hub revision (branch, tag or commit); None for local weights
    gguf_file: str | None = None  # file name inside `id` when the weights are a GGUF file
    context_length: int = 4096
    # Shown when the weights cannot be found: how a person gets them.
    how_to_get: str = ""
    gated: bool = False  # Hub repo that needs a token and an accepted licence

    def describe(self) -> str:
        """Id plus revision, as stored with every response."""
        return f"{self.id}@{self.revision}" if self.revision else self.id


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings; temperature 0 means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        problems = [f"{name} must be a whole number, got {getattr(self, name)!r}"
                    for name in ("top_k", "max_new_tokens")
                    if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int)]
        if problems:  # the browser can send 50.5 where a slider meant 50
            raise ValueError("; ".join(problems))
        if not 0.0 <= self.temperature <= 5.0:
            problems.append(f"temperature must be between 0 and 5, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be 0 (off) or more, got {self.top_k}")
        if not 0.5 <= self.repetition_penalty <= 3.0:
            problems.append(f"repetition_penalty must be between 0.5 and 3, got {self.repetition_penalty}")
        if not 1 <= self.max_new_tokens <= 32768:
            problems.append(f"max_new_tokens must be between 1 and 32768, got {self.max_new_tokens}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def with_overrides(self, **overrides: Any) -> GenerationParams:
        """A copy with the given fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ContenderSpec:
    """Weights + prompt format + generation preset + optional system prompt."""

    name: str
    weights: WeightsSpec
    prompt_format: PromptFormat = "chat_template"
    params: GenerationParams = field(default_factory=GenerationParams)
    system_prompt: str | None = None


@dataclass(frozen=True)
class LineupSpec:
    """The contenders shown side by side."""

    name: str
    contenders: tuple[ContenderSpec, ...]
    description: str = ""

    def __post_init__(self) -> None:
        names = [c.name for c in self.contenders]
        if len(set(names)) != len(names):
            raise ValueError(f"lineup {self.name!r} has duplicate contender names: {names}")
        if not 2 <= len(self.contenders) <= 8:
            raise ValueError(f"lineup {self.name!r} needs 2 to 8 contenders, has {len(names)}")

    @property
    def weights(self) -> tuple[WeightsSpec, ...]:
        """Distinct weights in contender order: each is loaded once."""
        seen: dict[WeightsSpec, None] = {}
        for contender in self.contenders:
            seen.setdefault(contender.weights, None)
        return tuple(seen)
