"""The compare tab's event handlers: each a short adapter from a Gradio request onto `Playground`."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterator, TypeVar

import gradio as gr

from playground.comparison import Playground
from playground.conversation import Conversation
from playground.conversations import ConversationStore
from playground.errors import PlaygroundError
from playground.guard import OpenStreams
from playground.params import PARAM_FIELDS
from playground.ui_page import Lighter, Page, changed_only
from playground.ui_sessions import LeanStateHolder
from playground.ui_tabs import refusal
from playground.view import pane_params
from playground.voting import FormError, vote_from_form

Handler = TypeVar("Handler", bound=Callable[..., Any])


def refusals(handler: Handler) -> Handler:
    """A core refusal (PlaygroundError, FormError) becomes a message on the page, not a fault."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streaming(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from handler(*args, **kwargs)
            except (PlaygroundError, FormError) as error:
                raise refusal(str(error)) from None

        return streaming  # type: ignore[return-value]

    @functools.wraps(handler)
    def answering(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except (PlaygroundError, FormError) as error:
            raise refusal(str(error)) from None

    return answering  # type: ignore[return-value]


def visitor_key(core: Playground, request: gr.Request | None) -> str | None:
    """The asker's key: a salted hash of the address the server saw (never what the browser says,
    unless trusted proxies put it in X-Forwarded-For)."""
    if core.visitors is None or request is None:
        return None
    host = getattr(getattr(request, "client", None), "host", None)
    return core.visitors.key(host, (getattr(request, "headers", None) or {}).get("x-forwarded-for"))


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or ""


def token_of(value: Any) -> str:
    """The form token the page sent; anything but a string (null included) is a wrong token, never none."""
    return value if isinstance(value, str) else ""


class CompareHandlers:
    """Every handler of the compare tab, over one core, conversation store and page."""

    def __init__(
        self, demo: gr.Blocks, core: Playground, store: ConversationStore, streams: OpenStreams, page: Page
    ) -> None:
        self.demo, self.core, self.store, self.streams, self.page = demo, core, store, streams, page

    # What every snapshot of a run updates: the panes, the rating form and the status line.
    @property
    def outputs(self) -> list[Any]:
        return self.page.shown + self.page.form + [self.page.status]

    def conversation(self, request: gr.Request | None) -> Conversation:
        return self.store.get(session_of(request))

    def visitor(self, request: gr.Request | None) -> str | None:
        return visitor_key(self.core, request)

    def streamed(self, run: Iterator[Conversation], prompt_box: bool) -> Iterator[dict[Any, Any]]:
        """Snapshots of a run; the first clears the rating form and the last thank-you (later ones
        repeat the cleared values, which Gradio's diff does not send, so nothing typed is lost); with
        `prompt_box`, the prompt box is emptied too."""
        page, lighter, last = self.page, Lighter(), None
        emptied = {page.prompt: ""} if prompt_box else {}
        for last in run:  # a question waiting for its place stays in the prompt box until it starts
            yield lighter(page.render(last) | page.empty_form() | ({} if last.queue_place else emptied))
        if last is not None and not last.replaced:  # what an API client keeps: every property (labels name models)
            # Gradio sends this last one whole, not as a diff: the form, the status and the prompt box are
            # left out (skipped), or what the person began (a rank, a next question) would be wiped.
            yield page.render(last)

    def check_ask(self, text: Any, system_prompt: Any, token: Any, request: gr.Request) -> list[Any]:
        """Before queueing: refuse an empty prompt, a busy conversation, a stale page or a visitor over
        their limits on the prompt box, leaving the panes as they are (the run checks again, atomically)."""
        try:
            self.core.check_can_ask(self.conversation(request), text, token_of(token), self.visitor(request))
        except PlaygroundError as error:
            return [gr.validate(False, str(error)), gr.validate(True, ""), gr.validate(True, "")]
        self.streams.joined(session_of(request))
        return [gr.validate(True, "")] * 3

    def present(self, request: gr.Request) -> Conversation:
        """The conversation, if its page still reads the answers; an ask nobody would see is dropped
        before it generates (a script can join thousands and read none)."""
        c = self.conversation(request)
        if not self.streams.wait(session_of(request)):
            self.core.abandon(c)
            raise refusal("this page stopped listening before its question's turn came; ask again")
        return c

    @refusals
    def ask(self, text: Any, system_prompt: Any, token: Any, request: gr.Request) -> Iterator[dict[Any, Any]]:
        yield from self.streamed(
            self.core.ask(
                self.present(request), text, system_prompt, form_token=token_of(token), visitor=self.visitor(request)
            ),
            True,
        )

    @refusals
    def again(self, token: Any, request: gr.Request) -> Iterator[dict[Any, Any]]:
        yield from self.streamed(
            self.core.regenerate(self.present(request), form_token=token_of(token), visitor=self.visitor(request)),
            False,
        )

    def check_rating(self, request: gr.Request, token: Any, *values: Any) -> list[Any]:
        """Before queueing: an incomplete or malformed form is refused on the form, not on the panes."""
        ok = [gr.validate(True, "")] * (len(values) + 1)
        try:
            vote_from_form(self.page.n, self.page.form_values(list(values)))
        except FormError as error:
            return [ok[0], gr.validate(False, str(error)), *ok[2:]]
        return ok

    @refusals
    def rate(self, request: gr.Request, token: Any, *values: Any) -> dict[Any, Any]:
        c = self.conversation(request)
        message = self.core.rate(c, vote_from_form(self.page.n, self.page.form_values(list(values))), token_of(token))
        return self.page.render(c) | {self.page.status: message}

    def stopper(self, position: int | None) -> Callable[[gr.Request], None]:
        """Stop one pane's answer, or every pane's (None)."""

        def stop(request: gr.Request) -> None:
            self.core.stop(self.conversation(request), position)

        return stop

    def start_over(self, request: gr.Request) -> dict[Any, Any]:
        fresh = self.store.replace(session_of(request), self.core.clear(self.conversation(request)))
        return self.page.render(fresh) | self.page.empty_form()

    @refusals
    def pick(self, position: Any, token: Any, request: gr.Request) -> dict[Any, Any]:
        c = self.conversation(request)
        self.core.continue_with(c, position, token_of(token))
        return self.page.render(c)

    @refusals
    def set_overrides(self, request: gr.Request, on: Any, *values: Any) -> dict[Any, Any]:
        c, page = self.conversation(request), self.page
        self.core.set_overrides(c, dict(zip(PARAM_FIELDS, values)) if on is True else None)
        return {shown: pane_params(p, c) for shown, p in zip(page.params, c.panes)} | {
            slider: gr.Slider(interactive=on is True) for slider in page.sliders
        }

    def show_method(self, method: Any) -> dict[Any, Any]:
        return {score: gr.Radio(visible=method != "ranking") for score in self.page.scores} | {
            rank: gr.Radio(visible=method == "ranking") for rank in self.page.ranks
        }

    # "Your data" covers this browser session's comparisons asked from the requester's own address; the
    # browser names nothing but its own session hash.
    def session_ids(self, request: gr.Request) -> list[str]:
        return self.store.conversation_ids(session_of(request))

    def show_data(self, request: gr.Request) -> str:
        c = self.store.peek(session_of(request))
        rater = c.seat.id if c is not None and c.seat is not None else None
        return self.core.stored_about(self.session_ids(request), self.visitor(request), rater)

    @refusals
    def delete_ratings(self, request: gr.Request) -> dict[Any, Any]:
        """The session's ratings go, and so does the thank-you for the last one."""
        message = self.core.forget(
            self.store.peek(session_of(request)),
            self.session_ids(request),
            ratings_only=True,
            visitor=self.visitor(request),
        )
        return {self.page.data: message, self.page.status: ""}

    @refusals
    def delete_all(self, request: gr.Request) -> dict[Any, Any]:
        """Everything of this browser session goes, and the page starts over (its comparisons are gone)."""
        message = self.core.forget(
            self.conversation(request), self.session_ids(request), ratings_only=False, visitor=self.visitor(request)
        )
        return self.start_over(request) | {self.page.data: message}

    def on_load(self, request: gr.Request) -> dict[Any, Any]:
        """A new page shows its panes' contenders (in named mode) and presets. Only what differs from the
        page as built goes out: Gradio keeps a copy of every component updated for a session."""
        return changed_only(self.page.render(self.conversation(request)))

    def forget(self, request: gr.Request) -> None:
        """The page closed: its conversation stops and goes, and so does Gradio's state of the session."""
        self.store.drop(session_of(request))
        holder = getattr(self.demo, "state_holder", None)
        if isinstance(holder, LeanStateHolder):
            holder.forget(session_of(request))
