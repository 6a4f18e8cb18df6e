"""Visitors told apart by a salted hash of their address, limited per minute and per day, and the
comparisons a killed server left unfinished marked at the next start."""

from __future__ import annotations

import os
import random
import sqlite3
import stat

import pytest
from gradio_client import Client
from gradio_client.exceptions import ValidationError

from app import settings_from
from feedback_db import ComparisonRecord, add_comparison, get_comparison
from playground.comparison import Playground
from playground.errors import PlaygroundError
from playground.server import create_app
from playground.visitors import VisitorPolicy, load_salt
from tests.databases import store_comparison
from tests.fakes import lineup, run, words_streamer
from tests.servers import free_port

SALT = b"0123456789abcdef0123456789abcdef"


def test_a_visitor_key_is_a_salted_hash_and_trusts_forwarded_for_only_behind_a_proxy():
    policy = VisitorPolicy(salt=SALT)
    key = policy.key("203.0.113.5")
    assert len(key) == 32 and "203.0.113.5" not in key and key == policy.key("203.0.113.5")
    assert policy.key("203.0.113.6") != key
    assert VisitorPolicy(salt=b"another-salt-of-16+bytes").key("203.0.113.5") != key
    # Anyone can send X-Forwarded-For: without a trusted proxy it changes nothing.
    assert policy.key("203.0.113.5", "198.51.100.1") == key
    behind = VisitorPolicy(salt=SALT, trusted_proxies=1)
    assert behind.key("10.0.0.1", "203.0.113.5") == key  # the hop the proxy added is the visitor
    assert behind.key("10.0.0.1", None) == policy.key("10.0.0.1")
    # A client-written first hop changes nothing: the proxy's own hop is the right-most.
    assert behind.key("10.0.0.1", "198.51.100.77, 203.0.113.5") == key
    two = VisitorPolicy(salt=SALT, trusted_proxies=2)  # a CDN, then a load balancer
    assert two.key("10.0.0.1", "198.51.100.77, 203.0.113.5, 10.0.0.7") == key
    assert two.key("10.0.0.1", "203.0.113.5") == policy.key("10.0.0.1")  # did not pass both: the peer
    with pytest.raises(ValueError, match="per minute limit must be a whole number of at least 1"):
        VisitorPolicy(salt=SALT, per_minute=0)


def test_the_salt_is_kept_private_in_the_data_folder_unless_given(tmp_path):
    salt = load_salt(tmp_path)
    assert len(salt) >= 32 and load_salt(tmp_path) == salt  # kept: keys survive a restart
    assert stat.S_IMODE(os.stat(tmp_path / "visitor-salt").st_mode) == 0o600
    assert load_salt(tmp_path, "from-the-environment-0123") == b"from-the-environment-0123"


def test_limits_refuse_with_the_numbers_and_count_each_visitor_alone(database):
    core = Playground(
        lineup(2), words_streamer(), database, rng=random.Random(0), visitors=VisitorPolicy(salt=SALT, per_minute=2)
    )
    one, other = core.visitors.key("203.0.113.5"), core.visitors.key("203.0.113.6")
    for n in range(2):
        session = core.new_conversation()
        for _ in core.ask(session, f"question {n}", visitor=one):
            pass
    with pytest.raises(
        PlaygroundError,
        match="you have asked 2 questions in the last minute, and this demo takes "
        "2 per minute from each visitor: please try again in a minute",
    ):
        core.check_can_ask(core.new_conversation(), "one more", "", one)
    with pytest.raises(PlaygroundError, match="asked 2 questions in the last minute"):
        list(core.ask(core.new_conversation(), "one more", visitor=one))
    session = core.new_conversation()
    run(core, session, "someone else")  # no key: not counted, not limited
    for _ in core.ask(core.new_conversation(), "another visitor", visitor=other):
        pass
    with sqlite3.connect(database.engine.url.database) as db:
        keys = [row[0] for row in db.execute("SELECT visitor FROM comparisons ORDER BY created_at")]
    assert keys == [one, one, None, other]


@pytest.fixture()
def limited_app(tmp_path):
    settings = settings_from(
        [
            "--data-dir",
            str(tmp_path),
            "--port",
            str(free_port()),
            "--model",
            "org/one",
            "--model",
            "org/two",
            "--limit-per-minute",
            "1",
            "--trusted-proxy",
        ],
        {},
    )
    app = create_app(settings, streamer=words_streamer(), log=lambda m: None)
    with app:
        yield settings, app.core


def test_the_launched_app_limits_each_visitor_by_the_address_it_sees(limited_app):
    settings, core = limited_app
    url = f"http://127.0.0.1:{settings.port}/"
    first = Client(url, verbose=False)
    first.predict("Hello", "", "", api_name="/ask")
    with pytest.raises(ValidationError, match="you have asked 1 questions in the last minute"):
        Client(url, verbose=False).predict("Hello again", "", "", api_name="/ask")  # a new session, same address
    # Behind the trusted proxy, the hop it added is the visitor; what the client wrote before it is not.
    spoofed = Client(url, verbose=False, headers={"X-Forwarded-For": "198.51.100.1, 127.0.0.1"})
    with pytest.raises(ValidationError, match="you have asked 1 questions in the last minute"):
        spoofed.predict("A new first hop", "", "", api_name="/ask")
    proxied = Client(url, verbose=False, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
    proxied.predict("From elsewhere", "", "", api_name="/ask")
    with sqlite3.connect(settings.data_dir / "feedback.sqlite3") as db:
        keys = [row[0] for row in db.execute("SELECT visitor FROM comparisons ORDER BY created_at")]
    assert keys == [core.visitors.key("127.0.0.1"), core.visitors.key("127.0.0.1", "203.0.113.9")]
    assert keys[1] == core.visitors.key("203.0.113.9")
    stored = (settings.data_dir / "feedback.sqlite3").read_bytes()
    assert b"127.0.0.1" not in stored and b"203.0.113.9" not in stored  # never the address


def test_the_hosted_profile_binds_every_interface_on_the_platforms_port_and_limits_visitors():
    hosted = settings_from(["--hosted"], {"PORT": "7861"})
    assert (hosted.host, hosted.port, hosted.trusted_proxies, hosted.limit_in_flight) == ("0.0.0.0", 7861, 1, 2)
    assert (hosted.limit_per_minute, hosted.limit_per_day) == (6, 200)
    assert settings_from([], {"PLAYGROUND_HOSTED": "1", "GRADIO_SERVER_PORT": "8080"}).port == 8080
    custom = settings_from(["--hosted", "--limit-per-day", "50", "--port", "9000"], {"PORT": "7861"})
    assert (custom.limit_per_day, custom.port) == (50, 9000)
    # The = spelling is the same option (it once fell back to the profile's host and port).
    joined = settings_from(["--hosted", "--port=9001", "--host=127.0.0.1"], {"PORT": "7861"})
    assert (joined.host, joined.port) == ("127.0.0.1", 9001)
    assert settings_from([], {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "8081"}).port == 8081
    assert settings_from([], {"GRADIO_SERVER_NAME": "0.0.0.0"}).host == "0.0.0.0"
    local = settings_from([], {})
    assert (local.host, local.trusted_proxies, local.limit_per_minute, local.limit_per_day, local.limit_in_flight) == (
        "127.0.0.1",
        0,
        None,
        None,
        None,
    )
    assert settings_from(["--trusted-proxy"], {}).trusted_proxies == 1
    assert settings_from(["--trusted-proxy", "2", "--hosted"], {}).trusted_proxies == 2


def test_comparisons_a_killed_server_left_unfinished_are_marked_at_the_next_start(tmp_path):
    settings = settings_from(
        ["--data-dir", str(tmp_path), "--port", str(free_port()), "--model", "org/one", "--model", "org/two"], {}
    )
    app = create_app(settings, streamer=words_streamer(), log=lambda m: None)
    core = app.core
    finished = store_comparison(core.database, ["x", "y"])
    unfinished = ComparisonRecord(lineup="l", session_id="s", prompt="cut off", n_responses=2)
    with core.database.session() as session:
        add_comparison(session, unfinished)
    core.database.dispose()
    logged: list[str] = []
    restarted = create_app(settings, streamer=words_streamer(), log=logged.append)
    assert "1 comparisons were left unfinished by a server that stopped; marked as interrupted" in logged
    with restarted.core.database.session() as session:
        assert get_comparison(session, unfinished.id).interrupted_at is not None
        assert get_comparison(session, finished).interrupted_at is None


def test_exports_leave_the_visitor_key_out_unless_the_admin_asks(database, tmp_path):
    import json as json_module

    import pyarrow.parquet as pq

    from feedback_db import ExportOptions
    from feedback_db.writers import export_to

    core = Playground(lineup(2), words_streamer(), database, rng=random.Random(0), visitors=VisitorPolicy(salt=SALT))
    key = core.visitors.key("203.0.113.5")
    session = core.new_conversation()
    for _ in core.ask(session, "a question", visitor=key):
        pass
    from playground.voting import Vote

    core.rate(session, Vote(choice="a", strength="better"))
    plain, keyed = tmp_path / "plain.jsonl", tmp_path / "keyed.parquet"
    export_to(database, ExportOptions(format="dpo"), plain)
    export_to(database, ExportOptions(format="dpo", include_visitor=True), keyed)
    (row,) = [json_module.loads(line) for line in plain.read_text().splitlines()]
    assert "visitor" not in row and key not in plain.read_text()
    assert pq.read_table(keyed).column("visitor").to_pylist() == [key]
