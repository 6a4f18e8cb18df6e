"""A public page against hostile content: no uploads, and answers or prompts that try to run script,
attach handlers or load from other hosts do nothing, in a real browser."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from models.streaming import GenerationResult, PromptReady
from tests.browsers import CHROMIUM, WIDE, paced_app
from tests.raw_api import join
from tests.waiting import until

HOSTILE = "\n\n".join(
    [
        "Here you go: ![pixel](http://198.51.100.7/pixel.png?who=visitor)",
        '<img src="http://198.51.100.8/img.png" onerror="window.__pwned = \'img onerror\'">',
        "<script>window.__pwned = 'script'</script>",
        '<a href="javascript:window.__pwned=\'link\'" id="evil-link">click me</a>',
        "<iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe>",
        "<details open ontoggle=\"window.__pwned='details'\"><summary>more</summary>x</details>",
        "<svg onload=\"window.__pwned='svg'\"></svg>",
        '<video src="http://198.51.100.9/v.mp4" autoplay></video>',
        '[styled](http://198.51.100.10/ "title") and done.',
    ]
)


def hostile_streamer(contender, messages, params, *, stop, seed):
    """Answers with every trick at once; the prompt comes back too (a visitor's own hostile text)."""
    yield PromptReady(text=messages[-1]["content"], tokens=3)
    text = f"{contender.name}: {HOSTILE}"
    for start in range(0, len(text), 40):
        yield text[start : start + 40]
    yield GenerationResult(text, "stop", 3, len(text) // 4, 0.01, 0.05, seed)


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory):
    from app import settings_from
    from playground.server import create_app
    from tests.servers import free_port

    settings = settings_from(
        [
            "--data-dir",
            str(tmp_path_factory.mktemp("hostile")),
            "--port",
            str(free_port()),
            "--model",
            "org/one",
            "--model",
            "org/two",
        ],
        {},
    )
    with create_app(settings, streamer=hostile_streamer, log=lambda m: None) as app:
        yield app.url


def test_uploads_are_refused_and_every_response_carries_the_content_policy(hostile_app):
    boundary = "xx"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n{'A' * 100_000}\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        f"{hostile_app}gradio_api/upload",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403 and b"no uploads" in refused.value.read()
    with urllib.request.urlopen(hostile_app, timeout=30) as page:
        policy = page.headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob:" in policy and "frame-src 'none'" in policy


@pytest.mark.browser
@pytest.mark.skipif(
    not __import__("os").path.exists(CHROMIUM) and not __import__("os").environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)
def test_hostile_answers_and_prompts_run_nothing_and_reach_no_other_host(browser, hostile_app):
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
    assert (
        page.locator("#pane-0 script, #pane-0 iframe, #pane-0 [onerror], #pane-0 [ontoggle], #pane-0 [onload]").count()
        == 0
    )
    page.wait_for_timeout(300)
    assert any("198.51.100.7/pixel.png" in u for u in blocked)  # the markdown image was tried, and stopped
    assert [u for u in foreign if u not in blocked] == []
    page.close()


def test_a_full_queue_says_busy_try_again_in_plain_words(tmp_path):
    """One comparison at a time and one place in the queue: the third visitor at once is told the demo
    is busy, with HTTP 503, instead of Gradio's queue arithmetic."""
    import threading
    import time

    import httpx
    from gradio_client import Client

    from app import settings_from
    from playground.server import create_app
    from tests.fakes import words_streamer
    from tests.servers import free_port

    settings = settings_from(
        [
            "--data-dir",
            str(tmp_path),
            "--port",
            str(free_port()),
            "--model",
            "org/one",
            "--model",
            "org/two",
            "--max-concurrent",
            "1",
            "--queue-size",
            "1",
        ],
        {},
    )
    with create_app(settings, streamer=words_streamer(delay=0.3), log=lambda m: None) as app:
        url = app.url
        fn_index = Client(url, verbose=False)._infer_fn_index("/ask", None)
        answers: list[httpx.Response] = []

        def ask_once() -> None:
            with httpx.Client(timeout=30) as http:
                answers.append(join(http, url, fn_index, ["Tell me about the sea", "", ""]))

        for _ in range(4):
            threading.Thread(target=ask_once).start()
            time.sleep(0.1)
        until(lambda: len(answers) == 4, 30, what="every ask to be answered")
    busy = [a for a in answers if a.status_code == 503]
    assert busy, [a.status_code for a in answers]
    assert all(
        a.json() == {"detail": "This demo is busy: every place in the queue is taken. Please try again in a moment."}
        for a in busy
    )


def echo_streamer(contender, messages, params, *, stop, seed):
    """A contender that answers with the prompt itself, as a remote one echoing markup would."""
    text = messages[-1]["content"]
    yield PromptReady(text=text, tokens=3)
    for start in range(0, len(text), 60):
        yield text[start : start + 60]
    yield GenerationResult(text, "stop", 3, len(text) // 4, 0.01, 0.05, seed)


# Elements a rendered answer must never hold: links or actions that run script, animations that could
# rewrite a link, and styles that could cover the page.
FORBIDDEN = (
    "a[href^='javascript' i], a[href^='data' i], [formaction], [xlink\\:href], animate, set, use, [style*='position']"
)


@pytest.mark.browser
@pytest.mark.skipif(
    not __import__("os").path.exists(CHROMIUM) and not __import__("os").environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)
def test_svg_mathml_and_styled_markup_is_inert_in_answers_prompts_and_your_data(browser, tmp_path_factory):
    from tests.test_public_page import HOSTILE_MARKUP

    app = paced_app(tmp_path_factory, "--model", "org/one", "--model", "org/two", streamer=echo_streamer)
    app.launch(block=False)
    url = app.url
    page = browser.new_page(viewport=WIDE)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(url)
        page.locator("#prompt textarea").fill("\n\n".join(HOSTILE_MARKUP))
        page.locator("#send").click()
        submit = page.locator("#submit-rating")
        submit.wait_for(state="visible", timeout=60_000)
        page.get_by_text("Your data").click()
        page.locator("#show-data").click()
        page.locator("#your-data").get_by_text("turn 1").wait_for(timeout=30_000)
        shown = "#pane-0 .message-content, #pane-1 .message-content, #your-data .prose"
        assert page.locator("#pane-0").get_by_text('<svg><a href="javascript:alert(1)">').count() >= 1  # as text
        found = page.locator(f":is({shown}) :is({FORBIDDEN})")
        assert found.count() == 0, [found.nth(i).evaluate("e => e.outerHTML") for i in range(found.count())]
        # Click every element the answers, the prompt bubbles and "Your data" rendered.
        clicked = 0
        for element in page.locator(f":is({shown}) *").all():
            if element.is_visible():
                element.click(force=True, timeout=2000, no_wait_after=True)
                clicked += 1
        page.wait_for_timeout(500)
        assert clicked > 10 and dialogs == [] and page.url == url
        # Nothing covers the rating form: the point at the button's middle is the button.
        box = submit.bounding_box()
        on_top = page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y).closest('#submit-rating') !== null",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert on_top

        # The page's own script, should markup reach the DOM some other way: styles and animations go at
        # once, and a click on a script link (here one set after the observer ran) is cancelled.
        page.evaluate("""() => {
            const bubble = document.querySelector('#pane-0 .message-content');
            bubble.insertAdjacentHTML('beforeend', '<div id="cover" style="position:fixed;inset:0;z-index:9999">' +
                '</div><svg id="injected" width="60" height="60"><a id="svg-link"><rect width="60" height="60"/>' +
                '<set attributeName="href" to="javascript:alert(11)"/></a></svg>' +
                '<math><mi id="math-link" href="javascript:alert(12)">m</mi></math>');
        }""")
        page.wait_for_timeout(200)
        assert page.locator("#cover").get_attribute("style") is None
        assert page.locator("#injected set").count() == 0 and page.locator("#math-link").get_attribute("href") is None
        page.evaluate("""() => document.querySelector('#svg-link')
            .setAttributeNS('http://www.w3.org/1999/xlink', 'xlink:href', 'javascript:alert(13)')""")
        page.locator("#injected rect").click(force=True)
        page.evaluate(
            "() => { const a = document.createElementNS('http://www.w3.org/2000/svg', 'a');"
            " a.id = 'late'; document.querySelector('#injected').appendChild(a); }"
        )
        page.wait_for_timeout(300)
        assert dialogs == []
    finally:
        page.close()
        app.close()
