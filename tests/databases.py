"""Builders shared by the feedback_db tests: golden comparisons and ratings, stored through the real store.

PostgreSQL: the tests marked `postgres` read the server from PLAYGROUND_TEST_POSTGRES_URL (a role that
may CREATE DATABASE; .ci/run starts such a server) and give each test a database of its own, dropped
afterwards. Without the variable, or without a server answering, they skip and say why; with
PLAYGROUND_TEST_POSTGRES_REQUIRED=1 (set by .ci/run) they fail instead, so CI cannot skip them quietly.
The fixtures (`postgres_server`, `postgres_url`, `db_url`, `any_db`) are in conftest.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from feedback_db import (
    ComparisonRecord,
    Database,
    RatingRecord,
    ResponseRecord,
    add_comparison,
    add_rating,
    add_response,
)

POSTGRES_URL_ENV = "PLAYGROUND_TEST_POSTGRES_URL"
POSTGRES_REQUIRED_ENV = "PLAYGROUND_TEST_POSTGRES_REQUIRED"
QUESTION = [{"role": "user", "content": "Why is the sky blue?"}]


def store_comparison(
    db: Database,
    contenders: Sequence[str],
    *,
    comparison_id: str | None = None,
    lineup: str = "demo",
    mode: str = "arena",
    messages: Sequence[Mapping[str, str]] = QUESTION,
    errored: Sequence[str] = (),
    texts: Mapping[str, str] | None = None,
) -> str:
    """A comparison with one answer per contender, contender i at pane position i; returns its id."""
    fields: dict[str, Any] = {"id": comparison_id} if comparison_id else {}
    record = ComparisonRecord(
        lineup=lineup,
        session_id="sess-1",
        prompt=messages[-1]["content"],
        n_responses=len(contenders),
        mode=mode,
        **fields,
    )
    with db.session() as session:
        add_comparison(session, record)
        for position, contender in enumerate(contenders):
            failed = contender in errored
            add_response(
                session,
                ResponseRecord(
                    comparison_id=record.id,
                    position=position,
                    contender=contender,
                    weights_id=f"org/{contender}",
                    messages=messages,
                    prompt_rendered="",
                    params={"temperature": 0.7},
                    seed=position,
                    text=(texts or {}).get(contender, f"answer of {contender}"),
                    finish_reason="error" if failed else "stop",
                    error="timeout" if failed else None,
                    prompt_tokens=5,
                    completion_tokens=3,
                    duration_s=0.1,
                ),
            )
    return record.id


def rate(db: Database, comparison_id: str, kind: str = "pairwise", **fields: Any) -> str:
    """Store a rating of a stored comparison; returns the rating id."""
    with db.session() as session:
        return add_rating(session, RatingRecord(comparison_id, kind, **fields))


def stored_rating(
    db: Database,
    contenders: Sequence[str],
    kind: str = "pairwise",
    *,
    comparison: Mapping[str, Any] | None = None,
    **rating: Any,
) -> tuple[str, str]:
    """A comparison and its rating in one call; returns (comparison id, rating id)."""
    comparison_id = store_comparison(db, contenders, **(comparison or {}))
    return comparison_id, rate(db, comparison_id, kind, **rating)


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Why is the sky blue?"},
]
# The golden seed: (name, contenders by pane position, comparison fields, rating fields).
GOLDEN = [
    (
        "shuffled",
        ["y", "x"],
        {"messages": CONVERSATION},
        {"choice": "b", "strength": "significantly_better", "blind": True},
    ),
    ("named", ["x", "y"], {"mode": "named"}, {"choice": "a", "strength": "slightly_better"}),
    ("tie", ["x", "y"], {}, {"choice": "tie", "blind": True}),
    ("both_bad", ["x", "y"], {}, {"choice": "both_bad", "blind": True}),
    ("scores", ["x", "y", "z"], {}, {"kind": "scores", "scores": {0: 5, 1: 4, 2: 2}, "blind": True}),
    ("ranking", ["z", "x", "y"], {}, {"kind": "ranking", "ranks": {0: 1, 1: 2, 2: 2}, "blind": True}),
    ("unsafe", ["x", "y"], {}, {"choice": "a", "strength": "better", "unsafe": {0: "insults"}, "blind": True}),
    (
        "errored",
        ["x", "y"],
        {"errored": ["y"], "lineup": "llama2"},
        {"choice": "a", "strength": "better", "blind": True},
    ),
]


def seed_golden(db: Database) -> dict[str, tuple[str, str]]:
    """The eight golden ratings, in this order, with fixed comparison ids ('1' * 32, '2' * 32, ...).

    Returns name -> (comparison id, rating id).
    """
    ids = {}
    for number, (name, contenders, comparison, rating) in enumerate(GOLDEN, 1):
        fields = dict(rating)
        kind = fields.pop("kind", "pairwise")
        ids[name] = stored_rating(
            db, contenders, kind, comparison={"comparison_id": str(number) * 32, **comparison}, **fields
        )
    return ids
