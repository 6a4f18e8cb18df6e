"""The leaderboard tab and the admin-only data tab of the real app, driven over HTTP."""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.error
import urllib.request

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError, ValidationError

from app import settings_from
from feedback_db.leaderboard import Battle, build_leaderboard
from playground.comparison import Playground
from playground.leaderboard_view import leaderboard_rows, ratings_svg, summary, win_rate_rows
from playground.server import create_app
from playground.voting import Vote
from tests.fakes import lineup, run, words_streamer
from tests.servers import free_port
from tests.waiting import until

TOKEN = "s3cret-admin-token-0123456789"


def test_leaderboard_view_renders_rows_plot_and_matrix():
    battles = [Battle("x", "y")] * 6 + [Battle("y", "x")] * 2 + [Battle("x", "y", tie=True)] * 2
    board = build_leaderboard(battles, rounds=50, seed=0, blind_only=True, ratings_used=10)
    rows = leaderboard_rows(board)
    assert [r[1] for r in rows] == ["x", "y"] and rows[0][2] > 1000 > rows[1][2]
    assert rows[0][4:8] == [10, 6, 2, 2]  # battles, wins, losses, ties; the style-controlled columns follow
    headers, matrix = win_rate_rows(board)
    assert headers == ["contender", "x", "y"] and matrix[0][2] == "0.70"  # (6 + 2/2) / 10
    svg = ratings_svg(board)
    assert svg.startswith("<svg") and svg.count("<circle") == 2 and "x: " in svg
    assert "10 battles from 10 ratings" in summary(board)


def test_plot_ticks_stay_few_however_far_ratings_spread():
    from playground.leaderboard_view import _ticks

    for lo, hi in ((990, 1010), (700, 1300), (-4000, 6000), (1000, 1000.5)):
        ticks = _ticks(lo, hi)
        assert 1 <= len(ticks) <= 10 and all(lo <= t <= hi for t in ticks), (lo, hi, ticks)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tabs-data")
    # Behind a trusted proxy, so that tests can speak from several addresses (X-Forwarded-For).
    argv = [
        "--data-dir",
        str(data_dir),
        "--port",
        str(free_port()),
        "--admin",
        "--leaderboard-rounds",
        "20",
        "--trusted-proxy",
    ]
    settings = settings_from(argv, {"PLAYGROUND_ADMIN_TOKEN": TOKEN})
    app = create_app(settings, streamer=words_streamer(), log=lambda m: None)
    # Seed blind ratings through the core, as arena visitors would.
    arena = Playground(lineup(3), words_streamer(), app.core.database, mode="arena", rng=random.Random(0))
    for n in range(6):
        session = arena.new_conversation()
        run(arena, session, f"question {n}")
        arena.rate(session, Vote(choice="a", strength="better"))
    with app:
        yield settings


def download_link(url: str, markdown: str) -> str:
    """The one-time link in the data tab's answer, as a full URL."""
    match = re.search(r"\]\((playground-export/[A-Za-z0-9_-]+)\)", markdown)
    assert match, markdown
    return url + match.group(1)


def test_admin_export_needs_the_token_and_its_link_works_once(served, tmp_path):
    url = f"http://127.0.0.1:{served.port}/"
    client = Client(url, verbose=False, headers={"X-Forwarded-For": "203.0.113.50"})
    args = ["dpo", ".jsonl", "", "", "", "any", False, False, False, True, False, False]
    with pytest.raises(ValidationError, match="wrong admin token"):
        client.predict("guess", *args, api_name="/admin_export")
    line, link = client.predict(TOKEN, *args, api_name="/admin_export")
    assert line.startswith("exported 6 dpo rows from 6 ratings") and "works once" in link
    with urllib.request.urlopen(download_link(url, link), timeout=30) as answer:
        assert "attachment" in answer.headers["Content-Disposition"]
        rows = [json.loads(x) for x in answer.read().decode().splitlines()]
    assert len(rows) == 6 and all(r["comparison_id"] and r["chosen"][0]["role"] == "assistant" for r in rows)
    with pytest.raises(urllib.error.HTTPError) as used:  # once: the file is gone after it was sent
        urllib.request.urlopen(download_link(url, link), timeout=30)
    assert used.value.code == 404 and b"used already or has expired" in used.value.read()
    with pytest.raises(urllib.error.HTTPError) as guessed:
        urllib.request.urlopen(f"{url}playground-export/{'A' * 43}", timeout=30)
    assert guessed.value.code == 404
    with pytest.raises(AppError, match="is not an ISO date or time: write it like 2026-11-01"):
        client.predict(
            TOKEN,
            "dpo",
            ".jsonl",
            "yesterday",
            "",
            "",
            "any",
            False,
            False,
            False,
            True,
            False,
            False,
            api_name="/admin_export",
        )


def test_the_database_file_is_not_served(served):
    for path in ("data/feedback.sqlite3", str(served.data_dir / "feedback.sqlite3")):
        url = f"http://127.0.0.1:{served.port}/gradio_api/file={path}"
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url, timeout=10)
        assert error.value.code in (403, 404)


def test_no_data_tab_without_admin(tmp_path):
    settings = settings_from(["--data-dir", str(tmp_path), "--port", str(free_port())], {})
    app = create_app(settings, streamer=words_streamer(), log=lambda m: None)
    api_names = {fn.api_name for fn in app.demo.fns.values()}
    assert "ask" in api_names and "admin_export" not in api_names
    with pytest.raises(ValueError, match="at least 16 characters"):
        settings_from(["--admin"], {"PLAYGROUND_ADMIN_TOKEN": "short"})


def test_clear_during_a_stream_is_not_undone_by_it(tmp_path):
    settings = settings_from(["--data-dir", str(tmp_path), "--port", str(free_port())], {})
    app = create_app(settings, streamer=words_streamer(delay=0.1), log=lambda m: None)
    with app:
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
        job = client.submit("one two three four five six seven eight nine ten", "", api_name="/ask")
        until(job.outputs, 30, what="the stream to start")
        cleared = client.predict(api_name="/clear")
        assert cleared[0]["value"] == []
        # Whether cancelled or not, the run ends: had it not been cancelled, its last snapshot is in by then.
        until(lambda: not app.core.streaming, 30, what="the cancelled run to end")
        with pytest.raises(AppError, match="nothing to regenerate"):
            client.predict(api_name="/regenerate")


def test_wrong_token_guesses_are_refused_at_the_door_and_limited_per_address(served):
    """40 concurrent wrong guesses from one address: each refused before the queue (no worker, no
    sleep), after 5 the address is refused outright, and the owner's export elsewhere is not held up."""
    url = f"http://127.0.0.1:{served.port}/"
    args = ["dpo", ".jsonl", "", "", "", "any", False, False, False, True, False, False]
    guesser = Client(url, verbose=False, headers={"X-Forwarded-For": "198.51.100.66"})
    guesses = [guesser.submit(f"guess-{n}", *args, api_name="/admin_export") for n in range(40)]
    started = time.perf_counter()
    owner = Client(url, verbose=False, headers={"X-Forwarded-For": "203.0.113.51"})
    line, _ = owner.predict(TOKEN, *args, api_name="/admin_export")
    assert line.startswith("exported 6 dpo rows")
    owner_s = time.perf_counter() - started
    refusals = []
    for guess in guesses:
        with pytest.raises(ValidationError) as refused:
            guess.result()
        refusals.append(str(refused.value))
    assert sum(r.rstrip().endswith(": wrong admin token") for r in refusals) == 5, refusals
    assert sum("more than 5 wrong admin tokens came from your address" in r for r in refusals) == 35
    with pytest.raises(ValidationError, match="more than 5 wrong admin tokens"):  # the right token too, now
        guesser.predict(TOKEN, *args, api_name="/admin_export")
    print(f"owner's export with 40 guesses at once: {owner_s:.2f} s")


def test_admin_export_is_not_listed_in_the_api_page(served):
    with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/gradio_api/info", timeout=30) as answer:
        info = answer.read().decode()
    assert "admin_export" not in info and "/ask" in info


def test_export_links_expire_and_take_their_file_with_them(tmp_path):
    from playground.downloads import OneTimeDownloads

    now = [0.0]
    downloads = OneTimeDownloads(ttl_s=600, clock=lambda: now[0])
    kept, expired = tmp_path / "feedback-dpo-a.jsonl", tmp_path / "feedback-dpo-b.jsonl"
    for file in (kept, expired):
        file.write_text("{}\n")
    stale = downloads.offer(expired).rsplit("/", 1)[1]
    now[0] = 601.0
    fresh = downloads.offer(kept).rsplit("/", 1)[1]  # making an offer clears the expired ones
    assert downloads.take(stale) is None and not expired.exists()
    assert downloads.take(fresh) == kept and downloads.take(fresh) is None


def test_old_export_files_are_pruned(tmp_path):
    from playground.ui_tabs import prune_exports

    old, fresh = tmp_path / "feedback-dpo-old.jsonl", tmp_path / "feedback-dpo-new.jsonl"
    for file in (old, fresh):
        file.write_text("{}\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert prune_exports(tmp_path, max_age_s=600) == 1
    assert not old.exists() and fresh.exists()


def test_the_data_tab_shows_agreement_between_raters_behind_the_token(tmp_path):
    from feedback_db.raters import invite
    from tests.databases import rate, store_comparison

    settings = settings_from(
        ["--data-dir", str(tmp_path), "--port", str(free_port()), "--admin"], {"PLAYGROUND_ADMIN_TOKEN": TOKEN}
    )
    app = create_app(settings, streamer=words_streamer(), log=lambda m: None)
    database = app.core.database
    with database.session() as session:
        raters = [invite(session, name)[0].id for name in ("ann", "bob", "cy")]
    for n in range(6):  # ann and bob always agree, cy picks the other answer half the time
        comparison = store_comparison(database, ["x", "y"])
        for rater, choice in zip(raters, ("a", "a", "ab"[n % 2])):
            rate(database, comparison, choice=choice, rater=rater)
    with app:
        client = Client(app.url, verbose=False)
        with pytest.raises(ValidationError, match="wrong admin token"):
            client.predict("guess", False, False, api_name="/admin_agreement")
        report = client.predict(TOKEN, False, False, api_name="/admin_agreement")
    assert "18 ratings on 6 comparisons, 6 of them rated by two or more raters" in report
    assert "| Verdict (nominal) |" in report and raters[2] in report and "ann" not in report
