"""The feedback database: comparisons, responses and ratings with full provenance, for RLHF.

Imports SQLAlchemy only; never torch, transformers, gradio, `models` or `playground`.

    database = open_database(sqlite_url(Path("data/feedback.sqlite3")))
    with database.session() as session:          # one transaction per user action
        add_comparison(session, ComparisonRecord(lineup="demo", session_id=..., prompt=..., n_responses=2))
"""

from .database import Database, open_database, sqlite_url
from .records import (
    Choice,
    ComparisonRecord,
    FinishReason,
    Mode,
    RatingKind,
    RatingRecord,
    ResponseRecord,
    Strength,
    new_id,
)
from .schema import AnswerJudgement, Base, Comparison, Rating, Response
from .store import (
    RatingRefused,
    add_comparison,
    add_rating,
    add_response,
    count_rows,
    get_comparison,
    rating_of,
    responses_of,
)

__all__ = [
    "AnswerJudgement",
    "Base",
    "Choice",
    "Comparison",
    "ComparisonRecord",
    "Database",
    "FinishReason",
    "Mode",
    "Rating",
    "RatingKind",
    "RatingRecord",
    "RatingRefused",
    "Response",
    "ResponseRecord",
    "Strength",
    "add_comparison",
    "add_rating",
    "add_response",
    "count_rows",
    "get_comparison",
    "new_id",
    "open_database",
    "rating_of",
    "responses_of",
    "sqlite_url",
]
