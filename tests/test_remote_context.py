"""Remote contenders fitted to their context, as local weights are: the oldest exchanges left out,
the answer limit capped, a newest message that cannot fit refused before anything is sent.

The context comes from the lineup (`endpoint.context_length`) or from the server's /v1/models
(vLLM's `max_model_len`, here from the stub); the tokens are counted by `endpoint.tokenizer`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from feedback_db import responses_of
from models.context import ContextTooLong
from models.lineups import weights_from_reference
from models.loading import load_tokenizer
from models.prompt_format import render_prompt
from models.remote import RemoteStreamer, count_margin
from models.specs import LineupSpec
from models.streaming import GenerationResult, PromptReady, drop_oldest_exchanges
from playground.comparison import Playground
from playground.server import context_fitting
from tests.stub_openai import SMALL_CONTEXT, StubServer
from tests.test_remote import GREEDY, answer, remote

SYSTEM = {"role": "system", "content": "You answer about the weather, briefly."}


def conversation(exchanges: int, question: str = "And tomorrow?") -> list[dict[str, str]]:
    """A system prompt, `exchanges` long exchanges, and a new question."""
    messages = [SYSTEM]
    for n in range(exchanges):
        messages += [
            {"role": "user", "content": f"Question {n}: tell me about the sky and the sea today."},
            {"role": "assistant", "content": f"Answer {n}: the sky is blue and the sea is calm today."},
        ]
    return messages + [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def counted(tiny_mha: Path):
    """The tiny checkpoint's weights spec and its tokenizer, loaded alone as the app loads it."""
    spec = weights_from_reference(str(tiny_mha))
    return spec, load_tokenizer(spec, log=lambda message: None)


def prompt_of(events: list) -> PromptReady:
    return next(e for e in events if isinstance(e, PromptReady))


def test_a_long_conversation_is_trimmed_to_the_context_the_server_lists(stub: StubServer, counted):
    spec, tokenizer = counted
    small = remote("small", stub.base_url, "small", tokenizer=spec, params=GREEDY.with_overrides(max_new_tokens=100))
    streamer = RemoteStreamer([small], tokenizers={spec: tokenizer})
    assert streamer.check() == {} and streamer.context_length(small) == SMALL_CONTEXT
    messages = conversation(6)
    whole = len(render_prompt("chat_template", messages, tokenizer).input_ids)
    assert whole > SMALL_CONTEXT  # the whole conversation would not fit

    events, result = answer(streamer, small, messages)
    assert isinstance(result, GenerationResult) and result.text == "Hello there"
    prompt = prompt_of(events)
    sent = stub.requests[-1]["messages"]
    assert prompt.dropped_exchanges > 0
    assert sent == drop_oldest_exchanges(messages, prompt.dropped_exchanges)
    assert sent[0] == SYSTEM and sent[-1] == messages[-1]
    # What was sent is counted, leaves the reserve (100 tokens, at most a quarter of 160: 40) and the
    # margin for a server's own count (4) free, and one exchange more would not have left them.
    margin = count_margin(SMALL_CONTEXT)
    assert margin == 4 and prompt.tokens == len(render_prompt("chat_template", sent, tokenizer).input_ids)
    assert prompt.tokens + 40 + margin <= SMALL_CONTEXT
    one_more = drop_oldest_exchanges(messages, prompt.dropped_exchanges - 1)
    assert len(render_prompt("chat_template", one_more, tokenizer).input_ids) + 40 + margin > SMALL_CONTEXT
    # The answer limit is what the context leaves less the margin, below the preset's 100; the record says so.
    assert stub.requests[-1]["max_tokens"] == SMALL_CONTEXT - prompt.tokens - margin < 100
    assert prompt.remote.body["max_tokens"] == SMALL_CONTEXT - prompt.tokens - margin


def test_the_smaller_of_the_lineups_and_the_servers_context_counts(stub: StubServer, counted):
    spec, tokenizer = counted
    hello = remote("hello", stub.base_url, "hello", tokenizer=spec, context_length=120)
    small = remote("small", stub.base_url, "small", tokenizer=spec, context_length=4096)
    streamer = RemoteStreamer([hello, small], tokenizers={spec: tokenizer})
    assert streamer.check() == {}
    assert streamer.context_length(hello) == 120  # the server lists 4096
    assert streamer.context_length(small) == SMALL_CONTEXT  # a lineup's 4096 would earn the server's refusal
    events, _ = answer(streamer, hello, conversation(6))
    assert prompt_of(events).dropped_exchanges > 0 and prompt_of(events).tokens + 24 + 4 <= 120


def test_a_servers_context_error_makes_the_app_read_its_listing_again(stub: StubServer, counted):
    spec, tokenizer = counted
    small = remote("small", stub.base_url, "small", tokenizer=spec)
    streamer = RemoteStreamer([small], tokenizers={spec: tokenizer})
    streamer.check()
    stub.contexts["small"], stub.too_long = 120, {"small"}  # restarted with a smaller context
    _, failure = answer(streamer, small, conversation(3))
    assert "do not fit the context of the server" in str(failure)
    assert streamer.context_length(small) == 120  # read again after the refusal
    stub.too_long.clear()
    events, result = answer(streamer, small, conversation(3))
    assert isinstance(result, GenerationResult)
    assert prompt_of(events).tokens + stub.requests[-1]["max_tokens"] <= 120


def test_a_newest_message_too_long_for_the_context_is_refused_with_the_numbers(stub: StubServer, counted):
    spec, tokenizer = counted
    small = remote("small", stub.base_url, "small", tokenizer=spec)
    streamer = RemoteStreamer([small], tokenizers={spec: tokenizer})
    streamer.check()
    events, failure = answer(streamer, small, conversation(2, "Describe the sea. " * 60))
    assert isinstance(failure, ContextTooLong)
    tokens = prompt_of(events).tokens
    assert str(failure) == (
        f"the conversation is {tokens} tokens and the model's context is {SMALL_CONTEXT}, which "
        "leaves no room for an answer: shorten the message or the system prompt, or press Clear "
        "to start a new conversation"
    )
    assert prompt_of(events).dropped_exchanges == 2  # every older exchange was tried away first
    assert stub.requests == []  # nothing was sent: the server would have refused it


def test_without_a_tokenizer_everything_is_sent_and_the_servers_refusal_is_told_plainly(stub: StubServer):
    too_long = remote("too-long", stub.base_url, "too-long")
    streamer = RemoteStreamer([too_long])
    assert streamer.check() == {}
    messages = conversation(6)
    events, failure = answer(streamer, too_long, messages)
    assert stub.requests[-1]["messages"] == messages and prompt_of(events).dropped_exchanges == 0
    assert str(failure) == (
        f"The conversation and the answer's token limit do not fit the context of the server at {stub.base_url} "
        "(HTTP 400: This model's maximum context length is 4096 tokens. However, you requested 4352 tokens (4096 in "
        "the messages, 256 in the completion). Please reduce the length of the messages or completion): shorten the "
        "message or press Clear to start a new conversation; if a new one fails too, lower max_new_tokens."
    )
    assert context_fitting(streamer, too_long) == (
        "long conversations are sent whole and its server's error is shown, since the lineup sets no "
        "endpoint.tokenizer (weights whose tokenizer counts its tokens)"
    )


def test_the_start_says_which_piece_is_missing(stub: StubServer, counted):
    spec, tokenizer = counted
    fitted = remote("small", stub.base_url, "small", tokenizer=spec)
    unlisted = remote("elsewhere", "http://127.0.0.1:9/v1", "x", tokenizer=spec)
    streamer = RemoteStreamer([fitted, unlisted], tokenizers={spec: tokenizer})
    streamer.check()
    assert context_fitting(streamer, fitted) == ""
    assert context_fitting(streamer, unlisted) == (
        "long conversations are sent whole and its server's error is shown, since the lineup sets no "
        "endpoint.context_length (its server could not be asked)"
    )


@pytest.mark.parametrize("prompt", ["local", "server"])
def test_the_count_here_equals_the_real_servers_usage_and_the_answer_fits(serve_tiny, tiny_mha, counted, prompt):
    spec, tokenizer = counted
    contender = remote(
        "served",
        serve_tiny.base_url,
        str(tiny_mha),
        tokenizer=spec,
        context_length=200,
        prompt=prompt,
        prompt_format="llama2" if prompt == "local" else "chat_template",
        params=GREEDY.with_overrides(max_new_tokens=1500),
    )
    streamer = RemoteStreamer([contender], tokenizers={spec: tokenizer})
    assert streamer.check() == {}
    events, result = answer(streamer, contender, conversation(8))
    prompt_ready = prompt_of(events)
    assert isinstance(result, GenerationResult), result
    assert prompt_ready.dropped_exchanges > 0
    # transformers serve counts the prompt it was sent exactly as this app did.
    assert result.usage is not None and result.usage["prompt_tokens"] == prompt_ready.tokens
    limit = prompt_ready.remote.body["max_tokens"]
    assert limit == 200 - prompt_ready.tokens - count_margin(200) < 1500
    assert result.completion_tokens <= limit and result.prompt_tokens + result.completion_tokens <= 200


def test_the_pane_says_what_was_left_out_and_the_record_keeps_what_was_sent(stub: StubServer, counted, database):
    spec, tokenizer = counted
    small = remote("small", stub.base_url, "small", tokenizer=spec)
    hello = remote("hello", stub.base_url, "hello")
    streamer = RemoteStreamer([small, hello], tokenizers={spec: tokenizer})
    streamer.check()
    core = Playground(LineupSpec(name="remote", contenders=(small, hello)), streamer, database, rng=random.Random(0))
    session = core.new_conversation()
    for turn in range(5):
        for _ in core.ask(session, f"Question {turn}: tell me about the sky and the sea, the wind and the rain today."):
            pass
        assert [p.status for p in session.panes] == ["done", "done"]
    notices = {p.contender.name: p.notice for p in session.panes}
    assert "oldest exchange" in (notices["small"] or "") and "left out to fit" in notices["small"]
    assert not notices["hello"]  # 4096 tokens hold the whole conversation
    with database.session() as db:
        rows = {r.contender: r for r in responses_of(db, session.comparison_id)}
    assert len(rows["small"].messages) < len(rows["hello"].messages) == 9
    assert rows["small"].messages[-1] == rows["hello"].messages[-1]
    # The stub sends no usage: the prompt's length is the count made here, and the answer limit fits it.
    assert 0 < rows["small"].prompt_tokens <= SMALL_CONTEXT - rows["small"].request["body"]["max_tokens"]
    assert rows["hello"].prompt_tokens == 0  # not counted without a tokenizer
