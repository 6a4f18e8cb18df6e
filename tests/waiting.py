"""Waiting in tests for something another thread or process does: poll until it holds, or fail."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], timeout_s: float = 30.0, *, every_s: float = 0.05, what: str = "") -> T:
    """`condition()` once it is truthy, polled every `every_s`; the test fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:g} s: {what or 'the condition never held'}")
        time.sleep(every_s)
