"""The Gradio page: wiring only; every handler is a short adapter onto `Playground`."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterator

import gradio as gr

from playground.comparison import Playground
from playground.ui_tabs import admin_tab, leaderboard_tab
from playground.session import PARAM_FIELDS, PlaygroundError, Session, Vote
from playground.view import CHOICES, STRENGTHS, chat_messages, letter, pane_label, pane_stats, rating_prompt

EXAMPLES = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn rain.",
    "Give me three tips for a good night's sleep.",
]
SLIDERS = {  # name: (minimum, maximum, step, shown value)
    "temperature": (0.0, 2.0, 0.05, 0.7),
    "top_p": (0.05, 1.0, 0.05, 0.9),
    "top_k": (0, 200, 1, 50),
    "max_new_tokens": (16, 2048, 16, 256),
    "repetition_penalty": (1.0, 2.0, 0.05, 1.1),
}
CSS = ".pane-stats { min-height: 1.5em; font-size: 0.85em; opacity: 0.8; }"


class _Sessions:
    """Finds the Session of a browser session.

    gr.State cannot deep-copy a Session (it holds a threading.Event), so the state starts as None and
    gets its Session on first use. Until that first event has finished, other events of the same
    browser session (say Clear while the first answers stream, from an API client that never ran the
    page's load event) still see None: they find the Session here by Gradio's session hash.
    """

    def __init__(self, core: Playground, capacity: int = 10_000) -> None:
        self.core, self.capacity = core, capacity
        self.by_hash: OrderedDict[str, Session] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, state: Session | None, request: gr.Request | None) -> Session:
        if state is not None:
            return state
        key = getattr(request, "session_hash", None)
        with self.lock:
            if key in self.by_hash:
                self.by_hash.move_to_end(key)
                return self.by_hash[key]
        return self.put(request, self.core.new_session())

    def put(self, request: gr.Request | None, session: Session) -> Session:
        key = getattr(request, "session_hash", None)
        if key is not None:
            with self.lock:
                self.by_hash[key] = session
                self.by_hash.move_to_end(key)
                while len(self.by_hash) > self.capacity:
                    self.by_hash.popitem(last=False)
        return session


def _render(session: Session) -> list[Any]:
    """Chatbots, stats, the rating box's visibility and its heading, for one snapshot."""
    chats = [gr.Chatbot(value=chat_messages(p, session), label=pane_label(p, session)) for p in session.panes]
    stats = [pane_stats(p) for p in session.panes]
    return [*chats, *stats, gr.Group(visible=session.can_rate), rating_prompt(session)]


def build_ui(core: Playground, *, title: str, notice: str, models_info: str = "", max_concurrent: int = 1,
             leaderboard_rounds: int = 1000, admin_token: str | None = None) -> gr.Blocks:
    """The page: the comparison tab, the leaderboard tab, and the data tab when an admin token is set."""
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n{core.lineup.description}")
        gr.Markdown(notice, elem_id="storage-notice")
        with gr.Tab("Compare"):
            _compare_tab(demo, core, models_info, max_concurrent)
        leaderboard_tab(core.database, leaderboard_rounds)
        if admin_token:
            admin_tab(core.database, admin_token, core.lineup.name)
    return demo


def _compare_tab(demo: gr.Blocks, core: Playground, models_info: str, max_concurrent: int) -> None:
    """Panes side by side, prompt, parameters, rating controls."""
    n = core.pane_count
    state, sessions = gr.State(None), _Sessions(core)
    with gr.Row(equal_height=True):
        chatbots, stats = [], []
        for position in range(n):
            with gr.Column(min_width=320):
                chatbots.append(gr.Chatbot(label=f"Model {letter(position)}", height=420,
                                           elem_id=f"pane-{position}", buttons=["copy"]))
                stats.append(gr.Markdown("", elem_classes="pane-stats", elem_id=f"stats-{position}"))
    with gr.Row():
        prompt = gr.Textbox(placeholder="Ask all models at once…", show_label=False, scale=8,
                            lines=2, max_lines=8, elem_id="prompt")
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
    with gr.Row():
        stop = gr.Button("Stop", elem_id="stop")
        regenerate = gr.Button("Regenerate", elem_id="regenerate")
        clear = gr.Button("Clear", elem_id="clear")
    gr.Examples(EXAMPLES, inputs=prompt)
    with gr.Accordion("System prompt and parameters", open=False):
        system = gr.Textbox(label="System prompt", lines=2, elem_id="system-prompt",
                            placeholder="Leave empty to use each contender's own system prompt")
        gr.Markdown("Untouched sliders keep each contender's own preset; a slider you move "
                    "applies to every contender.")
        sliders = {name: gr.Slider(lo, hi, value=shown, step=step, label=name, elem_id=f"param-{name}")
                   for name, (lo, hi, step, shown) in SLIDERS.items()}
        reset = gr.Button("Back to presets", size="sm")
    with gr.Accordion("Models", open=False):
        gr.Markdown(models_info, elem_id="models-info")
    with gr.Group(visible=False, elem_id="rating") as rating_box:
        heading = gr.Markdown(rating_prompt(core.new_session()))
        if n == 2:
            choice = gr.Radio(list(CHOICES), label="Verdict", elem_id="choice")
            strength = gr.Radio(list(STRENGTHS), label="How much better (for A or B)", elem_id="strength")
        else:
            choice = strength = None
        scores, unsafe, reasons = [], [], []
        with gr.Row():
            for p in range(n):
                with gr.Column(min_width=220):
                    if n > 2:
                        scores.append(gr.Radio([1, 2, 3, 4, 5], label=f"Score for {letter(p)}",
                                               elem_id=f"score-{p}"))
                    unsafe.append(gr.Checkbox(label=f"Flag {letter(p)} as unsafe", elem_id=f"unsafe-{p}"))
                    reasons.append(gr.Textbox(show_label=False, lines=1, max_lines=2,
                                              placeholder=f"Why is {letter(p)} unsafe? (optional)"))
        comment = gr.Textbox(label="Comment (optional)", lines=2)
        submit = gr.Button("Submit rating", variant="primary", elem_id="submit-rating")
    rating_status = gr.Markdown("", elem_id="rating-status")

    # Streams never write the state: a late snapshot could otherwise bring back a session that Clear
    # replaced meanwhile. Only loading the page and Clear set it.
    outputs = [*chatbots, *stats, rating_box, heading]
    rating_inputs = [c for c in (choice, strength) if c is not None] + scores + unsafe + reasons + [comment]

    def ask(text: str, system_prompt: str, session: Session | None, request: gr.Request) -> Iterator[list[Any]]:
        session = sessions.get(session, request)
        try:
            for snapshot in core.ask(session, text, system_prompt):
                yield _render(snapshot) + [""]
        except PlaygroundError as error:
            raise gr.Error(str(error)) from None

    def again(session: Session | None, request: gr.Request) -> Iterator[list[Any]]:
        session = sessions.get(session, request)
        try:
            for snapshot in core.regenerate(session):
                yield _render(snapshot)
        except PlaygroundError as error:
            raise gr.Error(str(error)) from None

    def rate(request: gr.Request, session: Session | None, *values: Any) -> list[Any]:
        session = sessions.get(session, request)
        try:
            message = core.rate(session, _vote(n, list(values)))
        except PlaygroundError as error:
            raise gr.Error(str(error)) from None
        return _render(session) + [message]

    def setter(name: str):
        def set_param(value: float, session: Session | None, request: gr.Request) -> Session:
            session = sessions.get(session, request)
            try:
                core.set_override(session, name, value)
            except PlaygroundError as error:
                raise gr.Error(str(error)) from None
            return session
        return set_param

    def start_over(session: Session | None, request: gr.Request) -> list[Any]:
        fresh = sessions.put(request, core.clear(sessions.get(session, request)))
        return [fresh, *_render(fresh), ""]

    def back_to_presets(session: Session | None, request: gr.Request) -> list[Any]:
        session = sessions.get(session, request)
        session.overrides.clear()
        return [session, *(SLIDERS[name][3] for name in PARAM_FIELDS)]

    asked = gr.on([send.click, prompt.submit], ask, inputs=[prompt, system, state],
                  outputs=outputs + [prompt], api_name="ask", concurrency_limit=max_concurrent,
                  concurrency_id="generate", show_progress="hidden")
    regenerated = regenerate.click(again, inputs=[state], outputs=outputs, api_name="regenerate",
                     concurrency_limit=max_concurrent, concurrency_id="generate", show_progress="hidden")
    def stop_all(session: Session | None, request: gr.Request) -> None:
        core.stop(sessions.get(session, request))

    stop.click(stop_all, inputs=[state], outputs=None,
               api_name="stop", concurrency_limit=None, queue=False)
    # Clear cancels a running stream: its last snapshot would otherwise put the old session back.
    clear.click(start_over, inputs=[state], outputs=[state, *outputs, rating_status], api_name="clear",
                concurrency_limit=None, cancels=[asked, regenerated])
    for chatbot in chatbots:  # a pane's own trash icon starts over too, so no pane drifts from its state
        chatbot.clear(start_over, inputs=[state], outputs=[state, *outputs, rating_status],
                      api_visibility="undocumented", concurrency_limit=None, cancels=[asked, regenerated])
    submit.click(rate, inputs=[state, *rating_inputs], outputs=outputs + [rating_status],
                 api_name="rate", concurrency_limit=None)
    for name, slider in sliders.items():
        slider.input(setter(name), inputs=[slider, state], outputs=[state],
                     api_visibility="undocumented", concurrency_limit=None)
    reset.click(back_to_presets, inputs=[state], outputs=[state, *(sliders[f] for f in PARAM_FIELDS)],
                api_visibility="undocumented", concurrency_limit=None)
    def on_load(request: gr.Request) -> list[Any]:
        fresh = sessions.put(request, core.new_session())
        return [fresh, *_render(fresh)]

    demo.load(on_load, outputs=[state, *outputs], api_visibility="undocumented")


def _vote(n: int, values: list[Any]) -> Vote:
    """Turn the rating controls' values (in `rating_inputs` order) into a Vote by pane position."""
    comment = values.pop()
    if n == 2:
        choice_label, strength_label = values[0], values[1]
        rest = values[2:]
        choice = CHOICES.get(choice_label) if choice_label else None
        strength = STRENGTHS.get(strength_label) if strength_label and choice in ("a", "b") else None
        scores: dict[int, int] = {}
    else:
        choice = strength = None
        scores = {p: int(v) for p, v in enumerate(values[:n]) if v not in (None, "")}
        rest = values[n:]
    flags, reasons = rest[:n], rest[n:2 * n]
    unsafe = {p: (reasons[p] or "").strip() or None for p in range(n) if flags[p]}
    return Vote(choice=choice, strength=strength, scores=scores, unsafe=unsafe, comment=comment)
