"""The prompt limit is an option (issue 19): --max-prompt-chars / PLAYGROUND_MAX_PROMPT_CHARS."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, ValidationError

from app import settings_from
from playground.errors import SettingsError
from tests.browsers import paced_app
from tests.conftest import REPO
from tests.page_api import answers, token_of


def test_the_limit_comes_from_the_option_then_the_environment_then_8000(tmp_path):
    base = ["--data-dir", str(tmp_path)]
    assert settings_from(base, {}).max_prompt_chars == 8000
    assert settings_from(base, {"PLAYGROUND_MAX_PROMPT_CHARS": "300"}).max_prompt_chars == 300
    chosen = settings_from([*base, "--max-prompt-chars", "40"], {"PLAYGROUND_MAX_PROMPT_CHARS": "300"})
    assert chosen.max_prompt_chars == 40
    with pytest.raises(SettingsError, match="--max-prompt-chars must be 1 or more, not 0"):
        settings_from([*base, "--max-prompt-chars", "0"], {})


def test_a_limit_below_one_stops_the_start_with_one_line(tmp_path):
    started = subprocess.run(
        [sys.executable, "app.py", "--max-prompt-chars", "-5", "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2
    assert started.stderr.strip().splitlines() == [
        "error: --max-prompt-chars must be 1 or more, not -5: it is the longest prompt a page may send"
    ]


def test_an_app_with_a_small_limit_refuses_a_longer_prompt_with_the_numbers(tmp_path_factory):
    with paced_app(tmp_path_factory, "--max-prompt-chars", "40", "--model", "org/a", "--model", "org/b") as app:
        client = Client(app.url, verbose=False)
        with pytest.raises(ValidationError, match="the prompt is 41 characters; the limit is 40"):
            client.predict("x" * 41, "", "", api_name="/ask")
        with pytest.raises(AppError, match="the system prompt is 50 characters; the limit is 40"):
            client.predict("Hello", "s" * 50, "", api_name="/ask")
        result = client.predict("y" * 40, "", "", api_name="/ask")  # exactly the limit passes
        assert all(("y" * 40) in text for text in answers(result)) and token_of(result)
