"""RemoteStreamer against llama.cpp's Python server (llama-cpp-python) serving the embedded GGUF file.

The server lives in its own venv (`make llama-cpp`), so its FastAPI never meets Gradio's pins; set
PLAYGROUND_LLAMA_CPP_PYTHON to use another interpreter that has `llama_cpp.server`.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from models.embedded import gguf_path
from models.remote import RemoteStreamer
from models.specs import ContenderSpec, EndpointSpec, GenerationParams
from models.streaming import GenerationResult, PromptReady, ServedBy, StreamEvent, StreamFailure
from tests.conftest import REPO
from tests.servers import Server, free_port

pytestmark = pytest.mark.slow

PYTHON_ENV = "PLAYGROUND_LLAMA_CPP_PYTHON"
ALIAS = "SmolLM2-135M-Instruct"  # --model_alias; without it /v1/models lists the GGUF file's full path
GREEDY = GenerationParams(temperature=0.0, top_p=1.0, max_new_tokens=24)
QUESTION = [{"role": "user", "content": "Name three colours."}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def server_python() -> Path:
    """$PLAYGROUND_LLAMA_CPP_PYTHON, else .venv-llama's Python; skips unless it imports llama_cpp.server."""
    python = Path(os.environ.get(PYTHON_ENV) or REPO / ".venv-llama" / "bin" / "python")
    how = f"run `make llama-cpp` (or set {PYTHON_ENV} to a Python that has llama-cpp-python[server])"
    if not python.is_file():
        pytest.skip(f"llama.cpp's server is not installed: {python} does not exist; {how}")
    probe = subprocess.run([str(python), "-c", "import llama_cpp.server"], capture_output=True, text=True)
    if probe.returncode != 0:
        error = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{python} cannot import llama_cpp.server ({error}); {how}")
    return python


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """llama.cpp's server on loopback, serving the embedded GGUF as ALIAS."""
    port = free_port()
    # -u: unbuffered, so the log shows the server's "Disconnected from client" as soon as it prints it.
    command = [
        str(server_python()),
        "-u",
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path()),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
    ]
    # It has no /health; /v1/models answers 200 once the model is loaded (before uvicorn listens).
    running = Server(command, port, tmp_path_factory.mktemp("llama-cpp") / "server.log", cwd=REPO, health="/v1/models")
    yield running
    running.stop()


def contender(server: Server, model: str = ALIAS) -> ContenderSpec:
    return ContenderSpec(name="llama.cpp", endpoint=EndpointSpec(base_url=server.base_url, model=model), params=GREEDY)


def collect(
    streamer: RemoteStreamer,
    spec: ContenderSpec,
    messages: list[dict[str, str]],
    params: GenerationParams,
    *,
    stop_after_first: bool = False,
) -> list[StreamEvent]:
    """Every event of one stream; with `stop_after_first`, Stop is pressed on the first text delta."""
    events: list[StreamEvent] = []
    stop = threading.Event()
    for event in streamer(spec, messages, params, stop=stop, seed=1):
        events.append(event)
        if stop_after_first and isinstance(event, str):
            stop.set()
    return events


def deltas(events: list[StreamEvent]) -> list[str]:
    return [e for e in events if isinstance(e, str)]


def test_check_finds_the_model_under_its_alias(server: Server) -> None:
    streamer = RemoteStreamer([contender(server)], env={})
    assert streamer.check() == {}
    assert streamer.unavailable() == {}


def test_greedy_chat_stream(server: Server) -> None:
    streamer = RemoteStreamer([contender(server)], env={})
    events = collect(streamer, contender(server), QUESTION, GREEDY)

    assert isinstance(events[0], PromptReady) and events[0].remote.api == "chat/completions"
    assert events[1] == ServedBy(model=ALIAS)  # llama-cpp-python sends no system_fingerprint
    result = events[-1]
    assert isinstance(result, GenerationResult)
    assert result.finish_reason in ("stop", "length")
    assert result.text == "".join(deltas(events)) and result.text.strip()
    # llama-cpp-python 0.3.36 ignores stream_options.include_usage: no chunk carries usage, so the
    # completion tokens are the streamed deltas (one per token here) and the prompt count is unknown.
    assert result.usage is None and result.prompt_tokens == 0
    assert 0 < result.completion_tokens == len(deltas(events)) <= GREEDY.max_new_tokens
    # Greedy is greedy: the same request gives the same answer.
    again = collect(streamer, contender(server), QUESTION, GREEDY)[-1]
    assert again.text == result.text


def test_stop_ends_the_answer_and_the_server_takes_the_next(server: Server) -> None:
    streamer = RemoteStreamer([contender(server)], env={})
    long = GREEDY.with_overrides(max_new_tokens=400)
    events = collect(streamer, contender(server), STORY, long, stop_after_first=True)

    result = events[-1]
    assert isinstance(result, GenerationResult) and result.finish_reason == "stopped"
    assert 0 < result.completion_tokens < long.max_new_tokens
    assert result.text == "".join(deltas(events))
    # The next request only gets the model once the stopped one let go of it (the server holds one lock
    # per generation), and that one first logs that its client went away.
    after = collect(streamer, contender(server), QUESTION, GREEDY)[-1]
    assert isinstance(after, GenerationResult) and after.finish_reason in ("stop", "length") and after.text
    assert "Disconnected from client" in server.log()


def test_unknown_model_is_caught_by_check_though_the_server_answers_anyway(server: Server) -> None:
    unknown = contender(server, model="no-such-model")
    checked = RemoteStreamer([unknown], env={})
    problems = checked.check()
    assert "no-such-model" in problems["llama.cpp"] and repr(ALIAS) in problems["llama.cpp"]
    with pytest.raises(StreamFailure, match="unavailable: the server at .* has no model 'no-such-model'"):
        collect(checked, unknown, QUESTION, GREEDY)

    # llama-cpp-python does not refuse a model name it does not serve: it answers with its default
    # model and echoes the requested name in every chunk, so ServedBy cannot reveal the substitution.
    # Only check() (run at start, and again before each request to an unavailable contender) guards it.
    unchecked = RemoteStreamer([unknown], env={})
    events = collect(unchecked, unknown, QUESTION, GREEDY)
    assert ServedBy(model="no-such-model") in events
    known = collect(RemoteStreamer([contender(server)], env={}), contender(server), QUESTION, GREEDY)
    assert events[-1].text == known[-1].text
