"""Assembling the app from explicit settings: lineup, weights, database, page."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

from starlette.middleware import Middleware

from feedback_db import Database, DatabaseUnavailable, SchemaError, mark_interrupted, open_database, sqlite_url
from feedback_db.rules import Rules, apply_rules, current_rules
from models.engines import describe_engine
from models.lineups import LineupFileError, adhoc_lineup, get_lineup, lineup_from_file
from models.loading import LoadOptions, WeightsNotFound, check_lineup, load_lineup, load_tokenizer, planned_options
from models.local import LocalStreamer, Streamer
from models.placement import ConfigNotFoundError, PlacementError, format_plan
from models.remote import RemoteStreamer
from models.specs import ContenderSpec, LineupSpec, SpecError, WeightsSpec
from models.streaming import RoutedStreamer, StreamFailure
from playground.admission import Admission
from playground.arena import ArenaSampler
from playground.calibration import probes_for, start_calibration
from playground.comparison import MAX_PROMPT_CHARS, Playground
from playground.conversations import UNASKED_TTL_S, ConversationStore
from playground.errors import SettingsError
from playground.guard import Guard
from playground.metrics import MetricsAccess
from playground.page_script import HEAD
from playground.raters import Document, RaterPolicy
from playground.ui import CSS, BuiltPage, build_ui
from playground.ui_sessions import Sweeper, lean_sessions
from playground.view import models_markdown, servers_markdown
from playground.visitors import VisitorPolicy, load_salt

PROMPT_BUDGET = 512  # tokens of prompt and history a stream is counted with when sizing concurrency
SPACE_STORAGE = Path("/data")  # where a Space mounts its persistent storage, when it has some
LOST_AT_RESTART = "ratings are lost at each restart: turn on persistent storage or set PLAYGROUND_DB_URL"
DEFAULT_CONCURRENT = 4

if TYPE_CHECKING:  # only playground.ui* imports gradio at run time
    import gradio as gr


@dataclass(frozen=True)
class Settings:
    """Everything the app needs; app.py fills it from argv and the environment."""

    lineup: str = "demo"
    lineup_file: Path | None = None  # a lineup file; replaces --lineup
    models: tuple[str, ...] = ()  # --model references; when given they replace the lineup
    allow_unreachable: bool = False  # start even if a remote contender's server is not ready
    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = Path("data")
    db_url: str | None = None  # default: a SQLite file in data_dir
    load: LoadOptions = field(default_factory=LoadOptions)
    mode: Literal["named", "arena"] = "named"
    arena: ArenaSampler = field(default_factory=ArenaSampler)
    # None: "shared" in arena mode (every later turn continues from the preferred answer), else "own".
    history: Literal["own", "shared"] | None = None
    max_concurrent: int | None = None  # None: as many comparisons as the engines' KV caches hold
    kv_cache_gib: float | None = None  # per engine on one device; None: sized from free memory
    queue_size: int | None = None  # comparisons that may wait; None: 4 per one that runs
    min_tokens_per_s: float = 5.0  # admission: every local answer streaming keeps this speed (0: no check)
    calibrate: bool = True  # once serving, measure the local engines' step times (playground/calibration.py)
    leaderboard_rounds: int = 1000
    leaderboard_min_battles: int = 20
    admin_token: str | None = None  # the data tab exists only with a token
    # Visitors: keyed by a salted hash of their address (the salt from PLAYGROUND_VISITOR_SALT, else
    # kept in data_dir); comparisons each may start per minute and per day (None: no limit).
    trusted_proxies: int = 0  # reverse proxies in front that append to X-Forwarded-For (0: ignore it)
    visitor_salt: str | None = None
    limit_per_minute: int | None = None
    limit_per_day: int | None = None
    limit_in_flight: int | None = None  # comparisons one visitor may have running or waiting at once
    framed_by: tuple[str, ...] = ()  # origins that may show the page in a frame (a Space's); none by default
    unasked_ttl_s: float = UNASKED_TTL_S  # a page that never asked is forgotten after this long idle
    max_prompt_chars: int = MAX_PROMPT_CHARS  # the longest prompt (and system prompt) a page may send
    # Raters (playground/raters.py): who rates, the terms and guidelines files, the review queue's
    # overlap and gold rate, and the rules that set votes aside (None: as stored before).
    raters: str = "open"
    terms: Path | None = None
    guidelines: Path | None = None
    overlap: int = 3
    gold_rate: float = 0.1
    min_seconds_to_vote: float | None = None
    min_gold_accuracy: float | None = None
    on_a_space: bool = False  # SYSTEM=spaces: Hugging Face sign-in works only there
    space_oauth: bool = False  # the Space's README sets hf_oauth: true (it then sets OAUTH_CLIENT_ID)
    space_storage: Path = SPACE_STORAGE  # a Space's persistent storage: the data folder's default there

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.data_dir / "feedback.sqlite3")


class ServersNotReady(ValueError):
    """Remote contenders whose servers cannot serve them; the message names each and why."""


# What a start can fail on that the operator can fix; each message says what to change. Anything else
# is a bug, and keeps its traceback.
STARTUP_ERRORS = (
    WeightsNotFound,
    ConfigNotFoundError,
    SpecError,
    LineupFileError,
    PlacementError,
    SettingsError,
    ServersNotReady,
    DatabaseUnavailable,
    SchemaError,
)


def resolve_lineup(settings: Settings) -> LineupSpec:
    """The ad-hoc lineup built from --model, the one in --lineup-file, or the one named by --lineup."""
    if settings.models:
        return adhoc_lineup(settings.models)
    if settings.lineup_file is not None:
        return lineup_from_file(settings.lineup_file)
    return get_lineup(settings.lineup)


def check_servers(
    lineup: LineupSpec, allow_unreachable: bool, log: Callable[[str], None], options: LoadOptions = LoadOptions()
) -> RemoteStreamer | None:
    """The remote contenders' streamer, once each server has listed its model (`/v1/models`).

    Servers that are not ready stop the start with one message naming them, unless
    `allow_unreachable`: then their panes say they are unavailable until the server answers. The
    tokenizers the endpoints name are loaded first; one that cannot be raises WeightsNotFound.
    """
    remote = [c for c in lineup.contenders if c.remote]
    if not remote:
        return None
    tokenizers = {}
    for spec in dict.fromkeys(c.endpoint.tokenizer for c in remote if c.endpoint.tokenizer):
        tokenizers[spec] = load_tokenizer(spec, options, log)
    streamer = RemoteStreamer(remote, tokenizers=tokenizers)
    for contender in remote:  # a tokenizer that cannot render the contender's prompts would fail every answer
        if contender.endpoint.tokenizer:
            try:
                streamer.render(contender, [{"role": "user", "content": "Hello"}])
            except StreamFailure as failure:
                streamer.close()
                raise ServersNotReady(f"endpoint.tokenizer of {failure}") from None
    problems = streamer.check()
    listed = "\n".join(f"  - {name}: {problem}" for name, problem in problems.items())
    if problems and not allow_unreachable:
        streamer.close()
        raise ServersNotReady(
            f"{len(problems)} of {len(remote)} remote contenders cannot be served:\n{listed}\n"
            "Start those servers or fix the lineup file; or pass --allow-unreachable to start "
            "anyway with those panes shown as unavailable."
        )
    if problems:
        log(f"starting anyway (--allow-unreachable); unavailable for now:\n{listed}")
    for contender in remote:
        if contender.name not in problems:
            log(f"{contender.name}: {contender.endpoint.describe()} is ready")
        fitting = context_fitting(streamer, contender)
        if fitting:
            log(f"{contender.name}: {fitting}")
    return streamer


def context_fitting(streamer: RemoteStreamer, contender: ContenderSpec) -> str:
    """How a remote contender's conversations are fitted to its context, when a piece is missing."""
    context, endpoint = streamer.context_length(contender), contender.endpoint
    if context is not None and endpoint.tokenizer is not None:
        return ""
    missing = [] if endpoint.tokenizer else ["endpoint.tokenizer (weights whose tokenizer counts its tokens)"]
    if context is None:
        asked = contender.name not in streamer.unavailable()
        why = "its server lists none" if asked else "its server could not be asked"
        missing.append(f"endpoint.context_length ({why})")
    return (
        f"long conversations are sent whole and its server's error is shown, since the lineup sets no "
        f"{' and no '.join(missing)}"
    )


def storage_notice(database: Database) -> str:
    # Name the kind of database, not its address: the page is public on a hosted demo.
    return (
        f"ℹ️ Prompts, answers and ratings are stored in this app's feedback database "
        f"({database.engine.dialect.name}) to compare and improve models. "
        "Do not enter personal or confidential information."
    )


@dataclass
class App:
    """What `create_app` builds: the page, the core behind it and the settings it is served with.

    `launch()` serves it (`block=False` returns at once); `with app:` serves it without blocking and
    closes it at the end (tests and benches).
    """

    page: BuiltPage
    core: Playground
    settings: Settings
    max_concurrent: int  # comparisons generated at once; the queue is sized from it
    sweeper: Sweeper | None = None  # started by launch()
    log: Callable[[str], None] = print
    calibration: threading.Event | None = None  # set to stop measuring the engines (started by launch())

    @property
    def demo(self) -> gr.Blocks:
        return self.page.demo

    @property
    def conversations(self) -> ConversationStore:
        return self.page.conversations

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}/"

    def launch(self, *, block: bool = True) -> None:
        """Serve the page; `block=False` returns once the server listens."""
        self.demo.queue(
            default_concurrency_limit=DEFAULT_CONCURRENT, max_size=queue_size(self.settings, self.max_concurrent)
        )
        with _no_proxy_rewrite():
            self._serve(block)

    def _serve(self, block: bool) -> None:
        settings, page = self.settings, self.page
        page.demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            prevent_thread_lock=True,
            # A comparison running or waiting in line holds a worker thread while it waits for its next
            # snapshot: room for every one of them, and for the other events.
            max_threads=max(40, self.max_concurrent + queue_size(settings, self.max_concurrent) + 24),
            css=CSS,
            head=HEAD,
            footer_links=["api"],
            quiet=not block,
            # No uploads, no foreign images, and the admin's one-time export links.
            app_kwargs={
                "middleware": [
                    Middleware(
                        Guard,
                        downloads=page.downloads,
                        streams=page.streams,
                        frame_ancestors=" ".join(settings.framed_by) or "'none'",
                        metrics=self.core.metrics,
                        metrics_access=MetricsAccess(settings.admin_token, settings.trusted_proxies),
                    )
                ]
            },
        )
        # Before the first session: Gradio's per-session state starts lean and is swept (ui_sessions).
        store = page.conversations
        self.sweeper = Sweeper(lean_sessions(page.demo), store.unasked_ttl_s, store.sweep).start()
        self._calibrate()
        if block:
            page.demo.block_thread()

    def _calibrate(self) -> None:
        """Measure the local engines' step times in the background (playground/calibration.py), where
        admission checks speed and a streamer can measure."""
        core, measure = self.core, getattr(self.core.streamer, "step_gaps", None)
        if not self.settings.calibrate or not core.admission.min_tokens_per_s or measure is None:
            return
        engines = getattr(core.streamer, "engines", {})
        probes = probes_for(
            core.lineup.contenders,
            core.pane_count,
            core.admission.max_running,
            {weights: getattr(engine, "max_batch", None) for weights, engine in engines.items()},
        )
        if probes:
            self.calibration = start_calibration(core.admission, measure, probes, self.log)

    def close(self) -> None:
        """Stop serving (the core's engines are the caller's)."""
        if self.calibration is not None:
            self.calibration.set()
        self.demo.close()

    def __enter__(self) -> App:
        self.launch(block=False)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def create_app(settings: Settings, streamer: Streamer | None = None, log: Callable[[str], None] = print) -> App:
    """Load the lineup (unless a streamer is given) and build the page; nothing is served yet."""
    lineup = resolve_lineup(settings)
    policy = rater_policy(settings)  # a bad --terms file fails before minutes of loading
    admin_notice = storage_warning(settings, log)
    if settings.mode == "arena":
        settings.arena.groups(lineup.contenders)  # bad arena settings fail before minutes of loading
    revisions: dict[WeightsSpec, str] = {}
    served_ids: dict[WeightsSpec, str] = {}  # weights loaded from another id (the embedded model from the Hub)
    models_info = "Generation is provided by an external streamer."
    if streamer is None:
        remote = check_servers(lineup, settings.allow_unreachable, log, settings.load)  # before minutes of loading
        local, sections = None, []
        if lineup.weights:
            loaded, plan = _load(lineup, settings, log)
            local = LocalStreamer(loaded, kv_cache_gib=settings.kv_cache_gib)
            engines = {w: describe_engine(e) for w, e in local.engines.items()}
            sections.append(models_markdown(lineup, loaded, plan, engines))
            revisions = {w: item.resolved_revision for w, item in loaded.items() if item.resolved_revision}
            served_ids = {w: item.served_id for w, item in loaded.items() if item.served_id}
        if remote is not None:
            contexts = {c.name: remote.context_length(c) for c in lineup.contenders if c.remote}
            sections.append(servers_markdown(lineup, remote.unavailable(), contexts))
        streamer = RoutedStreamer(local, remote) if remote is not None else local
        models_info = "\n\n".join(sections)
    max_concurrent = settings.max_concurrent or comparisons_that_fit(
        lineup, streamer, settings.arena.size if settings.mode == "arena" else None
    )
    if settings.min_tokens_per_s < 0:
        raise SettingsError(f"--min-tokens-per-s must be 0 or more, got {settings.min_tokens_per_s:g}")
    log(
        f"comparisons generated at once: at most {max_concurrent}"
        + (f", while every answer keeps {settings.min_tokens_per_s:g} tokens/s" if settings.min_tokens_per_s else "")
    )
    database = open_database(settings.database_url)
    interrupted = mark_unfinished(database)
    if interrupted:
        log(f"{interrupted} comparisons were left unfinished by a server that stopped; marked as interrupted")
    visitors = visitor_policy(settings)
    core = Playground(
        lineup,
        streamer,
        database,
        mode=settings.mode,
        history=settings.history,
        revisions=revisions,
        served_ids=served_ids,
        sampler=settings.arena,
        visitors=visitors,
        raters=policy,
        max_prompt_chars=settings.max_prompt_chars,
        admission=Admission(max_concurrent, settings.min_tokens_per_s),
    )
    apply_set_aside_rules(database, lineup, settings, log)
    page = build_ui(
        core,
        title="Chat model playground",
        notice=storage_notice(database),
        models_info=models_info,
        # Asks run their handler while they wait in the core's line (which tells them their place);
        # Gradio's own queue only holds what is beyond that.
        max_concurrent=max_concurrent + queue_size(settings, max_concurrent),
        leaderboard_rounds=settings.leaderboard_rounds,
        leaderboard_min_battles=settings.leaderboard_min_battles,
        admin_token=settings.admin_token,
        admin_notice=admin_notice,
        unasked_ttl_s=settings.unasked_ttl_s,
    )
    return App(page, core, settings, max_concurrent, log=log)


def writable_dir(path: Path) -> bool:
    """A folder this process may write in: a Space's persistent storage, once it is turned on."""
    return path.is_dir() and os.access(path, os.W_OK)


def lost_at_restart(settings: Settings) -> bool:
    """On a Space, a SQLite file outside its persistent storage goes with the container at each restart."""
    if not settings.on_a_space or settings.db_url:
        return False
    storage = settings.space_storage
    return not (writable_dir(storage) and settings.data_dir.resolve().is_relative_to(storage.resolve()))


def storage_warning(settings: Settings, log: Callable[[str], None]) -> str:
    """When ratings go with the container: logged once at start, and the admin tab's notice; else ""."""
    if not lost_at_restart(settings):
        return ""
    log(LOST_AT_RESTART)
    return f"⚠️ {LOST_AT_RESTART[0].upper()}{LOST_AT_RESTART[1:]}."


def queue_size(settings: Settings, max_concurrent: int) -> int:
    """Comparisons that may wait for a place: `--queue-size`, else 4 per one that runs, plus 16."""
    return settings.queue_size or 4 * max_concurrent + 16


def visitor_policy(settings: Settings) -> VisitorPolicy:
    """How visitors are told apart (a salt kept in the data folder) and what each may ask."""
    return VisitorPolicy(
        salt=load_salt(settings.data_dir, settings.visitor_salt),
        trusted_proxies=settings.trusted_proxies,
        per_minute=settings.limit_per_minute or None,
        per_day=settings.limit_per_day or None,
        in_flight=settings.limit_in_flight or None,
    )


def rater_policy(settings: Settings) -> RaterPolicy:
    """Who rates and under which terms, from the settings; SettingsError for what cannot be served."""
    if settings.raters == "hub" and not settings.on_a_space:
        raise SettingsError(
            "--raters hub signs raters in with Hugging Face, which works on a Space whose README sets "
            "hf_oauth: true; elsewhere use --raters invited (python -m feedback_db raters add NAME)"
        )
    if settings.raters == "hub" and not settings.space_oauth:
        raise SettingsError(
            "--raters hub needs sign-in enabled on this Space: add hf_oauth: true to the front matter of the "
            "Space's README.md, then restart it"
        )
    return RaterPolicy(
        mode=settings.raters,  # type: ignore[arg-type]
        terms=Document.read(settings.terms, "--terms") if settings.terms else None,
        guidelines=Document.read(settings.guidelines, "--guidelines") if settings.guidelines else None,
        overlap=settings.overlap,
        gold_rate=settings.gold_rate,
    )


def apply_set_aside_rules(
    database: Database, lineup: LineupSpec, settings: Settings, log: Callable[[str], None]
) -> None:
    """The rules that set votes aside: this lineup's identity words (with those stored for others), and
    the thresholds given (None keeps the stored one). Changed rules judge every stored rating again."""
    with database.session() as db:
        stored = current_rules(db)
        words = dict(stored.identity_words) | {c.name: c.identity_words for c in lineup.contenders}
        try:
            rules = Rules(
                identity_words=words,
                min_seconds_to_vote=settings.min_seconds_to_vote
                if settings.min_seconds_to_vote is not None
                else stored.min_seconds_to_vote,
                min_gold_accuracy=settings.min_gold_accuracy
                if settings.min_gold_accuracy is not None
                else stored.min_gold_accuracy,
            )
        except ValueError as error:
            raise SettingsError(f"--min-seconds-to-vote / --min-gold-accuracy: {error}") from None
        judged = apply_rules(db, rules)
    if judged:
        log(f"the rules that set votes aside changed: {judged} stored ratings judged again")


# Several app processes may share a PostgreSQL database: a comparison younger than this may still be
# generating in another one. One SQLite file belongs to one process, so everything before its start is over.
OTHER_PROCESSES_GRACE = timedelta(minutes=30)


def mark_unfinished(database: Database) -> int:
    """At start: mark the comparisons a stopped server left without all their answers as interrupted."""
    now = datetime.now(timezone.utc)
    before = now if database.engine.dialect.name == "sqlite" else now - OTHER_PROCESSES_GRACE
    with database.session() as session:
        return mark_interrupted(session, before)


def comparisons_that_fit(lineup: LineupSpec, streamer: Streamer, panes: int | None = None) -> int:
    """How many comparisons the engines' KV caches hold at once (4 for a streamer without engines), and
    no more than a remote contender's `max_concurrent` allows.

    A stream is counted at its preset's longest answer plus PROMPT_BUDGET tokens of prompt and history.
    """
    engines = getattr(streamer, "engines", None) or {}
    fits = []
    for weights, engine in engines.items():
        tokens = getattr(engine, "cache_tokens", None)
        contenders = [c for c in lineup.contenders if c.weights == weights]
        if not contenders:
            continue
        streams = min(len(contenders), panes or len(contenders))
        if tokens is None:  # the batched loop grows its cache as streams come, up to its batch
            fits.append(getattr(engine, "max_batch", DEFAULT_CONCURRENT * streams) // streams)
            continue
        per_stream = max(min(c.weights.context_length, PROMPT_BUDGET + c.params.max_new_tokens) for c in contenders)
        fits.append(tokens // (per_stream * streams))
    # A comparison opens at most one request per remote contender.
    fits += [c.endpoint.max_concurrent for c in lineup.contenders if c.endpoint and c.endpoint.max_concurrent]
    return max(1, min(fits)) if fits else DEFAULT_CONCURRENT


def _load(lineup: LineupSpec, settings: Settings, log: Callable[[str], None]) -> tuple[dict, Any]:
    """Load every weights once: by the placement plan unless the user fixed a device map or limits."""
    base, plan = settings.load, None
    options: LoadOptions | dict = base
    check_lineup(lineup, base, log)  # name every missing weights before planning needs their configs
    # The planner sizes device maps for its own precision: a fixed --dtype, device map or memory
    # limits go to from_pretrained as given instead.
    if base.device_map == "auto" and not base.max_memory and base.dtype == "auto":
        plan, options = planned_options(lineup, base)
        log(format_plan(plan))
    return load_lineup(lineup, options, log=log, checked=True), plan


@contextmanager
def _no_proxy_rewrite() -> Iterator[None]:
    """uvicorn, as Gradio starts it, takes X-Forwarded-For as the client's address for requests from
    loopback (FORWARDED_ALLOW_IPS, default 127.0.0.1): anyone on the same host, or any proxy that passes
    the header on, could pick a new visitor key per request. The peer's address stays the client's;
    VisitorPolicy reads the header itself, and only the hops trusted proxies added."""
    before = os.environ.get("FORWARDED_ALLOW_IPS")
    os.environ["FORWARDED_ALLOW_IPS"] = ""  # read when Gradio builds uvicorn's Config, inside launch()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FORWARDED_ALLOW_IPS", None)
        else:
            os.environ["FORWARDED_ALLOW_IPS"] = before
