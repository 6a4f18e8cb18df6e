"""The page's queue protocol spoken directly (POST queue/join, then the queue/data event stream), as a
script or a forged request would, with whatever session hash and data it chooses."""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import httpx
from gradio_client.utils import apply_diff


def join(
    http: httpx.Client,
    url: str,
    fn_index: int,
    data: list[Any],
    session_hash: str | None = None,
    headers: dict[str, str] | None = None,
    *,
    body: str | None = None,
) -> httpx.Response:
    """POST queue/join for one event (a new random session unless `session_hash`); the answer as it came.

    `body`: the request's JSON text as given (what no JSON encoder writes, such as NaN), instead of `data`.
    """
    if body is not None:
        return http.post(
            f"{url}gradio_api/queue/join", content=body, headers={**(headers or {}), "Content-Type": "application/json"}
        )
    return http.post(
        f"{url}gradio_api/queue/join",
        headers=headers,
        json={
            "data": data,
            "fn_index": fn_index,
            "session_hash": session_hash or uuid.uuid4().hex[:11],
            "event_data": None,
            "trigger_id": None,
        },
    )


def messages(http: httpx.Client, url: str, session_hash: str) -> Iterator[dict[str, Any]]:
    """A session's queue/data event stream, message by message as bytes arrive, up to its
    process_completed (included)."""
    with http.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session_hash}) as events:
        for line in events.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            yield message
            if message.get("msg") == "process_completed":
                return


def snapshots(stream: Iterator[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], list[Any] | None]]:
    """Each message with the event's outputs so far, put together: streamed outputs arrive as diffs
    after the first, and the last message carries them whole."""
    state = None
    for message in stream:
        if message.get("msg") == "process_generating":
            output = message["output"]["data"]
            state = list(output) if state is None else [apply_diff(old, d) for old, d in zip(state, output)]
        yield message, state


def call(
    url: str,
    fn_index: int,
    data: list[Any],
    session_hash: str,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One event through the queue: {"success": bool, "data": the outputs, "error": the refusal}.

    A validator's refusal comes back at once (HTTP 422, its messages); a refusal while running comes
    as the event's error (with the outputs streamed until then in "data").
    """
    with httpx.Client(timeout=timeout, headers=headers) as http:
        joined = join(http, url, fn_index, data, session_hash)
        if joined.status_code == 422:
            said = [d.get("message", "") for d in joined.json().get("detail", []) if isinstance(d, dict)]
            return {"success": False, "data": None, "error": " ".join(m for m in said if m)}
        assert joined.status_code == 200, (joined.status_code, joined.text[:300])
        for message, state in snapshots(messages(http, url, session_hash)):
            if message.get("msg") == "process_completed":
                output = message.get("output") or {}
                if not message.get("success"):
                    return {"success": False, "data": state, "error": str(output.get("error") or output)}
                return {"success": True, "data": output.get("data"), "error": ""}
    raise AssertionError("the event stream ended without process_completed")


def refusal(result: dict[str, Any]) -> str:
    """The text of a refused event ('' when it succeeded)."""
    return "" if result["success"] else result["error"]


def form_token(outputs: list[Any]) -> str:
    """The form token among an /ask event's raw outputs (32 hex digits; the raw outputs include the
    components gradio_client leaves out, so its position differs from gradio_client's)."""
    tokens = [o for o in outputs if isinstance(o, str) and len(o) == 32 and all(c in "0123456789abcdef" for c in o)]
    assert len(tokens) == 1, tokens
    return tokens[0]
