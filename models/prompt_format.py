"""Prompt formats: check a conversation, then render it as text and token ids for one model.

`"llama2"` builds Meta's Llama 2 chat prompt as Meta's reference `chat_completion` (llama/generation.py)
does: each exchange encoded on its own, BOS / EOS added as ids, never as text for the tokenizer to parse.
`"chat_template"` uses the tokenizer's own Jinja template. Messages are OpenAI-style role/content dicts.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # transformers is heavy; the text form must work without importing it
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "LLAMA2_DEFAULT_SYSTEM_PROMPT",
    "PromptError",
    "RenderedPrompt",
    "llama2_prompt_text",
    "llama2_token_ids",
    "render_prompt",
    "validate_messages",
]

# The tags of Meta's reference (llama/generation.py).
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
# Meta's chat_completion refuses a dialog that contains one of these in any message ("Error: special
# tags are not allowed as part of the prompt."): a user could otherwise forge turns.
SPECIAL_TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")
# How BOS / EOS are written in the text form (ids 1 and 2 in the Llama vocabulary).
BOS_TEXT, EOS_TEXT = "<s>", "</s>"
# SentencePiece's whitespace symbol; its dummy prefix puts one at the start of every encoded string.
SPM_SPACE = "\u2581"

# Meta's default system prompt for Llama 2 chat (first Llama 2 release of llama/generation.py, and the
# Hugging Face Llama 2 chat Spaces). Not added automatically: Meta's final reference sends none unless
# the dialog has one, so a contender opts in with `system_prompt=`.
LLAMA2_DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while "
    "being safe. Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, "
    "or illegal content. Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering "
    "something not correct. If you don't know the answer to a question, please don't share false "
    "information."
)

ROLES = ("system", "user", "assistant")

# transformers 5 stores `split_special_tokens` on the shared Rust tokenizer at every call
# (TokenizersBackend._encode_plus), so two threads encoding with different settings can see each
# other's: a user's literal "<s>" could become a BOS id. Our encodes hold this lock.
_ENCODE_LOCK = threading.Lock()


class PromptError(ValueError):
    """A conversation or tokenizer that cannot be rendered; the message says what to change."""


@dataclass(frozen=True)
class RenderedPrompt:
    """What a model is fed: the prompt as readable text, and the exact token ids."""

    text: str
    input_ids: tuple[int, ...]


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Clean copies of: an optional system message, then user / assistant turns ending with a user turn."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        kind = type(messages).__name__
        raise PromptError(f"messages must be a list of {{'role', 'content'}} dicts, got {kind}")
    if not messages:
        raise PromptError("the conversation is empty: send at least one user message")
    clean = [_clean_message(index, message) for index, message in enumerate(messages)]
    start = 1 if clean[0]["role"] == "system" else 0
    for index in range(start, len(clean)):
        expected = "user" if (index - start) % 2 == 0 else "assistant"
        if clean[index]["role"] != expected:
            raise PromptError(_order_problem(index, clean[index]["role"], expected))
    if len(clean) == start:
        raise PromptError("the conversation has only a system message: add a user message after it")
    if clean[-1]["role"] != "user":
        raise PromptError(
            f"the last message (messages[{len(clean) - 1}]) is from the assistant, but a prompt must end "
            "with a user message for the model to answer: add the next user message"
        )
    return clean


def llama2_prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The Llama 2 chat prompt as text, with `<s>` / `</s>` standing for the BOS / EOS tokens."""
    return "".join(
        BOS_TEXT + segment + (EOS_TEXT if finished else "") for segment, finished in _llama2_segments(messages)
    )


def llama2_token_ids(messages: Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids exactly as Meta's reference `chat_completion` builds them, with a Llama 2 tokenizer."""
    bos, eos = _bos_eos_ids(tokenizer)
    ids: list[int] = []
    with _ENCODE_LOCK:
        for segment, finished in _llama2_segments(messages):
            # Meta: sp.encode(segment) with bos (and eos for a finished exchange) added as ids. Each
            # segment is encoded on its own, so SentencePiece's dummy prefix starts each one with "▁".
            # add_special_tokens=False: the tokenizer must not add a BOS of its own on top of ours.
            # split_special_tokens=True: a literal "<s>" in a message stays text, as in SentencePiece.
            body = tokenizer.encode(segment, add_special_tokens=False, split_special_tokens=True)
            _check_segment(tokenizer, segment, body, bos, eos)
            ids += [bos, *body, eos] if finished else [bos, *body]
    return ids


def render_prompt(
    prompt_format: Literal["llama2", "chat_template"],
    messages: Sequence[Mapping[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
) -> RenderedPrompt:
    """Text and token ids of `messages` in the contender's prompt format."""
    if prompt_format == "llama2":
        ids = llama2_token_ids(messages, tokenizer)
        return RenderedPrompt(llama2_prompt_text(messages), tuple(ids))
    if prompt_format == "chat_template":
        return _render_chat_template(validate_messages(messages), tokenizer)
    raise PromptError(f"unknown prompt_format {prompt_format!r}: use 'llama2' or 'chat_template'")


def _clean_message(index: int, message: Any) -> dict[str, str]:
    """A {"role", "content"} copy of one message, with content parts flattened to a string."""
    if not isinstance(message, Mapping):
        kind = type(message).__name__
        raise PromptError(f"messages[{index}] is {kind}, not a dict: pass {{'role': ..., 'content': ...}}")
    missing = [key for key in ("role", "content") if key not in message]
    if missing:
        raise PromptError(f"messages[{index}] has no {' or '.join(repr(key) for key in missing)} key")
    role = message["role"]
    if role not in ROLES:
        raise PromptError(f"messages[{index}] has role {role!r}; use one of 'system', 'user', 'assistant'")
    return {"role": role, "content": _flatten_content(index, message["content"])}


def _flatten_content(index: int, content: Any) -> str:
    """Content as a string; Gradio 6 gives a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        texts = []
        for part_index, part in enumerate(content):
            is_text = isinstance(part, Mapping) and part.get("type") == "text"
            if not (is_text and isinstance(part.get("text"), str)):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise PromptError(
                    f"messages[{index}] content part {part_index} is {kind!r}, but only text parts "
                    "{'type': 'text', 'text': '...'} can be sent to a text model: remove files and images"
                )
            texts.append(part["text"])
        # Several text parts are joined with a newline, as vLLM's OpenAI server does.
        return "\n".join(texts)
    kind = type(content).__name__
    raise PromptError(f"messages[{index}] content is {kind}; pass a string or a list of text parts")


def _order_problem(index: int, role: str, expected: str) -> str:
    """Why messages[index] breaks the system / user / assistant order, and how to fix it."""
    fixes = {
        "system": "only the first message may be a system message: move it to the start, or merge the two",
        "user": "two user messages in a row: merge them, or put the assistant's answer between them",
        "assistant": "after an optional system message, start with a user turn and alternate user, assistant",
    }
    return f"messages[{index}] has role {role!r} where {expected!r} was expected: {fixes[role]}"


def _llama2_segments(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, bool]]:
    """Meta's per-exchange strings (without BOS / EOS), each with whether its answer is finished."""
    clean = validate_messages(messages)
    for index, message in enumerate(clean):
        tags = [tag for tag in SPECIAL_TAGS if tag in message["content"]]
        if tags:
            raise PromptError(
                f"messages[{index}] contains {', '.join(tags)}: the Llama 2 prompt format, like Meta's "
                "reference, refuses these tags inside messages (they would forge turns); remove them"
            )
    if clean[0]["role"] == "system":
        # Meta folds the system prompt into the first user message, then strips the folded string as a
        # whole: whitespace around the system text is kept, only the outer ends are stripped.
        folded = B_SYS + clean[0]["content"] + E_SYS + clean[1]["content"]
        clean = [{"role": "user", "content": folded}, *clean[2:]]
    users = [message["content"] for message in clean[0::2]]
    answers = [message["content"] for message in clean[1::2]]
    segments = [(f"{B_INST} {user.strip()} {E_INST} {answer.strip()} ", True) for user, answer in zip(users, answers)]
    segments.append((f"{B_INST} {users[-1].strip()} {E_INST}", False))
    return segments


def _tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    """How error messages name a tokenizer."""
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def _bos_eos_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """The tokenizer's BOS and EOS ids; the llama2 format cannot do without them."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise PromptError(
            f"tokenizer {_tokenizer_name(tokenizer)!r} has no BOS or EOS token, which the llama2 prompt "
            "format needs: load Llama 2's tokenizer (BOS <s>, EOS </s>), or use prompt_format 'chat_template'"
        )
    return bos, eos


def _check_segment(tokenizer: PreTrainedTokenizerBase, segment: str, body: list[int], bos: int, eos: int) -> None:
    """Refuse the two ways a tokenizer can silently differ from Meta's SentencePiece encoding."""
    if bos in body or eos in body:
        raise PromptError(
            f"tokenizer {_tokenizer_name(tokenizer)!r} turned plain text into a BOS / EOS token in "
            f"{segment[:60]!r}: the llama2 prompt format needs a tokenizer that honours split_special_tokens"
        )
    # A SentencePiece vocabulary (it has a piece "▁") must start every segment with the dummy prefix;
    # a tokenizer loaded with add_prefix_space=False encodes "[INST]" as "[" instead of Meta's "▁[".
    space_id = tokenizer.convert_tokens_to_ids(SPM_SPACE)
    if space_id is not None and space_id != tokenizer.unk_token_id:
        first_piece = tokenizer.convert_ids_to_tokens(body[0])
        if not first_piece.startswith(SPM_SPACE):
            raise PromptError(
                f"tokenizer {_tokenizer_name(tokenizer)!r} does not add SentencePiece's dummy prefix "
                f"(first piece {first_piece!r}, Meta's is '▁['): load it with add_prefix_space=True "
                "(the default for Llama 2)"
            )


def _render_chat_template(messages: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase) -> RenderedPrompt:
    """Render with the tokenizer's chat template; the template writes BOS, the encoder adds none."""
    name = _tokenizer_name(tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        raise PromptError(
            f"tokenizer {name!r} has no chat template: use prompt_format 'llama2' for Llama 2 chat "
            "models, or load a tokenizer that ships a chat template"
        )
    from jinja2 import TemplateError  # transformers renders chat templates with jinja2

    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        with _ENCODE_LOCK:
            # Tokenizes the same text with add_special_tokens=False (no second BOS). With
            # sanitize_control_tokens a control token typed by the user ("<s>", "<|im_end|>") is encoded
            # as plain text; only the template's own become control ids.
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=False, sanitize_control_tokens=True
            )
    except (TemplateError, ValueError) as error:
        raise PromptError(
            f"the chat template of tokenizer {name!r} could not render this conversation: {error}"
        ) from error
    return RenderedPrompt(text, tuple(int(i) for i in ids))
