"""The page's rater parts: the terms to accept, who rates (an invite's key kept in the browser, or a
Hugging Face sign-in), and the guidelines tab; thin wiring over playground.raters."""

from __future__ import annotations

import hashlib
from typing import Any

import gradio as gr

from playground.comparison import Playground
from playground.conversations import ConversationStore
from playground.ui_handlers import refusals, session_of, visitor_key

BROWSER_KEY = "playground-rater"  # the localStorage key of an invited rater's browser key


class RaterBlocks:
    """Built above the tabs: the terms with Accept (when there are terms), a line saying who rates, and
    the browser's own key for an invite (kept in localStorage, checked against its stored hash)."""

    def __init__(self, core: Playground, store: ConversationStore) -> None:
        self.core, self.store, policy = core, store, core.raters.policy
        self.terms_box = self.accept = None
        if policy.terms is not None:
            # Shown to every new page; hidden on load for a rater who accepted this version before.
            with gr.Group(elem_id="terms") as self.terms_box:
                gr.Markdown(policy.terms.text, elem_id="terms-text")
                self.accept = gr.Button("Accept", variant="primary", elem_id="accept-terms")
        self.rater_line = gr.Markdown("", elem_id="rater-line")
        self.login = gr.LoginButton() if policy.mode == "hub" else None
        # The key is worth nothing without the invite's stored hash; encrypted with a secret of this app's.
        salt = core.visitors.salt if core.visitors else b""
        self.browser_key = gr.BrowserState(
            None, storage_key=BROWSER_KEY, secret=hashlib.sha256(salt + b"browser-state").hexdigest()[:32]
        )

    def wire(self, demo: gr.Blocks) -> None:
        outputs = [b for b in (self.terms_box, self.rater_line, self.browser_key) if b is not None]
        if self.core.raters.policy.mode == "hub":
            demo.load(self.identify_hub, outputs=outputs, api_visibility="undocumented", show_progress="hidden")
        else:
            inputs = [self.browser_key] if self.browser_key is not None else []
            demo.load(
                self.identify, inputs=inputs, outputs=outputs, api_visibility="undocumented", show_progress="hidden"
            )
        if self.accept is not None:
            self.accept.click(
                self.accept_terms,
                outputs=[self.terms_box, self.rater_line],
                api_name="accept_terms",
                concurrency_limit=None,
            )

    def identify(self, browser_key: Any, request: gr.Request) -> dict[Any, Any]:
        """A new page: its rater from the invite in its link or the key its browser kept."""
        return self._seated(request, invite=_invite(request), browser_key=browser_key, hub_name=None)

    def identify_hub(self, browser_key: Any, request: gr.Request, profile: gr.OAuthProfile | None) -> dict[Any, Any]:
        """A new page on a Space: its rater is the signed-in Hugging Face account, or an invite's."""
        name = profile.username if profile else None
        return self._seated(request, invite=_invite(request), browser_key=browser_key, hub_name=name)

    def _seated(self, request: gr.Request, **who: Any) -> dict[Any, Any]:
        key = who["browser_key"]
        who["browser_key"] = key if isinstance(key, str) else None  # anything else is no key
        seat, line, new_key = self.core.raters.identify(**who)
        conversation = self.store.get(session_of(request))
        if seat is not None:
            earlier = conversation.seat  # this session may have accepted the terms before its page loaded
            if earlier is not None and earlier.terms_version and self.core.raters.needs_terms(seat):
                seat = self.core.raters.accept_terms(seat)
            conversation.seat = seat
        shown: dict[Any, Any] = {self.rater_line: line}
        if self.terms_box is not None and not self.core.raters.needs_terms(conversation.seat):
            shown[self.terms_box] = gr.Group(visible=False)
        if self.browser_key is not None and new_key:
            shown[self.browser_key] = new_key
        return shown

    @refusals
    def accept_terms(self, request: gr.Request) -> dict[Any, Any]:
        conversation = self.store.get(session_of(request))
        conversation.seat = self.core.raters.accept_terms(conversation.seat, visitor_key(self.core, request))
        return {self.terms_box: gr.Group(visible=False), self.rater_line: "Thank you: the terms are accepted."}


def _invite(request: gr.Request) -> str | None:
    invite = (getattr(request, "query_params", None) or {}).get("invite")
    return invite if isinstance(invite, str) else None


def guidelines_tab(core: Playground) -> None:
    """The rating guidelines, for raters to read at any time (their version is stored with each rating)."""
    guidelines = core.raters.policy.guidelines
    if guidelines is not None:
        with gr.Tab("Guidelines"):
            gr.Markdown(guidelines.text, elem_id="guidelines")
