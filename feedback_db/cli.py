"""`python -m feedback_db`: export training data, print the leaderboard, upgrade the schema.

The only place in the package that reads argv and the environment. A bad argument (including a
database URL that cannot be used) prints what was wrong and exits with 2; a failure while running
(a server that does not answer, a disk that is full) exits with 1. Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from .database import Database, open_database, sqlite_url
from .export import FORMATS, ExportOptions
from .leaderboard import DEFAULT_MIN_BATTLES, format_leaderboard, leaderboard_of
from .migrate import current_revision, head_revision, upgrade
from .reading import RatingFilter
from .records import STRENGTHS, parse_moment
from .writers import SUFFIXES, export_to

DEFAULT_DB = Path("data") / "feedback.sqlite3"  # the app's default (--data-dir ./data)


class UsageError(Exception):
    """A bad argument found after parsing; exits with 2."""


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit status."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage and the message
        return int(exit_.code or 0)
    try:
        return args.run(args, stdout, stderr)
    except UsageError as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=stderr)
        return 2
    except (SQLAlchemyError, OSError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{parser.prog} {args.command}: failed: {detail}", file=stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m feedback_db",
        description="Export training data, show the leaderboard, or upgrade the schema of the feedback database.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    export = commands.add_parser("export", help="write training rows (dpo, reward, kto, sft) to JSONL or Parquet")
    _add_db_url(export)
    export.add_argument("--format", required=True, choices=FORMATS, help="which rows to write")
    export.add_argument(
        "--output", required=True, metavar="PATH", help="a .jsonl or .parquet file, or - for JSONL on standard output"
    )
    export.add_argument("--since", type=_moment, metavar="ISO", help="ratings at or after this time (UTC if no offset)")
    export.add_argument("--until", type=_moment, metavar="ISO", help="ratings before this time (UTC if no offset)")
    export.add_argument("--lineup", metavar="NAME", help="only comparisons of this lineup")
    export.add_argument(
        "--contender",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME",
        help="only pairs (answers) of these contenders; may be repeated",
    )
    export.add_argument("--min-strength", choices=STRENGTHS, help="only preferences at least this strong")
    export.add_argument("--blind-only", action="store_true", help="only ratings given before names were shown")
    export.add_argument("--exclude-unsafe", action="store_true", help="leave out answers flagged unsafe")
    export.add_argument(
        "--with-visitor",
        action="store_true",
        help="add each row's visitor key (a salted hash of the asker's address), to find one "
        "visitor's data; left out by default",
    )
    export.add_argument(
        "--include-errors", action="store_true", help="keep answers that failed (left out by default; never SFT rows)"
    )
    export.set_defaults(run=_run_export)
    board = commands.add_parser("leaderboard", help="Bradley-Terry ratings with bootstrap intervals")
    _add_db_url(board)
    board.add_argument("--rounds", type=_count, default=1000, help="bootstrap rounds (default 1000; 0: none)")
    board.add_argument("--all", action="store_true", help="include ratings given with names shown")
    board.add_argument("--lineup", metavar="NAME", help="only comparisons of this lineup")
    board.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    board.add_argument(
        "--min-battles",
        type=_count,
        default=DEFAULT_MIN_BATTLES,
        help=f"battles every contender needs before the ratings stop being preliminary "
        f"(default {DEFAULT_MIN_BATTLES}; 0: never preliminary)",
    )
    board.add_argument("--json", action="store_true", help="print JSON instead of a table")
    board.set_defaults(run=_run_leaderboard)
    upgrade = commands.add_parser("upgrade", help="bring the database schema to the newest revision")
    _add_db_url(upgrade)
    upgrade.set_defaults(run=_run_upgrade)
    return parser


def _add_db_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db-url", metavar="URL", help=f"SQLAlchemy URL (default: env PLAYGROUND_DB_URL, else sqlite:///{DEFAULT_DB})"
    )


def _run_export(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    try:
        options = ExportOptions(
            format=args.format,
            where=RatingFilter(since=args.since, until=args.until, lineup=args.lineup, blind_only=args.blind_only),
            contenders=frozenset(args.contender),
            min_strength=args.min_strength,
            exclude_unsafe=args.exclude_unsafe,
            include_errors=args.include_errors,
            include_visitor=args.with_visitor,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.since and args.until and args.since >= args.until:
        raise UsageError(f"--since {args.since.isoformat()} is not before --until {args.until.isoformat()}")
    if args.output == "-" and hasattr(stdout, "reconfigure"):
        stdout.reconfigure(encoding="utf-8")  # rows keep their non-ASCII text, whatever the locale
    destination = stdout if args.output == "-" else _output_path(args.output)
    database = _open(args.db_url)
    try:
        summary = export_to(database, options, destination)
    finally:
        database.dispose()
    print(summary.line() + ("" if args.output == "-" else f" -> {args.output}"), file=stderr)
    return 0


def _run_leaderboard(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    database = _open(args.db_url)
    try:
        with database.snapshot() as session:
            board = leaderboard_of(
                session,
                blind_only=not args.all,
                lineup=args.lineup,
                rounds=args.rounds,
                seed=args.seed,
                min_battles=args.min_battles,
            )
    finally:
        database.dispose()
    data = asdict(board) | {"preliminary": board.preliminary}
    print(json.dumps(data, indent=2) if args.json else format_leaderboard(board), file=stdout)
    return 0


def _run_upgrade(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    database = _open(args.db_url, migrate=False)
    try:
        before = current_revision(database.engine)
        upgrade(database.engine)
    finally:
        database.dispose()
    print(f"schema revision {before or 'none'} -> {head_revision()} at {database.url}", file=stdout)
    return 0


def _db_url(given: str | None) -> str:
    return given or os.environ.get("PLAYGROUND_DB_URL") or sqlite_url(DEFAULT_DB)


def _open(given: str | None, migrate: bool = True) -> Database:
    """Open the database; a SQLite file must exist already (an export of a typo'd path is an error)."""
    url = _db_url(given)
    try:
        parsed = make_url(url)
        database_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    except Exception:  # noqa: BLE001 - open_database explains bad URLs
        database_file = None
    if database_file not in (None, "", ":memory:") and not Path(database_file).is_file():
        raise UsageError(
            f"there is no database file at {database_file}; pass --db-url with the app's database "
            f"(default sqlite:///{DEFAULT_DB}, relative to the folder you run in)"
        )
    try:
        return open_database(url, migrate=migrate)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _output_path(output: str) -> Path:
    path = Path(output)
    if path.suffix not in SUFFIXES:
        raise UsageError(f"--output {output!r} must end in .jsonl or .parquet (or be - for standard output)")
    if not path.parent.is_dir():
        raise UsageError(f"the folder {path.parent} of --output does not exist; create it first")
    return path


def _moment(text: str) -> datetime:
    try:
        return parse_moment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value
