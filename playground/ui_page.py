"""The compare tab's components, and what each snapshot of a conversation sets them to."""

from __future__ import annotations

from typing import Any

import gradio as gr

from playground.comparison import Playground
from playground.conversation import Conversation
from playground.params import PARAM_RANGES
from playground.view import chat_messages, letter, pane_label, pane_params, pane_stats, rating_prompt, vote_hint
from playground.voting import CHOICES, METHODS, SCORES, STRENGTHS, RatingForm

EXAMPLES = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn rain.",
    "Give me three tips for a good night's sleep.",
]
# The prompt row stays at the bottom of the window while the page scrolls: on a phone the panes stack
# three screens tall, and the vote sits between them and the prompt. The page ends with room for the row
# as tall as it really is (--prompt-row-height, kept by page_script.HEAD), so nothing stays under it.
CSS = """
.pane-stats { min-height: 1.2em; font-size: 0.85em; opacity: 0.8; margin: 0 !important; }
.pane-params { font-size: 0.8em; opacity: 0.7; margin: 0 !important; }
/* A pane's column takes its own height: stretched to the row's tallest, its chat box and stats grew by
   the difference, and a row's panes and stats lines no longer lined up when a parameter line wrapped. */
#panes > .column > * { flex-grow: 0 !important; }
#prompt-row { position: fixed; left: 0; right: 0; bottom: 0; z-index: 50; margin: 0 auto; max-width: 1280px;
              padding: 8px 12px; background: var(--body-background-fill);
              box-shadow: 0 -2px 8px rgba(0, 0, 0, 0.12); }
/* A long prompt scrolls inside its box rather than raising the row over the page. */
#prompt textarea { max-height: min(10.5em, 25vh) !important; overflow-y: auto !important; }
/* Gradio shows a textbox's label above a refusal even with show_label off: the refusal shows alone. */
#prompt [data-testid="block-info"] { font-size: 0; }
#prompt [data-testid="block-info"] .validation-error { font-size: var(--text-md); }
.gradio-container { padding-bottom: calc(var(--prompt-row-height, 104px) + 16px) !important; }
/* What the browser scrolls into view (a focused button, a found word) it shows above the row too. */
html { scroll-padding-bottom: calc(var(--prompt-row-height, 104px) + 8px); }
@media (max-width: 700px) { .pane-chat { height: 280px !important; max-height: 280px !important; } }
/* The models and servers tables scroll sideways on a narrow screen instead of squeezing each column to
   a letter per line; a header breaks only between words. */
#models-info table { display: block; overflow-x: auto; max-width: 100%; }
#models-info th, #models-info td { min-width: 6em; }
#models-info th { word-break: normal; overflow-wrap: normal; hyphens: none; }
"""


class Page:
    """The compare tab's components, and what each snapshot of a conversation sets them to."""

    def __init__(self, core: Playground, models_info: str) -> None:
        self.n, self.core = core.pane_count, core
        self._panes()
        self._rating_form()
        self._prompt_row()
        self._settings_and_data(models_info)

    def _panes(self) -> None:
        n = self.n
        self.chatbots, self.stats, self.params, self.stops = [], [], [], []
        with gr.Row(equal_height=True, elem_id="panes"):
            for p in range(n):
                with gr.Column(min_width=320):
                    self.chatbots.append(
                        gr.Chatbot(
                            label=f"Model {letter(p)}",
                            height=360,
                            elem_id=f"pane-{p}",
                            elem_classes="pane-chat",
                            buttons=["copy"],
                        )
                    )
                    self.stats.append(gr.Markdown("", elem_classes="pane-stats", elem_id=f"stats-{p}"))
                    self.params.append(gr.Markdown("", elem_classes="pane-params", elem_id=f"params-{p}"))
                    self.stops.append(gr.Button(f"Stop {letter(p)}", size="sm", visible=False, elem_id=f"stop-{p}"))

    def _rating_form(self) -> None:
        n = self.n
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
                            self.scores.append(
                                gr.Radio(list(SCORES), label=f"Score for {letter(p)}", elem_id=f"score-{p}")
                            )
                            self.ranks.append(
                                gr.Radio(
                                    list(range(1, n + 1)),
                                    label=f"Rank of {letter(p)}",
                                    visible=False,
                                    elem_id=f"rank-{p}",
                                )
                            )
                        self.unsafe.append(gr.Checkbox(label=f"Flag {letter(p)} as unsafe", elem_id=f"unsafe-{p}"))
                        self.reasons.append(
                            gr.Textbox(
                                show_label=False,
                                lines=1,
                                max_lines=2,
                                placeholder=f"Why is {letter(p)} unsafe? (optional)",
                                elem_id=f"reason-{p}",
                            )
                        )
            self.comment = gr.Textbox(label="Comment (optional)", lines=2, elem_id="comment")
            self.submit = gr.Button("Submit rating", variant="primary", elem_id="submit-rating")

    def _prompt_row(self) -> None:
        n = self.n
        self.status = gr.Markdown("", elem_id="rating-status")
        self.continue_from = gr.Radio(
            [(f"Answer {letter(p)}", p) for p in range(n)],
            visible=False,
            label="The next question continues from",
            elem_id="continue-from",
        )
        # The comparison the page shows; every vote and every next turn carries it back.
        self.token = gr.Textbox("", visible=False, elem_id="form-token")
        with gr.Row(elem_id="prompt-row"):
            self.prompt = gr.Textbox(
                placeholder="Ask all models at once…",
                label="Your question",  # what a screen reader says; shown with a refusal otherwise "Textbox"
                show_label=False,
                scale=8,
                lines=1,
                max_lines=8,
                min_width=200,
                elem_id="prompt",
            )
            self.send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send")
        with gr.Row():
            self.stop = gr.Button("Stop all", elem_id="stop")
            self.regenerate = gr.Button("Regenerate", elem_id="regenerate")
            self.clear = gr.Button("Clear", elem_id="clear")
        gr.Examples(EXAMPLES, inputs=self.prompt)

    def _settings_and_data(self, models_info: str) -> None:
        with gr.Accordion("System prompt and parameters", open=False):
            self.system = gr.Textbox(
                label="System prompt",
                lines=2,
                elem_id="system-prompt",
                placeholder="Leave empty to use each contender's own system prompt",
            )
            self.override = gr.Checkbox(
                label="Override every contender's parameters with these values", elem_id="override"
            )
            gr.Markdown(
                "Off: each contender samples with its own preset, shown under its answer. On: every "
                "contender uses the values below from the next question on."
            )
            self.sliders = [
                gr.Slider(
                    r.minimum,
                    r.maximum,
                    value=r.default,
                    step=r.step,
                    label=name,
                    interactive=False,
                    elem_id=f"param-{name}",
                )
                for name, r in PARAM_RANGES.items()
            ]
        with gr.Accordion("Models", open=False):
            gr.Markdown(models_info, elem_id="models-info")
        with gr.Accordion("Your data", open=False):
            gr.Markdown("What this page stored about your visit, and deleting it before it is exported.")
            with gr.Row():
                self.show_data = gr.Button("Show what is stored", elem_id="show-data")
                self.delete_ratings = gr.Button("Delete my ratings", elem_id="delete-ratings")
                self.delete_all = gr.Button("Delete everything from this session", variant="stop", elem_id="delete-all")
            self.data = gr.Markdown("", elem_id="your-data")

    @property
    def shown(self) -> list[Any]:
        """What every snapshot updates."""
        return [
            *self.chatbots,
            *self.stats,
            *self.params,
            *self.stops,
            self.hint,
            self.rating_box,
            self.heading,
            self.token,
            self.continue_from,
        ]

    @property
    def form(self) -> list[Any]:
        """The rating controls, in the order `_form` reads them."""
        head = [self.choice, self.strength] if self.n == 2 else [self.method]
        return [*head, *self.scores, *self.ranks, *self.unsafe, *self.reasons, self.comment]

    def render(self, c: Conversation) -> dict[Any, Any]:
        """What a snapshot of the conversation sets every block of `shown` to."""
        can_continue = c.history_mode == "shared" and c.comparison_id is not None and c.all_finished and not c.busy
        shown: dict[Any, Any] = {}
        for p, pane in enumerate(c.panes):
            shown[self.chatbots[p]] = gr.Chatbot(value=chat_messages(pane, c), label=pane_label(pane, c))
            shown[self.stats[p]] = pane_stats(pane, c)
            shown[self.params[p]] = pane_params(pane, c)
            shown[self.stops[p]] = gr.Button(visible=pane.status in ("waiting", "streaming"))
        return shown | {
            self.hint: vote_hint(c),
            self.rating_box: gr.Group(visible=c.can_rate),
            self.heading: rating_prompt(c),
            self.token: c.form_token or "",
            self.continue_from: gr.Radio(value=c.continue_from, visible=can_continue),
        }

    def empty_form(self) -> dict[Any, Any]:
        """Every control of the rating form cleared, and the last thank-you gone: a new comparison."""
        cleared: dict[Any, Any] = {self.choice: None, self.strength: None} if self.n == 2 else {self.method: "scores"}
        cleared |= {score: gr.Radio(value=None, visible=True) for score in self.scores}
        cleared |= {rank: gr.Radio(value=None, visible=False) for rank in self.ranks}
        cleared |= {box: False for box in self.unsafe} | {reason: "" for reason in self.reasons}
        return cleared | {self.comment: "", self.status: ""}

    def form_values(self, values: list[Any]) -> RatingForm:
        """The rating form as the person left it, from the values of `form` in its order."""
        got = dict(zip(self.form, values))
        return RatingForm(
            choice=got.get(self.choice),
            strength=got.get(self.strength),
            method=got.get(self.method),
            scores=[got[s] for s in self.scores],
            ranks=[got[r] for r in self.ranks],
            unsafe=[got[u] for u in self.unsafe],
            reasons=[got[r] for r in self.reasons],
            comment=got[self.comment],
        )


class Lighter:
    """Turns one event's successive snapshots into updates that cost Gradio little.

    Gradio rebuilds a component's whole config (its JSON schema included: about 25 ms for a Chatbot
    on a 2-core CPU) for every property update, gr.skip() too, and does so on its event loop. So a
    component instance goes out only when its properties differ from what this event last sent;
    otherwise its plain value does, which Gradio diffs against the last snapshot and sends only if
    it changed. A layout block whose properties did not change is skipped.
    """

    def __init__(self) -> None:
        self.sent: dict[Any, dict[str, Any]] = {}  # block -> the properties this event last sent it

    def __call__(self, outputs: dict[Any, Any]) -> dict[Any, Any]:
        light = {}
        for block, out in outputs.items():
            if not isinstance(out, gr.blocks.Block):
                light[block] = out
                continue
            props = dict(out.constructor_args)
            value = props.pop("value", getattr(block, "value", None))  # a property update keeps the value
            if self.sent.get(block) != props:
                self.sent[block] = props
                light[block] = out
            elif isinstance(block, gr.components.Component):
                light[block] = value
        return light  # a layout block left out is skipped


def changed_only(outputs: dict[Any, Any]) -> dict[Any, Any]:
    """`outputs` with each property update that changes nothing on its block sent as its plain value
    (a layout block: left out, so skipped), so that Gradio makes no per-session copy of that block."""
    light = {}
    for block, out in outputs.items():
        if isinstance(out, gr.blocks.Block):
            props = dict(out.constructor_args)
            value = props.pop("value", getattr(block, "value", None))
            if all(getattr(block, name, None) == wanted for name, wanted in props.items()):
                if isinstance(block, gr.components.Component):
                    light[block] = value
                continue
        light[block] = out
    return light
