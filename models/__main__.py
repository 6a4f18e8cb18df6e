"""`python -m models prompt|plan`: inspect what each contender receives and where it would live."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from models.prompt_format import PromptError, llama2_prompt_text, validate_messages
from models.registry import adhoc_lineup, get_lineup, lineup_names
from models.specs import LineupSpec


def _lineup(args: argparse.Namespace) -> LineupSpec:
    return adhoc_lineup(args.model) if args.model else get_lineup(args.lineup)


def _read_messages(path: Path) -> list[dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError(f"--messages file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise PromptError(f"--messages file {path} is not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise PromptError(f"--messages file {path} must hold a JSON list of {{\"role\", \"content\"}} objects")
    return data


def prompt_command(args: argparse.Namespace) -> int:
    """Print, per contender, the exact prompt text it would receive."""
    lineup = _lineup(args)
    messages = _read_messages(args.messages)
    streamer = None
    for contender in lineup.contenders:
        full = messages
        if contender.system_prompt and not (messages and messages[0].get("role") == "system"):
            full = [{"role": "system", "content": contender.system_prompt}, *messages]
        if contender.prompt_format == "llama2":
            text = llama2_prompt_text(validate_messages(full))  # needs no tokenizer: works offline
        else:
            if streamer is None:  # chat templates need the tokenizer, so load the lineup's weights
                from models.generation import LocalStreamer
                from models.loading import LoadOptions, load_lineup

                loaded = load_lineup(lineup, LoadOptions(device_map="cpu"), log=lambda m: print(m, file=sys.stderr))
                streamer = LocalStreamer(loaded)
            text = streamer.render(contender, validate_messages(full)).text
        print(f"===== {contender.name} ({contender.prompt_format}) =====")
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prompt = commands.add_parser("prompt", help="print the exact prompt each contender would receive")
    prompt.add_argument("--lineup", default="demo", help=f"one of: {', '.join(lineup_names())}")
    prompt.add_argument("--model", action="append", default=[], metavar="REF", help="ad-hoc contender (repeatable)")
    prompt.add_argument("--messages", type=Path, required=True,
                        help="JSON file: a list of role/content messages, system first if any")
    prompt.set_defaults(run=prompt_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (PromptError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
