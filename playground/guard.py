"""What a public page must refuse whatever Gradio offers: uploads, and content from hosts it did not choose.

A plain ASGI middleware, wrapped around Gradio's app through `launch(app_kwargs=...)`:
- the page has no upload component, so `POST …/upload` (which Gradio serves to anyone, files of any
  size, and serves back) is refused;
- a full queue is told as "busy, try again in a moment", not as Gradio's queue arithmetic;
- every response carries a Content-Security-Policy that lets images, audio and video come only from
  the page itself (or data:/blob: URLs), so a markdown image in a model's answer cannot reach another
  host (a tracking pixel), and frames, plugins and foreign form targets are refused too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Awaitable, Callable

from playground.downloads import PREFIX, OneTimeDownloads

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# No default-src: Gradio's own scripts and styles are inline; what is listed is what content can abuse.
POLICY = ("img-src 'self' data: blob:; media-src 'self' data: blob:; frame-src 'none'; object-src 'none'; "
          "base-uri 'self'; form-action 'self'")
HEADERS = [
    (b"content-security-policy", POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
NO_UPLOADS = json.dumps({"error": "this app takes no uploads"}).encode()
GONE = json.dumps({"error": "this download link was used already or has expired: export again"}).encode()
CHUNK = 1 << 20
# Gradio answers a join to a full queue with 503 and "Queue is full. Max size is N…": said for people.
BUSY = json.dumps({"detail": "This demo is busy: every place in the queue is taken. Please try again in a "
                             "moment."}).encode()


class Guard:
    """Refuses uploads, serves one-time export links, and adds the content policy to every response."""

    def __init__(self, app: App, downloads: OneTimeDownloads | None = None) -> None:
        self.app, self.downloads = app, downloads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and PREFIX in scope["path"] and self.downloads is not None:
            await self._download(scope["path"].split(PREFIX, 1)[1], send)
            return
        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/upload"):
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"), *HEADERS]})
            await send({"type": "http.response.body", "body": NO_UPLOADS})
            return

        joining = scope["path"].rstrip("/").endswith("/queue/join")
        busy = False

        async def with_policy(message: Message) -> None:
            nonlocal busy
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *HEADERS]
                if joining and message.get("status") == 503:  # the queue is full
                    busy = True
                    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(BUSY)).encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and busy:
                if message.get("more_body"):
                    return  # Gradio's own text is dropped; ours goes out whole with the last part
                message = {"type": "http.response.body", "body": BUSY}
            await send(message)

        await self.app(scope, receive, with_policy)

    async def _download(self, key: str, send: Send) -> None:
        """The file behind a one-time link, then gone; 404 for a used, expired or unknown link."""
        path = self.downloads.take(key)
        if path is None:
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json"), *HEADERS]})
            await send({"type": "http.response.body", "body": GONE})
            return
        try:
            disposition = f'attachment; filename="{path.name}"'.encode()
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/octet-stream"), (b"content-disposition", disposition),
                (b"content-length", str(path.stat().st_size).encode()), (b"cache-control", b"no-store"), *HEADERS]})
            with path.open("rb") as file:
                while chunk := file.read(CHUNK):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            Path(path).unlink(missing_ok=True)
