"""The comparison core: one prompt to every contender at once, streamed, stored, rated.

Plain Python: the Gradio UI and the tests drive the same object. Generation comes in through the
`Streamer` seam, so tests can pass a plain function instead of a model.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator, Literal, Mapping

from feedback_db import (
    ComparisonRecord,
    Database,
    RatingRecord,
    RatingRefused,
    ResponseRecord,
    add_comparison,
    add_rating,
    add_response,
)
from models.generation import GenerationResult, PromptReady, Streamer
from models.prompt_format import PromptError, validate_messages
from models.specs import GenerationParams, LineupSpec, WeightsSpec
from playground.arena import ArenaSampler
from playground.session import PARAM_FIELDS, Pane, PlaygroundError, Session, Vote
from playground.view import letter

MAX_PROMPT_CHARS = 8000
log = logging.getLogger(__name__)
MAX_PANES = 4


@dataclass(frozen=True)
class _Turn:
    """What one run sends: the prompt, the system prompt, and each pane's conversation before it."""

    prompt: str
    system_prompt: str | None
    number: int
    parent_id: str | None
    histories: list[list[dict[str, str]]]


class Playground:
    """Runs comparisons for a lineup and records them in the feedback database."""

    def __init__(self, lineup: LineupSpec, streamer: Streamer, database: Database, *,
                 mode: Literal["named", "arena"] = "named", refresh_s: float = 0.05,
                 rng: random.Random | None = None, revisions: Mapping[WeightsSpec, str] | None = None,
                 sampler: ArenaSampler | None = None) -> None:
        self.lineup, self.streamer, self.database, self.mode = lineup, streamer, database, mode
        self.sampler = (sampler or ArenaSampler()) if mode == "arena" else None
        if self.sampler:
            self.sampler.groups(lineup.contenders)  # fail at start on settings that name nobody
            if self.sampler.size > MAX_PANES:
                raise ValueError(f"an arena shows at most {MAX_PANES} answers side by side, "
                                 f"--arena-size is {self.sampler.size}")
        elif len(lineup.contenders) > MAX_PANES:
            raise ValueError(f"lineup {lineup.name!r} has {len(lineup.contenders)} contenders; named mode shows "
                             f"at most {MAX_PANES} side by side: use arena mode to sample pairs from it")
        self.refresh_s = refresh_s  # at most this often a new snapshot goes to the page
        self.rng = rng or random.SystemRandom()
        self.revisions = dict(revisions or {})  # weights -> resolved commit, when known

    @property
    def pane_count(self) -> int:
        return self.sampler.size if self.sampler else len(self.lineup.contenders)

    def new_session(self) -> Session:
        """A fresh conversation with the contenders in random pane positions (position bias)."""
        if self.sampler:
            contenders = list(self.sampler.sample(self.lineup.contenders, self.rng))
        else:
            contenders = list(self.lineup.contenders)
            self.rng.shuffle(contenders)
        return Session(panes=[Pane(position=i, contender=c) for i, c in enumerate(contenders)],
                       mode=self.mode)

    def set_override(self, session: Session, name: str, value: float | int | None) -> None:
        """Record a parameter the person changed; None goes back to each contender's preset."""
        if name not in PARAM_FIELDS:
            raise PlaygroundError(f"unknown parameter {name!r}; known: {', '.join(PARAM_FIELDS)}")
        if value is None:
            session.overrides.pop(name, None)
            return
        if name in ("top_k", "max_new_tokens") and isinstance(value, float) and value.is_integer():
            value = int(value)  # sliders send 50.0 for 50
        candidate = dict(session.overrides, **{name: value})
        try:
            GenerationParams().with_overrides(**candidate)
        except ValueError as error:
            raise PlaygroundError(str(error)) from None
        session.overrides = candidate

    def ask(self, session: Session, prompt: str, system_prompt: str | None = None) -> Iterator[Session]:
        """Send `prompt` to every contender; yield the session as answers stream in."""
        prompt = (prompt or "").strip()
        if not prompt:
            raise PlaygroundError("the prompt is empty: type a question or pick an example")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise PlaygroundError(f"the prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        self._refuse_if_busy(session)
        if session.comparison_id is None:
            turn, parent, histories = 0, None, [list(p.history) for p in session.panes]
        else:  # the finished exchange joins each pane's own conversation
            turn, parent = session.turn + 1, session.comparison_id
            histories = [p.history + [{"role": "user", "content": session.last_prompt or ""},
                                      {"role": "assistant", "content": p.text}] for p in session.panes]
        yield from self._run(session, _Turn(prompt, (system_prompt or "").strip() or None, turn, parent, histories))

    def regenerate(self, session: Session) -> Iterator[Session]:
        """Run the last turn again as a new comparison (the old one stays stored)."""
        self._refuse_if_busy(session)
        if session.last_prompt is None:
            raise PlaygroundError("nothing to regenerate yet: ask something first")
        yield from self._run(session, _Turn(session.last_prompt, session.system_prompt, session.turn,
                                            session.parent_id, [list(p.history) for p in session.panes]))

    def stop(self, session: Session) -> None:
        session.stop.set()

    def clear(self, session: Session) -> Session:
        """Stop whatever runs and start a new conversation; the old session's stream yields no more."""
        session.replaced = True
        session.stop.set()
        return self.new_session()

    @staticmethod
    def _refuse_if_busy(session: Session) -> None:
        if session.busy:
            raise PlaygroundError("the answers are still streaming: wait for them or press Stop")

    def _run(self, session: Session, turn: _Turn) -> Iterator[Session]:
        """Store the comparison, then stream every pane; the session changes only once it is stored."""
        plans = []
        for pane, history in zip(session.panes, turn.histories):
            system = turn.system_prompt or pane.contender.system_prompt
            head = [{"role": "system", "content": system}] if system else []
            try:
                messages = validate_messages(head + history + [{"role": "user", "content": turn.prompt}])
            except PromptError as error:
                raise PlaygroundError(str(error)) from None
            plans.append((pane, messages, session.params_for(pane), self.rng.randrange(2**31)))
        stop, comparison_id = threading.Event(), uuid.uuid4().hex
        session.stop = stop  # before the write, so a Stop pressed meanwhile is not lost
        try:
            with self.database.session() as db:
                add_comparison(db, ComparisonRecord(
                    id=comparison_id, lineup=self.lineup.name, mode=session.mode, session_id=session.id,
                    turn=turn.number, parent_id=turn.parent_id, system_prompt=turn.system_prompt,
                    prompt=turn.prompt, n_responses=len(session.panes),
                    sampling=self.sampler.describe() if self.sampler else None))
        except Exception:
            log.exception("storing comparison %s failed", comparison_id)
            raise PlaygroundError("the comparison could not be stored, so nothing was sent; "
                                  "please try again in a moment") from None
        for pane, history in zip(session.panes, turn.histories):
            pane.history = history
        session.comparison_id, session.rated = comparison_id, False
        session.turn, session.parent_id = turn.number, turn.parent_id
        session.last_prompt, session.system_prompt = turn.prompt, turn.system_prompt
        # Busy until the last pane thread ends, even if the page goes away first: a new run must
        # never share panes with threads of the old one.
        session.running = len(plans)
        wakeups: queue.Queue[int] = queue.Queue()
        for pane, messages, params, seed in plans:
            pane.reset_answer()
            threading.Thread(target=self._contender, daemon=True, name=f"pane-{pane.position}",
                             args=(session, comparison_id, pane, messages, params, seed, wakeups)).start()
        try:
            yield from self._collect(session, wakeups)
        finally:
            if not session.all_finished:  # the page went away mid-stream: stop the threads
                stop.set()

    def _collect(self, session: Session, wakeups: queue.Queue) -> Iterator[Session]:
        """Yield the session whenever the panes changed, at most every refresh_s."""
        last_yield = 0.0
        while session.busy:  # each thread's last wakeup comes after it stopped counting as running
            wakeups.get()
            if session.replaced:  # Clear was pressed: a late snapshot must not bring this session back
                return
            wait = self.refresh_s - (time.perf_counter() - last_yield)
            if wait > 0 and session.busy:
                time.sleep(wait)  # batch the tokens that arrive meanwhile into one update
            last_yield = time.perf_counter()
            yield session
        if not session.replaced:
            yield session

    def _contender(self, session: Session, comparison_id: str, pane: Pane, messages: list[dict[str, str]],
                   params: GenerationParams, seed: int, wakeups: queue.Queue) -> None:
        """Thread body: stream one contender into its pane, store the response, mark it finished.

        Only this thread writes the pane's fields; the collecting loop only reads them.
        """
        started, result, error, prompt = time.perf_counter(), None, None, None
        try:
            for event in self.streamer(pane.contender, messages, params, stop=session.stop, seed=seed):
                if isinstance(event, GenerationResult):
                    result = event
                elif isinstance(event, PromptReady):
                    prompt, pane.prompt_text = event, event.text
                else:
                    pane.text, pane.status = pane.text + event, "streaming"
                    wakeups.put(pane.position)
        except Exception as exc:  # one contender failing must not take the others down
            error = f"{type(exc).__name__}: {exc}"
        if result is None and not error:
            error = "the generator ended without a result"
        text = result.text if result else pane.text
        try:
            record = self._record(comparison_id, pane, messages, params, seed, prompt, result, error,
                                  text, time.perf_counter() - started)
            with self.database.session() as db:
                add_response(db, record)
        except Exception:  # the pane must still finish, or the page would wait forever
            log.exception("storing the answer of %s to %s failed", pane.contender.name, comparison_id)
            error = "the answer could not be stored (the server log has the details)"
        pane.result, pane.error, pane.text = result, error, text
        pane.status = "error" if error else ("stopped" if result.finish_reason == "stopped" else "done")
        with session.lock:
            session.running -= 1
        wakeups.put(pane.position)

    def _record(self, comparison_id: str, pane: Pane, messages: list[dict[str, str]], params: GenerationParams,
                seed: int, prompt: PromptReady | None, result: GenerationResult | None, error: str | None,
                text: str, elapsed_s: float) -> ResponseRecord:
        """Everything needed to reproduce one answer, as stored."""
        weights = pane.contender.weights
        return ResponseRecord(
            comparison_id=comparison_id, position=pane.position, contender=pane.contender.name,
            weights_id=weights.id, weights_revision=self.revisions.get(weights) or weights.revision,
            messages=messages, prompt_rendered=prompt.text if prompt else "", params=params.as_dict(),
            seed=seed, text=text, finish_reason=result.finish_reason if result and not error else "error",
            error=error, prompt_tokens=result.prompt_tokens if result else (prompt.tokens if prompt else 0),
            completion_tokens=result.completion_tokens if result else 0,
            time_to_first_token_s=result.time_to_first_token_s if result else None,
            duration_s=result.duration_s if result else elapsed_s,
            tokens_per_s=result.tokens_per_s if result else None,
        )

    def rate(self, session: Session, vote: Vote) -> str:
        """Store the person's rating of the comparison on screen; return a thank-you message."""
        if session.comparison_id is None:
            raise PlaygroundError("there is nothing to rate yet: ask something first")
        if not session.all_finished or session.busy:
            raise PlaygroundError("wait until every answer has finished before rating")
        if session.rated:
            raise PlaygroundError("this comparison was already rated; ask something new to rate again")
        two = len(session.panes) == 2
        try:
            record = RatingRecord(
                comparison_id=session.comparison_id, kind="pairwise" if two else "scores",
                choice=vote.choice if two else None, strength=vote.strength if two else None,
                scores={} if two else dict(vote.scores), unsafe=dict(vote.unsafe),
                comment=(vote.comment or "").strip() or None, blind=session.blind)
            with self.database.session() as db:
                add_rating(db, record)
        except (ValueError, RatingRefused) as error:
            raise PlaygroundError(str(error)) from None
        session.rated = True
        if session.mode == "arena" and not session.revealed:
            session.revealed = True
            names = ", ".join(f"{letter(p.position)} was {p.contender.name}" for p in session.panes)
            return f"Thank you: your rating is stored. {names}."
        return "Thank you: your rating is stored."
