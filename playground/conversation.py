"""One conversation of the comparison core: panes, their histories, the comparison on screen, its vote."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from feedback_db.records import History as HistoryMode
from feedback_db.records import Mode
from models.specs import ContenderSpec, GenerationParams
from models.streaming import GenerationResult
from playground.admission import Place
from playground.errors import PlaygroundError

if TYPE_CHECKING:
    from playground.raters import Seat
    from playground.review import ReviewItem

PaneStatus = Literal["idle", "waiting", "streaming", "done", "stopped", "error"]
# History: "own": each pane continues its own conversation; "shared": after each vote every pane continues
# from the preferred answer (Anthropic's HH protocol), so every later turn is a pair with one prompt.


BUSY = "the answers are still streaming: wait for them or press Stop"


def letter(position: int) -> str:
    """A pane's name on the page and in messages: A, B, C, D."""
    return "ABCD"[position]


@dataclass(frozen=True)
class Turn:
    """What one run sends: the prompt, the system prompt, and each pane's conversation before it."""

    prompt: str
    system_prompt: str | None
    number: int
    parent_id: str | None
    histories: list[list[dict[str, str]]]
    continued_from: str | None = None  # shared history: the response whose answer it continues


@dataclass
class Pane:
    """One contender's place on the page: its conversation and the answer being streamed."""

    position: int
    contender: ContenderSpec
    history: list[dict[str, str]] = field(default_factory=list)  # user/assistant turns, no system
    text: str = ""
    status: PaneStatus = "idle"
    result: GenerationResult | None = None
    error: str | None = None
    prompt_text: str | None = None
    response_id: str | None = None  # the stored response of the comparison on screen
    params: GenerationParams | None = None  # what the answer on screen was sampled with
    stop: threading.Event = field(default_factory=threading.Event)  # this pane's own Stop
    notice: str | None = None  # shown under the answer, e.g. that old exchanges were left out

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "error")

    def reset_answer(self) -> None:
        self.text, self.status, self.result, self.error, self.prompt_text = "", "waiting", None, None, None
        self.response_id, self.params, self.notice = None, None, None


@dataclass
class Conversation:
    """Server-side state of one conversation; the browser only ever sees what the UI renders."""

    panes: list[Pane]
    mode: Mode = "named"
    history_mode: HistoryMode = "own"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    turn: int = 0
    comparison_id: str | None = None  # the comparison the panes show now
    parent_id: str | None = None  # the comparison before it in this conversation
    # Issued with each comparison; a rating or a next turn must carry the one of the comparison on
    # screen, so a form left over from an earlier comparison (or a stale page) is refused.
    form_token: str | None = None
    rated: bool = False
    revealed: bool = False  # arena: names shown once a rating is in; later ratings are not blind
    continue_from: int | None = None  # shared history: the pane whose answer the next turn continues
    continued_from: str | None = None  # shared history: the response the comparison on screen continues
    last_prompt: str | None = None
    system_prompt: str | None = None
    # Explicit overrides of every contender's preset (empty: each contender samples with its own).
    overrides: dict[str, float | int] = field(default_factory=dict)
    claimed: bool = False  # a run owns the panes, from before its first write until its last thread ends
    running: int = 0  # pane threads of the current run still alive
    replaced: bool = False  # Clear started a new conversation in this one's place
    # The browser session's rater (raters.py), kept across Clear; None until the session does anything.
    seat: Seat | None = None
    finished_at: float | None = None  # time.monotonic() when the last answer on screen finished
    review: ReviewItem | None = None  # the stored comparison the review tab shows this session
    review_layout: int | None = None  # how many answers the review tab is laid out for (ui_review)
    queue_place: Place | None = None  # while its comparison waits for a free place: where it stands
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def busy(self) -> bool:
        return self.claimed

    @property
    def all_finished(self) -> bool:
        return all(p.finished for p in self.panes)

    @property
    def blind(self) -> bool:
        """Whether a rating given now is given without knowing who answered."""
        return self.mode == "arena" and not self.revealed

    @property
    def pairwise(self) -> bool:
        """Two answers are judged with a verdict and a strength; more with scores or a ranking."""
        return len(self.panes) == 2

    @property
    def can_rate(self) -> bool:
        return self.comparison_id is not None and self.all_finished and not self.rated and not self.busy

    def params_for(self, pane: Pane) -> GenerationParams:
        return pane.contender.params.with_overrides(**self.overrides)

    def claim(self) -> None:
        """Take the conversation for one run, atomically, or refuse: one run at a time."""
        with self.lock:
            if self.claimed:
                raise PlaygroundError(BUSY)
            self.claimed = True

    def release(self) -> None:
        with self.lock:
            self.claimed = False

    def begin(self, comparison_id: str, turn: Turn, streams: int) -> None:
        """The stored comparison `comparison_id` of `turn` is on screen now, with `streams` answers to come;
        a new form token is issued for it."""
        for pane, history in zip(self.panes, turn.histories):
            pane.history = history
        self.comparison_id, self.rated, self.continue_from = comparison_id, False, None
        self.form_token = uuid.uuid4().hex
        self.turn, self.parent_id, self.continued_from = turn.number, turn.parent_id, turn.continued_from
        self.last_prompt, self.system_prompt = turn.prompt, turn.system_prompt
        self.running, self.finished_at = streams, None

    def answer_finished(self) -> bool:
        """One pane's answer ended; the last one hands the conversation back. True when it was the last."""
        with self.lock:
            self.running -= 1
            if not self.running:
                self.claimed, self.finished_at = False, time.monotonic()
            return not self.running

    def rated_with(self, continue_from: int | None) -> bool:
        """The comparison on screen is rated; the next turn continues from `continue_from` (shared
        history). True when this rating reveals the names (the first in arena mode)."""
        self.rated, self.continue_from = True, continue_from
        revealing = self.mode == "arena" and not self.revealed
        self.revealed = self.revealed or revealing
        return revealing

    def retire(self) -> None:
        """Clear replaced this conversation: its streams stop and its last snapshots are not shown."""
        self.replaced = True
        self.stop_all()

    def stop_all(self) -> None:
        for pane in self.panes:
            pane.stop.set()
