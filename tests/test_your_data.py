"""A visitor sees what is stored about their browser session and deletes their ratings or all of it;
nobody else's data is touched, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import sqlite3

import pytest
from gradio_client import Client

from app import settings_from
from feedback_db import count_rows, delete_session_data, session_data
from playground.comparison import Playground
from playground.server import create_app
from playground.voting import Vote
from tests.fakes import lineup, run, words_streamer
from tests.page_api import rate_args, token_of
from tests.servers import free_port


def test_deleting_one_sessions_data_leaves_every_other_session_alone(any_db):
    core = Playground(lineup(2), words_streamer(), any_db, rng=random.Random(0))
    mine, theirs = core.new_conversation(), core.new_conversation()
    for session, prompt in ((mine, "mine 1"), (theirs, "theirs 1")):
        run(core, session, prompt)
        core.rate(session, Vote(choice="a"))
    run(core, mine, "mine 2")  # a later turn of the same conversation, not rated
    with any_db.session() as db:
        assert [c.prompt for c in session_data(db, [mine.id])] == ["mine 1", "mine 2"]
        assert delete_session_data(db, [mine.id], ratings_only=True) == 1
    with any_db.session() as db:
        assert count_rows(db)["ratings"] == 1  # theirs
        assert delete_session_data(db, [mine.id], ratings_only=False) == 2
    with any_db.session() as db:
        counts = count_rows(db)
        assert (counts["comparisons"], counts["responses"], counts["ratings"]) == (1, 2, 1)
        assert [c.prompt for c in session_data(db, [theirs.id])] == ["theirs 1"]


@pytest.fixture()
def app(tmp_path):
    settings = settings_from(
        ["--data-dir", str(tmp_path), "--port", str(free_port()), "--model", "org/one", "--model", "org/two"], {}
    )
    with create_app(settings, streamer=words_streamer(), log=lambda m: None):
        yield settings


def test_a_visitor_sees_and_deletes_only_their_own_data_through_the_page(app):
    url = f"http://127.0.0.1:{app.port}/"
    me, other = Client(url, verbose=False), Client(url, verbose=False)
    first = me.predict("my first question", "", "", api_name="/ask")
    me.predict(*rate_args(token_of(first), "a"), api_name="/rate")
    me.predict(api_name="/clear")  # a new conversation, the same browser session
    second = me.predict("my second question", "", "", api_name="/ask")
    thanks = me.predict(*rate_args(token_of(second), "b"), api_name="/rate")[-1]
    assert thanks.startswith("Thank you: your rating is stored")
    theirs = other.predict("someone else's question", "", "", api_name="/ask")
    other.predict(*rate_args(token_of(theirs), "b"), api_name="/rate")

    shown = me.predict(api_name="/my_data")
    assert "my first question" in shown and "my second question" in shown and "someone else" not in shown
    assert "rated" in shown and "salted hash" in shown
    # The thank-you for the last rating goes with the ratings.
    assert me.predict(api_name="/delete_my_ratings") == ("Deleted 2 ratings of this session.", "")
    assert me.predict(api_name="/delete_my_session")[-1].startswith("Deleted 2 comparisons of this session")
    assert me.predict(api_name="/my_data") == "Nothing is stored about this session."
    with sqlite3.connect(app.data_dir / "feedback.sqlite3") as db:
        prompts = [row[0] for row in db.execute("SELECT prompt FROM comparisons")]
        ((ratings,),) = db.execute("SELECT COUNT(*) FROM ratings")
        ((orphans,),) = db.execute(
            "SELECT COUNT(*) FROM responses WHERE comparison_id NOT IN (SELECT id FROM comparisons)"
        )
    assert prompts == ["someone else's question"] and ratings == 1 and orphans == 0
