"""Who is asking, without keeping who they are: a salted hash of the client's address, and per-visitor limits.

The hash is stored with each comparison, so that a visitor's limits hold across restarts and app
processes, and abuse can be found and removed; the address itself is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

SALT_FILE = "visitor-salt"


@dataclass(frozen=True)
class VisitorPolicy:
    """How visitors are told apart and how much each may ask; None: no limit."""

    salt: bytes
    trusted_proxy: bool = False  # behind a proxy the app trusts (a Space): the first X-Forwarded-For hop
    per_minute: int | None = None
    per_day: int | None = None

    def __post_init__(self) -> None:
        for name in ("per_minute", "per_day"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"the {name.replace('_', ' ')} limit must be a whole number of at least 1, "
                                 f"got {value!r}")
        if len(self.salt) < 16:
            raise ValueError("the visitor salt must be at least 16 bytes")

    def key(self, client_host: str | None, forwarded_for: str | None = None) -> str:
        """The visitor's key: HMAC-SHA256 of the address under the salt, 32 hex digits.

        X-Forwarded-For is read only behind a trusted proxy, and then only its first hop (the
        client the proxy saw): anyone can send the header, so elsewhere it would let a visitor pick
        a new key for every request.
        """
        address = client_host or "unknown"
        if self.trusted_proxy and forwarded_for:
            address = forwarded_for.split(",")[0].strip() or address
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
