"""Fitting a conversation into a contender's context: which exchanges to send, how long an answer may be.

Plain functions over a token counter, shared by local weights and remote servers; no torch here.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from models.prompt_format import RenderedPrompt
from models.specs import GenerationParams
from models.streaming import StreamFailure, drop_oldest_exchanges

Messages = Sequence[Mapping[str, str]]


class ContextTooLong(StreamFailure):
    """Even the newest message leaves no room for an answer in the model's context."""


def answer_tokens(prompt_tokens: int, params: GenerationParams, context_length: int) -> int:
    """How many tokens the answer may have: the preset's limit, or what the context leaves."""
    room = context_length - prompt_tokens
    if room <= 0:
        raise ContextTooLong(
            f"the conversation is {prompt_tokens} tokens and the model's context is "
            f"{context_length}, which leaves no room for an answer: shorten the message or the "
            "system prompt, or press Clear to start a new conversation"
        )
    return min(params.max_new_tokens, room)


def answer_reserve(params: GenerationParams, context_length: int) -> int:
    """Tokens kept free for the answer before older exchanges are left out: the preset's limit, at
    most a quarter of the context (a long answer limit must not push out the whole conversation)."""
    return min(params.max_new_tokens, max(16, context_length // 4))


def fit_messages(
    messages: Messages, render: Callable[[list[Mapping[str, str]]], RenderedPrompt], context_length: int, reserve: int
) -> tuple[list[Mapping[str, str]], int, RenderedPrompt]:
    """`messages` with the oldest user/assistant exchanges left out until the prompt plus `reserve`
    answer tokens fit the context; the system prompt and the newest message always stay.

    Returns the messages to send, how many exchanges were left out, and their prompt. `render(messages)`
    is the prompt in the contender's own tokens; each candidate is rendered once.
    """
    sent, dropped = list(messages), 0
    prompt = render(sent)
    has_system = bool(messages) and messages[0].get("role") == "system"
    while len(sent) - has_system > 1 and len(prompt.input_ids) + reserve > context_length:
        dropped += 1  # one user message and the answer to it
        sent = drop_oldest_exchanges(messages, dropped)
        prompt = render(sent)
    return sent, dropped, prompt
