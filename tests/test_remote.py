"""Remote contenders against real servers: `transformers serve` on tiny checkpoints, started here.

What no real server does on demand (401, 429 with Retry-After, a malformed chunk, a 5xx with an
error text) comes from the small stub in tests/stub_openai.py.
"""

from __future__ import annotations

import random
import signal
import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from feedback_db import responses_of
from models.lineups import weights_from_reference
from models.loading import LoadOptions, load_weights
from models.local import LocalStreamer
from models.prompt_format import llama2_prompt_text, llama2_token_ids
from models.remote import RemoteStreamer
from models.specs import ContenderSpec, EndpointSpec, GenerationParams, LineupSpec
from models.streaming import GenerationResult, PromptReady, RoutedStreamer, ServedBy, StreamFailure
from playground.comparison import Playground
from tests.servers import free_port, transformers_serve
from tests.stub_openai import KEY, StubServer

GREEDY = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=24)
LONG = GREEDY.with_overrides(max_new_tokens=1500)
QUESTION = [{"role": "user", "content": "Tell me about the sky and the sea."}]


@pytest.fixture(scope="module")
def local_tiny(tiny_mha: Path) -> Iterator[LocalStreamer]:
    loaded = load_weights(
        weights_from_reference(str(tiny_mha)), LoadOptions(dtype="float32", device_map="cpu"), log=lambda message: None
    )
    streamer = LocalStreamer({loaded.spec: loaded})
    yield streamer
    streamer.close()


def remote(
    name: str,
    base_url: str,
    model: str,
    *,
    prompt_format: str = "chat_template",
    params: GenerationParams = GREEDY,
    **endpoint,
) -> ContenderSpec:
    return ContenderSpec(
        name=name,
        endpoint=EndpointSpec(base_url=base_url, model=model, **endpoint),
        prompt_format=prompt_format,
        params=params,
    )


def local(streamer: LocalStreamer, name: str = "local", prompt_format: str = "chat_template") -> ContenderSpec:
    (weights,) = streamer.loaded
    return ContenderSpec(name=name, weights=weights, prompt_format=prompt_format, params=GREEDY)


def answer(
    streamer, contender: ContenderSpec, messages=QUESTION, *, stop: threading.Event | None = None, after_deltas=None
) -> tuple[list, GenerationResult | StreamFailure]:
    """Every event of one stream, and its GenerationResult or the StreamFailure that ended it.

    `after_deltas(n)` runs after the n-th text delta: where a test stops, pauses or kills the server.
    """
    events, deltas = [], 0
    try:
        for event in streamer(contender, messages, contender.params, stop=stop or threading.Event(), seed=7):
            events.append(event)
            if isinstance(event, str):
                deltas += 1
                if after_deltas is not None:
                    after_deltas(deltas)
    except StreamFailure as failure:
        return events, failure
    return events, events[-1]


def text_of(events: list) -> str:
    return "".join(e for e in events if isinstance(e, str))


def ask(core: Playground, prompt: str = "Tell me about the sky and the sea."):
    conversation = core.new_conversation()
    for _ in core.ask(conversation, prompt):
        pass
    with core.database.session() as db:
        rows = {r.contender: r for r in responses_of(db, conversation.comparison_id)}
        for row in rows.values():
            db.expunge(row)
    return conversation, rows


def test_chat_stream_equals_the_same_weights_here_and_is_stored_with_provenance(
    database, serve_tiny, local_tiny, tiny_mha
):
    there = remote("served", serve_tiny.base_url, str(tiny_mha))
    lineup = LineupSpec(name="mixed", contenders=(local(local_tiny), there))
    streamer = RoutedStreamer(local_tiny, RemoteStreamer([there]))
    assert streamer.remote.check() == {}
    core = Playground(lineup, streamer, database, rng=random.Random(0))

    conversation, rows = ask(core)
    assert [p.status for p in conversation.panes] == ["done", "done"]
    here, served = rows["local"], rows["served"]
    # Greedy, float32, the same chat template: the server saw the same prompt and decoded the same tokens.
    assert served.text and served.text == here.text
    assert served.prompt_tokens == here.prompt_tokens > 0
    assert served.completion_tokens == here.completion_tokens > 0
    assert served.usage == {
        "prompt_tokens": served.prompt_tokens,
        "completion_tokens": served.completion_tokens,
        "total_tokens": served.prompt_tokens + served.completion_tokens,
    }
    assert served.time_to_first_token_s > 0 and served.tokens_per_s > 0
    assert (served.endpoint, served.served_model, served.weights_id) == (
        serve_tiny.base_url,
        str(tiny_mha),
        str(tiny_mha),
    )
    assert served.system_fingerprint is None  # transformers serve sends an empty one
    assert served.request["api"] == "chat/completions" and served.request["template"] == "server"
    body = served.request["body"]
    assert "messages" not in body and served.messages == QUESTION
    assert (body["model"], body["max_tokens"], body["temperature"], body["seed"]) == (
        str(tiny_mha),
        24,
        0.0,
        served.seed,
    )
    assert body["stream_options"] == {"include_usage": True}
    assert served.prompt_rendered == "" and served.finish_reason in ("stop", "length")
    assert (here.endpoint, here.request, here.usage) == (None, None, None)


def test_local_prompt_goes_to_completions_exactly_as_rendered_here(serve_tiny, local_tiny, tiny_mha):
    there = remote("served", serve_tiny.base_url, str(tiny_mha), prompt_format="llama2", prompt="local")
    streamer = RemoteStreamer([there])
    assert streamer.check() == {}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Hello! The sea is wide."},
        {"role": "user", "content": "And the sky?"},
    ]
    events, result = answer(streamer, there, messages)
    _, reference = answer(local_tiny, local(local_tiny, prompt_format="llama2"), messages)

    ready = next(e for e in events if isinstance(e, PromptReady))
    # This tokenizer adds no BOS of its own, so the text keeps "<s>"; the server parses "<s>" / "</s>"
    # between the exchanges as BOS / EOS, and counts exactly the token ids this app would feed.
    assert ready.text == llama2_prompt_text(messages)
    assert ready.remote.api == "completions" and ready.remote.template == "app"
    tokenizer = next(iter(local_tiny.loaded.values())).tokenizer
    assert result.prompt_tokens == len(llama2_token_ids(messages, tokenizer)) == reference.prompt_tokens
    assert result.text == reference.text and result.completion_tokens == reference.completion_tokens


def test_stop_closes_the_connection_at_once_and_the_next_answer_works(serve_tiny, tiny_mha):
    there = remote("served", serve_tiny.base_url, str(tiny_mha), params=LONG)
    streamer = RemoteStreamer([there])
    stop = threading.Event()
    events, result = answer(streamer, there, stop=stop, after_deltas=lambda n: n == 3 and stop.set())
    assert isinstance(result, GenerationResult) and result.finish_reason == "stopped"
    assert result.text == text_of(events) and 3 <= result.completion_tokens < 1500
    # The server generates one answer at a time: had it gone on with the stopped one, this would wait.
    _, after = answer(streamer, remote("served", serve_tiny.base_url, str(tiny_mha)))
    assert isinstance(after, GenerationResult) and after.finish_reason in ("stop", "length")


def test_start_check_names_missing_models_and_unreachable_servers(serve_tiny, tiny_mha):
    refused = f"http://127.0.0.1:{free_port()}/v1"
    streamer = RemoteStreamer(
        [
            remote("fine", serve_tiny.base_url, str(tiny_mha)),
            remote("typo", serve_tiny.base_url, "tiny-typo"),
            remote("down", refused, "anything"),
            remote("keyless", serve_tiny.base_url, str(tiny_mha), api_key_env="NO_SUCH_KEY_VAR"),
        ],
        env={},
    )
    problems = streamer.check()
    assert sorted(problems) == ["down", "keyless", "typo"]
    assert f"has no model 'tiny-typo'; it serves '{tiny_mha}'" in problems["typo"]
    assert problems["down"] == f"Could not connect to the server at {refused} (Connection refused): is it running?"
    assert "NO_SUCH_KEY_VAR" in problems["keyless"] and "is not set" in problems["keyless"]
    # An unavailable contender's pane says so, and why.
    _, failure = answer(streamer, remote("typo", serve_tiny.base_url, "tiny-typo"))
    assert str(failure).startswith("typo is unavailable: the server at")


def test_errors_from_a_real_server_are_told_in_plain_words(serve_tiny, tiny_mha):
    wrong_model = remote("wrong", serve_tiny.base_url, "tiny-typo")
    _, failure = answer(RemoteStreamer([wrong_model]), wrong_model)
    assert "refused the request (HTTP 400)" in str(failure) and "pinned" in str(failure)
    wrong_path = remote("path", serve_tiny.base_url.replace("/v1", "/v2"), str(tiny_mha))
    _, failure = answer(RemoteStreamer([wrong_path]), wrong_path)
    assert str(failure).startswith(f"The server at {wrong_path.endpoint.url} has no model")
    assert "(HTTP 404" in str(failure) and "base_url ends in /v1" in str(failure)
    refused = remote("refused", f"http://127.0.0.1:{free_port()}/v1", "x")
    _, failure = answer(RemoteStreamer([refused]), refused)
    assert "(Connection refused): is it running?" in str(failure)


def test_a_connect_timeout_is_named():
    # A listening socket whose accept queue is full: the kernel drops further SYNs, as a host behind
    # a firewall does, so the client's connect times out.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(full.getsockname())
            fillers.append(filler)
        url = f"http://127.0.0.1:{full.getsockname()[1]}/v1"
        slow = remote("slow", url, "m", connect_timeout_s=0.5)
        _, failure = answer(RemoteStreamer([slow]), slow)
        for filler in fillers:
            filler.close()
    assert str(failure) == (
        f"The server at {url} did not accept the connection within 0.5 s (connect_timeout_s): "
        "is the address right, and is it up?"
    )


def test_a_silent_server_then_a_dead_one_end_one_pane_and_keep_the_partial_answer(
    database, local_tiny, tiny_gqa, tmp_path
):
    server = transformers_serve(tiny_gqa, tmp_path / "serve.log")
    try:
        there = remote("served", server.base_url, str(tiny_gqa), params=LONG, chunk_timeout_s=1.0)
        remote_streamer = RemoteStreamer([there])
        fault = {"signal": signal.SIGSTOP}

        def remote_then_fault(contender, messages, params, *, stop, seed):
            """The real remote stream; the server is paused or killed after the third text delta."""
            deltas = 0
            for event in remote_streamer(contender, messages, params, stop=stop, seed=seed):
                yield event
                deltas += isinstance(event, str)
                if deltas == 3 and fault.get("signal"):
                    server.signal(fault.pop("signal"))

        lineup = LineupSpec(name="mixed", contenders=(local(local_tiny), there))
        core = Playground(lineup, RoutedStreamer(local_tiny, remote_then_fault), database, rng=random.Random(0))

        conversation, rows = ask(core)  # paused: nothing arrives for chunk_timeout_s
        assert rows["local"].finish_reason in ("stop", "length") and rows["local"].text
        silent = rows["served"]
        assert silent.finish_reason == "error" and silent.text
        # What streamed before the silence is counted, as a stopped answer's is (tests/test_remote_cut.py).
        assert silent.completion_tokens >= 3 and silent.time_to_first_token_s is not None
        assert silent.error == (
            f"The server at {server.base_url} sent nothing for 1 s (chunk_timeout_s), so the "
            "answer was ended. The answer so far is kept."
        )
        assert silent.served_model == str(tiny_gqa) and silent.request["api"] == "chat/completions"
        assert [p.status for p in conversation.panes if p.contender.name == "served"] == ["error"]

        server.signal(signal.SIGCONT)
        fault["signal"] = signal.SIGKILL
        _, rows = ask(core)  # killed mid-answer
        assert rows["local"].finish_reason in ("stop", "length")
        dead = rows["served"]
        assert dead.finish_reason == "error" and dead.text and dead.completion_tokens >= 3
        assert dead.error == (
            f"The connection to the server at {server.base_url} broke in the middle of the answer "
            "(the server may have stopped or restarted). The answer so far is kept."
        )

        _, rows = ask(core)  # the next comparison: the local pane answers, the remote one says why not
        assert rows["local"].finish_reason in ("stop", "length")
        assert "(Connection refused): is it running?" in rows["served"].error
    finally:
        server.stop()


def test_stub_401_429_5xx_404_and_a_malformed_chunk(stub, database):
    needs_key = remote("needs-key", stub.base_url, "needs-key", api_key_env="STUB_KEY")
    _, failure = answer(RemoteStreamer([needs_key], env={"STUB_KEY": "wrong-key"}), needs_key)
    assert str(failure) == (
        f"The server at {stub.base_url} refused the API key (HTTP 401: Invalid API key): check the key in STUB_KEY."
    )
    _, failure = answer(RemoteStreamer([needs_key], env={}), needs_key)
    assert "STUB_KEY" in str(failure) and "is not set" in str(failure)

    limited = remote("limited", stub.base_url, "limited")
    _, failure = answer(RemoteStreamer([limited]), limited)
    assert str(failure) == (
        f"The server at {stub.base_url} is limiting requests (HTTP 429: Too many requests in "
        "flight); it asks to wait 7 s before trying again."
    )
    overloaded = remote("overloaded", stub.base_url, "overloaded")
    _, failure = answer(RemoteStreamer([overloaded]), overloaded)
    assert str(failure) == f"The server at {stub.base_url} failed (HTTP 503): engine overloaded, 12 requests waiting."
    unknown = remote("unknown", stub.base_url, "llama-3-typo")
    _, failure = answer(RemoteStreamer([unknown]), unknown)
    assert str(failure) == (
        f"The server at {stub.base_url} has no model 'llama-3-typo' or no such endpoint (HTTP "
        "404: The model `llama-3-typo` does not exist). Check the model name against its "
        "/v1/models and that base_url ends in /v1."
    )
    malformed = remote("malformed", stub.base_url, "malformed")
    events, failure = answer(RemoteStreamer([malformed]), malformed)
    assert text_of(events) == "Hello there"
    assert str(failure).startswith(f"The server at {stub.base_url} sent a malformed chunk")
    assert str(failure).endswith("The answer so far is kept.")


def test_the_api_key_is_sent_but_never_stored(stub, database, tmp_path):
    keyed = remote("needs-key", stub.base_url, "needs-key", api_key_env="STUB_KEY")
    other = remote("malformed", stub.base_url, "malformed")
    streamer = RemoteStreamer([keyed, other], env={"STUB_KEY": KEY})
    assert streamer.check() == {}
    core = Playground(LineupSpec(name="stub", contenders=(keyed, other)), streamer, database, rng=random.Random(0))
    _, rows = ask(core)
    assert rows["needs-key"].text == "Hello there" and rows["needs-key"].served_model == "stub-model"
    assert rows["malformed"].finish_reason == "error" and rows["malformed"].text == "Hello there"
    assert f"Bearer {KEY}" in stub.authorizations
    database.dispose()
    stored = b"".join(path.read_bytes() for path in Path(database.engine.url.database).parent.iterdir())
    assert KEY.encode() not in stored and b"needs-key" in stored


def test_a_request_limit_makes_the_next_stream_wait_its_turn(serve_tiny, tiny_mha):
    capped = remote("capped", serve_tiny.base_url, str(tiny_mha), params=LONG, max_concurrent=1)
    streamer = RemoteStreamer([capped])
    first_stop, second_stop, order = threading.Event(), threading.Event(), []

    def second() -> None:
        events, result = answer(streamer, capped, stop=second_stop)
        order.append(("second", result.finish_reason, text_of(events)))

    first = streamer(capped, QUESTION, LONG, stop=first_stop, seed=1)
    assert isinstance(next(first), PromptReady) and isinstance(next(first), ServedBy)
    waiting = threading.Thread(target=second)
    waiting.start()
    waiting.join(1.0)
    assert waiting.is_alive() and not order  # the second waits while the first holds the only slot
    second_stop.set()  # a stream stopped while it waits ends at once, as stopped, with no text
    waiting.join(10)
    assert order == [("second", "stopped", "")]
    first_stop.set()
    assert list(first)[-1].finish_reason == "stopped"


@pytest.mark.slow
def test_the_embedded_model_on_transformers_serve_answers_as_it_does_here(embedded_cache, database, tmp_path):
    from models.embedded import ensure_converted
    from models.lineups import WEIGHTS

    folder = ensure_converted(embedded_cache, log=lambda message: None)
    server = transformers_serve(folder, tmp_path / "serve.log")
    try:
        params = GREEDY.with_overrides(max_new_tokens=40)
        here = ContenderSpec(name="here", weights=WEIGHTS["smollm2-135m-instruct"], params=params)
        loaded = load_weights(
            here.weights,
            LoadOptions(dtype="float32", device_map="cpu", cache_dir=embedded_cache),
            log=lambda message: None,
        )
        local_streamer = LocalStreamer({here.weights: loaded})
        there = remote("there", server.base_url, str(folder), params=params)
        streamer = RoutedStreamer(local_streamer, RemoteStreamer([there]))
        core = Playground(
            LineupSpec(name="embedded", contenders=(here, there)), streamer, database, rng=random.Random(0)
        )
        _, rows = ask(core, "What is the capital of France?")
        local_streamer.close()
    finally:
        server.stop()
    assert "Paris" in rows["there"].text and rows["there"].text == rows["here"].text
    assert rows["there"].usage["prompt_tokens"] == rows["here"].prompt_tokens
    assert rows["there"].completion_tokens == rows["here"].completion_tokens


def test_an_unavailable_contender_works_once_its_server_is_up():
    port = free_port()
    late = remote("late", f"http://127.0.0.1:{port}/v1", "hello")
    streamer = RemoteStreamer([late], recheck_s=0.0)  # the app asks again at most every 10 s
    assert "Connection refused" in streamer.check()["late"]
    _, failure = answer(streamer, late)
    assert str(failure).startswith("late is unavailable: Could not connect")
    server = StubServer(port)
    try:
        events, result = answer(streamer, late)
    finally:
        server.close()
    assert result.finish_reason == "stop" and text_of(events) == "Hello there"
    assert streamer.unavailable() == {}
