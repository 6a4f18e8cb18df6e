"""The Gradio page: wiring only; every handler is a short adapter onto `Playground`."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import gradio as gr

from playground.comparison import Playground
from playground.conversation import Conversation, PlaygroundError
from playground.conversations import UNASKED_TTL_S, ConversationStore
from playground.params import PARAM_FIELDS, PARAM_RANGES
from playground.downloads import OneTimeDownloads
from playground.guard import OpenStreams
from playground.ui_sessions import LeanStateHolder
from playground.ui_tabs import EXPORT_TTL_S, admin_tab, leaderboard_tab, refusal
from playground.view import (
    chat_messages,
    letter,
    pane_label,
    pane_params,
    pane_stats,
    rating_prompt,
    vote_hint,
)
from playground.voting import CHOICES, METHODS, SCORES, STRENGTHS, FormError, RatingForm, vote_from_form

EXAMPLES = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn rain.",
    "Give me three tips for a good night's sleep.",
]
# The prompt row stays at the bottom of the window while the page scrolls: on a phone the panes stack
# three screens tall, and the vote sits between them and the prompt.
CSS = """
.pane-stats { min-height: 1.2em; font-size: 0.85em; opacity: 0.8; margin: 0 !important; }
.pane-params { font-size: 0.8em; opacity: 0.7; margin: 0 !important; }
#prompt-row { position: fixed; left: 0; right: 0; bottom: 0; z-index: 50; margin: 0 auto; max-width: 1280px;
              padding: 8px 12px; background: var(--body-background-fill);
              box-shadow: 0 -2px 8px rgba(0, 0, 0, 0.12); }
.gradio-container { padding-bottom: 120px !important; }
@media (max-width: 700px) { .pane-chat { height: 280px !important; max-height: 280px !important; } }
/* The models and servers tables scroll sideways on a narrow screen instead of squeezing each column to
   a letter per line. */
#models-info table { display: block; overflow-x: auto; max-width: 100%; }
#models-info th, #models-info td { min-width: 6em; }
"""


def build_ui(core: Playground, *, title: str, notice: str, models_info: str = "", max_concurrent: int = 1,
             leaderboard_rounds: int = 1000, leaderboard_min_battles: int = 20,
             admin_token: str | None = None, conversation_ttl_s: float | None = None,
             unasked_ttl_s: float = UNASKED_TTL_S) -> gr.Blocks:
    """The page: the comparison tab, the leaderboard tab, and the data tab when an admin token is set.

    A page's conversation is forgotten after `conversation_ttl_s` without use, or `unasked_ttl_s` if it
    never asked anything; Gradio's own state of such a session goes then too (ui_sessions).
    """
    store = ConversationStore(core.new_conversation, unasked_ttl_s=unasked_ttl_s,
                              **({"ttl_s": conversation_ttl_s} if conversation_ttl_s else {}))
    downloads = OneTimeDownloads(EXPORT_TTL_S)  # the admin's exports: one-time links, served by the guard
    streams = OpenStreams()  # which pages read their events; the guard watches the requests
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n{core.lineup.description}")
        gr.Markdown(notice, elem_id="storage-notice")
        with gr.Tab("Compare"):
            _compare_tab(demo, core, store, streams, models_info, max_concurrent)
        leaderboard_tab(core.database, leaderboard_rounds, min_battles=leaderboard_min_battles)
        if admin_token:
            admin_tab(core.database, admin_token, core.lineup.name, downloads, lambda r: visitor_key(core, r) or "")
    demo.conversations = store
    demo.downloads = downloads  # for tests and operators: how many conversations the server holds
    demo.streams = streams
    demo.max_concurrent = max_concurrent
    return demo


class _Page:
    """The compare tab's components, and what each snapshot of a conversation sets them to."""

    def __init__(self, core: Playground, models_info: str) -> None:
        n, self.n, self.core = core.pane_count, core.pane_count, core
        self.chatbots, self.stats, self.params, self.stops = [], [], [], []
        with gr.Row(equal_height=True):
            for p in range(n):
                with gr.Column(min_width=320):
                    self.chatbots.append(gr.Chatbot(label=f"Model {letter(p)}", height=360, elem_id=f"pane-{p}",
                                                    elem_classes="pane-chat", buttons=["copy"]))
                    self.stats.append(gr.Markdown("", elem_classes="pane-stats", elem_id=f"stats-{p}"))
                    self.params.append(gr.Markdown("", elem_classes="pane-params", elem_id=f"params-{p}"))
                    self.stops.append(gr.Button(f"Stop {letter(p)}", size="sm", visible=False,
                                                elem_id=f"stop-{p}"))
        self.hint = gr.Markdown("", elem_id="vote-hint")
        with gr.Group(visible=False, elem_id="rating") as self.rating_box:
            self.heading = gr.Markdown("")
            if n == 2:
                self.choice = gr.Radio(list(CHOICES), label="Verdict", elem_id="choice")
                self.strength = gr.Radio(list(STRENGTHS), label="How much better (for A or B)", elem_id="strength")
                self.method, self.scores, self.ranks = None, [], []
            else:
                self.choice = self.strength = None
                self.scores, self.ranks = [], []
                self.method = gr.Radio(list(METHODS), value="scores", label="How to rate", elem_id="method")
            self.unsafe, self.reasons = [], []
            with gr.Row():
                for p in range(n):
                    with gr.Column(min_width=200):
                        if n > 2:
                            self.scores.append(gr.Radio(list(SCORES), label=f"Score for {letter(p)}",
                                                        elem_id=f"score-{p}"))
                            self.ranks.append(gr.Radio(list(range(1, n + 1)), label=f"Rank of {letter(p)}",
                                                       visible=False, elem_id=f"rank-{p}"))
                        self.unsafe.append(gr.Checkbox(label=f"Flag {letter(p)} as unsafe", elem_id=f"unsafe-{p}"))
                        self.reasons.append(gr.Textbox(show_label=False, lines=1, max_lines=2,
                                                       placeholder=f"Why is {letter(p)} unsafe? (optional)",
                                                       elem_id=f"reason-{p}"))
            self.comment = gr.Textbox(label="Comment (optional)", lines=2, elem_id="comment")
            self.submit = gr.Button("Submit rating", variant="primary", elem_id="submit-rating")
        self.status = gr.Markdown("", elem_id="rating-status")
        self.continue_from = gr.Radio([(f"Answer {letter(p)}", p) for p in range(n)], visible=False,
                                      label="The next question continues from", elem_id="continue-from")
        # The comparison the page shows; every vote and every next turn carries it back.
        self.token = gr.Textbox("", visible=False, elem_id="form-token")
        with gr.Row(elem_id="prompt-row"):
            self.prompt = gr.Textbox(placeholder="Ask all models at once…", show_label=False, scale=8,
                                     lines=1, max_lines=8, min_width=200, elem_id="prompt")
            self.send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
        with gr.Row():
            self.stop = gr.Button("Stop all", elem_id="stop")
            self.regenerate = gr.Button("Regenerate", elem_id="regenerate")
            self.clear = gr.Button("Clear", elem_id="clear")
        gr.Examples(EXAMPLES, inputs=self.prompt)
        with gr.Accordion("System prompt and parameters", open=False):
            self.system = gr.Textbox(label="System prompt", lines=2, elem_id="system-prompt",
                                     placeholder="Leave empty to use each contender's own system prompt")
            self.override = gr.Checkbox(label="Override every contender's parameters with these values",
                                        elem_id="override")
            gr.Markdown("Off: each contender samples with its own preset, shown under its answer. On: every "
                        "contender uses the values below from the next question on.")
            self.sliders = [gr.Slider(r.minimum, r.maximum, value=r.default, step=r.step, label=name,
                                      interactive=False, elem_id=f"param-{name}")
                            for name, r in PARAM_RANGES.items()]
        with gr.Accordion("Models", open=False):
            gr.Markdown(models_info, elem_id="models-info")
        with gr.Accordion("Your data", open=False):
            gr.Markdown("What this page stored about your visit, and deleting it before it is exported.")
            with gr.Row():
                self.show_data = gr.Button("Show what is stored", elem_id="show-data")
                self.delete_ratings = gr.Button("Delete my ratings", elem_id="delete-ratings")
                self.delete_all = gr.Button("Delete everything from this session", variant="stop",
                                            elem_id="delete-all")
            self.data = gr.Markdown("", elem_id="your-data")

    @property
    def shown(self) -> list[Any]:
        """What every snapshot updates."""
        return [*self.chatbots, *self.stats, *self.params, *self.stops, self.hint, self.rating_box, self.heading,
                self.token, self.continue_from]

    @property
    def form(self) -> list[Any]:
        """The rating controls, in the order `_form` reads them."""
        head = [self.choice, self.strength] if self.n == 2 else [self.method]
        return [*head, *self.scores, *self.ranks, *self.unsafe, *self.reasons, self.comment]

    def render(self, c: Conversation) -> list[Any]:
        chats = [gr.Chatbot(value=chat_messages(p, c), label=pane_label(p, c)) for p in c.panes]
        stops = [gr.Button(visible=p.status in ("waiting", "streaming")) for p in c.panes]
        can_continue = (c.history_mode == "shared" and c.comparison_id is not None and c.all_finished
                        and not c.busy)
        return [*chats, *(pane_stats(p) for p in c.panes), *(pane_params(p, c) for p in c.panes), *stops,
                vote_hint(c), gr.Group(visible=c.can_rate), rating_prompt(c), c.form_token or "",
                gr.Radio(value=c.continue_from, visible=can_continue)]

    def empty_form(self) -> list[Any]:
        """Every control of the rating form cleared, and the last thank-you gone: a new comparison."""
        head = [None, None] if self.n == 2 else ["scores"]
        return [*head, *(gr.Radio(value=None, visible=True) for _ in self.scores),
                *(gr.Radio(value=None, visible=False) for _ in self.ranks), *([False] * self.n),
                *([""] * self.n), "", ""]

    def form_values(self, values: list[Any]) -> RatingForm:
        n, values = self.n, list(values)
        comment = values.pop()
        if n == 2:
            choice, strength, method, rest = values[0], values[1], None, values[2:]
            scores = ranks = ()
        else:
            choice = strength = None
            method, rest = values[0], values[1:]
            scores, ranks, rest = rest[:n], rest[n:2 * n], rest[2 * n:]
        return RatingForm(choice=choice, strength=strength, method=method, scores=scores, ranks=ranks,
                          unsafe=rest[:n], reasons=rest[n:2 * n], comment=comment)


class _Lighter:
    """Turns one event's successive snapshots into updates that cost Gradio little.

    Gradio rebuilds a component's whole config (its JSON schema included: about 25 ms for a Chatbot
    on a 2-core CPU) for every property update, gr.skip() too, and does so on its event loop. So a
    component instance goes out only when its properties differ from what this event last sent;
    otherwise its plain value does, which Gradio diffs against the last snapshot and sends only if
    it changed. A layout block whose properties did not change is skipped.
    """

    def __init__(self, blocks: list[Any]) -> None:
        self.blocks, self.sent = blocks, {}

    def __call__(self, outputs: list[Any]) -> list[Any]:
        light = []
        for i, (block, out) in enumerate(zip(self.blocks, outputs)):
            if not isinstance(out, gr.blocks.Block):
                light.append(out)
                continue
            props = dict(out.constructor_args)
            value = props.pop("value", getattr(block, "value", None))  # a property update keeps the value
            if self.sent.get(i) != props:
                self.sent[i] = props
                light.append(out)
            else:
                light.append(value if isinstance(block, gr.components.Component) else gr.skip())
        return light


def _changed_only(blocks: list[Any], outputs: list[Any]) -> list[Any]:
    """`outputs` with each property update that changes nothing on its block sent as its plain value
    (a layout block: skipped), so that Gradio makes no per-session copy of that block."""
    light = []
    for block, out in zip(blocks, outputs):
        if isinstance(out, gr.blocks.Block):
            props = dict(out.constructor_args)
            value = props.pop("value", getattr(block, "value", None))
            if all(getattr(block, name, None) == wanted for name, wanted in props.items()):
                out = value if isinstance(block, gr.components.Component) else gr.skip()
        light.append(out)
    return light


def _refusing(error: Exception) -> gr.Error:
    return refusal(str(error))


def visitor_key(core: Playground, request: gr.Request | None) -> str | None:
    """The asker's key: a salted hash of the address the server saw (never what the browser says,
    unless trusted proxies put it in X-Forwarded-For)."""
    if core.visitors is None or request is None:
        return None
    host = getattr(getattr(request, "client", None), "host", None)
    return core.visitors.key(host, (getattr(request, "headers", None) or {}).get("x-forwarded-for"))


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or ""


def _token(value: Any) -> str:
    """The form token the page sent; anything but a string (null included) is a wrong token, never none."""
    return value if isinstance(value, str) else ""


def _compare_tab(demo: gr.Blocks, core: Playground, store: ConversationStore, streams: OpenStreams,
                 models_info: str, max_concurrent: int) -> None:
    """Panes side by side, the vote right under them, then the prompt, parameters and models."""
    page = _Page(core, models_info)

    def conversation(request: gr.Request | None) -> Conversation:
        return store.get(getattr(request, "session_hash", None))

    def visitor(request: gr.Request | None) -> str | None:
        return visitor_key(core, request)

    def streamed(run: Iterator[Conversation], extra: list[Any]) -> Iterator[list[Any]]:
        """Snapshots of a run; the first clears the rating form and the last thank-you (later ones
        repeat the cleared values, which Gradio's diff does not send, so nothing typed is lost)."""
        lighter, last = _Lighter(outputs + [page.prompt][:len(extra)]), None
        try:
            for last in run:
                yield lighter(page.render(last) + page.empty_form() + extra)
        except PlaygroundError as error:
            raise _refusing(error) from None
        if last is not None and not last.replaced:  # what an API client keeps: every property (labels name models)
            # Gradio sends this last one whole, not as a diff: the form, the status and the prompt box are
            # left as they are, or what the person began (a rank, a next question) would be wiped.
            yield page.render(last) + [gr.skip()] * (len(page.form) + 1 + len(extra))

    def check_ask(text: Any, system_prompt: Any, token: Any, request: gr.Request) -> list[Any]:
        """Before queueing: refuse an empty prompt, a busy conversation, a stale page or a visitor over
        their limits on the prompt box, leaving the panes as they are (the run checks again, atomically)."""
        try:
            core.check_can_ask(conversation(request), text, _token(token), visitor(request))
        except PlaygroundError as error:
            return [gr.validate(False, str(error)), gr.validate(True, ""), gr.validate(True, "")]
        streams.joined(_session(request))
        return [gr.validate(True, "")] * 3

    def present(request: gr.Request) -> Conversation:
        """The conversation, if its page still reads the answers; an ask nobody would see is dropped
        before it generates (a script can join thousands and read none)."""
        c = conversation(request)
        if not streams.wait(_session(request)):
            core.abandon(c)
            raise refusal("this page stopped listening before its question's turn came; ask again")
        return c

    def ask(text: Any, system_prompt: Any, token: Any, request: gr.Request) -> Iterator[list[Any]]:
        yield from streamed(core.ask(present(request), text, system_prompt, form_token=_token(token),
                                     visitor=visitor(request)), [""])

    def again(token: Any, request: gr.Request) -> Iterator[list[Any]]:
        yield from streamed(core.regenerate(present(request), form_token=_token(token),
                                            visitor=visitor(request)), [])

    outputs = page.shown + page.form + [page.status]
    asked = gr.on([page.send.click, page.prompt.submit], ask, inputs=[page.prompt, page.system, page.token],
                  outputs=outputs + [page.prompt], api_name="ask", concurrency_limit=max_concurrent,
                  concurrency_id="generate", validator=check_ask,
                  # A visitor waiting for a turn sees their place in the queue there, not over the panes.
                  show_progress="minimal", show_progress_on=[page.hint])
    regenerated = page.regenerate.click(again, inputs=[page.token], outputs=outputs, api_name="regenerate",
                                        concurrency_limit=max_concurrent, concurrency_id="generate",
                                        show_progress="minimal", show_progress_on=[page.hint])

    def check_rating(request: gr.Request, token: Any, *values: Any) -> list[Any]:
        """Before queueing: an incomplete or malformed form is refused on the form, not on the panes."""
        ok = [gr.validate(True, "")] * (len(values) + 1)
        try:
            vote_from_form(page.n, page.form_values(list(values)))
        except FormError as error:
            return [ok[0], gr.validate(False, str(error)), *ok[2:]]
        return ok

    def rate(request: gr.Request, token: Any, *values: Any) -> list[Any]:
        c = conversation(request)
        try:
            message = core.rate(c, vote_from_form(page.n, page.form_values(list(values))), _token(token))
        except (PlaygroundError, FormError) as error:
            raise _refusing(error) from None
        return page.render(c) + [message]

    page.submit.click(rate, inputs=[page.token, *page.form], outputs=page.shown + [page.status],
                      api_name="rate", concurrency_limit=None, validator=check_rating, show_progress="hidden")

    def stopper(position: int | None) -> Callable[[gr.Request], None]:
        def stop(request: gr.Request) -> None:
            core.stop(conversation(request), position)  # None: every pane
        return stop

    page.stop.click(stopper(None), api_name="stop", concurrency_limit=None, queue=False)
    for position, button in enumerate(page.stops):
        button.click(stopper(position), api_name=f"stop_{letter(position).lower()}", concurrency_limit=None,
                     queue=False)

    def start_over(request: gr.Request) -> list[Any]:
        key = getattr(request, "session_hash", None)
        fresh = store.replace(key, core.clear(conversation(request)))
        return page.render(fresh) + page.empty_form()

    # Clear cancels a running stream: its last snapshot would otherwise put the old conversation back.
    page.clear.click(start_over, outputs=outputs, api_name="clear", concurrency_limit=None,
                     cancels=[asked, regenerated])
    for chatbot in page.chatbots:  # a pane's own trash icon starts over too, so no pane drifts from the rest
        chatbot.clear(start_over, outputs=outputs, api_visibility="undocumented", concurrency_limit=None,
                      cancels=[asked, regenerated])

    def pick(position: Any, token: Any, request: gr.Request) -> list[Any]:
        c = conversation(request)
        try:
            core.continue_with(c, position, _token(token))
        except PlaygroundError as error:
            raise _refusing(error) from None
        return page.render(c)

    page.continue_from.input(pick, inputs=[page.continue_from, page.token], outputs=page.shown,
                             api_name="continue_from", concurrency_limit=None, show_progress="hidden")

    def set_overrides(request: gr.Request, on: Any, *values: Any) -> list[Any]:
        c = conversation(request)
        try:
            core.set_overrides(c, dict(zip(PARAM_FIELDS, values)) if on is True else None)
        except PlaygroundError as error:
            raise _refusing(error) from None
        return [pane_params(p, c) for p in c.panes] + [gr.Slider(interactive=on is True) for _ in page.sliders]

    parameters = dict(inputs=[page.override, *page.sliders], outputs=[*page.params, *page.sliders],
                      concurrency_limit=None, show_progress="hidden")
    page.override.change(set_overrides, api_name="set_parameters", **parameters)
    for slider in page.sliders:
        slider.input(set_overrides, api_visibility="undocumented", **parameters)
    if page.method is not None:
        def show_method(method: Any) -> list[Any]:
            return ([gr.Radio(visible=method != "ranking") for _ in page.scores]
                    + [gr.Radio(visible=method == "ranking") for _ in page.ranks])
        page.method.change(show_method, inputs=[page.method], outputs=[*page.scores, *page.ranks],
                           api_visibility="undocumented", concurrency_limit=None)

    def session_ids(request: gr.Request) -> list[str]:
        return store.conversation_ids(getattr(request, "session_hash", None))

    # "Your data" covers this browser session's comparisons asked from the requester's own address.
    def show_data(request: gr.Request) -> str:
        return core.stored_about(session_ids(request), visitor(request))

    def delete_ratings(request: gr.Request) -> str:
        try:
            return core.forget(store.peek(_session(request)), session_ids(request), ratings_only=True,
                               visitor=visitor(request))
        except PlaygroundError as error:
            raise _refusing(error) from None

    def delete_all(request: gr.Request) -> list[Any]:
        """Everything of this browser session goes, and the page starts over (its comparisons are gone)."""
        try:
            message = core.forget(conversation(request), session_ids(request), ratings_only=False,
                                  visitor=visitor(request))
        except PlaygroundError as error:
            raise _refusing(error) from None
        fresh = store.replace(getattr(request, "session_hash", None), core.clear(conversation(request)))
        return page.render(fresh) + page.empty_form() + [message]

    # Only the session the request comes from: the browser names nothing but its own session hash.
    page.show_data.click(show_data, outputs=[page.data], api_name="my_data", concurrency_limit=None)
    page.delete_ratings.click(delete_ratings, outputs=[page.data], api_name="delete_my_ratings",
                              concurrency_limit=None)
    page.delete_all.click(delete_all, outputs=outputs + [page.data], api_name="delete_my_session",
                          concurrency_limit=None)

    def on_load(request: gr.Request) -> list[Any]:
        """A new page shows its panes' contenders (in named mode) and presets. Only what differs from the
        page as built goes out: Gradio keeps a copy of every component updated for a session."""
        return _changed_only(page.shown, page.render(conversation(request)))

    demo.load(on_load, outputs=page.shown, api_visibility="undocumented", show_progress="hidden")
    def forget(request: gr.Request) -> None:
        """The page closed: its conversation stops and goes, and so does Gradio's state of the session."""
        store.drop(_session(request))
        holder = getattr(demo, "state_holder", None)
        if isinstance(holder, LeanStateHolder):
            holder.forget(_session(request))

    demo.unload(forget)
