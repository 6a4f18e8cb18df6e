"""The leaderboard tab's handler, in-process: what it shows before and after every contender has min_battles."""

from __future__ import annotations

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
