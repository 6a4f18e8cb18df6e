"""A public page against hostile content: no uploads, and answers or prompts that try to run script,
attach handlers or load from other hosts do nothing, in a real browser."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from models.streaming import GenerationResult, PromptReady
from tests.test_browser import CHROMIUM, FLAGS, WIDE, browser, paced_app  # noqa: F401 - fixture

HOSTILE = "\n\n".join([
    "Here you go: ![pixel](http://198.51.100.7/pixel.png?who=visitor)",
    '<img src="http://198.51.100.8/img.png" onerror="window.__pwned = \'img onerror\'">',
    "<script>window.__pwned = 'script'</script>",
    '<a href="javascript:window.__pwned=\'link\'" id="evil-link">click me</a>',
    '<iframe srcdoc="<script>parent.__pwned=\'iframe\'</script>"></iframe>',
    '<details open ontoggle="window.__pwned=\'details\'"><summary>more</summary>x</details>',
    '<svg onload="window.__pwned=\'svg\'"></svg>',
    '<video src="http://198.51.100.9/v.mp4" autoplay></video>',
    "[styled](http://198.51.100.10/ \"title\") and done.",
])


def hostile_streamer(contender, messages, params, *, stop, seed):
    """Answers with every trick at once; the prompt comes back too (a visitor's own hostile text)."""
    yield PromptReady(text=messages[-1]["content"], tokens=3)
    text = f"{contender.name}: {HOSTILE}"
    for start in range(0, len(text), 40):
        yield text[start:start + 40]
    yield GenerationResult(text, "stop", 3, len(text) // 4, 0.01, 0.05, seed)


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory):
    from playground.server import create_app, launch
    from tests.test_app_e2e import free_port
    from app import settings_from

    settings = settings_from(["--data-dir", str(tmp_path_factory.mktemp("hostile")), "--port", str(free_port()),
                              "--model", "org/one", "--model", "org/two"], {})
    demo, _ = create_app(settings, streamer=hostile_streamer, log=lambda m: None)
    launch(demo, settings, block=False)
    yield f"http://127.0.0.1:{settings.port}/"
    demo.close()


def test_uploads_are_refused_and_every_response_carries_the_content_policy(hostile_app):
    boundary = "xx"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n{'A' * 100_000}\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(f"{hostile_app}gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403 and b"no uploads" in refused.value.read()
    with urllib.request.urlopen(hostile_app, timeout=30) as page:
        policy = page.headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob:" in policy and "frame-src 'none'" in policy


@pytest.mark.browser
@pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM) and not __import__("os").environ.get("CI"),
                    reason="Debian's chromium is not installed (apt-get install chromium)")
def test_hostile_answers_and_prompts_run_nothing_and_reach_no_other_host(browser, hostile_app):  # noqa: F811
    page = browser.new_page(viewport=WIDE)
    foreign: list[str] = []
    blocked: list[str] = []
    # Chromium reports a request the content policy stopped as failed with "csp"; any other foreign
    # request left the browser (this machine has no route out, but a visitor's has).
    page.on("request", lambda r: urlsplit(r.url).hostname not in ("127.0.0.1", None) and foreign.append(r.url))
    page.on("requestfailed", lambda r: r.failure == "csp" and blocked.append(r.url))
    page.goto(hostile_app)
    page.locator("#prompt textarea").fill(HOSTILE)  # the visitor's own text is shown in the panes too
    page.locator("#send").click()
    page.locator("#rating:visible").first.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1500)  # time for any image, frame or handler to fire
    assert page.locator("#pane-0").get_by_text("and done.").count() >= 1  # the answer was rendered
    if page.locator("#evil-link").count():
        page.locator("#evil-link").first.click()
        page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#pane-0 script, #pane-0 iframe, #pane-0 [onerror], #pane-0 [ontoggle], "
                        "#pane-0 [onload]").count() == 0
    page.wait_for_timeout(300)
    assert any("198.51.100.7/pixel.png" in u for u in blocked)  # the markdown image was tried, and stopped
    assert [u for u in foreign if u not in blocked] == []
    page.close()


def test_a_full_queue_says_busy_try_again_in_plain_words(tmp_path):
    """One comparison at a time and one place in the queue: the third visitor at once is told the demo
    is busy, with HTTP 503, instead of Gradio's queue arithmetic."""
    import threading
    import time
    import uuid

    import httpx
    from gradio_client import Client

    from app import settings_from
    from playground.server import create_app, launch
    from tests.test_app_e2e import free_port
    from tests.test_comparison import words_streamer

    settings = settings_from(["--data-dir", str(tmp_path), "--port", str(free_port()), "--model", "org/one",
                              "--model", "org/two", "--max-concurrent", "1", "--queue-size", "1"], {})
    demo, _ = create_app(settings, streamer=words_streamer(delay=0.3), log=lambda m: None)
    launch(demo, settings, block=False)
    try:
        url = f"http://127.0.0.1:{settings.port}/"
        fn_index = Client(url, verbose=False)._infer_fn_index("/ask", None)
        answers: list[httpx.Response] = []

        def join() -> None:
            answers.append(httpx.post(f"{url}gradio_api/queue/join", timeout=30, json={
                "data": ["Tell me about the sea", "", ""], "fn_index": fn_index,
                "session_hash": uuid.uuid4().hex[:11], "event_data": None, "trigger_id": None}))

        for _ in range(4):
            threading.Thread(target=join).start()
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while len(answers) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        demo.close()
    busy = [a for a in answers if a.status_code == 503]
    assert busy, [a.status_code for a in answers]
    assert all(a.json() == {"detail": "This demo is busy: every place in the queue is taken. Please try again "
                                      "in a moment."} for a in busy)
