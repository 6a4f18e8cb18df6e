"""What a public page must refuse whatever Gradio offers: uploads, and content from hosts it did not choose.

A plain ASGI middleware, wrapped around Gradio's app through `launch(app_kwargs=...)`:
- the page has no upload component, so `POST …/upload` (which Gradio serves to anyone, files of any
  size, and serves back) is refused;
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

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        await self.app(scope, receive, with_policy)
