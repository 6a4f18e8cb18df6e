"""The leaderboard tab's handler, in-process: what it shows before and after every contender has min_battles."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import gradio as gr

from feedback_db import Database
from playground.ui_tabs import leaderboard_tab
from tests.databases import seed_golden


def shown_by(database: Database, min_battles: int) -> Callable[[bool], list[Any]]:
    """The tab's handler, built as the page builds it."""
    with gr.Blocks() as demo:
        leaderboard_tab(database, 10, min_battles=min_battles)
    return next(fn.fn for fn in demo.fns.values() if fn.fn.__name__ == "show")


def test_the_tab_is_preliminary_until_every_contender_has_min_battles(database: Database) -> None:
    seed_golden(database)  # blind battles: x 8, y 8, z 4 (the errored rating is set aside)
    heading, _, table, _ = shown_by(database, min_battles=5)(False)
    assert heading.startswith("**Preliminary: 6 votes so far; ratings settle once every contender has 5 battles")
    assert [(row[1], row[3].startswith("preliminary")) for row in table.value["data"]] == [
        ("x", False),
        ("z", True),
        ("y", False),
    ]
    heading, _, table, _ = shown_by(database, min_battles=4)(False)
    assert heading.startswith("10 battles from 6 ratings") and "1 rating set aside: 1 errored." in heading
    assert not any("preliminary" in str(row) for row in table.value["data"])


def test_the_tab_shows_the_style_controlled_fit_the_prior_and_what_reproduces_it(database: Database) -> None:
    from playground.leaderboard_view import TABLE_HEADERS

    seed_golden(database)
    heading, plot, table, _ = shown_by(database, min_battles=4)(False)
    assert TABLE_HEADERS[-3:] == ["style-controlled rating", "style-controlled 95% interval", "style-controlled rank"]
    assert table.value["headers"] == TABLE_HEADERS
    for row in table.value["data"]:
        assert len(row) == len(TABLE_HEADERS) and isinstance(row[8], float) and row[10] in (1, 2, 3)
        assert re.fullmatch(r"-?\d+ – -?\d+", row[9])
    assert "a weak prior of 2 virtual ties of each contender against an average one" in heading
    assert re.search(r"length [+-]\d+ \(-?\d+ to -?\d+\), headers [+-]\d+ .*, lists .*, bold ", heading)
    assert re.search(r"the answer shown first beats an equal one \d+\.\d% \(\d+\.\d% to \d+\.\d%\)", heading)
    assert re.search(r"Votes sha256 `[0-9a-f]{64}`, bootstrap seed 0", heading)
    assert 'width="100%"' in plot
