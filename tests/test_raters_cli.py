"""`python -m feedback_db raters` and `set-aside`, in-process: invite links, the list, revoking, new rules."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from feedback_db import Database, open_database, sqlite_url
from feedback_db.cli import main
from feedback_db.raters import digest, redeem
from feedback_db.rules import Rules, apply_rules, current_rules
from tests.databases import rate, store_comparison


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out, err), out.getvalue(), err.getvalue()


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, Database]:
    url = sqlite_url(tmp_path / "feedback.sqlite3")
    database = open_database(url)
    yield url, database
    database.dispose()


def invite_link(url: str, name: str, *base: str) -> tuple[str, str]:
    """Invite `name` through the CLI; returns (the printed link, the whole output)."""
    code, out, err = cli("raters", "add", name, "--db-url", url, *base)
    assert (code, err) == (0, ""), err
    (link,) = [line for line in out.splitlines() if "?invite=" in line]
    return link, out


def test_add_prints_a_link_once_whose_secret_redeems_and_only_its_hash_is_stored(db: tuple, tmp_path: Path) -> None:
    url, database = db
    link, out = invite_link(url, "Ann Example")
    base, secret = link.split("?invite=")
    assert base == "http://127.0.0.1:7860/" and secret
    assert "shown this once" in out and "only its hash is stored" in out and "Ann Example" not in out
    database.dispose()  # every write reaches the main file, so its bytes can be searched
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("feedback.sqlite3*"))
    assert secret.encode() not in stored and digest(secret).encode() in stored
    with database.session() as session:
        rater, key = redeem(session, secret, None)
        assert key and rater.name == "Ann Example"
    link, _ = invite_link(url, "bob", "--url", "https://arena.example.org/app/")
    assert link.startswith("https://arena.example.org/app/?invite=")


def test_list_shows_every_rater_and_no_secret(db: tuple) -> None:
    url, database = db
    link, _ = invite_link(url, "ann")
    invite_link(url, "bob")
    secret = link.split("?invite=")[1]
    with database.session() as session:
        ann, key = redeem(session, secret, None)
    rate(database, store_comparison(database, ["x", "y"]), choice="a", rater=ann.id)
    code, out, _ = cli("raters", "list", "--db-url", url)
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split() == ["rater", "kind", "name", "created", "revoked", "ratings", "invite", "opened"]
    assert [line.split()[1:3] + line.split()[4:] for line in lines] == [
        ["invited", "ann", "-", "1", "yes"],
        ["invited", "bob", "-", "0", "no"],
    ]
    assert lines[0].split()[0] == ann.id
    code, out, _ = cli("raters", "list", "--db-url", url, "--json")
    listed = json.loads(out)
    assert [(r["name"], r["ratings"], r["invite_opened"], r["revoked_at"]) for r in listed] == [
        ("ann", 1, True, None),
        ("bob", 0, False, None),
    ]
    assert set(listed[0]) == {"rater", "kind", "name", "created_at", "revoked_at", "ratings", "invite_opened"}
    for shown in (out, cli("raters", "list", "--db-url", url)[1]):
        assert secret not in shown and digest(secret) not in shown and key not in shown and digest(key) not in shown
    assert cli("raters", "list", "--db-url", url, "--kind", "open")[1].splitlines()[1:] == []


def test_revoke_sets_the_raters_ratings_aside_and_says_how_many(db: tuple) -> None:
    url, database = db
    link, _ = invite_link(url, "ann")
    with database.session() as session:
        ann, _ = redeem(session, link.split("?invite=")[1], None)
    for _ in range(2):
        rate(database, store_comparison(database, ["x", "y"]), choice="a", rater=ann.id)
    code, out, _ = cli("raters", "revoke", "ann", "--db-url", url)
    assert code == 0 and out == (
        f"revoked rater {ann.id}: its invite no longer works; 2 ratings set aside as revoked\n"
    )
    listed = json.loads(cli("raters", "list", "--db-url", url, "--json")[1])
    assert listed[0]["revoked_at"] is not None
    code, _, err = cli("export", "--db-url", url, "--format", "dpo", "--output", "-")
    assert code == 0 and "exported 0 dpo rows from 0 ratings" in err and "2 ratings set aside: 2 revoked" in err


def test_set_aside_applies_new_rules_keeping_the_identity_words(db: tuple) -> None:
    url, database = db
    with database.session() as session:
        apply_rules(session, Rules(identity_words={"contender": ("Llama", "Meta")}))
    rate(database, store_comparison(database, ["x", "y"]), choice="a", seconds_to_vote=0.5)
    rate(database, store_comparison(database, ["x", "y"]), choice="a", seconds_to_vote=5)
    code, out, _ = cli("set-aside", "--db-url", url, "--min-seconds-to-vote", "2")
    assert code == 0 and out.splitlines()[1:] == [
        "recomputed 2 ratings",
        "1 rating set aside: 1 too fast (of 2 ratings)",
    ]
    assert '"min_seconds_to_vote": 2.0' in out and "2 identity words" in out
    with database.snapshot() as session:
        rules = current_rules(session)
    assert (rules.min_seconds_to_vote, rules.identity_words) == (2.0, {"contender": ("Llama", "Meta")})
    code, out, _ = cli("set-aside", "--db-url", url, "--min-gold-accuracy", "0.8")  # the vote threshold stays
    assert code == 0 and out.splitlines()[-1] == "1 rating set aside: 1 too fast (of 2 ratings)"
    code, out, _ = cli("set-aside", "--db-url", url, "--min-seconds-to-vote", "off")
    assert code == 0 and out.splitlines()[-1] == "no ratings set aside (of 2 ratings)"
    code, out, _ = cli("set-aside", "--db-url", url)
    assert code == 0 and out.splitlines()[1] == "these rules were in force already"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["raters", "add", "ann"], "a rater named 'ann' exists already"),
        (["raters", "add", " "], "a rater's name is 1 to 64 characters"),
        (["raters", "add", "cal", "--url", "127.0.0.1:7860"], "must be the app's address"),
        (["raters", "add", "cal", "--url", "http://h/?a=1"], "with no query"),
        (["raters", "revoke", "nobody"], "no rater is called 'nobody'"),
        (["raters", "list", "--kind", "robot"], "invalid choice: 'robot'"),
        (["raters"], "the following arguments are required: ACTION"),
        (["set-aside", "--min-gold-accuracy", "2"], "min_gold_accuracy must be between 0 and 1"),
        (["set-aside", "--min-seconds-to-vote", "soon"], "'soon' is not a number (or 'off')"),
        (["set-aside", "--min-gold-items", "0"], "min_gold_items must be a whole number of at least 1"),
    ],
)
def test_bad_input_exits_with_2_and_says_what_was_wrong(
    db: tuple, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = db
    invite_link(url, "ann")
    code, out, err = cli(*argv, "--db-url", url) if argv != ["raters"] else cli(*argv)
    printed = err + capsys.readouterr().err  # argparse prints to sys.stderr itself
    assert code == 2 and message in printed and "Traceback" not in printed and "?invite=" not in out
