"""Token ids streamed as text through `_as_text` equal `tokenizer.decode` of them, on real vocabularies.

Llama 2's SentencePiece vocabulary (byte-fallback tokens like <0xF0> for characters it lacks, a leading
space stripped), SmolLM2's byte-level BPE (the embedded model) and ByT5's slow Python tokenizer (the
fallback path a slow tokenizer takes).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer, ByT5Tokenizer

from models.engines import Finished, StreamRequest
from models.lineups import get_lineup
from models.loading import LoadOptions, load_tokenizer
from models.local import EngineFailure, GenerationResult, _as_text
from models.specs import GenerationParams

LLAMA_VOCAB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "llama-spm-vocab"
LLAMA_GGUF = "ggml-vocab-llama-spm.gguf"

ANSWERS = {
    "accents": "Ünïcödé: café, naïve, Ångström, señor, Zürich.",
    "cjk": "東京は日本の首都です。北京、서울, and 𠮷野家 (a rare CJK character).",
    "emoji": "Sure! 🙂👍🏽 Family: 👨‍👩‍👧 and flags 🇫🇷🇯🇵 ✅",
    "leading spaces": "   three leading spaces, then  two inside",
    "newlines": "\n\nFirst line\n\n- item one\n- item two\r\n\tindented\n",
    "code": 'def add(a: int, b: int) -> int:\n    """Sum."""\n    return a + b  # → ≥ ≠\n\nprint(add(1, 2))\n',
    "mixed": "Temperature: 25 °C (77 °F) — “quoted” ‘text’… €100 × 2 ½ 🌡️\n```js\nconst π = 3.14;\n```",
}


@pytest.fixture(scope="session")
def llama_tokenizer():
    """Llama 2's vocabulary, loaded from llama.cpp's GGUF vocabulary file as test_prompt_format loads it."""
    if not (LLAMA_VOCAB / LLAMA_GGUF).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"Llama SentencePiece vocabulary not found at {LLAMA_VOCAB}: CI must provide ../shared")
        pytest.skip(f"Llama SentencePiece vocabulary not found at {LLAMA_VOCAB}")
    return AutoTokenizer.from_pretrained(LLAMA_VOCAB, gguf_file=LLAMA_GGUF)


@pytest.fixture(scope="session")
def smollm2_tokenizer(embedded_cache):
    """The embedded model's tokenizer, loaded as the app loads it (from the converted folder)."""
    weights = get_lineup("demo").contenders[0].weights
    return load_tokenizer(weights, LoadOptions(cache_dir=embedded_cache), log=lambda message: None)


@pytest.fixture(scope="session")
def byt5_tokenizer():
    """A slow (pure Python) tokenizer: one token per UTF-8 byte."""
    return ByT5Tokenizer()


VOCABULARIES = ["llama_tokenizer", pytest.param("smollm2_tokenizer", marks=pytest.mark.slow), "byt5_tokenizer"]


@pytest.fixture(params=VOCABULARIES)
def tokenizer(request):
    return request.getfixturevalue(request.param)


def streamed(
    tokenizer, ids: list[int], *, eos: frozenset[int] = frozenset(), reason: str = "length"
) -> tuple[list[str], GenerationResult]:
    """`ids` as an engine yields them, through `_as_text`: the deltas and the result."""
    params = GenerationParams(max_new_tokens=len(ids) + 1)
    request = StreamRequest(
        prompt_ids=[1], params=params, seed=0, stop=threading.Event(), max_new_tokens=len(ids) + 1, eos=eos
    )
    *deltas, result = _as_text(iter([*ids, Finished(reason)]), tokenizer, request, time.perf_counter())
    assert isinstance(result, GenerationResult) and all(isinstance(d, str) and d for d in deltas)
    assert "".join(deltas) == result.text
    return deltas, result


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_streamed_text_equals_decode(tokenizer, answer):
    ids = encode(tokenizer, answer)
    deltas, result = streamed(tokenizer, ids)
    assert result.text == tokenizer.decode(ids, skip_special_tokens=True)
    assert result.completion_tokens == len(ids)
    assert not any("\ufffd" in delta for delta in deltas)  # no answer here has a U+FFFD of its own


def test_llama_spells_what_it_lacks_in_byte_tokens(llama_tokenizer):
    """The premise of the Llama cases: the emoji and the rare CJK character go through byte fallback."""
    for answer, lacking in ((ANSWERS["emoji"], "🙂"), (ANSWERS["cjk"], "𠮷")):
        pieces = llama_tokenizer.convert_ids_to_tokens(encode(llama_tokenizer, answer))
        assert "<0xF0>" in pieces and lacking not in "".join(pieces)


def test_llama_cpp_vocabulary_vectors_stream_as_decoded(llama_tokenizer):
    """llama.cpp's 46 tokenizer test texts (spaces, newlines, tabs, CJK, emoji): token by token as a whole."""
    texts = (LLAMA_VOCAB / f"{LLAMA_GGUF}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    assert len(texts) == 46
    for text in texts:
        ids = encode(llama_tokenizer, text)
        deltas, result = streamed(llama_tokenizer, ids)
        assert result.text == llama_tokenizer.decode(ids, skip_special_tokens=True), text
        assert "\ufffd" in result.text or not any("\ufffd" in delta for delta in deltas), text


def test_the_stop_token_is_counted_not_shown(tokenizer):
    ids = encode(tokenizer, ANSWERS["emoji"])
    deltas, result = streamed(
        tokenizer, [*ids, tokenizer.eos_token_id], eos=frozenset({tokenizer.eos_token_id}), reason="stop"
    )
    assert result.text == tokenizer.decode(ids, skip_special_tokens=True)
    assert result.completion_tokens == len(ids) + 1 and result.finish_reason == "stop"


def test_special_tokens_mid_answer_are_skipped_as_decode_skips_them(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    ids = [*encode(tokenizer, "Bonjour 🙂"), end, start, *encode(tokenizer, " à bientôt")]
    _, result = streamed(tokenizer, ids)
    assert result.text == tokenizer.decode(ids, skip_special_tokens=True) == "Bonjour 🙂 à bientôt"


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_stream_cut_mid_character_ends_as_decode_ends_it(tokenizer, cut):
    """A token limit (or Stop) can land inside a character's bytes. The held-back bytes are shown once, at
    the end, exactly as `decode` shows them (U+FFFD for byte tokens; ByT5 drops them), and never earlier."""
    whole = encode(tokenizer, "Voilà: 𠮷")  # the rare character is 4 byte tokens in all three vocabularies
    ids = whole[:-cut]
    complete = encode(tokenizer, "Voilà:")
    assert whole[: len(complete)] == complete and len(whole) >= len(complete) + 4
    deltas, result = streamed(tokenizer, ids)
    expected = tokenizer.decode(ids, skip_special_tokens=True)
    assert result.text == expected and result.completion_tokens == len(ids)
    assert expected.startswith("Voilà:")
    assert not any("\ufffd" in delta for delta in deltas[:-1])  # only the final flush may show one
    if not isinstance(tokenizer, ByT5Tokenizer):
        assert expected.endswith("\ufffd") and "\ufffd" in deltas[-1]


def test_a_stray_byte_token_mid_answer_shows_as_decode_shows_it(llama_tokenizer):
    """A sampled model may emit a lead byte and then a plain token: that byte is U+FFFD in `decode` too."""
    tokenizer = llama_tokenizer
    ids = [*encode(tokenizer, "Hi"), tokenizer.convert_tokens_to_ids("<0xE2>"), *encode(tokenizer, "there")]
    _, result = streamed(tokenizer, ids)
    assert result.text == tokenizer.decode(ids, skip_special_tokens=True) and "\ufffd" in result.text


def test_engine_errors_still_raise(llama_tokenizer):
    request = StreamRequest(prompt_ids=[1], params=GenerationParams(), seed=0, stop=threading.Event(), max_new_tokens=4)
    events = iter([*encode(llama_tokenizer, "Hi 🙂")[:-1], Finished("error", "out of memory")])
    with pytest.raises(EngineFailure, match="out of memory"):
        list(_as_text(events, llama_tokenizer, request, time.perf_counter()))
