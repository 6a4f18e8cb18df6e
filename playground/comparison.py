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
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from feedback_db import (
    ComparisonRecord,
    Database,
    LimitReached,
    RatingRecord,
    RatingRefused,
    ResponseRecord,
    add_comparison_within,
    add_rating,
    add_response,
    check_visitor_limits,
    delete_session_data,
    new_id,
    session_data,
    storable,
)
from models.prompt_format import PromptError, validate_messages
from models.specs import GenerationParams, LineupSpec, WeightsSpec
from models.streaming import GenerationResult, PromptReady, ServedBy, Streamer, StreamFailure, drop_oldest_exchanges
from playground.admission import Admission, Ticket
from playground.arena import ArenaSampler
from playground.conversation import BUSY, Conversation, HistoryMode, Mode, Pane, Turn, letter
from playground.errors import PlaygroundError, SettingsError
from playground.markup import shown_as_text
from playground.metrics import Metrics, counted_refusals
from playground.params import checked_overrides
from playground.raters import RaterPolicy, Raters
from playground.visitors import InFlight, VisitorPolicy
from playground.voting import Vote, preferred_position

MAX_PROMPT_CHARS = 8000
MAX_PANES = 4
MAX_TURNS = 50  # per conversation: a public demo must not grow one conversation without end
UNEXPECTED = "this answer failed on the server; the other answers went on, and the server's log has the details"
PAGE_BEHIND = (
    "this page is behind: the conversation has moved on since it was shown. Look at the answers on "
    "screen now and try again"
)
STALE_FORM = "this rating form was filled in for earlier answers; rate the answers on screen now"
WAITING_RESEND_S = 15.0  # a waiting page whose place has not changed is sent again after this long

log = logging.getLogger(__name__)


def checked_prompt(prompt: object, limit: int = MAX_PROMPT_CHARS) -> str:
    """The prompt as sent, stripped; PlaygroundError when there is nothing to send or more than `limit`
    characters."""
    if prompt is not None and not isinstance(prompt, str):
        raise PlaygroundError(f"the prompt must be text, got {type(prompt).__name__}")
    prompt = storable(prompt or "").strip()  # what the models see is what is stored, on every backend
    if not _visible(prompt):  # zero-width characters and a BOM are as empty as spaces
        raise PlaygroundError("the prompt is empty: type a question or pick an example")
    if len(prompt) > limit:
        raise PlaygroundError(f"the prompt is {len(prompt)} characters; the limit is {limit}")
    return prompt


def _visible(text: str) -> bool:
    """Whether `text` shows anything: not only spaces, controls and format characters (Unicode Cf:
    zero-width spaces and joiners, the BOM, soft hyphens, direction marks)."""
    return any(not c.isspace() and unicodedata.category(c) not in ("Cf", "Cc", "Zs") for c in text)


def _checked_system(system_prompt: object, limit: int = MAX_PROMPT_CHARS) -> str | None:
    """The system prompt as sent, stripped; None for none."""
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise PlaygroundError(f"the system prompt must be text, got {type(system_prompt).__name__}")
    system = storable(system_prompt or "").strip()
    if len(system) > limit:
        raise PlaygroundError(f"the system prompt is {len(system)} characters; the limit is {limit}")
    return system or None


def _over_limit(reached: LimitReached) -> PlaygroundError:
    later = "in a minute" if reached.window == "minute" else "tomorrow"
    return PlaygroundError(
        f"you have asked {reached.used} questions in the last {reached.window}, and this demo "
        f"takes {reached.limit} per {reached.window} from each visitor: please try again {later}"
    )


def _short(text: str, limit: int = 80) -> str:
    """One line of at most `limit` characters, for markdown: markup in it shows as text."""
    text = " ".join(text.split())
    return shown_as_text(text if len(text) <= limit else text[: limit - 1] + "…")


def snapshot_interval(refresh_s: float, streaming: int) -> float:
    """Seconds between two snapshots of one comparison while `streaming` comparisons stream.

    Each snapshot costs the page's server about 10 ms of CPU (render, Gradio's postprocessing and
    diff), so the interval grows with the comparisons streaming: the page's updates then take the
    same CPU however many run, and the rest is left to decoding (bench/README.md).
    """
    return refresh_s * max(1, streaming)


@dataclass(frozen=True)
class PaneRun:
    """One pane's part of a comparison, as its thread runs it: what it sends, and where it reports."""

    pane: Pane
    messages: list[dict[str, str]]
    params: GenerationParams
    seed: int
    wakeups: queue.Queue  # the pane's position, each time it changed
    ticket: Ticket  # admission's: its token times, and its end


class Playground:
    """Runs comparisons for a lineup and records them in the feedback database."""

    def __init__(
        self,
        lineup: LineupSpec,
        streamer: Streamer,
        database: Database,
        *,
        mode: Mode = "named",
        history: HistoryMode | None = None,
        refresh_s: float = 0.05,
        rng: random.Random | None = None,
        revisions: Mapping[WeightsSpec, str] | None = None,
        served_ids: Mapping[WeightsSpec, str] | None = None,
        sampler: ArenaSampler | None = None,
        visitors: VisitorPolicy | None = None,
        raters: RaterPolicy | None = None,
        max_prompt_chars: int = MAX_PROMPT_CHARS,
        metrics: Metrics | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.lineup, self.streamer, self.database, self.mode = lineup, streamer, database, mode
        if max_prompt_chars < 1:
            raise SettingsError(f"--max-prompt-chars must be 1 or more, not {max_prompt_chars}")
        self.max_prompt_chars = max_prompt_chars  # per prompt and per system prompt
        self.raters = Raters(database, raters or RaterPolicy())  # who may rate, and under which terms
        self.visitors = visitors  # per-visitor limits; None: none
        self.in_flight = InFlight(visitors.in_flight if visitors else None)
        # Who generates now; without one, every comparison at once (the page's queue caps them).
        self.admission = admission or Admission(max_running=10_000, min_tokens_per_s=0)
        engines = getattr(streamer, "engines", None)
        self.metrics = (metrics or Metrics()).watch(database, engines, self.admission)  # for /metrics
        # Arena data is for training: every later turn must be a pair with one prompt (HH protocol).
        self.history: HistoryMode = history or ("shared" if mode == "arena" else "own")
        self.sampler = (sampler or ArenaSampler()) if mode == "arena" else None
        if self.sampler:
            self.sampler.groups(lineup.contenders)  # fail at start on settings that name nobody
            if self.sampler.size > MAX_PANES:
                raise SettingsError(
                    f"an arena shows at most {MAX_PANES} answers side by side, --arena-size is {self.sampler.size}"
                )
        elif len(lineup.contenders) > MAX_PANES:
            raise SettingsError(
                f"lineup {lineup.name!r} has {len(lineup.contenders)} contenders; named mode shows "
                f"at most {MAX_PANES} side by side: use arena mode to sample pairs from it"
            )
        self.refresh_s = refresh_s  # at most this often a new snapshot goes to the page (one comparison)
        self.streaming = 0  # comparisons whose snapshots are being collected now
        self._count_lock = threading.Lock()
        # Conversations with answers still generating, by id (a Conversation is not hashable): shutdown.
        self._running: dict[int, Conversation] = {}
        self._idle = threading.Condition(self._count_lock)
        self.rng = rng or random.SystemRandom()
        self.revisions = dict(revisions or {})  # weights -> resolved commit, when known
        self.served_ids = dict(served_ids or {})  # weights -> the id they were loaded from, when not their own

    @property
    def pane_count(self) -> int:
        return self.sampler.size if self.sampler else len(self.lineup.contenders)

    def new_conversation(self) -> Conversation:
        """A fresh conversation with the contenders in random pane positions (position bias)."""
        if self.sampler:
            contenders = list(self.sampler.sample(self.lineup.contenders, self.rng))
        else:
            contenders = list(self.lineup.contenders)
            self.rng.shuffle(contenders)
        return Conversation(
            panes=[Pane(position=i, contender=c) for i, c in enumerate(contenders)],
            mode=self.mode,
            history_mode=self.history,
        )

    def set_overrides(self, conversation: Conversation, values: Mapping[str, Any] | None) -> None:
        """Override every contender's preset with `values` from the next question on; None: presets again."""
        conversation.overrides = checked_overrides(values) if values else {}

    @counted_refusals
    def ask(
        self,
        conversation: Conversation,
        prompt: str,
        system_prompt: str | None = None,
        *,
        form_token: str | None = None,
        visitor: str | None = None,
    ) -> Iterator[Conversation]:
        """Send `prompt` to every contender; yield the conversation as answers stream in.

        `form_token` is the token of the comparison the page shows ("" for none): a request from a
        page that is behind (a second click, a second tab) is refused instead of starting a turn.
        `visitor` is the asker's key (VisitorPolicy.key), stored with the comparison and counted
        against the per-visitor limits.
        """
        prompt = checked_prompt(prompt, self.max_prompt_chars)
        system = _checked_system(system_prompt, self.max_prompt_chars)
        yield from self._admitted(
            conversation,
            visitor,
            self._claimed_run(conversation, form_token, lambda: self._next_turn(conversation, prompt, system), visitor),
        )

    @counted_refusals
    def regenerate(
        self, conversation: Conversation, *, form_token: str | None = None, visitor: str | None = None
    ) -> Iterator[Conversation]:
        """Run the last turn again as a new comparison (the old one stays stored)."""
        yield from self._admitted(
            conversation,
            visitor,
            self._claimed_run(conversation, form_token, lambda: self._same_turn(conversation), visitor),
        )

    def _admitted(
        self, conversation: Conversation, visitor: str | None, run: Iterator[Conversation]
    ) -> Iterator[Conversation]:
        """The run, counted as the visitor's running comparison until it ends (InFlight)."""
        if not self.in_flight.start(visitor, conversation.id):
            raise PlaygroundError(self._in_flight_refusal())
        try:
            yield from run
        finally:
            self.in_flight.finish(visitor, conversation.id)

    def abandon(self, conversation: Conversation) -> None:
        """An ask whose page is gone before its run started: its place in the visitor's count goes."""
        self.in_flight.forget(conversation.id)

    @counted_refusals
    def check_can_ask(
        self, conversation: Conversation, prompt: object, form_token: str | None, visitor: str | None = None
    ) -> None:
        """What can be refused before a request waits in a queue: the prompt, a busy or stale page, a
        visitor over their limits or with as many asks running and waiting as `in_flight` allows.

        Called where a request joins the queue: an ask it passes holds one of the visitor's places
        until its run ends (or `abandon`). The run itself checks the rest again, atomically.
        """
        checked_prompt(prompt, self.max_prompt_chars)
        self.raters.check_terms(conversation.seat)
        if conversation.busy:
            raise PlaygroundError(BUSY)
        self.check_current(conversation, form_token)
        self.check_limits(visitor)
        if not self.in_flight.admit(visitor, conversation.id):  # last: once admitted, the ask holds a place
            raise PlaygroundError(self._in_flight_refusal())

    def _in_flight_refusal(self) -> str:
        return (
            f"you have {self.in_flight.limit} questions running or waiting already, and this demo takes no "
            "more at once from one visitor: wait until an answer has finished"
        )

    def check_limits(self, visitor: str | None) -> None:
        """Refuse a visitor who has asked as much as the limits allow, with the numbers."""
        windows = self.visitors.windows() if self.visitors and visitor else []
        if not windows:
            return
        try:
            with self.database.snapshot() as db:
                check_visitor_limits(db, visitor, windows)
        except LimitReached as reached:
            raise _over_limit(reached) from None

    def stop(self, conversation: Conversation, position: int | None = None) -> None:
        """Stop one pane's answer (it is kept and rated as it stands), or every pane's."""
        if position is None:
            conversation.stop_all()
            return
        conversation.panes[self._position(conversation, position)].stop.set()

    def clear(self, conversation: Conversation) -> Conversation:
        """Stop whatever runs and start a new conversation; the old one's stream yields no more. The
        session's rater stays."""
        conversation.retire()
        self.in_flight.forget(conversation.id)  # an ask of it still waiting in the queue is cancelled
        fresh = self.new_conversation()
        fresh.seat = conversation.seat
        return fresh

    def continue_with(self, conversation: Conversation, position: int, form_token: str | None = None) -> None:
        """Shared history: the person picks the answer the next turn continues from."""
        self.check_current(conversation, form_token)
        if conversation.comparison_id is None or not conversation.all_finished:
            raise PlaygroundError("pick the answer to continue from once every answer has finished")
        pane = conversation.panes[self._position(conversation, position)]
        if pane.status == "error":
            raise PlaygroundError(f"answer {letter(pane.position)} failed; continue from another one")
        conversation.continue_from = pane.position

    @staticmethod
    def _position(conversation: Conversation, position: object) -> int:
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(conversation.panes):
            raise PlaygroundError(f"there is no answer {position!r:.20} on screen")
        return position

    @staticmethod
    def check_current(conversation: Conversation, form_token: str | None, refusal: str = PAGE_BEHIND) -> None:
        """Refuse a request from a page that shows an earlier comparison than the conversation's.

        None is for callers without a page (scripts, tests); the page always sends a string, and a
        missing or malformed token from it is a wrong one (ui.py turns it into "").
        """
        if form_token is not None and form_token != (conversation.form_token or ""):
            raise PlaygroundError(refusal)

    def _next_turn(self, conversation: Conversation, prompt: str, system: str | None) -> Turn:
        """The turn after the one on screen: each pane's own history, or the preferred answer's for all."""
        panes = conversation.panes
        if conversation.comparison_id is None:
            return Turn(prompt, system, 0, None, [list(p.history) for p in panes])
        exchange = [{"role": "user", "content": conversation.last_prompt or ""}]
        number, parent = conversation.turn + 1, conversation.comparison_id
        if number >= MAX_TURNS:
            raise PlaygroundError(
                f"this conversation has {number} turns, the most one may have is {MAX_TURNS}: "
                "press Clear to start a new one"
            )
        if conversation.history_mode == "own":
            return Turn(
                prompt,
                system,
                number,
                parent,
                [p.history + exchange + [{"role": "assistant", "content": p.text}] for p in panes],
            )
        if conversation.continue_from is None:
            raise PlaygroundError(
                "vote first, or pick the answer to continue from: every answer of the next "
                "question continues from the same conversation"
            )
        source = panes[conversation.continue_from]
        shared = source.history + exchange + [{"role": "assistant", "content": source.text}]
        return Turn(prompt, system, number, parent, [list(shared) for _ in panes], source.response_id)

    @staticmethod
    def _same_turn(conversation: Conversation) -> Turn:
        """The turn on screen again, with the same histories."""
        if conversation.last_prompt is None:
            raise PlaygroundError("nothing to regenerate yet: ask something first")
        return Turn(
            conversation.last_prompt,
            conversation.system_prompt,
            conversation.turn,
            conversation.parent_id,
            [list(p.history) for p in conversation.panes],
            conversation.continued_from,
        )

    def _claimed_run(
        self,
        conversation: Conversation,
        form_token: str | None,
        make_turn: Callable[[], Turn],
        visitor: str | None = None,
    ) -> Iterator[Conversation]:
        """Claim the conversation, store the comparison, then stream every pane.

        The claim comes first: two requests at once must never both pass the checks after it. The
        conversation changes only once the comparison is stored; until the pane threads start, any
        failure hands the claim back, and afterwards the last pane thread to end releases it.
        """
        conversation.claim()
        try:
            self.raters.check_terms(conversation.seat)
            self.check_current(conversation, form_token)
            turn = make_turn()
            plans = self._plans(conversation, turn)
            for pane in conversation.panes:  # before the write, so a Stop pressed meanwhile is not lost
                pane.stop = threading.Event()
            ticket = yield from self._wait_for_turn(conversation, plans)
            if ticket is None:  # Clear was pressed while it waited: nothing was stored or sent
                conversation.release()
                return
            try:
                comparison_id = self._store_comparison(conversation, turn, visitor)
            except BaseException:
                self.admission.leave(ticket)
                raise
        except BaseException:
            conversation.release()
            raise
        conversation.begin(comparison_id, turn, len(plans))
        self.metrics.comparison_started()
        with self._count_lock:
            self._running[id(conversation)] = conversation
        stops = [pane.stop for pane in conversation.panes]
        wakeups: queue.Queue[int] = queue.Queue()
        for pane, messages, params, seed in plans:
            pane.reset_answer()
            pane.params = params
            threading.Thread(
                target=self._contender,
                daemon=True,
                name=f"pane-{pane.position}",
                args=(conversation, comparison_id, PaneRun(pane, messages, params, seed, wakeups, ticket)),
            ).start()
        try:
            yield from self._collect(conversation, wakeups)
        finally:
            if conversation.running:  # the page went away mid-stream: stop this run's threads
                for stop in stops:
                    stop.set()

    def _wait_for_turn(self, conversation: Conversation, plans: list) -> Iterator[Conversation]:
        """Wait in line until admission lets this comparison generate (playground/admission.py); each
        second the page is told its place and the estimated wait. Returns the ticket, or None when Clear
        was pressed meanwhile; a page that goes away leaves the line."""
        # Panes on the same weights share one engine, whose slowdown with more streams admission learns.
        local = {pane.position: pane.contender.weights for pane, *_ in plans if pane.contender.endpoint is None}
        ticket = self.admission.join(local)
        shown_at = 0.0
        try:
            while (exact := self.admission.place(ticket)) is not None:
                place = exact.readable()
                self.metrics.set_waiting(self.admission.waiting)
                # The page is sent again only when its words change, or now and then: every page sent
                # is Python work that holds the interpreter from the decode thread (one thread busy a
                # third of the time slowed three streams from 16.5 to 12.6 tok/s), and fifteen
                # waiting pages sent every second did that.
                if place != conversation.queue_place or time.monotonic() - shown_at >= WAITING_RESEND_S:
                    conversation.queue_place, shown_at = place, time.monotonic()
                    yield conversation
                if conversation.replaced:
                    self.admission.leave(ticket)
                    return None
                ticket.admitted.wait(1.0)
        except BaseException:
            self.admission.leave(ticket)
            raise
        finally:
            conversation.queue_place = None
            self.metrics.set_waiting(self.admission.waiting)
        return ticket

    def _plans(self, conversation: Conversation, turn: Turn) -> list[tuple[Pane, list, GenerationParams, int]]:
        plans = []
        for pane, history in zip(conversation.panes, turn.histories):
            system = turn.system_prompt or pane.contender.system_prompt
            head = [{"role": "system", "content": system}] if system else []
            try:
                messages = validate_messages(head + history + [{"role": "user", "content": turn.prompt}])
            except PromptError as error:
                raise PlaygroundError(str(error)) from None
            plans.append((pane, messages, conversation.params_for(pane), self.rng.randrange(2**31)))
        return plans

    def _store_comparison(self, conversation: Conversation, turn: Turn, visitor: str | None = None) -> str:
        comparison_id = new_id()
        # The asker, kept out of its own review queue; asks are held back by the visitor limits already.
        conversation.seat = self.raters.seat_for(conversation.seat)
        limits = self.visitors.windows() if self.visitors and visitor else []
        try:
            with self.database.session() as db:  # counted and stored at once: the limits hold under a burst
                add_comparison_within(
                    db,
                    ComparisonRecord(
                        id=comparison_id,
                        lineup=self.lineup.name,
                        mode=conversation.mode,
                        session_id=conversation.id,
                        turn=turn.number,
                        parent_id=turn.parent_id,
                        system_prompt=turn.system_prompt,
                        prompt=turn.prompt,
                        n_responses=len(conversation.panes),
                        sampling=self.sampler.describe() if self.sampler else None,
                        history=conversation.history_mode if turn.number else "own",
                        continued_from=turn.continued_from,
                        visitor=visitor,
                        asked_by=conversation.seat.id,
                    ),
                    limits,
                )
        except LimitReached as reached:
            raise _over_limit(reached) from None
        except Exception:
            log.exception("storing comparison %s failed", comparison_id)
            raise PlaygroundError(
                "the comparison could not be stored, so nothing was sent; please try again in a moment"
            ) from None
        return comparison_id

    def _collect(self, conversation: Conversation, wakeups: queue.Queue) -> Iterator[Conversation]:
        """Yield the conversation whenever the panes changed, at most every `snapshot_interval`.

        The first snapshot goes out as soon as the comparison exists, and a pane's first text is
        never held back: only later tokens are gathered into one update per interval.
        """
        with self._count_lock:
            self.streaming += 1
        try:
            yield conversation
            last_yield, started = time.perf_counter(), set()
            while conversation.running:  # each thread's last wakeup comes after it stopped counting
                wakeups.get()
                if conversation.replaced:  # Clear was pressed: a late snapshot must not bring this one back
                    return
                first_text = any(p.text and p.position not in started for p in conversation.panes)
                wait = snapshot_interval(self.refresh_s, self.streaming) - (time.perf_counter() - last_yield)
                if wait > 0 and conversation.running and not first_text:
                    time.sleep(wait)  # batch the tokens that arrive meanwhile into one update
                started.update(p.position for p in conversation.panes if p.text)
                last_yield = time.perf_counter()
                yield conversation
            if not conversation.replaced:
                yield conversation
        finally:
            with self._count_lock:
                self.streaming -= 1

    def _contender(self, conversation: Conversation, comparison_id: str, run: PaneRun) -> None:
        """Thread body: stream one contender into its pane, store the response, mark it finished.

        Only this thread writes the pane's fields; the collecting loop only reads them.
        """
        started, pane = time.perf_counter(), run.pane
        result, error, shown, prompt, served, messages = self._stream(run)
        self.admission.finish(run.ticket, pane.position)
        if result is None and not error:
            error = "the generator ended without a result"
        text = storable(result.text) if result else pane.text
        try:
            record = self._record(
                comparison_id,
                pane,
                messages,
                run.params,
                run.seed,
                prompt,
                result,
                error,
                text,
                time.perf_counter() - started,
                served,
            )
            with self.database.session() as db:
                add_response(db, record)
            pane.response_id = record.id
        except Exception:  # the pane must still finish, or the page would wait forever
            log.exception("storing the answer of %s to %s failed", pane.contender.name, comparison_id)
            error = "the answer could not be stored (the server log has the details)"
        pane.result, pane.error, pane.text = result, (shown if error and shown else error), text
        pane.status = "error" if error else ("stopped" if result.finish_reason == "stopped" else "done")
        self.metrics.answer_ended(pane.contender.name, pane.status, result)
        if conversation.answer_finished():  # the last thread of the run handed the conversation back
            self.admission.leave(run.ticket)
            self.metrics.comparison_ended(failed=any(p.status == "error" for p in conversation.panes))
            with self._count_lock:
                self._running.pop(id(conversation), None)
                self._idle.notify_all()
        run.wakeups.put(pane.position)

    def _stream(
        self, run: PaneRun
    ) -> tuple[GenerationResult | None, str | None, str | None, PromptReady | None, ServedBy | None, list]:
        """The contender's stream into its pane: (result, error, what the pane shows instead of the error,
        the prompt sent, the server that answered, the messages as sent)."""
        result, error, shown, prompt, served = None, None, None, None, None
        pane, messages = run.pane, run.messages
        try:
            for event in self.streamer(pane.contender, messages, run.params, stop=pane.stop, seed=run.seed):
                if isinstance(event, GenerationResult):
                    result = event
                elif isinstance(event, PromptReady):
                    prompt, pane.prompt_text = event, event.text
                    if event.dropped_exchanges:  # the record keeps what the model was sent
                        messages = drop_oldest_exchanges(messages, event.dropped_exchanges)
                        pane.notice = (
                            f"the {event.dropped_exchanges} oldest exchange"
                            f"{'s were' if event.dropped_exchanges > 1 else ' was'} left out to fit "
                            "the model's context"
                        )
                elif isinstance(event, ServedBy):
                    served = event
                else:
                    # The pane shows what will be stored (NUL from a byte token becomes U+FFFD).
                    pane.text, pane.status = pane.text + storable(event), "streaming"
                    self.admission.tick(run.ticket, pane.position)
                    run.wakeups.put(pane.position)
        except StreamFailure as exc:  # its message is written for the pane
            error = str(exc)
        except Exception as exc:  # one contender failing must not take the others down
            log.exception("the answer of %s failed", pane.contender.name)
            # The page gets a sentence; the record keeps what happened, for whoever owns the data.
            shown, error = UNEXPECTED, f"{type(exc).__name__}: {exc}"
        return result, error, shown, prompt, served, messages

    def _record(
        self,
        comparison_id: str,
        pane: Pane,
        messages: list[dict[str, str]],
        params: GenerationParams,
        seed: int,
        prompt: PromptReady | None,
        result: GenerationResult | None,
        error: str | None,
        text: str,
        elapsed_s: float,
        served: ServedBy | None = None,
    ) -> ResponseRecord:
        """Everything needed to reproduce one answer, as stored."""
        weights, endpoint = pane.contender.weights, pane.contender.endpoint
        remote = prompt.remote if prompt else None
        return ResponseRecord(
            id=new_id(),
            comparison_id=comparison_id,
            position=pane.position,
            contender=pane.contender.name,
            weights_id=endpoint.model if endpoint else self.served_ids.get(weights, weights.id),
            weights_revision=None if endpoint else self.revisions.get(weights) or weights.revision,
            endpoint=endpoint.url if endpoint else None,
            served_model=served.model[:500] if served else None,
            system_fingerprint=served.system_fingerprint[:200] if served and served.system_fingerprint else None,
            request={"api": remote.api, "template": remote.template, "body": dict(remote.body)} if remote else None,
            usage=result.usage if result else None,
            messages=messages,
            prompt_rendered=prompt.text if prompt else "",
            params=params.as_dict(),
            seed=seed,
            text=text,
            finish_reason=result.finish_reason if result and not error else "error",
            error=error,
            prompt_tokens=result.prompt_tokens if result else (prompt.tokens if prompt else 0),
            completion_tokens=result.completion_tokens if result else 0,
            time_to_first_token_s=result.time_to_first_token_s if result else None,
            duration_s=result.duration_s if result else elapsed_s,
            tokens_per_s=result.tokens_per_s if result else None,
        )

    def stored_about(self, conversation_ids: list[str], visitor: str | None = None, rater: str | None = None) -> str:
        """What the database holds about these conversations (one browser session's), as markdown.

        With `visitor`, only what that visitor asked: a session hash is chosen by the browser and travels
        in URLs, so it is not enough on its own to read what was asked from another address."""
        with self.database.snapshot() as db:
            found = session_data(db, conversation_ids, visitor)
            elsewhere = len(session_data(db, conversation_ids)) - len(found) if visitor is not None else 0
            lines = [_stored_line(c, rater) for c in found]
        other = (
            f"\n\n{elsewhere} more comparison{'s' if elsewhere != 1 else ''} of this session "
            f"{'were' if elsewhere != 1 else 'was'} asked from another network address: shown and deleted only "
            "from there."
            if elsewhere
            else ""
        )
        if not lines:
            return "Nothing is stored about this session." + other
        return (
            "Stored about this session (prompts, system prompts, the answers and your ratings; no name, and "
            "no address: only a salted hash of it, to limit how often one visitor asks):\n\n" + "\n".join(lines) + other
        )

    def forget(
        self,
        conversation: Conversation | None,
        conversation_ids: list[str],
        *,
        ratings_only: bool,
        visitor: str | None = None,
    ) -> str:
        """Delete this browser session's ratings, or everything stored about it (with `visitor`, what that
        visitor asked); what was deleted. `conversation` is the session's current one (None: it has none)."""
        if conversation is not None and conversation.busy:
            raise PlaygroundError("answers are still streaming: wait until they finish, or press Stop, first")
        with self.database.session() as db:
            rater = conversation.seat.id if conversation is not None and conversation.seat else None
            deleted = delete_session_data(db, conversation_ids, ratings_only=ratings_only, visitor=visitor, rater=rater)
        if ratings_only:
            return f"Deleted {deleted} rating{'s' if deleted != 1 else ''} of this session."
        return (
            f"Deleted {deleted} comparison{'s' if deleted != 1 else ''} of this session, with their answers and "
            "ratings."
        )

    def shutdown(self, timeout_s: float = 30.0) -> int:
        """Stop every answer still generating and wait (up to `timeout_s`) until each is stored as it
        stands, marked stopped; return how many comparisons were cut short. Called on SIGTERM."""
        with self._count_lock:
            running = list(self._running.values())
        for conversation in running:
            conversation.stop_all()
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(timeout=max(0.0, deadline - time.monotonic()))
        return len(running)

    def rate(self, conversation: Conversation, vote: Vote, form_token: str | None = None) -> str:
        """Store the person's rating of the comparison on screen; return a thank-you message.

        `form_token` must be the one issued with that comparison: a form filled in for an earlier
        comparison is refused, never stored against the answers on screen now.
        """
        if conversation.comparison_id is None:
            raise PlaygroundError("there is nothing to rate yet: ask something first")
        self.check_current(conversation, form_token, STALE_FORM)
        if not conversation.all_finished or conversation.busy:
            raise PlaygroundError(
                "wait until every answer has finished, or press Stop under the ones still streaming, before rating"
            )
        if conversation.rated:
            raise PlaygroundError("this comparison was already rated; ask something new to rate again")
        rater = self.raters.rating_fields(conversation.seat)
        if conversation.pairwise != (vote.kind == "pairwise"):
            raise PlaygroundError(
                "two answers take a verdict (A, B, tie or both bad)"
                if conversation.pairwise
                else "more than two answers take a 1-5 score or a rank each"
            )
        try:
            record = RatingRecord(
                comparison_id=conversation.comparison_id,
                kind=vote.kind,
                choice=vote.choice,
                strength=vote.strength,
                scores=dict(vote.scores),
                ranks=dict(vote.ranks),
                unsafe=dict(vote.unsafe),
                comment=(vote.comment or "").strip() or None,
                blind=conversation.blind,
                seconds_to_vote=seconds_since(conversation.finished_at),
                **rater,
            )
            with self.database.session() as db:
                add_rating(db, record)
        except (ValueError, RatingRefused) as error:
            raise PlaygroundError(str(error)) from None
        failed = {p.position for p in conversation.panes if p.status == "error"}
        revealing = conversation.rated_with(preferred_position(vote, len(conversation.panes), failed))
        message = "Thank you: your rating is stored."
        if revealing:
            names = ", ".join(f"{letter(p.position)} was {p.contender.name}" for p in conversation.panes)
            message += f" {names}."
        if conversation.history_mode == "shared" and conversation.continue_from is not None:
            message += f" Your next question continues from answer {letter(conversation.continue_from)} in every pane."
        return message


def _stored_line(c: Any, rater: str | None) -> str:
    """One stored comparison in "Your data": when, the prompt, and the rating this visitor gave it."""
    mine = next((r for r in c.ratings if r.rater is None or r.rater == rater), None)
    return (
        f"- {c.created_at:%Y-%m-%d %H:%M} UTC, turn {c.turn + 1}: “{_short(c.prompt)}” — {len(c.responses)} answers, "
        + ("rated" if mine is not None else "not rated")
        + (f", your comment: “{_short(mine.comment)}”" if mine and mine.comment else "")
    )


def seconds_since(moment: float | None) -> float | None:
    """Seconds from a time.monotonic() moment to now (None: not known)."""
    return max(0.0, time.monotonic() - moment) if moment is not None else None
