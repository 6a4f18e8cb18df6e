"""Raters in Chromium: terms before the first question, two invited raters and an open visitor giving
second opinions on one comparison through the Review tab, twice in a row, wide and at 420 px."""

from __future__ import annotations

import os
import sqlite3

import pytest

from feedback_db.raters import invite
from tests.browsers import CHROMIUM, PHONE, WIDE, paced_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
        reason="Debian's chromium is not installed (apt-get install chromium)",
    ),
]
TERMS = "Be kind to the models. What you type may be published."


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("terms")
    (folder / "terms.md").write_text(TERMS)
    (folder / "guidelines.md").write_text("Prefer the answer that is correct, then the one that is brief.")
    with paced_app(
        tmp_path_factory,
        "--model",
        "org/one",
        "--model",
        "org/two",
        "--terms",
        str(folder / "terms.md"),
        "--guidelines",
        str(folder / "guidelines.md"),
    ) as served:
        yield served


def rows(app, sql: str) -> list[tuple]:
    with sqlite3.connect(app.settings.data_dir / "feedback.sqlite3") as db:
        return db.execute(sql).fetchall()


def accept(page, url: str) -> None:
    page.goto(url)
    page.locator("#terms-text").get_by_text("Be kind to the models").wait_for(timeout=20_000)
    if "invite=" in url:  # the page knows its rater once its load event is answered
        page.locator("#rater-line").get_by_text("You rate as an invited rater").wait_for(timeout=20_000)
    page.locator("#accept-terms").click()
    page.locator("#rater-line").get_by_text("the terms are accepted").wait_for(timeout=20_000)
    page.locator("#terms:visible").first.wait_for(state="detached", timeout=20_000)


def ask(page, question: str) -> None:
    page.locator("#prompt textarea").fill(question)
    page.locator("#send").click()
    page.locator("#rating:visible").first.wait_for(state="visible", timeout=30_000)


def review(page, verdict: str, shot=None) -> None:
    page.get_by_role("tab", name="Review").click()
    page.locator("#review-next").click()
    page.locator("#review-form:visible").first.wait_for(state="visible", timeout=20_000)
    assert page.locator("#review-pane-0").is_visible() and page.locator("#review-pane-1").is_visible()
    assert not page.locator("#review-pane-2").is_visible()
    assert ": one" not in page.locator("#review-pane-0").inner_text()  # blind: no contender names
    page.locator("#review-choice").get_by_label(verdict, exact=True).check()
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    page.locator("#review-submit").click()
    page.locator("#review-status").get_by_text("your rating is stored").wait_for(timeout=20_000)


def test_terms_come_first_and_three_raters_give_second_opinions_on_one_comparison(browser, app, tmp_path):
    url = app.url
    with app.core.database.session() as session:
        links = {name: f"{url}?invite={invite(session, name)[1]}" for name in ("ann", "bob")}
    asker = browser.new_context(viewport=WIDE).new_page()
    asker.goto(url)
    asker.locator("#terms:visible").first.wait_for(state="visible", timeout=20_000)
    asker.locator("#prompt textarea").fill("Asked before accepting?")
    asker.locator("#send").click()
    asker.get_by_text("accept the terms above first").first.wait_for(timeout=20_000)
    assert rows(app, "SELECT count(*) FROM comparisons") == [(0,)]  # nothing asked or stored before
    accept(asker, url)
    for turn, question in enumerate(("Which ocean is largest?", "Which river is longest?")):
        if turn:
            asker.locator("#clear").click()
        ask(asker, question)
        asker.locator("#choice").get_by_label("A is better").check()
        asker.locator("#submit-rating").click()
        asker.locator("#rating-status").get_by_text("your rating is stored").wait_for(timeout=20_000)
    asker.screenshot(path=str(tmp_path / "asker.png"))

    reviewers = []
    for name, viewport in (("ann", WIDE), ("bob", PHONE), ("open", PHONE)):
        page = browser.new_context(viewport=viewport).new_page()
        accept(page, links.get(name, url))
        for n, verdict in enumerate(("A is better", "Tie")):  # twice in a row: both questions
            review(page, verdict, tmp_path / f"reviewing-{name}-{n}.png")
        page.locator("#review-next").click()
        page.locator("#review-status").get_by_text("nothing for you to review").wait_for(timeout=20_000)
        page.screenshot(path=str(tmp_path / f"review-{name}.png"))
        reviewers.append(page)
    invited = rows(app, "SELECT id FROM raters WHERE kind = 'invited'")
    assert len(invited) == 2
    per_comparison = rows(
        app,
        "SELECT c.prompt, count(*), sum(r.source = 'review'), count(DISTINCT r.rater) FROM ratings r "
        "JOIN comparisons c ON c.id = r.comparison_id GROUP BY c.id ORDER BY c.created_at",
    )
    assert per_comparison == [("Which ocean is largest?", 4, 3, 4), ("Which river is longest?", 4, 3, 4)]
    # Every rater accepted these terms' version before rating, and each rating says so.
    assert rows(app, "SELECT count(*), count(DISTINCT version) FROM acceptances") == [(4, 1)]
    assert rows(app, "SELECT count(*) FROM ratings WHERE terms_version IS NULL OR guidelines_version IS NULL") == [(0,)]
    # The invited raters' ratings carry their pseudonyms, never their names.
    assert {r for (r,) in rows(app, "SELECT rater FROM ratings")} >= {i for (i,) in invited}
    assert not rows(app, "SELECT 1 FROM ratings WHERE rater IN ('ann', 'bob')")


def test_an_invite_opened_in_a_second_browser_is_refused(browser, app):
    with app.core.database.session() as session:
        _, secret = invite(session, "carol")
    first = browser.new_context(viewport=WIDE).new_page()
    first.goto(f"{app.url}?invite={secret}")
    first.locator("#rater-line").get_by_text("You rate as an invited rater").wait_for(timeout=20_000)
    first.goto(app.url)  # back without the link: the browser's own key still names carol
    first.locator("#rater-line").get_by_text("You rate as an invited rater").wait_for(timeout=20_000)
    second = browser.new_context(viewport=WIDE).new_page()
    second.goto(f"{app.url}?invite={secret}")
    second.locator("#rater-line").get_by_text("already opened in another browser").wait_for(timeout=20_000)
    forged = browser.new_context(viewport=WIDE).new_page()
    forged.goto(f"{app.url}?invite=not-a-real-invite")
    forged.locator("#rater-line").get_by_text("this invite link is not valid").wait_for(timeout=20_000)


def test_three_answers_are_ranked_in_the_review_tab_at_420_px(browser, tmp_path_factory, tmp_path):
    from tests.databases import store_comparison

    with paced_app(tmp_path_factory, "--model", "org/one", "--model", "org/two") as three:
        comparison_id = store_comparison(three.core.database, ["x", "y", "z"])
        page = browser.new_context(viewport=PHONE).new_page()
        page.goto(three.url)
        page.get_by_role("tab", name="Review").click()
        page.locator("#review-next").click()
        page.locator("#review-form:visible").first.wait_for(state="visible", timeout=20_000)
        assert [page.locator(f"#review-pane-{p}").is_visible() for p in range(4)] == [True, True, True, False]
        assert not page.locator("#review-choice").is_visible()  # three answers: scores or ranks, no verdict
        assert page.locator("#review-score-2").is_visible() and not page.locator("#review-score-3").is_visible()
        page.locator("#review-method").get_by_label("Rank the answers").check()
        page.locator("#review-rank-0").wait_for(state="visible", timeout=20_000)
        assert not page.locator("#review-score-0").is_visible() and not page.locator("#review-rank-3").is_visible()
        for position, rank in ((0, "1"), (1, "2"), (2, "3")):
            page.locator(f"#review-rank-{position}").get_by_label(rank, exact=True).check()
        page.screenshot(path=str(tmp_path / "ranking-three.png"), full_page=True)
        page.locator("#review-submit").click()
        page.locator("#review-status").get_by_text("your rating is stored").wait_for(timeout=20_000)
        assert rows(three, "SELECT kind, source, comparison_id FROM ratings") == [("ranking", "review", comparison_id)]
