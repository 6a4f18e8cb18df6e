"""Votes through the raw HTTP queue API: only the session the comparison was issued to may rate it,
once; forged, replayed, cross-session and unknown votes are refused and change nothing."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from gradio_client import Client

from tests.browsers import paced_app
from tests.fakes import words_streamer
from tests.page_api import rate_args
from tests.raw_api import call, form_token, refusal


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with paced_app(tmp_path_factory, "--model", "org/one", "--model", "org/two", streamer=words_streamer()) as app:
        client = Client(app.url, verbose=False)
        yield app.url, app.settings, client._infer_fn_index("/ask", None), client._infer_fn_index("/rate", None)


def ratings(settings) -> list[tuple]:
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        return db.execute("SELECT comparison_id, choice FROM ratings ORDER BY created_at").fetchall()


def test_only_the_issuing_session_rates_once_whatever_is_forged(app):
    url, settings, ask, rate = app
    owner, stranger = uuid.uuid4().hex[:11], uuid.uuid4().hex[:11]
    asked = call(url, ask, ["What is the capital of France?", "", ""], owner)
    assert asked["success"]
    token = form_token(asked["data"])
    before = ratings(settings)

    # Another session holding the real token: it was not issued this comparison.
    assert "nothing to rate" in refusal(call(url, rate, rate_args(token, "a", "better"), stranger))
    # The owner with a forged or unknown token.
    assert "earlier answers" in refusal(call(url, rate, rate_args(uuid.uuid4().hex, "a", "better"), owner))
    # A session the server never saw.
    assert "nothing to rate" in refusal(call(url, rate, rate_args(token, "b"), uuid.uuid4().hex[:11]))
    assert ratings(settings) == before

    assert call(url, rate, rate_args(token, "b", "slightly_better"), owner)["success"]
    stored = ratings(settings)
    assert len(stored) == len(before) + 1 and stored[-1][1] == "b"
    # Replayed, by the owner and by anyone else: refused, and the stored vote is unchanged.
    assert "already rated" in refusal(call(url, rate, rate_args(token, "a", "better"), owner))
    assert refusal(call(url, rate, rate_args(token, "a", "better"), stranger))
    assert ratings(settings) == stored


def test_a_forged_vote_for_answers_never_shown_is_refused(app):
    url, settings, ask, rate = app
    owner = uuid.uuid4().hex[:11]
    first = form_token(call(url, ask, ["first question", "", ""], owner)["data"])
    second = form_token(call(url, ask, ["second question", "", first], owner)["data"])
    before = ratings(settings)
    # The first comparison's token after the second was shown: a form filled in for earlier answers.
    assert "earlier answers" in refusal(call(url, rate, rate_args(first, "a", "better"), owner))
    assert ratings(settings) == before
    assert call(url, rate, rate_args(second, "tie"), owner)["success"]


def test_the_last_snapshot_leaves_a_rating_begun_and_a_next_question_alone(app):
    """Gradio sends an event's last message whole, not as a diff. Had it carried the cleared form,
    a rank or a verdict picked between the last streamed snapshot and it (seconds on a loaded
    server) would be wiped, and so would a next question being typed."""
    url, settings, ask, rate = app
    final = call(url, ask, ["What is the capital of France?", "", ""], uuid.uuid4().hex[:11])
    assert final["success"]
    # After the form token and the continue-from choice: two answers' rating form (verdict, strength,
    # 2 unsafe flags, 2 reasons, the comment), the rating status and the prompt box.
    data = final["data"]
    untouched = data[data.index(form_token(data)) + 2 :]
    assert len(untouched) == 9 and all(out == {"__type__": "update"} for out in untouched), untouched
