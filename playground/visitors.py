"""Who is asking, without keeping who they are: a salted hash of the client's address, and per-visitor limits.

The hash is stored with each comparison, so that a visitor's limits hold across restarts and app
processes, and abuse can be found and removed; the address itself is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from playground.errors import SettingsError

SALT_FILE = "visitor-salt"


@dataclass(frozen=True)
class VisitorPolicy:
    """How visitors are told apart and how much each may ask; None: no limit."""

    salt: bytes
    # Reverse proxies in front of the app that each append the address they saw to X-Forwarded-For
    # (a Space's, an nginx): 0 ignores the header, since anyone can send it.
    trusted_proxies: int = 0
    per_minute: int | None = None
    per_day: int | None = None
    in_flight: int | None = None  # comparisons one visitor may have running or waiting at once

    def __post_init__(self) -> None:
        for name in ("per_minute", "per_day", "in_flight"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SettingsError(
                    f"the {name.replace('_', ' ')} limit must be a whole number of at least 1, got {value!r}"
                )
        if (
            isinstance(self.trusted_proxies, bool)
            or not isinstance(self.trusted_proxies, int)
            or self.trusted_proxies < 0
        ):
            raise SettingsError(f"the number of trusted proxies must be a whole number, got {self.trusted_proxies!r}")
        if len(self.salt) < 16:
            raise SettingsError("the visitor salt must be at least 16 bytes")

    def address(self, client_host: str | None, forwarded_for: str | None = None) -> str:
        """The visitor's address: the peer's, or behind N trusted proxies the hop the first of them
        added, N-th from the right of X-Forwarded-For.

        Hops to the left of that one were written by the client, who can write anything there; a
        header with fewer hops than trusted proxies did not come through them all.
        """
        address = client_host or "unknown"
        if self.trusted_proxies and forwarded_for:
            hops = [hop.strip() for hop in forwarded_for.split(",")]
            if len(hops) >= self.trusted_proxies and hops[-self.trusted_proxies]:
                address = hops[-self.trusted_proxies]
        return address

    def key(self, client_host: str | None, forwarded_for: str | None = None) -> str:
        """The visitor's key: HMAC-SHA256 of their address (`address`) under the salt, 32 hex digits."""
        address = self.address(client_host, forwarded_for)
        return hmac.new(self.salt, address.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:32]

    def windows(self, now: datetime | None = None) -> list[tuple[str, int, datetime]]:
        """(name, limit, start) for each limit that is on."""
        now = now or datetime.now(timezone.utc)
        found = []
        if self.per_minute:
            found.append(("minute", self.per_minute, now - timedelta(minutes=1)))
        if self.per_day:
            found.append(("day", self.per_day, now - timedelta(days=1)))
        return found


def load_salt(data_dir: Path, env_value: str | None = None) -> bytes:
    """The salt from PLAYGROUND_VISITOR_SALT, else the one kept in `data_dir` (made on first use).

    Kept, not made per start: a new salt would give every visitor a new key, resetting their limits
    and breaking the link between their comparisons.
    """
    if env_value:
        return env_value.encode()
    path = data_dir / SALT_FILE
    if path.is_file():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(32).encode()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # readable by the app only
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as file:
        file.write(salt)
    return salt


class InFlight:
    """Comparisons each visitor has running or waiting, admitted where a request joins the queue.

    A ticket is taken when an ask is admitted (waiting), turns to running when its run starts, and
    goes when the run ends. A waiting ticket whose run never starts (its page left the queue, or Clear
    cancelled it) goes when its conversation is forgotten, or after `wait_s`.
    """

    def __init__(self, limit: int | None, wait_s: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.wait_s, self.clock = limit, wait_s, clock
        self._tickets: dict[str, list[_Ticket]] = {}
        self._lock = threading.Lock()

    def admit(self, visitor: str | None, conversation: str) -> bool:
        """Take a waiting ticket for the conversation; False when the visitor already holds `limit`."""
        if self.limit is None or visitor is None:
            return True
        now = self.clock()
        with self._lock:
            tickets = [t for t in self._tickets.get(visitor, []) if t.running or now - t.since < self.wait_s]
            admitted = len(tickets) < self.limit
            if admitted:
                tickets.append(_Ticket(conversation, now))
            self._tickets[visitor] = tickets
            return admitted

    def start(self, visitor: str | None, conversation: str) -> bool:
        """The conversation's run begins: its waiting ticket turns to running. A run that was not
        admitted at the queue (Regenerate) takes a new one if the visitor has room; False if not."""
        if self.limit is None or visitor is None:
            return True
        with self._lock:
            tickets = self._tickets.setdefault(visitor, [])
            ticket = next((t for t in tickets if t.conversation == conversation and not t.running), None)
            if ticket is None:
                if len(tickets) >= self.limit:
                    return False
                ticket = _Ticket(conversation, self.clock())
                tickets.append(ticket)
            ticket.running = True
            return True

    def finish(self, visitor: str | None, conversation: str) -> None:
        """The conversation's run ended."""
        if self.limit is None or visitor is None:
            return
        with self._lock:
            tickets = self._tickets.get(visitor, [])
            running = next((t for t in tickets if t.conversation == conversation and t.running), None)
            if running is not None:
                tickets.remove(running)
            if not tickets:
                self._tickets.pop(visitor, None)

    def forget(self, conversation: str) -> None:
        """The conversation's waiting tickets go, whoever holds them: its page left, or it was cleared."""
        if self.limit is None:
            return
        with self._lock:
            for visitor, tickets in list(self._tickets.items()):
                tickets[:] = [t for t in tickets if t.conversation != conversation or t.running]
                if not tickets:
                    del self._tickets[visitor]


@dataclass
class _Ticket:
    conversation: str
    since: float
    running: bool = False


class FailedAttempts:
    """Wrong secrets per visitor: after `limit` in `window_s`, that visitor is refused until the window
    passes, without any check or wait that would cost the server (a guess must not hold a worker)."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, visitor: str) -> bool:
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(visitor, []) if now - t < self.window_s]
            if recent:
                self._failures[visitor] = recent
            else:
                self._failures.pop(visitor, None)
            return len(recent) >= self.limit

    def failed(self, visitor: str) -> None:
        with self._lock:
            self._failures.setdefault(visitor, []).append(self.clock())
