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
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import make_url, select
from sqlalchemy.exc import SQLAlchemyError

from .agreement import agreement_of, markdown
from .database import Database, open_database, sqlite_url
from .export import AGGREGATES, FORMATS, ExportOptions
from .importing import ImportRefused, import_rows, read_rows
from .leaderboard import DEFAULT_MIN_BATTLES, format_leaderboard, leaderboard_of
from .migrate import current_revision, head_revision, upgrade
from .raters import RaterRefused, invite, list_raters, revoke
from .reading import RatingFilter, set_aside_counts
from .records import RATER_KINDS, STRENGTHS, parse_moment
from .rules import apply_rules, current_rules
from .schema import Rater
from .writers import SUFFIXES, export_to

DEFAULT_DB = Path("data") / "feedback.sqlite3"  # the app's default (--data-dir ./data)
DEFAULT_INVITE_URL = "http://127.0.0.1:7860/"  # the app's default address


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
    export.add_argument(
        "--include-set-aside",
        action="store_true",
        help="keep the ratings set aside (too fast, revoked, ...) and add each row's set_aside reasons; "
        "left out and counted by default",
    )
    export.add_argument(
        "--aggregate",
        choices=AGGREGATES,
        help="majority: one row per comparison (per pair for dpo, reward) that a strict majority of its raters "
        "agree on, with raters and minority counts; default: one row per rating",
    )
    export.add_argument("--summary-json", action="store_true", help="print the summary as JSON instead of a line")
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
    board.add_argument(
        "--include-set-aside", action="store_true", help="count the ratings set aside too (left out by default)"
    )
    board.set_defaults(run=_run_leaderboard)
    upgrade = commands.add_parser("upgrade", help="bring the database schema to the newest revision")
    _add_db_url(upgrade)
    upgrade.set_defaults(run=_run_upgrade)
    _add_raters(commands)
    _add_set_aside(commands)
    _add_agreement(commands)
    _add_import(commands)
    from .release_cli import add_release  # it imports this module's helpers

    add_release(commands)
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
            include_set_aside=args.include_set_aside,
            aggregate=args.aggregate,
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
    if args.summary_json:
        print(json.dumps(summary.as_json() | {"output": args.output}), file=stderr)
    else:
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
                include_set_aside=args.include_set_aside,
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


def _add_agreement(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agreement = commands.add_parser("agreement", help="Krippendorff's alpha over second opinions, per-rater habits")
    _add_db_url(agreement)
    agreement.add_argument("--lineup", metavar="NAME", help="only comparisons of this lineup")
    agreement.add_argument(
        "--include-set-aside", action="store_true", help="keep the ratings set aside (left out by default)"
    )
    agreement.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    agreement.set_defaults(run=_run_agreement)


def _add_import(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imports = commands.add_parser("import", help="store preference rows (TRL's, or an export's) as comparisons")
    imports.add_argument("file", metavar="FILE.jsonl", help="rows with prompt, chosen, rejected (and optional rater)")
    imports.add_argument(
        "--as",
        dest="imported_as",
        choices=("review", "gold"),
        default="ratings",
        help="review: unrated, for the review queue; gold: unrated known-answer items (default: rows are ratings)",
    )
    _add_db_url(imports)
    imports.add_argument("--lineup", metavar="NAME", help="the comparisons' lineup (default: the file's name)")
    imports.set_defaults(run=_run_import)


def _run_agreement(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    database = _open(args.db_url)
    try:
        with database.snapshot() as session:
            report = agreement_of(session, lineup=args.lineup, include_set_aside=args.include_set_aside)
    finally:
        database.dispose()
    stdout.write(json.dumps(asdict(report), indent=2) + "\n" if args.json else markdown(report))
    return 0


def _run_import(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"there is no file at {args.file}; give a JSONL file of preference rows")
    try:
        rows = read_rows(path)  # every line checked before the database is opened
        database = _open(args.db_url)
        try:
            with database.session() as session:  # one transaction: all of the file or nothing
                summary = import_rows(session, rows, source=path.name, imported_as=args.imported_as, lineup=args.lineup)
        finally:
            database.dispose()
    except ImportRefused as e:
        raise UsageError(str(e)) from None
    print(summary.line(), file=stdout)
    return 0


def _add_raters(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raters = commands.add_parser("raters", help="invite, list and revoke raters (names stay in the database)")
    actions = raters.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="invite a rater; prints the invite link, once")
    add.add_argument("name", metavar="NAME", help="who the invite is for (admin only: ratings carry a pseudonym)")
    add.add_argument(
        "--url", default=DEFAULT_INVITE_URL, metavar="BASE_URL", help=f"the app's address ({DEFAULT_INVITE_URL})"
    )
    listing = actions.add_parser("list", help="every rater: pseudonym, kind, name, dates, ratings, invite opened")
    listing.add_argument("--kind", choices=RATER_KINDS, help="only raters of this kind")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    revoking = actions.add_parser("revoke", help="stop a rater's invite and set their ratings aside")
    revoking.add_argument("name", metavar="NAME", help="the name the rater was invited under")
    for action, run in ((add, _run_raters_add), (listing, _run_raters_list), (revoking, _run_raters_revoke)):
        _add_db_url(action)
        action.set_defaults(run=run)


def _add_set_aside(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = commands.add_parser("set-aside", help="apply new rules to the stored ratings; count what they set aside")
    _add_db_url(rules)
    off = "; 'off': no such rule; default: the stored rules' value"
    rules.add_argument(
        "--min-seconds-to-vote",
        type=_threshold,
        metavar="S",
        help=f"set aside votes given sooner than S seconds after the last answer finished{off}",
    )
    rules.add_argument(
        "--min-gold-accuracy",
        type=_threshold,
        metavar="F",
        help=f"set aside every rating of a rater right on less than F (0 to 1) of the known-answer items{off}",
    )
    rules.add_argument("--min-gold-items", type=_count, metavar="N", help="known-answer items rated before judging")
    rules.set_defaults(run=_run_set_aside)


def _run_raters_add(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if not args.url.startswith(("http://", "https://")) or "?" in args.url or "#" in args.url:
        raise UsageError(f"--url {args.url!r} must be the app's address, like {DEFAULT_INVITE_URL}, with no query")
    database = _open(args.db_url)
    try:
        with database.session() as session:
            rater, secret = invite(session, args.name)
    except RaterRefused as e:
        raise UsageError(str(e)) from None
    finally:
        database.dispose()
    print(f"invited rater {rater.id}; send this link to that person:", file=stdout)
    print(f"{args.url}?invite={secret}", file=stdout)
    print("It is shown this once: only its hash is stored. The first browser to open it keeps it.", file=stdout)
    return 0


def _run_raters_list(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    database = _open(args.db_url)
    try:
        with database.snapshot() as session:
            found = [r for r in list_raters(session) if args.kind in (None, r.kind)]
    finally:
        database.dispose()
    rows = [
        {
            "rater": r.id,
            "kind": r.kind,
            "name": r.name,
            "created_at": r.created_at.isoformat(timespec="seconds"),
            "revoked_at": r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else None,
            "ratings": r.ratings,
            "invite_opened": r.claimed if r.kind == "invited" else None,  # only invites are opened
        }
        for r in found
    ]
    if args.json:
        print(json.dumps(rows, indent=2), file=stdout)
        return 0
    shown = {True: "yes", False: "no", None: "-"}
    table = [["rater", "kind", "name", "created", "revoked", "ratings", "invite opened"]] + [
        [r["rater"], r["kind"], r["name"] or "-", r["created_at"], r["revoked_at"] or "-", str(r["ratings"])]
        + [shown[r["invite_opened"]]]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip(), file=stdout)
    return 0


def _run_raters_revoke(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    database = _open(args.db_url)
    try:
        with database.session() as session:
            touched = revoke(session, args.name)
            pseudonym = session.scalar(select(Rater.id).where(Rater.name == args.name))
    except RaterRefused as e:
        raise UsageError(str(e)) from None
    finally:
        database.dispose()
    ratings = f"{touched} rating{'' if touched == 1 else 's'}"
    print(f"revoked rater {pseudonym}: its invite no longer works; {ratings} set aside as revoked", file=stdout)
    return 0


def _run_set_aside(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    def given(value: float | str | None, stored: float | None) -> float | None:
        return stored if value is None else None if value == "off" else float(value)

    database = _open(args.db_url)
    try:
        with database.session() as session:
            stored = current_rules(session)
            rules = replace(
                stored,  # the identity words stay as the app stored them
                min_seconds_to_vote=given(args.min_seconds_to_vote, stored.min_seconds_to_vote),
                min_gold_accuracy=given(args.min_gold_accuracy, stored.min_gold_accuracy),
                min_gold_items=stored.min_gold_items if args.min_gold_items is None else args.min_gold_items,
            )
            recomputed = apply_rules(session, rules)
            total, counts = set_aside_counts(session)
    except ValueError as e:
        raise UsageError(str(e)) from None
    finally:
        database.dispose()
    shown = {k: v for k, v in rules.as_json().items() if k != "identity_words"}
    words = sum(len(ws) for ws in rules.identity_words.values())
    print(f"rules: {json.dumps(shown)}, {words} identity words", file=stdout)
    print(f"recomputed {recomputed} ratings" if recomputed else "these rules were in force already", file=stdout)
    print(f"{counts.line() or 'no ratings set aside'} (of {total} ratings)", file=stdout)
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


def _threshold(text: str) -> float | str:
    if text.strip().lower() == "off":
        return "off"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (or 'off')") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value
