"""Raters: pseudonyms for who rated, invites, and the documents (terms) each accepted.

A rating carries its rater's pseudonym (raters.id, random), never a name: the name of an invited person
or a Hugging Face account lives only in the raters table, which exports and releases leave out. An
invite is a secret shown once (`python -m feedback_db raters add NAME`); only its sha256 is stored. The
first browser that opens it keeps a key of its own (its sha256 stored too), so a forwarded link does not
make a second person the same rater.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .records import MAX_NAME_CHARS, RaterKind, new_id
from .rules import current_rules, recompute
from .schema import Acceptance, Rater, Rating, utc_now

TERMS = "terms"


class RaterRefused(ValueError):
    """An invite or rater the store will not take; the message says what to do."""


@dataclass(frozen=True)
class RaterInfo:
    """A rater as the admin sees it."""

    id: str
    kind: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    ratings: int
    claimed: bool  # an invite: whether a browser has opened it


def digest(secret: str) -> str:
    """sha256 in hex: how invites, browser keys and documents are stored and compared."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def invite(session: Session, name: str) -> tuple[Rater, str]:
    """A new invited rater called `name`, and the invite's secret (shown once, never stored)."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_CHARS["rater"]:
        raise RaterRefused(f"a rater's name is 1 to {MAX_NAME_CHARS['rater']} characters, got {name!r}")
    if session.scalar(select(Rater).where(Rater.name == name)) is not None:
        raise RaterRefused(f"a rater named {name!r} exists already; pick another name, or revoke that one first")
    secret = secrets.token_urlsafe(24)
    rater = Rater(id=new_id(), kind="invited", name=name, invite_hash=digest(secret), created_at=utc_now())
    session.add(rater)
    session.flush()
    return rater, secret


def redeem(session: Session, secret: str, browser_key: str | None) -> tuple[Rater, str | None]:
    """The rater an invite names, for the browser holding `browser_key`.

    The first browser to open an invite gets a new key (returned; None when the browser's own key was
    accepted). Refused: an invite that is not one (forged), revoked, or opened already by another browser.
    """
    found = session.scalar(select(Rater).where(Rater.invite_hash == digest(secret or "")))
    if found is None or not secret:
        raise RaterRefused("this invite link is not valid: check that it was copied whole, or ask for a new one")
    if found.revoked_at is not None:
        raise RaterRefused("this invite was revoked; ratings need a valid invite (you can still chat)")
    if found.browser_hash is None:
        key = secrets.token_urlsafe(24)
        found.browser_hash = digest(key)
        session.flush()
        return found, key
    if browser_key and hmac.compare_digest(found.browser_hash, digest(browser_key)):
        return found, None
    raise RaterRefused(
        "this invite was already opened in another browser; an invite is for one person: ask for your own"
    )


def returning(session: Session, browser_key: str | None) -> Rater | None:
    """The invited rater whose browser holds `browser_key` (back without the link), if any and not revoked."""
    if not browser_key:
        return None
    found = session.scalar(select(Rater).where(Rater.browser_hash == digest(browser_key)))
    return found if found is not None and found.revoked_at is None else None


def named_rater(session: Session, kind: RaterKind, name: str) -> Rater:
    """The rater of this kind called `name` (a Hugging Face account, an imported file's rater), made on
    first use."""
    found = session.scalar(select(Rater).where(Rater.name == name))
    if found is not None:
        if found.kind != kind:
            raise RaterRefused(f"the name {name!r} belongs to an {found.kind} rater already")
        return found
    rater = Rater(id=new_id(), kind=kind, name=name, created_at=utc_now())
    session.add(rater)
    session.flush()
    return rater


def open_rater(session: Session) -> Rater:
    """A new anonymous rater for one browser session."""
    rater = Rater(id=new_id(), kind="open", created_at=utc_now())
    session.add(rater)
    session.flush()
    return rater


def revoke(session: Session, name: str) -> int:
    """Revoke the rater called `name`: its invite stops working and its ratings are set aside (reason
    'revoked'); returns how many ratings that touched."""
    found = session.scalar(select(Rater).where(Rater.name == name))
    if found is None:
        raise RaterRefused(f"no rater is called {name!r}; `python -m feedback_db raters list` shows them")
    if found.revoked_at is None:
        found.revoked_at = utc_now()
        session.flush()
    return recompute(session, current_rules(session), raters=[found.id])


def list_raters(session: Session) -> list[RaterInfo]:
    """Every rater, oldest first, with how many ratings each gave."""
    counts = dict(session.execute(select(Rating.rater, func.count()).group_by(Rating.rater)).all())
    return [
        RaterInfo(r.id, r.kind, r.name, r.created_at, r.revoked_at, counts.get(r.id, 0), r.browser_hash is not None)
        for r in session.scalars(select(Rater).order_by(Rater.created_at, Rater.id))
    ]


def accept(session: Session, rater_id: str, document: str, version: str) -> None:
    """Record that the rater accepted this version of a document (once; later calls keep the first time)."""
    if session.get(Acceptance, (rater_id, document, version)) is None:
        session.add(Acceptance(rater_id=rater_id, document=document, version=version, accepted_at=utc_now()))
        session.flush()


def accepted(session: Session, rater_id: str, document: str, version: str) -> bool:
    return session.get(Acceptance, (rater_id, document, version)) is not None
