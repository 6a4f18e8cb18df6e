"""The server-side store of conversations, one per browser session, evicted on unload or when idle."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from playground.conversation import Conversation
from playground.errors import PlaygroundError

DEFAULT_TTL_S = 6 * 3600.0
UNASKED_TTL_S = 15 * 60.0  # a conversation that never asked anything


@dataclass
class _Entry:
    conversation: Conversation
    touched: float
    # Every conversation this browser session had (Clear starts a new one): what "your data" covers.
    earlier: list[str] = field(default_factory=list)


class ConversationStore:
    """Conversation by Gradio session hash; the browser holds nothing but that hash.

    An entry goes when its page unloads (`drop`) or after `ttl_s` without use, so a public demo's
    memory does not grow with every visitor it ever had. A conversation with answers still streaming
    is never evicted by age.
    """

    def __init__(
        self,
        factory: Callable[[], Conversation],
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        unasked_ttl_s: float = UNASKED_TTL_S,
    ) -> None:
        self.factory, self.ttl_s, self.clock = factory, ttl_s, clock
        self.unasked_ttl_s = min(unasked_ttl_s, ttl_s)
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._next_sweep = clock() + min(self.unasked_ttl_s, 60.0)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str | None) -> Conversation:
        """The conversation of this browser session, made on first use."""
        key = self._checked(key)
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(self.factory(), now)
            entry.touched = now
            conversation = entry.conversation
        self._sweep(now)
        return conversation

    def peek(self, key: str | None) -> Conversation | None:
        """The conversation of this browser session if it has one; nothing is made (a page load, a
        look at "Your data")."""
        with self._lock:
            entry = self._entries.get(key) if key else None
            return entry.conversation if entry else None

    def replace(self, key: str | None, conversation: Conversation) -> Conversation:
        """Put a new conversation in the old one's place (Clear)."""
        key = self._checked(key)
        with self._lock:
            old = self._entries.get(key)
            earlier = (old.earlier + [old.conversation.id]) if old else []
            self._entries[key] = _Entry(conversation, self.clock(), earlier)
        return conversation

    def conversation_ids(self, key: str | None) -> list[str]:
        """The ids of every conversation this browser session had, the current one last."""
        key = self._checked(key)
        with self._lock:
            entry = self._entries.get(key)
            return (entry.earlier + [entry.conversation.id]) if entry else []

    def drop(self, key: str | None) -> None:
        """The page went away: stop its streams and forget it."""
        with self._lock:
            entry = self._entries.pop(key, None) if key else None
        if entry is not None:
            entry.conversation.retire()

    def sweep(self) -> set[str]:
        """Forget the conversations idle past their time; return the session hashes still held."""
        now = self.clock()
        with self._lock:
            self._next_sweep = now + min(self.unasked_ttl_s, 60.0)
            stale = [k for k, e in self._entries.items() if now - e.touched > self._ttl(e) and not e.conversation.busy]
            for key in stale:
                del self._entries[key]
            return set(self._entries)

    def _ttl(self, entry: _Entry) -> float:
        # A page that never asked anything holds nothing worth keeping long: a script can open thousands.
        # A rater's seat (terms accepted, a review under way) is worth keeping like a conversation.
        asked = entry.earlier or entry.conversation.comparison_id is not None or entry.conversation.seat is not None
        return self.ttl_s if asked else self.unasked_ttl_s

    def _sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self.sweep()

    @staticmethod
    def _checked(key: str | None) -> str:
        if not key:
            raise PlaygroundError("this request has no session; reload the page")
        return key
