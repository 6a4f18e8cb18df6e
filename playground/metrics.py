"""The operator's numbers, in Prometheus' text format: what the app did since it started, and what its
engines and database hold now.

Counters and histograms are updated by the comparison core as things happen (one-line hooks); engine
and database numbers are read when the endpoint is scraped. Each `Metrics` has its own registry, so
several apps in one process (the tests) never share a number. The guard (playground/guard.py) serves
`/metrics` and decides who may read it (`MetricsAccess`).
"""

from __future__ import annotations

import functools
import hmac
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from feedback_db import Database
from feedback_db.activity import rating_counts
from models.streaming import GenerationResult
from playground.admission import Admission
from playground.errors import PlaygroundError

log = logging.getLogger(__name__)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format `generate_latest` writes

# Why an ask was refused. limit: the visitor's limits or in-flight places; busy: this conversation is
# answering already, or the server is full; stale_page: the page shows an earlier comparison; too_long:
# the prompt or system prompt is over the character limit; empty: nothing to send; terms: not accepted;
# turns: the conversation has as many turns as it may; invalid: not text, or a history the prompt
# format refuses; not_ready: nothing to regenerate yet, or no answer picked to continue from; error: the
# comparison could not be stored; other: anything else.
Reason = Literal[
    "limit", "busy", "stale_page", "too_long", "empty", "terms", "turns", "invalid", "not_ready", "error", "other"
]
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]
# How a refusal's sentence tells its reason (comparison.py, conversation.py, raters.py, params.py write
# them; tests/test_metrics.py provokes each one through the real app). First match wins.
_PATTERNS: list[tuple[Reason, re.Pattern[str]]] = [
    (reason, re.compile(pattern))
    for reason, pattern in [
        ("too_long", r"characters; the limit is"),
        ("empty", r"^the prompt is empty"),
        ("stale_page", r"^this page is behind"),
        ("busy", r"^the answers are still streaming"),
        ("limit", r"^you have (asked \d+ questions in the last|\d+ questions running or waiting)"),
        ("terms", r"accept the terms"),
        ("turns", r"^this conversation has \d+ turns"),
        ("not_ready", r"^(nothing to regenerate yet|vote first, or pick the answer)"),
        ("error", r"could not be stored"),
        ("invalid", r"must be text|^messages|^the conversation (is empty|has only)"),
    ]
]
# Time to first token: a cached prompt on a GPU takes tens of milliseconds, a long one on a CPU a minute.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# Decode speed: a CPU gives 5-30 tokens/s, a GPU 20-150 per stream.
TOKENS_PER_S_BUCKETS = (2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 80.0, 100.0, 150.0, 200.0)
F = TypeVar("F", bound=Callable[..., Any])


def reason_of(error: BaseException) -> Reason:
    """The reason a refusal's sentence gives."""
    message = str(error)
    return next((reason for reason, pattern in _PATTERNS if pattern.search(message)), "other")


class Metrics:
    """Every number `/metrics` shows; the comparison core calls the hooks, the guard serves `text()`."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.started = Counter("playground_comparisons_started", "Comparisons whose answers began", registry=r)
        self.finished = Counter(
            "playground_comparisons_finished", "Comparisons whose every answer ended, none failed", registry=r
        )
        self.failed = Counter(
            "playground_comparisons_failed", "Comparisons that ended with at least one answer failed", registry=r
        )
        self.refused = Counter("playground_comparisons_refused", "Asks refused, by reason", ["reason"], registry=r)
        self.answers = Counter(
            "playground_answers",
            "Answers ended, per contender and how (done, stopped, error)",
            ["contender", "status"],
            registry=r,
        )
        self.first_token = Histogram(
            "playground_time_to_first_token_seconds",
            "Seconds from the request to an answer's first token",
            ["contender"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens_per_s = Histogram(
            "playground_tokens_per_second",
            "An answer's decode speed after its first token",
            ["contender"],
            buckets=TOKENS_PER_S_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("playground_generated_tokens", "Tokens generated", ["contender"], registry=r)
        self.waiting = Gauge("playground_queue_waiting", "Comparisons waiting for a place to run", registry=r)
        for reason in REASONS:  # every reason shows from the start, at 0: a rate needs a first sample
            self.refused.labels(reason)
        self._sources = _Sources()
        r.register(self._sources)

    def watch(
        self,
        database: Database | None = None,
        engines: Mapping[Any, Any] | None = None,
        admission: Admission | None = None,
    ) -> Metrics:
        """Read these at each scrape: ratings from `database`, streams and cache from `engines` (by
        weights), what `admission` learned of each engine's speed and of the line's pace."""
        self._sources.database, self._sources.engines, self._sources.admission = database, engines, admission
        return self

    # The hooks: each one line where it happens.
    def comparison_started(self) -> None:
        self.started.inc()

    def comparison_ended(self, failed: bool) -> None:
        (self.failed if failed else self.finished).inc()

    def answer_ended(self, contender: str, status: str, result: GenerationResult | None) -> None:
        """One pane's answer ended: its status, and from its result the tokens, first token and speed."""
        self.answers.labels(contender, status).inc()
        if result is None:
            return
        self.tokens.labels(contender).inc(result.completion_tokens)
        if result.time_to_first_token_s is not None:
            self.first_token.labels(contender).observe(result.time_to_first_token_s)
        if result.tokens_per_s is not None:
            self.tokens_per_s.labels(contender).observe(result.tokens_per_s)

    def count_refusal(self, reason: Reason) -> None:
        """A refusal that does not pass through `counted_refusals` (the guard's full queue)."""
        self.refused.labels(reason).inc()

    def refuse(self, reason: Reason, message: str) -> PlaygroundError:
        """The error to raise for a refusal, counted now under `reason` and never again on its way out."""
        self.count_refusal(reason)
        error = PlaygroundError(message)
        error.counted = True  # type: ignore[attr-defined]
        return error

    def refuse_busy(self, message: str) -> PlaygroundError:
        """The server is full (admission control): `raise metrics.refuse_busy("…")`."""
        return self.refuse("busy", message)

    def set_waiting(self, waiting: int) -> None:
        """Comparisons waiting for a place to run now (admission control sets it)."""
        self.waiting.set(waiting)

    def counted(self, error: PlaygroundError) -> None:
        """Count a refusal on its way out of the core, once, under the reason its sentence gives."""
        if not getattr(error, "counted", False):
            self.count_refusal(reason_of(error))
            error.counted = True  # type: ignore[attr-defined]

    def text(self) -> bytes:
        """The Prometheus text exposition, read now (it queries the database: call it off the event loop)."""
        return generate_latest(self.registry)


def counted_refusals(method: F) -> F:
    """Decorates a Playground method (plain or generator): each PlaygroundError it raises is counted in
    `self.metrics` by reason, then raised on."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                return (yield from method(self, *args, **kwargs))
            except PlaygroundError as error:
                self.metrics.counted(error)
                raise

        return streaming  # type: ignore[return-value]

    @functools.wraps(method)
    def plain(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except PlaygroundError as error:
            self.metrics.counted(error)
            raise

    return plain  # type: ignore[return-value]


class _Sources:
    """A collector read at each scrape: the engines' streams and caches, the database's ratings."""

    def __init__(self) -> None:
        self.database: Database | None = None
        self.engines: Mapping[Any, Any] | None = None
        self.admission: Admission | None = None

    def collect(self) -> Iterable[Metric]:
        yield from self._engines()
        yield from self._admission()
        yield from self._ratings()

    def _admission(self) -> Iterator[Metric]:
        if self.admission is None:
            return
        steps = GaugeMetricFamily(
            "playground_step_seconds",
            "Measured seconds between a stream's tokens, by engine and streams running (admission learns from it)",
            labels=["weights", "streams"],
        )
        for weights, measured in self.admission.learned().items():
            for streams, seconds in measured.items():
                steps.add_metric([_weights_label(weights), str(streams)], seconds)
        yield steps
        pace = self.admission.pace_s
        if pace is not None:
            yield GaugeMetricFamily(
                "playground_queue_pace_seconds", "Measured seconds between two waiting comparisons let in", value=pace
            )

    def _engines(self) -> Iterator[Metric]:
        streams = GaugeMetricFamily(
            "playground_engine_streams", "Streams an engine decodes or holds", labels=["weights"]
        )
        used = GaugeMetricFamily(
            "playground_kv_cache_used_tokens", "KV cache tokens the streams of an engine take", labels=["weights"]
        )
        total = GaugeMetricFamily(
            "playground_kv_cache_capacity_tokens", "KV cache tokens an engine holds at most", labels=["weights"]
        )
        for weights, engine in (self.engines or {}).items():
            stats = getattr(engine, "stats", None)
            if stats is None:
                continue
            now, name = stats(), _weights_label(weights)
            streams.add_metric([name], now.streams)
            used.add_metric([name], now.cache_used_tokens)
            if now.cache_tokens is not None:  # the batched loop's cache has no fixed size
                total.add_metric([name], now.cache_tokens)
        yield from (streams, used, total)

    def _ratings(self) -> Iterator[Metric]:
        if self.database is None:
            return
        try:
            with self.database.snapshot() as session:
                counts = rating_counts(session)
        except Exception:  # a scrape must still show the rest: the database may be restarting
            log.exception("counting ratings for /metrics failed")
            return
        yield GaugeMetricFamily("playground_ratings_stored", "Ratings in the database", value=counts.stored)
        aside = GaugeMetricFamily(
            "playground_ratings_set_aside", "Ratings in the database set aside, by reason", labels=["reason"]
        )
        for reason, count in counts.reasons.items():
            aside.add_metric([reason], count)
        yield aside


@dataclass(frozen=True)
class MetricsAccess:
    """Who may read /metrics: a request with `Authorization: Bearer <admin token>`, or a scraper on this
    host (a loopback peer with no forwarding header) when no proxy is trusted: behind a proxy on the
    same host, every visitor would come from loopback."""

    admin_token: str | None = None
    trusted_proxies: int = 0

    def refusal(self, client: str | None, headers: Mapping[str, str]) -> str | None:
        """None when the request may read the metrics; else one line saying why not."""
        given = headers.get("authorization", "")
        if given:
            scheme, _, token = given.partition(" ")
            if scheme.lower() == "bearer" and self.admin_token and _same(token.strip(), self.admin_token):
                return None
            return "wrong admin token in the Authorization header"
        forwarded = any(h in headers for h in ("x-forwarded-for", "forwarded", "x-real-ip"))
        if client in ("127.0.0.1", "::1") and not forwarded and self.trusted_proxies == 0:
            return None
        if self.admin_token:
            return "metrics need Authorization: Bearer <admin token>, or a scraper on this host"
        return "metrics are open only to a scraper on this host; an admin token lets others scrape them"


def _weights_label(weights: Any) -> str:
    """Id and revision as stored with every response; a GGUF file's name too (one folder may hold several)."""
    label = weights.describe() if hasattr(weights, "describe") else str(weights)
    gguf = getattr(weights, "gguf_file", None)
    return f"{label} ({gguf})" if gguf else label


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())
