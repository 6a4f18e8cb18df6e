"""A remote answer cut by its server's death keeps its count (issue 19): the tokens that streamed, the
first-token time and the speed are stored with the error, as a stopped answer's are.

The server here streams over HTTP/1.1 in chunked encoding, as uvicorn-based servers (vLLM,
`transformers serve`) do, and drops the connection in the middle of the body: what the client sees
when such a server process dies.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from feedback_db import responses_of
from models.remote import RemoteStreamer
from models.specs import ContenderSpec, EndpointSpec, GenerationParams, LineupSpec
from models.streaming import GenerationResult, StreamFailure
from playground.comparison import Playground

PIECES = 20  # text chunks sent before the connection drops
PROMPT_TOKENS = 9
PARAMS = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=200)
QUESTION = [{"role": "user", "content": "Count for me."}]


class _Dying(BaseHTTPRequestHandler):
    """Lists 'dies' and 'dies-counting'; answers PIECES chunks, then closes the socket mid-body.
    'dies-counting' sends usage with every chunk, two tokens a chunk (vLLM's continuous usage stats)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": m, "object": "model"} for m in ("dies", "dies-counting")]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for n in range(1, PIECES + 1):
            chunk = {
                "id": "cut",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": request["model"],
                "choices": [{"index": 0, "delta": {"content": f" w{n}"}, "finish_reason": None}],
            }
            if request["model"] == "dies-counting":
                chunk["usage"] = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 2 * n, "total_tokens": 9 + 2 * n}
            self._send_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            time.sleep(0.01)
        # The process dies: the connection ends without the last chunk, the finish reason or [DONE].
        self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        self.close_connection = True


@pytest.fixture()
def dying():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dying)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def contender(base_url: str, model: str) -> ContenderSpec:
    return ContenderSpec(name=model, endpoint=EndpointSpec(base_url=base_url, model=model), params=PARAMS)


def test_a_cut_stream_yields_what_it_streamed_then_fails(dying):
    dies = contender(dying, "dies")
    events, failure = [], None
    try:
        for event in RemoteStreamer([dies])(dies, QUESTION, PARAMS, stop=threading.Event(), seed=3):
            events.append(event)
    except StreamFailure as error:
        failure = error
    assert str(failure) == (
        f"The connection to the server at {dying} broke in the middle of the answer (the server may have "
        "stopped or restarted). The answer so far is kept."
    )
    pieces = [e for e in events if isinstance(e, str)]
    result = events[-1]
    assert isinstance(result, GenerationResult) and len(pieces) == PIECES
    assert result.finish_reason == "error" and result.text == "".join(pieces)
    assert result.completion_tokens == PIECES and result.usage is None
    assert 0 < result.time_to_first_token_s < result.duration_s and result.tokens_per_s > 0


def test_a_cut_answer_is_stored_with_its_tokens_first_token_time_and_speed(dying, database):
    streamer = RemoteStreamer([contender(dying, "dies"), contender(dying, "dies-counting")])
    lineup = LineupSpec(name="cut", contenders=tuple(streamer.contenders.values()))
    core = Playground(lineup, streamer, database, rng=random.Random(0))
    conversation = core.new_conversation()
    for _ in core.ask(conversation, "Count for me."):
        pass
    with database.session() as db:
        rows = {r.contender: r for r in responses_of(db, conversation.comparison_id)}
        stored = {
            name: (r.finish_reason, r.completion_tokens, r.prompt_tokens, r.usage, r.text.split()[-1])
            for name, r in rows.items()
        }
        timings = {name: (r.time_to_first_token_s, r.tokens_per_s) for name, r in rows.items()}
        errors = {r.error for r in rows.values()}
    last = f"w{PIECES}"
    assert stored == {
        "dies": ("error", PIECES, 0, None, last),  # no usage: the chunks counted, the prompt not counted here
        "dies-counting": (
            "error",
            2 * PIECES,
            PROMPT_TOKENS,
            {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 2 * PIECES, "total_tokens": 9 + 2 * PIECES},
            last,
        ),
    }
    assert all(first is not None and first > 0 and speed is not None and speed > 0 for first, speed in timings.values())
    assert len(errors) == 1 and "broke in the middle of the answer" in errors.pop()
    assert [p.status for p in conversation.panes] == ["error", "error"]
