"""Parameters sent straight to every endpoint that sets them (the named one and the sliders'
undocumented ones): true, text, NaN, infinities and out-of-range values are refused, and the next
comparison samples with sound values."""

from __future__ import annotations

import json
import sqlite3
import uuid

import httpx
import pytest

from tests.browsers import paced_app
from tests.fakes import words_streamer
from tests.raw_api import call, form_token, join, messages

SOUND = [True, 0.5, 0.9, 40, 1.1, 128]  # override on, temperature, top_p, top_k, repetition penalty, max tokens
BAD = {
    "temperature true": [True, True, 0.9, 40, 1.1, 128],
    "top_p as text": [True, 0.5, "0.9", 40, 1.1, 128],
    "top_k fractional": [True, 0.5, 0.9, 40.5, 1.1, 128],
    "max tokens huge": [True, 0.5, 0.9, 40, 1.1, 10**9],
    "temperature negative": [True, -1.0, 0.9, 40, 1.1, 128],
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with paced_app(tmp_path_factory, "--model", "org/one", "--model", "org/two", streamer=words_streamer()) as app:
        fns = app.demo.fns.values()
        setters = [i for i, dep in enumerate(fns) if getattr(dep.fn, "__name__", "") == "set_overrides"]
        ask = next(i for i, dep in enumerate(fns) if dep.api_name == "ask")
        yield app.url, app.settings, setters, ask


def test_every_parameter_endpoint_refuses_what_no_slider_sends(app):
    url, settings, setters, ask = app
    assert len(setters) == 6  # the named set_parameters and one per slider
    session = uuid.uuid4().hex[:11]
    for fn_index in setters:
        for name, values in BAD.items():
            assert not call(url, fn_index, values, session)["success"], (fn_index, name)
        for literal in ("NaN", "Infinity", "-Infinity", "1e999"):  # not JSON, but a script can send it
            body = json.dumps(
                {
                    "data": [True, 0.5, 0.9, 40, 1.1, 128],
                    "fn_index": fn_index,
                    "session_hash": session,
                    "event_data": None,
                    "trigger_id": None,
                }
            )
            with httpx.Client(timeout=30) as http:
                joined = join(http, url, fn_index, [], body=body.replace("0.5", literal, 1))
                if joined.status_code == 200:  # accepted for the queue: the handler must refuse it
                    *_, completed = messages(http, url, session)
                    assert not completed["success"], (fn_index, literal)
    first = call(url, ask, ["after the attempts", "", ""], session)
    assert first["success"]
    assert call(url, setters[0], SOUND, session)["success"]
    assert call(url, ask, ["with sound values", "", form_token(first["data"])], session)["success"]
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        params = [
            json.loads(row[0])
            for row in db.execute(
                "SELECT params FROM responses r JOIN comparisons c ON c.id = r.comparison_id ORDER BY c.created_at"
            )
        ]
    assert all(isinstance(p["temperature"], float) and not isinstance(p["top_p"], bool) for p in params)
    assert params[-1]["temperature"] == 0.5 and params[-1]["max_new_tokens"] == 128
