"""Per-browser-session state of the comparison core: panes, their conversations, the votes."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Literal

from models.generation import GenerationResult
from models.specs import ContenderSpec, GenerationParams

PaneStatus = Literal["idle", "waiting", "streaming", "done", "stopped", "error"]
Choice = Literal["a", "b", "tie", "both_bad"]
Strength = Literal["significantly_better", "better", "slightly_better", "negligibly_better"]
PARAM_FIELDS = ("temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty")


class PlaygroundError(ValueError):
    """Something the person did that cannot be done now; the message says what to do instead."""


@dataclass
class Pane:
    """One contender's place on the page: its own conversation and the answer being streamed."""

    position: int
    contender: ContenderSpec
    history: list[dict[str, str]] = field(default_factory=list)  # user/assistant turns, no system
    text: str = ""
    status: PaneStatus = "idle"
    result: GenerationResult | None = None
    error: str | None = None
    prompt_text: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "error")

    def reset_answer(self) -> None:
        self.text, self.status, self.result, self.error, self.prompt_text = "", "waiting", None, None, None


@dataclass
class Session:
    """Server-side state of one conversation; the browser only ever sees what the UI renders."""

    panes: list[Pane]
    mode: Literal["named", "arena"] = "named"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    turn: int = 0
    comparison_id: str | None = None  # the comparison the panes show now
    parent_id: str | None = None  # the comparison before it in this conversation
    rated: bool = False
    revealed: bool = False  # arena: names shown once a rating is in; later ratings are not blind
    last_prompt: str | None = None
    system_prompt: str | None = None
    # Only the parameters the person touched override each contender's preset.
    overrides: dict[str, float | int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    running: int = 0  # pane threads of the current run still alive
    replaced: bool = False  # Clear started a new session in this one's place
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def busy(self) -> bool:
        return self.running > 0

    @property
    def all_finished(self) -> bool:
        return all(p.finished for p in self.panes)

    @property
    def blind(self) -> bool:
        """Whether a rating given now is given without knowing who answered."""
        return self.mode == "arena" and not self.revealed

    @property
    def can_rate(self) -> bool:
        return self.comparison_id is not None and self.all_finished and not self.rated and not self.busy

    def params_for(self, pane: Pane) -> GenerationParams:
        return pane.contender.params.with_overrides(**self.overrides)


@dataclass(frozen=True)
class Vote:
    """What the person said about the answers on screen, by pane position (never by model name)."""

    choice: Choice | None = None  # two answers: which is better
    strength: Strength | None = None  # Llama 2 paper's scale, for "a" or "b"
    scores: dict[int, int] = field(default_factory=dict)  # more than two answers: 1-5 per position
    unsafe: dict[int, str | None] = field(default_factory=dict)  # flagged positions, optional reason
    comment: str | None = None
