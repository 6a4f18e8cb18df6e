"""`python -m models prompt|plan`: inspect what each contender receives and where it would live."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from models.embedded import default_cache_dir
from models.lineups import adhoc_lineup, get_lineup, lineup_from_file, lineup_names
from models.prompt_format import PromptError, llama2_prompt_text, validate_messages
from models.specs import LineupSpec


def _lineup(args: argparse.Namespace) -> LineupSpec:
    if args.model:
        return adhoc_lineup(args.model)
    return lineup_from_file(args.lineup_file) if args.lineup_file else get_lineup(args.lineup)


def _read_messages(path: Path) -> list[dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError(f"--messages file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise PromptError(f"--messages file {path} is not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise PromptError(f'--messages file {path} must hold a JSON list of {{"role", "content"}} objects')
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
        if contender.endpoint and contender.endpoint.prompt == "server":
            text = (
                f"(rendered by the chat template of the server at {contender.endpoint.url}; these messages "
                f"are sent as they are)\n{json.dumps(validate_messages(full), indent=2, ensure_ascii=False)}"
            )
        elif contender.prompt_format == "llama2":
            text = llama2_prompt_text(validate_messages(full))  # needs no tokenizer: works offline
        else:
            if streamer is None:  # chat templates need the tokenizer, so load the lineup's weights
                from models.loading import LoadOptions, load_lineup
                from models.local import LocalStreamer

                options = LoadOptions(device_map="cpu", cache_dir=default_cache_dir(os.environ))
                loaded = load_lineup(lineup, options, log=lambda m: print(m, file=sys.stderr))
                streamer = LocalStreamer(loaded)
            text = streamer.render(contender, validate_messages(full)).text
        print(f"===== {contender.name} ({contender.prompt_format}) =====")
        print(text)
    return 0


def plan_command(args: argparse.Namespace) -> int:
    """Print where every model of the lineup would live, on the visible or a hypothetical machine."""
    from models.placement import (
        format_plan,
        model_requests,
        parse_gpus,
        parse_size,
        plan_lineup,
        plan_to_dict,
        visible_gpus,
    )

    lineup = _lineup(args)
    if not lineup.weights:
        print(f"lineup {lineup.name!r} has no local weights: every contender is on a server, nothing to place")
        return 0
    gpus = parse_gpus(args.gpus) if args.gpus else visible_gpus()
    plan = plan_lineup(
        model_requests(lineup),
        gpus,
        batch_size=args.batch_size,
        cpu_bytes=parse_size(args.cpu_memory) if args.cpu_memory else None,
        allow_quantization=not args.no_quantization,
        allow_offload=not args.no_offload,
    )
    print(json.dumps(plan_to_dict(plan), indent=2) if args.json else format_plan(plan))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prompt = commands.add_parser("prompt", help="print the exact prompt each contender would receive")
    prompt.add_argument("--lineup", default="demo", help=f"one of: {', '.join(lineup_names())}")
    prompt.add_argument("--lineup-file", type=Path, default=None, metavar="FILE.toml", help="a lineup file")
    prompt.add_argument("--model", action="append", default=[], metavar="REF", help="ad-hoc contender (repeatable)")
    prompt.add_argument(
        "--messages", type=Path, required=True, help="JSON file: a list of role/content messages, system first if any"
    )
    prompt.set_defaults(run=prompt_command)
    plan = commands.add_parser("plan", help="plan GPU placement for a lineup (no GPU or download needed)")
    plan.add_argument("--lineup", default="demo", help=f"one of: {', '.join(lineup_names())}")
    plan.add_argument(
        "--lineup-file",
        type=Path,
        default=None,
        metavar="FILE.toml",
        help="a lineup file (its remote contenders need no placement)",
    )
    plan.add_argument("--model", action="append", default=[], metavar="REF", help="ad-hoc contender (repeatable)")
    plan.add_argument(
        "--gpus",
        default=None,
        help="a hypothetical machine, e.g. 4x80GiB, 8x24GiB or 2x80GiB,1x48GiB (default: the GPUs this machine has)",
    )
    plan.add_argument(
        "--cpu-memory",
        default=None,
        help="RAM for CPU placement and offload, e.g. 256GiB (default: what this machine has free)",
    )
    plan.add_argument("--batch-size", type=int, default=1, help="sequences generated at once per model (KV cache)")
    plan.add_argument("--no-quantization", action="store_true", help="never fall back to 8-bit or 4-bit")
    plan.add_argument("--no-offload", action="store_true", help="never fall back to CPU or disk offload")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(run=plan_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (PromptError, KeyError, ValueError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
