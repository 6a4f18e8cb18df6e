"""What a public page must refuse whatever Gradio offers: uploads, and content from hosts it did not choose.

A plain ASGI middleware, wrapped around Gradio's app through `launch(app_kwargs=...)`:
- the page has no upload component, so `POST …/upload` (which Gradio serves to anyone, files of any
  size, and serves back) is refused;
- a full queue is told as "busy, try again in a moment", not as Gradio's queue arithmetic;
- every response carries a Content-Security-Policy that lets images, audio and video come only from
  the page itself (or data:/blob: URLs), so a markdown image in a model's answer cannot reach another
  host (a tracking pixel), and frames, plugins and foreign form targets are refused too;
- `GET /metrics` answers the operator's scraper (playground/metrics.py), if `MetricsAccess` lets it in.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse

from playground.downloads import PREFIX, OneTimeDownloads
from playground.metrics import CONTENT_TYPE, Metrics, MetricsAccess

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# No default-src: Gradio's own scripts and styles are inline; what is listed is what content can abuse.
POLICY = (
    "img-src 'self' data: blob:; media-src 'self' data: blob:; frame-src 'none'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'"
)
HEADERS = [  # besides the policy, which names the hosts that may frame the page
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
NO_UPLOADS = json.dumps({"error": "this app takes no uploads"}).encode()
GONE = json.dumps({"error": "this download link was used already or has expired: export again"}).encode()
# Gradio answers a join to a full queue with 503 and "Queue is full. Max size is N…": said for people.
BUSY = json.dumps(
    {"detail": "This demo is busy: every place in the queue is taken. Please try again in a moment."}
).encode()


class OpenStreams:
    """Which browser sessions have their queue event stream open now, as the guard sees the requests.

    Gradio runs a queued event whether or not anyone will read its result: an ask joined by a script
    that never opens its stream would still generate (issue 15 stored 1,000 such). The page opens its
    stream right after joining, so an ask that starts with no stream open, once `grace_s` has passed
    since it joined, has no one to show it to.
    """

    def __init__(self, grace_s: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_s, self.clock = grace_s, clock
        self.watched = False  # set by the Guard that sees the requests; unwatched, every session counts as there
        self._open: dict[str, int] = {}
        self._joined: dict[str, float] = {}
        self._changed = threading.Condition()

    def joined(self, session: str) -> None:
        """A request of the session joined the queue now (its validator passed)."""
        now = self.clock()
        with self._changed:
            if len(self._joined) > 1000:  # joins whose events never ran (cancelled in the queue)
                self._joined = {k: t for k, t in self._joined.items() if now - t < 10 * self.grace_s}
            self._joined[session] = now

    def opened(self, session: str) -> None:
        with self._changed:
            self._open[session] = self._open.get(session, 0) + 1
            self._changed.notify_all()

    def closed(self, session: str) -> None:
        with self._changed:
            left = self._open.get(session, 1) - 1
            if left > 0:
                self._open[session] = left
            else:
                self._open.pop(session, None)

    def is_open(self, session: str) -> bool:
        with self._changed:
            return session in self._open

    def wait(self, session: str) -> bool:
        """Whether the session's stream is open, waiting until `grace_s` after it joined at the latest."""
        if not self.watched:
            return True
        with self._changed:
            deadline = self._joined.pop(session, self.clock()) + self.grace_s
            while session not in self._open:
                left = deadline - self.clock()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


class Guard:
    """Refuses uploads, serves one-time export links, adds the content policy to every response, and
    tells which sessions have their event stream open."""

    def __init__(
        self,
        app: App,
        downloads: OneTimeDownloads | None = None,
        streams: OpenStreams | None = None,
        frame_ancestors: str = "'none'",
        metrics: Metrics | None = None,
        metrics_access: MetricsAccess = MetricsAccess(),
    ) -> None:
        self.app, self.downloads, self.streams = app, downloads, streams
        self.metrics, self.metrics_access = metrics, metrics_access
        if streams is not None:
            streams.watched = True
        self.headers = [(b"content-security-policy", f"{POLICY}; frame-ancestors {frame_ancestors}".encode()), *HEADERS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.streams is not None and scope["method"] == "GET" and scope["path"].endswith("/queue/data"):
            session = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [""])[0]
            if session:
                self.streams.opened(session)
                try:
                    await self._app(scope, receive, send)
                finally:
                    self.streams.closed(session)
                return
        await self._app(scope, receive, send)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "GET" and self.metrics is not None and _is_metrics(scope):
            await self._metrics(scope, send)
            return
        if scope["method"] == "GET" and PREFIX in scope["path"] and self.downloads is not None:
            await self._download(scope["path"].split(PREFIX, 1)[1], scope, receive, send)
            return
        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/upload"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"application/json"), *self.headers],
                }
            )
            await send({"type": "http.response.body", "body": NO_UPLOADS})
            return

        joining = scope["path"].rstrip("/").endswith("/queue/join")
        busy = False

        async def with_policy(message: Message) -> None:
            nonlocal busy
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *self.headers]
                if joining and message.get("status") == 503:  # the queue is full
                    busy = True
                    if self.metrics is not None:
                        self.metrics.count_refusal("busy")
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(BUSY)).encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and busy:
                if message.get("more_body"):
                    return  # Gradio's own text is dropped; ours goes out whole with the last part
                message = {"type": "http.response.body", "body": BUSY}
            await send(message)

        await self.app(scope, receive, with_policy)

    async def _metrics(self, scope: Scope, send: Send) -> None:
        """The metrics for whom `metrics_access` lets in (read in a worker thread: they query the
        database), else 403 and why."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = scope.get("client") or (None, None)
        refused = self.metrics_access.refusal(client[0], headers)
        if refused is None:
            status, kind, body = 200, CONTENT_TYPE, await run_in_threadpool(self.metrics.text)
        else:
            status, kind, body = 403, "text/plain; charset=utf-8", f"{refused}\n".encode()
        headers_out = [(b"content-type", kind.encode()), (b"cache-control", b"no-store"), *self.headers]
        await send({"type": "http.response.start", "status": status, "headers": headers_out})
        await send({"type": "http.response.body", "body": body})

    async def _download(self, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        """The file behind a one-time link, then gone; 404 for a used, expired or unknown link."""
        path = self.downloads.take(key)
        if path is None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"application/json"), *self.headers],
                }
            )
            await send({"type": "http.response.body", "body": GONE})
            return
        # starlette reads the file in a worker thread, not on the event loop, and deletes it once sent
        # (or once the client went away).
        headers = {k.decode(): v.decode() for k, v in self.headers} | {"cache-control": "no-store"}
        response = FileResponse(
            path,
            media_type="application/octet-stream",
            filename=path.name,
            headers=headers,
            background=BackgroundTask(path.unlink, missing_ok=True),
        )
        try:
            await response(scope, receive, send)
        finally:
            path.unlink(missing_ok=True)


def _is_metrics(scope: Scope) -> bool:
    """`/metrics` at the app's root (under its root path, when it is served under one)."""
    path = scope["path"].rstrip("/")
    return path == "/metrics" or path == scope.get("root_path", "").rstrip("/") + "/metrics"
