"""The feedback database: comparisons, responses and ratings with full provenance, for RLHF.

Imports SQLAlchemy, Alembic, numpy and pyarrow only; never torch, transformers, gradio, `models` or
`playground`.

    database = open_database(sqlite_url(Path("data/feedback.sqlite3")))   # migrates to the newest schema
    with database.session() as session:          # one transaction per user action
        add_comparison(session, ComparisonRecord(lineup="demo", session_id=..., prompt=..., n_responses=2))
    with database.snapshot() as session:         # reads that never block the writers
        board = leaderboard_of(session)
"""

from .agreement import AgreementReport, agreement_of, krippendorff_alpha
from .database import Database, DatabaseUnavailable, open_database, sqlite_url
from .export import FORMATS, ExportOptions, ExportSummary, Format, iter_rows
from .importing import ImportRefused, ImportSummary, import_rows, read_rows
from .leaderboard import Battle, Leaderboard, Row, build_leaderboard, format_leaderboard, leaderboard_of
from .migrate import SchemaError, current_revision, head_revision
from .pairs import STRENGTH_MARGIN, Decomposition, Pair, decompose
from .reading import RatedAnswer, RatedComparison, RatingFilter, SetAside, iter_rated, iter_rated_by_comparison
from .records import (
    Choice,
    ComparisonRecord,
    FinishReason,
    History,
    Mode,
    RatingKind,
    RatingRecord,
    ResponseRecord,
    Strength,
    new_id,
    storable,
)
from .schema import AnswerJudgement, Base, Comparison, Rating, Response
from .store import (
    LimitReached,
    RatingRefused,
    add_comparison,
    add_comparison_within,
    add_rating,
    add_response,
    check_visitor_limits,
    comparisons_by_visitor,
    count_rows,
    delete_session_data,
    get_comparison,
    mark_interrupted,
    rating_of,
    responses_of,
    session_data,
)
from .writers import export_to

__all__ = [
    "FORMATS",
    "STRENGTH_MARGIN",
    "AnswerJudgement",
    "Base",
    "AgreementReport",
    "Battle",
    "ImportRefused",
    "ImportSummary",
    "Choice",
    "Comparison",
    "ComparisonRecord",
    "Database",
    "DatabaseUnavailable",
    "LimitReached",
    "Decomposition",
    "ExportOptions",
    "ExportSummary",
    "FinishReason",
    "Format",
    "History",
    "Leaderboard",
    "Mode",
    "Pair",
    "RatedAnswer",
    "RatedComparison",
    "Rating",
    "RatingFilter",
    "SetAside",
    "RatingKind",
    "RatingRecord",
    "RatingRefused",
    "Response",
    "ResponseRecord",
    "Row",
    "SchemaError",
    "Strength",
    "add_comparison",
    "agreement_of",
    "import_rows",
    "krippendorff_alpha",
    "read_rows",
    "add_comparison_within",
    "check_visitor_limits",
    "add_rating",
    "add_response",
    "build_leaderboard",
    "comparisons_by_visitor",
    "count_rows",
    "delete_session_data",
    "session_data",
    "mark_interrupted",
    "storable",
    "current_revision",
    "decompose",
    "export_to",
    "format_leaderboard",
    "get_comparison",
    "head_revision",
    "iter_rated",
    "iter_rated_by_comparison",
    "iter_rows",
    "leaderboard_of",
    "new_id",
    "open_database",
    "rating_of",
    "responses_of",
    "sqlite_url",
]
