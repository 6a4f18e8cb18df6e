"""Side-by-side chat model playground: reads argv and the environment, builds the app, serves it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Mapping, Sequence

from models.embedded import default_cache_dir
from models.lineups import lineup_names
from models.loading import DTYPES, LoadOptions
from playground.arena import ArenaSampler, parse_avoid, parse_weights
from playground.errors import SettingsError
from playground.raters import DEFAULT_TERMS, RATER_MODES
from playground.server import SPACE_STORAGE, STARTUP_ERRORS, Settings, create_app, writable_dir

MIN_TOKEN_CHARS = 16
# The hosted profile's per-visitor limits: a person comparing by hand asks a few questions a minute.
HOSTED_PER_MINUTE, HOSTED_PER_DAY = 6, 200
SPACE_FRAMERS = ("https://huggingface.co",)
# One comparison running and the next one waiting: more from one visitor at once is a flood.
HOSTED_IN_FLIGHT = 2


def parse_max_memory(text: str | None) -> dict[int | str, str] | None:
    """'0=20GiB,1=20GiB,cpu=64GiB' -> {0: '20GiB', 1: '20GiB', 'cpu': '64GiB'}."""
    if not text:
        return None
    limits: dict[int | str, str] = {}
    for part in text.split(","):
        device, sep, amount = part.partition("=")
        if not sep or not amount.strip():
            raise argparse.ArgumentTypeError(f"--max-memory part {part!r} should look like 0=20GiB or cpu=64GiB")
        device = device.strip()
        limits[int(device) if device.isdigit() else device] = amount.strip()
    return limits


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--lineup",
        default=env.get("PLAYGROUND_LINEUP", "demo"),
        help=f"named lineup: {', '.join(lineup_names())} (env PLAYGROUND_LINEUP; default demo)",
    )
    parser.add_argument(
        "--lineup-file",
        type=Path,
        default=env.get("PLAYGROUND_LINEUP_FILE"),
        metavar="FILE.toml",
        help="a lineup file: local weights and OpenAI-compatible servers side by side (see "
        "models/lineups/ and examples/); replaces --lineup (env PLAYGROUND_LINEUP_FILE)",
    )
    parser.add_argument(
        "--allow-unreachable",
        action="store_true",
        help="start even if a remote contender's server is down or lacks its model; its pane "
        "says it is unavailable until the server answers",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="REF",
        help="ad-hoc contender, repeatable: a Hub id (org/name[@revision]), a local folder "
        "or a .gguf file; replaces --lineup",
    )
    # No defaults here: settings_from tells a value the person gave from the profile's (--hosted).
    parser.add_argument(
        "--host",
        default=None,
        help="address to serve on (env GRADIO_SERVER_NAME; default 127.0.0.1, 0.0.0.0 with --hosted)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (env GRADIO_SERVER_PORT; default 7860; with --hosted $PORT first)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env["PLAYGROUND_DATA_DIR"]) if env.get("PLAYGROUND_DATA_DIR") else None,
        help="folder of the SQLite feedback database (env PLAYGROUND_DATA_DIR; default ./data, or /data on "
        "a Space with persistent storage)",
    )
    parser.add_argument(
        "--db-url",
        default=env.get("PLAYGROUND_DB_URL"),
        help="any SQLAlchemy URL instead of the SQLite file (env PLAYGROUND_DB_URL)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the embedded model is converted to safetensors (env "
        "PLAYGROUND_CACHE_DIR; default ~/.cache/llm-playground)",
    )
    parser.add_argument(
        "--device-map", default="auto", help="from_pretrained device_map: auto, cpu, cuda:0, balanced… (default auto)"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPES],
        help="weights dtype; auto: the checkpoint's on a GPU, bfloat16 on a CPU",
    )
    parser.add_argument(
        "--max-memory",
        type=parse_max_memory,
        default=None,
        help="per-device memory limits for sharding, e.g. 0=20GiB,1=20GiB,cpu=64GiB",
    )
    parser.add_argument(
        "--mode",
        choices=["named", "arena"],
        default=env.get("PLAYGROUND_MODE", "named"),
        help="named: every contender side by side with names; arena: a sampled pair, names "
        "hidden until the vote (env PLAYGROUND_MODE; default named)",
    )
    parser.add_argument("--arena-size", type=int, default=2, help="answers shown per arena comparison (default 2)")
    parser.add_argument(
        "--arena-weights",
        default=None,
        metavar="NAME=W,...",
        help="arena sampling weight per contender, e.g. 'Llama-2-70B-chat=2' (default 1 each)",
    )
    parser.add_argument(
        "--arena-avoid",
        default=None,
        metavar="NAME:OTHER,...",
        help="pairs of contenders never drawn together in the arena",
    )
    parser.add_argument(
        "--history",
        choices=["own", "shared"],
        default=None,
        help="later turns: 'shared' continues every pane from the answer the vote preferred "
        "(pairs that train), 'own' lets each pane keep its own answers (default: shared "
        "in arena mode, own in named mode)",
    )
    parser.add_argument(
        "--admin",
        action="store_true",
        help="add the data tab (exports for training); needs PLAYGROUND_ADMIN_TOKEN, at least "
        f"{MIN_TOKEN_CHARS} characters, which every export request must carry",
    )
    parser.add_argument(
        "--leaderboard-rounds",
        type=int,
        default=1000,
        help="bootstrap rounds for the leaderboard's 95%% intervals (default 1000)",
    )
    parser.add_argument(
        "--leaderboard-min-battles",
        type=int,
        default=20,
        help="battles every contender needs before the leaderboard stops calling its ratings preliminary (default 20)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="comparisons generated at once across all visitors; the rest wait in the queue "
        "(default: as many as the engines' KV caches hold)",
    )
    parser.add_argument(
        "--kv-cache-gib",
        type=float,
        default=None,
        help="KV cache per model on one device, in GiB (default: from free memory)",
    )
    parser.add_argument(
        "--hosted",
        action="store_true",
        default=env.get("PLAYGROUND_HOSTED", "") in ("1", "true"),
        help="public demo profile: binds 0.0.0.0 on $PORT (or GRADIO_SERVER_PORT), trusts the "
        "proxy's X-Forwarded-For, and limits each visitor to "
        f"{HOSTED_PER_MINUTE} comparisons a minute and {HOSTED_PER_DAY} a day unless the "
        "limit options say otherwise (env PLAYGROUND_HOSTED=1)",
    )
    parser.add_argument(
        "--trusted-proxy",
        type=int,
        nargs="?",
        const=1,
        default=None,
        metavar="N",
        help="the app sits behind N reverse proxies (default 1) that each append to "
        "X-Forwarded-For: the visitor is the hop the first of them added, N-th from the "
        "right; hops a client wrote are never trusted (1 with --hosted; without it the "
        "header is ignored)",
    )
    parser.add_argument(
        "--limit-per-minute",
        type=int,
        default=None,
        metavar="N",
        help=f"comparisons each visitor may start per minute (default: no limit; {HOSTED_PER_MINUTE} with --hosted)",
    )
    parser.add_argument(
        "--limit-per-day",
        type=int,
        default=None,
        metavar="N",
        help=f"comparisons each visitor may start per day (default: no limit; {HOSTED_PER_DAY} with --hosted)",
    )
    parser.add_argument(
        "--limit-in-flight",
        type=int,
        default=None,
        metavar="N",
        help="comparisons each visitor may have running or waiting at once (default: no limit; "
        f"{HOSTED_IN_FLIGHT} with --hosted)",
    )
    parser.add_argument(
        "--min-tokens-per-s",
        type=float,
        default=env.get("PLAYGROUND_MIN_TOKENS_PER_S", "5"),
        metavar="N",
        help="admit a comparison only while every answer streaming from local weights keeps at least N "
        "tokens/s (measured live); the rest wait, told their place and the estimated wait "
        "(env PLAYGROUND_MIN_TOKENS_PER_S; default 5, about reading speed; 0: no speed check)",
    )
    parser.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="once serving, measure each local engine's speed at 1, 2, 4... comparisons' streams while "
        "nobody's comparison runs, so admission knows what a second comparison costs before a crowd "
        "comes (default on; only with --min-tokens-per-s above 0)",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=None,
        help="comparisons that may wait for a turn; more get 'busy, try again' "
        "(default: 4 per comparison that runs, plus 16)",
    )
    parser.add_argument(
        "--max-prompt-chars",
        type=int,
        default=env.get("PLAYGROUND_MAX_PROMPT_CHARS", "8000"),
        metavar="N",
        help="the longest prompt, and system prompt, a page may send, in characters; a longer one is "
        "refused with both numbers (env PLAYGROUND_MAX_PROMPT_CHARS; default 8000)",
    )
    _rater_options(parser, env)
    return parser


def _rater_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Who rates, what they accept and read, the review queue, and which votes are set aside."""
    parser.add_argument(
        "--raters",
        choices=RATER_MODES,
        default=env.get("PLAYGROUND_RATERS", "open"),
        help="open: every browser session rates; invited: only people holding an invite link "
        "(python -m feedback_db raters add NAME), others may still chat; hub: Hugging Face accounts, "
        "signed in on a Space (env PLAYGROUND_RATERS; default open)",
    )
    parser.add_argument(
        "--terms",
        type=Path,
        default=env.get("PLAYGROUND_TERMS"),
        metavar="FILE.md",
        help="terms every rater accepts once before the first question; the acceptance and the file's "
        "sha256 are stored (env PLAYGROUND_TERMS; --hosted ships default terms)",
    )
    parser.add_argument(
        "--guidelines",
        type=Path,
        default=env.get("PLAYGROUND_GUIDELINES"),
        metavar="FILE.md",
        help="rating guidelines, a tab raters can read at any time; each rating stores their sha256",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=3,
        metavar="K",
        help="the Review tab brings each stored comparison up to K ratings first (default 3)",
    )
    parser.add_argument(
        "--gold-rate",
        type=float,
        default=0.1,
        metavar="F",
        help="share of review items that are known-answer items, when any are imported (default 0.1)",
    )
    parser.add_argument(
        "--min-seconds-to-vote",
        type=float,
        default=None,
        metavar="S",
        help="set aside votes given sooner than S seconds after the last answer finished (too_fast)",
    )
    parser.add_argument(
        "--min-gold-accuracy",
        type=float,
        default=None,
        metavar="F",
        help="set aside every rating of a rater whose accuracy on 5 or more gold items is below F (gold)",
    )


def admin_token(wanted: bool, env: Mapping[str, str]) -> str | None:
    """The admin token when --admin asks for the data tab; refuses a missing or short one."""
    if not wanted:
        return None
    token = env.get("PLAYGROUND_ADMIN_TOKEN", "")
    if len(token) < MIN_TOKEN_CHARS:
        raise SettingsError(
            f"--admin needs PLAYGROUND_ADMIN_TOKEN set to a secret of at least {MIN_TOKEN_CHARS} "
            "characters (e.g. export PLAYGROUND_ADMIN_TOKEN=$(openssl rand -hex 24)); "
            "the data tab is not started without it"
        )
    return token


def prompt_limit(chars: int) -> int:
    """--max-prompt-chars, refused at start when no prompt could pass it."""
    if chars < 1:
        raise SettingsError(
            f"--max-prompt-chars must be 1 or more, not {chars}: it is the longest prompt a page may send"
        )
    return chars


def settings_from(argv: Sequence[str], env: Mapping[str, str], space_storage: Path = SPACE_STORAGE) -> Settings:
    """`space_storage`: where a Space mounts persistent storage (tests point it elsewhere)."""
    args = build_parser(env).parse_args(argv)
    # On a Space, its persistent storage (when turned on) outlives restarts; the container's disk does not.
    on_space_storage = env.get("SYSTEM") == "spaces" and writable_dir(space_storage)
    cache_dir = args.cache_dir or default_cache_dir(env)
    # Hosted (a Space or a container): every interface, on the port the platform gives, unless given.
    host = (
        args.host
        if args.host is not None
        else ("0.0.0.0" if args.hosted else env.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    )
    port = (
        args.port
        if args.port is not None
        else int((env.get("PORT") if args.hosted else None) or env.get("GRADIO_SERVER_PORT") or 7860)
    )
    return Settings(
        lineup=args.lineup,
        lineup_file=Path(args.lineup_file) if args.lineup_file else None,
        allow_unreachable=args.allow_unreachable,
        models=tuple(args.model),
        host=host,
        port=port,
        data_dir=args.data_dir or (space_storage if on_space_storage else Path("data")),
        db_url=args.db_url,
        load=LoadOptions(device_map=args.device_map, dtype=args.dtype, max_memory=args.max_memory, cache_dir=cache_dir),
        mode=args.mode,
        history=args.history,
        max_concurrent=args.max_concurrent,
        kv_cache_gib=args.kv_cache_gib,
        queue_size=args.queue_size,
        max_prompt_chars=prompt_limit(args.max_prompt_chars),
        min_tokens_per_s=args.min_tokens_per_s,
        calibrate=args.calibrate,
        leaderboard_rounds=args.leaderboard_rounds,
        leaderboard_min_battles=args.leaderboard_min_battles,
        admin_token=admin_token(args.admin, env),
        trusted_proxies=args.trusted_proxy if args.trusted_proxy is not None else (1 if args.hosted else 0),
        visitor_salt=env.get("PLAYGROUND_VISITOR_SALT"),
        # A Space shows the app in a frame on huggingface.co; anywhere else no site may frame it.
        framed_by=SPACE_FRAMERS if env.get("SYSTEM") == "spaces" else (),
        limit_in_flight=args.limit_in_flight
        if args.limit_in_flight is not None
        else (HOSTED_IN_FLIGHT if args.hosted else None),
        limit_per_minute=args.limit_per_minute
        if args.limit_per_minute is not None
        else (HOSTED_PER_MINUTE if args.hosted else None),
        limit_per_day=args.limit_per_day
        if args.limit_per_day is not None
        else (HOSTED_PER_DAY if args.hosted else None),
        arena=ArenaSampler(
            weights=parse_weights(args.arena_weights), avoid=parse_avoid(args.arena_avoid), size=args.arena_size
        ),
        raters=args.raters,
        terms=args.terms if args.terms is not None else (DEFAULT_TERMS if args.hosted else None),
        guidelines=args.guidelines,
        overlap=args.overlap,
        gold_rate=args.gold_rate,
        min_seconds_to_vote=args.min_seconds_to_vote,
        min_gold_accuracy=args.min_gold_accuracy,
        on_a_space=env.get("SYSTEM") == "spaces",
        space_oauth=env.get("SYSTEM") == "spaces" and bool(env.get("OAUTH_CLIENT_ID")),
        space_storage=space_storage,
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        settings = settings_from(sys.argv[1:] if argv is None else argv, os.environ if env is None else env)
        app = create_app(settings)
    except STARTUP_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"serving on http://{settings.host}:{settings.port}")
    signal.signal(signal.SIGTERM, lambda number, frame: _stop_cleanly(app.core))
    app.launch()
    return 0


def _stop_cleanly(core) -> None:
    """SIGTERM (a platform restarting the app): end the running answers as stopped, stored as they
    stand, then let the server close; what a SIGKILL leaves is marked at the next start instead."""
    cut = core.shutdown()
    print(f"SIGTERM: {cut} running comparisons stopped and stored; closing", flush=True)
    raise KeyboardInterrupt  # Gradio's serving loop closes the server on it


if __name__ == "__main__":
    sys.exit(main())
