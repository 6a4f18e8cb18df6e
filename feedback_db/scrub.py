"""Personal data and secrets in free text, replaced by typed placeholders before a release (issue 18).

Pure Python and conservative: a find must have the shape of its kind, so ordinary chat, code, dates,
times, version numbers and prices stay as they were (bench/scrub.py measures both sides). Not caught:
names, street addresses, e-mail addresses written out ("jane at example dot com"), local phone numbers
without an area code (555-1234), and secrets without a well-known prefix. Left alone on purpose: UUIDs
and hashes (not personal data), dotted quads right after a version word ("version 1.2.3.4").
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

KINDS: tuple[str, ...] = ("EMAIL", "PHONE", "IP_ADDRESS", "CARD_NUMBER", "SECRET")


@dataclass(frozen=True)
class Scrubbed:
    """A text with each find replaced by its placeholder ("<EMAIL>"), and how many of each kind."""

    text: str
    found: Mapping[str, int]

    @property
    def changed(self) -> bool:
        return bool(self.found)


# --- secrets: well-known shapes, replaced first so no other kind takes a piece of one ---------------------

_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"
    # the whole block; a pasted key cut before its END line loses its base64 lines to the end of the text
    r"(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|(?:\s*[A-Za-z0-9+/=:\-]+)*)",
    re.DOTALL,
)
_TOKEN_EDGE = r"(?<![A-Za-z0-9_\-])"
_SECRET = re.compile(
    _TOKEN_EDGE + r"(?:"
    # OpenAI: sk-, sk-proj-, sk-svcacct-, sk-admin-; a digit somewhere keeps "sk-learn-..." words out
    r"sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{20,}"
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face user access tokens (hf_ + 34)
    r"|gh[pousr]_[A-Za-z0-9]{36,}"  # GitHub classic tokens
    r"|github_pat_[A-Za-z0-9_]{22,}"  # GitHub fine-grained tokens
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS access key ids
    r")"
)

# --- e-mail ---------------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)

# --- card numbers: 13-19 digits in card groupings, kept only when the Luhn check passes ------------------

_CARD = re.compile(
    r"(?<![\d.,\-/])(?:"
    r"(?:4|5[1-5]|2[2-7]|3[0-9]|6(?:011|2|4[4-9]|5))\d{11,17}"  # unbroken: only behind a card-network prefix
    r"|\d{4}([ \-])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?"  # 4-4-4-4 (13-19 digits)
    r"|\d{4}([ \-])\d{6}\2\d{4,5}"  # American Express 4-6-5, Diners 4-6-4
    r")(?![\d]|[.,\-]\d)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str | None:
    digits = re.sub(r"\D", "", match.group())
    return "<CARD_NUMBER>" if 13 <= len(digits) <= 19 and _luhn(digits) else None


# --- IP addresses ---------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.\-]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w\-]|\.\d)")
# A dotted quad named as a version ("version 1.2.3.4", "build 10.0.19045.1") is a version, not an address.
_VERSION_WORD = re.compile(
    r"(?:version|versions|ver\.?|release|build|firmware|section|chapter|§|v)\s*:?\s*"
    r"(?:[\d.]+\s*(?:to|and|or|->|→|,|/)\s*)?$",  # "from version 1.2.3.4 to 1.2.3.5": both
    re.IGNORECASE,
)
_IPV6 = re.compile(
    r"(?<![\w.])(?<![0-9A-Fa-f:]:)(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|"
    + _OCTET
    + r"(?:\.\d+){3})?(?![\w:])"
)


def _ipv4(match: re.Match[str]) -> str | None:
    before = match.string[max(0, match.start() - 20) : match.start()]
    return None if _VERSION_WORD.search(before) else "<IP_ADDRESS>"


def _ipv6(match: re.Match[str]) -> str | None:
    candidate = match.group()
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    groups = [group for group in candidate.split(":") if group]
    # "::" shortens Python slices too (a[1::2]): a short form needs one group of 3+ hex digits to count.
    if "::" in candidate and not any(len(group) >= 3 for group in groups):
        return None
    return "<IP_ADDRESS>"


# --- phone numbers: international +CC, North American, and European trunk-0 groupings ------------------

_PHONE_EDGE_BEFORE = r"(?<![\w.,\-+/$€£])(?<!\d:)"  # "Contact:+44 ..." but not "10:30 ..."
_PHONE_EDGE_AFTER = r"(?![\w]|[.,\-/:]\d)"
_PHONE = re.compile(
    _PHONE_EDGE_BEFORE + r"(?:"
    # +49 30 1234 5678, +1 (555) 123-4567, +44 20 7946 0958, +33 6 12 34 56 78; 00 49 ... the same
    r"(?:\+|00[ ]?)[1-9]\d{0,2}(?:[ .\-]?\(?\d{1,4}\)?){2,6}"
    # (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-1234
    r"|(?:1[ .\-])?\(\d{3}\)[ ]?\d{3}[ .\-]\d{4}"
    r"|(?:1([ .\-]))?\d{3}([.\-])\d{3}\2\d{4}"
    # 030 1234 5678, 020 7946 0958, 06 12 34 56 78, 0171/1234567, 089-12345678
    r"|\(?0\d{1,4}\)?(?:[ /\-.]\d{2,8}){1,4}"
    r")" + _PHONE_EDGE_AFTER
)


def _phone(match: re.Match[str]) -> str | None:
    number = match.group()
    digits = re.sub(r"\D", "", number)
    if number.startswith("+") or number.startswith("00"):
        return "<PHONE>" if 8 <= len(digits) <= 15 else None
    if number.lstrip("(").startswith("0"):
        # 9 - 12 digits in two or more groups; dates (03.12.2026) and times have fewer
        return "<PHONE>" if 9 <= len(digits) <= 12 and not re.fullmatch(r"\d+(\.\d+)+", number) else None
    return "<PHONE>"


# --- the passes, in order: a PEM block or a token before anything that could take a piece of it, cards
# before phones (a card's 4-4-4-4 groups would otherwise pass for a phone number).
_Pass = tuple[str, re.Pattern[str], Callable[[re.Match[str]], str | None] | None]
_PASSES: tuple[_Pass, ...] = (
    ("SECRET", _PEM, None),
    ("SECRET", _SECRET, None),
    ("EMAIL", _EMAIL, None),
    ("CARD_NUMBER", _CARD, _card),
    ("IP_ADDRESS", _IPV6, _ipv6),
    ("IP_ADDRESS", _IPV4, _ipv4),
    ("PHONE", _PHONE, _phone),
)


def scrub(text: str) -> Scrubbed:
    """Replace e-mail addresses, phone numbers, IP addresses, card numbers and secrets in `text`."""
    found: Counter[str] = Counter()
    for kind, pattern, check in _PASSES:
        placeholder = f"<{kind}>"

        def replace(match: re.Match[str], kind: str = kind, placeholder: str = placeholder, check=check) -> str:
            result = check(match) if check else placeholder
            if result is None:
                return match.group()
            found[kind] += 1
            return result

        text = pattern.sub(replace, text)
    return Scrubbed(text=text, found={kind: found[kind] for kind in KINDS if found[kind]})
