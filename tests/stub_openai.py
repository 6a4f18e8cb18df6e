"""A small OpenAI-style stub for what no real server does on demand: 401, 429 with Retry-After, a
malformed chunk, a 5xx with an error text, vLLM's 404 for a model it does not serve, vLLM's 400 for
a conversation longer than its context, and vLLM's `max_model_len` in /v1/models. The model name a
request asks for picks the behaviour; everything else is served by real servers in the tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# "hello" and "small" answer "Hello there"; "small" lists a context of SMALL_CONTEXT tokens.
MODELS = ("needs-key", "limited", "malformed", "overloaded", "hello", "small", "too-long")
SMALL_CONTEXT, CONTEXT = 160, 4096
TOO_LONG = (
    "This model's maximum context length is 4096 tokens. However, you requested 4352 tokens (4096 in the "
    "messages, 256 in the completion). Please reduce the length of the messages or completion."
)
KEY = "sk-stub-secret-key"


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    body = {
        "id": "stub",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "stub-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    server: StubServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization"))
        if self.path == "/v1/models":
            self._json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "max_model_len": self.server.contexts.get(m, CONTEXT)}
                        for m in MODELS
                    ],
                },
            )
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization"))
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.server.requests.append(request)
        model = request.get("model")
        if model == "needs-key" and self.headers.get("Authorization") != f"Bearer {KEY}":
            self._json(401, {"error": {"message": "Invalid API key", "type": "invalid_request_error"}})
        elif model == "limited":
            self._json(429, {"error": {"message": "Too many requests in flight"}}, {"Retry-After": "7"})
        elif model == "too-long" or model in self.server.too_long:
            self._json(400, {"object": "error", "message": TOO_LONG, "type": "BadRequestError", "code": 400})
        elif model == "overloaded":
            self._json(503, {"error": {"message": "engine overloaded, 12 requests waiting"}})
        elif model not in MODELS:  # as vLLM answers
            self._json(404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError"}})
        else:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(_chunk("Hello"))
            self.wfile.write(_chunk(" there"))
            if model == "malformed":
                self.wfile.write(b'data: {"id": "stub", "choices": [{"delta": {"content": "x"\n\n')
            else:
                self.wfile.write(_chunk(None, "stop"))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()


class StubServer(ThreadingHTTPServer):
    """Serves on a free loopback port in a thread; `authorizations` holds each request's header and
    `requests` each POST's body. A test may change `contexts` and `too_long` while it serves."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.authorizations: list[str | None] = []
        self.requests: list[dict] = []
        self.contexts = {"small": SMALL_CONTEXT}  # what /v1/models lists as max_model_len (else CONTEXT)
        self.too_long: set[str] = set()  # models that answer vLLM's context-length 400 as "too-long" does
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
