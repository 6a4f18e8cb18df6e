"""Who may rate, under which pseudonym, and the terms and guidelines they rate under.

A browser session gets a seat the first time it does anything (asks, accepts the terms, reviews,
rates): with `--raters open` (the default) any seat rates; with `--raters invited` only a seat opened
from an invite link rates, and others may still chat; with `--raters hub` a Hugging Face account's
seat rates. The pseudonym on every rating is the seat's raters.id; names stay in the raters table.
With `--terms`, nothing is generated or stored for a browser until its seat accepted the terms'
current version; with `--guidelines`, every rating records the version in force.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from feedback_db import Database
from feedback_db.raters import TERMS, RaterRefused, accept, accepted, named_rater, open_rater, redeem, returning
from playground.errors import PlaygroundError, SettingsError
from playground.visitors import FailedAttempts

RaterMode = Literal["open", "invited", "hub"]
RATER_MODES: tuple[str, ...] = ("open", "invited", "hub")
MAX_DOCUMENT_CHARS = 100_000
# Anonymous seats one address may start an hour: each is a row, and a script can open sessions by the
# thousand (a person opens a few).
NEW_SEATS_PER_HOUR = 30
# The hosted profile's terms when the operator gives none (playground/default_terms.md).
DEFAULT_TERMS = Path(__file__).with_name("default_terms.md")


@dataclass(frozen=True)
class Document:
    """Terms or guidelines as shown, and their version: the sha256 of the text."""

    text: str
    version: str

    @classmethod
    def read(cls, path: Path, option: str) -> Document:
        """The file given to `option`, or SettingsError saying what is wrong with it."""
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(f"{option} {path}: cannot be read ({error}); give a UTF-8 markdown file") from None
        if not text:
            raise SettingsError(f"{option} {path}: the file is empty; write what raters must read")
        if len(text) > MAX_DOCUMENT_CHARS:
            raise SettingsError(f"{option} {path}: {len(text)} characters, at most {MAX_DOCUMENT_CHARS} are shown")
        return cls(text, hashlib.sha256(text.encode("utf-8")).hexdigest())


@dataclass(frozen=True)
class RaterPolicy:
    """Who rates (`mode`), what they accept and read, and how the review queue fills comparisons."""

    mode: RaterMode = "open"
    terms: Document | None = None
    guidelines: Document | None = None
    overlap: int = 3  # the review queue brings each comparison up to this many ratings first
    gold_rate: float = 0.1  # the share of review items that are known-answer (gold) items, when there are any

    def __post_init__(self) -> None:
        if self.mode not in RATER_MODES:
            raise SettingsError(f"--raters must be one of {', '.join(RATER_MODES)}, got {self.mode!r}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 1:
            raise SettingsError(f"--overlap must be a whole number of at least 1, got {self.overlap!r}")
        if not 0 <= self.gold_rate <= 1:
            raise SettingsError(f"--gold-rate must be between 0 and 1, got {self.gold_rate!r}")


@dataclass
class Seat:
    """A browser session's rater: its pseudonym, its kind, and the terms version it accepted."""

    id: str
    kind: str
    terms_version: str | None = None


class Raters:
    """Seats for browser sessions, over the raters table."""

    def __init__(self, database: Database, policy: RaterPolicy = RaterPolicy()) -> None:
        self.database, self.policy = database, policy
        self.new_seats = FailedAttempts(limit=NEW_SEATS_PER_HOUR, window_s=3600.0)

    def may_rate(self, seat: Seat | None) -> bool:
        """Open: any seat rates. Invited: invited seats. Hub: signed-in and invited seats (others may chat)."""
        if seat is None:
            return False
        return (
            self.policy.mode == "open" or seat.kind == "invited" or (self.policy.mode == "hub" and seat.kind == "hub")
        )

    def not_a_rater(self) -> str:
        if self.policy.mode == "invited":
            return "rating here needs an invite: open the link you were sent (you can still chat)"
        return "rating here needs a Hugging Face account: sign in with the button above (you can still chat)"

    def seat_for(self, seat: Seat | None, visitor: str | None = None) -> Seat:
        """The session's seat, made now for a session that has none (an anonymous one); `visitor` (the
        address's key) may start NEW_SEATS_PER_HOUR of those."""
        if seat is not None:
            return seat
        if visitor and self.new_seats.blocked(visitor):
            raise PlaygroundError(
                f"your address started {NEW_SEATS_PER_HOUR} new sessions in the last hour, the most this app takes: "
                "keep using one page, or wait a while"
            )
        if visitor:
            self.new_seats.failed(visitor)  # counted, not failed: the window counter is the same
        with self.database.session() as db:
            return Seat(open_rater(db).id, "open")

    def identify(
        self, *, invite: str | None, browser_key: str | None, hub_name: str | None
    ) -> tuple[Seat | None, str, str | None]:
        """A new page's seat: from its invite link, the key its browser kept, or its Hugging Face account.

        Returns (the seat or None, a line for the page, a new browser key to keep or None). An invite
        that is forged, revoked or opened in another browser gives no seat and a sentence saying so.
        """
        mode = self.policy.mode
        try:
            with self.database.session() as db:
                # Invites work in every mode: an invited rater is known by name, in an open app too.
                if mode == "hub" and hub_name:
                    rater, key = named_rater(db, "hub", hub_name), None
                elif invite:
                    rater, key = redeem(db, invite, browser_key)
                else:
                    rater, key = returning(db, browser_key), None
                if rater is None:
                    return None, "" if mode == "open" else self.not_a_rater(), None
                terms = self.policy.terms
                version = terms.version if terms and accepted(db, rater.id, TERMS, terms.version) else None
                seat = Seat(rater.id, rater.kind, version)
        except RaterRefused as refused:
            return None, str(refused), None
        return seat, f"You rate as {'an invited rater' if seat.kind == 'invited' else 'a signed-in rater'}.", key

    def needs_terms(self, seat: Seat | None) -> bool:
        terms = self.policy.terms
        return terms is not None and (seat is None or seat.terms_version != terms.version)

    def check_terms(self, seat: Seat | None) -> None:
        """Nothing is generated or stored for a browser that has not accepted the terms in force."""
        if self.needs_terms(seat):
            raise PlaygroundError("read and accept the terms above first: nothing is asked or stored before that")

    def accept_terms(self, seat: Seat | None, visitor: str | None = None) -> Seat:
        """The session accepts the terms in force; its seat (made now if it has none) records the version."""
        terms = self.policy.terms
        if terms is None:
            raise PlaygroundError("this app has no terms to accept")
        seat = self.seat_for(seat, visitor)
        with self.database.session() as db:
            accept(db, seat.id, TERMS, terms.version)
        seat.terms_version = terms.version
        return seat

    def rating_fields(self, seat: Seat | None) -> dict[str, str | None]:
        """What a rating by this seat records about its rater: the pseudonym and the versions in force."""
        if not self.may_rate(seat):
            raise PlaygroundError(self.not_a_rater())
        self.check_terms(seat)
        guidelines = self.policy.guidelines
        return {
            "rater": seat.id,
            "terms_version": seat.terms_version,
            "guidelines_version": guidelines.version if guidelines else None,
        }
