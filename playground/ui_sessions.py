"""Gradio's per-session state, kept lean and let go of when a session ends or goes quiet.

Gradio makes a `SessionState` for every session hash an event names, and a client picks its session
hash itself: a script can mint thousands. Each one copied the config of every block on the page
(`config_values`, for deep links, which this page does not offer): about 340 KB and tens of
milliseconds of CPU per hash, kept until 10,000 others pushed it out (issue 15: 3,000 page loads
took 400-500 MB, never given back). Here a session starts with no copies (Gradio makes the entries
it updates, as it always did), is dropped when its page unloads, and is swept after `idle_s` without
an event; freed memory goes back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from typing import Any, Callable

import gradio as gr
from gradio.state_holder import SessionState, StateHolder

SWEEP_EVERY_S = 60.0


class _WithoutBlocks:
    """What SessionState reads of the Blocks, with no blocks to copy the config of up front."""

    def __init__(self, blocks: gr.Blocks) -> None:
        self.default_config, self.blocks = blocks.default_config, {}


class LeanSessionState(SessionState):
    """Gradio's SessionState without `config_values`, the per-session copy of each block's config (and of
    every value an event read or wrote) that only deep links read: about 110 KB a session, built with
    pydantic's JSON schemas on every event. Blocks updated for this session are kept as before."""

    def __init__(self, blocks: gr.Blocks) -> None:
        super().__init__(_WithoutBlocks(blocks))  # type: ignore[arg-type]

    def __setitem__(self, key: int, value: Any) -> None:
        # SessionState.__setitem__ less its config copy. This page has no gr.State, whose time to live
        # the original also records; keep that path for safety.
        from gradio.components import State

        block = self.blocks_config.blocks.get(key)
        if isinstance(block, State):
            super().__setitem__(key, value)
            self.config_values.pop(key, None)
        else:
            self.blocks_config.blocks[key] = value

    def _update_config(self, key: int) -> None:
        pass

    def _update_value_in_config(self, key: int, value: Any) -> None:
        pass


class LeanStateHolder(StateHolder):
    """Gradio's StateHolder whose sessions are LeanSessionStates."""

    def __getitem__(self, session_id: str) -> SessionState:
        with self.lock:
            if session_id not in self.session_data:
                self.session_data[session_id] = LeanSessionState(self.blocks)
        return super().__getitem__(session_id)

    def forget(self, session_id: str) -> None:
        with self.lock:
            self.session_data.pop(session_id, None)
            self.time_last_used.pop(session_id, None)

    def sweep(self, idle_s: float, keep: Callable[[str], bool] = lambda s: False) -> list[str]:
        """Forget the sessions without an event for `idle_s` seconds, but those `keep` names; which went."""
        cutoff = time.time() - idle_s
        with self.lock:
            idle = [
                s
                for s in self.session_data
                if (used := self.time_last_used.get(s)) is None or used.timestamp() < cutoff
            ]
            gone = [s for s in idle if not keep(s)]
            for session_id in gone:
                self.session_data.pop(session_id, None)
                self.time_last_used.pop(session_id, None)
        return gone


def lean_sessions(demo: gr.Blocks) -> LeanStateHolder:
    """Make a launched app's state holder lean (before any session exists); return it."""
    holder = demo.state_holder
    holder.__class__ = LeanStateHolder  # the same object Gradio's routes hold, with the methods above
    return holder  # type: ignore[return-value]


class Sweeper:
    """Every `every_s`, lets go of quiet sessions: Gradio's and the app's own, then returns memory.

    `sweep` does the app's part (the conversation store) and returns the session hashes still held.
    """

    def __init__(
        self, holder: LeanStateHolder, idle_s: float, sweep: Callable[[], set[str]], every_s: float = SWEEP_EVERY_S
    ) -> None:
        self.holder, self.idle_s, self.sweep, self.every_s = holder, idle_s, sweep, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def run_once(self) -> int:
        """One sweep; how many sessions were let go."""
        held = self.sweep()
        gone = self.holder.sweep(self.idle_s, keep=held.__contains__)
        queue = getattr(self.holder.blocks, "_queue", None)
        for session_id in gone if queue is not None else ():
            # Gradio keeps a message queue per session hash that ever joined, and never drops it.
            if not queue.pending_event_ids_session.get(session_id):
                queue.pending_messages_per_session.pop(session_id, None)
                queue.pending_event_ids_session.pop(session_id, None)
        if gone:
            release_memory()
        return len(gone)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if not getattr(self.holder.blocks, "is_running", True):  # the app was closed
                return
            self.run_once()


def release_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise); nothing elsewhere."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        trim: Any = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)
