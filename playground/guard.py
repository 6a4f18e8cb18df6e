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
from typing import Any, Awaitable, Callable

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
# Gradio answers a join to a full queue with 503 and "Queue is full. Max size is N…": said for people.
BUSY = json.dumps({"detail": "This demo is busy: every place in the queue is taken. Please try again in a "
                             "moment."}).encode()


class Guard:
    """Refuses uploads and adds the content policy to every HTTP response."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
