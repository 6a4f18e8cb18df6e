"""A public page against an attacker (issue 15): markup that could run script or cover the page, a null
form token, bursts against the limits, spoofed addresses, floods of abandoned asks, framing."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import urllib.request
import uuid

import httpx
import pytest
from gradio_client import Client

from feedback_db import open_database
from playground.comparison import Playground, checked_prompt
from playground.errors import PlaygroundError
from playground.guard import OpenStreams
from playground.markup import shown_as_text
from playground.server import App
from playground.visitors import FailedAttempts, InFlight, VisitorPolicy
from tests.browsers import paced_app
from tests.fakes import lineup, words_streamer
from tests.page_api import rate_args
from tests.raw_api import call, form_token, join, refusal
from tests.waiting import until

# Markup that ran script, navigated or covered the page when rendered as HTML (issue 15).
HOSTILE_MARKUP = [
    '<svg><a href="javascript:alert(1)"><rect width=99 height=99 /></a></svg>',
    '<svg><a xlink:href="javascript:alert(2)"><text y="20">xlink</text></a></svg>',
    '<svg><use href="data:image/svg+xml,<svg id=x><a href=javascript:alert(3)><rect/></a></svg>#x"/></svg>',
    '<math><mtext><a href="javascript:alert(4)">mathml</a></mtext><mi href="javascript:alert(5)">m</mi></math>',
    '<form><button formaction="javascript:alert(6)">formaction</button></form>',
    '<svg><a><animate attributeName="href" values="javascript:alert(7)"/><text y="20">animate</text></a></svg>',
    '<svg><a><set attributeName="href" to="javascript:alert(8)"/><text y="20">set</text></a></svg>',
    '<a href="data:text/html,<script>alert(9)</script>">data link</a>',
    '<div style="position:fixed;top:0;left:0;width:100%;height:100%;z-index:9999;background:white">'
    'Session expired — enter your Hugging Face token <a href="https://example.org/login">here</a></div>',
    "<!-- a comment --><https://autolink.example/> <img src=x onerror=alert(10)>",
]


def unescaped_tags(markdown: str) -> list[str]:
    """Every `<` that could still start markup outside fenced code: markup.py leaves only `\\<` and code."""
    outside, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip(" ").startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            outside.append(line)
    text = "\n".join(outside)
    return [
        text[i : i + 12]
        for i in range(len(text))
        if text[i] == "<" and (i == 0 or text[i - 1] != "\\") and not _in_code_span(text, i)
    ]


def _in_code_span(text: str, index: int) -> bool:
    return text[:index].count("`") % 2 == 1 and "`" in text[index:]


@pytest.mark.parametrize("markup", HOSTILE_MARKUP)
def test_markup_from_visitors_and_models_shows_as_text(markup):
    for text in (
        markup,
        f"Sure! {markup} Anything else?",
        f"- item\n  {markup}\n\n> {markup}",
        f"| a | b |\n|---|---|\n| {markup} | x |",
    ):
        shown = shown_as_text(text)
        assert unescaped_tags(shown) == [], shown
        assert shown.replace("&lt;", "<") == text  # only the `<` changed: the person sees what was written


def test_code_stays_as_written_and_doubtful_code_is_escaped():
    code = '```html\n<a href="javascript:x">in a fence</a>\n```'
    assert shown_as_text(code) == code
    assert shown_as_text("Use `<div>` for blocks, and `a<b` too") == "Use `<div>` for blocks, and `a<b` too"
    assert shown_as_text(r"escaped \<b> stays") == r"escaped \<b> stays"
    # Where marked could see the backticks otherwise, nothing is taken for code.
    for doubtful in (
        "http://a.example/`<svg/onload=x>`",  # an autolink takes the first backtick
        '[a](/u " `")<svg>` ")',  # a link's title takes it
        "x` `<svg>` `",  # the first run pairs with the second
        "`a\n- b` x `<svg>`",  # a list item splits the paragraph
        "| `a|<svg>` |",  # a table cell ends at the pipe
        "~~a`~~<svg>`",
    ):  # strikethrough takes it
        assert "<svg" not in shown_as_text(doubtful), doubtful
    # A fence whose list may have ended, or a closing line parsers read differently: the rest is escaped.
    assert "<svg" not in shown_as_text("- item\n  ```\n<svg>\n  ```")
    assert "<b>" not in shown_as_text("```\ncode\n```~\n<b>x</b>")
    assert "<b>" not in shown_as_text("\t```\n<b>x</b>\n```")


def test_prompts_of_only_invisible_characters_are_empty():
    for invisible in ("\u200b\u200b", "\ufeff", " \u200d\u2060\u00ad ", "\u202e"):
        with pytest.raises(PlaygroundError, match="the prompt is empty"):
            checked_prompt(invisible)
    assert checked_prompt("a\u200b") == "a\u200b"


def test_a_burst_from_one_visitor_stores_only_what_the_limit_allows(database):
    """60 asks at once from one visitor with a limit of 2 a minute: counted and stored in one step."""
    policy = VisitorPolicy(salt=b"0123456789abcdef", per_minute=2)
    stored = burst(
        Playground(lineup(2), words_streamer(), database, rng=random.Random(0), visitors=policy),
        policy.key("203.0.113.1"),
        60,
    )
    assert stored == 2


@pytest.mark.postgres
def test_a_burst_on_postgresql_stores_only_what_the_limit_allows(postgres_url):
    """Two app processes' worth of connections on one server: the advisory lock serializes the visitor."""
    first, second = open_database(postgres_url), open_database(postgres_url)
    try:
        policy = VisitorPolicy(salt=b"0123456789abcdef", per_minute=3)
        cores = [
            Playground(lineup(2), words_streamer(), db, rng=random.Random(0), visitors=policy) for db in (first, second)
        ]
        assert burst(cores, policy.key("203.0.113.2"), 40) == 3
    finally:
        first.dispose()
        second.dispose()


def burst(cores: Playground | list[Playground], visitor: str, asks: int) -> int:
    """`asks` comparisons started at once by one visitor (spread over `cores`); how many were stored."""
    cores = cores if isinstance(cores, list) else [cores]
    start, results = threading.Barrier(asks), []

    def ask(n: int) -> None:
        core = cores[n % len(cores)]
        start.wait()
        try:
            for _ in core.ask(core.new_conversation(), f"question {n}", visitor=visitor):
                pass
            results.append("stored")
        except PlaygroundError as error:
            results.append(str(error))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(asks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    refused = [r for r in results if r != "stored"]
    assert len(results) == asks and all("questions in the last minute" in r for r in refused), refused
    with cores[0].database.snapshot() as db:
        from sqlalchemy import func, select

        from feedback_db import Comparison

        return db.scalar(select(func.count()).select_from(Comparison).where(Comparison.visitor == visitor))


def test_in_flight_tickets_count_running_and_waiting_asks_per_visitor():
    now = [0.0]
    tickets = InFlight(limit=2, wait_s=60, clock=lambda: now[0])
    assert tickets.admit("v", "c1") and tickets.admit("v", "c2") and not tickets.admit("v", "c3")
    assert tickets.admit("w", "c4")  # another visitor has places of their own
    assert tickets.start("v", "c1")
    tickets.finish("v", "c1")
    assert tickets.admit("v", "c3") and not tickets.admit("v", "c5")
    tickets.forget("c2")  # its page left the queue
    assert tickets.admit("v", "c5")
    now[0] = 61.0  # waiting tickets whose runs never started expire; a running one does not
    assert tickets.start("v", "c3") and tickets.admit("v", "c6") and not tickets.admit("v", "c7")
    assert not tickets.start("v", "c8")  # a run that was never admitted takes a place only if there is one
    assert InFlight(limit=None).admit("v", "c") and InFlight(limit=None).start("v", "c")


def test_failed_attempts_block_a_visitor_for_the_window():
    now = [0.0]
    attempts = FailedAttempts(limit=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert not attempts.blocked("v")
        attempts.failed("v")
    assert attempts.blocked("v") and not attempts.blocked("w")
    now[0] = 61.0
    assert not attempts.blocked("v")


def test_open_streams_wait_for_a_page_that_joined_and_give_up_on_one_that_never_reads():
    now = [100.0]
    streams = OpenStreams(grace_s=3.0, clock=lambda: now[0])
    assert streams.wait("anyone")  # no guard watches: every session counts as there
    streams.watched = True
    streams.joined("s")
    now[0] = 104.0
    assert not streams.wait("s")  # joined 4 s ago and never opened its stream
    streams.opened("t")
    assert streams.wait("t")
    streams.closed("t")
    assert not streams.is_open("t")


def limited_app(tmp_path_factory, *argv: str) -> App:
    """Limits as a public demo has them, from loopback without a trusted proxy."""
    return paced_app(
        tmp_path_factory, "--model", "org/one", "--model", "org/two", *argv, streamer=words_streamer(delay=0.02)
    )


def ask_index(url: str) -> int:
    return Client(url, verbose=False)._infer_fn_index("/ask", None)


def stored(settings) -> int:
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0]


def test_a_null_form_token_is_a_wrong_one(tmp_path_factory):
    with paced_app(tmp_path_factory, "--model", "org/one", "--model", "org/two", streamer=words_streamer()) as app:
        url, settings = app.url, app.settings
        client = Client(url, verbose=False)
        ask, rate = client._infer_fn_index("/ask", None), client._infer_fn_index("/rate", None)
        owner = uuid.uuid4().hex[:11]
        token = form_token(call(url, ask, ["What is the capital of France?", "", ""], owner)["data"])
        for forged in (None, "", 17, ["x"]):
            assert "earlier answers" in refusal(call(url, rate, rate_args(forged, "a", "better"), owner))
        with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0
        assert call(url, rate, rate_args(token, "a", "better"), owner)["success"]


def test_forwarded_for_from_loopback_is_ignored_without_a_trusted_proxy(tmp_path_factory):
    with limited_app(tmp_path_factory, "--limit-per-minute", "2") as app:
        url, settings = app.url, app.settings
        ask = ask_index(url)
        passed = spoofed_asks(url, ask, 5)
    assert passed == 2 and stored(settings) == 2  # the limit of 2 a minute held for one address


def spoofed_asks(url: str, ask: int, count: int) -> int:
    """Asks, one after another, each with a new made-up X-Forwarded-For; how many were answered."""
    # As an attacker on the same host, or behind a proxy that passes the header on, would send.
    return sum(
        call(
            url,
            ask,
            [f"spoofed {n}", "", ""],
            uuid.uuid4().hex[:11],
            headers={"X-Forwarded-For": f"198.51.100.{n + 1}"},
        )["success"]
        for n in range(count)
    )


def test_abandoned_asks_never_generate(tmp_path_factory):
    """30 asks joined from distinct sessions that never open their event stream are dropped before they
    generate; a page that reads its stream is then served at once."""
    with paced_app(
        tmp_path_factory,
        "--model",
        "org/one",
        "--model",
        "org/two",
        "--max-concurrent",
        "2",
        "--queue-size",
        "40",
        streamer=words_streamer(delay=0.01),
    ) as app:
        url, settings = app.url, app.settings
        ask = Client(url, verbose=False)._infer_fn_index("/ask", None)
        with httpx.Client(timeout=30) as http:
            codes = [join(http, url, ask, [f"abandoned {n}", "", ""]).status_code for n in range(30)]
        assert codes.count(200) == 30
        answer = call(url, ask, ["Is anyone there?", "", ""], uuid.uuid4().hex[:11], timeout=120)
        assert answer["success"], answer
        assert stored(settings) == 1


def test_one_visitor_holds_one_running_and_one_waiting_ask(tmp_path_factory):
    with limited_app(tmp_path_factory, "--limit-in-flight", "2", "--max-concurrent", "1") as app:
        url, settings = app.url, app.settings
        ask = ask_index(url)
        with httpx.Client(timeout=30) as http:
            answers = [join(http, url, ask, [f"flood {n}", "", ""]) for n in range(6)]
        refused = [a for a in answers if a.status_code == 422]
        assert [a.status_code for a in answers] == [200, 200, 422, 422, 422, 422]
        assert all("running or waiting already" in a.text for a in refused)

        # The two admitted asks were never read: dropped once their grace passed, and their places given back.
        def answered() -> dict | None:
            answer = call(url, ask, ["Is anyone there?", "", ""], uuid.uuid4().hex[:11], timeout=120)
            return None if "running or waiting already" in refusal(answer) else answer

        answer = until(answered, 30, every_s=0.2, what="the abandoned asks to give their places back")
        assert answer["success"], answer
        assert stored(settings) == 1


def test_the_page_may_be_framed_only_by_a_space(tmp_path_factory):
    with paced_app(tmp_path_factory, "--model", "org/one", "--model", "org/two") as app:
        url = app.url
        with urllib.request.urlopen(url, timeout=30) as page:
            assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    from app import settings_from

    assert settings_from([], {"SYSTEM": "spaces"}).framed_by == ("https://huggingface.co",)


def test_your_data_needs_the_address_as_well_as_the_session(tmp_path_factory):
    """A session hash travels in URLs; from another address it neither shows nor deletes what was asked."""
    with paced_app(
        tmp_path_factory, "--model", "org/one", "--model", "org/two", "--trusted-proxy", streamer=words_streamer()
    ) as app:
        url, settings = app.url, app.settings
        client = Client(url, verbose=False)
        ask, mine = client._infer_fn_index("/ask", None), client._infer_fn_index("/my_data", None)
        delete = client._infer_fn_index("/delete_my_session", None)
        session, home, elsewhere = (
            uuid.uuid4().hex[:11],
            {"X-Forwarded-For": "203.0.113.7"},
            {"X-Forwarded-For": "198.51.100.8"},
        )
        assert call(url, ask, ["my private question", "", ""], session, headers=home)["success"]
        seen = call(url, mine, [], session, headers=elsewhere)["data"][0]
        assert "private" not in seen and "1 more comparison of this session was asked from another" in seen
        call(url, delete, [], session, headers=elsewhere)
        assert stored(settings) == 1  # nothing deleted from elsewhere
        assert "my private question" in call(url, mine, [], session, headers=home)["data"][0]
        call(url, delete, [], session, headers=home)
        assert stored(settings) == 0


def test_sessions_that_never_ask_leave_nothing_behind(tmp_path_factory):
    """New session hashes by the hundred (what a script mints for nothing): no copy of the page per
    session, and once idle, no conversation, no Gradio state and no message queue is left for them."""
    from dataclasses import replace

    from app import settings_from
    from playground.server import create_app
    from tests.servers import free_port

    settings = settings_from(
        [
            "--data-dir",
            str(tmp_path_factory.mktemp("sessions")),
            "--port",
            str(free_port()),
            "--model",
            "org/one",
            "--model",
            "org/two",
        ],
        {},
    )
    settings = replace(settings, unasked_ttl_s=0.5)
    with create_app(settings, streamer=words_streamer(), log=lambda m: None) as app:
        url, demo = app.url, app.demo
        client = Client(url, verbose=False)
        mine, board = client._infer_fn_index("/my_data", None), client._infer_fn_index("/leaderboard", None)
        client.predict("Keep me", "", "", api_name="/ask")  # a session that asked: kept
        for n in range(100):
            session = uuid.uuid4().hex[:11]
            assert "Nothing is stored" in call(url, mine, [], session)["data"][0]
            if n % 10 == 0:
                assert call(url, board, [False], session)["success"]
        holder = demo.state_holder
        assert len(app.conversations) == 1  # "Your data" made no conversation
        assert all(not state.config_values for state in holder.session_data.values())  # no copies of the page
        time.sleep(0.6)
        assert app.sweeper.run_once() == 100
        assert list(app.conversations.sweep()) == [client.session_hash] == list(holder.session_data)
        assert set(demo._queue.pending_messages_per_session) <= {client.session_hash}
        assert "Keep me" in client.predict(api_name="/my_data")  # the kept one still has its conversation
