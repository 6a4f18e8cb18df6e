"""The launched app with a lineup file that mixes local weights and a `transformers serve` endpoint."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client

from models.loading import LoadOptions
from playground.server import ServersNotReady, Settings, create_app
from tests.conftest import REPO
from tests.page_api import answers, rate_args, token_of
from tests.servers import free_port


def lineup_file(folder: Path, local: Path, base_url: str, model: str, **endpoint) -> Path:
    """A lineup file: the tiny checkpoint here (a path relative to the file) and one on a server."""
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in endpoint.items())
    path = folder / "mixed.toml"
    path.write_text(f'''name = "mixed"

[[contenders]]
name = "here"
weights = "./{local.name}"
preset = "precise"
params = {{ repetition_penalty = 1.0, max_new_tokens = 24 }}

[[contenders]]
name = "there"
preset = "precise"
params = {{ repetition_penalty = 1.0, max_new_tokens = 24 }}
[contenders.endpoint]
base_url = "{base_url}"
model = "{model}"
{extra}''')
    return path


@pytest.fixture()
def mixed_file(tmp_path: Path, tiny_gqa: Path, tiny_mha: Path, serve_tiny) -> Path:
    """The grouped-query checkpoint here, the multi-head one on the server: two answers that differ."""
    (tmp_path / tiny_gqa.name).symlink_to(tiny_gqa)
    return lineup_file(tmp_path, tmp_path / tiny_gqa.name, serve_tiny.base_url, str(tiny_mha), max_concurrent=4)


@pytest.mark.parametrize("mode", ["named", "arena"])
def test_local_and_remote_side_by_side_rated_and_exported(
    mode: str, mixed_file: Path, tmp_path: Path, serve_tiny, tiny_mha: Path
):
    settings = Settings(
        lineup_file=mixed_file,
        mode=mode,
        port=free_port(),
        data_dir=tmp_path / "data",
        load=LoadOptions(dtype="float32"),
    )
    logged: list[str] = []
    app = create_app(settings, log=logged.append)
    assert "there: " + f"{tiny_mha} at {serve_tiny.base_url} is ready" in logged
    assert any(
        line.startswith("comparisons generated at once: at most 4") for line in logged
    )  # the endpoint's max_concurrent caps it
    assert (
        "there: long conversations are sent whole and its server's error is shown, since the lineup sets no "
        "endpoint.tokenizer (weights whose tokenizer counts its tokens) and no endpoint.context_length (its "
        "server lists none)"
    ) in logged
    with app:
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
        for turn in range(2):  # twice: the second comparison is where state bugs live
            result = client.predict("Tell me about the sky and the sea.", "", "", api_name="/ask")
            texts = answers(result)
            assert all(texts) and texts[0] != texts[1]
            message = client.predict(*rate_args(token_of(result), "a", "better"), api_name="/rate")[-1]
            assert "stored" in message
            if mode == "arena":
                assert "was here" in message and "was there" in message  # names shown after the vote
            client.predict(api_name="/clear")
    database = settings.data_dir / "feedback.sqlite3"
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT contender, finish_reason, endpoint, served_model FROM responses ORDER BY contender"
        ).fetchall()
    assert [r[0] for r in rows] == ["here", "here", "there", "there"]
    assert all(r[1] in ("stop", "length") for r in rows)
    assert {r[2:] for r in rows} == {(None, None), (serve_tiny.base_url, str(tiny_mha))}
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "feedback_db",
            "export",
            "--db-url",
            f"sqlite:///{database}",
            "--format",
            "dpo",
            "--output",
            "-",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert export.returncode == 0, export.stderr
    pairs = [json.loads(line) for line in export.stdout.splitlines()]
    assert len(pairs) == 2  # one preference per rated comparison, whichever pane held which contender
    assert all({p["chosen_contender"], p["rejected_contender"]} == {"here", "there"} for p in pairs)
    assert all(p["prompt"] == [{"role": "user", "content": "Tell me about the sky and the sea."}] for p in pairs)


def test_a_remote_contenders_long_conversation_is_trimmed_with_a_notice(
    tmp_path: Path, tiny_gqa: Path, tiny_mha: Path, serve_tiny
):
    (tmp_path / tiny_gqa.name).symlink_to(tiny_gqa)
    (tmp_path / "counter").symlink_to(tiny_mha)  # the served checkpoint's tokenizer, beside the file
    path = lineup_file(
        tmp_path,
        tmp_path / tiny_gqa.name,
        serve_tiny.base_url,
        str(tiny_mha),
        context_length=160,
        tokenizer="./counter",
    )
    settings = Settings(
        lineup_file=path, port=free_port(), data_dir=tmp_path / "data", load=LoadOptions(dtype="float32")
    )
    logged: list[str] = []
    app = create_app(settings, log=logged.append)
    assert not any("long conversations are sent whole" in line for line in logged)
    assert "| there | " in core_models_tab(app.demo)
    assert "160 tokens, old exchanges left out to fit" in core_models_tab(app.demo)
    with app:
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
        notices, token = [], ""
        for turn in range(5):
            result = client.predict(
                f"Question {turn}: tell me about the sky, the sea, the wind and the rain today.",
                "",
                token,
                api_name="/ask",
            )
            token = token_of(result)
            assert all(answers(result))
            names = [chatbot["label"].split(": ", 1)[1] for chatbot in result[:2]]  # panes are placed at random
            notices.append({name: "left out to fit" in stats for name, stats in zip(names, result[2:4])})
    # Only the 160-token server's pane, and only once the conversation outgrew it.
    assert notices[0] == {"here": False, "there": False} and notices[-1] == {"here": False, "there": True}
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        last = dict(
            db.execute(
                "SELECT contender, messages FROM responses WHERE comparison_id = (SELECT comparison_id "
                "FROM responses ORDER BY created_at DESC LIMIT 1)"
            ).fetchall()
        )
        usage = db.execute("SELECT usage, request FROM responses WHERE contender = 'there'").fetchall()
    here, there = json.loads(last["here"]), json.loads(last["there"])
    assert len(here) == 9 and len(there) < 9 and there[-1] == here[-1]  # the record keeps what was sent
    # The server's own count of each prompt, plus the capped answer limit, fits its 160 tokens.
    assert len(usage) == 5
    assert all(
        json.loads(used)["prompt_tokens"] + json.loads(request)["body"]["max_tokens"] <= 160 for used, request in usage
    )


def test_a_tokenizer_that_cannot_be_loaded_stops_the_start_with_one_message(tmp_path: Path, tiny_mha: Path, serve_tiny):
    (tmp_path / tiny_mha.name).symlink_to(tiny_mha)
    (tmp_path / "no-tokenizer").mkdir()
    (tmp_path / "no-tokenizer" / "config.json").write_bytes((tiny_mha / "config.json").read_bytes())
    path = lineup_file(
        tmp_path, tmp_path / tiny_mha.name, serve_tiny.base_url, str(tiny_mha), tokenizer="./no-tokenizer"
    )
    run = subprocess.run(
        [sys.executable, "app.py", "--lineup-file", str(path), "--data-dir", str(tmp_path / "d")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert f"cannot load the tokenizer of {tmp_path / 'no-tokenizer'}: Couldn't instantiate the backend" in run.stderr
    assert "saved with save_pretrained" in run.stderr


def test_a_tokenizer_without_the_contenders_chat_template_stops_the_start(tmp_path: Path, tiny_mha: Path, serve_tiny):
    from transformers import AutoTokenizer

    (tmp_path / tiny_mha.name).symlink_to(tiny_mha)
    plain = AutoTokenizer.from_pretrained(tiny_mha)
    plain.chat_template = None
    plain.save_pretrained(tmp_path / "plain")
    path = lineup_file(
        tmp_path, tmp_path / tiny_mha.name, serve_tiny.base_url, str(tiny_mha), tokenizer="./plain", context_length=512
    )
    with pytest.raises(ServersNotReady, match=r"^endpoint.tokenizer of there: tokenizer .* has no chat template"):
        create_app(Settings(lineup_file=path, data_dir=tmp_path / "data"), log=lambda m: None)


def core_models_tab(demo) -> str:
    """The text of the page's model tab (its Markdown blocks)."""
    return "\n".join(str(block.value) for block in demo.blocks.values() if type(block).__name__ == "Markdown")


def test_an_unreachable_server_stops_the_start_with_one_message(tmp_path: Path, tiny_mha: Path):
    (tmp_path / tiny_mha.name).symlink_to(tiny_mha)
    refused = f"http://127.0.0.1:{free_port()}/v1"
    path = lineup_file(tmp_path, tmp_path / tiny_mha.name, refused, "tiny")
    with pytest.raises(ServersNotReady, match="1 of 1 remote contenders cannot be served"):
        create_app(Settings(lineup_file=path, data_dir=tmp_path / "data"), log=lambda m: None)
    run = subprocess.run(
        [sys.executable, "app.py", "--lineup-file", str(path), "--data-dir", str(tmp_path / "d")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"there: Could not connect to the server at {refused} (Connection refused): is it running?" in run.stderr
    assert "--allow-unreachable" in run.stderr


def test_allow_unreachable_starts_and_shows_the_pane_as_unavailable(tmp_path: Path, tiny_mha: Path):
    (tmp_path / tiny_mha.name).symlink_to(tiny_mha)
    refused = f"http://127.0.0.1:{free_port()}/v1"
    path = lineup_file(tmp_path, tmp_path / tiny_mha.name, refused, "tiny")
    settings = Settings(
        lineup_file=path,
        allow_unreachable=True,
        port=free_port(),
        data_dir=tmp_path / "data",
        load=LoadOptions(dtype="float32"),
    )
    logged: list[str] = []
    app = create_app(settings, log=logged.append)
    assert any("unavailable for now" in line and "there: Could not connect" in line for line in logged)
    with app:
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
        for _ in range(2):
            result = client.predict("Hello", "", "", api_name="/ask")
            panes = {chatbot["label"].split(": ", 1)[1]: answers([chatbot, chatbot])[0] for chatbot in result[:2]}
            assert panes["here"]
            assert "there is unavailable: Could not connect" in panes["there"]
            client.predict(api_name="/clear")
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        failed = db.execute("SELECT finish_reason, error, endpoint FROM responses WHERE contender = 'there'").fetchall()
    assert len(failed) == 2 and all(r[0] == "error" and "unavailable" in r[1] and r[2] == refused for r in failed)
