"""The real app: launched on tiny checkpoints, driven with gradio_client, read back from SQLite."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, ValidationError

from models.loading import LoadOptions
from playground.markup import shown_as_text
from playground.server import Settings, create_app
from tests.conftest import REPO
from tests.page_api import answers, rate_args, token_of
from tests.servers import free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_mha, tiny_gqa):
    data_dir = tmp_path_factory.mktemp("app-data")
    settings = Settings(
        models=(str(tiny_mha), str(tiny_gqa)), port=free_port(), data_dir=data_dir, load=LoadOptions(dtype="float32")
    )
    with create_app(settings, log=lambda m: None) as app:
        yield settings, app.core


def test_prompt_stream_rate_and_read_back(served):
    settings, _ = served
    client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    job = client.submit("What is the capital of France?", "", "", api_name="/ask")
    updates = list(job)
    result = job.result()
    assert len(updates) >= 2  # streamed: more than one update reached the client
    labels = {result[0]["label"], result[1]["label"]}
    assert {label.split(": ", 1)[1] for label in labels} == {settings_name(m) for m in settings.models}
    assert all(text for text in answers(result))
    assert all("tok/s" in stats for stats in result[2:4])

    assert all("repetition penalty" in line for line in result[4:6])  # each pane's real parameters
    token = token_of(result)
    message = client.predict(
        *rate_args(token, "b", "slightly_better", (True, False), ("made up facts", ""), "ok"), api_name="/rate"
    )[-1]
    assert "stored" in message
    with pytest.raises(AppError, match="already rated"):
        client.predict(*rate_args(token, "a", "better"), api_name="/rate")

    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        ((comparison_id, prompt, n),) = db.execute("SELECT id, prompt, n_responses FROM comparisons").fetchall()
        assert (prompt, n) == ("What is the capital of France?", 2)
        responses = db.execute(
            "SELECT position, contender, weights_id, text, finish_reason, seed, params, "
            "prompt_rendered, completion_tokens FROM responses WHERE comparison_id = ? "
            "ORDER BY position",
            (comparison_id,),
        ).fetchall()
        assert [r[0] for r in responses] == [0, 1]
        assert {r[2] for r in responses} == {str(m) for m in settings.models}
        # The chatbot renders control characters and runs of spaces its own way: compare the rest. Markup
        # in an answer is sent to the page escaped (playground.markup), and stored as generated.
        assert [squeeze(shown_as_text(r[3])) for r in responses] == [squeeze(a) for a in answers(result)]
        assert all(
            r[4] in ("stop", "length") and r[5] is not None and r[7].startswith("<s><|user|>") for r in responses
        )
        rating = db.execute(
            "SELECT kind, choice, strength, comment, blind FROM ratings WHERE comparison_id = ?", (comparison_id,)
        ).fetchone()
        assert rating == ("pairwise", "b", "slightly_better", "ok", 0)
        flags = db.execute(
            "SELECT r.position, j.unsafe, j.unsafe_reason FROM answer_judgements j "
            "JOIN responses r ON r.id = j.response_id ORDER BY r.position"
        ).fetchall()
        assert flags == [(0, 1, "made up facts"), (1, 0, None)]


def squeeze(text: str) -> str:
    return re.sub(r"[\s\x00-\x1f\x7f]+", "", text)


def settings_name(model: str) -> str:
    return model.rstrip("/").rsplit("/", 1)[-1]


def test_empty_prompt_and_early_vote_get_messages(served):
    settings, _ = served
    client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    with pytest.raises(AppError, match="nothing to rate yet"):
        client.predict(*rate_args("", "a", "better"), api_name="/rate")
    with pytest.raises(ValidationError, match="prompt is empty"):
        client.predict("   ", "", "", api_name="/ask")
    with pytest.raises(ValidationError, match="pick a verdict"):
        client.predict(*rate_args("", None), api_name="/rate")
    with pytest.raises(Exception, match="400 Bad Request"):  # Gradio itself refuses a value not offered
        client.predict(*rate_args("", "A is better"), api_name="/rate")


def test_multi_turn_regenerate_and_clear(served):
    settings, _ = served
    client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    first = client.predict("Hello", "Be brief.", "", api_name="/ask")
    second = client.predict("And again?", "Be brief.", token_of(first), api_name="/ask")
    assert [m["role"] for m in second[0]["value"]] == ["user", "assistant", "user", "assistant"]
    with pytest.raises(ValidationError, match="page is behind"):
        client.predict("From an old tab", "", token_of(first), api_name="/ask")
    again = client.predict(token_of(second), api_name="/regenerate")
    assert len(again[0]["value"]) == 4
    cleared = client.predict(api_name="/clear")
    assert cleared[0]["value"] == []
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        turns = db.execute(
            "SELECT turn, system_prompt FROM comparisons WHERE prompt != ? ORDER BY created_at",
            ("What is the capital of France?",),
        ).fetchall()
    assert turns == [(0, "Be brief."), (1, "Be brief."), (1, "Be brief.")]


def test_missing_weights_fail_at_start_with_a_message(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "app.py",
            "--model",
            str(tmp_path / "nothing-here"),
            "--model",
            "meta-llama/Llama-2-7b-chat-hf",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "nothing-here has no config.json" in run.stderr
    assert "Llama-2-7b-chat-hf" in run.stderr and "accept Meta's licence" in run.stderr


def test_unknown_lineup_fails_at_start_with_a_message(tmp_path):
    run = subprocess.run(
        [sys.executable, "app.py", "--lineup", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 2 and "unknown lineup 'nope'" in run.stderr and "Traceback" not in run.stderr


def test_four_visitors_at_once_complete_and_rate(served):
    """Four sessions stream through the same engines at once; every vote lands on its own comparison."""
    from concurrent.futures import ThreadPoolExecutor

    settings, _ = served

    def visit(n: int) -> str:
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
        result = client.predict(f"Visitor {n} asks about Paris", "", "", api_name="/ask")
        assert all("tok/s" in stats or "tokens" in stats for stats in result[2:4])
        return client.predict(*rate_args(token_of(result), "a" if n % 2 else "b"), api_name="/rate")[-1]

    with ThreadPoolExecutor(4) as pool:
        messages = list(pool.map(visit, range(4)))
    assert all("stored" in m for m in messages)
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        rows = db.execute(
            "SELECT c.prompt, r.choice FROM ratings r JOIN comparisons c ON c.id = r.comparison_id "
            "WHERE c.prompt LIKE 'Visitor % asks about Paris' ORDER BY c.prompt"
        ).fetchall()
    assert rows == [(f"Visitor {n} asks about Paris", "a" if n % 2 else "b") for n in range(4)]


def test_a_start_the_operator_can_fix_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    import app

    data = ["--data-dir", str(tmp_path)]
    for argv, said in [
        (["--lineup", "nope"], "error: unknown lineup 'nope'; known lineups: demo, llama2"),
        (["--model", "no-such-thing"], "error: --model 'no-such-thing' is neither an existing path"),
        (["--mode", "arena", "--arena-size", "1"], "error: an arena shows at least 2 answers"),
        (["--db-url", "mysql+nodriver://x/y"], "error: database URL"),
        (["--admin"], "error: --admin needs PLAYGROUND_ADMIN_TOKEN"),
    ]:
        assert app.main([*argv, *data]) == 2, argv
        assert capsys.readouterr().err.splitlines()[-1].startswith(said), argv  # after any progress bars

    def broken(settings, *args, **kwargs):
        return {}["a key a bug looks up"]  # a KeyError from a bug, not from the operator

    monkeypatch.setattr(app, "create_app", broken)
    with pytest.raises(KeyError, match="a key a bug looks up"):
        app.main(data)
