"""Texts for measuring feedback_db.scrub: planted personal data in chat sentences, and ordinary texts.

Built in code from a fixed seed, so the bench and the tests see the same samples without a data file.
A planted text is a list of segments: plain strings and `Item(kind, value)`.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from models.prompt_format import LLAMA2_DEFAULT_SYSTEM_PROMPT


@dataclass(frozen=True)
class Item:
    """One planted find: its kind (feedback_db.scrub.KINDS) and the text planted."""

    kind: str
    value: str


Segment = str | Item

_FIRST = ["john", "Maria", "li.wei", "o'brien", "ANA", "j.smith", "priya_k", "tom+news", "d-martin", "zoe99"]
_DOMAINS = ["example.com", "Example.org", "mail.example.co.uk", "uni-bonn.de", "EXAMPLE.NET", "posteo.io"]


def _email(rng: random.Random) -> str:
    name = rng.choice(_FIRST).replace("'", "")
    return f"{name}{rng.choice(['', '.work', str(rng.randint(1, 99))])}@{rng.choice(_DOMAINS)}"


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


_PHONE_SHAPES = [
    lambda r: f"+1 ({r.randint(201, 989)}) {r.randint(200, 999)}-{_digits(r, 4)}",
    lambda r: f"({r.randint(201, 989)}) {r.randint(200, 999)}-{_digits(r, 4)}",
    lambda r: f"{r.randint(201, 989)}-{r.randint(200, 999)}-{_digits(r, 4)}",
    lambda r: f"{r.randint(201, 989)}.{r.randint(200, 999)}.{_digits(r, 4)}",
    lambda r: f"1-800-{r.randint(200, 999)}-{_digits(r, 4)}",
    lambda r: f"+1-{r.randint(201, 989)}-{r.randint(200, 999)}-{_digits(r, 4)}",
    lambda r: f"+49 30 {_digits(r, 8)}",
    lambda r: f"+49 (0)89 {_digits(r, 4)} {_digits(r, 3)}",
    lambda r: f"+44 20 {_digits(r, 4)} {_digits(r, 4)}",
    lambda r: f"+44 7700 {_digits(r, 6)}",
    lambda r: f"+33 6 {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)}",
    lambda r: f"+33612{_digits(r, 6)}",
    lambda r: f"+39 02 {_digits(r, 4)} {_digits(r, 4)}",
    lambda r: f"+91 98{_digits(r, 3)} {_digits(r, 5)}",
    lambda r: f"0049 171 {_digits(r, 7)}",
    lambda r: f"030 {_digits(r, 4)} {_digits(r, 4)}",
    lambda r: f"020 {_digits(r, 4)} {_digits(r, 4)}",
    lambda r: f"06 {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)}",
    lambda r: f"0171/{_digits(r, 7)}",
    lambda r: f"089-{_digits(r, 8)}",
]


def _luhn_complete(body: str) -> str:
    for check in string.digits:
        digits = body + check
        total = sum(
            (lambda v: v - 9 if v > 9 else v)(int(c) * (2 if i % 2 else 1)) for i, c in enumerate(reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def _card(rng: random.Random) -> str:
    prefix, length, groups = rng.choice(
        [("4", 16, (4, 4, 4, 4)), ("51", 16, (4, 4, 4, 4)), ("2221", 16, (4, 4, 4, 4)), ("6011", 16, (4, 4, 4, 4)),
         ("34", 15, (4, 6, 5)), ("37", 15, (4, 6, 5)), ("36", 14, (4, 6, 4)), ("4", 13, (4, 4, 4, 1)),
         ("62", 19, (4, 4, 4, 4, 3))]
    )  # fmt: skip
    digits = _luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    separator = rng.choice([" ", "-", ""])
    parts, start = [], 0
    for size in groups:
        parts.append(digits[start : start + size])
        start += size
    return separator.join(parts)


def _ip(rng: random.Random) -> str:
    shape = rng.randrange(5)
    if shape == 0:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    if shape == 1:
        return ":".join(f"{rng.randrange(65536):x}" for _ in range(8))
    if shape == 2:
        return f"fe80::{rng.randrange(65536):x}:{rng.randrange(65536):x}"
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


_ALNUM = string.ascii_letters + string.digits


def _secret(rng: random.Random) -> str:
    def run(count: int, alphabet: str = _ALNUM) -> str:
        return "".join(rng.choice(alphabet) for _ in range(count))

    shape = rng.randrange(8)
    if shape == 0:
        return f"sk-proj-{run(40)}_{run(20)}"
    if shape == 1:
        return f"sk-{run(48)}"
    if shape == 2:
        return f"hf_{run(34)}"
    if shape == 3:
        return f"{rng.choice(['ghp', 'gho', 'ghs'])}_{run(36)}"
    if shape == 4:
        return f"github_pat_{run(22)}_{run(59)}"
    if shape == 5:
        return f"{rng.choice(['AKIA', 'ASIA'])}{run(16, string.ascii_uppercase + string.digits)}"
    body = "\n".join(run(64, _ALNUM + "+/") for _ in range(rng.randint(2, 5)))
    label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


_MAKERS = {"EMAIL": _email, "PHONE": lambda r: r.choice(_PHONE_SHAPES)(r), "IP_ADDRESS": _ip,
           "CARD_NUMBER": _card, "SECRET": _secret}  # fmt: skip

# Chat sentences with one to three slots ("{}"), the slot at the start, middle, end, or inside punctuation.
_TEMPLATES = [
    "You can reach me at {} if the answer is unclear.",
    "{} is what I use, please don't share it.",
    "my contact: {}",
    "Please write to {}, or call {} after 5pm.",
    "I got locked out; the server at {} rejects my login.",
    "Here is my key ({}) - why does the API return 401?",
    'Is it safe to paste "{}" into a chat like this?',
    "The logs show requests from {} and {} at the same minute.",
    "ok so my card is {} and it got declined twice",
    "Fix this config:\n\nhost = {}\ntoken = {}\n",
    "Thanks! Send the invoice to {}; my number is {}.",
    "[INST] My details are {} / {} / {} [/INST] I can't store personal data.",
    "Can you format {} nicely for a letter?",
    "USER: {}\nASSISTANT: That looks like personal information; I will not repeat it.",
    "why does '{}' fail the regex?",
    "Contact:{}",
]


def planted_texts(count: int = 720, seed: int = 18) -> list[list[Segment]]:
    """`count` chat texts holding 1-3 planted items each, every kind planted in turn."""
    rng = random.Random(seed)
    texts: list[list[Segment]] = []
    kinds = list(_MAKERS)
    turn = 0
    for index in range(count):
        pieces = rng.choice(_TEMPLATES).split("{}")
        if rng.random() < 0.15:  # case and spacing variations of the whole sentence
            pieces = [p.upper() if rng.random() < 0.5 else p.replace(" ", "  ") for p in pieces]
        segments: list[Segment] = [pieces[0]]
        for piece in pieces[1:]:
            kind = kinds[turn % len(kinds)]
            turn += 1
            segments += [Item(kind, _MAKERS[kind](rng)), piece]
        texts.append([s for s in segments if s != ""])
    return texts


LLAMA2_DIALOGS = [
    "<s>[INST] <<SYS>>\n" + LLAMA2_DEFAULT_SYSTEM_PROMPT + "\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 </s>",
    "<s>[INST] <<SYS>>\nAnswer in one word.\n<</SYS>>\n\nCapital of France? [/INST] Paris. </s>"
    "<s>[INST] And of Italy? [/INST] Rome. </s><s>[INST] And of Spain? [/INST]",
    "<s>[INST] <<SYS>>\nYou are assistant.\n<</SYS>>\n\nhello [/INST] how can I help you? </s>"
    "<s>[INST] how much is 2+2? [/INST]",
    "<s>[INST] Führer 🦙 ½ 我想在apple工作 [/INST] ok 😁 </s><s>[INST]    Hello\n    Hello [/INST]",
    "<s>[INST] What do <s> and </s> mean? [/INST]",
    "<s>[INST]   indented\tquestion   [/INST] \n\nanswer\n </s><s>[INST] next\n\n [/INST]",
]

ORDINARY = [
    *LLAMA2_DIALOGS,
    "The meeting is on 2026-12-03 at 14:30; the deadline is 03.12.2026, or 12/03/2026 in US notation.",
    "It took 1:23:45 to run, from 09:15:00 to 10:38:45 UTC (2026-12-03T10:38:45Z).",
    "Python 3.11.4, Node v20.11.1, PostgreSQL 16.2 and numpy==1.26.4 are installed.",
    "Upgrade from version 1.2.3.4 to 1.2.3.5; Windows build 10.0.19045.3803 is fine.",
    "The book costs $24.99, the course €1,299.00 and the bundle £3,450.50 (was 4 200,00 €).",
    "pi is 3.14159265358979, e is 2.71828, and 2^64 = 18446744073709551616.",
    "The ISBN is 978-3-16-148410-0; the older ISBN-10 is 0-306-40615-2.",
    "Order #4821937 shipped; tracking number 1Z999AA10123456784.",
    "The UUID is 550e8400-e29b-41d4-a716-446655440000 and the commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b.",
    "In 1969 humans landed on the moon; in 2024 about 8,100,000,000 people lived on Earth.",
    "```python\nfor i in range(10):\n    print(i * 3.5, i ** 2, x[1::2])\n```",
    "```js\nconst total = items.reduce((a, b) => a + b.price * 1.19, 0).toFixed(2);\n```",
    "```sql\nSELECT id, created_at FROM comparisons WHERE created_at > '2026-01-01' LIMIT 100 OFFSET 200;\n```",
    "```cpp\nstd::vector<int> v{1, 2, 3}; auto it = std::find(v.begin(), v.end(), 2);\n```",
    "The ratio is 16:9, the score 3:1, and the bible verse John 3:16.",
    "Set the MAC to 00:1A:2B:3C:4D:5E and the mask to /24.",
    "Matrix: [[0.12, 0.34], [0.56, 0.78]]; loss 0.0012345 after 10000 steps.",
    "The temperature was -12.5 °C at 06:45 and +3 °C by noon.",
    "Page 123-145 of volume 12, pages 1024 to 2048.",
    "Use @app.route('/') and @pytest.fixture in your code; tag me @someone on the forum.",
    "Dimensions: 1920x1080, 3840 × 2160; aspect 1.777.",
    "Coordinates 48.8566, 2.3522 (Paris) and 40.7128° N, 74.0060° W.",
    "sk-learn is a common misspelling of scikit-learn; hf_hub_download fetches files.",
    "Run `pip install torch==2.3.1+cu121` and `git checkout v1.2.3`.",
    "The year range 1990-2000 and the span 10-20-30 are not phone numbers.",
    "Between 0 and 1, 0.5 is half; 0 100 200 300 are the ticks.",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUabc\n-----END CERTIFICATE-----",
    "Chapter 3.2.1 explains it; see section 4.5.6.7 of the spec.",
    "Big numbers: 1,000,000 and 12 345 678 and 1e9.",
    "The hash is 5d41402abc4b2a76b9719d911017c592 (md5 of hello).",
]


def _generated_ordinary(count: int, seed: int) -> list[str]:
    """Sentences with dates, times, versions, prices, math and identifiers drawn at random."""
    rng = random.Random(seed)
    shapes = [
        lambda: (
            f"The release on {rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
            f"shipped version {rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}."
        ),
        lambda: (
            f"It started at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} "
            f"and cost ${rng.randint(1, 9999)}.{rng.randint(0, 99):02d}."
        ),
        lambda: f"x = {rng.uniform(-1000, 1000):.6f} * {rng.randint(2, 64)} ** {rng.randint(2, 9)}",
        lambda: (
            f"On {rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1990, 2030)} "
            f"we sold {rng.randint(1, 999)} units at €{rng.randint(1, 999)},{rng.randint(0, 99):02d}."
        ),
        lambda: (
            f"SELECT * FROM t WHERE id IN ({rng.randint(1, 999)}, {rng.randint(1, 99999)}) "
            f"AND ts > {rng.randint(1_600_000_000, 1_800_000_000)};"
        ),
        lambda: (
            f"Install requests=={rng.randint(1, 3)}.{rng.randint(0, 40)}.{rng.randint(0, 9)} "
            f"on Python {rng.choice(['3.9', '3.10', '3.11', '3.12'])}.{rng.randint(0, 20)}"
        ),
        lambda: f"Seed {rng.randint(0, 2**31)}, batch {rng.choice([8, 16, 32, 64])}, lr {rng.choice(['3e-4', '1e-5'])}",
        lambda: f"Order #{rng.randint(10000, 99999999)} of {rng.randint(1, 12)}/{rng.randint(1, 28)}/2026",
    ]
    return [rng.choice(shapes)() for _ in range(count)]


def ordinary_texts(generated: int = 80, seed: int = 19) -> list[str]:
    """Texts that hold no personal data: the handwritten ones above, then generated ones."""
    return [*ORDINARY, *_generated_ordinary(generated, seed)]
