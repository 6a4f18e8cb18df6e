"""SIGTERM while answers stream: they end as stopped, stored as they stand, and the app exits cleanly."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys

import pytest
from gradio_client import Client

from tests.conftest import REPO
from tests.servers import free_port, wait_until_serving
from tests.waiting import until

pytestmark = pytest.mark.slow


def sigterm_mid_answer(tmp_path, *args: str) -> str:
    """Start app.py with `args`, ask once, send SIGTERM once the first text shows, and check that it exits
    0 with both answers stored, one or more as stopped; its output."""
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--data-dir", str(tmp_path), *args],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(app, url, 180, lambda: "")
        client = Client(url, verbose=False)
        job = client.submit("Tell me a very long story about the sea.", "", "", api_name="/ask")
        # The first text is on screen.
        until(
            lambda: any(str(o[0]).count("assistant") for o in job.outputs()),
            120,
            every_s=0.02,
            what="the first answer text",
        )
        app.send_signal(signal.SIGTERM)
        output, _ = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, output[-2000:]
    assert "SIGTERM: 1 running comparisons stopped and stored; closing" in output
    assert "terminate called" not in output and "Traceback" not in output, output[-2000:]
    with sqlite3.connect(tmp_path / "feedback.sqlite3") as db:
        rows = db.execute("SELECT finish_reason, length(text) FROM responses").fetchall()
        ((interrupted,),) = db.execute("SELECT COUNT(*) FROM comparisons WHERE interrupted_at IS NOT NULL")
    assert len(rows) == 2 and interrupted == 0
    assert all(reason in ("stopped", "stop", "length") for reason, _ in rows)
    assert any(reason == "stopped" for reason, _ in rows)
    return output


def test_sigterm_stops_running_answers_stores_them_and_exits(tiny_mha, tiny_gqa, tmp_path):
    sigterm_mid_answer(tmp_path, "--model", str(tiny_mha), "--model", str(tiny_gqa), "--dtype", "float32")


def test_sigterm_while_split_weights_decode_exits_cleanly(tiny_mha, tiny_gqa, tmp_path):
    """Weights split over the CPU and the disk decode in the batched loop, whose thread is a daemon (issue 15)."""
    # A CPU limit below the tiny checkpoints' size: from_pretrained puts their later layers on the disk.
    output = sigterm_mid_answer(
        tmp_path, "--model", str(tiny_mha), "--model", str(tiny_gqa), "--dtype", "float32", "--max-memory", "cpu=600KB"
    )
    assert output.count(" s on cpu, disk (") == 2, output[-2000:]  # both split, so both in the batched loop
