"""`python -m feedback_db release`: the command that writes a release folder (release.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from .cli import UsageError, _add_db_url, _moment, _open
from .release import ReleaseOptions, release


def add_release(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "release", help="write a folder to publish on the Hub: Parquet configs, a dataset card, a manifest"
    )
    _add_db_url(parser)
    parser.add_argument("--output", required=True, metavar="DIR", help="the release folder (made if missing)")
    parser.add_argument(
        "--license", required=True, help="the dataset's licence, e.g. cc-by-4.0 (no default: the team chooses)"
    )
    parser.add_argument("--since", type=_moment, metavar="ISO", help="comparisons at or after this time")
    parser.add_argument("--until", type=_moment, metavar="ISO", help="comparisons before this time")
    parser.add_argument("--blind-only", action="store_true", help="only ratings given with names hidden")
    parser.add_argument("--include-set-aside", action="store_true", help="keep ratings set aside, with their reasons")
    parser.add_argument("--scrub", action="store_true", help="replace personal data with typed placeholders")
    parser.add_argument(
        "--salt",
        metavar="SECRET",
        help="key of the rater pseudonyms; give a past release's to let the two be joined on raters "
        "(default: a new random one)",
    )
    parser.add_argument("--previous", metavar="OLD_DIR", help="an earlier release: say what was withdrawn and added")
    parser.add_argument("--name", default="Chat model comparisons", help="the dataset's pretty_name")
    parser.add_argument("--terms", metavar="FILE.md", help="the app's terms file: its text goes in the card")
    parser.add_argument("--guidelines", metavar="FILE.md", help="the app's guidelines file: its text goes in the card")
    parser.set_defaults(run=run_release)


def run_release(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if args.since and args.until and args.since >= args.until:
        raise UsageError(f"--since {args.since.isoformat()} is not before --until {args.until.isoformat()}")
    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        raise UsageError(f"--output {output} is not empty; give a new folder (a release is written whole)")
    try:
        options = ReleaseOptions(
            license=args.license,
            since=args.since,
            until=args.until,
            blind_only=args.blind_only,
            include_set_aside=args.include_set_aside,
            scrub=args.scrub,
            pretty_name=args.name,
            terms_text=_read(args.terms, "--terms"),
            guidelines_text=_read(args.guidelines, "--guidelines"),
            **({"salt": args.salt} if args.salt else {}),
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    database = _open(args.db_url)
    try:
        done = release(database, output, options, Path(args.previous) if args.previous else None)
    except ValueError as error:
        raise UsageError(str(error)) from None
    finally:
        database.dispose()
    counts = ", ".join(f"{n} {config}" for config, n in done.counts.items())
    print(f"released to {output}: {counts}; digest {done.digest}", file=stdout)
    if options.scrub:
        found = ", ".join(f"{n} {kind}" for kind, n in done.scrubbed.most_common()) or "no personal data found"
        print(f"scrubbed: {found}", file=stdout)
    if done.set_aside:
        print(f"set aside and left out: {dict(done.set_aside.most_common())}", file=stdout)
    return 0


def _read(path: str | None, option: str) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{option} {path}: cannot be read ({error})") from None
