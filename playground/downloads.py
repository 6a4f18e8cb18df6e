"""One-time download links for admin exports.

Gradio serves a returned file to anyone holding its URL, token or not. An export is instead handed
out as a link with 256 random bits in it that works once, within `ttl_s`: the admin who passed the
token gets it, and the file is deleted as soon as it has been sent (or when the link expires).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PREFIX = "/playground-export/"


@dataclass(frozen=True)
class _Offer:
    path: Path
    expires: float


class OneTimeDownloads:
    """Links to files, each good for one download before it expires."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._offers: dict[str, _Offer] = {}
        self._lock = threading.Lock()

    def offer(self, path: Path) -> str:
        """The link's path for `path` (relative to the page, so it works under any mount point)."""
        key = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            self._expire(now)
            self._offers[key] = _Offer(path, now + self.ttl_s)
        return f"{PREFIX.lstrip('/')}{key}"

    def take(self, key: str) -> Path | None:
        """The file behind `key`, once; None for a used, expired or unknown key."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            offer = self._offers.pop(key, None)
        return offer.path if offer is not None and offer.path.is_file() else None

    def _expire(self, now: float) -> None:
        for key in [k for k, offer in self._offers.items() if offer.expires < now]:
            self._offers.pop(key).path.unlink(missing_ok=True)
