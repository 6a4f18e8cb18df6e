"""Rater settings as the app takes them: hub sign-in only on a Space, terms files, identity words from a
lineup file becoming the rules that set an arena vote aside."""

from __future__ import annotations

import random

import pytest

from app import main, settings_from
from feedback_db.rules import current_rules
from feedback_db.schema import Rating
from feedback_db.store import ratings_of
from models.lineups import lineup_from_file
from models.streaming import GenerationResult, PromptReady
from playground.comparison import Playground
from playground.raters import DEFAULT_TERMS, RaterPolicy, Raters
from playground.server import create_app
from playground.voting import Vote
from tests.databases import store_comparison
from tests.fakes import run, words_streamer

LINEUP = """name = "mixed"
[[contenders]]
name = "llama"
weights = "org/llama"
identity_words = ["Llama", "Meta"]
[[contenders]]
name = "other"
weights = "org/other"
"""


def leaky(contender, messages, params, *, stop, seed):
    """The contender named llama says who made it."""
    text = "I am Llama, made by Meta." if contender.name == "llama" else "The sea is large."
    yield PromptReady(text=messages[-1]["content"], tokens=3)
    yield text
    yield GenerationResult(text, "stop", 3, 5, 0.01, 0.02, seed)


def test_hub_sign_in_is_refused_off_a_space_and_builds_a_login_on_one(tmp_path, capsys, monkeypatch):
    argv = ["--data-dir", str(tmp_path), "--model", "org/one", "--model", "org/two", "--raters", "hub"]
    assert main(argv) == 2
    assert "error: --raters hub signs raters in with Hugging Face, which works on a Space" in capsys.readouterr().err
    assert main(argv, {"SYSTEM": "spaces"}) == 2  # a Space without hf_oauth: true in its README
    assert "add hf_oauth: true to the front matter" in capsys.readouterr().err
    # As a Space with sign-in runs it: Gradio reads these itself when the page is built (nothing is served).
    space = {"SYSTEM": "spaces", "SPACE_ID": "team/playground", "OAUTH_CLIENT_ID": "id"}
    for name, value in space.items():
        monkeypatch.setenv(name, value)
    for name in ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL"):
        monkeypatch.setattr(f"gradio.oauth.{name}", "set by the Space")
    app = create_app(settings_from(argv, space), streamer=words_streamer(), log=lambda m: None)
    assert any(type(block).__name__ == "LoginButton" for block in app.demo.blocks.values())
    assert any(getattr(fn.fn, "__name__", "") == "identify_hub" for fn in app.demo.fns.values())


def test_a_hugging_face_account_is_a_rater_in_hub_mode_and_an_open_seat_is_not(any_db):
    raters = Raters(any_db, RaterPolicy(mode="hub"))
    seat, line, key = raters.identify(invite=None, browser_key=None, hub_name="alice")
    assert seat.kind == "hub" and raters.may_rate(seat) and "signed-in rater" in line and key is None
    assert raters.identify(invite=None, browser_key=None, hub_name="alice")[0].id == seat.id  # the same rater
    anonymous, line, _ = raters.identify(invite=None, browser_key=None, hub_name=None)
    assert anonymous is None and "needs a Hugging Face account" in line
    assert not raters.may_rate(raters.seat_for(None))


def test_terms_files_are_checked_and_the_hosted_profile_ships_its_own(tmp_path, capsys):
    base = ["--data-dir", str(tmp_path), "--model", "org/one", "--model", "org/two"]
    assert main([*base, "--terms", str(tmp_path / "missing.md")]) == 2
    assert "error: --terms" in capsys.readouterr().err
    (tmp_path / "empty.md").write_text("  \n")
    assert main([*base, "--guidelines", str(tmp_path / "empty.md")]) == 2
    assert "the file is empty" in capsys.readouterr().err
    assert settings_from(["--hosted"], {}).terms == DEFAULT_TERMS
    assert "may be released publicly" in DEFAULT_TERMS.read_text()
    assert settings_from([], {}).terms is None


def test_identity_words_of_the_lineup_file_set_a_blind_vote_aside(tmp_path):
    (tmp_path / "mixed.toml").write_text(LINEUP)
    settings = settings_from(
        ["--data-dir", str(tmp_path / "data"), "--lineup-file", str(tmp_path / "mixed.toml"), "--mode", "arena"], {}
    )
    assert lineup_from_file(settings.lineup_file).contenders[0].identity_words == ("Llama", "Meta")
    app = create_app(settings, streamer=leaky, log=lambda m: None)
    with app.core.database.session() as session:
        assert current_rules(session).identity_words == {"llama": ("Llama", "Meta")}
    core = app.core
    core.rng = random.Random(0)
    page = core.new_conversation()
    run(core, page, "Who are you?")
    core.rate(page, Vote(choice="a"))
    with core.database.session() as session:
        (rating,) = ratings_of(session, page.comparison_id)
        assert rating.blind and rating.set_aside == ["identity_leak"]


def test_a_page_rating_records_seconds_to_vote_and_the_versions_in_force(any_db, tmp_path):
    (tmp_path / "terms.md").write_text("Be kind.")
    from playground.raters import Document

    terms, guidelines = Document.read(tmp_path / "terms.md", "--terms"), Document("Prefer brevity.", "b" * 64)
    core = Playground(*_two(), any_db, rng=random.Random(0), raters=RaterPolicy(terms=terms, guidelines=guidelines))
    page = core.new_conversation()
    page.seat = core.raters.accept_terms(page.seat)
    run(core, page, "Hi")
    core.rate(page, Vote(choice="b"))
    with any_db.session() as session:
        rating = session.query(Rating).one()
        assert (rating.rater, rating.terms_version, rating.guidelines_version) == (
            page.seat.id,
            terms.version,
            "b" * 64,
        )
        assert rating.seconds_to_vote is not None and rating.seconds_to_vote >= 0
        assert rating.source == "page"


def _two():
    from tests.fakes import lineup

    return lineup(2), words_streamer()


@pytest.mark.parametrize("mode", ["open", "invited"])
def test_an_invited_rater_rates_in_open_and_invited_apps(any_db, mode):
    from feedback_db.raters import invite

    store_comparison(any_db, ["x", "y"])
    with any_db.session() as session:
        _, secret = invite(session, "ann")
    raters = Raters(any_db, RaterPolicy(mode=mode))
    seat, line, key = raters.identify(invite=secret, browser_key=None, hub_name=None)
    assert seat.kind == "invited" and raters.may_rate(seat) and key
    assert raters.identify(invite=None, browser_key=key, hub_name=None)[0].id == seat.id


def test_one_address_starts_a_bounded_number_of_anonymous_seats(any_db):
    from playground.errors import PlaygroundError
    from playground.raters import NEW_SEATS_PER_HOUR, Document

    raters = Raters(any_db, RaterPolicy(terms=Document("Be kind.", "a" * 64)))
    seats = {raters.accept_terms(None, "visitor-1").id for _ in range(NEW_SEATS_PER_HOUR)}
    assert len(seats) == NEW_SEATS_PER_HOUR
    with pytest.raises(PlaygroundError, match="started 30 new sessions in the last hour"):
        raters.accept_terms(None, "visitor-1")
    assert raters.accept_terms(None, "visitor-2")  # another address is not held back
    seat = raters.accept_terms(None, "visitor-2")
    assert raters.accept_terms(seat, "visitor-1") is seat  # a session that has its seat keeps it
