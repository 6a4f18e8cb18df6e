"""The Review tab: a stored comparison at a time, blind, in a fresh order, with the same rating form as the
compare tab; thin wiring over playground.review."""

from __future__ import annotations

from typing import Any

import gradio as gr

from feedback_db.review import ReviewAnswer
from playground.comparison import MAX_PANES, Playground
from playground.conversation import Conversation
from playground.conversations import ConversationStore
from playground.markup import shown_as_text
from playground.review import NOTHING_TO_REVIEW, Reviewer, ReviewItem
from playground.ui_handlers import refusals, session_of, token_of, visitor_key
from playground.view import letter
from playground.voting import CHOICES, METHODS, SCORES, STRENGTHS, RatingForm, vote_from_form

INTRO = (
    "Answers other people got, one comparison at a time, without the models' names and in an order of "
    "their own. Rate them as you would your own: a second opinion shows how far raters agree."
)


class ReviewTab:
    """The tab's blocks: up to MAX_PANES answers; the form shows the controls for the item's count."""

    def __init__(self, core: Playground, store: ConversationStore, reviewer: Reviewer) -> None:
        self.core, self.store, self.reviewer = core, store, reviewer
        with gr.Tab("Review", elem_id="review-tab"):
            gr.Markdown(INTRO)
            self.next = gr.Button("Next", variant="primary", elem_id="review-next")
            self.status = gr.Markdown("", elem_id="review-status")
            # Columns with a minimum width: side by side on a wide screen, stacked on a phone.
            self.chatbots, self.columns = [], []
            with gr.Row(equal_height=True):
                for p in range(MAX_PANES):
                    with gr.Column(min_width=320, visible=False) as column:
                        self.chatbots.append(
                            gr.Chatbot(
                                label=f"Answer {letter(p)}", height=320, buttons=["copy"], elem_id=f"review-pane-{p}"
                            )
                        )
                    self.columns.append(column)
            with gr.Group(visible=False, elem_id="review-form") as self.form_box:
                self._form()
            self.token = gr.Textbox("", visible=False, elem_id="review-token")

    def _form(self) -> None:
        self.choice = gr.Radio(list(CHOICES), label="Verdict", elem_id="review-choice")
        self.strength = gr.Radio(list(STRENGTHS), label="How much better (for A or B)", elem_id="review-strength")
        self.method = gr.Radio(
            list(METHODS), value="scores", label="How to rate", visible=False, elem_id="review-method"
        )
        self.scores, self.ranks, self.unsafe, self.reasons = [], [], [], []
        with gr.Row():
            for p in range(MAX_PANES):
                with gr.Column(min_width=160):
                    self.scores.append(
                        gr.Radio(
                            list(SCORES), label=f"Score for {letter(p)}", visible=False, elem_id=f"review-score-{p}"
                        )
                    )
                    self.ranks.append(
                        gr.Radio(
                            list(range(1, MAX_PANES + 1)),
                            label=f"Rank of {letter(p)}",
                            visible=False,
                            elem_id=f"review-rank-{p}",
                        )
                    )
                    self.unsafe.append(
                        gr.Checkbox(label=f"Flag {letter(p)} as unsafe", visible=p < 2, elem_id=f"review-unsafe-{p}")
                    )
                    self.reasons.append(
                        gr.Textbox(
                            show_label=False,
                            lines=1,
                            visible=p < 2,
                            placeholder=f"Why is {letter(p)} unsafe? (optional)",
                        )
                    )
        self.comment = gr.Textbox(label="Comment (optional)", lines=2, elem_id="review-comment")
        self.submit = gr.Button("Submit rating", variant="primary", elem_id="review-submit")

    @property
    def form(self) -> list[Any]:
        return [
            self.choice,
            self.strength,
            self.method,
            *self.scores,
            *self.ranks,
            *self.unsafe,
            *self.reasons,
            self.comment,
        ]

    @property
    def shown(self) -> list[Any]:
        return [*self.columns, *self.chatbots, self.form_box, self.token, self.status, *self.form]

    def wire(self) -> None:
        self.next.click(self.show_next, outputs=self.shown, api_name="review_next", concurrency_limit=None)
        self.submit.click(
            self.rate,
            inputs=[self.token, *self.form],
            outputs=self.shown,
            api_name="review_rate",
            concurrency_limit=None,
            show_progress="hidden",
        )
        self.method.change(
            self.show_method,
            inputs=[self.method],
            outputs=[*self.scores, *self.ranks],
            api_visibility="undocumented",
            concurrency_limit=None,
        )

    @refusals
    def show_next(self, request: gr.Request) -> dict[Any, Any]:
        conversation = self.store.get(session_of(request))
        item = self.reviewer.next(conversation, visitor_key(self.core, request))
        return self.render(conversation, item, "" if item else NOTHING_TO_REVIEW)

    @refusals
    def rate(self, request: gr.Request, token: Any, *values: Any) -> dict[Any, Any]:
        """Store the rating, then show the next item straight away (one press per item, as in Argilla)."""
        conversation = self.store.get(session_of(request))
        item = conversation.review
        n = len(item.answers) if item else 2
        got = dict(zip(self.form, values))
        form = RatingForm(
            choice=got[self.choice],
            strength=got[self.strength],
            method=got[self.method],
            scores=[got[s] for s in self.scores],
            ranks=[got[r] for r in self.ranks],
            unsafe=[got[u] for u in self.unsafe],
            reasons=[got[r] for r in self.reasons],
            comment=got[self.comment],
        )
        message = self.reviewer.rate(conversation, vote_from_form(n, form), token_of(token))
        following = self.reviewer.next(conversation)
        return self.render(conversation, following, message + ("" if following else " " + NOTHING_TO_REVIEW))

    def render(self, conversation: Conversation, item: ReviewItem | None, message: str) -> dict[Any, Any]:
        """The item's answers in the order shown (or none), and a cleared form fitted to their count.

        The layout (which blocks show) goes out only when the answer count differs from what this page
        shows: Gradio rebuilds a component's whole config for a property update (ui_page.Lighter)."""
        n = len(item.answers) if item else 0
        shown: dict[Any, Any] = {self.status: message, self.token: item.token if item else ""}
        for p, chatbot in enumerate(self.chatbots):
            answer = item.answers[p] if p < n else None
            shown[chatbot] = [] if answer is None else _messages(answer)
        cleared = {self.choice: None, self.strength: None, self.method: "scores", self.comment: ""}
        cleared |= {s: None for s in self.scores} | {r: None for r in self.ranks}
        cleared |= {u: False for u in self.unsafe} | {r: "" for r in self.reasons}
        if conversation.review_layout == n:
            return shown | cleared
        conversation.review_layout = n
        return shown | self._layout(n)

    def _layout(self, n: int) -> dict[Any, Any]:
        """Which blocks show for an item of `n` answers (0: none), with the form cleared."""
        layout: dict[Any, Any] = {self.form_box: gr.Group(visible=n > 0)}
        layout |= {column: gr.Column(visible=p < n) for p, column in enumerate(self.columns)}
        layout |= {
            self.choice: gr.Radio(value=None, visible=n == 2),
            self.strength: gr.Radio(value=None, visible=n == 2),
            self.method: gr.Radio(value="scores", visible=n > 2),
            self.comment: "",
        }
        for p in range(MAX_PANES):
            layout[self.scores[p]] = gr.Radio(value=None, visible=n > 2 and p < n)
            layout[self.ranks[p]] = gr.Radio(value=None, visible=False, choices=list(range(1, max(n, 2) + 1)))
            layout[self.unsafe[p]] = gr.Checkbox(value=False, visible=p < n)
            layout[self.reasons[p]] = gr.Textbox(value="", visible=p < n)
        return layout

    def show_method(self, method: Any, request: gr.Request) -> dict[Any, Any]:
        """Scores or ranks, for the answers of the item on screen only."""
        item = self.store.get(session_of(request)).review
        n = len(item.answers) if item else 0
        ranking = method == "ranking"
        return {
            **{s: gr.Radio(visible=n > 2 and p < n and not ranking) for p, s in enumerate(self.scores)},
            **{r: gr.Radio(visible=n > 2 and p < n and ranking) for p, r in enumerate(self.ranks)},
        }


def _messages(answer: ReviewAnswer) -> list[dict[str, str]]:
    """An answer with the conversation it replied to, shown as text (no system prompt: it is the asker's)."""
    turns = [
        {"role": m["role"], "content": shown_as_text(m["content"])} for m in answer.messages if m["role"] != "system"
    ]
    return turns + [{"role": "assistant", "content": shown_as_text(answer.text) or "(no answer)"}]
