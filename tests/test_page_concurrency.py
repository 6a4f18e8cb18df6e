"""The real app under many requests on one conversation, driven with gradio_client, read back from SQLite."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, ValidationError

from app import settings_from
from playground.server import create_app
from tests.fakes import words_streamer
from tests.page_api import rate_args, token_of
from tests.servers import free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("concurrency-data")
    argv = [
        "--data-dir",
        str(data_dir),
        "--port",
        str(free_port()),
        "--max-concurrent",
        "4",
        "--model",
        "org/one",
        "--model",
        "org/two",
    ]
    settings = settings_from(argv, {})
    with create_app(settings, streamer=words_streamer(delay=0.02), log=lambda m: None) as app:
        yield settings, app


def stored(settings) -> list[tuple]:
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        return db.execute("SELECT id, session_id, turn, parent_id FROM comparisons ORDER BY created_at").fetchall()


def test_fifty_asks_at_once_on_one_conversation_store_one_comparison(served):
    settings, _ = served
    client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    before = len(stored(settings))

    def ask(n: int) -> str:
        try:
            client.predict(f"question {n} with some words to stream", "", "", api_name="/ask")
            return "ran"
        except (AppError, ValidationError) as error:
            return str(error)

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(ask, range(50)))
    assert outcomes.count("ran") == 1, outcomes
    assert all("still streaming" in o or "page is behind" in o for o in outcomes if o != "ran")
    rows = stored(settings)[before:]
    assert len(rows) == 1 and rows[0][2] == 0


def test_each_comparison_starts_with_an_empty_form_and_refuses_an_old_one(served):
    settings, _ = served
    client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    first = client.predict("first question", "", "", api_name="/ask")
    old = token_of(first)
    client.predict(*rate_args(old, "a", "better", (False, True), ("", "rude"), "first turn"), api_name="/rate")
    job = client.submit("second question", "", old, api_name="/ask")
    updates = list(job)
    form = updates[0][3 * 2 + 4 :]  # after the chatbots, stats, parameters, hint, heading, token, continue
    assert list(form[:7]) == [None, None, False, False, "", "", ""]  # verdict, strength, flags, reasons, comment
    assert form[7] == ""  # the last thank-you is gone
    second = job.result()
    with pytest.raises(AppError, match="filled in for earlier answers"):
        client.predict(*rate_args(old, "a", "better", (False, True), ("", "rude"), "first turn"), api_name="/rate")
    client.predict(*rate_args(token_of(second), "tie"), api_name="/rate")
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        rows = db.execute(
            "SELECT c.prompt, r.choice, r.strength, r.comment, "
            "(SELECT count(*) FROM answer_judgements j WHERE j.rating_id = r.id AND j.unsafe) "
            "FROM ratings r JOIN comparisons c ON c.id = r.comparison_id "
            "WHERE c.prompt IN ('first question', 'second question') ORDER BY r.created_at"
        ).fetchall()
    assert rows == [("first question", "a", "better", "first turn", 1), ("second question", "tie", None, None, 0)]


def test_pane_stop_and_parameters_endpoints(served):
    settings, app = served
    client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
    job = client.submit(" ".join(f"w{i}" for i in range(60)), "", "", api_name="/ask")
    while not job.outputs():
        pass
    client.predict(api_name="/stop_a")
    result = job.result()
    assert "stopped by you" in result[2] and "finished" in result[3]
    lines = client.predict(True, 0.0, 0.9, 50, 1.0, 64, api_name="/set_parameters")
    assert all(line.endswith("next answer: your override") for line in lines[:2])
    with pytest.raises(AppError, match="greater than maximum"):
        client.predict(True, 99, 0.9, 50, 1.0, 64, api_name="/set_parameters")
    assert len(app.conversations) >= 1


@pytest.fixture()
def saturated(tmp_path):
    """One comparison generates at a time, and generation holds until the test lets it go."""
    release, streaming = threading.Event(), threading.Event()
    answer = words_streamer()

    def held(contender, messages, params, *, stop, seed):
        if "hold" in messages[-1]["content"]:
            streaming.set()
            release.wait(120)
        yield from answer(contender, messages, params, stop=stop, seed=seed)

    argv = [
        "--data-dir",
        str(tmp_path),
        "--port",
        str(free_port()),
        "--max-concurrent",
        "1",
        "--model",
        "org/one",
        "--model",
        "org/two",
    ]
    settings = settings_from(argv, {})
    with create_app(settings, streamer=held, log=lambda m: None):
        yield settings, release, streaming
        release.set()


def test_rating_and_the_leaderboard_answer_while_generation_is_full(saturated):
    settings, release, streaming = saturated
    url = f"http://127.0.0.1:{settings.port}/"
    rater = Client(url, verbose=False)
    token = token_of(rater.predict("a quick question", "", "", api_name="/ask"))
    # Two more visitors: one holds the only generation slot, the other waits in the queue behind it.
    running = Client(url, verbose=False).submit("please hold", "", "", api_name="/ask")
    assert streaming.wait(60)
    waiting = Client(url, verbose=False).submit("please hold too", "", "", api_name="/ask")
    # Bounded waits, so that a rating stuck behind generation fails here instead of hanging.
    message = rater.submit(*rate_args(token, "a"), api_name="/rate").result(timeout=60)[-1]
    board = Client(url, verbose=False).submit(True, api_name="/leaderboard").result(timeout=60)
    assert not running.done() and not waiting.done()  # both were still generating or queued meanwhile
    assert "stored" in message and "from 1 ratings" in board[0]
    release.set()
    running.result(timeout=60), waiting.result(timeout=60)
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM ratings").fetchone() == (1,)
        assert db.execute("SELECT COUNT(*) FROM comparisons").fetchone() == (3,)
