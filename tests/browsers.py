"""Debian's Chromium for what only a browser shows, and the app launched with a paced streamer for it."""

from __future__ import annotations

import time

from app import settings_from
from models.streaming import GenerationResult, PromptReady
from playground.server import App, create_app
from tests.servers import free_port

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDE, PHONE = {"width": 1400, "height": 900}, {"width": 420, "height": 900}


def paced_streamer(contender, messages, params, *, stop, seed):
    """Answers word by word; the contender named 'slow' takes seconds, so a person can stop it."""
    yield PromptReady(text=messages[-1]["content"], tokens=3)
    words = f"{contender.name} answers: {messages[-1]['content']} and that is all".split()
    if contender.name == "slow":
        words += [f"more{i}" for i in range(200)]
    for n, word in enumerate(words, start=1):
        if stop.is_set():
            yield GenerationResult(" ".join(words[: n - 1]), "stopped", 3, n - 1, 0.01, 0.02 * n, seed)
            return
        time.sleep(0.05 if contender.name == "slow" else 0.01)
        yield word if n == 1 else " " + word
    yield GenerationResult(" ".join(words), "stop", 3, len(words), 0.01, 0.02 * len(words), seed)


def paced_app(tmp_path_factory, *argv: str, streamer=paced_streamer) -> App:
    """app.py's settings from `argv`, generation by `streamer`, on a free port: `with` it to serve it."""
    settings = settings_from(
        ["--data-dir", str(tmp_path_factory.mktemp("paced")), "--port", str(free_port()), *argv], {}
    )
    return create_app(settings, streamer=streamer, log=lambda m: None)
