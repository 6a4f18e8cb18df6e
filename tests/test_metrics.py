"""/metrics on the real app: counts after real asks, ratings and refusals, read back with Prometheus'
own parser; and who may read it."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request

import pytest
from gradio_client import Client
from gradio_client.exceptions import ValidationError
from prometheus_client.parser import text_string_to_metric_families

from app import settings_from
from models.streaming import StreamFailure
from playground.guard import Guard
from playground.metrics import REASONS, Metrics, MetricsAccess, reason_of
from playground.server import create_app
from tests.fakes import words_streamer
from tests.page_api import rate_args, token_of
from tests.servers import free_port
from tests.waiting import until

TOKEN = "metrics-admin-token-0123456789"


def held_streamer(release: threading.Event):
    """Words as tests/fakes answers them; "hold" waits for `release`, and "fail" fails contender two."""
    words = words_streamer()

    def stream(contender, messages, params, *, stop, seed):
        prompt = messages[-1]["content"]
        if "fail" in prompt and contender.name == "two":
            raise StreamFailure("two cannot answer this")
        if "hold" in prompt:
            release.wait(60)
        yield from words(contender, messages, params, stop=stop, seed=seed)

    return stream


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    argv = ["--data-dir", str(tmp_path_factory.mktemp("metrics")), "--port", str(free_port())]
    argv += ["--model", "org/one", "--model", "org/two", "--admin", "--limit-per-day", "4"]
    settings = settings_from(argv, {"PLAYGROUND_ADMIN_TOKEN": TOKEN})
    release = threading.Event()
    with create_app(settings, streamer=held_streamer(release), log=lambda m: None) as app:
        yield app, release
    release.set()


def scrape(app, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"{app.url}metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_counts_after_asks_ratings_and_refusals(served):
    app, release = served
    url = app.url
    first = Client(url, verbose=False)
    one = first.predict("Hello there", "", "", api_name="/ask")
    two = first.predict("And again", "", token_of(one), api_name="/ask")
    with pytest.raises(ValidationError, match="page is behind"):
        first.predict("From an old tab", "", token_of(one), api_name="/ask")
    with pytest.raises(ValidationError, match="prompt is empty"):
        first.predict("   ", "", token_of(two), api_name="/ask")
    with pytest.raises(ValidationError, match="characters; the limit is"):
        first.predict("x" * 20_000, "", token_of(two), api_name="/ask")
    assert "stored" in first.predict(*rate_args(token_of(two), "a", "better"), api_name="/rate")[-1]

    failing = Client(url, verbose=False)
    failed = failing.predict("please fail", "", "", api_name="/ask")
    assert "stored" in failing.predict(*rate_args(token_of(failed), "both_bad"), api_name="/rate")[-1]

    holding = Client(url, verbose=False)
    job = holding.submit("hold on", "", "", api_name="/ask")
    until(lambda: app.core.streaming == 1, what="the held comparison streams")
    with pytest.raises(ValidationError, match="still streaming"):
        holding.predict("meanwhile", "", "", api_name="/ask")
    release.set()
    held = job.result()
    with pytest.raises(ValidationError, match="you have asked 4 questions in the last day"):
        holding.predict("one more", "", token_of(held), api_name="/ask")

    status, text = scrape(app, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    found = samples(text)
    assert value(found, "playground_comparisons_started_total") == 4
    assert value(found, "playground_comparisons_finished_total") == 3
    assert value(found, "playground_comparisons_failed_total") == 1
    refused = {reason: value(found, "playground_comparisons_refused_total", reason=reason) for reason in REASONS}
    assert refused == {r: 0 for r in REASONS} | {"stale_page": 1, "empty": 1, "too_long": 1, "busy": 1, "limit": 1}
    assert value(found, "playground_answers_total", contender="one", status="done") == 4
    assert value(found, "playground_answers_total", contender="two", status="done") == 3
    assert value(found, "playground_answers_total", contender="two", status="error") == 1
    # Each answer is "<name> says: <prompt>", one token a word; the fake reports 0.01 s to the first token.
    prompts = ["Hello there", "And again", "please fail", "hold on"]
    words = sum(2 + len(p.split()) for p in prompts)
    assert value(found, "playground_generated_tokens_total", contender="one") == words
    assert value(found, "playground_generated_tokens_total", contender="two") == words - 4
    for contender, answers in (("one", 4), ("two", 3)):
        ttft = {"contender": contender}
        assert value(found, "playground_time_to_first_token_seconds_count", **ttft) == answers
        assert value(found, "playground_time_to_first_token_seconds_bucket", **ttft, le="0.05") == answers
        assert value(found, "playground_tokens_per_second_count", **ttft) == answers
        # 4 words in 0.05 s, 3 of them after the first: 75 tokens/s, between the 60 and 80 buckets
        assert value(found, "playground_tokens_per_second_bucket", **ttft, le="60.0") == 0
        assert value(found, "playground_tokens_per_second_bucket", **ttft, le="80.0") == answers
    assert value(found, "playground_queue_waiting") == 0
    assert value(found, "playground_ratings_stored") == 2
    assert value(found, "playground_ratings_set_aside", reason="errored") == 1
    assert value(found, "playground_ratings_set_aside", reason="too_fast") == 0


def test_only_the_admin_token_or_a_scraper_on_this_host_reads_it(served):
    app, _ = served
    status, text = scrape(app)  # loopback, no forwarding header, no proxy trusted: a scraper on this host
    assert status == 200 and "playground_comparisons_started_total" in text
    status, text = scrape(app, {"X-Forwarded-For": "203.0.113.7"})  # as a proxy on this host passes a visitor on
    assert status == 403 and text == "metrics need Authorization: Bearer <admin token>, or a scraper on this host\n"
    status, text = scrape(app, {"Authorization": "Bearer not-the-token", "X-Forwarded-For": "203.0.113.7"})
    assert status == 403 and text == "wrong admin token in the Authorization header\n"
    status, text = scrape(app, {"Authorization": "Bearer not-the-token"})  # a wrong token is wrong from here too
    assert status == 403
    status, text = scrape(app, {"Authorization": f"Bearer {TOKEN}", "Forwarded": "for=203.0.113.7"})
    assert status == 200 and "playground_queue_waiting" in text


def test_access_behind_a_proxy_needs_the_token():
    behind = MetricsAccess(admin_token=TOKEN, trusted_proxies=1)
    assert behind.refusal("127.0.0.1", {}) is not None  # the proxy's own address: anyone behind it
    assert behind.refusal("127.0.0.1", {"authorization": f"Bearer {TOKEN}"}) is None
    direct = MetricsAccess(admin_token=None)
    assert direct.refusal("::1", {}) is None
    assert direct.refusal("192.0.2.1", {}) == (
        "metrics are open only to a scraper on this host; an admin token lets others scrape them"
    )
    assert direct.refusal("192.0.2.1", {"authorization": "Bearer anything"}) is not None


def test_refusal_sentences_name_their_reason():
    from playground.comparison import PAGE_BEHIND, checked_prompt
    from playground.conversation import BUSY
    from playground.errors import PlaygroundError

    assert reason_of(PlaygroundError(PAGE_BEHIND)) == "stale_page"
    assert reason_of(PlaygroundError(BUSY)) == "busy"
    for prompt, reason in (("", "empty"), ("x" * 100_000, "too_long"), (3, "invalid")):
        with pytest.raises(PlaygroundError) as refused:
            checked_prompt(prompt)
        assert reason_of(refused.value) == reason
    assert reason_of(PlaygroundError("something new")) == "other"


def test_a_full_queue_counts_as_busy():
    """Gradio's 503 to a join when its queue is full: the guard counts it, once per refused join."""

    async def full_queue(scope, receive, send):  # Gradio's app as the guard sees it, when no place is left
        await send({"type": "http.response.start", "status": 503, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"full"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    metrics = Metrics()
    guard = Guard(full_queue, metrics=metrics)
    join = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "headers": [], "query_string": b""}
    for _ in range(2):
        asyncio.run(guard(join, receive, send))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [503, 503]
    found = samples(metrics.text().decode())
    assert value(found, "playground_comparisons_refused_total", reason="busy") == 2
