"""A visitor who goes away mid-stream: the generation stops, and the partial answers are stored as stopped."""

from __future__ import annotations

import sqlite3
import uuid

import httpx
import pytest
from gradio_client import Client

from models.loading import LoadOptions
from playground.server import Settings, create_app
from tests.raw_api import join, messages
from tests.servers import free_port
from tests.waiting import until

pytestmark = pytest.mark.slow


def test_a_client_that_disconnects_mid_stream_stops_its_generation(tiny_mha, tiny_gqa, tmp_path):
    settings = Settings(
        models=(str(tiny_mha), str(tiny_gqa)), port=free_port(), data_dir=tmp_path, load=LoadOptions(dtype="float32")
    )
    with create_app(settings, log=lambda m: None) as app:
        url = app.url
        fn_index = Client(url, verbose=False)._infer_fn_index("/ask", None)
        session = uuid.uuid4().hex[:11]
        with httpx.Client(timeout=60) as http:
            join(http, url, fn_index, ["Tell me a very long story about the sea.", "", ""], session).raise_for_status()
            stream = messages(http, url, session)
            generating = (m for m in stream if m.get("msg") == "process_generating")
            for _ in range(3):  # answers are streaming ...
                next(generating)
            stream.close()  # ... and the visitor leaves
        until(lambda: not app.core.streaming, 60, what="the left page's generation to stop")

        def stored() -> list[tuple]:
            with sqlite3.connect(tmp_path / "feedback.sqlite3") as db:
                rows = db.execute("SELECT finish_reason, completion_tokens FROM responses").fetchall()
            return rows if len(rows) == 2 else []

        rows = until(stored, 10, what="both answers to be stored")
    assert len(rows) == 2, rows
    assert any(reason == "stopped" for reason, _ in rows), rows
