"""The Gradio page: building the tabs and wiring their events to handlers; no logic of its own."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from playground.comparison import Playground
from playground.conversations import UNASKED_TTL_S, ConversationStore
from playground.downloads import OneTimeDownloads
from playground.guard import OpenStreams
from playground.review import Reviewer
from playground.ui_handlers import CompareHandlers, visitor_key
from playground.ui_page import CSS, Page
from playground.ui_raters import RaterBlocks, guidelines_tab
from playground.ui_review import ReviewTab
from playground.ui_tabs import EXPORT_TTL_S, admin_tab, leaderboard_tab
from playground.view import letter

__all__ = ["CSS", "BuiltPage", "build_ui"]


@dataclass(frozen=True)
class BuiltPage:
    """The page, and the stores behind it that the server serves and sweeps."""

    demo: gr.Blocks
    conversations: ConversationStore  # one per browser session; how many the server holds
    downloads: OneTimeDownloads  # the admin's one-time export links, served by the guard
    streams: OpenStreams  # which pages read their events; the guard watches the requests


def build_ui(
    core: Playground,
    *,
    title: str,
    notice: str,
    models_info: str = "",
    max_concurrent: int = 1,
    leaderboard_rounds: int = 1000,
    leaderboard_min_battles: int = 20,
    admin_token: str | None = None,
    admin_notice: str = "",
    conversation_ttl_s: float | None = None,
    unasked_ttl_s: float = UNASKED_TTL_S,
) -> BuiltPage:
    """The page: the comparison tab, the leaderboard tab, and the data tab when an admin token is set
    (`admin_notice` on top of it: what only the operator needs to know, e.g. storage lost at restart).

    A page's conversation is forgotten after `conversation_ttl_s` without use, or `unasked_ttl_s` if it
    never asked anything; Gradio's own state of such a session goes then too (ui_sessions).
    """
    store = ConversationStore(
        core.new_conversation,
        unasked_ttl_s=unasked_ttl_s,
        **({"ttl_s": conversation_ttl_s} if conversation_ttl_s else {}),
    )
    downloads, streams = OneTimeDownloads(EXPORT_TTL_S), OpenStreams()
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"# {title}\n{core.lineup.description}")
        gr.Markdown(notice, elem_id="storage-notice")
        raters = RaterBlocks(core, store)
        with gr.Tab("Compare"):
            _compare_tab(demo, core, store, streams, models_info, max_concurrent)
        ReviewTab(core, store, Reviewer(core.database, core.raters)).wire()
        guidelines_tab(core)
        leaderboard_tab(core.database, leaderboard_rounds, min_battles=leaderboard_min_battles)
        if admin_token:
            admin_tab(
                core.database,
                admin_token,
                core.lineup.name,
                downloads,
                lambda r: visitor_key(core, r) or "",
                notice=admin_notice,
            )
        raters.wire(demo)
    return BuiltPage(demo, store, downloads, streams)


def _compare_tab(
    demo: gr.Blocks,
    core: Playground,
    store: ConversationStore,
    streams: OpenStreams,
    models_info: str,
    max_concurrent: int,
) -> None:
    """Panes side by side, the vote right under them, then the prompt, parameters and models."""
    page = Page(core, models_info)
    on = CompareHandlers(demo, core, store, streams, page)
    _generation_events(page, on, max_concurrent)
    _parameter_events(page, on)
    _data_events(page, on)
    demo.load(on.on_load, outputs=page.shown, api_visibility="undocumented", show_progress="hidden")
    demo.unload(on.forget)


def _generation_events(page: Page, on: CompareHandlers, max_concurrent: int) -> None:
    """Ask, regenerate, rate, stop, clear and continue: the events of a comparison."""
    outputs = on.outputs
    generating = dict(
        concurrency_limit=max_concurrent,
        concurrency_id="generate",
        # A visitor waiting for a turn sees their place in the queue there, not over the panes.
        show_progress="minimal",
        show_progress_on=[page.hint],
    )
    asked = gr.on(
        [page.send.click, page.prompt.submit],
        on.ask,
        inputs=[page.prompt, page.system, page.token],
        outputs=outputs + [page.prompt],
        api_name="ask",
        validator=on.check_ask,
        **generating,
    )
    regenerated = page.regenerate.click(
        on.again, inputs=[page.token], outputs=outputs, api_name="regenerate", **generating
    )
    page.submit.click(
        on.rate,
        inputs=[page.token, *page.form],
        outputs=page.shown + [page.status],
        api_name="rate",
        concurrency_limit=None,
        validator=on.check_rating,
        show_progress="hidden",
    )

    page.stop.click(on.stopper(None), api_name="stop", concurrency_limit=None, queue=False)
    for position, button in enumerate(page.stops):
        button.click(
            on.stopper(position), api_name=f"stop_{letter(position).lower()}", concurrency_limit=None, queue=False
        )
    # Clear cancels a running stream: its last snapshot would otherwise put the old conversation back.
    page.clear.click(
        on.start_over, outputs=outputs, api_name="clear", concurrency_limit=None, cancels=[asked, regenerated]
    )
    for chatbot in page.chatbots:  # a pane's own trash icon starts over too, so no pane drifts from the rest
        chatbot.clear(
            on.start_over,
            outputs=outputs,
            api_visibility="undocumented",
            concurrency_limit=None,
            cancels=[asked, regenerated],
        )
    page.continue_from.input(
        on.pick,
        inputs=[page.continue_from, page.token],
        outputs=page.shown,
        api_name="continue_from",
        concurrency_limit=None,
        show_progress="hidden",
    )


def _parameter_events(page: Page, on: CompareHandlers) -> None:
    """The override switch, the sliders, and (with 3+ panes) the rating method."""
    parameters = dict(
        inputs=[page.override, *page.sliders],
        outputs=[*page.params, *page.sliders],
        concurrency_limit=None,
        show_progress="hidden",
    )
    page.override.change(on.set_overrides, api_name="set_parameters", **parameters)
    for slider in page.sliders:
        slider.input(on.set_overrides, api_visibility="undocumented", **parameters)
    if page.method is not None:
        page.method.change(
            on.show_method,
            inputs=[page.method],
            outputs=[*page.scores, *page.ranks],
            api_visibility="undocumented",
            concurrency_limit=None,
        )


def _data_events(page: Page, on: CompareHandlers) -> None:
    """The "Your data" section: what is stored about this session, and deleting it."""
    page.show_data.click(on.show_data, outputs=[page.data], api_name="my_data", concurrency_limit=None)
    page.delete_ratings.click(
        on.delete_ratings, outputs=[page.data, page.status], api_name="delete_my_ratings", concurrency_limit=None
    )
    page.delete_all.click(
        on.delete_all, outputs=on.outputs + [page.data], api_name="delete_my_session", concurrency_limit=None
    )
